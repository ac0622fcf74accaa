"""The PL/Python adapter: pgdl._run() hands every SQL function's call here.

It checks the arguments, describes the server from the running backend
(pgdl.adapters.describe), asks the catalog (pgdl.adapters.catalog), runs the
view, and turns its rows or its error into JSON text of the database's
encoding (pgdl.adapters.session).  Only the adapters know about plpy.
"""

from __future__ import annotations

import gc
import json
from contextlib import contextmanager


@contextmanager
def _without_collection():
    """No cyclic garbage collection inside the block.

    Importing pgdl and each call build what the backend then keeps (code,
    classes, ELF tables, remembered answers) and make little garbage, almost
    none of it cyclic: the collections that the number of new objects sets off
    would only re-scan them (about 5 ms of the import, 2 % of a cold audit).
    Cycles made meanwhile are collected afterwards."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@contextmanager
def _english_messages():
    """LC_MESSAGES=C inside the block.

    pgdl builds the server's text in English, the message catalogs' msgids,
    and words it in the session's language at the end
    (pgdl.postgres.translate); but os.strerror() follows the backend's
    LC_MESSAGES, which PostgreSQL sets from lc_messages."""
    import locale
    before = locale.setlocale(locale.LC_MESSAGES)
    if before in ("C", "POSIX"):
        yield
        return
    locale.setlocale(locale.LC_MESSAGES, "C")
    try:
        yield
    finally:
        try:
            locale.setlocale(locale.LC_MESSAGES, before)
        except locale.Error:             # the locale went away meanwhile: PostgreSQL sets it again on SET
            pass


with _without_collection():
    from .. import filestate, interrupts, persist
    from ..errors import INTERNAL_ERROR, INVALID_PARAMETER_VALUE, UNDEFINED_FUNCTION, PgErrorRaised, UserError
    from ..server import Context
    from .catalog import Catalog
    from .context import context_argument, in_context
    from .describe import callers_setting, describe_server, read_settings
    from .servertext import sql_text
    from .session import session
    from .validate import name_argument, target_argument


def run(plpy, function: str | None, args_json: str | None, dynamic_library_path: str | None = None) -> str:
    """Entry point for every SQL function (through pgdl._run).

    dynamic_library_path: the calling session's, when the call runs with another
    one (pgdl._typed_searchable: a value PostgreSQL 18 cannot search).

    Returns JSON: {"rows": [...]} or {"error": {...}}, never raises, so the
    SQL side reports errors with the server's own wording and no traceback.
    """
    try:
        calls = session(plpy)
    except plpy.SPIError as exc:        # cancelled before it began, say
        return json.dumps({"error": {"sqlstate": getattr(exc, "sqlstate", None) or INTERNAL_ERROR,
                                     "message": str(exc).encode("ascii", "backslashreplace").decode()}})
    try:
        handler = _function(function)
        args = _arguments(function, args_json, handler)
        with filestate.one_call(), persist.kept(), _without_collection(), _english_messages(), interrupts.polling(calls.poll), \
                callers_setting("dynamic_library_path", dynamic_library_path):
            rows = handler(plpy, *args)
        return _as_json(calls, rows)
    except interrupts.Interrupted as exc:
        return calls.error(exc.sqlstate, exc.message)
    except UserError as exc:
        return calls.error(exc.sqlstate, exc.message, hint=exc.hint)
    except PgErrorRaised as exc:
        err = exc.error
        return calls.error(err.sqlstate, err.message, err.detail, err.hint)
    except plpy.SPIError as exc:
        return calls.error(getattr(exc, "sqlstate", None) or INTERNAL_ERROR, calls.fs(str(exc)))
    except RecursionError:
        return calls.error(INTERNAL_ERROR, f"pgdl.{function}: input too deeply nested")
    except MemoryError:
        return calls.error("53200", f"pgdl.{function}: out of memory")
    except Exception:  # a bug in pgdl: the details go to the server log, not to the caller
        _log_bug(plpy, function)
        return calls.error(INTERNAL_ERROR, f"pgdl.{function} failed: internal error",
                           hint="This is a bug in pgdl; the server log has the details. "
                                "Please report it with the input that caused it.")


_WRITTEN: list = [None, None, ""]       # the last remembered answer written, the session, its JSON


def _as_json(calls, rows) -> str:
    """A view's records as pgdl._run()'s JSON: their fields are the columns.
    A remembered answer handed out again (the same tuple of immutable
    records: the same rows) is written once."""
    if isinstance(rows, tuple) and rows is _WRITTEN[0] and calls is _WRITTEN[1]:
        return _WRITTEN[2]
    text = calls.dumps({"rows": [dict(zip(row._fields, row._values())) for row in rows]})
    if isinstance(rows, tuple):
        _WRITTEN[:] = [rows, calls, text]
    return text


def _function(function):
    if function is None:
        raise UserError("function must not be NULL", sqlstate="22004")
    found = _FUNCTIONS.get(function)
    if found is None:
        raise UserError(f"pgdl has no function named {function!r}", sqlstate=UNDEFINED_FUNCTION,
                        hint="Call the functions of schema pgdl, such as pgdl.diagnose(); pgdl._run is internal.")
    return found


def _arguments(function: str, args_json: str | None, handler) -> list:
    """The JSON array of text arguments, checked against the handler's parameters."""
    code = handler.__code__
    most = code.co_argcount - 1                                  # after plpy
    least = most - len(handler.__defaults__ or ())
    try:
        args = json.loads(args_json) if args_json is not None else None
    except ValueError:
        args = None
    if (not isinstance(args, list) or not least <= len(args) <= most
            or not all(a is None or isinstance(a, str) for a in args)):
        count = str(most) if least == most else f"{least} to {most}"
        raise UserError(f"pgdl.{function} takes a JSON array of {count} text arguments",
                        sqlstate=INVALID_PARAMETER_VALUE)
    return args


def _log_bug(plpy, function) -> None:
    import traceback
    try:
        plpy.log(f"pgdl.{function}: internal error\n{traceback.format_exc()}")
    except Exception:     # the log is a courtesy: the caller still gets its error
        pass


# -- the SQL functions: arguments as pgdl._bytes() sends names ------------------

def _resolve(plpy, name):
    from ..views.resolve import resolve_rows      # each view imported on first use: keeps every first call light
    return resolve_rows(name_argument(name), describe_server(plpy))


def _check_magic(plpy, name):
    from ..views.check_magic import check_magic_rows
    return check_magic_rows(name_argument(name), describe_server(plpy))


def _described(plpy, context, role, preloads: bool = False, compared: bool = False):
    """This session's description, told which process and role are asked about.
    Without `context` (0.4.0's SQL functions): this session, as they answered.
    preloads: this session's preload settings are wanted even so; compared:
    the answer also looks at this session (diagnose), so keep what it has mapped.
    Otherwise another process's description leaves this session's mapped files
    out: what pgdl itself maps (its decoder, on first use) then changes no
    remembered answer's key."""
    context = context_argument(context, Context.THIS_SESSION)
    settings = read_settings(plpy)
    server = describe_server(plpy, settings, mapped=context is Context.THIS_SESSION or compared)
    if context is Context.THIS_SESSION and role is None and not preloads:
        return server
    return in_context(plpy, server, settings[1], context, role, settings[0]["current_user_name"])


def _predict_load(plpy, name, symbol=None, context=None, role=None):
    from ..views.predict_load import predict_load_row
    name = name_argument(name)
    symbol = None if symbol is None else name_argument(symbol, "symbol")
    return [predict_load_row(name, _described(plpy, context, role), symbol)]


def _dependencies(plpy, name, context=None, role=None):
    from ..views.dependencies import dependency_rows
    return dependency_rows(name_argument(name), _described(plpy, context, role))


def _diagnosis(plpy, target, search_path, context, role, view):
    """search_path: the caller's, to find a function signature as the caller would."""
    name = target_argument(name_argument(target, "target"))
    return view(name, sql_text(name, session(plpy).codec), _described(plpy, context, role, compared=True),
                Catalog(plpy, search_path))


def _diagnose(plpy, target, search_path=None, context=None, role=None):
    from ..views.diagnose import diagnose_rows
    return _diagnosis(plpy, target, search_path, context, role, diagnose_rows)


def _explain(plpy, target, search_path=None, context=None, role=None):
    from ..views.diagnose import diagnose
    from ..views.report import explain_lines
    return explain_lines(_diagnosis(plpy, target, search_path, context, role, diagnose))


def _tree(plpy, name, context=None, role=None):
    from ..views.dependencies import dependency_rows
    from ..views.report import tree_lines
    name = name_argument(name)
    server = _described(plpy, context, role)
    return tree_lines(name, dependency_rows(name, server), server)


def _audit(plpy, context=None, role=None):
    from ..views.audit import audit
    catalog = Catalog(plpy)
    return audit(_described(plpy, context, role, preloads=True), catalog.c_functions(), catalog.extension_versions())


def _upgrade_check(plpy, new_bindir):
    """This database's C functions and extensions, and the server's preload settings,
    judged by the installation in new_bindir (its files only)."""
    import os
    from ..views.upgrade_check import OldCluster, upgrade_check
    from .installation import installation
    from .packages import library_packages
    bindir = name_argument(new_bindir, "new_bindir")
    row, config = read_settings(plpy)
    old = describe_server(plpy, (row, config))
    catalog = Catalog(plpy)
    database = plpy.execute("SELECT pg_catalog.current_database()::pg_catalog.text AS d")[0]["d"]
    probins = {p: (database,) for p in catalog.loadable_libraries()}
    extensions = {e: (database,) for e in catalog.extensions()}
    shared = plpy.execute("SELECT pg_catalog.current_setting('shared_preload_libraries') AS s")[0]["s"]
    new = installation(bindir, environ=dict(os.environ))
    facts = OldCluster(probins, extensions, shared, (database,), library_packages(probins, old))
    return upgrade_check(facts, new.server, new.describe() + "; its environment taken to be this server's")


_FUNCTIONS = {"predict_load": _predict_load, "dependencies": _dependencies, "diagnose": _diagnose,
              "explain": _explain, "tree": _tree,
              "resolve": _resolve, "check_magic": _check_magic, "audit": _audit,
              "upgrade_check": _upgrade_check}
