"""audit(): every library this server or this database may load, checked once.

Covers the C functions of the database (grouped by library), the preload
settings in the order the server loads them, every available extension's
control file, every shared object in pkglibdir, and stale code still mapped
in this backend.  Pure: it works from a Server and plain lists; the adapter
(pgdl.backend) gathers them.
"""

from __future__ import annotations

import os
import re
from collections import Counter

from .. import filestate, interrupts
from ..postgres.extensions import CFunction, available_extensions, check_extension, files_in
from ..engine.predict import Prediction, check_entry_point, predict_load
from ..record import Value
from ..server import Server
from .status import ERROR, OK, WARNING


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
    listings: dict = {}
    for name in available_extensions(server):
        ext = check_extension(name, server, listings)
        if ext.error is not None:
            rows.append(AuditRow("extension", name, ERROR, ext.error))
            continue
        problems = [(ERROR, f"requires {r.name}, which is not available", f"Install the {r.name} extension.")
                    for r in ext.requires if not r.available]
        if not ext.version:
            problems.append((ERROR, "no default_version in the control file", None))
        elif not ext.installable:
            problems.append((ERROR, f"no install script or update path for default version {ext.version} in "
                                    f"{ext.script_dir}", None))
        if ext.module:
            p = predict_load(ext.module, server)
            if not p.will_load:
                problems.append((ERROR, *_failure(ext.module, p)))
        for status, message, hint in problems:
            rows.append(AuditRow("extension", name, status, message, hint, ext.module))
        if not problems:
            rows.append(AuditRow("extension", name, OK, f"version {ext.version} installable"
                                 + (f", {ext.module} will load" if ext.module else ""), library=ext.module))
    return rows


def _pkglibdir(server: Server) -> list[AuditRow]:
    rows = []
    for path in files_in(server.pkglibdir, server.dlsuffix):
        rows.append(_library_row("pkglibdir", os.path.basename(path), path, predict_load(path, server)))
    return rows


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
