"""audit(): every library this server or this database may load, checked once.

Covers the C functions of the database (grouped by library), the preload
settings in the order the server loads them, every available extension's
control file, every shared object in pkglibdir, and stale code still mapped
in this backend.  Pure: it works from a Server and plain lists; the adapter
(pgdl.backend) gathers them.
"""

from __future__ import annotations

import os
from collections import Counter

from .. import filestate, interrupts
from ..postgres.extensions import available_extensions, check_extension, check_update, files_in
from ..engine.contexts import boot, in_context
from ..engine.predict import Prediction, check_entry_point, predict_load
from ..engine.trace import Stage
from ..postgres.pg_init import Verdict
from ..record import Value
from ..server import CFunction, Context, SHARED_OBJECT, Server
from .extension_update import update_story
from .status import ERROR, OK, WARNING


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


def audit(server: Server, functions: list[CFunction], installed: dict[str, str] | None = None) -> tuple[AuditRow, ...]:
    """`functions`: the database's C functions; `installed`: its extensions and their
    versions (each is checked for ALTER EXTENSION UPDATE); the preload settings are server.preloads.

    Every file and directory it reads is noted (pgdl.filestate): inside a call
    the whole answer is remembered and reused while none of them changed."""
    installed = installed or {}
    key = (server.fingerprint, tuple(functions), tuple(sorted(installed.items())))
    return _AUDITS.get(key, lambda: tuple(_audit(server, functions, installed)))


PRELOAD_ONLY_HINT = ("Its _PG_init() refuses outside shared_preload_libraries: list it there and restart the "
                     "server before using it.")


def _audit(server: Server, functions: list[CFunction], installed: dict[str, str]) -> list[AuditRow]:
    # Libraries are loaded whoever calls the function or starts the session,
    # so judge as the server itself does; local_preload_libraries alone is restricted.
    rows = _preloads(server)
    server = in_context(server).replace(is_superuser=True)
    used: set[str] = set()
    rows = _functions(functions, server, used) + rows
    rows += _extensions(server, used, installed) + _pkglibdir(server, used) + _stale(server)
    counts = Counter(r.status for r in rows)
    worst = ERROR if counts[ERROR] else WARNING if counts[WARNING] else OK
    summary = ", ".join(f"{counts[s]} {s}" for s in (OK, WARNING, ERROR))
    return rows + [AuditRow("summary", "audit", worst, summary)]


def _failure(name: str, p: Prediction) -> tuple[str, str]:
    """The server's error for a library that will not load, and a hint."""
    e = p.error
    return (e.message + (f" ({e.detail})" if e.detail else ""),
            e.hint or f"See SELECT * FROM pgdl.diagnose('{name}').")


def _library_row(kind: str, subject: str, name: str, p: Prediction, used: set[str] | None = None) -> AuditRow:
    """used: the libraries something uses; one that only refuses in its _PG_init() and that
    nothing uses is a warning (a stock host ships sepgsql.so)."""
    if p.will_load is None:
        why = p.loading.uncertain if p.loading is not None else "not judged"
        if p.error is None:
            return AuditRow(kind, subject, WARNING, f"{name}: not judged: {why}",
                            f"See SELECT * FROM pgdl.diagnose('{name}').", library=name)
        return AuditRow(kind, subject, ERROR, f"{name} may fail ({why}), with: {_failure(name, p)[0]}",
                        _failure(name, p)[1], library=name)
    if p.will_load:
        unjudged = p.pg_init is not None and p.pg_init.verdict is Verdict.NOT_JUDGED
        if unjudged:
            return AuditRow(kind, subject, WARNING, f"{name}: its _PG_init() could not be judged: "
                            f"{p.pg_init.reason}", f"See SELECT * FROM pgdl.diagnose('{name}').", library=name)
        return AuditRow(kind, subject, OK, f"{name} will load ({p.libname})", library=name)
    if used is not None and p.stage is Stage.INIT and p.libname not in used:
        return AuditRow(kind, subject, WARNING, f"{_failure(name, p)[0]} (nothing uses it)", PRELOAD_ONLY_HINT,
                        library=name)
    return AuditRow(kind, subject, ERROR, *_failure(name, p), library=name)


def _functions(functions: list[CFunction], server: Server, used: set[str]) -> list[AuditRow]:
    rows = []
    by_library: dict[str, list[CFunction]] = {}
    for f in functions:
        by_library.setdefault(f.library, []).append(f)
    for library, group in sorted(by_library.items()):
        p = predict_load(library, server)
        used.add(p.libname or library)
        rows.append(_library_row("library", library, library, p))
        for f in group:
            interrupts.check()
            if p.will_load is False:
                rows.append(AuditRow("function", f.signature, ERROR, f"its library {library} will not load",
                                     library=library, symbol=f.symbol))
                continue
            e = check_entry_point(p, f.symbol, server)
            rows.append(AuditRow("function", f.signature, ERROR if e else OK,
                                 e.message if e else f"entry point {f.symbol} found",
                                 e.hint if e else None, library, f.symbol))
    return rows


def _preloads(server: Server) -> list[AuditRow]:
    """shared_preload_libraries as the next server start loads them, then
    session_ and local_preload_libraries as a new session does: in order, up to
    the first that fails (FATAL: nothing after it is loaded)."""
    start = boot(server.replace(context=Context.SERVER_START))
    steps = list(start.steps)
    if start.failed is None:
        steps += [s for s in boot(server.replace(context=Context.NEW_SESSION)).steps
                  if s.setting != "shared_preload_libraries"]
    rows = []
    for step in steps:
        row = _library_row(step.setting, step.name, step.target, step.prediction)
        if step.prediction.will_load is False:
            stops = "the server does not start" if step.setting == "shared_preload_libraries" \
                else "new sessions fail to start"
            row = row.replace(message=f"{row.message}; {stops} (FATAL)")
        rows.append(row)
    return rows


def _extensions(server: Server, used: set[str], installed: dict[str, str]) -> list[AuditRow]:
    rows = []
    listings: dict = {}
    for name in available_extensions(server):
        ext = check_extension(name, server, listings)
        if ext.error is not None:
            rows.append(AuditRow("extension", name, ERROR, ext.error))
            continue
        problems = [(ERROR, f"requires {r.name}, which is not available", f"Install the {r.name} extension.")
                    for r in ext.requires if not r.available]
        if ext.alias_of is not None:
            rows.append(AuditRow("extension", name, OK, ext.alias_note, library=ext.module))
            continue
        if not ext.version:
            problems.append((ERROR, "no default_version in the control file", None))
        elif not ext.installable:
            problems.append((ERROR, f"CREATE EXTENSION fails: {ext.not_installable} (no script in "
                                    f"{ext.script_dir})", f"Install the {name} extension's scripts for {ext.version}."))
        if ext.module:
            p = predict_load(ext.module, server)
            if not p.will_load:
                row = _library_row("extension", name, ext.module, p, used)
                problems.append((row.status, row.message, row.hint))
        for status, message, hint in problems:
            rows.append(AuditRow("extension", name, status, message, hint, ext.module))
        if not problems:
            rows.append(AuditRow("extension", name, OK, f"version {ext.version} installable"
                                 + (f", {ext.module} will load" if ext.module else ""), library=ext.module))
        update = check_update(ext, installed[name], server, predict_load) if name in installed else None
        if update is not None:
            status, message, hint = update_story(update)
            rows.append(AuditRow("update", name, status, message, hint, ext.module))
    return rows


def _pkglibdir(server: Server, used: set[str]) -> list[AuditRow]:
    rows = []
    for path in files_in(server.pkglibdir, server.dlsuffix):
        rows.append(_library_row("pkglibdir", os.path.basename(path), path, predict_load(path, server), used))
    return rows


DELETED = " (deleted)"


def _stale(server: Server) -> list[AuditRow]:
    """Shared objects mapped in the process asked about that are no longer the file on disk.

    A session started before a package upgrade keeps running the old code
    until it reconnects; the postmaster, and so every new session, keeps the
    old shared_preload_libraries until a restart.
    """
    who = "this backend" if server.context is Context.THIS_SESSION else "the postmaster (so every new session)"
    rows = []
    for obj in server.loaded:
        path = obj.path[:-len(DELETED)] if obj.path.endswith(DELETED) else obj.path
        if path != server.executable and not SHARED_OBJECT.search(path):
            continue
        st = filestate.state(path)
        replaced = st.identity != (obj.dev, obj.inode)
        if obj.path.endswith(DELETED) or replaced:
            rows.append(AuditRow("stale", path, WARNING,
                                 f"{who} runs a copy of {path} that has since been replaced or removed",
                                 "Sessions started before the upgrade run old code: reconnect them; "
                                 "restart the server for shared_preload_libraries and the server binary.",
                                 library=path))
    # No count in the message: it differs between sessions, and audit_changes compares messages.
    return rows or [AuditRow("stale", who, OK, "every mapped shared object is the file now on disk")]
