"""The explicit description of a server that the pure core works from.

The adapter (pgdl.backend) fills it from the live backend; tests fill it by
hand to check each PostgreSQL version's rules without a server of that version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property


@dataclass(frozen=True)
class ServerMagic:
    """The magic values this server compares a module's magic block against."""
    version: int                 # PG_VERSION_NUM / 100, e.g. 1500
    funcmaxargs: int = 100
    indexmaxkeys: int = 32
    namedatalen: int = 64
    float8byval: bool = True
    float4byval: bool = True     # compared only by PostgreSQL 12
    abi_extra: str = "PostgreSQL"  # compared since PostgreSQL 15


@dataclass(frozen=True)
class LoadedObject:
    """A file mapped into the backend (from /proc/self/maps)."""
    path: str
    dev: int = 0
    inode: int = 0


@dataclass
class Server:
    """A PostgreSQL server as one session sees it."""
    version_num: int                       # server_version_num, e.g. 150018
    pkglibdir: str
    dynamic_library_path: str = "$libdir"
    dlsuffix: str = ".so"
    data_directory: str = "."
    sharedir: str = ""
    magic: ServerMagic | None = None
    executable: str = ""
    environ: dict[str, str] = field(default_factory=dict)
    loaded: list[LoadedObject] = field(default_factory=list)
    # Libraries PostgreSQL itself has loaded in this backend, by the exact
    # name it was asked for after expansion (dfmgr.c's file_list).
    is_superuser: bool = True
    uid: int = 0
    gids: tuple[int, ...] = ()
    machine: int = 62                      # e_machine of the server executable
    elf_class: int = 64

    @cached_property
    def fingerprint(self) -> "Fingerprint":
        """Every field: equal fingerprints describe the same server.

        Computed once: treat a Server as read-only once it is in use."""
        return Fingerprint((self.version_num, self.pkglibdir, self.dynamic_library_path, self.dlsuffix,
                            self.data_directory, self.sharedir, self.magic, self.executable,
                            tuple(sorted(self.environ.items())),
                            tuple((o.path, o.dev, o.inode) for o in self.loaded),
                            self.is_superuser, self.uid, self.gids, self.machine, self.elf_class))

    @property
    def major(self) -> int:
        return self.version_num // 10000

    def server_magic(self) -> ServerMagic:
        return self.magic or ServerMagic(version=self.version_num // 100)


class Fingerprint:
    """A Server's fields as one value whose hash is computed once: it is part
    of the key of every answer a backend remembers."""

    __slots__ = ("value", "_hash")

    def __init__(self, value: tuple):
        self.value, self._hash = value, hash(value)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        return self is other or (isinstance(other, Fingerprint) and self._hash == other._hash
                                 and self.value == other.value)
