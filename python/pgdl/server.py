"""The explicit description of a server that the pure core works from.

The adapter (pgdl.backend) fills it from the live backend; tests fill it by
hand to check each PostgreSQL version's rules without a server of that version.
"""

from __future__ import annotations

import re
from .record import Name, Record, Value

TYPE_CHECKING = False           # typing's own, without importing typing (3 ms of a backend's first call)
if TYPE_CHECKING:
    from .glibc.release import Rules
    from .libc import Libc

# The name of a shared object file: libfoo.so, libfoo.so.1.2.3.
SHARED_OBJECT = re.compile(r"\.so(\.[\d.]+)?$")


class Context(Name):
    """Whose load a question is about (the SQL functions' `context`)."""
    THIS_SESSION = "this session"       # this backend, with all it has loaded (PL/Python too)
    NEW_SESSION = "new session"         # a new backend of this server for the role
    SERVER_START = "server start"       # the postmaster loading shared_preload_libraries


class Role(Value):
    """The role a question is asked for, as PostgreSQL judges its privileges."""
    __slots__ = ("name", "is_superuser", "can_create")

    def __init__(self, name: str, is_superuser: bool = True, can_create: bool = True):
        self.name = name
        self.is_superuser = is_superuser
        self.can_create = can_create        # CREATE on the current database (trusted extensions, 13+)


class Preloads(Value):
    """The preload settings a new backend (or the postmaster) starts with."""
    __slots__ = ("shared", "at_start", "at_start_from", "session", "local")

    def __init__(self, shared: tuple[str, ...] = (), at_start: tuple[str, ...] | None = None,
                 at_start_from: str = "the running value", session: tuple[str, ...] = (),
                 local: tuple[str, ...] = ()):
        self.shared = shared                # shared_preload_libraries as the postmaster runs with it
        self.at_start = shared if at_start is None else at_start   # ... as the next start would have it
        self.at_start_from = at_start_from  # "the configuration files" or "the running value"
        self.session = session              # session_preload_libraries, for the role and database
        self.local = local                  # local_preload_libraries, for the role and database

    def of(self, context) -> tuple[str, ...]:
        """shared_preload_libraries for the postmaster of a context: the next start's, or the running one's."""
        return self.at_start if context is Context.SERVER_START else self.shared


class ServerMagic(Value):
    """The magic values this server compares a module's magic block against."""
    __slots__ = ("version", "funcmaxargs", "indexmaxkeys", "namedatalen", "float8byval", "float4byval",
                 "abi_extra")

    def __init__(self, version: int, funcmaxargs: int = 100, indexmaxkeys: int = 32, namedatalen: int = 64,
                 float8byval: bool = True, float4byval: bool = True, abi_extra: str = "PostgreSQL"):
        self.version = version          # PG_VERSION_NUM / 100, e.g. 1500
        self.funcmaxargs = funcmaxargs
        self.indexmaxkeys = indexmaxkeys
        self.namedatalen = namedatalen
        self.float8byval = float8byval
        self.float4byval = float4byval  # compared only by PostgreSQL 12
        self.abi_extra = abi_extra      # compared since PostgreSQL 15


class LoadedObject(Value):
    """A file mapped into the backend (from /proc/self/maps)."""
    __slots__ = ("path", "dev", "inode")

    def __init__(self, path: str, dev: int = 0, inode: int = 0):
        self.path = path
        self.dev = dev
        self.inode = inode


class CFunction(Value):
    """A LANGUAGE C function: pg_proc's signature, probin (library) and prosrc (symbol)."""
    __slots__ = ("signature", "library", "symbol")

    def __init__(self, signature: str, library: str, symbol: str):
        self.signature = signature
        self.library = library
        self.symbol = symbol


class Service(Value):
    """How the server was started, for the hints that change its environment."""
    __slots__ = ("unit", "environment_file")

    def __init__(self, unit: str | None = None, environment_file: str | None = None):
        self.unit = unit                        # the systemd unit, if one started it
        self.environment_file = environment_file    # Debian's per-cluster environment file

    def describe(self) -> str:
        """Where to set a variable of the server's environment."""
        if self.environment_file:
            where = f"{self.environment_file} (read by pg_ctlcluster"
            return where + (f", which {self.unit} runs)" if self.unit else ")")
        if self.unit:
            return f"the unit {self.unit} (Environment= in `systemctl edit {self.unit}`)"
        return "the environment of the command that starts the server (pg_ctl's, or postgres's own)"


class Messages(Value):
    """What decides the language and codeset of a backend's messages (pgdl.postgres.translate)."""
    __slots__ = ("lc_messages", "localedir", "encoding", "ctype")

    def __init__(self, lc_messages: str = "C", localedir: str = "", encoding: str = "UTF8", ctype: str = "C"):
        self.lc_messages = lc_messages  # the setting ("" = the environment's, resolved by the describer)
        self.localedir = localedir      # PostgreSQL's LOCALEDIR (pg_config --localedir); "" unknown
        self.encoding = encoding        # the database's server_encoding
        self.ctype = ctype              # the database's LC_CTYPE (glibc's codeset for its messages)

    @property
    def english(self) -> bool:
        """The C locale: gettext translates nothing (LANGUAGE is ignored too)."""
        return self.lc_messages.split(".")[0] in ("", "C", "POSIX")

    @staticmethod
    def of(setting: str, environ: dict[str, str]) -> str:
        """lc_messages as the backend runs with it: "" takes the environment's
        (pg_perm_setlocale() leaves LC_MESSAGES there; LANG otherwise)."""
        return setting or environ.get("LC_ALL") or environ.get("LC_MESSAGES") or environ.get("LANG") or "C"


class Server(Record):
    """A PostgreSQL server as one session sees it."""
    __slots__ = ("version_num", "pkglibdir", "dynamic_library_path", "dlsuffix", "data_directory",
                 "sharedir", "magic", "executable", "environ", "loaded", "is_superuser", "uid", "gids",
                 "machine", "elf_class", "context", "role", "preloads", "postmaster_loaded", "custom_settings",
                 "libc", "service", "extension_control_path", "messages", "_fingerprint")

    def __init__(self, version_num: int, pkglibdir: str, dynamic_library_path: str = "$libdir",
                 dlsuffix: str = ".so", data_directory: str = ".", sharedir: str = "",
                 magic: ServerMagic | None = None, executable: str = "",
                 environ: dict[str, str] | None = None, loaded: list[LoadedObject] | None = None,
                 is_superuser: bool = True, uid: int = 0, gids: tuple[int, ...] = (), machine: int = 62,
                 elf_class: int = 64, context: Context = Context.THIS_SESSION, role: Role | None = None,
                 preloads: Preloads | None = None, postmaster_loaded: tuple[LoadedObject, ...] | None = None,
                 custom_settings: frozenset = frozenset(), libc: Libc | None = None,
                 service: Service | None = None, extension_control_path: str = "",
                 messages: Messages | None = None):
        self.version_num = version_num  # server_version_num, e.g. 150018
        self.pkglibdir = pkglibdir
        self.dynamic_library_path = dynamic_library_path
        self.dlsuffix = dlsuffix
        self.data_directory = data_directory
        self.sharedir = sharedir
        self.magic = magic
        self.executable = executable
        self.environ = {} if environ is None else environ
        self.loaded = [] if loaded is None else loaded
        self.is_superuser = is_superuser
        self.uid = uid
        self.gids = gids
        self.machine = machine          # e_machine of the server executable
        self.elf_class = elf_class
        self.context = context
        self.role = role                # None: the session's own (is_superuser says which)
        self.preloads = preloads or Preloads()
        self.postmaster_loaded = postmaster_loaded  # the postmaster's mapped files, where readable
        self.custom_settings = custom_settings      # custom settings (x.y) that exist, placeholders too
        self.libc = libc                # its C library and loader (None: glibc 2.36 as Debian 12 builds it)
        self.service = service or Service()     # how it was started (where its environment is set)
        self.extension_control_path = extension_control_path    # PostgreSQL 18+ ("": $system)
        self.messages = messages or Messages()  # lc_messages and what its text is converted to
        self._fingerprint: Fingerprint | None = None

    @property
    def fingerprint(self) -> "Fingerprint":
        """Every field: equal fingerprints describe the same server.

        Computed once: treat a Server as read-only once it is in use."""
        if self._fingerprint is None:
            postmaster = None if self.postmaster_loaded is None else \
                tuple((o.path, o.dev, o.inode) for o in self.postmaster_loaded)
            self._fingerprint = Fingerprint.of((
                self.version_num, self.pkglibdir, self.dynamic_library_path, self.dlsuffix,
                self.data_directory, self.sharedir, self.magic, self.executable,
                tuple(sorted(self.environ.items())), tuple((o.path, o.dev, o.inode) for o in self.loaded),
                self.is_superuser, self.uid, self.gids, self.machine, self.elf_class, self.context,
                self.role and self.role._values(), self.preloads._values(), postmaster, self.custom_settings,
                self.libc, self.service, self.extension_control_path, self.messages))
        return self._fingerprint

    @property
    def rules(self) -> Rules:
        """The loader's rules (pgdl.glibc.release), by its version."""
        from .glibc.release import rules_for
        return rules_for(self.libc)

    @property
    def major(self) -> int:
        return self.version_num // 10000

    @property
    def version_text(self) -> str:
        """server_version_num as the server writes its version: 150018 -> 15.18 (9.6.24 before 10)."""
        if self.major >= 10:
            return f"{self.major}.{self.version_num % 10000}"
        return f"{self.major}.{self.version_num // 100 % 100}.{self.version_num % 100}"

    def server_magic(self) -> ServerMagic:
        return self.magic or ServerMagic(version=self.version_num // 100)


class Fingerprint:
    """A Server's fields as one value whose hash is computed once: it is part
    of the key of every answer a backend remembers."""

    __slots__ = ("value", "_hash")
    _recent: dict = {}          # value -> its Fingerprint: equal descriptions share one object

    def __init__(self, value: tuple):
        self.value, self._hash = value, hash(value)

    @classmethod
    def of(cls, value: tuple) -> "Fingerprint":
        """The Fingerprint of `value`, the same object as for an equal value met
        recently: every remembered answer's key then compares by identity, not
        field by field (hundreds of lookups a call)."""
        found = cls._recent.get(value)
        if found is None:
            if len(cls._recent) >= 64:
                cls._recent.clear()
            found = cls._recent[value] = cls(value)
        return found

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        return self is other or (isinstance(other, Fingerprint) and self._hash == other._hash
                                 and self.value == other.value)
