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
    LC_MESSAGES, which PostgreSQL sets from lc_messages.  (The C module
    itself: the locale module's import costs a new backend 1.5 ms.)"""
    from _locale import LC_MESSAGES, Error, setlocale
    before = setlocale(LC_MESSAGES)
    if before in ("C", "POSIX"):
        yield
        return
    setlocale(LC_MESSAGES, "C")
    try:
        yield
    finally:
        try:
            setlocale(LC_MESSAGES, before)
        except Error:                    # the locale went away meanwhile: PostgreSQL sets it again on SET
            pass


with _without_collection():
    from .. import filestate, interrupts, persist, replies
    from ..errors import INTERNAL_ERROR, INVALID_PARAMETER_VALUE, UNDEFINED_FUNCTION, PgErrorRaised, UserError
    from ..server import Context
    from .catalog import Catalog
    from .context import context_argument, context_facts, in_context
    from .describe import callers_setting, describe_server, read_settings, server_facts, server_of
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
            return handler(plpy, *args)
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


def _as_json(calls, rows) -> str:
    """A view's records as pgdl._run()'s JSON: their fields are the columns."""
    return calls.dumps({"rows": [dict(zip(row._fields, row._values())) for row in rows]})


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
# Each view is imported when a reply is worked out, not when one kept is
# handed out again (pgdl.replies): a new backend's first call stays light.

class _Described:
    """A call's description of the server: the facts gathered from the backend
    (the key of its reply), and the Server built from them on first need."""

    __slots__ = ("facts", "context", "_server")

    def __init__(self, facts, context=None):
        self.facts, self.context, self._server = facts, context, None

    @property
    def server(self):
        if self._server is None:
            server = server_of(self.facts)
            self._server = server if self.context is None else in_context(server, self.context,
                                                                           self.facts.configured)
        return self._server


def _described(plpy, context, role, preloads: bool = False, compared: bool = False) -> _Described:
    """This session's description, told which process and role are asked about.
    Without `context` (0.4.0's SQL functions): this session, as they answered.
    preloads: this session's preload settings are wanted even so; compared:
    the answer also looks at this session (diagnose), so keep what it has mapped.
    Otherwise another process's description leaves this session's mapped files
    out: what pgdl itself maps (its decoder, on first use) then changes no
    remembered answer's key."""
    context = context_argument(context, Context.THIS_SESSION)
    facts = server_facts(plpy, read_settings(plpy), mapped=context is Context.THIS_SESSION or compared)
    if context is Context.THIS_SESSION and role is None and not preloads:
        return _Described(facts)
    return _Described(facts, context_facts(plpy, facts, context, role))


def _reply(plpy, call: tuple, described: _Described, view, catalog=None) -> str:
    """view(server, catalog)'s rows as JSON, kept (pgdl.replies) under the call and its facts."""
    calls = session(plpy)
    return replies.reply((call, described.facts, described.context),
                         lambda asked: _as_json(calls, view(described.server, asked)), catalog)


def _resolve(plpy, name):
    def view(server, _catalog):
        from ..views.resolve import resolve_rows
        return resolve_rows(name, server)
    name = name_argument(name)
    return _reply(plpy, ("resolve", name), _described(plpy, None, None), view)


def _check_magic(plpy, name):
    def view(server, _catalog):
        from ..views.check_magic import check_magic_rows
        return check_magic_rows(name, server)
    name = name_argument(name)
    return _reply(plpy, ("check_magic", name), _described(plpy, None, None), view)


def _predict_load(plpy, name, symbol=None, context=None, role=None):
    def view(server, _catalog):
        from ..views.predict_load import predict_load_row
        return [predict_load_row(name, server, symbol)]
    name = name_argument(name)
    symbol = None if symbol is None else name_argument(symbol, "symbol")
    return _reply(plpy, ("predict_load", name, symbol), _described(plpy, context, role), view)


def _dependencies(plpy, name, context=None, role=None):
    def view(server, _catalog):
        from ..views.dependencies import dependency_rows
        return dependency_rows(name, server)
    name = name_argument(name)
    return _reply(plpy, ("dependencies", name), _described(plpy, context, role), view)


def _tree(plpy, name, context=None, role=None):
    def view(server, _catalog):
        from ..views.dependencies import dependency_rows
        from ..views.report import tree_lines
        return tree_lines(name, dependency_rows(name, server), server)
    name = name_argument(name)
    return _reply(plpy, ("tree", name), _described(plpy, context, role), view)


def _diagnosis(plpy, call: str, target, search_path, context, role, rows) -> str:
    """search_path: the caller's, to find a function signature as the caller would."""
    name = target_argument(name_argument(target, "target"))
    text = sql_text(name, session(plpy).codec)
    return _reply(plpy, (call, name, search_path), _described(plpy, context, role, compared=True),
                  lambda server, catalog: rows(name, text, server, catalog), Catalog(plpy, search_path))


def _diagnose(plpy, target, search_path=None, context=None, role=None):
    def rows(name, text, server, catalog):
        from ..views.diagnose import diagnose_rows
        return diagnose_rows(name, text, server, catalog)
    return _diagnosis(plpy, "diagnose", target, search_path, context, role, rows)


def _explain(plpy, target, search_path=None, context=None, role=None):
    def rows(name, text, server, catalog):
        from ..views.diagnose import diagnose
        from ..views.report import explain_lines
        return explain_lines(diagnose(name, text, server, catalog))
    return _diagnosis(plpy, "explain", target, search_path, context, role, rows)


def _audit(plpy, context=None, role=None):
    def view(server, _catalog):
        from ..views.audit import audit
        return audit(server, functions, installed)
    catalog = Catalog(plpy)
    functions, installed = catalog.c_functions(), catalog.extension_versions()
    return _reply(plpy, ("audit", tuple(functions), tuple(sorted(installed.items()))),
                  _described(plpy, context, role, preloads=True), view)


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
    return _as_json(session(plpy), upgrade_check(facts, new.server, new.describe() + "; its environment taken to be "
                                                                                    "this server's"))


_FUNCTIONS = {"predict_load": _predict_load, "dependencies": _dependencies, "diagnose": _diagnose,
              "explain": _explain, "tree": _tree,
              "resolve": _resolve, "check_magic": _check_magic, "audit": _audit,
              "upgrade_check": _upgrade_check}
