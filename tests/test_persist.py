"""Answers kept across backends (pgdl.persist): a new backend reuses what
another worked out only while the same files are bound by the same rules.

A server of the tests' own keeps its answers in a directory of the test
(PGDL_CACHE_DIR).  Each test makes an answer be kept, changes what it rests
on -- a file replaced, a chmod, a SET, an ldconfig -- and checks that a new
backend's prediction is what the real LOAD then does in a new session.
"""

from __future__ import annotations

import marshal
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ServerError, started_server
from modules import GOOD_MODULE
from pgdl import filestate

SONAME = "libpgdlkeep.so.1"
OLD_LIB = "int keep_old(void) { return 1; }\n"
NEW_LIB = OLD_LIB + "int keep_new(void) { return 2; }\n"
MODULE = GOOD_MODULE + "extern int keep_new(void);\nint keep_use(void) { return keep_new(); }\n"
PREDICT = "SELECT will_load, sqlstate, message, detail, hint FROM pgdl.predict_load(%s, context => 'new session')"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cache = tmp_path_factory.mktemp("persist-cache")
    for own in started_server(tmp_path_factory, "persist", 40000, PGDL_CACHE_DIR=str(cache)):   # once
        own.cache = cache
        yield own


def settle() -> None:
    time.sleep(filestate.SETTLED_NS / 1e9 + 0.1)


def kept(server) -> dict:
    path = server.cache / "answers"
    return marshal.loads(path.read_bytes()) if path.exists() else {}


def gcc(*args):
    subprocess.run(["gcc", *args], check=True, capture_output=True, text=True)


def library(directory: Path, source: str) -> Path:
    directory.mkdir(exist_ok=True)
    os.chmod(directory, 0o755)
    (directory / "lib.c").write_text(source)
    gcc("-shared", "-fPIC", f"-Wl,-soname,{SONAME}", "-o", str(directory / SONAME), str(directory / "lib.c"))
    return directory / SONAME


def module(build, name: str, against: Path, *flags: str) -> Path:
    return build(name, MODULE, str(against), *flags)


def predicted(server, name: str, setup=()) -> tuple[bool, ServerError]:
    will_load, *error = server.cluster.query(PREDICT, (name,), setup=setup)[0]
    return will_load, ServerError(*error)


def acted_out(server, name: str, setup=()) -> ServerError:
    """The real LOAD in a new session (after `setup`)."""
    return server.cluster.error_of("LOAD %s", (name,), setup=setup) or ServerError(None, None, None, None)


def assert_prediction_is_the_load(server, name: str, setup=(), will_load: bool | None = None):
    ok, error = predicted(server, name, setup)
    assert error == acted_out(server, name, setup)
    assert ok is (error.message is None)
    if will_load is not None:
        assert ok is will_load, error


def test_a_new_backend_answers_from_what_another_kept(server, build, tmp_path):
    lib = library(tmp_path / "lib", NEW_LIB)
    mod = module(build, "keep_mod", lib, f"-Wl,-rpath,{lib.parent}")
    settle()
    before = kept(server)
    assert_prediction_is_the_load(server, str(mod), will_load=True)
    after = kept(server)
    assert set(after) > set(before)                  # the binding of mod's closure, among others
    state = os.stat(server.cache / "answers")
    assert_prediction_is_the_load(server, str(mod), will_load=True)
    again = os.stat(server.cache / "answers")
    assert (again.st_ino, again.st_mtime_ns) == (state.st_ino, state.st_mtime_ns)   # nothing new to keep


def test_a_replaced_library_is_bound_afresh(server, build, tmp_path):
    lib = library(tmp_path / "lib", NEW_LIB)
    mod = module(build, "keep_replaced", lib, f"-Wl,-rpath,{lib.parent}")
    settle()
    assert_prediction_is_the_load(server, str(mod), will_load=True)
    old = library(tmp_path / "old", OLD_LIB)
    os.replace(old, lib)
    settle()
    assert_prediction_is_the_load(server, str(mod), will_load=False)
    assert predicted(server, str(mod))[1].message.endswith("undefined symbol: keep_new")


def test_a_library_rewritten_in_place_is_bound_afresh(server, build, tmp_path):
    """Same path, same inode: the size, mtime and ctime tell."""
    lib = library(tmp_path / "lib", NEW_LIB)
    mod = module(build, "keep_rewritten", lib, f"-Wl,-rpath,{lib.parent}")
    settle()
    assert_prediction_is_the_load(server, str(mod), will_load=True)
    inode = os.stat(lib).st_ino
    old = library(tmp_path / "old", OLD_LIB)
    with open(lib, "r+b") as f:
        data = old.read_bytes()
        f.write(data)
        f.truncate(len(data))
    assert os.stat(lib).st_ino == inode
    settle()
    assert_prediction_is_the_load(server, str(mod), will_load=False)


def test_a_chmod_is_seen(server, build, tmp_path):
    lib = library(tmp_path / "lib", NEW_LIB)
    mod = module(build, "keep_chmod", lib, f"-Wl,-rpath,{lib.parent}")
    settle()
    assert_prediction_is_the_load(server, str(mod), will_load=True)
    os.chmod(lib, 0)
    try:
        settle()
        assert_prediction_is_the_load(server, str(mod), will_load=False)
    finally:
        os.chmod(lib, 0o644)
    settle()
    assert_prediction_is_the_load(server, str(mod), will_load=True)


def test_a_set_that_chooses_another_file_is_seen(server, build, tmp_path):
    """The same name, two directories: dynamic_library_path decides which module, and so what is bound."""
    good = library(tmp_path / "good", NEW_LIB)
    bad = library(tmp_path / "bad", OLD_LIB)
    for directory, lib in ((tmp_path / "mods_good", good), (tmp_path / "mods_bad", bad)):
        directory.mkdir()
        os.chmod(directory, 0o755)
        built = module(build, "keep_set", good, f"-Wl,-rpath,{lib.parent}")
        os.replace(built, directory / "keep_set.so")
    settle()
    for directory, will_load in (("mods_good", True), ("mods_bad", False), ("mods_good", True)):
        setup = (f"SET dynamic_library_path = '{tmp_path / directory}'",)
        assert_prediction_is_the_load(server, "keep_set", setup, will_load=will_load)


LDCONF, LDCONFIG = os.environ.get("PGDL_LDCONF"), os.environ.get("PGDL_LDCONFIG")


@pytest.mark.skipif(not LDCONF, reason="needs a disposable root where the tests may run ldconfig (scripts/matrix.sh)")
def test_an_ldconfig_that_chooses_another_copy_is_seen(server, build, tmp_path):
    new = library(tmp_path / "new", NEW_LIB)
    old = library(tmp_path / "old", OLD_LIB)
    mod = module(build, "keep_ldconfig", new)           # no rpath: ld.so.cache finds the library
    conf = Path(LDCONF)
    try:
        for first, will_load in ((new, True), (old, False), (new, True)):
            conf.write_text(f"{first.parent}\n")
            subprocess.run(shlex.split(LDCONFIG), check=True)
            settle()
            assert_prediction_is_the_load(server, str(mod), will_load=will_load)
    finally:
        conf.write_text("")
        subprocess.run(shlex.split(LDCONFIG), check=True)


@pytest.mark.parametrize("damage", ["garbage", "fifo", "group-writable", "symlink", "directory"])
def test_a_damaged_or_foreign_answers_file_is_not_trusted(server, build, tmp_path, damage):
    lib = library(tmp_path / "lib", OLD_LIB)             # keep_new is missing
    mod = module(build, "keep_damaged", library(tmp_path / "new", NEW_LIB), f"-Wl,-rpath,{lib.parent}")
    settle()
    path = server.cache / "answers"
    assert_prediction_is_the_load(server, str(mod), will_load=False)
    # An answers file that says everything is fine: what a foreign writer could leave.
    lies = {key: (False,) if isinstance(value, tuple) else False for key, value in kept(server).items()}
    path.unlink()
    if damage == "garbage":
        path.write_bytes(b"\x00not marshal" * 100)
    elif damage == "fifo":
        os.mkfifo(path, 0o600)
    elif damage == "group-writable":
        path.write_bytes(marshal.dumps(lies))
        os.chmod(path, 0o660)
    elif damage == "symlink":
        (tmp_path / "lies").write_bytes(marshal.dumps(lies))
        os.chmod(tmp_path / "lies", 0o600)
        path.symlink_to(tmp_path / "lies")
    else:
        path.mkdir()
    try:
        settle()
        assert_prediction_is_the_load(server, str(mod), will_load=False)
    finally:
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        elif path.exists() or path.is_symlink():
            path.unlink()


def test_kept_answers_equal_worked_out_ones(server):
    """The whole audit: without kept answers, with the answers a first run keeps, and reading them."""
    audit = "SELECT kind, subject, status, message, hint FROM pgdl.audit('new session') ORDER BY 1, 2, 3, 4"
    server.stop()
    assert server.start(PGDL_CACHE_DIR="")
    nothing_kept = server.query(audit)
    server.stop()
    assert server.start(PGDL_CACHE_DIR=str(server.cache))
    (server.cache / "answers").unlink(missing_ok=True)
    first = server.query(audit)
    assert kept(server)
    assert server.query(audit) == first == nothing_kept


# -- the package alone ---------------------------------------------------------------

def new_process(monkeypatch):
    """pgdl.persist as a process that has read nothing yet."""
    from pgdl import persist
    for name, value in (("_answers", None), ("_loaded_state", None), ("_used", set())):
        monkeypatch.setattr(persist, name, value)
    monkeypatch.setattr(filestate, "failed_reads", 0)
    return persist


def test_a_process_whose_read_failed_keeps_nothing_more(tmp_path, monkeypatch):
    """What rests on a failed read may be in the process's own caches: nothing more is kept."""
    monkeypatch.setenv("PGDL_CACHE_DIR", str(tmp_path / "cache"))
    persist = new_process(monkeypatch)
    kind = persist.Kind("test")
    old = filestate.State((1, 2, 0o100644, 3, 0, 0, 0, 0))      # settled long ago

    def failing():
        filestate.read_failed()
        return "from a failed read"
    with persist.kept():
        assert kind.answer(("a",), [old], lambda: "sound") == "sound"
        assert kind.answer(("b",), [old], failing) == "from a failed read"
    with persist.kept():
        assert kind.answer(("c",), [old], lambda: "after it") == "after it"
    persist = new_process(monkeypatch)
    with persist.kept():
        assert kind.answer(("a",), [old], lambda: "not asked") == "sound"
        assert kind.answer(("b",), [old], lambda: "worked out again") == "worked out again"
        assert kind.answer(("c",), [old], lambda: "worked out again") == "worked out again"


def test_a_removed_answers_file_is_seen_by_a_running_process(tmp_path, monkeypatch):
    monkeypatch.setenv("PGDL_CACHE_DIR", str(tmp_path / "cache"))
    persist = new_process(monkeypatch)
    kind, old = persist.Kind("test"), filestate.State((1, 2, 0o100644, 3, 0, 0, 0, 0))
    with persist.kept():
        kind.answer(("a",), [old], lambda: "kept")
    (tmp_path / "cache" / "answers").unlink()
    with persist.kept():                              # the same process, after the removal
        assert kind.answer(("a",), [old], lambda: "again") == "again"
        kind.answer(("b",), [old], lambda: "new")
    persist = new_process(monkeypatch)
    with persist.kept():
        assert kind.answer(("a",), [old], lambda: "worked out") == "again"


@pytest.mark.parametrize("where", ["relative", "symlink"])
def test_an_odd_cache_directory_keeps_nothing(tmp_path, monkeypatch, where):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    if where == "symlink":
        (tmp_path / "link").symlink_to(target)
        monkeypatch.setenv("PGDL_CACHE_DIR", str(tmp_path / "link"))
    else:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("PGDL_CACHE_DIR", "elsewhere")
    persist = new_process(monkeypatch)
    kind, old = persist.Kind("test"), filestate.State((1, 2, 0o100644, 3, 0, 0, 0, 0))
    with persist.kept():
        kind.answer(("a",), [old], lambda: "kept?")
    assert list(target.iterdir()) == []


def test_a_file_that_cannot_be_opened_again_is_an_elf_error(build, tmp_path):
    """An object read in part, whose file then becomes unreadable: its next read fails cleanly."""
    from pgdl.elf import ElfError, open_elf
    mod = build("keep_reopen", GOOD_MODULE)
    obj = open_elf(str(mod))
    os.chmod(mod, 0)
    try:
        with pytest.raises(ElfError):
            obj.read_at(obj.size - 1, 1)
    finally:
        os.chmod(mod, 0o644)


def test_the_answers_in_use_are_the_last_to_go(tmp_path, monkeypatch):
    monkeypatch.setenv("PGDL_CACHE_DIR", str(tmp_path / "cache"))
    persist = new_process(monkeypatch)
    monkeypatch.setattr(persist, "MAX_ENTRIES", 3)
    kind, old = persist.Kind("test"), filestate.State((1, 2, 0o100644, 3, 0, 0, 0, 0))
    with persist.kept():
        for name in "abc":
            kind.answer((name,), [old], lambda: name)
    new_process(monkeypatch)
    with persist.kept():
        assert kind.answer(("a",), [old], lambda: "again") == "a"       # in use
        kind.answer(("d",), [old], lambda: "d")
    new_process(monkeypatch)
    with persist.kept():
        kept = {n: kind.answer((n,), [old], lambda: None) for n in "abcd"}
    assert kept == {"a": "a", "b": None, "c": "c", "d": "d"}


def test_a_file_switched_between_its_stat_and_its_reads_is_not_kept_on(build, tmp_path, monkeypatch):
    """A path (a symlink flipped, say) that is another file when read than when examined."""
    from pgdl.elf import ElfError, objects
    new_process(monkeypatch)
    first, second = build("keep_first", GOOD_MODULE), build("keep_second", MODULE)
    link = tmp_path / "current.so"
    link.symlink_to(first)
    real_open = objects.open_elf

    def switched(path):
        link.unlink()
        link.symlink_to(second)
        return real_open(path)
    monkeypatch.setattr(objects, "open_elf", switched)
    with filestate.one_call():
        objects.cached_elf(str(link))
    assert filestate.failed_reads
    # Read again later, by path, after another switch: the reads fail, and count as failed.
    new_process(monkeypatch)
    obj = real_open(str(link))
    link.unlink()
    link.symlink_to(first)
    with pytest.raises(ElfError):
        obj.read_at(obj.size - 1, 1)
    assert filestate.failed_reads


# -- whole replies (pgdl.replies) -------------------------------------------------

RULES = ("pgdl.engine.predict", "pgdl.glibc.loader", "pgdl.elf.objects", "pgdl.libc")


def test_a_kept_reply_is_handed_out_by_a_new_backend_without_the_rules(server, build, tmp_path):
    """The second backend finds the first one's reply: the same rows, and none
    of the rules' modules imported (what makes a new backend's first call light)."""
    lib = library(tmp_path / "lib", NEW_LIB)
    mod = module(build, "keep_reply", lib, f"-Wl,-rpath,{lib.parent}")
    settle()
    sql = "SELECT topic, status, subject, message, hint FROM pgdl.diagnose(%s)"
    first = server.cluster.query(sql, (str(mod),))
    assert [status for topic, status, *_rest in first if topic == "verdict"] == ["ok"]
    conn = server.cluster.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, (str(mod),))
            assert cur.fetchall() == first
            cur.execute("DO $$ import sys; plpy.notice(repr(sorted(m for m in %r if m in sys.modules))) $$"
                        " LANGUAGE plpython3u" % (RULES,))
        assert conn.notices[-1].strip().endswith("[]")
    finally:
        conn.close()


def test_a_reply_that_asked_the_catalog_asks_it_again(server, build, tmp_path):
    """diagnose() of a C function asked the catalog for it: replaced by one whose
    symbol is missing, a new backend's diagnosis is the call's real error."""
    lib = library(tmp_path / "lib", NEW_LIB)
    mod = module(build, "keep_catalog", lib, f"-Wl,-rpath,{lib.parent}")
    settle()
    create = "CREATE OR REPLACE FUNCTION keep_catalog_fn() RETURNS int AS %s, %s LANGUAGE C"
    server.cluster.query(create, (str(mod), "good_answer"))
    verdict = "SELECT status, message FROM pgdl.diagnose('keep_catalog_fn()') WHERE topic = 'verdict'"
    try:
        assert server.cluster.query(verdict)[0][0] == "ok"
        assert server.cluster.query(verdict)[0][0] == "ok"            # kept, and handed out again
        assert server.cluster.error_of("SELECT keep_catalog_fn()") is None
        # CREATE FUNCTION would refuse a missing symbol: change the catalog as a restore could leave it.
        server.cluster.query("UPDATE pg_catalog.pg_proc SET prosrc = 'keep_gone' WHERE proname = 'keep_catalog_fn'")
        real = server.cluster.error_of("SELECT keep_catalog_fn()")
        assert real is not None and "keep_gone" in real.message
        status, message = server.cluster.query(verdict)[0]
        assert status == "error" and real.message in message
    finally:
        server.cluster.query("DROP FUNCTION IF EXISTS keep_catalog_fn()")


def test_a_miss_is_implied_only_by_a_directory_in_the_same_state():
    s = filestate.State
    directory, missing = s((1, 2, 0o40755, 4096, 0, 0, 0, 0)), s((2,))
    denied, regular = s((13,)), s((1, 3, 0o100644, 10, 0, 0, 0, 0))
    rests_on = {"/d": directory, "/d/a": missing, "/d/b": denied, "/e/a": missing, "/f": regular,
                "/f/a": missing, "/g/": directory, "/g/a": missing, "/h": missing, "/h/a": missing}
    assert filestate.without_implied(rests_on) == {"/d": directory, "/d/b": denied, "/e/a": missing,
                                                   "/f": regular, "/f/a": missing, "/g/": directory,
                                                   "/h": missing}


def reply_process(tmp_path, monkeypatch):
    """pgdl.persist and pgdl.replies as a process that has kept and read nothing,
    keeping in a directory of the test."""
    from pgdl import replies
    monkeypatch.setenv("PGDL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(replies, "_mine", replies.OrderedDict())
    return new_process(monkeypatch), replies


def _noting(*paths):
    def compute(_source):
        return repr([filestate.state(str(p)).error for p in paths])
    return compute


def test_a_file_added_beside_an_implied_miss_is_seen(tmp_path, monkeypatch):
    """A reply that saw dir/name missing is kept with dir's state alone, and a
    name added to dir (a new file, a rename, a symlink) makes it not hold."""
    persist, replies = reply_process(tmp_path, monkeypatch)
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "present").write_text("x")
    settle()
    compute = _noting(directory, directory / "name", directory / "present")
    for add, seen in ((lambda: (directory / "name").write_text("x"), "[0, 0, 0]"),
                      (lambda: os.rename(directory / "present", directory / "name"), "[0, 0, 2]"),
                      (lambda: (directory / "name").symlink_to(directory / "present"), "[0, 0, 0]")):
        monkeypatch.setattr(replies, "_mine", replies.OrderedDict())
        with filestate.one_call(), persist.kept():
            assert replies.reply(("implied", str(add)), compute) == "[0, 2, 0]"
        kept, = replies._mine.values()
        assert str(directory / "name") not in kept.paths and str(directory) in kept.paths
        add()
        with filestate.one_call(), persist.kept():
            assert not kept.holds(None)
            assert replies.reply(("implied", str(add)), compute) == seen
        for p in (directory / "name", directory / "present"):
            if os.path.lexists(p):
                os.unlink(p)
        (directory / "present").write_text("x")
        settle()


def test_a_reply_is_not_kept_from_a_file_changed_a_moment_ago(tmp_path, monkeypatch):
    persist, replies = reply_process(tmp_path, monkeypatch)
    fresh = tmp_path / "fresh"
    fresh.write_text("x")
    with filestate.one_call(), persist.kept():
        replies.reply(("unsettled",), _noting(fresh))
    assert not replies._mine and not (tmp_path / "cache" / "replies").exists()


def test_a_reply_kept_by_another_process_is_trusted_only_as_written(tmp_path, monkeypatch):
    """A reply file planted, damaged, or open to others is not handed out."""
    persist, replies = reply_process(tmp_path, monkeypatch)
    old = tmp_path / "old"
    old.write_text("x")
    settle()
    with filestate.one_call(), persist.kept():
        assert replies.reply(("planted",), _noting(old)) == "[0]"
    path, = (tmp_path / "cache" / "replies").iterdir()
    data = path.read_bytes()
    for damage in (lambda: path.write_bytes(data[:-3]),
                   lambda: path.write_bytes(marshal.dumps((replies.FORMAT, b"other", (), (), (), "lie")))):
        damage()
        monkeypatch.setattr(replies, "_mine", replies.OrderedDict())
        with filestate.one_call(), persist.kept():
            assert replies.reply(("planted",), lambda _s: "worked out") == "worked out"
    plain = marshal.loads(path.read_bytes())                       # the last one written: "worked out"
    path.write_bytes(marshal.dumps(plain[:5] + ("lie",)))
    os.chmod(path, 0o622)
    monkeypatch.setattr(replies, "_mine", replies.OrderedDict())
    with filestate.one_call(), persist.kept():
        assert replies.reply(("planted",), lambda _s: "worked out") == "worked out"
