"""pgdl.binding against the real glibc (see test_ldso.py for the helper)."""

from __future__ import annotations

import glob
import os
import subprocess

import pytest

from pgdl.glibc import binding, ldso
from pgdl.server import Server
from test_ldso import assert_same, gcc, helper, predicted, real_dlopen, server_for  # noqa: F401  (fixture)

POSTGRES = "/usr/lib/postgresql/15/bin/postgres"
PKGLIBDIR = "/usr/lib/postgresql/15/lib"

OLD_FOO = "int foo_old(void) { return 1; }\n"
NEW_FOO = OLD_FOO + "int foo_new(void) { return 2; }\n"
USES_NEW = "int foo_new(void);\nint entry(void) { return foo_new(); }\n"


def test_stale_copy_found_first_lacks_a_symbol(helper, tmp_path):
    """The dblink-finds-an-old-libpq case: same SONAME, older build first in the path."""
    gcc(tmp_path / "old" / "libfoo.so.1", OLD_FOO, "-Wl,-soname,libfoo.so.1")
    gcc(tmp_path / "new" / "libfoo.so.1", NEW_FOO, "-Wl,-soname,libfoo.so.1")
    os.symlink("libfoo.so.1", tmp_path / "new" / "libfoo.so")
    mod = gcc(tmp_path / "mod.so", USES_NEW, f"-L{tmp_path}/new", "-lfoo",
              f"-Wl,-rpath,{tmp_path}/new")
    tree = assert_same(helper, mod, tmp_path)
    assert binding.bind(tree, server_for(helper, str(tmp_path))).problems == []
    llp = f"{tmp_path}/old"                     # LD_LIBRARY_PATH beats RUNPATH
    assert_same(helper, mod, tmp_path, llp)
    server = server_for(helper, str(tmp_path), llp)
    result = binding.bind(ldso.load_tree(str(mod), server), server)
    assert result.error == f"{mod}: undefined symbol: foo_new"
    assert [(p.kind, p.symbol, p.required_by) for p in result.problems] == [("undefined", "foo_new", str(mod))]


def test_missing_version(helper, tmp_path):
    """A version script: the module needs V_2, the copy found defines only V_1."""
    (tmp_path / "v1.map").write_text("V_1 { global: foo_old; local: *; };\n")
    (tmp_path / "v2.map").write_text("V_1 { global: foo_old; local: *; };\nV_2 { global: foo_new; } V_1;\n")
    gcc(tmp_path / "old" / "libv.so.1", OLD_FOO, "-Wl,-soname,libv.so.1", f"-Wl,--version-script={tmp_path}/v1.map")
    gcc(tmp_path / "new" / "libv.so.1", NEW_FOO, "-Wl,-soname,libv.so.1", f"-Wl,--version-script={tmp_path}/v2.map")
    os.symlink("libv.so.1", tmp_path / "new" / "libv.so")
    mod = gcc(tmp_path / "mod.so", USES_NEW, f"-L{tmp_path}/new", "-lv",
              f"-Wl,-rpath,{tmp_path}/old:{tmp_path}/new")
    assert_same(helper, mod, tmp_path)
    server = server_for(helper, str(tmp_path))
    result = binding.bind(ldso.load_tree(str(mod), server), server)
    assert result.error == f"{tmp_path}/old/libv.so.1: version `V_2' not found (required by {mod})"
    assert result.problems[0].wanted_from == "libv.so.1"


def test_symbol_missing_in_wanted_version(helper, tmp_path):
    """The version exists, but not for this symbol: ", version V" in the message."""
    (tmp_path / "new.map").write_text("V_1 { global: foo_old; local: *; };\nV_2 { global: foo_new; } V_1;\n")
    (tmp_path / "moved.map").write_text("V_1 { global: foo_old; local: *; };\nV_2 { global: other; } V_1;\n"
                                        "V_3 { global: foo_new; } V_2;\n")
    gcc(tmp_path / "a" / "libv.so.1", NEW_FOO, "-Wl,-soname,libv.so.1", f"-Wl,--version-script={tmp_path}/new.map")
    gcc(tmp_path / "b" / "libv.so.1", NEW_FOO + "int other(void) { return 3; }\n", "-Wl,-soname,libv.so.1",
        f"-Wl,--version-script={tmp_path}/moved.map")
    os.symlink("libv.so.1", tmp_path / "a" / "libv.so")
    mod = gcc(tmp_path / "mod.so", USES_NEW, f"-L{tmp_path}/a", "-lv", f"-Wl,-rpath,{tmp_path}/b")
    assert_same(helper, mod, tmp_path)
    assert predicted(str(mod), server_for(helper, str(tmp_path))) == \
        f"{mod}: undefined symbol: foo_new, version V_2"


def test_dependency_errors_are_reported_first(helper, tmp_path):
    """Relocation runs dependencies first, so the dependency's symbol is named."""
    gcc(tmp_path / "lib" / "libdep.so", "int dep_missing(void);\nint dep(void) { return dep_missing(); }\n",
        "-Wl,-soname,libdep.so")
    mod = gcc(tmp_path / "mod.so", "int dep(void); int mod_missing(void);\n"
              "int entry(void) { return dep() + mod_missing(); }\n",
              f"-L{tmp_path}/lib", "-ldep", f"-Wl,-rpath,{tmp_path}/lib")
    assert_same(helper, mod, tmp_path)
    server = server_for(helper, str(tmp_path))
    result = binding.bind(ldso.load_tree(str(mod), server), server)
    assert result.error == f"{tmp_path}/lib/libdep.so: undefined symbol: dep_missing"
    assert {p.symbol for p in result.problems} == {"dep_missing", "mod_missing"}


def test_weak_undefined_is_fine_and_libc_versions_bind(helper, tmp_path):
    mod = gcc(tmp_path / "mod.so", "#include <string.h>\n__attribute__((weak)) int maybe(void);\n"
              "int entry(const char *s) { return (maybe ? maybe() : 0) + (int) strlen(s); }\n")
    assert_same(helper, mod, tmp_path)
    assert predicted(str(mod), server_for(helper, str(tmp_path))) is None


def test_future_glibc_version(helper, tmp_path):
    """A module built against a newer glibc: libc's l_name is the path ld.so found."""
    (tmp_path / "fut.map").write_text("GLIBC_9.99 { global: *; };\n")
    gcc(tmp_path / "fake" / "libc.so", "int newfunc(void) { return 1; }\n", "-Wl,-soname,libc.so.6",
        f"-Wl,--version-script={tmp_path}/fut.map", "-nostdlib")
    mod = gcc(tmp_path / "mod.so", "int newfunc(void); int entry(void) { return newfunc(); }\n",
              f"-L{tmp_path}/fake", "-lc")
    real, _e, _d = real_dlopen(helper, str(mod), cwd=str(tmp_path))
    assert real == f"/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_9.99' not found (required by {mod})"
    assert predicted(str(mod), server_for(helper, str(tmp_path))) == real


def test_module_using_server_symbols(build, helper, tmp_path):
    """palloc & co. come from the executable: fine in postgres, not in the helper."""
    mod = build("uses_palloc", '#include "postgres.h"\n#include "fmgr.h"\n#include "miscadmin.h"\nPG_MODULE_MAGIC;\n'
                "void *grab(void) { return palloc(work_mem); }\n")
    pg = postgres_server()
    result = binding.bind(ldso.load_tree(str(mod), pg), pg)
    assert result.problems == [] and result.error is None
    assert_same(helper, mod, mod.parent)            # the helper has no palloc: real error compared
    other = server_for(helper, str(mod.parent))
    assert binding.bind(ldso.load_tree(str(mod), other), other).error.startswith(f"{mod}: undefined symbol: ")


def postgres_server(loaded=()) -> Server:
    return Server(version_num=150000, pkglibdir=PKGLIBDIR, executable=POSTGRES, loaded=list(loaded),
                  data_directory="/")


@pytest.fixture(scope="module")
def backend_maps():
    """A real backend's mapped objects, if a throwaway server can be started."""
    if os.geteuid() == 0:
        return []                   # PostgreSQL refuses root; the startup tree stands in
    try:
        import testing.postgresql
        import psycopg2
    except ImportError:
        return []
    from pgdl.adapters.maps import read_maps
    with testing.postgresql.Postgresql() as pg:
        conn = psycopg2.connect(**pg.dsn())
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                pid = cur.fetchone()[0]
            return read_maps(f"/proc/{pid}/maps")
        finally:
            conn.close()


@pytest.mark.skipif(not os.path.exists(POSTGRES), reason="PostgreSQL 15 is not installed")
def test_every_installed_module_binds(backend_maps):
    server = postgres_server(backend_maps)
    modules = sorted(glob.glob(f"{PKGLIBDIR}/*.so"))
    assert modules
    for module in modules:
        tree = ldso.load_tree(module, server)
        assert tree.error is None, module
        result = binding.bind(tree, server)
        assert result.problems == [], (module, result.problems[:3])


def test_rtld_local_python_modules_are_not_global(tmp_path):
    """Symbols of Python extension modules (RTLD_LOCAL) do not satisfy others."""
    ext = gcc(tmp_path / "site-packages" / "_x.cpython-311-x86_64-linux-gnu.so",
              "int only_here(void) { return 1; }\n")
    mod = gcc(tmp_path / "mod.so", "int only_here(void); int f(void) { return only_here(); }\n")
    st = os.stat(ext)
    from pgdl.server import LoadedObject
    server = Server(version_num=150000, pkglibdir=PKGLIBDIR, executable="/bin/true",
                    loaded=[LoadedObject(str(ext), st.st_dev, st.st_ino)], data_directory=str(tmp_path))
    assert binding.bind(ldso.load_tree(str(mod), server), server).error == f"{mod}: undefined symbol: only_here"
    os.rename(ext, tmp_path / "libx.so")
    st = os.stat(tmp_path / "libx.so")
    server.loaded = [LoadedObject(str(tmp_path / "libx.so"), st.st_dev, st.st_ino)]
    assert binding.bind(ldso.load_tree(str(mod), server), server).error is None


def test_gcc_available():
    assert subprocess.run(["gcc", "--version"], capture_output=True).returncode == 0
