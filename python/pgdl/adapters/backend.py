"""The adapter between a live backend (PL/Python's `plpy`) and the pure core.

It describes the server from the running backend itself — this session's
settings, the server's own paths, its process environment, OS user and
mapped files — and turns the core's results into rows.  It is the only
module that knows about plpy.
"""

from __future__ import annotations

import gc
import json
import os
import re
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


with _without_collection():
    from .. import filestate, interrupts
    from ..views.audit import PRELOAD_SETTINGS, audit
    from ..postgres.extensions import CFunction
    from ..glibc.ldso import load_tree
    from ..engine.predict import as_error_row, predict_load
    from ..errors import INTERNAL_ERROR, INVALID_PARAMETER_VALUE, UNDEFINED_FUNCTION, PgErrorRaised, UserError
    from .maps import read_maps
    from ..postgres.lookup import resolve
    from ..server import Server, ServerMagic
    from .servertext import codec_of, from_server, shown, sql_text
    from .validate import name_argument


def run(plpy, function: str | None, args_json: str | None) -> str:
    """Entry point for every SQL function (through pgdl._call).

    Returns JSON: {"rows": [...]} or {"error": {...}}, never raises, so the
    SQL side reports errors with the server's own wording and no traceback.
    Every text in it is text of the database's encoding (servertext.shown).
    """
    try:
        session = _session(plpy)
    except plpy.SPIError as exc:        # cancelled before it began, say
        return json.dumps({"error": {"sqlstate": getattr(exc, "sqlstate", None) or INTERNAL_ERROR,
                                     "message": str(exc).encode("ascii", "backslashreplace").decode()}})
    try:
        handler, columns = _function(function)
        args = _arguments(function, args_json, handler)
        with filestate.one_call(), _without_collection(), interrupts.polling(session.poll):
            rows = handler(plpy, *args)
        return session.dumps({"rows": [dict(zip(columns, row)) for row in rows]})
    except interrupts.Interrupted as exc:
        return session.error(exc.sqlstate, exc.message)
    except UserError as exc:
        return session.error(exc.sqlstate, exc.message, hint=exc.hint)
    except PgErrorRaised as exc:
        err = exc.error
        return session.error(err.sqlstate, err.message, err.detail, err.hint)
    except plpy.SPIError as exc:
        return session.error(getattr(exc, "sqlstate", None) or INTERNAL_ERROR, from_server(str(exc), session.codec))
    except RecursionError:
        return session.error(INTERNAL_ERROR, f"pgdl.{function}: input too deeply nested")
    except MemoryError:
        return session.error("53200", f"pgdl.{function}: out of memory")
    except Exception:  # a bug in pgdl: the details go to the server log, not to the caller
        _log_bug(plpy, function)
        return session.error(INTERNAL_ERROR, f"pgdl.{function} failed: internal error",
                             hint="This is a bug in pgdl; the server log has the details. "
                                  "Please report it with the input that caused it.")


def _function(function):
    if function is None:
        raise UserError("function must not be NULL", sqlstate="22004")
    found = _FUNCTIONS.get(function)
    if found is None:
        raise UserError(f"pgdl has no function named {function!r}", sqlstate=UNDEFINED_FUNCTION,
                        hint="Call the functions of schema pgdl, such as pgdl.diagnose(); pgdl._call is internal.")
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


class _Session:
    """What one backend's calls share: the database's encoding and the poll."""

    def __init__(self, plpy):
        self.codec = codec_of(plpy.execute("SELECT pg_catalog.current_setting('server_encoding') AS e")[0]["e"])
        check = plpy.prepare("SELECT 1")     # the executor checks for interrupts first thing

        def poll():
            try:
                plpy.execute(check)
            except plpy.SPIError as exc:
                raise interrupts.Interrupted(getattr(exc, "sqlstate", None) or "57014", str(exc)) from None

        self.poll = poll

    def text(self, value):
        return shown(value, self.codec) if isinstance(value, str) else value

    def dumps(self, result: dict) -> str:
        rows = result.get("rows")
        if rows is not None:
            text = self.text
            result = {"rows": [{k: text(v) for k, v in row.items()} for row in rows]}
        return json.dumps(result, ensure_ascii=False)

    def error(self, sqlstate, message, detail=None, hint=None) -> str:
        error = {"sqlstate": sqlstate, "message": self.text(message)}
        if detail:
            error["detail"] = self.text(detail)
        if hint:
            error["hint"] = self.text(hint)
        return self.dumps({"error": error})


_SESSION: _Session | None = None


def _session(plpy) -> _Session:
    global _SESSION
    if _SESSION is None:
        _SESSION = _Session(plpy)
    return _SESSION


def _fs(name: str | None) -> str | None:
    """A name from SQL as the bytes the server would hand the file system."""
    return None if name is None else from_server(name, _SESSION.codec)


_SETTINGS_QUERY = """
    SELECT pg_catalog.current_setting('server_version_num')::pg_catalog.int4 AS version_num,
           pg_catalog.current_setting('max_function_args')::pg_catalog.int4 AS funcmaxargs,
           pg_catalog.current_setting('max_index_keys')::pg_catalog.int4 AS indexmaxkeys,
           pg_catalog.current_setting('max_identifier_length')::pg_catalog.int4 AS identifier_length,
           pg_catalog.current_setting('is_superuser') OPERATOR(pg_catalog.=) 'on' AS is_superuser,
           (SELECT pg_catalog.json_object_agg(name, setting) FROM pgdl._server_config())::pg_catalog.text AS config"""


def read_settings(plpy) -> tuple[dict, dict[str, str]]:
    """This session's settings and pgdl._server_config(), in one query."""
    row = plpy.execute(_SETTINGS_QUERY)[0]
    codec = _session(plpy).codec
    return row, {name: from_server(value, codec) for name, value in json.loads(row["config"]).items()}


def describe_server(plpy, settings: tuple[dict, dict[str, str]] | None = None) -> Server:
    """The server as this session sees it now (settings can change between calls).

    settings: read_settings(), if the caller needs them too."""
    row, config = settings or read_settings(plpy)
    executable = os.readlink("/proc/self/exe")
    loaded = read_maps()
    version = row["version_num"] // 100
    magic = ServerMagic(version=version, funcmaxargs=row["funcmaxargs"], indexmaxkeys=row["indexmaxkeys"],
                        namedatalen=row["identifier_length"] + 1, float8byval=config.get("FLOAT8PASSBYVAL") == "true",
                        abi_extra=_server_abi_extra(loaded, config["PKGLIBDIR"], version))
    server = Server(version_num=row["version_num"], pkglibdir=config["PKGLIBDIR"],
                    sharedir=config["SHAREDIR"], dynamic_library_path=config["dynamic_library_path"],
                    dlsuffix=".so", data_directory=os.getcwd(), magic=magic, executable=executable,
                    environ=dict(os.environ), loaded=loaded, is_superuser=row["is_superuser"],
                    uid=os.geteuid(), gids=tuple(os.getgroups()))
    return server


_ABI_EXTRA = filestate.FileCache(64)


def _server_abi_extra(loaded, pkglibdir: str, version: int) -> str:
    """FMGR_ABI_EXTRA of this server, which no setting shows.

    A module that this backend has already loaded from pkglibdir (PL/Python
    itself, at least) passed the server's magic check, so its abi_extra is the
    server's.  Stock builds say "PostgreSQL".
    """
    for obj in loaded:
        if obj.path.startswith(pkglibdir.rstrip("/") + "/"):
            extra = _ABI_EXTRA.get(obj.path, lambda _state: _abi_extra_of(obj.path, version), version)
            if extra is not None:
                return extra
    return "PostgreSQL"


def _abi_extra_of(path: str, version: int) -> str | None:
    from ..elf import ElfError, cached_elf
    from ..postgres.magic import MagicNotFound, read_magic
    try:
        block = read_magic(cached_elf(path))
    except (ElfError, OSError, MagicNotFound):
        return None
    return block.abi_extra if block.version == version else None


# -- SQL functions -----------------------------------------------------------

def _resolve(plpy, name):
    name = name_argument(name)
    res = resolve(name, describe_server(plpy))
    if res.error is not None:
        raise PgErrorRaised(res.error)
    rows = [(c.step, c.rule, c.candidate, c.exists, c.regular_file, c.chosen) for c in res.candidates]
    if not res.found:
        exists = os.path.lexists(res.full_name)
        rows.append((len(rows) + 1, "not found: passed to the loader as given", res.full_name,
                     exists, os.path.isfile(res.full_name) if exists else False, True))
    return rows


def _check_magic(plpy, name):
    from ..views.check_magic import check_magic      # imported on first use: keeps every backend's first call light
    name = name_argument(name)
    report = check_magic(name, describe_server(plpy))
    rows = [(f.field, f.library_value, f.server_value, f.matches, None, None, None, None)
            for f in report.fields]
    if report.error is not None:
        e = report.error
        rows.append(("verdict", "rejected", None, False, e.sqlstate, e.message, e.detail, e.hint))
    elif report.note is not None:
        rows.append(("verdict", "not judged", None, None, None, report.note, None, None))
    else:
        rows.append(("verdict", "accepted", None, True, None, None, None, None))
    return rows


def _predict_load(plpy, name, symbol=None):
    name = name_argument(name)
    if symbol is not None:
        symbol = name_argument(symbol, "symbol")
    return [as_error_row(predict_load(name, describe_server(plpy), symbol))]


def _dependencies(plpy, name):
    name = name_argument(name)
    server = describe_server(plpy)
    res = resolve(name, server)
    if res.error is not None:
        raise PgErrorRaised(res.error)
    tree = load_tree(res.full_name, server)
    return [(d.depth, d.needed, d.required_by, d.path, d.found_via, d.status, d.detail) for d in tree.deps]


SIGNATURE = re.compile(r"^\s*[\w.\"$]+\s*\(.*\)\s*$", re.DOTALL)


def _diagnose(plpy, target, search_path=None):
    """search_path: the caller's, to find a function signature as the caller would."""
    from ..views.diagnose import diagnose_extension, diagnose_library   # imported on first use
    name = name_argument(target, "target")
    text = sql_text(name, _SESSION.codec)
    server = describe_server(plpy)
    if text is not None and SIGNATURE.match(text):
        return _rows(_diagnose_function(plpy, text, server, search_path))
    if text is not None and "/" not in name \
            and os.path.isfile(os.path.join(server.sharedir, "extension", f"{name}.control")):
        return _rows(diagnose_extension(name, server, _extension_c_functions(plpy, text)))
    return _rows(diagnose_library(name, server))


def _rows(findings):
    return [(f.check, f.status, f.subject, f.detail, f.hint) for f in findings]


def _diagnose_function(plpy, signature, server, search_path):
    try:
        rows = _as_caller(plpy, search_path, lambda: plpy.execute(_FUNCTION_PLAN.get(plpy), [signature]))
    except plpy.SPIError as exc:
        raise UserError(f"invalid function signature: {_fs(signature)}", hint=_fs(str(exc)))
    if not rows:
        raise UserError(f"function {_fs(signature)} does not exist", sqlstate=UNDEFINED_FUNCTION,
                        hint="Give a function signature with argument types, e.g. dblink_connect(text).")
    row = rows[0]
    if row["lanname"] != "c":
        raise UserError(f"function {_fs(row['sig'])} is written in {_fs(row['lanname'])}, not C",
                        hint="pgdl diagnoses C-language functions and the libraries they live in.")
    from ..views.diagnose import diagnose_library
    return diagnose_library(_fs(row["probin"]), server, _fs(row["prosrc"]), label=_fs(row["sig"]))


class _Plan:
    """A query prepared once per session."""

    def __init__(self, query: str, types: list[str]):
        self.query, self.types, self.plan = query, types, None

    def get(self, plpy):
        if self.plan is None:
            self.plan = plpy.prepare(self.query, self.types)
        return self.plan


# The signature is resolved with the caller's search_path; the rest is qualified.
_FUNCTION_PLAN = _Plan("""
    SELECT p.oid::pg_catalog.regprocedure::pg_catalog.text AS sig, p.probin, p.prosrc, l.lanname
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid OPERATOR(pg_catalog.=) p.prolang
     WHERE p.oid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure($1)""", ["pg_catalog.text"])
_SET_PATH = _Plan("SELECT pg_catalog.set_config('search_path', $1, true)", ["pg_catalog.text"])


def _as_caller(plpy, search_path, query):
    """query() with the caller's search_path (pgdl._call pins its own; the
    change ends with this call, as every change inside a function with a SET
    clause does, and is undone here at once)."""
    if search_path is None:
        return query()
    plpy.execute(_SET_PATH.get(plpy), [search_path])
    try:
        return query()
    finally:
        plpy.execute(_SET_PATH.get(plpy), ["pg_catalog, pg_temp"])


def _extension_c_functions(plpy, extension):
    plan = plpy.prepare("""
        SELECT p.oid::regprocedure::text AS sig, p.probin, p.prosrc
          FROM pg_catalog.pg_extension e
          JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_extension'::regclass
                                     AND d.refobjid = e.oid AND d.classid = 'pg_catalog.pg_proc'::regclass
          JOIN pg_catalog.pg_proc p ON p.oid = d.objid
          JOIN pg_catalog.pg_language l ON l.oid = p.prolang AND l.lanname = 'c'
         WHERE e.extname = $1
         ORDER BY 1""", ["text"])
    return [_c_function(r) for r in plpy.execute(plan, [extension])] or None


def _c_function(row) -> CFunction:
    return CFunction(_fs(row["sig"]), _fs(row["probin"]), _fs(row["prosrc"]))


def _audit(plpy):
    settings = read_settings(plpy)
    server = describe_server(plpy, settings)
    functions = [_c_function(r) for r in plpy.execute("""
        SELECT p.oid::regprocedure::text AS sig, p.probin, p.prosrc
          FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
         WHERE l.lanname = 'c'
         ORDER BY 1""")]
    preloads = {name: value for name, value in settings[1].items() if name in PRELOAD_SETTINGS}
    return [(r.kind, r.subject, r.status, r.message, r.hint, r.library, r.symbol)
            for r in audit(server, functions, preloads)]


# Each function's handler and the names of its result columns.
_FUNCTIONS = {
    "predict_load": (_predict_load, ("will_load", "sqlstate", "message", "detail", "hint")),
    "dependencies": (_dependencies, ("depth", "needed", "required_by", "path", "found_via", "status", "detail")),
    "diagnose": (_diagnose, ("check", "status", "subject", "detail", "hint")),
    "resolve": (_resolve, ("step", "rule", "candidate", "exists", "regular_file", "chosen")),
    "check_magic": (_check_magic, ("field", "library_value", "server_value", "matches", "sqlstate", "message",
                                   "detail", "hint")),
    "audit": (_audit, ("kind", "subject", "status", "message", "hint", "library", "symbol")),
}
