"""The server as the calling session sees it now: its settings, the server's
own paths and build values, its process environment, OS user and mapped
files (settings can change between calls, so each call describes it anew)."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

from ..record import Value
from ..server import LoadedObject, Messages, Server, ServerMagic
from .catalog import Plan
from .maps import read_maps
from .session import session

_SETTINGS_QUERY = Plan("""
    SELECT pg_catalog.current_setting('server_version_num')::pg_catalog.int4 AS version_num,
           pg_catalog.current_setting('max_function_args')::pg_catalog.int4 AS funcmaxargs,
           pg_catalog.current_setting('max_index_keys')::pg_catalog.int4 AS indexmaxkeys,
           pg_catalog.current_setting('max_identifier_length')::pg_catalog.int4 AS identifier_length,
           pg_catalog.current_setting('is_superuser') OPERATOR(pg_catalog.=) 'on' AS is_superuser,
           CURRENT_USER::pg_catalog.text AS current_user_name,
           pg_catalog.current_setting('lc_messages') AS lc_messages,
           pg_catalog.current_setting('server_encoding') AS server_encoding,
           (SELECT d.datctype::pg_catalog.text FROM pg_catalog.pg_database d
             WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) AS lc_ctype,
           (SELECT pg_catalog.json_object_agg(name, setting) FROM pgdl._server_config())::pg_catalog.text AS config,
           pg_catalog.pg_conf_load_time() AS config_loaded,
           pg_catalog.to_regprocedure('pgdl._reset_config()') IS NOT NULL AS has_reset""", [])
# RESET values change only when this session reloads the configuration: read again then.
_RESET_QUERY = Plan("""
    SELECT pg_catalog.json_object_agg(name, setting)::pg_catalog.text AS config FROM pgdl._reset_config()""", [])
_RESET: list = [None, {}]                # when the configuration was loaded, and what _reset_config() said then
_NOT_FACTS = ("config", "config_loaded", "has_reset")     # columns of the settings row in the config, or in none


_CALLERS: dict[str, str] = {}


@contextmanager
def callers_setting(name: str, value: str | None):
    """Within the block, `name` is the caller's `value` (not NULL), whatever the
    call itself runs with."""
    if value is None:
        yield
        return
    _CALLERS[name] = value
    try:
        yield
    finally:
        _CALLERS.pop(name, None)


def read_settings(plpy) -> tuple[dict, dict[str, str]]:
    """This session's settings, and the server's configuration: pgdl._server_config()
    and (when the configuration was reloaded since it was last read) pgdl._reset_config().
    Before ALTER EXTENSION pgdl UPDATE to 0.10.0, _server_config() gives both."""
    row = plpy.execute(_SETTINGS_QUERY.get(plpy))[0]
    if row["config_loaded"] != _RESET[0]:
        reset = plpy.execute(_RESET_QUERY.get(plpy))[0]["config"] if row["has_reset"] else None
        _RESET[:] = [row["config_loaded"], json.loads(reset or "{}")]
    fs = session(plpy).fs
    config = {name: fs(value) for name, value in _RESET[1].items()}
    config.update((name, fs(value)) for name, value in json.loads(row["config"]).items())
    config.update((name, fs(value)) for name, value in _CALLERS.items())
    return row, config


class ServerFacts(Value):
    """What describing the server starts from, read from the backend alone (no
    file is examined yet): this session's settings and the server's build
    values, the process's executable, environment, directory, user and mapped
    files.  Equal facts describe the same server as long as the files the
    description reads are unchanged (pgdl.replies keeps whole replies by them)."""
    __slots__ = ("settings", "config", "executable", "environ", "cwd", "uid", "gids", "loaded")

    def __init__(self, settings: tuple, config: tuple, executable: str, environ: tuple, cwd: str, uid: int,
                 gids: tuple[int, ...], loaded: tuple[LoadedObject, ...]):
        self.settings = settings        # read_settings()'s row, as sorted (name, value) pairs
        self.config = config            # ... and the server's configuration, the same way
        self.executable = executable
        self.environ = environ          # sorted (name, value) pairs
        self.cwd = cwd                  # the data directory
        self.uid = uid
        self.gids = gids
        self.loaded = loaded            # this backend's mapped files, when they count

    @property
    def row(self) -> dict:
        return dict(self.settings)

    @property
    def configured(self) -> dict[str, str]:
        return dict(self.config)


def server_facts(plpy, settings: tuple[dict, dict[str, str]] | None = None, mapped: bool = True) -> ServerFacts:
    """settings: read_settings(), if the caller needs them too; mapped: whether
    the answer is about this session, whose mapped files then count."""
    row, config = settings or read_settings(plpy)
    return ServerFacts(tuple(sorted((k, v) for k, v in row.items() if k not in _NOT_FACTS)),
                       tuple(sorted(config.items())), os.readlink("/proc/self/exe"),
                       tuple(sorted(os.environ.items())), os.getcwd(), os.geteuid(), tuple(os.getgroups()),
                       tuple(read_maps()) if mapped else ())


def describe_server(plpy, settings: tuple[dict, dict[str, str]] | None = None, mapped: bool = True) -> Server:
    """The Server of server_facts(plpy, settings, mapped)."""
    return server_of(server_facts(plpy, settings, mapped))


def server_of(facts: ServerFacts) -> Server:
    """The Server the facts describe, with what its files say: the C library
    its executable runs with, the magic values of its build, how it was started."""
    from ..libc import libc_of               # imported when a reply is worked out, not when one is reused
    from .service import service_of
    row, config, environ = facts.row, facts.configured, dict(facts.environ)
    loaded = list(facts.loaded)
    version = row["version_num"] // 100
    magic = ServerMagic(version=version, funcmaxargs=row["funcmaxargs"], indexmaxkeys=row["indexmaxkeys"],
                        namedatalen=row["identifier_length"] + 1, float8byval=config.get("FLOAT8PASSBYVAL") == "true",
                        abi_extra=_abi_extra(loaded, config["PKGLIBDIR"], version))
    messages = Messages(Messages.of(row["lc_messages"], environ), config.get("LOCALEDIR", ""),
                        row["server_encoding"], row["lc_ctype"])
    return Server(version_num=row["version_num"], pkglibdir=config["PKGLIBDIR"],
                  sharedir=config["SHAREDIR"], dynamic_library_path=config["dynamic_library_path"],
                  dlsuffix=".so", data_directory=facts.cwd, magic=magic, executable=facts.executable,
                  environ=environ, loaded=loaded, is_superuser=row["is_superuser"],
                  uid=facts.uid, gids=facts.gids, libc=libc_of(facts.executable),
                  service=service_of(facts.cwd), extension_control_path=config.get("extension_control_path", ""),
                  messages=messages)


_ABI_EXTRA: list[str] = []     # found once: the running postgres is the backend's for its whole life


def _abi_extra(loaded, pkglibdir: str, version: int) -> str:
    """The server's FMGR_ABI_EXTRA (pgdl.postgres.magic.server_abi_extra), from this
    backend's mapped modules; kept once one of them shows it."""
    if _ABI_EXTRA:
        return _ABI_EXTRA[0]
    from ..postgres.magic import server_abi_extra
    extra = server_abi_extra(loaded or read_maps(), pkglibdir, version)
    if extra is not None:
        _ABI_EXTRA.append(extra)
    return extra or "PostgreSQL"
