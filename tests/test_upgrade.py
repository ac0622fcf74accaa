"""Versions: CREATE EXTENSION gives 0.3.0, 0.1.0 and 0.2.0 update to the same thing,
and the audit history is extension configuration that pg_dump keeps."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager

import pytest

import pgdl

from conftest import pg_config

# Every object of the extension with its definition and privileges.
OBJECTS = """
SELECT pg_describe_object(d.classid, d.objid, 0),
       coalesce(pg_get_functiondef(p.oid) || p.proacl::text, c.relacl::text,
                pg_get_viewdef(c.oid), '')
  FROM pg_depend d
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgdl'
  LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
  LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
 WHERE d.deptype = 'e'
 ORDER BY 1
"""


def q(cluster, db, sql, params=()):
    conn = cluster.connect(database=db)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@pytest.fixture(scope="module")
def databases(cluster):
    names = ("pgdl_v010", "pgdl_v020", "pgdl_restored")
    for name in names:
        cluster.query(f"CREATE DATABASE {name}")
    yield names
    for name in names:
        cluster.query(f"DROP DATABASE {name}")


def test_update_from_0_1_0_equals_a_fresh_install(cluster, databases):
    old, new, _ = databases
    q(cluster, old, "CREATE EXTENSION pgdl VERSION '0.1.0' CASCADE")
    assert q(cluster, old, "SELECT extversion FROM pg_extension WHERE extname = 'pgdl'") == [("0.1.0",)]
    assert q(cluster, old, "SELECT to_regproc('pgdl.audit')") == [(None,)]
    q(cluster, old, "ALTER EXTENSION pgdl UPDATE")
    q(cluster, new, "CREATE EXTENSION pgdl CASCADE")
    for db in (old, new):
        assert q(cluster, db, "SELECT extversion FROM pg_extension WHERE extname = 'pgdl'") == [(pgdl.__version__,)]
    assert q(cluster, old, OBJECTS) == q(cluster, new, OBJECTS)
    # The 0.1.0 functions still work, and so do the new ones.
    assert q(cluster, old, "SELECT will_load FROM pgdl.predict_load('dblink')") == [(True,)]
    assert q(cluster, old, "SELECT count(*) FROM pgdl.audit() WHERE status = 'error'") == [(0,)]


def test_history_is_dumped_and_restored(cluster, databases):
    old, _, restored = databases
    runs = [q(cluster, old, "SELECT pgdl.record_audit()")[0][0] for _ in range(2)]
    extconfig = q(cluster, old, "SELECT extconfig::regclass[]::text[] FROM pg_extension WHERE extname = 'pgdl'")
    assert set(extconfig[0][0]) == {"pgdl.audit_run", "pgdl.audit_finding", "pgdl.audit_run_run_id_seq"}
    params = cluster.dsn
    env = dict(os.environ, PGHOST=params["host"], PGPORT=str(params["port"]), PGUSER=params["user"])
    bindir = pg_config("--bindir")
    dump = subprocess.run([f"{bindir}/pg_dump", "-d", old], env=env, check=True, capture_output=True).stdout
    subprocess.run([f"{bindir}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", restored], input=dump, env=env,
                   check=True, capture_output=True)
    history = "SELECT r.run_id, r.started_at, count(f.*) FROM pgdl.audit_run r " \
              "LEFT JOIN pgdl.audit_finding f USING (run_id) GROUP BY 1, 2 ORDER BY 1"
    assert q(cluster, restored, history) == q(cluster, old, history)
    assert [r[0] for r in q(cluster, restored, history)] == runs
    # The sequence came along: new runs do not collide with restored ones.
    assert q(cluster, restored, "SELECT pgdl.record_audit()")[0][0] == runs[-1] + 1


def test_update_from_0_2_0_keeps_user_views_and_history(cluster):
    """ALTER EXTENSION pgdl UPDATE from 0.2.0 with views on pgdl's functions and
    history tables: the update goes through, the views and the recorded runs
    still work, and the next run reports no change that did not happen."""
    db = "pgdl_v020_views"
    cluster.query(f"CREATE DATABASE {db}")
    try:
        q(cluster, db, "CREATE EXTENSION pgdl VERSION '0.2.0' CASCADE")
        before = q(cluster, db, "SELECT pgdl.record_audit()")[0][0]
        q(cluster, db, "CREATE VIEW my_errors AS SELECT kind, subject FROM pgdl.audit() WHERE status = 'error'")
        q(cluster, db, "CREATE VIEW my_runs AS SELECT run_id, errors, warnings FROM pgdl.audit_run")
        q(cluster, db, "CREATE VIEW my_dblink AS SELECT will_load FROM pgdl.predict_load('dblink')")
        runs = q(cluster, db, "SELECT * FROM my_runs")
        q(cluster, db, "ALTER EXTENSION pgdl UPDATE")
        assert q(cluster, db, "SELECT extversion FROM pg_extension WHERE extname = 'pgdl'") == [(pgdl.__version__,)]
        assert q(cluster, db, "SELECT * FROM my_runs") == runs
        assert q(cluster, db, "SELECT * FROM my_errors") == []
        assert q(cluster, db, "SELECT * FROM my_dblink") == [(True,)]
        after = q(cluster, db, "SELECT pgdl.record_audit()")[0][0]
        assert after == before + 1
        # The changes: 0.5.0's audit answers for a new session, whose stale
        # code is the postmaster's (0.2.0's looked at this backend).
        changes = q(cluster, db, "SELECT change, kind, subject, status FROM pgdl.audit_changes")
        # The update itself: 0.2.0's audit had an 'update' row for pgdl (its update path works).
        assert sorted(changes) == [("appeared", "stale", "the postmaster (so every new session)", "ok"),
                                   ("disappeared", "stale", "this backend", "ok"),
                                   ("disappeared", "update", "pgdl", "ok")]
        # The same objects as a fresh install.
        q(cluster, db, "DROP VIEW my_errors, my_runs, my_dblink")
        fresh = "pgdl_v030_fresh"
        cluster.query(f"CREATE DATABASE {fresh}")
        try:
            q(cluster, fresh, "CREATE EXTENSION pgdl CASCADE")
            assert q(cluster, db, OBJECTS) == q(cluster, fresh, OBJECTS)
        finally:
            cluster.query(f"DROP DATABASE {fresh}")
    finally:
        cluster.query(f"DROP DATABASE {db}")


def test_one_version_everywhere():
    """The control file's default_version is the version of META.json and of the package,
    and META.json names files that exist."""
    import json
    import re
    from pathlib import Path

    import pgdl
    root = Path(__file__).resolve().parent.parent
    control = (root / "extension" / "pgdl.control").read_text()
    version = re.search(r"default_version\s*=\s*'([^']+)'", control).group(1)
    meta = json.loads((root / "META.json").read_text())
    assert meta["version"] == meta["provides"]["pgdl"]["version"] == pgdl.__version__ == version
    assert (root / meta["provides"]["pgdl"]["file"]).is_file()
    scripts = sorted(p.name for p in (root / "sql").glob("pgdl--*.sql"))
    assert any(s.endswith(f"--{version}.sql") for s in scripts), scripts


def test_update_to_0_4_0_with_a_view_on_a_reshaped_function(cluster):
    """0.4.0 reshapes resolve, check_magic, dependencies and diagnose: before the
    update, a database still at 0.3.0 gets a clear error from them (not rows of
    the wrong shape), a view on one stops the update with PostgreSQL's own
    error, and once the view is dropped the update goes through."""
    db = "pgdl_v030_view"
    cluster.query(f"CREATE DATABASE {db}")
    try:
        q(cluster, db, "CREATE EXTENSION pgdl VERSION '0.3.0' CASCADE")
        conn = cluster.connect(database=db)
        try:
            with conn.cursor() as cur:
                with pytest.raises(Exception) as exc:
                    cur.execute("SELECT * FROM pgdl.diagnose('dblink')")
                assert exc.value.pgcode == "55000"
                assert exc.value.diag.message_hint == "Run ALTER EXTENSION pgdl UPDATE in this database."
                cur.execute("SELECT will_load FROM pgdl.predict_load('dblink')")     # same shape: works
                assert cur.fetchall() == [(True,)]
                cur.execute("CREATE VIEW my_diagnosis AS SELECT status FROM pgdl.diagnose('dblink')")
                with pytest.raises(Exception) as exc:
                    cur.execute("ALTER EXTENSION pgdl UPDATE")
                assert exc.value.pgcode == "2BP01"        # dependent objects still exist
                cur.execute("DROP VIEW my_diagnosis")
                cur.execute("ALTER EXTENSION pgdl UPDATE")
                cur.execute("SELECT topic, status FROM pgdl.diagnose('dblink') WHERE topic = 'verdict'")
                assert cur.fetchall() == [("verdict", "ok")]
        finally:
            conn.close()
    finally:
        cluster.query(f"DROP DATABASE {db}")


def assert_update_keeps_views_and_history(cluster, db: str, version: str, views: dict[str, str]):
    """Install `version`, record an audit and make the views; after ALTER EXTENSION
    UPDATE every view answers as before and the recorded history is still there."""
    q(cluster, db, f"CREATE EXTENSION pgdl VERSION '{version}' CASCADE")
    run = q(cluster, db, "SELECT pgdl.record_audit()")[0][0]
    for name, sql in views.items():
        q(cluster, db, f"CREATE VIEW {name} AS {sql}")
    before = {name: q(cluster, db, f"SELECT * FROM {name}") for name in views}
    q(cluster, db, "ALTER EXTENSION pgdl UPDATE")
    assert q(cluster, db, "SELECT extversion FROM pg_extension WHERE extname = 'pgdl'") == [(pgdl.__version__,)]
    assert {name: q(cluster, db, f"SELECT * FROM {name}") for name in views} == before
    assert q(cluster, db, "SELECT count(*) FROM pgdl.audit_run WHERE run_id = %s", (run,)) == [(1,)]
    assert q(cluster, db, "SELECT pgdl.record_audit() > %s", (run,)) == [(True,)]


@contextmanager
def scratch_database(cluster, name: str):
    cluster.query(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        cluster.query(f"DROP DATABASE {name}")


def test_update_to_0_5_0_keeps_views_on_every_function(cluster):
    """0.5.0 adds `context` and `role`: 0.4.0's functions stay (renamed *_0_4),
    so views made on them and the recorded history survive the update."""
    with scratch_database(cluster, "pgdl_v040_views") as db:
        assert_update_keeps_views_and_history(cluster, db, "0.4.0", {
            "v_predict": "SELECT will_load FROM pgdl.predict_load('dblink')",
            "v_audit": "SELECT kind, status FROM pgdl.audit() WHERE kind = 'summary'",
            "v_diagnose": "SELECT status FROM pgdl.diagnose('dblink') WHERE topic = 'verdict'",
            "v_dependencies": "SELECT count(*) > 0 AS some FROM pgdl.dependencies('dblink')",
        })
        assert q(cluster, db, "SELECT will_load FROM pgdl.predict_load('dblink', context => 'new session')") \
            == [(True,)]


# Views on every public function of 0.5.0 (upgrade_check is 0.6.0's).
VIEWS_0_5 = {
    "v_predict": "SELECT will_load, message FROM pgdl.predict_load('pgdl_no_such_library')",
    "v_audit": "SELECT kind, status FROM pgdl.audit() WHERE kind = 'summary'",
    "v_diagnose": "SELECT status FROM pgdl.diagnose('dblink') WHERE topic = 'verdict'",
    "v_dependencies": "SELECT count(*) > 0 AS some FROM pgdl.dependencies('dblink')",
    "v_resolve": "SELECT count(*) > 0 AS some FROM pgdl.resolve('dblink')",
    "v_magic": "SELECT count(*) > 0 AS some FROM pgdl.check_magic('dblink')",
}


def test_update_to_0_6_0_keeps_views_and_history(cluster):
    """0.6.0 changes only how the functions call into PL/Python: views on every
    public function, and the recorded history, survive the update unchanged."""
    with scratch_database(cluster, "pgdl_v050_views") as db:
        assert_update_keeps_views_and_history(cluster, db, "0.5.0", VIEWS_0_5)


def test_update_to_0_7_0_keeps_views_and_history(cluster):
    """0.7.0 changes only pgdl._server_config (extension_control_path): views on every
    public function, upgrade_check's included, and the history survive."""
    with scratch_database(cluster, "pgdl_v060_views") as db:
        assert_update_keeps_views_and_history(cluster, db, "0.6.0", {
            **VIEWS_0_5,
            "v_upgrade": "SELECT count(*) >= 0 AS some FROM pgdl.upgrade_check(pg_catalog.current_setting('data_directory'))"
                         " WHERE false",
        })


def test_update_to_0_8_0_keeps_views_and_history(cluster):
    """0.8.0 adds explain(), tree() and the audit_metrics view, and diagnose()
    gives the verdict first: views on every public function and the history
    survive; the new view counts the runs recorded before the update."""
    with scratch_database(cluster, "pgdl_v070_views") as db:
        assert_update_keeps_views_and_history(cluster, db, "0.7.0", {
            **VIEWS_0_5,
            "v_upgrade": "SELECT count(*) >= 0 AS some FROM pgdl.upgrade_check(pg_catalog.current_setting('data_directory'))"
                         " WHERE false",
        })
        assert q(cluster, db, "SELECT runs, errors IS NOT NULL FROM pgdl.audit_metrics") == [(2, True)]
        assert q(cluster, db, "SELECT pgdl.explain('dblink') LIMIT 1") == \
            [("OK: CREATE EXTENSION dblink will load its libraries",)]
        assert q(cluster, db, "SELECT count(*) > 1 FROM pgdl.tree('dblink')") == [(True,)]


def test_update_to_0_9_0_keeps_views_and_history(cluster):
    """0.9.0 refuses a NULL argument in each public function's own body: views on
    every public function (explain and tree included) and the history survive,
    and a NULL now fails in the function's own frame."""
    with scratch_database(cluster, "pgdl_v080_views") as db:
        assert_update_keeps_views_and_history(cluster, db, "0.8.0", {
            **VIEWS_0_5,
            "v_upgrade": "SELECT count(*) >= 0 AS some FROM pgdl.upgrade_check(pg_catalog.current_setting('data_directory'))"
                         " WHERE false",
            "v_explain": "SELECT line FROM pgdl.explain('dblink') AS line LIMIT 1",
            "v_tree": "SELECT count(*) > 1 AS some FROM pgdl.tree('dblink')",
            "v_metrics": "SELECT runs > 0 AS some FROM pgdl.audit_metrics",
        })
        conn = cluster.connect(database=db)
        try:
            with conn.cursor() as cur, pytest.raises(Exception) as exc:
                cur.execute("SELECT * FROM pgdl.diagnose(NULL)")
            assert exc.value.pgcode == "23502" and exc.value.diag.context == 'SQL function "diagnose" statement 1'
        finally:
            conn.close()


def test_update_to_0_10_0_keeps_views_and_history(cluster):
    """0.10.0 splits what changes only on a reload out of _server_config() into
    _reset_config(): views on every public function and the history survive,
    and a new session's diagnosis still names where its preloads come from."""
    with scratch_database(cluster, "pgdl_v090_views") as db:
        assert_update_keeps_views_and_history(cluster, db, "0.9.0", {
            **VIEWS_0_5,
            "v_explain": "SELECT line FROM pgdl.explain('dblink') AS line LIMIT 1",
            "v_tree": "SELECT count(*) > 1 AS some FROM pgdl.tree('dblink')",
            "v_metrics": "SELECT runs > 0 AS some FROM pgdl.audit_metrics",
        })
        config = dict(q(cluster, db, "SELECT name, setting FROM pgdl._server_config()"))
        assert "PKGLIBDIR" in config and not [n for n in config if n.startswith("reset ")]
        reset = dict(q(cluster, db, "SELECT name, setting FROM pgdl._reset_config()"))
        assert set(reset) >= {"reset session_preload_libraries", "reset lc_messages", "source shared_preload_libraries"}
