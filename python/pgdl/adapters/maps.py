"""The files mapped into this process, from /proc/self/maps."""

from __future__ import annotations

import os

from ..server import LoadedObject

DELETED = " (deleted)"


def read_maps(path: str = "/proc/self/maps") -> list[LoadedObject]:
    """Each file mapped privately, once, in address order (the order they were mapped).

    ld.so maps every object MAP_PRIVATE (glibc dl-map-segments.h, MAP_COPY), so
    shared mappings are never loaded objects: they are PostgreSQL's shared and
    dynamic shared memory (/dev/shm/PostgreSQL.*, /SYSV*), which come and go
    with parallel queries and would otherwise make every answer look stale."""
    seen: dict[str, LoadedObject] = {}
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            # A file has one line per mapped segment: parse only its first.
            start = line.find(" /")
            if start < 0 or line[start + 1:].rstrip("\n") in seen:
                continue
            parsed = parse_maps_line(line)
            if parsed is not None:
                seen[parsed.path] = parsed
    return list(seen.values())


def parse_maps_line(line: str) -> LoadedObject | None:
    """The file of one privately mapped segment, or None."""
    # "start-end perms offset major:minor inode   pathname"
    parts = line.rstrip("\n").split(None, 5)
    if len(parts) < 6 or not parts[5].startswith("/") or parts[1][3:4] != "p":
        return None
    inode = int(parts[4])
    if inode == 0:
        return None
    major, minor = (int(x, 16) for x in parts[3].split(":"))
    return LoadedObject(path=parts[5], dev=os.makedev(major, minor), inode=inode)
