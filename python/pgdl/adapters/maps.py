"""The files mapped into this process, from /proc/self/maps."""

from __future__ import annotations

import os
import re

from ..server import LoadedObject

# "start-end perms offset major:minor inode   pathname" of a private mapping of a file.
_PRIVATE_FILE = re.compile(r"^\S+ \S{3}p \S+ ([0-9a-f]+):([0-9a-f]+) ([1-9]\d*) +(/.*)$", re.MULTILINE)


def read_maps(path: str = "/proc/self/maps") -> list[LoadedObject]:
    """Each file mapped privately, once, in address order (the order they were mapped).

    ld.so maps every object MAP_PRIVATE (glibc dl-map-segments.h, MAP_COPY), so
    shared mappings are never loaded objects: they are PostgreSQL's shared and
    dynamic shared memory (/dev/shm/PostgreSQL.*, /SYSV*), which come and go
    with parallel queries and would otherwise make every answer look stale."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        text = f.read()
    seen: dict[str, LoadedObject] = {}
    # A file has one line per mapped segment: the first one counts.
    for major, minor, inode, name in _PRIVATE_FILE.findall(text):
        if name not in seen:
            seen[name] = LoadedObject(name, os.makedev(int(major, 16), int(minor, 16)), int(inode))
    return list(seen.values())
