"""Remembered answers: reused only while every file they looked at is unchanged.

The backend keeps answers between calls (pgdl.filestate).  These tests change
files between two calls in one session and check that the second answer is
the one a fresh backend gives, and the one the real server then acts out.
Answers that depend on a file changed less than a second ago are never kept
(pgdl.filestate.SETTLED_NS), so the tests wait that long after changing files:
with fresh files they would prove nothing.
"""

from __future__ import annotations

import glob
import json
import os
import time

from conftest import ServerError, pg_config
from modules import GOOD_MODULE, NO_MAGIC_MODULE
from pgdl import filestate
from pgdl.engine.predict import predict_load
from pgdl.views.predict_load import prediction_row as as_error_row
from pgdl.server import Server

PKGLIBDIR = pg_config("--pkglibdir")
POSTGRES = os.path.join(pg_config("--bindir"), "postgres")

DEP_V1 = "int dep_old(void) { return 1; }\n"
DEP_V2 = DEP_V1 + "int dep_new(void) { return 2; }\n"
USES_NEW = GOOD_MODULE + "extern int dep_new(void);\nint use_new(void) { return dep_new(); }\n"


def settle() -> None:
    """Wait until every change made so far is old enough for answers to be kept."""
    time.sleep(filestate.SETTLED_NS / 1e9 + 0.1)


def server() -> Server:
    return Server(version_num=int(pg_config("--version").split()[1].split(".")[0]) * 10000,
                  pkglibdir=PKGLIBDIR, executable=POSTGRES, data_directory="/")


# -- pgdl.filestate --------------------------------------------------------------

def test_witness_sees_a_changed_file(tmp_path):
    f = tmp_path / "lib.so"
    f.write_bytes(b"one")
    settle()
    with filestate.one_call(), filestate.watching() as w:
        filestate.state(str(f))
        filestate.state(str(tmp_path / "absent.so"))
    assert w.settled
    with filestate.one_call():
        assert w.holds()
    f.write_bytes(b"two")
    settle()
    with filestate.one_call():
        assert not w.holds()


def test_witness_sees_a_new_file(tmp_path):
    with filestate.one_call(), filestate.watching() as w:
        filestate.state(str(tmp_path / "later.so"))
    (tmp_path / "later.so").write_bytes(b"x")
    with filestate.one_call():
        assert not w.holds()


def test_recent_change_is_not_trusted(tmp_path):
    f = tmp_path / "fresh.so"
    f.write_bytes(b"x")
    with filestate.watching() as w:
        filestate.state(str(f))
    assert not w.settled


def test_an_answer_worked_out_while_a_read_failed_is_not_remembered(tmp_path):
    f = tmp_path / "lib.so"
    f.write_bytes(b"one")
    settle()
    memo, files, computed = filestate.Memo(4), filestate.FileCache(4), []

    def work(failing):
        computed.append(1)
        filestate.state(str(f))
        if failing:
            filestate.read_failed()
        return len(computed)
    for failing, remembered in ((True, False), (False, True)):
        with filestate.one_call():
            first = memo.get(("m", failing), lambda: work(failing))
        with filestate.one_call():
            assert (memo.get(("m", failing), lambda: work(failing)) == first) is remembered
        first = files.get(str(f), lambda _s: work(failing), failing)
        assert (files.get(str(f), lambda _s: work(failing), failing) == first) is remembered


def test_one_call_sees_one_picture(tmp_path):
    f = tmp_path / "lib.so"
    with filestate.one_call():
        before = filestate.state(str(f))
        f.write_bytes(b"x")
        assert filestate.state(str(f)) == before      # examined once per call
    assert filestate.state(str(f)) != before


# -- predict_load() remembered -------------------------------------------------------

def test_remembered_answer_is_reused_then_renewed(build, tmp_path):
    dep = build("pgdl_dep", DEP_V2, "-Wl,-soname,libpgdl_dep.so.1", output="libpgdl_dep.so.1")
    mod = build("uses_dep", USES_NEW, f"-L{tmp_path}", "-l:libpgdl_dep.so.1", f"-Wl,-rpath,{tmp_path}")
    settle()
    srv = server()
    with filestate.one_call():
        first = predict_load(str(mod), srv)
    with filestate.one_call():
        again = predict_load(str(mod), srv)
    assert first.will_load and again is first              # nothing changed: the same answer object

    # The dependency is replaced by an older build without dep_new (a new inode, as package managers do).
    old = build("pgdl_dep_old", DEP_V1, "-Wl,-soname,libpgdl_dep.so.1", output="old.so")
    os.replace(old, dep)
    settle()
    with filestate.one_call():
        renewed = predict_load(str(mod), srv)
    assert renewed is not first and not renewed.will_load
    assert renewed.error.message.endswith("undefined symbol: dep_new")
    assert as_error_row(renewed, srv) == as_error_row(predict_load(str(mod), srv), srv)   # = uncached


def test_every_stock_module_same_cached_and_uncached():
    srv = server()
    modules = sorted(glob.glob(os.path.join(PKGLIBDIR, "*.so")))
    uncached = [as_error_row(predict_load(m, srv), srv) for m in modules]
    for _ in range(2):                                     # the first fills the caches, the second uses them
        with filestate.one_call():
            assert [as_error_row(predict_load(m, srv), srv) for m in modules] == uncached


# -- in a backend: one session, files changing between calls ----------------------------

def test_session_sees_a_replaced_dependency(cluster, build, tmp_path):
    dep = build("pgdl_sdep", DEP_V2.replace("dep_", "sdep_"), "-Wl,-soname,libpgdl_sdep.so.1",
                output="libpgdl_sdep.so.1")
    mod = build("uses_sdep", USES_NEW.replace("dep_", "sdep_"), f"-L{tmp_path}", "-l:libpgdl_sdep.so.1",
                f"-Wl,-rpath,{tmp_path}")
    settle()
    sql = "SELECT will_load, sqlstate, message, detail, hint FROM pgdl.predict_load(%s)"
    conn = cluster.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, (str(mod),))
            assert cur.fetchall()[0][0] is True
            cur.execute(sql, (str(mod),))                  # remembered
            assert cur.fetchall()[0][0] is True
            old = build("pgdl_sdep_old", DEP_V1.replace("dep_", "sdep_"), "-Wl,-soname,libpgdl_sdep.so.1",
                        output="old.so")
            os.replace(old, dep)
            settle()
            cur.execute(sql, (str(mod),))
            will_load, *error = cur.fetchall()[0]
    finally:
        conn.close()
    assert will_load is False
    actual = cluster.error_of("LOAD %s", (str(mod),))
    assert ServerError(*error) == actual
    assert actual.message.endswith("undefined symbol: sdep_new")


def test_remembered_audit_sees_a_new_module(build, tmp_path):
    """The whole audit is remembered; a module added to pkglibdir changes the directory it listed."""
    from pgdl.views.audit import audit
    (tmp_path / "lib").mkdir()
    build("good", GOOD_MODULE, output="lib/good.so")
    srv = server()
    srv.pkglibdir, srv.sharedir = str(tmp_path / "lib"), str(tmp_path / "share")
    settle()
    with filestate.one_call():
        first = audit(srv, [])
    with filestate.one_call():
        assert audit(srv, []) is first
    build("nomagic", NO_MAGIC_MODULE, output="lib/nomagic.so")
    settle()
    with filestate.one_call():
        renewed = audit(srv, [])
    assert renewed is not first
    rows = {(r.kind, r.subject): r for r in renewed}
    assert rows["pkglibdir", "nomagic.so"].status == "error"
    assert "missing magic block" in rows["pkglibdir", "nomagic.so"].message
    assert renewed == audit(srv, [])                   # = uncached


def test_shared_memory_is_not_a_loaded_object(cluster):
    """A backend maps PostgreSQL's dynamic shared memory (/dev/shm/PostgreSQL.*)
    shared, never as ld.so maps an object: left out of the server description,
    a segment created a moment ago (or one that comes and goes with a parallel
    query) cannot make every remembered answer look stale."""
    conn = cluster.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("""
                DO $$
                import json, sys
                sharedir = plpy.execute("SELECT setting FROM pgdl._server_config() WHERE name = 'SHAREDIR'")[0]["setting"]
                sys.path.insert(0, sharedir + "/pgdl")
                from pgdl.adapters.describe import describe_server
                with open("/proc/self/maps") as f:
                    fields = [line.split(None, 5) for line in f]
                shared = sorted({x[5].strip() for x in fields if len(x) == 6 and x[1][3] == "s"})
                loaded = [o.path for o in describe_server(plpy).loaded]
                plpy.notice(json.dumps([shared, loaded]))
                $$ LANGUAGE plpython3u""")
        shared, loaded = json.loads(conn.notices[-1].split("NOTICE:  ", 1)[1])
    finally:
        conn.close()
    assert any(p.startswith("/dev/shm/PostgreSQL.") for p in shared)   # the DSM control segment
    assert not set(shared) & set(loaded)
    assert any(os.path.basename(p).startswith("libc.so") for p in loaded)


def test_a_sessions_second_call_is_answered_from_what_the_first_worked_out(cluster):
    """pgdl's own SQL machinery (PL/pgSQL for pgdl._rows) is loaded before a
    call describes the backend, so the first call's description still holds
    for the second: one remembered reply, not one per call."""
    conn = cluster.connect()
    try:
        with conn.cursor() as cur:
            for _ in range(3):
                cur.execute("SELECT count(*) FROM pgdl.audit()")
            cur.execute("""
                DO $$
                from pgdl import replies
                plpy.notice(str(len(replies._mine)))
                $$ LANGUAGE plpython3u""")
        assert conn.notices[-1].split("NOTICE:  ", 1)[1].strip() == "1"
    finally:
        conn.close()
