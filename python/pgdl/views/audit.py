"""audit(): every library this server or this database may load, checked once.

Covers the C functions of the database (grouped by library), the preload
settings in the order the server loads them, every available extension's
control file, every shared object in pkglibdir, and stale code still mapped
in this backend.  Pure: it works from a Server and plain lists; the adapter
(pgdl.backend) gathers them.
"""

from __future__ import annotations

import errno
import os
import re
from collections import Counter

from .. import filestate, interrupts
from ..postgres.extensions import CFunction, read_control
from ..engine.predict import Prediction, check_entry_point, predict_load
from ..record import Value
from ..server import Server

OK, WARNING, ERROR = "ok", "warning", "error"

# Server load order: postmaster start, then each backend's start (miscinit.c).
PRELOAD_SETTINGS = ("shared_preload_libraries", "session_preload_libraries", "local_preload_libraries")


class AuditRow(Value):
    """One finding of audit(): a row of pgdl.audit()."""
    __slots__ = ("kind", "subject", "status", "message", "hint", "library", "symbol")

    def __init__(self, kind: str, subject: str, status: str, message: str, hint: str | None = None,
                 library: str | None = None, symbol: str | None = None):
        self.kind = kind
        self.subject = subject
        self.status = status
        self.message = message
        self.hint = hint
        self.library = library
        self.symbol = symbol


_CONTROL_FILES = filestate.FileCache(1024)


def _read_control(path: str) -> dict[str, str]:
    """read_control(), remembered while the file is unchanged."""
    return _CONTROL_FILES.get(path, lambda _state: read_control(path))


_AUDITS = filestate.Memo(4)


def audit(server: Server, functions: list[CFunction], settings: dict[str, str]) -> list[AuditRow]:
    """`functions`: the database's C functions; `settings`: the preload settings' values.

    Every file and directory it reads is noted (pgdl.filestate): inside a call
    the whole answer is remembered and reused while none of them changed."""
    key = (server.fingerprint, tuple(functions), tuple(sorted(settings.items())))
    return _AUDITS.get(key, lambda: _audit(server, functions, settings))


def _audit(server: Server, functions: list[CFunction], settings: dict[str, str]) -> list[AuditRow]:
    # Libraries are loaded whoever calls the function or starts the session,
    # so judge as the server itself does; local_preload_libraries alone is restricted.
    server = server.replace(is_superuser=True)
    rows = _functions(functions, server) + _preloads(settings, server) + _extensions(server)
    rows += _pkglibdir(server) + _stale(server)
    counts = Counter(r.status for r in rows)
    worst = ERROR if counts[ERROR] else WARNING if counts[WARNING] else OK
    summary = ", ".join(f"{counts[s]} {s}" for s in (OK, WARNING, ERROR))
    return rows + [AuditRow("summary", "audit", worst, summary)]


def _failure(name: str, p: Prediction) -> tuple[str, str]:
    """The server's error for a library that will not load, and a hint."""
    e = p.error
    return (e.message + (f" ({e.detail})" if e.detail else ""),
            e.hint or f"See SELECT * FROM pgdl.diagnose('{name}').")


def _library_row(kind: str, subject: str, name: str, p: Prediction) -> AuditRow:
    if p.will_load:
        return AuditRow(kind, subject, OK, f"{name} will load ({p.libname})", library=name)
    return AuditRow(kind, subject, ERROR, *_failure(name, p), library=name)


def _functions(functions: list[CFunction], server: Server) -> list[AuditRow]:
    rows = []
    by_library: dict[str, list[CFunction]] = {}
    for f in functions:
        by_library.setdefault(f.library, []).append(f)
    for library, group in sorted(by_library.items()):
        p = predict_load(library, server)
        rows.append(_library_row("library", library, library, p))
        for f in group:
            interrupts.check()
            if not p.will_load:
                rows.append(AuditRow("function", f.signature, ERROR, f"its library {library} will not load",
                                     library=library, symbol=f.symbol))
                continue
            e = check_entry_point(p, f.symbol, server)
            rows.append(AuditRow("function", f.signature, ERROR if e else OK,
                                 e.message if e else f"entry point {f.symbol} found",
                                 e.hint if e else None, library, f.symbol))
    return rows


def split_library_list(value: str) -> list[str]:
    """SplitDirectoriesString(): comma-separated, trimmed, optionally "double-quoted"."""
    items = re.findall(r'\s*("(?:[^"]|"")*"|[^,]*)\s*(?:,|$)', value or "")
    names = [i[1:-1].replace('""', '"') if i.startswith('"') else i.strip() for i in items]
    return [n for n in names if n]


def _preloads(settings: dict[str, str], server: Server) -> list[AuditRow]:
    rows = []
    for setting in PRELOAD_SETTINGS:
        for name in split_library_list(settings.get(setting, "")):
            target, as_server = name, server
            if setting == "local_preload_libraries":
                # dfmgr.c load_libraries(): restricted to $libdir/plugins/.
                if "/" not in name:
                    target = f"$libdir/plugins/{name}"
                as_server = server.replace(is_superuser=False)
            rows.append(_library_row(setting, name, target, predict_load(target, as_server)))
    return rows


def _extensions(server: Server) -> list[AuditRow]:
    rows = []
    directory = os.path.join(server.sharedir, "extension")
    listings: dict[str, dict[str, list[str]] | None] = {}
    for control in _files(directory, ".control"):
        name = os.path.basename(control)[:-len(".control")]
        try:
            if not _is_file(control):           # a FIFO would block the read
                raise OSError(errno.EINVAL, "not a regular file")
            params = _read_control(control)
        except OSError as exc:
            rows.append(AuditRow("extension", name, ERROR, f"cannot read {control}: {exc.strerror}"))
            continue
        problems = []
        for req in (r.strip() for r in params.get("requires", "").split(",")):
            if req and not _is_file(os.path.join(directory, f"{req}.control")):
                problems.append((ERROR, f"requires {req}, which is not available", f"Install the {req} extension."))
        script_dir = params.get("directory") or directory
        script_dir = os.path.join(server.sharedir, script_dir) if not os.path.isabs(script_dir) else script_dir
        version = params.get("default_version")
        if not version:
            problems.append((ERROR, "no default_version in the control file", None))
        elif not _installable(script_dir, name, version, listings):
            problems.append((ERROR, f"no install script or update path for default version {version} in {script_dir}",
                             None))
        module = params.get("module_pathname")
        if module:
            p = predict_load(module, server)
            if not p.will_load:
                problems.append((ERROR, *_failure(module, p)))
        for status, message, hint in problems:
            rows.append(AuditRow("extension", name, status, message, hint, module))
        if not problems:
            rows.append(AuditRow("extension", name, OK, f"version {version} installable"
                                 + (f", {module} will load" if module else ""), library=module))
    return rows


def _installable(script_dir: str, name: str, version: str, listings: dict[str, dict[str, list[str]] | None]) -> bool:
    """A name--V.sql script for `version`, or one reachable from a base script by name--A--B.sql updates.

    listings: script directories already read in this audit (most extensions share one)."""
    if script_dir not in listings:
        listings[script_dir] = _scripts_by_extension(script_dir)
    if listings[script_dir] is None:
        return False
    base, updates = set(), {}
    for middle in listings[script_dir].get(name, []):
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
    return version in seen


def _scripts_by_extension(script_dir: str) -> dict[str, list[str]] | None:
    """name -> the "V" or "A--B" of every name--V.sql / name--A--B.sql (names cannot contain "--")."""
    filestate.state(script_dir)          # an added or removed script changes the directory
    try:
        files = os.listdir(script_dir)
    except OSError:
        return None
    out: dict[str, list[str]] = {}
    for f in files:
        name, sep, rest = f.partition("--")
        if sep and rest.endswith(".sql"):
            out.setdefault(name, []).append(rest[:-4])
    return out


def _pkglibdir(server: Server) -> list[AuditRow]:
    rows = []
    for path in _files(server.pkglibdir, server.dlsuffix):
        rows.append(_library_row("pkglibdir", os.path.basename(path), path, predict_load(path, server)))
    return rows


def _files(directory: str, suffix: str) -> list[str]:
    """glob(directory/*suffix), sorted.  The directory's state is noted: adding
    or removing an entry changes it."""
    if filestate.state(directory).error:
        return []
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(os.path.join(directory, n) for n in names if n.endswith(suffix) and not n.startswith("."))


def _is_file(path: str) -> bool:
    """os.path.isfile(), noted."""
    return filestate.state(path).is_regular


DELETED = " (deleted)"
SHARED_OBJECT = re.compile(r"\.so(\.[\d.]+)?$")


def _stale(server: Server) -> list[AuditRow]:
    """Shared objects mapped in this backend that are no longer the file on disk.

    A session started before a package upgrade keeps running the old code
    until it reconnects (the postmaster, for shared_preload_libraries, until a restart).
    """
    rows = []
    for obj in server.loaded:
        path = obj.path[:-len(DELETED)] if obj.path.endswith(DELETED) else obj.path
        if path != server.executable and not SHARED_OBJECT.search(path):
            continue
        st = filestate.state(path)
        replaced = st.identity != (obj.dev, obj.inode)
        if obj.path.endswith(DELETED) or replaced:
            rows.append(AuditRow("stale", path, WARNING,
                                 f"this backend runs a copy of {path} that has since been replaced or removed",
                                 "Sessions started before the upgrade run old code: reconnect them; "
                                 "restart the server for shared_preload_libraries and the server binary.",
                                 library=path))
    # No count in the message: it differs between sessions, and audit_changes compares messages.
    return rows or [AuditRow("stale", "this backend", OK, "every mapped shared object is the file now on disk")]
