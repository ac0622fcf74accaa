"""Every hint is proven by applying it exactly as written: the test builds the
case, takes diagnose()'s hint, does what it says (runs its commands, sets the
environment it names and restarts the server, LOADs what it says first) and
the real LOAD then works.  The wrong copy of a library is found through each
rule of the loader's search: DT_RPATH, LD_LIBRARY_PATH, DT_RUNPATH, and
ld.so.cache (in the platform matrix's chroots, where the tests may run ldconfig)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import started_server


OLD_LIB = "int remedy_base(void) { return 1; }\n"
NEW_LIB = OLD_LIB + "int remedy_new(void) { return 2; }\n"
MODULE = r"""
#include "postgres.h"
#include "fmgr.h"
PG_MODULE_MAGIC;
extern int remedy_new(void);
PG_FUNCTION_INFO_V1(remedy_fn);
Datum remedy_fn(PG_FUNCTION_ARGS) { PG_RETURN_INT32(remedy_new()); }
"""
SONAME = "libpgdlremedy.so.1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from started_server(tmp_path_factory, "remedies", 35000)


def restart(server, **environ):
    server.stop()
    assert server.start(**environ), server.log.read_text()


def gcc(*args):
    subprocess.run(["gcc", *args], check=True, capture_output=True, text=True)


def library(directory, source, version_script=None):
    directory.mkdir(exist_ok=True)
    os.chmod(directory, 0o755)
    (directory / "lib.c").write_text(source)
    flags = [f"-Wl,--version-script={version_script}"] if version_script else []
    gcc("-shared", "-fPIC", f"-Wl,-soname,{SONAME}", "-o", str(directory / SONAME), str(directory / "lib.c"),
        *flags)
    return directory / SONAME


def module(build, against, *flags):
    return build("remedy_mod", MODULE, str(against), *flags)


def symbols_hint(server, path) -> str:
    rows = server.query("SELECT topic, status, message, hint FROM pgdl.diagnose(%s)", (str(path),))
    found = [r for r in rows if r[0] in ("symbols", "dependency", "file access") and r[1] == "error"]
    assert found, rows
    return found[0][3]


def commands(hint: str) -> list[str]:
    return re.findall(r"`([^`]+)`", hint)


def environment(hint: str) -> str:
    return re.search(r"set LD_LIBRARY_PATH=(\S+) in ", hint).group(1)


def loads(server, path) -> bool:
    return server.cluster.error_of("LOAD %s", (str(path),)) is None


def test_rpath_cannot_be_overridden_by_the_environment(server, build, tmp_path):
    """DT_RPATH names the old copy: LD_LIBRARY_PATH pointing at the new one does not help,
    and the hint says so; its patchelf command does."""
    old, new = library(tmp_path / "old", OLD_LIB), library(tmp_path / "new", NEW_LIB)
    mod = module(build, new, f"-Wl,-rpath,{old.parent}", "-Wl,--disable-new-dtags")
    restart(server, LD_LIBRARY_PATH=str(new.parent))
    assert not loads(server, mod)
    hint = symbols_hint(server, mod)
    assert "DT_RPATH" in hint and "neither can override it" in hint and "set LD_LIBRARY_PATH" not in hint
    patchelf = [c for c in commands(hint) if c.startswith("patchelf ")]
    subprocess.run(shlex.split(patchelf[0]), check=True)
    assert loads(server, mod)


def test_moving_the_stale_copy_away(server, build, tmp_path):
    old, new = library(tmp_path / "old", OLD_LIB), library(tmp_path / "new", NEW_LIB)
    mod = module(build, new, f"-Wl,-rpath,{old.parent}", "-Wl,--disable-new-dtags")
    restart(server, LD_LIBRARY_PATH=str(new.parent))
    mv = [c for c in commands(symbols_hint(server, mod)) if c.startswith("mv ")]
    subprocess.run(shlex.split(mv[0]), check=True)
    assert loads(server, mod)


def test_ld_library_path_finds_the_old_copy(server, build, tmp_path):
    """The seed's case: the environment's old copy wins over the module's DT_RUNPATH."""
    old, new = library(tmp_path / "old", OLD_LIB), library(tmp_path / "new", NEW_LIB)
    mod = module(build, new, f"-Wl,-rpath,{new.parent}", "-Wl,--enable-new-dtags")
    restart(server, LD_LIBRARY_PATH=str(old.parent))
    assert not loads(server, mod)
    hint = symbols_hint(server, mod)
    assert "LD_LIBRARY_PATH finds" in hint and "pgdl predicts the load then succeeds" in hint
    restart(server, LD_LIBRARY_PATH=environment(hint))
    assert loads(server, mod)


def test_runpath_finds_the_old_copy(server, build, tmp_path):
    """DT_RUNPATH names the old copy; the right one is beside the module (a vendor's bundle):
    LD_LIBRARY_PATH, searched before DT_RUNPATH, fixes it."""
    old = library(tmp_path / "old", OLD_LIB)
    new = library(tmp_path, NEW_LIB)
    mod = module(build, new, f"-Wl,-rpath,{old.parent}", "-Wl,--enable-new-dtags")
    restart(server)
    assert not loads(server, mod)
    hint = symbols_hint(server, mod)
    assert "searched before the DT_RUNPATH" in hint
    restart(server, LD_LIBRARY_PATH=environment(hint))
    assert loads(server, mod)


def test_runpath_relinked_with_patchelf(server, build, tmp_path):
    old = library(tmp_path / "old", OLD_LIB)
    new = library(tmp_path, NEW_LIB)
    mod = module(build, new, f"-Wl,-rpath,{old.parent}", "-Wl,--enable-new-dtags")
    restart(server)
    patchelf = [c for c in commands(symbols_hint(server, mod)) if c.startswith("patchelf ")]
    assert "--force-rpath" not in patchelf[0]
    subprocess.run(shlex.split(patchelf[0]), check=True)
    assert loads(server, mod)


def test_missing_symbol_version(server, build, tmp_path):
    """The copy found has the symbol but not the version node the module needs."""
    (tmp_path / "v1.map").write_text("REMEDY_1 { global: remedy_base; remedy_new; local: *; };\n")
    (tmp_path / "v2.map").write_text("REMEDY_1 { global: remedy_base; local: *; };\n"
                                     "REMEDY_2 { global: remedy_new; } REMEDY_1;\n")
    old = library(tmp_path / "old", NEW_LIB, tmp_path / "v1.map")
    new = library(tmp_path / "new", NEW_LIB, tmp_path / "v2.map")
    mod = module(build, new, f"-Wl,-rpath,{new.parent}", "-Wl,--enable-new-dtags")
    restart(server, LD_LIBRARY_PATH=str(old.parent))
    error = server.cluster.error_of("LOAD %s", (str(mod),))
    assert error is not None and "REMEDY_2" in error.message
    hint = symbols_hint(server, mod)
    restart(server, LD_LIBRARY_PATH=environment(hint))
    assert loads(server, mod)


def test_missing_dependency_beside_the_module(server, build, tmp_path):
    """Linked without an rpath against a library shipped beside it."""
    lib = library(tmp_path, NEW_LIB)
    mod = module(build, lib)
    restart(server)
    assert not loads(server, mod)
    hint = symbols_hint(server, mod)
    assert f"{lib} is not in any directory the loader searches" in hint
    restart(server, LD_LIBRARY_PATH=environment(hint))
    assert loads(server, mod)


def test_missing_dependency_nowhere(server, build, tmp_path):
    lib = library(tmp_path / "gone", NEW_LIB)
    mod = module(build, lib)
    lib.unlink()
    restart(server)
    hint = symbols_hint(server, mod)
    assert f"No copy of {SONAME}" in hint and f"`apt-file search {SONAME}`" in hint


def test_needed_by_its_path(server, build, tmp_path):
    """DT_NEEDED holds a path (a library without a SONAME, linked by its path) whose
    file was later replaced by an old build: no search is made, so only rewriting
    the entry helps."""
    linked, good = tmp_path / "linked", tmp_path / "good"
    for directory in (linked, good):
        directory.mkdir()
        os.chmod(directory, 0o755)
        (directory / "lib.c").write_text(NEW_LIB)
        gcc("-shared", "-fPIC", "-o", str(directory / "libremedypath.so"), str(directory / "lib.c"))
    mod = module(build, linked / "libremedypath.so")
    (linked / "lib.c").write_text(OLD_LIB)                 # the file at that path is downgraded
    gcc("-shared", "-fPIC", "-o", str(linked / "libremedypath.so"), str(linked / "lib.c"))
    restart(server, LD_LIBRARY_PATH=str(good))             # where pgdl finds the copy that has the symbol
    try:
        assert not loads(server, mod)
        hint = symbols_hint(server, mod)
        assert "no search is made" in hint, hint
        subprocess.run(shlex.split(commands(hint)[0]), check=True)
        assert loads(server, mod)
    finally:
        restart(server)


def test_already_loaded_by_a_preloaded_module(server, build, tmp_path):
    """shared_preload_libraries loads a module that brings the old copy: a later LOAD
    reuses it, whatever its own RUNPATH says; relinking the preloaded module fixes it."""
    old = library(tmp_path / "old", OLD_LIB)
    new = library(tmp_path / "new", NEW_LIB)
    first = build("remedy_first", "#include \"postgres.h\"\n#include \"fmgr.h\"\nPG_MODULE_MAGIC;\n"
                  "extern int remedy_base(void);\nint remedy_first_uses(void) { return remedy_base(); }\n",
                  str(old), f"-Wl,-rpath,{old.parent}", "-Wl,--enable-new-dtags")
    mod = module(build, new, f"-Wl,-rpath,{new.parent}", "-Wl,--enable-new-dtags")
    server.stop()
    server.set_preload(str(first))
    try:
        assert server.start(), server.log.read_text()
        assert not loads(server, mod)
        hint = symbols_hint(server, mod)
        assert "already loaded" in hint and str(first) in hint, hint
        subprocess.run(shlex.split(commands(hint)[0]), check=True)
        restart(server)
        assert loads(server, mod)
    finally:
        server.stop()
        server.set_preload("")
        assert server.start()


def test_library_in_the_wrong_directory_for_its_name(server, build, tmp_path):
    """LOAD 'name' searches dynamic_library_path: a build in a subdirectory of it
    is not found; the hint moves it where the server looks."""
    searched = tmp_path / "libdir"
    for d in (searched, searched / "remedy_pkg"):
        d.mkdir()
        os.chmod(d, 0o755)
    plain = "#include \"postgres.h\"\n#include \"fmgr.h\"\nPG_MODULE_MAGIC;\n"
    build("remedy_misplaced", plain, output="libdir/remedy_pkg/remedy_misplaced.so")
    setup = (f"SET dynamic_library_path = '{searched}:$libdir'",)
    load = "LOAD 'remedy_misplaced'"
    assert server.cluster.error_of(load, setup=setup).message.startswith('could not access file "remedy_misplaced"')
    rows = server.cluster.query("SELECT topic, status, hint FROM pgdl.diagnose('remedy_misplaced', "
                                "context => 'this session')", setup=setup)
    hint = [r for r in rows if r[0] == "resolution"][0][2]
    assert commands(hint) == [f"mv {searched}/remedy_pkg/remedy_misplaced.so {searched}/"], hint
    subprocess.run(shlex.split(commands(hint)[0]), check=True)
    assert server.cluster.error_of(load, setup=setup) is None


def test_library_for_another_major_in_the_wrong_directory(server, build, tmp_path):
    """A build for another major is not moved: the hint says to install this major's."""
    from modules import HAND_MAGIC
    searched = tmp_path / "libdir"
    for d in (searched, searched / "old"):
        d.mkdir()
        os.chmod(d, 0o755)
    build("remedy_other_major", HAND_MAGIC, "-DM_VERSION=1400", output="libdir/old/remedy_other_major.so")
    setup = (f"SET dynamic_library_path = '{searched}:$libdir'",)
    rows = server.cluster.query("SELECT topic, hint FROM pgdl.diagnose('remedy_other_major', "
                                "context => 'this session')", setup=setup)
    hint = [r for r in rows if r[0] == "resolution"][0][1]
    assert "built for PostgreSQL 14" in hint and not commands(hint), hint


@pytest.mark.parametrize("what", ["directory", "file"])
def test_permissions(server, build, tmp_path, what):
    sub = tmp_path / "sub"
    sub.mkdir()
    os.chmod(sub, 0o755)
    plain = build("remedy_plain", "#include \"postgres.h\"\n#include \"fmgr.h\"\nPG_MODULE_MAGIC;\n",
                  output="sub/remedy_plain.so")
    os.chmod(sub if what == "directory" else plain, 0o600 if what == "directory" else 0o200)
    try:
        assert not loads(server, plain)
        hint = symbols_hint(server, plain)
        chmod = [c for c in commands(hint) if c.startswith("chmod ")]
        subprocess.run(shlex.split(chmod[0]), check=True)
        assert loads(server, plain)
    finally:
        os.chmod(sub, 0o755)


def test_module_that_must_be_preloaded(server, build):
    mod = build("remedy_preload", r"""
#include "postgres.h"
#include "fmgr.h"
#include "miscadmin.h"
PG_MODULE_MAGIC;
void _PG_init(void);
void _PG_init(void) {
  if (!process_shared_preload_libraries_in_progress)
    ereport(ERROR, (errmsg("remedy_preload must be loaded via shared_preload_libraries")));
}
""")
    restart(server)
    assert not loads(server, mod)
    rows = server.query("SELECT topic, status, hint FROM pgdl.diagnose(%s, context => 'new session')", (str(mod),))
    hint = [r[2] for r in rows if r[0] == "_PG_init"][0]
    assert hint == "List it in shared_preload_libraries and restart the server."
    try:
        server.set_preload(str(mod))
        restart(server)
        assert loads(server, mod)
    finally:
        server.set_preload("")
        restart(server)


def test_symbol_from_a_newer_minor_release(server, build):
    """A module built against a newer minor release references a function this postgres lacks."""
    mod = build("remedy_minor", r"""
#include "postgres.h"
#include "fmgr.h"
PG_MODULE_MAGIC;
extern void EnsurePgdlSnapshotExists(void);
PG_FUNCTION_INFO_V1(remedy_minor);
Datum remedy_minor(PG_FUNCTION_ARGS) { EnsurePgdlSnapshotExists(); PG_RETURN_VOID(); }
""")
    restart(server)
    real = server.cluster.error_of("LOAD %s", (str(mod),))
    assert real.message.endswith("undefined symbol: EnsurePgdlSnapshotExists")
    rows = server.query("SELECT topic, message, hint FROM pgdl.diagnose(%s)", (str(mod),))
    symbols = [r for r in rows if r[0] == "symbols"][0]
    version = server.query("SELECT current_setting('server_version')")[0][0].split()[0]
    assert f"built against a newer minor release than this server's {version}" in symbols[1]
    assert f"install a build of it for PostgreSQL {version}" in symbols[2]


LDCONF, LDCONFIG = os.environ.get("PGDL_LDCONF"), os.environ.get("PGDL_LDCONFIG")


@pytest.mark.skipif(not LDCONF, reason="needs a disposable root where the tests may run ldconfig (scripts/matrix.sh)")
def test_ld_so_cache_finds_the_old_copy(server, build, tmp_path):
    """The cache lists the old copy; the module (no rpath) was built against the one beside it.
    The hint's ld.so.conf.d remedy, applied and ldconfig run, makes the real LOAD work."""
    old = library(tmp_path / "old", OLD_LIB)
    new = library(tmp_path, NEW_LIB)
    mod = module(build, new)
    conf = Path(LDCONF)
    try:
        conf.write_text(f"{old.parent}\n")
        subprocess.run(shlex.split(LDCONFIG), check=True)
        restart(server)
        assert not loads(server, mod)
        hint = symbols_hint(server, mod)
        assert hint.startswith(f"ld.so.cache gives {old}")
        listed = re.search(r"list (\S+) in a file of /etc/ld.so.conf.d read before the one that lists (\S+),"
                           r" and run `ldconfig`", hint)
        conf.write_text(f"{listed.group(1)}\n{listed.group(2)}\n")      # one file: its lines are read in order
        subprocess.run(shlex.split(LDCONFIG), check=True)
        restart(server)
        assert loads(server, mod)
    finally:
        conf.write_text("")
        subprocess.run(shlex.split(LDCONFIG), check=True)
        restart(server)
