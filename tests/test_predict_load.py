"""predict_load() for every failure class, each proven against the real server:
build the broken case, ask pgdl, run the real LOAD / CREATE FUNCTION in a
fresh session, and compare verdict, SQLSTATE, message, detail and hint."""

from __future__ import annotations

import os
import shutil
import subprocess

import psycopg2

import pytest

from conftest import ServerError
from modules import GOOD_MODULE, HAND_MAGIC, NO_MAGIC_MODULE

UNDEFINED_SYMBOL_MODULE = GOOD_MODULE + r"""
extern int pgdl_no_such_function(void);
PG_FUNCTION_INFO_V1(calls_missing);
Datum calls_missing(PG_FUNCTION_ARGS) { PG_RETURN_INT32(pgdl_no_such_function()); }
"""

NO_FINFO_MODULE = GOOD_MODULE + r"""
PGDLLEXPORT Datum bare_function(PG_FUNCTION_ARGS);
Datum bare_function(PG_FUNCTION_ARGS) { PG_RETURN_INT32(1); }
"""

BAD_API_MODULE = GOOD_MODULE + r"""
PGDLLEXPORT const Pg_finfo_record *pg_finfo_api_two(void);
const Pg_finfo_record *pg_finfo_api_two(void) { static const Pg_finfo_record r = { 2 }; return &r; }
PGDLLEXPORT Datum api_two(PG_FUNCTION_ARGS);
Datum api_two(PG_FUNCTION_ARGS) { PG_RETURN_INT32(2); }
"""


def predict(cluster, name, symbol=None, **kw):
    rows = cluster.query("SELECT will_load, sqlstate, message, detail, hint FROM pgdl.predict_load(%s, %s)",
                         (str(name), symbol), **kw)
    assert len(rows) == 1
    will_load, *error = rows[0]
    return will_load, ServerError(*error)


def real_load(cluster, name, **kw):
    return cluster.error_of("LOAD %s", (str(name),), **kw)


def real_create_function(cluster, name, symbol, **kw):
    return cluster.error_of(
        "CREATE FUNCTION pg_temp.pgdl_probe() RETURNS int AS %s, %s LANGUAGE C", (str(name), symbol), **kw)


def assert_load_matches(cluster, name, **kw):
    will_load, predicted = predict(cluster, name, **{k: v for k, v in kw.items() if k != "load_kw"})
    actual = real_load(cluster, name, **kw.get("load_kw", {}))
    if actual is None:
        assert will_load is True and predicted == ServerError(None, None, None, None)
    else:
        assert will_load is False
        assert predicted == actual
    return will_load, actual


def test_good_module_loads(cluster, build):
    path = build("good_pl", GOOD_MODULE)
    assert assert_load_matches(cluster, path) == (True, None)


def test_missing_file(cluster, tmp_path):
    _, actual = assert_load_matches(cluster, tmp_path / "absent.so")
    assert actual.sqlstate == "58P01"


def test_not_elf(cluster, tmp_path):
    path = tmp_path / "text.so"
    path.write_text("hello\n" * 50)
    _, actual = assert_load_matches(cluster, path)
    assert actual.message.endswith("invalid ELF header")


def test_empty_file(cluster, tmp_path):
    path = tmp_path / "empty.so"
    path.write_bytes(b"")
    _, actual = assert_load_matches(cluster, path)
    assert "file too short" in actual.message


def test_truncated_module_crashes_backend(cluster, build, tmp_path):
    good = build("trunc_src", GOOD_MODULE)
    path = tmp_path / "truncated.so"
    path.write_bytes(good.read_bytes()[:2000])
    will_load, predicted = predict(cluster, path)
    assert not will_load
    assert predicted.sqlstate is None and predicted.message == "server closed the connection unexpectedly"
    assert "SIGBUS" in predicted.detail
    # The real thing: the backend dies (no SQLSTATE, the connection is gone) ...
    offset = cluster.log_size()
    with pytest.raises(psycopg2.OperationalError, match="server closed the connection unexpectedly"):
        cluster.query("LOAD %s", (str(path),))
    # ... and the postmaster restarts; wait for it before the next test.
    cluster.wait_for_recovery(offset)


def test_object_file_renamed(cluster, tmp_path, server_include):
    src = tmp_path / "obj.c"
    src.write_text(GOOD_MODULE)
    path = tmp_path / "obj.so"
    subprocess.run(["gcc", "-c", "-fPIC", "-I", server_include, "-o", str(path), str(src)], check=True)
    _, actual = assert_load_matches(cluster, path)
    assert actual.message.endswith("only ET_DYN and ET_EXEC can be loaded")


def test_32bit_module(cluster, tmp_path):
    src = tmp_path / "m32.c"
    src.write_text("int answer(void) { return 42; }\n")
    path = tmp_path / "m32.so"
    subprocess.run(["gcc", "-m32", "-nostdlib", "-shared", "-fPIC", "-o", str(path), str(src)], check=True)
    _, actual = assert_load_matches(cluster, path)
    assert "ELFCLASS32" in actual.message


def test_wrong_machine(cluster, build, tmp_path):
    good = build("machine_src", GOOD_MODULE)
    data = bytearray(good.read_bytes())
    data[18:20] = (183).to_bytes(2, "little")       # e_machine = EM_AARCH64
    path = tmp_path / "aarch64.so"
    path.write_bytes(bytes(data))
    assert_load_matches(cluster, path)


def test_directory(cluster, tmp_path):
    d = tmp_path / "adir.so"
    d.mkdir()
    assert_load_matches(cluster, d)


def test_unreadable_file(cluster, build):
    path = build("unreadable", GOOD_MODULE)
    os.chmod(path, 0)
    try:
        _, actual = assert_load_matches(cluster, path)
        assert "Permission denied" in actual.message
    finally:
        os.chmod(path, 0o644)


def test_untraversable_directory(cluster, build, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copy(build("locked_src", GOOD_MODULE), locked / "mod.so")
    os.chmod(locked, 0o600)
    try:
        _, actual = assert_load_matches(cluster, locked / "mod.so")
        assert actual.sqlstate == "42501"
        rows = cluster.query("SELECT message FROM pgdl.diagnose(%s) WHERE topic = 'file access'",
                             (str(locked / "mod.so"),))
        assert rows and f"cannot search directory {locked}" in rows[0][0]
    finally:
        os.chmod(locked, 0o755)


def test_dangling_symlink(cluster, tmp_path):
    link = tmp_path / "dangling.so"
    link.symlink_to(tmp_path / "nowhere.so")
    assert_load_matches(cluster, link)


def test_missing_magic(cluster, build):
    path = build("nomagic_pl", NO_MAGIC_MODULE)
    _, actual = assert_load_matches(cluster, path)
    assert actual.message.endswith("missing magic block")


def test_version_mismatch(cluster, build):
    assert_load_matches(cluster, build("v14_pl", HAND_MAGIC, "-DM_VERSION=1400"))


def test_undefined_symbol(cluster, build):
    path = build("undef_pl", UNDEFINED_SYMBOL_MODULE)
    _, actual = assert_load_matches(cluster, path)
    assert actual.message.endswith("undefined symbol: pgdl_no_such_function")


def test_missing_dependency(cluster, build, tmp_path):
    dep = build("pgdl_gone", "int gone_answer(void) { return 1; }\n", "-Wl,-soname,libpgdl_gone.so.1",
                output="libpgdl_gone.so.1")
    src = GOOD_MODULE + "extern int gone_answer(void);\nint use_gone(void) { return gone_answer(); }\n"
    path = build("needs_gone", src, str(dep))
    dep.unlink()
    _, actual = assert_load_matches(cluster, path)
    assert "libpgdl_gone.so.1: cannot open shared object file" in actual.message


def test_repeated_runpath_last_one_counts(cluster, build, tmp_path):
    """Of two DT_RUNPATH entries glibc searches only the last: the dependency
    in the first directory is not found (elf/get-dynamic-info.h)."""
    from pgdl.elf import DT_NEEDED, DT_RUNPATH, open_elf
    from test_ldso import add_dynamic_entry

    (tmp_path / "deps").mkdir()
    os.chmod(tmp_path / "deps", 0o755)
    dep = build("pgdl_rp", "int rp_answer(void) { return 1; }\n", "-Wl,-soname,libpgdl_rp.so.1",
                output="deps/libpgdl_rp.so.1")
    src = GOOD_MODULE + "extern int rp_answer(void);\nint use_rp(void) { return rp_answer(); }\n"
    path = build("two_runpaths", src, str(dep), f"-Wl,-rpath,{tmp_path}/deps", "-Wl,--enable-new-dtags")
    assert assert_load_matches(cluster, path) == (True, None)
    # The second names the directory "libpgdl_rp.so.1" (the DT_NEEDED string), which does not exist.
    add_dynamic_entry(path, DT_RUNPATH, open_elf(str(path)).dynamic_value(DT_NEEDED))
    will_load, actual = assert_load_matches(cluster, path)
    assert not will_load
    assert actual.message.endswith("libpgdl_rp.so.1: cannot open shared object file: No such file or directory")


def test_sysv_hash_only_libraries(cluster, build, tmp_path):
    """Libraries with only a SysV DT_HASH table are searched through it, as glibc does."""
    dep = build("pgdl_sysv", "int sysv_answer(void) { return 1; }\n", "-Wl,-soname,libpgdl_sysv.so.1",
                "-Wl,--hash-style=sysv", output="libpgdl_sysv.so.1")
    for name, symbol, loads in (("uses_sysv", "sysv_answer", True), ("misses_sysv", "sysv_missing", False)):
        src = GOOD_MODULE + f"extern int {symbol}(void);\nint use_it(void) {{ return {symbol}(); }}\n"
        path = build(name, src, str(dep), f"-Wl,-rpath,{tmp_path}", "-Wl,--hash-style=sysv")
        will_load, actual = assert_load_matches(cluster, path)
        assert will_load is loads
        if not loads:
            assert actual.message.endswith(f"undefined symbol: {symbol}")


def test_server_provided_symbols_are_fine(cluster, build):
    src = GOOD_MODULE + "#include \"miscadmin.h\"\nint uses_server(void) { return work_mem + (palloc(1) != NULL); }\n"
    assert assert_load_matches(cluster, build("uses_server", src)) == (True, None)


# -- CREATE FUNCTION ... LANGUAGE C ------------------------------------------

@pytest.mark.parametrize("source, symbol, expected_state", [
    (GOOD_MODULE, "good_answer", None),
    (GOOD_MODULE, "no_such_symbol", "42883"),
    (NO_FINFO_MODULE, "bare_function", "42883"),
    (BAD_API_MODULE, "api_two", "22023"),
])
def test_create_function(cluster, build, source, symbol, expected_state):
    path = build(f"cf_{symbol}", source)
    will_load, predicted = predict(cluster, path, symbol)
    actual = real_create_function(cluster, path, symbol)
    if actual is None:
        assert will_load and expected_state is None
    else:
        assert not will_load
        assert predicted == actual
        assert actual.sqlstate == expected_state


@pytest.fixture(scope="module")
def reader_role(cluster):
    cluster.query("CREATE ROLE pgdl_plain_reader LOGIN IN ROLE pg_read_server_files")
    yield "pgdl_plain_reader"
    cluster.query("DROP ROLE pgdl_plain_reader")


def test_non_superuser_load_is_restricted(cluster, build, reader_role):
    path = build("restricted", GOOD_MODULE)
    will_load, predicted = predict(cluster, path, user=reader_role)
    actual = real_load(cluster, path, user=reader_role)
    assert not will_load and predicted == actual
    assert actual.message == f'access to library "{path}" is not allowed'


def test_non_superuser_create_function(cluster, build, reader_role):
    path = build("restricted_cf", GOOD_MODULE)
    will_load, predicted = predict(cluster, path, "good_answer", user=reader_role)
    actual = real_create_function(cluster, path, "good_answer", user=reader_role)
    assert not will_load and predicted == actual


def test_missing_symbol_version(cluster, build, tmp_path):
    """Built against V_2 of a library; the copy the loader finds only has V_1."""
    for d in ("old", "new"):
        (tmp_path / d).mkdir()
        os.chmod(tmp_path / d, 0o755)
    (tmp_path / "v1.map").write_text("V_1 { global: ver_old; local: *; };\n")
    (tmp_path / "v2.map").write_text("V_1 { global: ver_old; local: *; };\nV_2 { global: ver_new; } V_1;\n")
    soname = "-Wl,-soname,libpgdlver.so.1"
    build("libpgdlver_old", "int ver_old(void){return 1;}\n", soname,
          f"-Wl,--version-script={tmp_path / 'v1.map'}", output="old/libpgdlver.so.1")
    new = build("libpgdlver_new", "int ver_old(void){return 1;}\nint ver_new(void){return 2;}\n", soname,
                f"-Wl,--version-script={tmp_path / 'v2.map'}", output="new/libpgdlver.so.1")
    src = GOOD_MODULE + "extern int ver_new(void);\nint use_new(void) { return ver_new(); }\n"
    module = build("needs_v2", src, str(new), f"-Wl,-rpath,{tmp_path}/old")
    _, actual = assert_load_matches(cluster, module)
    assert actual.message.endswith(
        f"{tmp_path}/old/libpgdlver.so.1: version `V_2' not found (required by {module})")


def test_relative_dynamic_library_path_is_predicted_not_raised(cluster):
    """A relative entry before $libdir: the server's LOAD fails with 42602; so
    must pgdl's prediction, even on PostgreSQL 18, where PL/Python's own handler
    is looked up in dynamic_library_path too (pgdl 0.6.0 calls it with '$libdir')."""
    setup = ("SET dynamic_library_path = 'relative/dir:$libdir'",)
    error = cluster.error_of("LOAD 'pgdl_no_such_library'", setup=setup)
    assert error.sqlstate == "42602"
    rows = cluster.query("SELECT * FROM pgdl.predict_load('pgdl_no_such_library')", setup=setup)
    assert rows == [(False, error.sqlstate, error.message, error.detail, error.hint)]
    diagnosis = cluster.query("SELECT status FROM pgdl.diagnose('pgdl_no_such_library') WHERE topic = 'verdict'",
                              setup=setup)
    assert diagnosis == [("error",)]
