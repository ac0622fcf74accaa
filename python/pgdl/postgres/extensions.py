"""Extensions as CREATE EXTENSION finds them (extension.c): the control file,
its required extensions, the default version's install script or update
path, module_pathname and the C functions the script declares.  One checker
for every view (diagnose and audit)."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Sequence

from .. import filestate, interrupts, rootfs
from ..errors import INSUFFICIENT_PRIVILEGE, INVALID_PARAMETER_VALUE, PgError
from ..record import Record, Value
from ..server import CFunction, Server



def read_control(path: str) -> dict[str, str]:
    """A control file's parameters (the same simple name = 'value' syntax as postgresql.conf)."""
    params = {}
    with open(rootfs.host(path), encoding="utf-8", errors="replace") as f:
        for line in f.read(1 << 20).splitlines():
            m = re.match(r"\s*(\w+)\s*=?\s*(?:'((?:[^']|'')*)'|([^\s#]+))", line)
            if m:
                params[m.group(1)] = (m.group(2).replace("''", "'") if m.group(2) is not None else m.group(3))
    return params


C_FUNCTION = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+([\w.\"]+)\s*\(([^)]*)\)(.*?);", re.IGNORECASE | re.DOTALL)
AS_CLAUSE = re.compile(r"AS\s+'([^']*)'\s*(?:,\s*'([^']*)')?", re.IGNORECASE)
LANGUAGE_C = re.compile(r"LANGUAGE\s+'?C'?\b", re.IGNORECASE)


def c_functions_in_script(text: str, module_pathname: str | None) -> list[CFunction]:
    out = []
    for m in C_FUNCTION.finditer(text):
        name, args, rest = m.group(1), m.group(2), m.group(3)
        if not LANGUAGE_C.search(rest):
            continue
        a = AS_CLAUSE.search(rest)
        if not a:
            continue
        library = a.group(1).replace("MODULE_PATHNAME", module_pathname or "MODULE_PATHNAME")
        symbol = a.group(2) or name.split(".")[-1].strip('"')
        out.append(CFunction(f"{name}({' '.join(args.split())})", library, symbol))
    return out


MAX_SCRIPT = 8 << 20          # bytes of an install script read for its C functions

# Type names as format_type() writes them, for the spellings scripts and people use.
_TYPE_ALIASES = {"int": "integer", "int4": "integer", "int2": "smallint", "int8": "bigint", "bool": "boolean",
                 "float8": "double precision", "float4": "real", "varchar": "character varying",
                 "char": "character", "bpchar": "character", "timestamptz": "timestamp with time zone",
                 "timestamp": "timestamp without time zone", "timetz": "time with time zone",
                 "time": "time without time zone", "varbit": "bit varying", "decimal": "numeric"}
_MULTIWORD = ("double precision", "character varying", "bit varying", "with time zone", "without time zone")
_MODES = {"in", "out", "inout", "variadic"}


def function_name(signature: str) -> str:
    """The unqualified name of a signature or a declaration's `name(args)`."""
    return signature.split("(", 1)[0].strip().split(".")[-1].strip('"')


def argument_types(text: str) -> tuple[str, ...]:
    """The input argument types of a declaration's or a signature's parenthesised
    list, normalised (names, modes and defaults dropped; OUT arguments left out,
    as regprocedure does)."""
    out = []
    depth, piece, pieces = 0, "", []
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            pieces.append(piece)
            piece = ""
        else:
            piece += ch
    pieces.append(piece)
    for raw in pieces:
        arg = re.split(r"\s+(?:DEFAULT\b|=)", raw.strip(), maxsplit=1, flags=re.IGNORECASE)[0].strip()
        if not arg:
            continue
        words = arg.split()
        if words[0].lower() in _MODES:
            if words[0].lower() == "out" or len(words) == 1:
                continue
            words = words[1:]
        typ = " ".join(words).lower().replace('"', "")
        if len(words) > 1 and not any(typ.startswith(m) or typ.endswith(m) for m in _MULTIWORD) \
                and not typ.split()[0] in _TYPE_ALIASES.values():
            typ = " ".join(words[1:]).lower().replace('"', "")      # the first word is the argument's name
        typ = re.sub(r"\s*\(.*?\)", "", typ).split(".")[-1].strip()   # typmods, schema
        array = typ.endswith("[]")
        base = typ.removesuffix("[]").strip()
        out.append(_TYPE_ALIASES.get(base, base) + ("[]" if array else ""))
    return tuple(out)


class Requirement(Value):
    """One entry of the control file's `requires`."""
    __slots__ = ("name", "control", "available")

    def __init__(self, name: str, control: str, available: bool):
        self.name = name
        self.control = control          # the control file it needs
        self.available = available


class ExtensionCheck(Record):
    """What CREATE EXTENSION name (its default version) would find."""
    __slots__ = ("name", "control", "error", "script_dir", "version", "script", "installable", "requires",
                 "module", "superuser", "trusted", "alias_of", "scripts")

    def __init__(self, name: str, control: str, error: str | None = None, script_dir: str | None = None,
                 version: str | None = None, script: str | None = None, installable: bool = False,
                 requires: tuple[Requirement, ...] = (), module: str | None = None, superuser: bool = True,
                 trusted: bool = False, alias_of: str | None = None, scripts: tuple[str, ...] = ()):
        self.name = name
        self.control = control          # path of the control file
        self.error = error              # the control file cannot be read: why
        self.script_dir = script_dir    # where the scripts are (the control file's `directory`)
        self.version = version          # default_version
        self.script = script            # name--version.sql, if it exists
        self.installable = installable  # that script, or one reached by update scripts, exists
        self.requires = requires
        self.module = module            # module_pathname
        self.superuser = superuser      # only superusers may create it (the default)...
        self.trusted = trusted          # ...unless it is trusted (PostgreSQL 13+)
        self.alias_of = alias_of        # not installable, but another name's control file under a versioned name
        self.scripts = scripts          # the "V" and "A--B" of its name--V.sql and name--A--B.sql

    def no_update_path(self, start: str) -> str:
        """ALTER EXTENSION UPDATE's error when no chain of scripts leads to the default version."""
        return (f'extension "{self.name}" has no update path from version "{start}" to version '
                f'"{self.version}"')

    @property
    def not_installable(self) -> str:
        """CREATE EXTENSION's error when no script reaches the default version (extension.c, 12-19)."""
        return f'extension "{self.name}" has no installation script nor update path for version "{self.version}"'

    @property
    def alias_note(self) -> str:
        """What a DBA needs to know of an alias (nothing to act on: the extension is there under its name)."""
        return (f"another name for {self.alias_of} {self.version} (its control file under a versioned name, as "
                f"Debian ships it), with no scripts of its own: CREATE EXTENSION {self.alias_of} is the way; "
                f'CREATE EXTENSION "{self.name}" fails: {self.not_installable}')

    def update_scripts(self, start: str) -> list[str] | None:
        """The scripts ALTER EXTENSION name UPDATE runs from version `start` to the
        default version, in order; None if there is no path (extension.c find_update_path)."""
        versions = _update_path(self.scripts, start, self.version)
        if versions is None:
            return None
        steps = zip([start] + versions, versions)
        return [os.path.join(self.script_dir, f"{self.name}--{a}--{b}.sql") for a, b in steps]

    def script_functions(self) -> list[CFunction]:
        """The C functions the install script declares (read only when asked: audit does not)."""
        return c_functions_in_script(_read_script(self.script), self.module) if self.script else []


_CONTROL_FILES = filestate.FileCache(1024)


def _parameters(control: str) -> dict[str, str]:
    if not filestate.state(control).is_regular:       # a FIFO would block the read
        raise OSError(errno.EINVAL, "not a regular file")
    return _CONTROL_FILES.get(control, lambda _state: read_control(control))


SYSTEM = "$system"


def control_directories(server: Server) -> list[str]:
    """Where CREATE EXTENSION looks for name.control, in order.

    Before PostgreSQL 18, only the share directory's extension/.  From 18
    (extension.c get_extension_control_directories), each entry of
    extension_control_path with "/extension" appended, "$system" standing for
    that one; an empty setting is "$system"."""
    system = os.path.join(server.sharedir, "extension")
    if server.major < 18 or not server.extension_control_path:
        return [system]
    return [system if piece == SYSTEM else os.path.normpath(os.path.join(piece, "extension"))
            for piece in server.extension_control_path.split(":")]


# find_in_paths() (18+), checked as the search reaches the entry (SQLSTATE 42602).
RELATIVE_CONTROL_PATH = 'component in parameter "extension_control_path" is not an absolute path'


def find_control(name: str, server: Server) -> tuple[str | None, str | None]:
    """(the control file CREATE EXTENSION name reads, or the error it raises instead)."""
    dirs = control_directories(server)
    for directory in dirs:
        if not os.path.isabs(directory):
            return None, RELATIVE_CONTROL_PATH
        path = os.path.join(directory, f"{name}.control")
        st = filestate.state(path)
        if not st.error and not st.is_dir:          # pg_file_exists()
            return path, None
    if server.major >= 18:
        return None, f'extension "{name}" is not available'
    return None, (f'could not open extension control file "{dirs[0]}/{name}.control": '
                  f"{os.strerror(errno.ENOENT)}")


def check_extension(name: str, server: Server, listings: dict | None = None) -> ExtensionCheck:
    """listings: script directories already listed by the caller (most extensions share one)."""
    control, missing = find_control(name, server)
    if control is None:
        return ExtensionCheck(name, f"{name}.control", missing)
    directory = os.path.dirname(control)
    try:
        params = _parameters(control)
    except OSError as exc:
        return ExtensionCheck(name, control, f"cannot read {control}: {exc.strerror or os.strerror(exc.errno)}")
    # get_extension_script_directory(): a relative `directory` is taken from the
    # control file's base (the share directory, or the extension_control_path entry).
    script_dir = params.get("directory") or directory
    base = directory.removesuffix("/extension")
    script_dir = script_dir if os.path.isabs(script_dir) else os.path.join(base, script_dir)
    version = params.get("default_version")
    if version:
        # read_extension_aux_control_file(): name--version.control, beside the
        # scripts, overrides the primary file's parameters for that version.
        aux = os.path.join(script_dir, f"{name}--{version}.control")
        if filestate.state(aux).is_regular:
            try:
                extra = _parameters(aux)
            except OSError as exc:
                return ExtensionCheck(name, control, f"cannot read {aux}: {exc.strerror or os.strerror(exc.errno)}")
            fixed = [k for k in extra if k in ("directory", "default_version")]     # the first in the file
            if fixed:
                return ExtensionCheck(name, control, f'parameter "{fixed[0]}" cannot be set in a secondary '
                                      "extension control file")
            params = {**params, **extra}
    requires = tuple(_requirement(r, server) for r in (x.strip() for x in params.get("requires", "").split(","))
                     if r)
    module = params.get("module_pathname")
    script, installable, alias_of, scripts = None, False, None, ()
    listings = listings if listings is not None else {}
    if version:
        listing = _listing(script_dir, listings)
        scripts = tuple(listing.get(name, ())) if listing is not None else ()
        installable = version in _reachable(scripts)
        direct = os.path.join(script_dir, f"{name}--{version}.sql")
        script = direct if filestate.state(direct).is_regular else None
        if not installable and listing is not None and not scripts:
            alias_of = _aliased(name, params, server, listings)
    return ExtensionCheck(name, control, None, script_dir, version, script, installable, requires, module,
                          _bool(params.get("superuser"), True), _bool(params.get("trusted"), False), alias_of,
                          scripts)


VERSIONED_NAME = re.compile(r"^(.+)-[0-9][0-9.]*$")


def _aliased(name: str, params: dict[str, str], server: Server, listings: dict) -> str | None:
    """The extension a script-less control file repeats under a versioned name.

    Debian's PostGIS packages install postgis-3.control beside postgis.control
    (the same default_version and module_pathname) and no postgis-3--*.sql:
    CREATE EXTENSION "postgis-3" fails, CREATE EXTENSION postgis works."""
    m = VERSIONED_NAME.match(name)
    if m is None:
        return None
    base = m.group(1)
    try:
        control, _missing = find_control(base, server)
        other = _parameters(control) if control else {}
    except OSError:
        return None
    if any(other.get(k) != params.get(k) for k in ("default_version", "module_pathname")):
        return None
    return base if check_extension(base, server, listings).installable else None


def _bool(text: str | None, default: bool) -> bool:
    """parse_bool() of a control file parameter (an unreadable value: the default)."""
    if text is None:
        return default
    value = text.strip().lower()
    if value in ("true", "on", "yes", "1") or (len(value) > 1 and "true".startswith(value)):
        return True
    if value in ("false", "off", "no", "0") or (len(value) > 1 and "false".startswith(value)):
        return False
    return default


def create_permission_error(ext: ExtensionCheck, is_superuser: bool, can_create: bool, major: int) -> PgError | None:
    """extension.c execute_extension_script(): who may CREATE EXTENSION.

    A trusted extension (13+) needs CREATE on the current database; any
    other with superuser = true (the default) needs a superuser."""
    if not ext.superuser or is_superuser:
        return None
    trusted = ext.trusted and major >= 13
    if trusted and can_create:
        return None
    hint = ("Must have CREATE privilege on current database to create this extension." if trusted
            else "Must be superuser to create this extension.")
    return PgError(INSUFFICIENT_PRIVILEGE, f'permission denied to create extension "{ext.name}"', hint=hint)


def _requirement(name: str, server: Server) -> Requirement:
    control, _missing = find_control(name, server)
    return Requirement(name, control or f"{name}.control", control is not None)


def _read_script(path: str) -> str:
    try:
        with open(rootfs.host(path), encoding="utf-8", errors="replace") as f:
            return f.read(MAX_SCRIPT)
    except OSError:
        return ""


def _listing(script_dir: str, listings: dict) -> dict[str, list[str]] | None:
    if script_dir not in listings:
        listings[script_dir] = _scripts_by_extension(script_dir)
    return listings[script_dir]


def _reachable(middles: Sequence[str]) -> set[str]:
    """Versions a base script name--V.sql installs, directly or through name--A--B.sql updates."""
    base, updates = set(), {}
    for middle in middles:
        parts = middle.split("--")
        if len(parts) == 1:
            base.add(parts[0])
        elif len(parts) == 2:
            updates.setdefault(parts[0], set()).add(parts[1])
    seen, todo = set(base), list(base)
    while todo:
        for nxt in updates.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


class UpdateCheck(Value):
    """What ALTER EXTENSION name UPDATE (to the default version) would meet."""
    __slots__ = ("name", "start", "target", "scripts", "error", "failing")

    def __init__(self, name: str, start: str, target: str, scripts: tuple[str, ...], error: PgError | None = None,
                 failing: str | None = None):
        self.name = name
        self.start = start              # the version created in this database
        self.target = target            # the control file's default_version
        self.scripts = scripts          # the update scripts, in order
        self.error = error              # the server's error, word for word (None: it works)
        self.failing = failing          # the function whose CREATE FUNCTION fails, if that is the error


def check_update(ext: ExtensionCheck, start: str, server: Server, predict) -> UpdateCheck | None:
    """None if the extension is at its default version.  predict: engine.predict.predict_load
    (each update script's CREATE FUNCTION ... LANGUAGE C loads its library, as a superuser)."""
    if not ext.version or start == ext.version:
        return None
    scripts = ext.update_scripts(start)
    if scripts is None:
        return UpdateCheck(ext.name, start, ext.version, (),
                           PgError(INVALID_PARAMETER_VALUE, ext.no_update_path(start)))
    for script in scripts:
        for f in c_functions_in_script(_read_script(script), ext.module):
            interrupts.check()
            p = predict(f.library, server.replace(is_superuser=True), f.symbol)
            if p.will_load is False:
                return UpdateCheck(ext.name, start, ext.version, tuple(scripts), p.error, f.signature)
    return UpdateCheck(ext.name, start, ext.version, tuple(scripts))


def _update_path(middles: Sequence[str], start: str, target: str) -> list[str] | None:
    """find_update_path(): the shortest chain of name--A--B.sql from start to
    target (the versions after start), a tie going to the predecessor whose
    name sorts first (strcmp, as extension.c breaks it); [] when start is target."""
    if start == target:
        return []
    edges: dict[str, list[str]] = {}
    for middle in middles:
        parts = middle.split("--")
        if len(parts) == 2:
            edges.setdefault(parts[0], []).append(parts[1])
    distance, previous, frontier = {start: 0}, {}, [start]
    while frontier and target not in distance:
        following = []
        for version in sorted(frontier, key=lambda v: v.encode()):
            for nxt in edges.get(version, ()):
                if nxt not in distance:
                    distance[nxt] = distance[version] + 1
                    previous[nxt] = version
                    following.append(nxt)
                elif distance[nxt] == distance[version] + 1 and version.encode() < previous[nxt].encode():
                    previous[nxt] = version
        frontier = following
    if target not in distance:
        return None
    path = [target]
    while previous.get(path[-1]) not in (None, start):
        path.append(previous[path[-1]])
    return path[::-1]


def _scripts_by_extension(script_dir: str) -> dict[str, list[str]] | None:
    """name -> the "V" or "A--B" of every name--V.sql / name--A--B.sql (names cannot contain "--")."""
    filestate.state(script_dir)          # an added or removed script changes the directory
    try:
        files = os.listdir(rootfs.host(script_dir))
    except OSError:
        return None
    out: dict[str, list[str]] = {}
    for f in files:
        name, sep, rest = f.partition("--")
        if sep and rest.endswith(".sql"):
            out.setdefault(name, []).append(rest[:-4])
    return out


def declaring_extensions(name: str, server: Server) -> list[tuple[str, CFunction]]:
    """The C functions called `name` that an available extension's default install
    script declares, with the extension (scripts without the name are not parsed)."""
    found = []
    listings: dict = {}
    for extension in available_extensions(server):
        interrupts.check()
        ext = check_extension(extension, server, listings)
        if ext.script is None:
            continue
        text = _read_script(ext.script)
        if name not in text:
            continue
        found += [(extension, f) for f in c_functions_in_script(text, ext.module) if function_name(f.signature) == name]
    return found


def available_extensions(server: Server) -> list[str]:
    """The names of every control file, sorted (the directory's state noted)."""
    # pg_available_extensions: the first directory holding a name wins; name--version.control
    # files are secondary control files.
    names = [os.path.basename(p)[:-len(".control")] for d in control_directories(server) if os.path.isabs(d)
             for p in files_in(d, ".control")]
    return sorted(n for n in dict.fromkeys(names) if "--" not in n)


def files_in(directory: str, suffix: str) -> list[str]:
    """glob(directory/*suffix), sorted.  The directory's state is noted: adding
    or removing an entry changes it."""
    if filestate.state(directory).error:
        return []
    try:
        names = os.listdir(rootfs.host(directory))
    except OSError:
        return []
    return sorted(os.path.join(directory, n) for n in names if n.endswith(suffix) and not n.startswith("."))
