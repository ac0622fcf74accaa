"""The server as the calling session sees it now: its settings, the server's
own paths and build values, its process environment, OS user and mapped
files (settings can change between calls, so each call describes it anew)."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

from ..libc import libc_of
from ..postgres.magic import server_abi_extra
from ..server import Messages, Server, ServerMagic
from .catalog import Plan
from .maps import read_maps
from .service import service_of
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
           (SELECT pg_catalog.json_object_agg(name, setting) FROM pgdl._server_config())::pg_catalog.text AS config""", [])


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
    """This session's settings and pgdl._server_config(), in one query."""
    row = plpy.execute(_SETTINGS_QUERY.get(plpy))[0]
    fs = session(plpy).fs
    config = {name: fs(value) for name, value in json.loads(row["config"]).items()}
    config.update((name, fs(value)) for name, value in _CALLERS.items())
    return row, config


def describe_server(plpy, settings: tuple[dict, dict[str, str]] | None = None, mapped: bool = True) -> Server:
    """settings: read_settings(), if the caller needs them too; mapped: whether
    the answer is about this session, whose mapped files then count."""
    row, config = settings or read_settings(plpy)
    loaded = read_maps() if mapped else []
    version = row["version_num"] // 100
    magic = ServerMagic(version=version, funcmaxargs=row["funcmaxargs"], indexmaxkeys=row["indexmaxkeys"],
                        namedatalen=row["identifier_length"] + 1, float8byval=config.get("FLOAT8PASSBYVAL") == "true",
                        abi_extra=_abi_extra(loaded, config["PKGLIBDIR"], version))
    executable = os.readlink("/proc/self/exe")
    environ = dict(os.environ)
    messages = Messages(Messages.of(row["lc_messages"], environ), config.get("LOCALEDIR", ""),
                        row["server_encoding"], row["lc_ctype"])
    return Server(version_num=row["version_num"], pkglibdir=config["PKGLIBDIR"],
                  sharedir=config["SHAREDIR"], dynamic_library_path=config["dynamic_library_path"],
                  dlsuffix=".so", data_directory=os.getcwd(), magic=magic, executable=executable,
                  environ=environ, loaded=loaded, is_superuser=row["is_superuser"],
                  uid=os.geteuid(), gids=tuple(os.getgroups()), libc=libc_of(executable),
                  service=service_of(os.getcwd()), extension_control_path=config.get("extension_control_path", ""),
                  messages=messages)


_ABI_EXTRA: list[str] = []     # found once: the running postgres is the backend's for its whole life


def _abi_extra(loaded, pkglibdir: str, version: int) -> str:
    """The server's FMGR_ABI_EXTRA (pgdl.postgres.magic.server_abi_extra), from this
    backend's mapped modules; kept once one of them shows it."""
    if _ABI_EXTRA:
        return _ABI_EXTRA[0]
    extra = server_abi_extra(loaded or read_maps(), pkglibdir, version)
    if extra is not None:
        _ABI_EXTRA.append(extra)
    return extra or "PostgreSQL"
