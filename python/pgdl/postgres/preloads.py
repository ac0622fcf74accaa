"""The preload settings as miscinit.c loads them (load_libraries()): their
names in the server's order, the list syntax, and where a restricted list's
names are looked for."""

from __future__ import annotations

import re

from .dfmgr import PLUGINS

# Server load order: postmaster start, then each backend's start.
PRELOAD_SETTINGS = ("shared_preload_libraries", "session_preload_libraries", "local_preload_libraries")


def split_library_list(value: str) -> list[str]:
    """SplitDirectoriesString(): comma-separated, trimmed, optionally "double-quoted"."""
    items = re.findall(r'\s*("(?:[^"]|"")*"|[^,]*)\s*(?:,|$)', value or "")
    names = [i[1:-1].replace('""', '"') if i.startswith('"') else i.strip() for i in items]
    return [n for n in names if n]


def preload_target(name: str, restricted: bool) -> str:
    """What load_libraries(restricted) loads for a listed name: local_preload_libraries'
    plain names are looked for in $libdir/plugins/ (and nowhere else)."""
    return PLUGINS + name if restricted and "/" not in name else name
