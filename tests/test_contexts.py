"""Contexts and roles (issue #13), each prediction against the real thing:
a LOAD in a fresh backend that never ran PL/Python, preload settings per
role and database, real restarts of a server with shared_preload_libraries,
real roles running CREATE EXTENSION / LOAD / CREATE FUNCTION, and the
_PG_init() of preload-only modules."""

from __future__ import annotations

import glob
import os
import time

import psycopg2
import pytest

from conftest import ServerError, pg_config, started_server

PKGLIBDIR = pg_config("--pkglibdir")
BINDIR = pg_config("--bindir")


def real_load(cluster, target: str, user: str | None = None, setup: tuple[str, ...] = ()):
    """(will_load, sqlstate, message, detail, hint) of a real LOAD in a fresh session."""
    error = cluster.error_of(f"LOAD '{target}'", setup=setup, user=user)
    return (True, None, None, None, None) if error is None else \
        (False, error.sqlstate, error.message, error.detail, error.hint)


def predicted(cluster, target: str, context: str, role: str | None = None, symbol: str | None = None):
    sql = "SELECT * FROM pgdl.predict_load(%s, %s, context => %s" + (", role => %s)" if role else ")")
    return cluster.query(sql, (target, symbol, context) + ((role,) if role else ()))[0]


# -- 'new session' ------------------------------------------------------------

def test_python_extension_module_in_a_new_session(cluster):
    # One that needs libpython's symbols (_json is built in from Python 3.13 on).
    module = sorted(glob.glob("/usr/lib/python3*/lib-dynload/_json*.so")
                    or glob.glob("/usr/lib/python3*/lib-dynload/_decimal*.so"))[0]
    # pgdl's own session has PL/Python, so libpython, loaded: there the module
    # gets as far as the magic block; a fresh backend has no libpython.
    assert predicted(cluster, module, "new session") == real_load(cluster, module)
    warm = ("DO $$ pass $$ LANGUAGE plpython3u",)
    assert predicted(cluster, module, "this session") == real_load(cluster, module, setup=warm)
    assert "undefined symbol: " in predicted(cluster, module, "new session")[2]
    rows = cluster.query("SELECT topic, status, message FROM pgdl.diagnose(%s)", (module,))
    difference = [r for r in rows if r[0] == "context" and r[1] == "warning"]
    assert difference and "PL/Python (libpython" in difference[0][2], rows
    assert rows[0][:2] == ("verdict", "error")


PROVIDER = """
#include "postgres.h"
#include "fmgr.h"
PG_MODULE_MAGIC;
int pgdl_provided(void);
int pgdl_provided(void) { return 42; }
"""
CONSUMER = """
#include "postgres.h"
#include "fmgr.h"
PG_MODULE_MAGIC;
extern int pgdl_provided(void);
int pgdl_consumer(void);
int pgdl_consumer(void) { return pgdl_provided(); }
"""


@pytest.fixture
def preload_roles(cluster, build):
    provider, consumer = build("ctx_provider", PROVIDER), build("ctx_consumer", CONSUMER)
    roles = ("ctx_role_set", "ctx_db_role_set", "ctx_db_set_only", "ctx_none")
    db = "ctx_db"
    cluster.query(f"CREATE DATABASE {db}")
    for r in roles:
        cluster.query(f"CREATE ROLE {r} SUPERUSER LOGIN")
    cluster.query(f"ALTER ROLE ctx_role_set SET session_preload_libraries = '{provider}'")
    cluster.query(f"ALTER ROLE ctx_db_role_set IN DATABASE test SET session_preload_libraries = '{provider}'")
    # A database's setting counts for sessions in that database only.
    cluster.query(f"ALTER DATABASE {db} SET session_preload_libraries = '{provider}'")
    yield provider, consumer, roles
    for r in roles:
        cluster.query(f"DROP ROLE {r}")
    cluster.query(f"DROP DATABASE {db}")


def test_a_module_that_loads_only_after_another_one(cluster, preload_roles):
    """session_preload_libraries as each role gets it (role, role in database, database)."""
    _provider, consumer, roles = preload_roles
    outcomes = {}
    for role in roles:
        real = real_load(cluster, str(consumer), user=role)
        assert predicted(cluster, str(consumer), "new session", role) == real, role
        outcomes[role] = real[0]
    assert outcomes == {"ctx_role_set": True, "ctx_db_role_set": True, "ctx_db_set_only": False, "ctx_none": False}
    # In this session nothing preloaded the provider.
    assert predicted(cluster, str(consumer), "this session")[0] is False


def test_a_failing_session_preload_fails_every_new_session(cluster):
    cluster.query("CREATE ROLE ctx_broken SUPERUSER LOGIN")
    try:
        cluster.query("ALTER ROLE ctx_broken SET session_preload_libraries = 'pgdl_no_such_library'")
        with pytest.raises(psycopg2.OperationalError) as exc:
            cluster.connect(user="ctx_broken").close()
        rows = cluster.query("SELECT will_load, message FROM pgdl.predict_load('auto_explain', "
                             "context => 'new session', role => 'ctx_broken')")
        assert rows[0][0] is False and rows[0][1] in str(exc.value)
        verdict = cluster.query("SELECT status, message FROM pgdl.diagnose('auto_explain', role => 'ctx_broken') "
                                "WHERE topic = 'verdict'")
        assert verdict[0][0] == "error" and "every new session of role ctx_broken fails" in verdict[0][1]
    finally:
        cluster.query("DROP ROLE ctx_broken")


# -- roles --------------------------------------------------------------------

@pytest.fixture
def plain_roles(cluster):
    roles = {"ctx_plain": "", "ctx_creator": "", "ctx_reader": "IN ROLE pg_read_server_files"}
    for r, extra in roles.items():
        cluster.query(f"CREATE ROLE {r} LOGIN {extra}")
    cluster.query("GRANT CREATE ON DATABASE test TO ctx_creator, ctx_reader")
    cluster.query("GRANT CREATE ON SCHEMA public TO ctx_plain, ctx_creator, ctx_reader")
    yield list(roles)
    cluster.query("REVOKE CREATE ON DATABASE test FROM ctx_creator, ctx_reader")
    cluster.query("REVOKE CREATE ON SCHEMA public FROM ctx_plain, ctx_creator, ctx_reader")
    for r in roles:
        cluster.query(f"DROP OWNED BY {r}")
        cluster.query(f"DROP ROLE {r}")


@pytest.mark.parametrize("extension", ["pgcrypto", "seg"])
def test_create_extension_as_each_role(cluster, plain_roles, extension):
    """A trusted extension needs CREATE on the database; the rest of the analysis is always shown."""
    for role in plain_roles:
        rows = cluster.query("SELECT topic, status, message, hint FROM pgdl.diagnose(%s, role => %s)",
                             (extension, role))
        topics = [r[0] for r in rows]
        assert {"file access", "elf", "magic", "symbols"} <= set(topics), (role, topics)
        real = cluster.error_of(f"CREATE EXTENSION {extension}", user=role)
        cluster.query(f"DROP EXTENSION IF EXISTS {extension}")
        privilege = [r for r in rows if r[0] == "privilege"]
        if real is None:
            assert rows[0][:2] == ("verdict", "ok"), (role, rows)
            assert all(p[1] == "ok" for p in privilege)
        else:
            assert privilege and privilege[0][1] == "error" and privilege[0][2].startswith(real.message)
            assert privilege[0][3] == real.hint
            assert rows[0][1] == "error" and f"ERROR:  {real.message} HINT:  {real.hint}" in rows[0][2]


def test_create_extension_not_trusted(cluster, plain_roles):
    rows = cluster.query("SELECT topic, status, message, hint FROM pgdl.diagnose('dblink', role => 'ctx_reader')")
    real = cluster.error_of("CREATE EXTENSION dblink", user="ctx_reader")
    assert real is not None and real.message == 'permission denied to create extension "dblink"'
    privilege = [r for r in rows if r[0] == "privilege"][0]
    assert privilege[1:] == ("error", f"{real.message} (for role ctx_reader)", real.hint)
    assert any(r[0] == "symbols" and r[1] == "ok" for r in rows)      # analysis goes on


def test_load_and_c_functions_as_a_plain_role(cluster, plain_roles, build):
    built = build("ctx_fn", """
#include "postgres.h"
#include "fmgr.h"
PG_MODULE_MAGIC;
PG_FUNCTION_INFO_V1(ctx_fn);
Datum ctx_fn(PG_FUNCTION_ARGS) { PG_RETURN_INT32(1); }
""")
    for role in plain_roles:
        assert predicted(cluster, "dblink", "new session", role) == real_load(cluster, "dblink", user=role)
        error = cluster.error_of(f"CREATE FUNCTION ctx_fn() RETURNS int AS '{built}', 'ctx_fn' LANGUAGE C",
                                 user=role)
        row = predicted(cluster, str(built), "new session", role, symbol="ctx_fn")
        assert row == (False, error.sqlstate, error.message, error.detail, error.hint)
        rows = cluster.query("SELECT topic, status FROM pgdl.diagnose(%s, role => %s)", (str(built), role))
        assert ("privilege", "error") in rows and ("magic", "ok") in rows


def test_unknown_role_and_context(cluster):
    error = cluster.error_of("SELECT * FROM pgdl.diagnose('dblink', role => 'ctx_nobody')")
    assert (error.sqlstate, error.message) == ("42704", 'role "ctx_nobody" does not exist')
    error = cluster.error_of("SELECT * FROM pgdl.predict_load('dblink', context => 'tomorrow')")
    assert error.sqlstate == "22023" and "this session" in error.hint


# -- _PG_init ------------------------------------------------------------------

STOCK = ["pg_cron", "pgaudit", "pglogical", "pg_stat_kcache", "sepgsql", "pg_stat_statements", "auto_explain",
         "pg_prewarm", "passwordcheck", "auth_delay"]


@pytest.mark.parametrize("module", [m for m in STOCK if os.path.exists(f"{PKGLIBDIR}/{m}.so")])
def test_stock_pg_init_against_a_real_load(cluster, module):
    assert predicted(cluster, module, "new session") == real_load(cluster, module)


INIT_MODULES = {
    "refuses_constant": ("if (!process_shared_preload_libraries_in_progress)\n"
                         "  ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),\n"
                         "    errmsg(\"refuses_constant must be preloaded\"), errhint(\"Preload it.\")));", False),
    "refuses_formatted": ("if (!process_shared_preload_libraries_in_progress)\n"
                          "  elog(ERROR, \"%s needs %s\", \"refuses_formatted\", \"shared_preload_libraries\");",
                          False),
    "refuses_at_run_time": ("if (!process_shared_preload_libraries_in_progress)\n"
                            "  elog(ERROR, \"refused in process %d\", (int) getpid());", False),
    "warns_only": ("if (!process_shared_preload_libraries_in_progress)\n"
                   "  ereport(WARNING, (errmsg(\"warns_only would rather be preloaded\")));", True),
    "returns_early": ("if (!process_shared_preload_libraries_in_progress)\n  return;\n"
                      "DefineCustomIntVariable(\"returns_early.n\", \"n\", NULL, &n, 1, 0, 10, PGC_SIGHUP, 0,"
                      " NULL, NULL, NULL);", True),
}


@pytest.mark.parametrize("name", sorted(INIT_MODULES))
def test_built_pg_init_against_a_real_load(cluster, build, name):
    body, loads = INIT_MODULES[name]
    built = build(name, f"""
#include "postgres.h"
#include <unistd.h>
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
PG_MODULE_MAGIC;
static int n;
void _PG_init(void);
void _PG_init(void) {{
{body}
}}
""")
    real = real_load(cluster, str(built))
    assert real[0] is loads
    row = predicted(cluster, str(built), "new session")
    if name == "refuses_at_run_time":
        # Formatted from a value known only at run time: the verdict and SQLSTATE, not the words.
        assert row[:2] == real[:2] and row[2] is None
        diag = cluster.query("SELECT message FROM pgdl.diagnose(%s) WHERE topic = '_PG_init'", (str(built),))
        assert "refused in process %d" in diag[0][0]
    else:
        assert row == real


# -- 'server start' --------------------------------------------------------------

@pytest.fixture(scope="module")
def own_server(tmp_path_factory):
    yield from started_server(tmp_path_factory, "own", 25000)


def fatal_line(server) -> str:
    for _ in range(20):
        lines = [line for line in server.log.read_text().splitlines() if "FATAL:" in line]
        if lines:
            return lines[0][lines[0].index("FATAL:"):]
        time.sleep(0.1)
    return ""


@pytest.mark.parametrize("preload, starts", [
    ("pg_stat_kcache", False),                        # needs pg_stat_statements before it
    ("pg_stat_statements, pg_stat_kcache", True),
    ("pg_cron, pgdl_no_such_library", False),
    ("pg_cron", True),
])
def test_server_start_against_a_real_restart(own_server, preload, starts):
    if not os.path.exists(f"{PKGLIBDIR}/pg_stat_kcache.so") and "kcache" in preload:
        pytest.skip("pg_stat_kcache is not installed")
    # A list of names: one quoted string would be a single name (a file "a, b").
    own_server.query(f"ALTER SYSTEM SET shared_preload_libraries = {preload}")
    row = own_server.query("SELECT * FROM pgdl.predict_load('auto_explain', context => 'server start')")[0]
    verdict = own_server.query("SELECT status, message FROM pgdl.diagnose('auto_explain', context => 'server start') "
                               "WHERE topic IN ('preloads', 'verdict')")
    assert "(the configuration files)" in verdict[1][1]
    own_server.stop()
    started = own_server.start()
    try:
        assert started is starts
        assert row[0] is starts
        if not starts:
            line = fatal_line(own_server)
            assert line == f"FATAL:  {row[2]}"
            assert verdict[0][0] == "error" and line in verdict[0][1]
    finally:
        if not started:
            own_server.set_preload("")
            assert own_server.start()


def test_audit_preload_findings_match_the_start(own_server):
    """pg_cron listed: nothing to say; not listed: a warning (nothing uses it), not an error."""
    def pg_cron_rows():
        return [r for r in own_server.query("SELECT kind, status FROM pgdl.audit() WHERE subject LIKE 'pg_cron%%'")]
    own_server.query("ALTER SYSTEM SET shared_preload_libraries = 'pg_cron'")
    own_server.stop()
    assert own_server.start()
    listed = pg_cron_rows()
    assert listed and all(status == "ok" for _kind, status in listed), listed
    own_server.query("ALTER SYSTEM RESET shared_preload_libraries")
    own_server.stop()
    assert own_server.start()
    unlisted = pg_cron_rows()
    assert ("pkglibdir", "warning") in unlisted and not [r for r in unlisted if r[1] == "error"], unlisted
    assert real_error_of_load(own_server, "pg_cron") is not None


def real_error_of_load(server, name):
    try:
        server.query(f"LOAD '{name}'")
    except psycopg2.Error as exc:
        return ServerError(exc.diag.sqlstate, exc.diag.message_primary, None, None)
    return None


def test_stale_preloaded_code_in_the_postmaster(own_server, build, tmp_path):
    """A shared_preload_libraries library replaced on disk after the start: every
    new session still runs the postmaster's old copy (audit in 'new session')."""
    built = build("ctx_stale", PROVIDER)
    own_server.query(f"ALTER SYSTEM SET shared_preload_libraries = '{built}'")
    own_server.stop()
    assert own_server.start()
    try:
        copy = tmp_path / "new.so"
        copy.write_bytes(built.read_bytes())
        os.replace(copy, built)              # a package upgrade: new inode, same name
        rows = own_server.query("SELECT subject, status, message FROM pgdl.audit() WHERE kind = 'stale'")
        assert [(r[0], r[1]) for r in rows] == [(str(built), "warning")]
        assert rows[0][2].startswith("the postmaster (so every new session) runs a copy")
    finally:
        own_server.query("ALTER SYSTEM RESET shared_preload_libraries")
        own_server.stop()
        assert own_server.start()


def test_a_pending_restart_counts_for_the_next_start_only(own_server):
    """shared_preload_libraries changed in the files, not yet restarted: a new session
    still runs with the old list, the next start with the new one."""
    own_server.query("ALTER SYSTEM SET shared_preload_libraries = pg_cron")
    try:
        assert own_server.query("SELECT pg_reload_conf()") == [(True,)]
        new_session = own_server.query("SELECT * FROM pgdl.predict_load('pg_cron', context => 'new session')")[0]
        assert new_session == real_load_in(own_server, "pg_cron")
        assert new_session[0] is False
        rows = own_server.query("SELECT topic, message FROM pgdl.diagnose('pg_cron', context => 'server start') "
                                "WHERE topic = 'preloads'")
        assert "shared_preload_libraries = 'pg_cron' (the configuration files)" in rows[0][1]
        assert own_server.query("SELECT will_load FROM pgdl.predict_load('pg_cron', context => 'server start')") \
            == [(True,)]
        rows = own_server.query("SELECT topic, message FROM pgdl.diagnose('pg_cron') WHERE topic = 'preloads'")
        assert "shared_preload_libraries = '' (the running value)" in rows[0][1]
    finally:
        own_server.query("ALTER SYSTEM RESET shared_preload_libraries")


def real_load_in(server, name):
    try:
        server.query(f"LOAD '{name}'")
    except psycopg2.Error as exc:
        d = exc.diag
        return (False, d.sqlstate, d.message_primary, d.message_detail, d.message_hint)
    return (True, None, None, None, None)


def test_a_new_session_without_the_postmasters_maps_is_simulated(build):
    """Where /proc/<postmaster>/maps cannot be read, the postmaster is simulated:
    the executable's startup closure, then shared_preload_libraries in order."""
    from pgdl.engine.contexts import boot
    from pgdl.server import Context, Preloads, Server
    provider, consumer = build("sim_provider", PROVIDER), build("sim_consumer", CONSUMER)
    srv = Server(version_num=int(pg_config("--version").split()[1].split(".")[0]) * 10000, pkglibdir=PKGLIBDIR,
                 executable=f"{BINDIR}/postgres", data_directory="/", context=Context.NEW_SESSION,
                 preloads=Preloads(shared=(str(provider),)))
    started = boot(srv)
    assert not started.from_maps and started.failed is None
    paths = [o.path for o in started.server.loaded]
    assert paths[0] == f"{BINDIR}/postgres" and str(provider) in paths
    assert any(p.endswith("/libc.so.6") for p in paths)
    from pgdl.engine.predict import predict_load
    assert predict_load(str(consumer), started.server).will_load
    assert not predict_load(str(consumer), boot(srv.replace(preloads=Preloads())).server).will_load


@pytest.mark.parametrize("preloaded", [True, False], ids=["LD_PRELOAD", "none"])
def test_ld_preload_counts_at_server_start(own_server, build, preloaded):
    """A shared_preload_libraries module that needs a symbol only an LD_PRELOAD
    library of the postmaster defines: the start works exactly when it is preloaded."""
    provider, consumer = build("ld_provider", PROVIDER), build("ld_consumer", CONSUMER)
    environ = {"LD_PRELOAD": str(provider)} if preloaded else {}
    own_server.stop()
    assert own_server.start(**environ)
    try:
        own_server.query(f"ALTER SYSTEM SET shared_preload_libraries = '{consumer}'")
        row = own_server.query("SELECT * FROM pgdl.predict_load('auto_explain', context => 'server start')")[0]
        own_server.stop()
        started = own_server.start(**environ)
        assert started is preloaded
        assert row[0] is preloaded
        if not started:
            assert fatal_line(own_server) == f"FATAL:  {row[2]}"
    finally:
        own_server.set_preload("")
        own_server.stop()
        assert own_server.start()


@pytest.mark.parametrize("tunables", ["", "glibc.rtld.execstack=2"], ids=["default", "execstack_forced"])
def test_executable_stack_and_the_postmasters_tunables(own_server, build, tunables):
    """A module asking for an executable stack: glibc 2.41 refuses it at dlopen();
    from 2.42, GLIBC_TUNABLES=glibc.rtld.execstack=2 in the postmaster's environment
    makes the stack executable at start, and it loads (2.41's tunable stops at 1,
    unless the loader has the backport: Debian 13's does)."""
    from modules import GLIBC
    from pgdl.libc import libc_of
    forced = GLIBC >= (2, 42) or "execstack_force" in libc_of(f"{BINDIR}/postgres").backports
    built = build("execstack_env", PROVIDER, "-Wl,-z,execstack")
    environ = {"GLIBC_TUNABLES": tunables} if tunables else {}
    own_server.stop()
    assert own_server.start(**environ)
    try:
        conn = own_server.cluster
        error = conn.error_of("LOAD %s", (str(built),))
        actual = (True, None, None, None, None) if error is None else \
            (False, error.sqlstate, error.message, error.detail, error.hint)
        assert actual[0] is (GLIBC < (2, 41) or forced and bool(tunables)), actual
        assert conn.query("SELECT * FROM pgdl.predict_load(%s, context => 'new session')", (str(built),))[0] == actual
    finally:
        own_server.stop()
        assert own_server.start()


def test_a_relative_search_entry_naming_a_file(own_server, build, tmp_path):
    """LD_LIBRARY_PATH=notadir:DIR in the postmaster's environment, notadir a file in
    the data directory (the backend's cwd): up to glibc 2.38 its ENOTDIR ends the
    list and the dependency in DIR is not found; from 2.39 the search goes on."""
    from modules import GLIBC
    lib = tmp_path / "llpdeps"
    lib.mkdir()
    os.chmod(tmp_path, 0o755)
    build("llp_provider", PROVIDER, "-Wl,-soname,libpgdlllp2.so", output="llpdeps/libpgdlllp2.so")
    consumer = build("llp_consumer", CONSUMER, f"-L{lib}", "-lpgdlllp2")
    (own_server.data / "notadir").write_text("a file, not a directory\n")
    own_server.stop()
    assert own_server.start(LD_LIBRARY_PATH=f"notadir:{lib}")
    try:
        conn = own_server.cluster
        error = conn.error_of("LOAD %s", (str(consumer),))
        actual = (True, None, None, None, None) if error is None else \
            (False, error.sqlstate, error.message, error.detail, error.hint)
        assert actual[0] is (GLIBC >= (2, 39)), actual
        assert conn.query("SELECT * FROM pgdl.predict_load(%s, context => 'new session')", (str(consumer),))[0] \
            == actual
    finally:
        own_server.stop()
        assert own_server.start()
