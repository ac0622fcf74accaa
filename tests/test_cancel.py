"""Every pgdl call can be stopped: statement_timeout, pg_cancel_backend(),
pg_terminate_backend() take effect within a second, however long the work.

The long call is a real one: diagnose() of a module with many thousands of
undefined symbols explains each of them (which copies of its dependencies
exist, which PostgreSQL module defines it), seconds of honest work.
"""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest

UNDEFINED = 80_000


@pytest.fixture(scope="module")
def slow_module(tmp_path_factory, server_include):
    import os
    import subprocess
    d = tmp_path_factory.mktemp("slow")
    os.chmod(d, 0o755)
    src = d / "slow.c"
    src.write_text("".join(f"extern int pgdl_u{i};\n" for i in range(UNDEFINED))
                   + "int *pgdl_slow_table[] = {" + ",".join(f"&pgdl_u{i}" for i in range(UNDEFINED)) + "};\n")
    out = d / "slow.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O0", "-o", str(out), str(src)], check=True)
    return str(out)


def timed_error(cluster, sql, params=(), setup=()):
    start = time.monotonic()
    error = cluster.error_of(sql, params, setup=setup)
    return error, time.monotonic() - start


def test_the_work_is_long_enough_to_need_stopping(cluster, slow_module):
    """Without a bound the call runs well past the timeouts below (and still answers)."""
    start = time.monotonic()
    rows = cluster.query("SELECT count(*) FROM pgdl.diagnose(%s) WHERE status = 'error'", (slow_module,))
    assert time.monotonic() - start > 2     # the tests below stop it after 1 s
    assert rows[0][0] >= UNDEFINED


def test_statement_timeout(cluster, slow_module):
    error, elapsed = timed_error(cluster, "SELECT count(*) FROM pgdl.diagnose(%s)", (slow_module,),
                                 setup=("SET statement_timeout = '1s'",))
    assert error is not None
    assert (error.sqlstate, error.message) == ("57014", "canceling statement due to statement timeout")
    assert elapsed < 2.0


def _run_in_background(cluster, sql, params):
    conn = cluster.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    outcome = {}

    def work():
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                outcome["rows"] = cur.fetchall()
        except psycopg2.Error as exc:
            outcome["error"] = exc
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=work)
    thread.start()
    return conn, pid, thread, outcome


@pytest.mark.parametrize("sql", ["SELECT count(*) FROM pgdl.diagnose(%s)",
                                 "SELECT count(*) FROM pgdl.check_magic(%s) CROSS JOIN pgdl.diagnose(%s)"])
def test_pg_cancel_backend(cluster, slow_module, sql):
    conn, pid, thread, outcome = _run_in_background(cluster, sql, (slow_module,) * sql.count("%s"))
    try:
        time.sleep(1.0)
        assert thread.is_alive()
        asked = time.monotonic()
        assert cluster.query("SELECT pg_cancel_backend(%s)", (pid,)) == [(True,)]
        thread.join(10)
        assert "error" in outcome, outcome
        assert outcome["error"].pgcode == "57014"
        assert outcome["error"].diag.message_primary == "canceling statement due to user request"
        assert outcome["at"] - asked < 1.0
        with conn.cursor() as cur:                 # the session goes on
            cur.execute("SELECT will_load FROM pgdl.predict_load('dblink')")
            assert cur.fetchall() == [(True,)]
    finally:
        conn.close()


def test_pg_terminate_backend(cluster, slow_module):
    conn, pid, thread, outcome = _run_in_background(cluster, "SELECT count(*) FROM pgdl.diagnose(%s)",
                                                    (slow_module,))
    try:
        time.sleep(1.0)
        asked = time.monotonic()
        assert cluster.query("SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
        thread.join(10)
        assert isinstance(outcome.get("error"), psycopg2.OperationalError), outcome
        assert outcome["at"] - asked < 1.0
        deadline = time.monotonic() + 5
        while cluster.query("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)) != [(0,)]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        conn.close()
    assert cluster.query("SELECT will_load FROM pgdl.predict_load('dblink')") == [(True,)]
