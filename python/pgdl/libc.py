"""Which C library and dynamic loader a server runs with: read from its files,
never by running them.  The postgres executable's PT_INTERP names the loader.
glibc's release: the loader's own string ("... release version 2.36.", which
ld.so has from 2.33 on), else the loader's file name (ld-2.31.so up to 2.33),
else libc.so.6's string beside it.  The loader carries its default search
directories (SYSTEM_DIRS) as one constant of NUL-separated directories.
musl's loader is its libc ("musl libc")."""

from __future__ import annotations

import os
import re

from . import filestate, rootfs
from .elf import ElfError, open_elf
from .record import Name, Value

MAX_LOADER_SIZE = 16 << 20          # ld.so is ~250 KiB, musl's libc ~1 MiB
_GLIBC_RELEASE = re.compile(rb"(?:stable|development) release version (\d+)\.(\d+)")
_LOADER_FILE = re.compile(r"^ld-(\d+)\.(\d+)\.so$")
# SYSTEM_DIRS: two or more absolute directories, each ending in '/', one after another.
_SYSTEM_DIRS = re.compile(rb"(?:/[A-Za-z0-9_.+-][A-Za-z0-9_./+-]*/\0){2,}")


_DIR_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./+-")


def _system_dirs(data: bytes) -> re.Match | None:
    """_SYSTEM_DIRS.search(data), without scanning the whole loader with it (4 ms).

    Every match has a "/\0/" where its first directory ends, and starts at a
    '/' in the run of directory bytes before it (the run cannot cross a NUL),
    so trying those starts, run by run, finds the same leftmost match."""
    end = data.find(b"/\0/")
    while end >= 0:
        start = end
        while start > 0 and data[start - 1] in _DIR_BYTES:
            start -= 1
        for at in range(start, end):
            if data[at] == 0x2F:
                found = _SYSTEM_DIRS.match(data, at)
                if found:
                    return found
        end = data.find(b"/\0/", end + 1)
    return None


def _release(data: bytes) -> re.Match | None:
    """_GLIBC_RELEASE.search(data), from each " release version " in turn."""
    at = data.find(b" release version ")
    while at >= 0:
        for start in (at - len(b"development"), at - len(b"stable")):
            found = _GLIBC_RELEASE.match(data, start) if start >= 0 else None
            if found:
                return found
        at = data.find(b" release version ", at + 1)
    return None


# Backports a release branch may carry, told by a string only they add to ld.so.
BACKPORTS = {
    # glibc.rtld.execstack=2 (2.42; on the 2.41 branch too: Debian 13's 2.41 has it).
    "execstack_force": b"cannot enable executable stack as tunable requires",
}


class LibcKind(Name):
    GLIBC = "glibc"
    MUSL = "musl"
    UNKNOWN = "unknown"


class Libc(Value):
    """The C library of a server, as far as its files tell."""
    __slots__ = ("kind", "version", "loader", "system_dirs", "backports")

    def __init__(self, kind: LibcKind, version: tuple[int, int] | None = None, loader: str = "",
                 system_dirs: tuple[str, ...] = (), backports: frozenset = frozenset()):
        self.kind = kind
        self.version = version              # glibc's (major, minor)
        self.loader = loader                # the program interpreter's path
        self.system_dirs = system_dirs      # the loader's default directories, in its order
        self.backports = backports          # BACKPORTS names the loader's file shows

    @property
    def dst_lib(self) -> str:
        """What $LIB expands to: glibc builds DL_DST_LIB from the first system
        directory (slibdir): lib/x86_64-linux-gnu on Debian, lib64 on RHEL."""
        return self.system_dirs[0].strip("/") if self.system_dirs else ""

    def describe(self) -> str:
        if self.kind is LibcKind.GLIBC and self.version:
            return f"glibc {self.version[0]}.{self.version[1]} ({self.loader})"
        if self.kind is LibcKind.MUSL:
            return f"musl ({self.loader})"
        return f"an unrecognised C library ({self.loader or 'no program interpreter'})"


def interpreter_of(executable: str) -> str:
    """The PT_INTERP path of an executable, '' if it has none or cannot be read."""
    try:
        return open_elf(executable).interp
    except (ElfError, OSError, ValueError):
        return ""


_LIBCS = filestate.FileCache(8)


def libc_of(executable: str) -> Libc:
    """The C library `executable` runs with, read again when the executable changes."""
    return _LIBCS.get(executable, lambda _state: _libc_of(executable))


def _libc_of(executable: str) -> Libc:
    loader = interpreter_of(executable)
    if not loader:
        return Libc(LibcKind.UNKNOWN)
    try:
        with open(rootfs.host(loader), "rb") as f:
            data = f.read(MAX_LOADER_SIZE)
    except OSError:
        return Libc(LibcKind.UNKNOWN, loader=loader)
    if b"ld-musl-" in loader.encode() or b"musl libc" in data:
        return Libc(LibcKind.MUSL, loader=loader)
    dirs = _system_dirs(data)
    system_dirs = tuple(d.decode() for d in dirs.group(0).split(b"\0") if d) if dirs else ()
    version = _glibc_release(data, rootfs.realpath(loader), system_dirs)
    if version is None:
        return Libc(LibcKind.UNKNOWN, loader=loader, system_dirs=system_dirs)
    backports = frozenset(name for name, marker in BACKPORTS.items() if marker in data)
    return Libc(LibcKind.GLIBC, version, loader, system_dirs, backports)


def _glibc_release(data: bytes, real_loader: str, system_dirs: tuple[str, ...]) -> tuple[int, int] | None:
    found = _release(data)
    if found:
        return int(found.group(1)), int(found.group(2))
    named = _LOADER_FILE.match(os.path.basename(real_loader))
    if named:
        return int(named.group(1)), int(named.group(2))
    for directory in system_dirs:
        filestate.state(directory + "libc.so.6")     # what the answer rests on
        try:
            with open(rootfs.host(directory + "libc.so.6"), "rb") as f:
                found = _release(f.read(MAX_LOADER_SIZE))
        except OSError:
            continue
        if found:
            return int(found.group(1)), int(found.group(2))
    return None
