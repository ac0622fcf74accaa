"""Why a symbol is missing, and what would fix it.

When the copy of a library the loader picked lacks a symbol, the usual cause
is that another copy of the same SONAME (the one the module was built
against) is installed elsewhere and loses the search.  When no copy of any
dependency has it, the symbol may belong to another PostgreSQL module that
must be loaded first.
"""

from __future__ import annotations

import glob
import os

from .elf import ElfError, cached_elf

# Places where other copies of a library typically live.
SEARCH_GLOBS = ("/lib*/", "/usr/lib*/", "/usr/lib*/*-linux-gnu/", "/usr/local/lib*/", "/opt/*/lib*/",
                "/opt/*/*/lib*/", "/usr/lib/postgresql/*/lib/")
MAX_FILES_TO_READ = 200


def other_copies(soname: str, chosen: str | None, cache_paths: list[str], extra_dirs: list[str]) -> list[str]:
    """Files named like `soname` elsewhere, other than the chosen one."""
    seen: list[str] = []
    real_chosen = os.path.realpath(chosen) if chosen else None
    candidates = list(cache_paths)
    for directory in list(extra_dirs) + [d for g in SEARCH_GLOBS for d in glob.glob(g)]:
        candidates.append(os.path.join(directory, soname))
    for path in candidates:
        if len(seen) >= MAX_FILES_TO_READ:
            break
        if not os.path.isfile(path):
            continue
        if os.path.realpath(path) == real_chosen or any(os.path.realpath(path) == os.path.realpath(s) for s in seen):
            continue
        seen.append(path)
    return seen


def providers_of(symbol: str, paths: list[str]) -> list[str]:
    found = []
    for path in paths[:MAX_FILES_TO_READ]:
        try:
            if cached_elf(path).definition(symbol) is not None:
                found.append(path)
        except (ElfError, OSError):
            continue
    return found


def modules_defining(symbol: str, pkglibdir: str, exclude: str | None) -> list[str]:
    """PostgreSQL modules in pkglibdir that export `symbol`."""
    paths = sorted(glob.glob(os.path.join(glob.escape(pkglibdir), "*.so")))
    return [p for p in providers_of(symbol, paths) if p != exclude]
