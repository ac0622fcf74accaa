"""What the `context` and `role` arguments ask about, described from the
catalog: the role's privileges, the preload settings a new session of that
role gets (postinit.c process_settings(): database and role, role, database,
all, then the configuration files), the list the next server start uses
(pg_file_settings where the caller may read it, else the running value),
the custom settings that exist, and the files mapped in the postmaster."""

from __future__ import annotations

import json
import os

from ..errors import UserError
from ..postgres.preloads import PRELOAD_SETTINGS, split_library_list
from ..record import Value
from ..server import Context, LoadedObject, Messages, Preloads, Role, Server
from .catalog import Plan
from .describe import ServerFacts
from .maps import read_maps
from .session import session

UNDEFINED_OBJECT = "42704"

# The role, and in the same row what a new session or the next start of it
# depends on: the ALTER ROLE / ALTER DATABASE settings that apply to it, and
# whether pg_file_settings may be read.
_ROLE = Plan("""
    SELECT r.oid::pg_catalog.int8 AS oid, r.rolsuper,
           pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(), 'CREATE') AS can_create,
           d.oid::pg_catalog.int8 AS db,
           (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(s.setdatabase::pg_catalog.int8,
                                                                   s.setrole::pg_catalog.int8, s.setconfig))
              FROM pg_catalog.pg_db_role_setting s
             WHERE s.setdatabase OPERATOR(pg_catalog.=) ANY (ARRAY[0::pg_catalog.oid, d.oid])
               AND s.setrole OPERATOR(pg_catalog.=) ANY (ARRAY[0::pg_catalog.oid, r.oid]))::pg_catalog.text
             AS role_settings,
           pg_catalog.has_function_privilege('pg_catalog.pg_show_all_file_settings()', 'EXECUTE') AS files_readable
      FROM pg_catalog.pg_roles r, pg_catalog.pg_database d
     WHERE r.rolname OPERATOR(pg_catalog.=) $1
       AND d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()""", ["pg_catalog.name"])
_FILE_SETTINGS = Plan("""
    SELECT f.name, f.setting FROM pg_catalog.pg_file_settings f
     WHERE f.error IS NULL OR f.error OPERATOR(pg_catalog.=) 'setting could not be applied'
     ORDER BY f.seqno""", [])
_CUSTOM = Plan("""
    SELECT s.name FROM pg_catalog.pg_settings s
     WHERE pg_catalog.strpos(s.name, '.') OPERATOR(pg_catalog.>) 0""", [])


def context_argument(value: str | None, default: Context) -> Context:
    if value is None:
        return default
    try:
        return Context(value)
    except ValueError:
        raise UserError(f'invalid value for context: "{value}"',
                        hint="Use 'this session', 'new session' or 'server start'.") from None


class ContextFacts(Value):
    """What the catalog and the postmaster say of the process and role asked
    about, as gathered before anything is worked out (pgdl.replies keys by it)."""
    __slots__ = ("context", "role", "files", "per_role", "custom", "postmaster")

    def __init__(self, context: Context, role: Role, files: tuple | None = None, per_role: tuple = (),
                 custom: tuple[str, ...] = (), postmaster: tuple[LoadedObject, ...] | None = None):
        self.context = context
        self.role = role
        self.files = files                  # pg_file_settings as (name, setting) pairs; None: not readable
        self.per_role = per_role            # the ALTER ROLE / DATABASE settings that apply, as pairs
        self.custom = custom                # the custom settings (x.y) that exist, placeholders too
        self.postmaster = postmaster        # the postmaster's mapped files, where readable


def context_facts(plpy, facts: ServerFacts, context: Context, role_name: str | None) -> ContextFacts:
    """The facts of `context` for role_name (None: the current user)."""
    fs = session(plpy).fs
    row = facts.row
    current_user = row["current_user_name"]
    role_name = current_user if role_name is None else role_name
    rows = plpy.execute(_ROLE.get(plpy), [role_name])
    if not rows:
        raise UserError(f'role "{fs(role_name)}" does not exist', sqlstate=UNDEFINED_OBJECT)
    r = rows[0]
    is_superuser = row["is_superuser"] if role_name == current_user else r["rolsuper"]
    role = Role(fs(role_name), is_superuser, r["can_create"] or is_superuser)
    if context is Context.THIS_SESSION:
        return ContextFacts(context, role)
    files = _file_settings(plpy) if r["files_readable"] else None
    names = files if files is not None else [s["name"] for s in plpy.execute(_CUSTOM.get(plpy))]
    custom = tuple(sorted(fs(n) for n in names if "." in n))
    return ContextFacts(context, role, None if files is None else tuple(files.items()),
                        tuple(sorted(_role_settings(plpy, r["role_settings"], r["db"], r["oid"]).items())), custom,
                        _postmaster_maps(facts.executable))


def in_context(server: Server, facts: ContextFacts, config: dict[str, str]) -> Server:
    """`server` (this session's description) told which process and role the question is about."""
    role = facts.role
    server = server.replace(context=facts.context, role=role, is_superuser=role.is_superuser)
    running = tuple(split_library_list(config.get("shared_preload_libraries", "")))
    if facts.context is Context.THIS_SESSION:
        session_list, local_list = (tuple(split_library_list(config.get(name, ""))) for name in PRELOAD_SETTINGS[1:])
        return server.replace(preloads=Preloads(running, None, "the running value", session_list, local_list))
    files = None if facts.files is None else dict(facts.files)
    at_start, at_start_from = _next_start_list(config.get("source shared_preload_libraries"), running, files)
    per_role = dict(facts.per_role)

    def for_new_session(name: str) -> tuple[str, ...]:
        # The role's and database's setting, else the files' (or, unreadable, the RESET value).
        configured = files.get(name, "") if files is not None else config.get(f"reset {name}", config.get(name, ""))
        return tuple(split_library_list(per_role.get(name, configured)))

    session_list, local_list = (for_new_session(name) for name in PRELOAD_SETTINGS[1:])
    preloads = Preloads(running, at_start, at_start_from, session_list, local_list)
    # A new session's extension_control_path: what RESET gives (the server's, and this role's).
    control_path = config.get("reset extension_control_path", server.extension_control_path)
    # lc_messages: the role's and database's, else the files' (the postmaster's at a start), else RESET's.
    configured = (files or {}).get("lc_messages", config.get("reset lc_messages", server.messages.lc_messages))
    lc_messages = configured if facts.context is Context.SERVER_START else per_role.get("lc_messages", configured)
    messages = server.messages.replace(lc_messages=Messages.of(lc_messages, server.environ))
    return server.replace(preloads=preloads, postmaster_loaded=facts.postmaster,
                          custom_settings=frozenset(facts.custom), extension_control_path=control_path,
                          messages=messages)


def _file_settings(plpy) -> dict[str, str]:
    """The configuration files' settings as the next start reads them (the last
    line for a name wins); for a caller who may read pg_file_settings."""
    fs = session(plpy).fs
    return {row["name"]: fs(row["setting"]) for row in plpy.execute(_FILE_SETTINGS.get(plpy))}


def _next_start_list(source: str | None, running: tuple[str, ...],
                     files: dict[str, str] | None) -> tuple[tuple[str, ...], str]:
    """shared_preload_libraries as the next start reads it, and where that came from.
    source: pg_settings' (pgdl._reset_config(); None before pgdl 0.10.0)."""
    if files is None or source in ("command line", "environment variable"):
        return running, "the running value"
    return tuple(split_library_list(files.get("shared_preload_libraries", ""))), "the configuration files"


def _role_settings(plpy, rows_json: str | None, db: int, role: int) -> dict[str, str]:
    """ALTER ROLE / ALTER DATABASE settings of the preload lists and lc_messages, the most specific first.
    rows_json: the pg_db_role_setting rows that apply, [setdatabase, setrole, setconfig] each."""
    rank = {(db, role): 0, (0, role): 1, (db, 0): 2, (0, 0): 3}
    fs = session(plpy).fs
    out: dict[str, tuple[int, str]] = {}
    for setdatabase, setrole, setconfig in json.loads(rows_json) if rows_json else ():
        k = rank.get((setdatabase, setrole), 4)
        for entry in setconfig or []:
            name, _, value = entry.partition("=")
            if (name in PRELOAD_SETTINGS or name == "lc_messages") and (name not in out or k < out[name][0]):
                out[name] = (k, fs(value))
    return {name: value for name, (_k, value) in out.items()}


def _postmaster_maps(executable: str) -> tuple[LoadedObject, ...] | None:
    """The postmaster's mapped files: the backend's parent, if it is the same executable."""
    parent = os.getppid()
    try:
        if os.readlink(f"/proc/{parent}/exe") != executable:
            return None
        return tuple(read_maps(f"/proc/{parent}/maps"))
    except OSError:
        return None
