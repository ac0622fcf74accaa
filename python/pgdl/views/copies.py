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

from .. import filestate, interrupts, rootfs
from ..elf import ElfError, cached_elf
from ..elf import dynsym
from ..record import Value

# Places where other copies of a library typically live.
SEARCH_GLOBS = ("/lib*/", "/usr/lib*/", "/usr/lib*/*-linux-gnu/", "/usr/local/lib*/", "/opt/*/lib*/",
                "/opt/*/*/lib*/", "/usr/lib/postgresql/*/lib/")
MAX_FILES_TO_READ = 200


class Copies:
    """Other copies of libraries, and the PostgreSQL modules, for one diagnosis.

    A diagnosis may explain hundreds of missing symbols (a module whose string
    table is damaged, say): the directories are listed once, each library's
    copies are looked for once, and each file is read once (cached_elf), so
    the cost grows with the number of symbols, not with symbols x directories."""

    def __init__(self, extra_dirs: list[str], module_dirs: list[str], module: str | None):
        self._dirs = list(dict.fromkeys(list(extra_dirs) + [d for g in SEARCH_GLOBS for d in filestate.glob(g)]))
        self._module_dirs = module_dirs
        self._module = module
        self._copies: dict[tuple[str, str | None], list[str]] = {}
        self._modules: list[str] | None = None

    def of(self, soname: str, chosen: str | None, cache_paths: list[str]) -> list[str]:
        """Files named like `soname` elsewhere, other than the chosen one."""
        key = (soname, chosen)
        found = self._copies.get(key)
        if found is None:
            found = self._copies[key] = _other_copies(soname, chosen, cache_paths, self._dirs)
        return found

    def modules_defining(self, symbol: str) -> list[str]:
        """PostgreSQL modules (in pkglibdir and dynamic_library_path) that export `symbol`."""
        if self._modules is None:
            paths = [p for d in self._module_dirs for p in sorted(filestate.glob(os.path.join(glob.escape(d), "*.so")))]
            self._modules = list(_readable([p for p in dict.fromkeys(paths) if p != self._module]))
        return [path for path, obj in self._modules if _defines(obj, symbol)]


def _other_copies(soname: str, chosen: str | None, cache_paths: list[str], dirs: list[str]) -> list[str]:
    seen: list[str] = []
    real_seen: set[str] = set()
    if chosen:
        real_seen.add(rootfs.realpath(chosen))
    for path in list(cache_paths) + [os.path.join(d, soname) for d in dirs]:
        if len(seen) >= MAX_FILES_TO_READ:
            break
        interrupts.check()
        if not filestate.state(path).is_regular:
            continue
        real = rootfs.realpath(path)
        if real not in real_seen:
            real_seen.add(real)
            seen.append(path)
    return seen


def providers_of(symbol: str, paths: list[str]) -> list[str]:
    return [path for path, obj in _readable(paths) if _defines(obj, symbol)]


def _readable(paths: list[str]):
    """(path, ElfObject) of the first MAX_FILES_TO_READ paths that are ELF files."""
    for path in paths[:MAX_FILES_TO_READ]:
        try:
            yield path, cached_elf(path)
        except (ElfError, OSError):
            continue


def _defines(obj, symbol: str) -> bool:
    try:
        return dynsym.definition(obj, symbol) is not None
    except (ElfError, OSError):
        return False


# Where a library named for PostgreSQL is found when it was installed for
# another directory: a subdirectory of a directory the server searches (a
# packager's $libdir/<name>/), another installation's pkglibdir (make install
# with another pg_config), the extension directory (copied with the scripts).
OTHER_PKGLIBDIRS = ("/usr/lib/postgresql/*/lib/", "/usr/pgsql-*/lib/", "/usr/local/pgsql/lib/",
                    "/usr/local/lib/postgresql/", "/opt/*/lib/postgresql/", "/opt/*/*/lib/postgresql/")


class Misplaced(Value):
    """A file with the library's name where the server does not look, and the
    major its magic block says it was built for (None: no readable block)."""
    __slots__ = ("path", "built_for")

    def __init__(self, path: str, built_for: int | None):
        self.path = path
        self.built_for = built_for


def misplaced_copies(basename: str, searched: list[str], sharedir: str, dlsuffix: str) -> list[Misplaced]:
    """Files named `basename` (or with dlsuffix) outside the searched directories:
    looked for once a call (diagnose() asks before it tells the story that does)."""
    memo = filestate.this_call()
    key = ("misplaced", basename, tuple(searched), sharedir, dlsuffix)
    if key not in memo:
        memo[key] = _misplaced(basename, searched, sharedir, dlsuffix)
    return memo[key]


def _misplaced(basename: str, searched: list[str], sharedir: str, dlsuffix: str) -> list[Misplaced]:
    from ..postgres.magic import MagicNotFound, read_magic
    names = [basename] if basename.endswith(dlsuffix) else [basename + dlsuffix, basename]
    places = [d.rstrip("/") + "/*/" for d in searched]
    places += list(OTHER_PKGLIBDIRS) + [os.path.join(sharedir, "extension") + "/"]
    skip = {rootfs.realpath(d.rstrip("/")) for d in searched}
    found: list[Misplaced] = []
    seen: set[str] = set()
    for place in places:
        for directory in sorted(filestate.glob(place)):
            interrupts.check()
            directory = directory.rstrip("/")
            if rootfs.realpath(directory) in skip:
                continue
            for name in names:
                path = os.path.join(directory, name)
                real = rootfs.realpath(path)
                if real in seen or not filestate.state(path).is_regular:
                    continue
                seen.add(real)
                try:
                    built_for = read_magic(cached_elf(path)).version // 100
                except (MagicNotFound, ElfError, OSError):
                    built_for = None
                found.append(Misplaced(path, built_for))
                if len(found) >= 5:
                    return found
    return found
