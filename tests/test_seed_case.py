"""The field report in shared/seeds/000: a module built against a new libpq
fails with `undefined symbol: PQconnectionUsedPassword` because the loader
finds an old libpq first.  Rebuilt here with a library of our own: two builds
of one SONAME, the old one first on the server's LD_LIBRARY_PATH, the module
built (with a RUNPATH) against the new one."""

from __future__ import annotations

import os
import subprocess

import pytest
import testing.postgresql

from conftest import Cluster, ServerError

OLD_LIB = "int PQconnectdb_stub(void) { return 1; }\n"
NEW_LIB = OLD_LIB + "int PQconnectionUsedPasswordStub(void) { return 2; }\n"
MODULE = r"""
#include "postgres.h"
#include "fmgr.h"
PG_MODULE_MAGIC;
extern int PQconnectionUsedPasswordStub(void);
PG_FUNCTION_INFO_V1(seed_used_password);
Datum seed_used_password(PG_FUNCTION_ARGS) { PG_RETURN_INT32(PQconnectionUsedPasswordStub()); }
"""


def gcc(*args):
    subprocess.run(["gcc", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def seed(tmp_path_factory, server_include):
    root = tmp_path_factory.mktemp("seed")
    old_dir, new_dir = root / "usr_lib", root / "pgsql_lib"
    for d in (root, old_dir, new_dir):
        d.mkdir(exist_ok=True)
        os.chmod(d, 0o755)
    for directory, source in ((old_dir, OLD_LIB), (new_dir, NEW_LIB)):
        (directory / "lib.c").write_text(source)
        gcc("-shared", "-fPIC", "-Wl,-soname,libseedpq.so.5", "-o", str(directory / "libseedpq.so.5"),
            str(directory / "lib.c"))
    (root / "mod.c").write_text(MODULE)
    module = root / "seed_dblink.so"
    gcc("-shared", "-fPIC", "-I", server_include, "-o", str(module), str(root / "mod.c"),
        str(new_dir / "libseedpq.so.5"), f"-Wl,-rpath,{new_dir}", "-Wl,--enable-new-dtags")
    saved = os.environ.get("LD_LIBRARY_PATH")
    os.environ["LD_LIBRARY_PATH"] = str(old_dir)      # the server inherits it, like a service environment
    try:
        pg = testing.postgresql.Postgresql()
    finally:
        if saved is None:
            del os.environ["LD_LIBRARY_PATH"]
        else:
            os.environ["LD_LIBRARY_PATH"] = saved
    cluster = Cluster(pg)
    cluster.query("CREATE EXTENSION pgdl CASCADE")
    yield cluster, module, old_dir, new_dir
    pg.stop()


def test_prediction_equals_server(seed):
    cluster, module, old_dir, _ = seed
    will_load, *error = cluster.query("SELECT * FROM pgdl.predict_load(%s)", (str(module),))[0]
    actual = cluster.error_of("LOAD %s", (str(module),))
    assert actual.message == (f'could not load library "{module}": {module}: '
                              "undefined symbol: PQconnectionUsedPasswordStub")
    assert not will_load and ServerError(*error) == actual


def test_dependencies_show_the_wrong_copy(seed):
    cluster, module, old_dir, _ = seed
    rows = cluster.query("SELECT needed, path, found_via FROM pgdl.dependencies(%s)", (str(module),))
    chosen = {needed: (path, via) for needed, path, via in rows}
    assert chosen["libseedpq.so.5"][0] == f"{old_dir}/libseedpq.so.5"
    assert "LD_LIBRARY_PATH" in chosen["libseedpq.so.5"][1]


def test_diagnose_names_cause_and_fix(seed):
    cluster, module, old_dir, new_dir = seed
    rows = cluster.query('SELECT topic, status, subject, message, hint FROM pgdl.diagnose(%s)', (str(module),))
    symbols = [r for r in rows if r[0] == "symbols"]
    assert symbols and symbols[0][1] == "error"
    _, _, subject, detail, hint = symbols[0]
    assert subject == "PQconnectionUsedPasswordStub"
    assert f"{old_dir}/libseedpq.so.5" in detail and "LD_LIBRARY_PATH" in detail
    assert f"{new_dir}/libseedpq.so.5 has it" in detail
    assert str(new_dir) in hint
    assert rows[0][0] == "verdict" and rows[0][1] == "error"
    assert "undefined symbol: PQconnectionUsedPasswordStub" in rows[0][3]
