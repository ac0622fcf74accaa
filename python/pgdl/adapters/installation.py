"""Another PostgreSQL installation, described from its files only (no server
runs, nothing of it is executed): the `postgres` executable of its bindir
gives the version (PG_VERSION_STR) and, as the server computes them at run
time, its $libdir and share directory (the compiled-in paths, relocated by
port/path.c make_relative_path() against where the executable is); a stock
module's magic block (plpgsql) gives the values modules are checked against.""" 

from __future__ import annotations

import os
import re

from .. import rootfs
from ..elf import ElfError, cached_elf
from ..errors import UserError
from ..libc import libc_of
from ..postgres.magic import MagicNotFound, read_magic
from ..record import Value
from ..server import Context, Server, ServerMagic

MAX_EXECUTABLE = 256 << 20
_VERSION = re.compile(rb"PostgreSQL (\d+)(?:\.(\d+))?(?:devel|beta\d*|rc\d*)?(?: \([^)]*\))? on ")
_PATH = re.compile(rb"\0(/[A-Za-z0-9_.+/-]{1,200})\0")
STOCK_MODULE = "plpgsql.so"


class Installation(Value):
    """What was read, and from where (the description says it)."""
    __slots__ = ("bindir", "executable", "version_num", "pkglibdir", "sharedir", "magic_from", "server")

    def __init__(self, bindir: str, executable: str, version_num: int, pkglibdir: str, sharedir: str,
                 magic_from: str, server: Server):
        self.bindir = bindir
        self.executable = executable
        self.version_num = version_num
        self.pkglibdir = pkglibdir
        self.sharedir = sharedir
        self.magic_from = magic_from
        self.server = server

    def describe(self) -> str:
        where = f" (root {rootfs.root()})" if rootfs.root() != "/" else ""
        return (f"PostgreSQL {self.server.version_text} in {self.bindir}{where}: "
                f"$libdir {self.pkglibdir}, share {self.sharedir}, magic values from {self.magic_from}, "
                f"{self.server.rules.describe()}")


def installation(bindir: str, context: Context = Context.NEW_SESSION,
                 environ: dict[str, str] | None = None) -> Installation:
    """The installation whose binaries are in `bindir`; UserError if it is not one."""
    bindir = os.path.normpath(bindir)
    executable = os.path.join(bindir, "postgres")
    real = rootfs.realpath(executable)             # find_my_exec() resolves symbolic links
    try:
        with open(rootfs.host(real), "rb") as f:
            data = f.read(MAX_EXECUTABLE)
    except OSError as exc:
        raise UserError(f'could not read "{executable}": {exc.strerror}', sqlstate="58P01",
                        hint="Give the bindir of a PostgreSQL installation (the directory holding postgres).")
    version = _VERSION.search(data)
    if version is None:
        raise UserError(f'"{executable}" is not a PostgreSQL server executable', sqlstate="22023")
    major, minor = int(version.group(1)), int(version.group(2) or 0)
    version_num = major * 10000 + minor if major >= 10 else major * 10000 + minor * 100
    paths = [m.decode() for m in _PATH.findall(data)]
    bins = [p for p in paths if p.rstrip("/").endswith("/bin")]
    pkglibdir = _relocated(paths, bins, real, lambda d: _is_file(os.path.join(d, STOCK_MODULE)))
    sharedir = _relocated(paths, bins, real, lambda d: _is_file(os.path.join(d, "extension", "plpgsql.control")))
    if pkglibdir is None or sharedir is None:
        raise UserError(f"cannot find the library and share directories of the installation in {bindir}",
                        sqlstate="58P01", hint="Is it a whole installation (with contrib's plpgsql)?")
    magic, magic_from = _magic(os.path.join(pkglibdir, STOCK_MODULE), version_num)
    server = Server(version_num=version_num, pkglibdir=pkglibdir, sharedir=sharedir,
                    dynamic_library_path="$libdir", magic=magic, executable=real,
                    environ=dict(environ or {}), loaded=[], is_superuser=True, uid=os.geteuid(),
                    gids=tuple(os.getgroups()), context=context, libc=libc_of(real))
    return Installation(bindir, executable, version_num, pkglibdir, sharedir, magic_from, server)


def _is_file(path: str) -> bool:
    return os.path.isfile(rootfs.host(path))


def make_relative_path(target: str, bin_path: str, my_exec_path: str) -> str:
    """port/path.c make_relative_path(): where a compiled-in directory is for an
    executable moved from bin_path to my_exec_path's directory."""
    prefix_len = 0
    for i, (a, b) in enumerate(zip(target, bin_path)):
        if a == "/" and b == "/":
            prefix_len = i + 1
        elif a != b:
            break
    if prefix_len:
        tail = bin_path[prefix_len:].strip("/")
        here = os.path.normpath(os.path.dirname(my_exec_path))
        if tail and (here == "/" + tail or here.endswith("/" + tail)):
            base = here[:len(here) - len(tail)].rstrip("/")
            return os.path.normpath(os.path.join(base or "/", target[prefix_len:]))
    return os.path.normpath(target)


def _relocated(paths: list[str], bins: list[str], executable: str, holds) -> str | None:
    """The first compiled-in directory that, relocated as the server does it, `holds` the file wanted."""
    for bin_path in bins or [os.path.dirname(executable)]:
        for target in paths:
            candidate = make_relative_path(target, bin_path, executable)
            if holds(candidate):
                return candidate
    return None


def _magic(path: str, version_num: int) -> tuple[ServerMagic, str]:
    """The values PG_MODULE_MAGIC_DATA gives a module built against the installation,
    as its stock plpgsql.so carries them."""
    try:
        block = read_magic(cached_elf(path))
    except (ElfError, OSError, MagicNotFound) as exc:
        return ServerMagic(version=version_num // 100), f"defaults ({STOCK_MODULE} unreadable: {exc})"
    return (ServerMagic(version=block.version, funcmaxargs=block.funcmaxargs or 100,
                        indexmaxkeys=block.indexmaxkeys or 32, namedatalen=block.namedatalen or 64,
                        float8byval=bool(block.float8byval), abi_extra=block.abi_extra or "PostgreSQL"),
            f"the magic block of {path}")
