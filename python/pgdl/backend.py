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
    from . import filestate
    from .audit import PRELOAD_SETTINGS, audit
    from .catalog import CFunction
    from .ldso import load_tree
    from .predict import as_error_row, predict_load
    from .errors import INTERNAL_ERROR, PgErrorRaised, UserError
    from .maps import read_maps
    from .resolve import resolve
    from .server import Server, ServerMagic
    from .validate import check_name

MAX_NAME = 4096


def run(plpy, function: str, args_json: str) -> str:
    """Entry point for every SQL function (through pgdl._call).

    Returns JSON: {"rows": [...]} or {"error": {...}}, never raises, so the
    SQL side reports errors with the server's own wording and no traceback.
    """
    try:
        args = json.loads(args_json)
        with filestate.one_call(), _without_collection():
            rows = _FUNCTIONS[function](plpy, *args)
        return json.dumps({"rows": [dict(zip(_COLUMNS[function], row)) for row in rows]})
    except UserError as exc:
        return _error(exc.sqlstate, exc.message, hint=exc.hint)
    except PgErrorRaised as exc:
        err = exc.error
        return _error(err.sqlstate, err.message, err.detail, err.hint)
    except plpy.SPIError as exc:
        return _error(getattr(exc, "sqlstate", None) or INTERNAL_ERROR, str(exc))
    except RecursionError:
        return _error(INTERNAL_ERROR, f"pgdl.{function}: input too deeply nested")
    except MemoryError:
        return _error("53200", f"pgdl.{function}: out of memory")
    except Exception as exc:  # a bug in pgdl: say so plainly, without a traceback
        return _error(INTERNAL_ERROR, f"pgdl.{function} failed: {type(exc).__name__}: {exc}",
                      hint="This is a bug in pgdl; please report it with the input that caused it.")


def _error(sqlstate, message, detail=None, hint=None) -> str:
    error = {"sqlstate": sqlstate, "message": message}
    if detail:
        error["detail"] = detail
    if hint:
        error["hint"] = hint
    return json.dumps({"error": error})


_SETTINGS_QUERY = """
    SELECT current_setting('server_version_num')::int AS version_num,
           current_setting('max_function_args')::int AS funcmaxargs,
           current_setting('max_index_keys')::int AS indexmaxkeys,
           current_setting('max_identifier_length')::int + 1 AS namedatalen,
           current_setting('is_superuser') = 'on' AS is_superuser,
           (SELECT pg_catalog.json_object_agg(name, setting) FROM pgdl._server_config())::text AS config"""


def read_settings(plpy) -> tuple[dict, dict[str, str]]:
    """This session's settings and pgdl._server_config(), in one query."""
    row = plpy.execute(_SETTINGS_QUERY)[0]
    return row, json.loads(row["config"])


def describe_server(plpy, settings: tuple[dict, dict[str, str]] | None = None) -> Server:
    """The server as this session sees it now (settings can change between calls).

    settings: read_settings(), if the caller needs them too."""
    row, config = settings or read_settings(plpy)
    executable = os.readlink("/proc/self/exe")
    loaded = read_maps()
    version = row["version_num"] // 100
    magic = ServerMagic(version=version, funcmaxargs=row["funcmaxargs"], indexmaxkeys=row["indexmaxkeys"],
                        namedatalen=row["namedatalen"], float8byval=config.get("FLOAT8PASSBYVAL") == "true",
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
    from .elf import ElfError, cached_elf
    from .magic import MagicNotFound, read_magic
    try:
        block = read_magic(cached_elf(path))
    except (ElfError, OSError, MagicNotFound):
        return None
    return block.abi_extra if block.version == version else None


# -- SQL functions -----------------------------------------------------------

def _resolve(plpy, name):
    name = check_name(name)
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
    from .checkmagic import check_magic      # imported on first use: keeps every backend's first call light
    name = check_name(name)
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
    name = check_name(name)
    if symbol is not None:
        symbol = check_name(symbol, "symbol")
    return [as_error_row(predict_load(name, describe_server(plpy), symbol))]


def _dependencies(plpy, name):
    name = check_name(name)
    server = describe_server(plpy)
    res = resolve(name, server)
    if res.error is not None:
        raise PgErrorRaised(res.error)
    tree = load_tree(res.full_name, server)
    return [(d.depth, d.needed, d.required_by, d.path, d.found_via, d.status, d.detail) for d in tree.deps]


SIGNATURE = re.compile(r"^\s*[\w.\"$]+\s*\(.*\)\s*$", re.DOTALL)


def _diagnose(plpy, target):
    from .diagnose import diagnose_extension, diagnose_library   # imported on first use
    target = check_name(target, "target")
    server = describe_server(plpy)
    if SIGNATURE.match(target):
        return _rows(_diagnose_function(plpy, target, server))
    if "/" not in target and os.path.isfile(os.path.join(server.sharedir, "extension", f"{target}.control")):
        return _rows(diagnose_extension(target, server, _extension_c_functions(plpy, target)))
    return _rows(diagnose_library(target, server))


def _rows(findings):
    return [(f.check, f.status, f.subject, f.detail, f.hint) for f in findings]


def _diagnose_function(plpy, signature, server):
    plan = plpy.prepare("""
        SELECT p.oid::regprocedure::text AS sig, p.probin, p.prosrc, l.lanname
          FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
         WHERE p.oid = pg_catalog.to_regprocedure($1)""", ["text"])
    try:
        rows = plpy.execute(plan, [signature])
    except plpy.SPIError as exc:
        raise UserError(f"invalid function signature: {signature}", hint=str(exc))
    if not rows:
        raise UserError(f"function {signature} does not exist", sqlstate="42883",
                        hint="Give a function signature with argument types, e.g. dblink_connect(text).")
    row = rows[0]
    if row["lanname"] != "c":
        raise UserError(f"function {row['sig']} is written in {row['lanname']}, not C",
                        hint="pgdl diagnoses C-language functions and the libraries they live in.")
    from .diagnose import diagnose_library
    return diagnose_library(row["probin"], server, row["prosrc"], label=row["sig"])


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
    return [CFunction(r["sig"], r["probin"], r["prosrc"]) for r in plpy.execute(plan, [extension])] or None


def _audit(plpy):
    settings = read_settings(plpy)
    server = describe_server(plpy, settings)
    functions = [CFunction(r["sig"], r["probin"], r["prosrc"]) for r in plpy.execute("""
        SELECT p.oid::regprocedure::text AS sig, p.probin, p.prosrc
          FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
         WHERE l.lanname = 'c'
         ORDER BY 1""")]
    preloads = {name: value for name, value in settings[1].items() if name in PRELOAD_SETTINGS}
    return [(r.kind, r.subject, r.status, r.message, r.hint, r.library, r.symbol)
            for r in audit(server, functions, preloads)]


_COLUMNS = {
    "predict_load": ("will_load", "sqlstate", "message", "detail", "hint"),
    "dependencies": ("depth", "needed", "required_by", "path", "found_via", "status", "detail"),
    "diagnose": ("check", "status", "subject", "detail", "hint"),
    "resolve": ("step", "rule", "candidate", "exists", "regular_file", "chosen"),
    "check_magic": ("field", "library_value", "server_value", "matches", "sqlstate", "message", "detail", "hint"),
    "audit": ("kind", "subject", "status", "message", "hint", "library", "symbol"),
}

_FUNCTIONS = {
    "predict_load": _predict_load,
    "dependencies": _dependencies,
    "diagnose": _diagnose,
    "resolve": _resolve,
    "check_magic": _check_magic,
    "audit": _audit,
}
