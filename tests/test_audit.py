"""pgdl.audit() and its history in a real server."""

from __future__ import annotations

import glob
import os
import time

import pytest

from conftest import pg_config
from modules import GOOD_MODULE

COLUMNS = "kind, subject, status, message, hint, library, symbol"


@pytest.fixture(scope="module")
def db(cluster):
    """A database of its own, so C functions created here disturb no other test."""
    cluster.query("CREATE DATABASE pgdl_audit")
    conn = cluster.connect(database="pgdl_audit")
    conn.cursor().execute("CREATE EXTENSION pgdl CASCADE")
    conn.close()
    yield "pgdl_audit"
    cluster.query("DROP DATABASE pgdl_audit")


def q(cluster, db, sql, params=(), **kw):
    conn = cluster.connect(database=db, **({"user": kw["user"]} if kw.get("user") else {}))
    try:
        with conn.cursor() as cur:
            for statement in kw.get("setup", ()):
                cur.execute(statement)
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def audit(cluster, db=None, setup=()):
    sql = f"SELECT {COLUMNS} FROM pgdl.audit()"
    return q(cluster, db, sql, setup=setup) if db else cluster.query(sql, setup=setup)


def test_every_error_is_one_the_server_confirms(cluster, db):
    """Whatever else is installed on the host: each error the audit reports is a
    real CREATE EXTENSION or LOAD failing (a healthy host, stock or with Debian's
    extension packages, has none)."""
    rows = audit(cluster)
    for kind, subject, status, message, *_ in rows:
        if status != "error":
            continue
        if kind == "extension":
            failed = cluster.error_of(f'BEGIN; CREATE EXTENSION "{subject}" CASCADE; ROLLBACK')
        else:
            failed = cluster.error_of("LOAD %s", (subject if kind != "pkglibdir" else f"$libdir/{subject}",))
        assert failed is not None, (kind, subject, message)
    kinds = {r[0] for r in rows}
    assert {"library", "function", "extension", "pkglibdir", "stale", "summary"} <= kinds
    # PL/Python's call handler is a C function in every database with pgdl.
    assert any(r[0] == "function" and r[1].startswith("plpython3_call_handler") and r[2] == "ok" for r in rows)
    summary = rows[-1]
    assert summary[:3] == ("summary", "audit", "ok" if not any(r[2] == "warning" for r in rows) else "warning")
    assert summary[3] == ", ".join(f"{sum(r[2] == s for r in rows[:-1])} {s}" for s in ("ok", "warning", "error"))


def test_alias_control_files_are_no_error(cluster, db):
    """Debian's PostGIS packages install postgis-3.control beside postgis.control
    and no postgis-3 scripts.  Where the host has such aliases, the real CREATE
    EXTENSION fails with the error pgdl names, and the name it points to works."""
    rows = [r for r in audit(cluster) if r[0] == "extension" and r[3].startswith("another name for ")]
    if not rows:
        pytest.skip("no alias control file (Debian's PostGIS) on this host")
    for _, alias, status, message, *_ in rows:
        assert status == "ok"
        base = message.split()[3]
        failed = cluster.error_of(f'CREATE EXTENSION "{alias}"')
        assert (failed.sqlstate, f"fails: {failed.message}") == ("22023", message[message.rindex("fails: "):])
        conn = cluster.connect(database=db)
        try:
            conn.autocommit = False
            conn.cursor().execute(f'CREATE EXTENSION "{base}" CASCADE')      # works: rolled back
        finally:
            conn.rollback()
            conn.close()
        diagnosed = q(cluster, db, "SELECT topic, status, hint FROM pgdl.diagnose(%s)", (alias,))
        assert diagnosed[0][:2] == ("verdict", "error") and f"CREATE EXTENSION {base}" in [r[2] for r in diagnosed]


def test_covers_every_pkglibdir_object_and_control_file(cluster):
    rows = audit(cluster)
    pkglibdir, sharedir = pg_config("--pkglibdir"), pg_config("--sharedir")
    assert {r[1] for r in rows if r[0] == "pkglibdir"} == {
        os.path.basename(p) for p in glob.glob(f"{pkglibdir}/*.so")}
    assert {r[1] for r in rows if r[0] == "extension"} == {
        os.path.basename(p)[:-8] for p in glob.glob(f"{sharedir}/extension/*.control")}
    # Each library once, though many functions share it.
    libraries = [r[1] for r in rows if r[0] == "library"]
    assert len(libraries) == len(set(libraries))


def test_preload_settings_in_load_order_as_the_server_judges(cluster):
    # A list, as in postgresql.conf (one quoted string would be a single name).
    # This session's SETs count in 'this session' only.
    setup = ('SET session_preload_libraries = auto_explain, "no_such_session_lib"',
             "SET local_preload_libraries = auto_explain, '/tmp/x.so'")
    sql = f"SELECT {COLUMNS} FROM pgdl.audit('this session')"
    rows = [r for r in cluster.query(sql, setup=setup) if r[0].endswith("preload_libraries")]
    # A failing session preload is FATAL to the session: nothing after it is loaded.
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("session_preload_libraries", "auto_explain", "ok"),
        ("session_preload_libraries", "no_such_session_lib", "error"),
    ]
    assert rows[1][3] == ('could not access file "no_such_session_lib": No such file or directory; '
                          'new sessions fail to start (FATAL)')
    # local_preload_libraries looks in $libdir/plugins/, and only there.
    for name, message in (("auto_explain", 'could not access file "$libdir/plugins/auto_explain"'),
                          ("/tmp/x.so", 'access to library "/tmp/x.so" is not allowed')):
        setup = (f"SET local_preload_libraries = '{name}'",)
        rows = [r for r in cluster.query(sql, setup=setup) if r[0].endswith("preload_libraries")]
        assert [(r[0], r[1], r[2]) for r in rows] == [("local_preload_libraries", name, "error")]
        assert rows[0][3].startswith(message) and rows[0][5] == ("$libdir/plugins/auto_explain" if "/" not in name
                                                                 else name)
        # The server says the same when a session starts with these settings...
        with pytest.raises(Exception) as raised:
            cluster.connect(options=f"-c local_preload_libraries={name}")
        assert rows[0][3].split("; new sessions")[0] in str(raised.value)
        # ... and a new session (this one's SET aside) has none.
        assert not [r for r in audit(cluster, setup=setup) if r[0].endswith("preload_libraries")]


def test_hostile_probin_gives_rows_not_failure(cluster, db, tmp_path):
    os.chmod(tmp_path, 0o755)
    fifo = tmp_path / "fifo.so"
    os.mkfifo(fifo)
    targets = {"h_fifo": str(fifo), "h_dir": str(tmp_path), "h_zero": "/dev/zero",
               "h_missing": str(tmp_path / "missing.so"), "h_symbol": "$libdir/plpython3"}
    for fn, probin in targets.items():
        q(cluster, db, f"CREATE FUNCTION {fn}() RETURNS void LANGUAGE c AS '$libdir/plpython3', "
                       "'plpython3_call_handler'")
        # The server checks the library at CREATE time, so break it behind its back.
        q(cluster, db, "UPDATE pg_proc SET probin = %s, prosrc = %s WHERE oid = %s::regprocedure",
          (probin, "no_such_symbol" if fn == "h_symbol" else "plpython3_call_handler", f"{fn}()"))
    try:
        start = time.monotonic()
        rows = audit(cluster, db)
        assert time.monotonic() - start < 120
        functions = {r[1]: r for r in rows if r[0] == "function"}
        for fn in targets:
            assert functions[f"public.{fn}()"][2] == "error", functions[f"public.{fn}()"]
        assert functions["public.h_symbol()"][3] == \
            f'could not find function "no_such_symbol" in file "{pg_config("--pkglibdir")}/plpython3.so"'
        assert functions["public.h_missing()"][3] == f"its library {tmp_path}/missing.so will not load"
        libraries = {r[1]: r for r in rows if r[0] == "library"}
        assert "No such file or directory" in libraries[f"{tmp_path}/missing.so"][3]
        assert libraries["/dev/zero"][2] == libraries[str(tmp_path)][2] == libraries[str(fifo)][2] == "error"
    finally:
        for fn in targets:
            q(cluster, db, f"DROP FUNCTION {fn}()")


def test_stale_code_of_a_replaced_library(cluster, build, tmp_path):
    built = build("stalemod", GOOD_MODULE)
    conn = cluster.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"LOAD '{built}'")
            copy = tmp_path / "new.so"
            copy.write_bytes(built.read_bytes())
            os.replace(copy, built)          # a package upgrade: new inode, same name
            cur.execute(f"SELECT {COLUMNS} FROM pgdl.audit('this session') WHERE kind = 'stale'")
            rows = cur.fetchall()
    finally:
        conn.close()
    assert [(r[1], r[2]) for r in rows] == [(str(built), "warning")]
    assert "replaced or removed" in rows[0][3]


def test_history_changes_and_pruning(cluster, db):
    first = q(cluster, db, "SELECT pgdl.record_audit()")[0][0]
    second = q(cluster, db, "SELECT pgdl.record_audit()")[0][0]
    assert second > first
    assert q(cluster, db, "SELECT * FROM pgdl.audit_changes") == []
    run = q(cluster, db, "SELECT finished_at >= started_at, errors, warnings, run_by = current_user "
                         "FROM pgdl.audit_run WHERE run_id = %s", (second,))[0]
    assert run == (True, 0, run[2], True)
    assert q(cluster, db, "SELECT count(*) FROM pgdl.audit_finding WHERE run_id = %s", (second,))[0][0] > 50

    q(cluster, db, "CREATE FUNCTION h_new() RETURNS void LANGUAGE c AS '$libdir/plpython3', 'plpython3_call_handler'")
    q(cluster, db, "UPDATE pg_proc SET prosrc = 'gone_symbol' WHERE oid = 'h_new()'::regprocedure")
    third = q(cluster, db, "SELECT pgdl.record_audit()")[0][0]
    changes = q(cluster, db, "SELECT change, run_id, kind, subject, status FROM pgdl.audit_changes")
    assert changes == [("appeared", third, "function", "public.h_new()", "error")]
    assert q(cluster, db, "SELECT errors FROM pgdl.audit_run WHERE run_id = %s", (third,))[0][0] == 1
    q(cluster, db, "DROP FUNCTION h_new()")
    fourth = q(cluster, db, "SELECT pgdl.record_audit()")[0][0]
    changes = q(cluster, db, "SELECT change, run_id, subject FROM pgdl.audit_changes")
    assert changes == [("disappeared", third, "public.h_new()")]

    q(cluster, db, "UPDATE pgdl.audit_run SET started_at = started_at - interval '40 days' WHERE run_id < %s",
      (third,))
    assert q(cluster, db, "SELECT pgdl.prune_audits()")[0][0] == 2
    assert q(cluster, db, "SELECT pgdl.prune_audits('0')")[0][0] == 1        # the latest run stays
    assert q(cluster, db, "SELECT array_agg(DISTINCT run_id) FROM pgdl.audit_finding")[0][0] == [fourth]
    error = cluster.error_of("SELECT pgdl.prune_audits('-1 day')")
    assert (error.sqlstate, error.message) == ("22023", "keep must be a non-negative interval")


@pytest.fixture(scope="module")
def audit_roles(cluster, db):
    cluster.query("CREATE ROLE pgdl_audit_nobody LOGIN")
    cluster.query("CREATE ROLE pgdl_audit_monitor LOGIN IN ROLE pg_monitor")
    cluster.query("CREATE ROLE pgdl_audit_reader LOGIN IN ROLE pg_read_server_files")
    yield
    for role in ("pgdl_audit_nobody", "pgdl_audit_monitor", "pgdl_audit_reader"):
        cluster.query(f"DROP ROLE {role}")


def error_in(cluster, db, sql, user):
    try:
        q(cluster, db, sql, user=user)
    except Exception as exc:   # psycopg2.Error
        return exc.diag.sqlstate, exc.diag.message_primary
    return None


@pytest.mark.parametrize("sql, message", [
    ("SELECT * FROM pgdl.audit()", "permission denied for function audit"),
    ("SELECT pgdl.record_audit()", "permission denied for function record_audit"),
    ("SELECT pgdl.prune_audits()", "permission denied for function prune_audits"),
    ("SELECT * FROM pgdl.audit_run", "permission denied for table audit_run"),
    ("SELECT * FROM pgdl.audit_finding", "permission denied for table audit_finding"),
    ("SELECT * FROM pgdl.audit_changes", "permission denied for view audit_changes"),
])
def test_ordinary_role_is_refused(cluster, db, audit_roles, sql, message):
    assert error_in(cluster, db, sql, "pgdl_audit_nobody") == ("42501", message)


def test_pg_monitor_reads_history_only(cluster, db, audit_roles):
    q(cluster, db, "SELECT pgdl.record_audit()")
    for table in ("audit_run", "audit_finding", "audit_changes"):
        q(cluster, db, f"SELECT * FROM pgdl.{table}", user="pgdl_audit_monitor")
    assert q(cluster, db, "SELECT count(*) > 0 FROM pgdl.audit_finding", user="pgdl_audit_monitor") == [(True,)]
    assert error_in(cluster, db, "SELECT pgdl.record_audit()", "pgdl_audit_monitor") == \
        ("42501", "permission denied for function record_audit")
    assert error_in(cluster, db, "DELETE FROM pgdl.audit_run", "pgdl_audit_monitor") == \
        ("42501", "permission denied for table audit_run")


def test_pg_read_server_files_runs_audits(cluster, db, audit_roles):
    rows = q(cluster, db, "SELECT status FROM pgdl.audit()", user="pgdl_audit_reader")
    assert rows[-1] != ("error",)
    run = q(cluster, db, "SELECT pgdl.record_audit()", user="pgdl_audit_reader")[0][0]
    assert q(cluster, db, "SELECT run_by, errors FROM pgdl.audit_run WHERE run_id = %s", (run,)) == \
        [("pgdl_audit_reader", 0)]
