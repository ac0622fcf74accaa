"""diagnose() on extensions, libraries and functions, and whole-server
agreement: every stock module is predicted as the real LOAD behaves."""

from __future__ import annotations

import os
import re

import pytest

from conftest import ServerError

HELPER_MODULE = r"""
#include "postgres.h"
#include "fmgr.h"
PG_MODULE_MAGIC;
PGDLLEXPORT int pgdl_helper_value(void);
int pgdl_helper_value(void) { return 7; }
"""

USER_MODULE = r"""
#include "postgres.h"
#include "fmgr.h"
PG_MODULE_MAGIC;
extern int pgdl_helper_value(void);
PG_FUNCTION_INFO_V1(uses_helper);
Datum uses_helper(PG_FUNCTION_ARGS) { PG_RETURN_INT32(pgdl_helper_value()); }
"""


LOADER_ERRORS = ('could not load library', 'could not access file', 'incompatible library')


def diagnose(cluster, target, **kw):
    return cluster.query('SELECT topic, status, subject, message, hint FROM pgdl.diagnose(%s)', (target,), **kw)


def test_every_stock_module_predicted_like_real_load(cluster):
    pkglibdir = cluster.query("SELECT setting FROM pgdl._server_config() WHERE name = 'PKGLIBDIR'")[0][0]
    modules = sorted(f for f in os.listdir(pkglibdir) if f.endswith(".so"))
    assert len(modules) > 20
    disagreements = []
    for module in modules:
        path = f"{pkglibdir}/{module}"
        will_load, *error = cluster.query("SELECT * FROM pgdl.predict_load(%s)", (path,))[0]
        actual = cluster.error_of("LOAD %s", (path,))
        if actual is None:
            if not will_load:
                disagreements.append((module, "pgdl says it fails but it loads", error))
        elif not will_load:
            if ServerError(*error) != actual:
                disagreements.append((module, "different error", error, actual))
        elif actual.message.startswith(LOADER_ERRORS):
            disagreements.append((module, "loads per pgdl, fails for real", actual))
        # Otherwise the module's own _PG_init() refused (pg_cron, sepgsql outside
        # shared_preload_libraries): code pgdl never runs, and says so.
    assert not disagreements, disagreements


def test_stock_modules_bind_cleanly(cluster):
    rows = cluster.query("""
        SELECT f, p.will_load, p.message
          FROM pg_ls_dir((SELECT setting FROM pgdl._server_config() WHERE name = 'PKGLIBDIR')) f,
               pgdl.predict_load((SELECT setting FROM pgdl._server_config() WHERE name = 'PKGLIBDIR') || '/' || f) p
         WHERE f LIKE '%%.so'""")
    # Transform modules need their language and type modules first; preload-only
    # modules refuse in their _PG_init(): both are real failures (the test above compares them).
    failing = [f for f, ok, message in rows if not ok and "shared_preload_libraries" not in message]
    assert all(f.endswith("plpython3.so") for f in failing), failing


def test_diagnose_extension(cluster):
    rows = diagnose(cluster, "dblink")
    checks = [r[0] for r in rows]
    assert checks[:2] == ["verdict", "context"] and checks.index("extension") == checks.index("loader") + 1
    assert "resolution" in checks and "dependency" in checks and "magic" in checks
    assert rows[0][:2] == ("verdict", "ok")
    assert not [r for r in rows if r[1] == "error"]


def test_diagnose_function(cluster):
    created = not cluster.query("SELECT 1 FROM pg_extension WHERE extname = 'dblink'")
    cluster.query("CREATE EXTENSION IF NOT EXISTS dblink")
    try:
        rows = diagnose(cluster, "dblink_connect(text)")
    finally:
        if created:                 # other tests expect the database as they found it
            cluster.query("DROP EXTENSION dblink")
    assert rows[0][:3] == ("verdict", "ok", "dblink_connect(text)")
    entry = [r for r in rows if r[0] == "entry point"]
    assert entry and entry[0][1] == "ok"


def test_diagnose_unknown_function_is_clear(cluster):
    error = cluster.error_of("SELECT * FROM pgdl.diagnose('no_such_function(int)')")
    assert error.sqlstate == "42883" and "does not exist" in error.message


def test_module_needing_another_loaded_first(cluster, build):
    helper = build("pgdl_helper_mod", HELPER_MODULE)
    user = build("pgdl_user_mod", USER_MODULE)
    setup = (f"SET dynamic_library_path = '$libdir:{helper.parent}'",)
    # Alone: the helper's symbol is missing, exactly as the server says.
    will_load, *error = cluster.query("SELECT * FROM pgdl.predict_load(%s)", (str(user),), setup=setup)[0]
    actual = cluster.error_of("LOAD %s", (str(user),), setup=setup)
    assert not will_load and ServerError(*error) == actual
    assert actual.message.endswith("undefined symbol: pgdl_helper_value")
    symbols = [r for r in diagnose(cluster, str(user), setup=setup) if r[0] == "symbols"]
    assert "pgdl_helper_mod.so" in symbols[0][3]
    hint = symbols[0][4]
    assert "Load pgdl_helper_mod first" in hint
    # The hint applied as written: LOAD the helper in the same session (RTLD_GLOBAL), and it loads.
    after = setup + (re.search(r"`(LOAD '[^']*')`", hint).group(1),)
    assert cluster.query("SELECT will_load FROM pgdl.predict_load(%s)", (str(user),), setup=after) == [(True,)]
    assert cluster.error_of("LOAD %s", (str(user),), setup=after) is None


@pytest.mark.parametrize("flags, via", [
    (["-Wl,--disable-new-dtags"], "RPATH"),
    (["-Wl,--enable-new-dtags"], "RUNPATH"),
])
def test_origin_rpath_and_runpath(cluster, build, tmp_path, flags, via):
    libdir = tmp_path / "deps"
    libdir.mkdir()
    os.chmod(libdir, 0o755)
    dep = build("pgdl_origin_dep", "int origin_value(void) { return 3; }\n", "-Wl,-soname,libpgdlorigin.so.1",
                output="deps/libpgdlorigin.so.1")
    src = HELPER_MODULE.replace("pgdl_helper_value", "origin_user") + \
        "extern int origin_value(void);\nint call_origin(void) { return origin_value(); }\n"
    module = build("pgdl_origin_mod", src, str(dep), "-Wl,-rpath,$ORIGIN/deps", *flags)
    rows = cluster.query("SELECT needed, path, found_via, status FROM pgdl.dependencies(%s)", (str(module),))
    dep_row = [r for r in rows if r[0] == "libpgdlorigin.so.1"][0]
    assert dep_row[1] == str(dep) and via in dep_row[2] and dep_row[3] == "ok"
    assert cluster.error_of("LOAD %s", (str(module),)) is None
    assert cluster.query("SELECT will_load FROM pgdl.predict_load(%s)", (str(module),)) == [(True,)]


# -- targets as a DBA types them ---------------------------------------------------

@pytest.fixture
def bare_db(cluster):
    """A database with pgdl and nothing else created in it."""
    cluster.query("DROP DATABASE IF EXISTS pgdl_targets")
    cluster.query("CREATE DATABASE pgdl_targets")
    conn = cluster.connect(database="pgdl_targets")
    conn.cursor().execute("CREATE EXTENSION pgdl CASCADE")
    conn.close()
    yield "pgdl_targets"
    cluster.query("DROP DATABASE pgdl_targets")


def in_db(cluster, db, sql, params=()):
    return cluster.query(sql, params, database=db)


def test_a_typo_is_named_as_one(cluster):
    rows = diagnose(cluster, "dblnk")
    resolution = [r for r in rows if r[0] == "resolution"][0]
    assert resolution[1:4] == ("error", "dblnk", "no extension, library or function named 'dblnk'; did you mean dblink?")
    assert not resolution[4].startswith("Install the library")
    # The verdict is still the server's own for LOAD 'dblnk'.
    real = cluster.error_of("LOAD 'dblnk'")
    assert rows[0][0] == "verdict" and real.message in rows[0][3]


def test_signature_of_an_extension_not_created_here(cluster, bare_db):
    """dblink_connect(text) before CREATE EXTENSION dblink: found in dblink's install script."""
    rows = in_db(cluster, bare_db, "SELECT topic, status, message FROM pgdl.diagnose('dblink_connect(text)')")
    function = [r for r in rows if r[0] == "function"][0]
    assert function[:2] == ("function", "ok") and "declared by extension dblink" in function[2]
    assert rows[0][:2] == ("verdict", "ok")
    # With two arguments too (its script names them), and the real thing agrees.
    rows = in_db(cluster, bare_db, "SELECT topic, status FROM pgdl.diagnose('dblink_connect(text, text)')")
    assert rows[0] == ("verdict", "ok")
    in_db(cluster, bare_db, "CREATE EXTENSION dblink")
    assert in_db(cluster, bare_db, "SELECT 'dblink_connect(text,text)'::regprocedure::text") == \
        [("dblink_connect(text,text)",)]
    error = cluster.error_of("SELECT * FROM pgdl.diagnose('dblink_connect(integer, bytea, text)')")
    assert error.sqlstate == "42883"


def test_function_name_without_parentheses(cluster):
    rows = diagnose(cluster, "plpython3_call_handler")
    function = [r for r in rows if r[0] == "function"][0]
    assert function[:2] == ("function", "ok") and "plpython3_call_handler()" in function[3]
    assert rows[0][:3] == ("verdict", "ok", "plpython3_call_handler()")
