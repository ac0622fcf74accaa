"""Which C library and loader rules a server gets (issue #15): read from its
files, checked against the loader itself; glibc rules by release; musl
refused honestly; PostgreSQL 19 encoded from its source."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import pg_config
from modules import GLIBC, GOOD_MODULE

from pgdl.engine.predict import predict_load
from pgdl.glibc.release import NEWEST, OLDEST, Rules, rules_for
from pgdl.libc import Libc, LibcKind, interpreter_of, libc_of
from pgdl.server import Server

POSTGRES = os.path.join(pg_config("--bindir"), "postgres")
MUSL_LOADER = "/lib/ld-musl-x86_64.so.1"


# -- the loader in use, from its files ------------------------------------------

def test_the_servers_glibc_is_read_from_its_loader():
    libc = libc_of(POSTGRES)
    assert libc.kind is LibcKind.GLIBC
    assert libc.version == GLIBC
    assert os.path.realpath(libc.loader) == os.path.realpath(interpreter_of(POSTGRES))


@pytest.mark.skipif(GLIBC < (2, 33), reason="ld.so --help lists its directories from glibc 2.33 on")
def test_system_directories_are_the_loaders_own():
    """What pgdl reads from ld.so's file equals what ld.so --help says it searches."""
    libc = libc_of(POSTGRES)
    shown = subprocess.run([libc.loader, "--help"], capture_output=True, text=True).stdout
    listed = [line.split()[0] + "/" for line in shown.splitlines() if line.endswith("(system search path)")]
    assert list(libc.system_dirs) == listed
    assert libc.dst_lib == listed[0].strip("/")


def test_the_loaders_strings_are_found_as_the_patterns_find_them():
    """libc's anchored searches (each from the bytes every match must hold) give the
    leftmost match of the whole-file regex, for the loader and libc here and for odd bytes."""
    import random
    from pgdl import libc
    loader = interpreter_of(os.path.join(pg_config("--bindir"), "postgres"))
    samples = [open(loader, "rb").read(), open(os.path.join(os.path.dirname(os.path.realpath(loader)),
                                                            "libc.so.6"), "rb").read()]
    rnd = random.Random(19)
    alphabet = b"/\0ab.+ release version stable development 2.36"
    samples += [bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, 80))) for _ in range(5000)]
    for data in samples:
        for whole, anchored in ((libc._SYSTEM_DIRS.search, libc._system_dirs), (libc._GLIBC_RELEASE.search,
                                                                                 libc._release)):
            expected, found = whole(data), anchored(data)
            assert (expected and expected.span()) == (found and found.span()), data[:200]


def test_the_servers_description_names_its_loader(cluster):
    rows = cluster.query("SELECT message FROM pgdl.diagnose('plpgsql') WHERE topic = 'loader'")
    assert f"glibc {GLIBC[0]}.{GLIBC[1]}" in rows[0][0], rows


@pytest.mark.skipif(not os.path.exists(MUSL_LOADER), reason="Debian's musl package is not installed")
def test_a_musl_loader_is_recognised(tmp_path):
    source = tmp_path / "main.c"
    source.write_text("int main(void) { return 0; }\n")
    exe = tmp_path / "postgres"
    subprocess.run(["gcc", "-o", str(exe), str(source), f"-Wl,--dynamic-linker={MUSL_LOADER}"], check=True)
    libc = libc_of(str(exe))
    assert libc.kind is LibcKind.MUSL and libc.loader == MUSL_LOADER
    assert "musl" in libc.describe()


# -- musl: PostgreSQL's checks only ---------------------------------------------

# server_version_num of the headers the tests build against.
VERSION_NUM = int(pg_config("--version").split()[1].split(".")[0]) * 10000


def _server(libc: Libc, pkglibdir: str) -> Server:
    return Server(version_num=VERSION_NUM, pkglibdir=pkglibdir, libc=libc)


@pytest.fixture
def musl():
    return Libc(LibcKind.MUSL, loader=MUSL_LOADER)


def test_musl_gets_no_loader_prediction(build, musl):
    """A healthy module: glibc's prediction is that it loads; for musl pgdl says
    it cannot tell, and gives none of glibc's words."""
    built = build("musl_plain", GOOD_MODULE)
    glibc = predict_load(str(built), _server(Libc(LibcKind.GLIBC, GLIBC), str(built.parent)))
    assert glibc.will_load is True
    p = predict_load(str(built), _server(musl, str(built.parent)))
    assert p.will_load is None and p.error is None
    assert "musl" in p.loading.uncertain and "not predicted" in p.loading.uncertain


def test_musl_still_gets_the_magic_block_check(build, musl):
    from modules import HAND_MAGIC
    built = build("musl_magic", HAND_MAGIC, "-DM_VERSION=1100")
    p = predict_load(str(built), _server(musl, str(built.parent)))
    assert p.will_load is False
    assert p.error.message.startswith(f'incompatible library "{built}": version mismatch')


def test_musl_missing_dependency_is_not_judged(build, tmp_path, musl):
    (tmp_path / "dep.c").write_text("int pgdl_dep(void) { return 1; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "libpgdlgone.so"), str(tmp_path / "dep.c")],
                   check=True)
    built = build("musl_needs", GOOD_MODULE + "int pgdl_dep(void);\nint pgdl_use(void) { return pgdl_dep(); }\n",
                  f"-L{tmp_path}", "-lpgdlgone")
    (tmp_path / "libpgdlgone.so").unlink()
    on_glibc = predict_load(str(built), _server(Libc(LibcKind.GLIBC, GLIBC), str(tmp_path)))
    assert on_glibc.will_load is False and "cannot open shared object file" in on_glibc.error.message
    p = predict_load(str(built), _server(musl, str(tmp_path)))
    assert p.will_load is None and p.error is None


# -- glibc rules by release -----------------------------------------------------

@pytest.mark.parametrize("version, hwcaps, legacy, isa, relr, execstack", [
    ((2, 28), False, True, False, False, False),
    ((2, 31), False, True, False, False, False),
    ((2, 33), True, True, True, False, False),
    ((2, 36), True, True, True, True, False),
    ((2, 37), True, False, True, True, False),
    ((2, 41), True, False, True, True, True),
    ((2, 43), True, False, True, True, True),
])
def test_rules_by_release(version, hwcaps, legacy, isa, relr, execstack):
    r = Rules(version)
    assert (r.glibc_hwcaps, r.legacy_hwcaps, r.isa_level_check, r.relr, r.execstack_refused) == \
        (hwcaps, legacy, isa, relr, execstack)
    assert r.check_match_asserts is (version < (2, 41))
    assert (r.assertion("DT_RELRENT") is not None) is (version >= (2, 36))
    assert (r.assertion("check_match") is not None) is (version < (2, 41))


@pytest.mark.parametrize("version, line", [((2, 31), 547), ((2, 36), 487), ((2, 40), 498), ((2, 41), 498)])
def test_assertion_lines_by_release(version, line):
    assert f"dl-machine.h: {line}: elf_machine_rela_relative: Assertion" in Rules(version).assertion("RELATIVE")


def test_a_glibc_newer_than_encoded_uses_the_newest_rules_and_says_so():
    newer = rules_for(Libc(LibcKind.GLIBC, (NEWEST[0], NEWEST[1] + 1)))
    assert newer.version == NEWEST and "newer than the newest" in newer.describe()
    older = rules_for(Libc(LibcKind.GLIBC, (2, 17)))
    assert older.version == OLDEST and "older than the oldest" in older.describe()
    assert rules_for(Libc(LibcKind.GLIBC, GLIBC)).assumed is None or GLIBC > NEWEST


def test_hwcaps_subdirectories_by_release():
    from pgdl.glibc.hwcaps import capability_subdirs, HostCaps, ISA_1_BASELINE, ISA_1_V2, ISA_1_V3
    host = HostCaps.x86_64(ISA_1_BASELINE | ISA_1_V2 | ISA_1_V3)
    old = capability_subdirs(host=host, rules=Rules((2, 31)))
    assert not any(d.startswith("glibc-hwcaps/") for d in old) and "tls/" in old and old[-1] == ""
    mid = capability_subdirs(host=host, rules=Rules((2, 36)))
    assert mid[0] == "glibc-hwcaps/x86-64-v3/" and "tls/" in mid
    new = capability_subdirs(host=host, rules=Rules((2, 41)))
    assert new == ["glibc-hwcaps/x86-64-v3/", "glibc-hwcaps/x86-64-v2/", ""]


def test_execstack_tunable_forces_an_executable_stack_from_2_42():
    from pgdl.glibc.mapping import stack_executable
    env = {"GLIBC_TUNABLES": "glibc.rtld.execstack=2"}
    assert stack_executable(env, [], Rules((2, 42))) is True
    assert stack_executable(env, [], Rules((2, 41))) is False      # 2.41's tunable stops at 1
    assert stack_executable({}, [], Rules((2, 43))) is False


# -- a real tls/ subdirectory, searched up to 2.36 only ------------------------------

def test_legacy_tls_subdirectory(cluster, build, tmp_path):
    """A dependency found only in <rpath>/tls/: ld.so up to 2.36 tries the legacy
    hwcaps subdirectories (tls among them), 2.37 on does not."""
    lib = tmp_path / "deps"
    (lib / "tls").mkdir(parents=True)
    (tmp_path / "dep.c").write_text("int pgdl_tlsdir(void) { return 7; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libpgdltlsdir.so", "-o", str(lib / "libpgdltlsdir.so"),
                    str(tmp_path / "dep.c")], check=True)
    built = build("uses_tlsdir", GOOD_MODULE + "int pgdl_tlsdir(void);\nint pgdl_t(void) { return pgdl_tlsdir(); }\n",
                  f"-L{lib}", "-lpgdltlsdir", f"-Wl,-rpath,{lib}")
    os.rename(lib / "libpgdltlsdir.so", lib / "tls" / "libpgdltlsdir.so")
    os.chmod(tmp_path, 0o755)
    for d in (lib, lib / "tls"):
        os.chmod(d, 0o755)
    error = cluster.error_of("LOAD %s", (str(built),))
    actual = (True, None, None, None, None) if error is None else \
        (False, error.sqlstate, error.message, error.detail, error.hint)
    assert actual[0] is (GLIBC < (2, 37)), actual
    assert cluster.query("SELECT * FROM pgdl.predict_load(%s, context => 'new session')", (str(built),))[0] == actual


def test_a_versioned_symbol_missing_from_its_file_before_2_30(build, tmp_path):
    """Source-encoded (no reachable Debian release has glibc 2.28/2.29: RHEL 8 has 2.28)."""
    (tmp_path / "v.map").write_text("PGDL_1 { global: pgdl_a; pgdl_b; local: *; };\n")
    (tmp_path / "p.c").write_text("int pgdl_a(void) { return 1; }\nint pgdl_b(void) { return 2; }\n")
    lib = tmp_path / "libpgdlver.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libpgdlver.so", f"-Wl,--version-script={tmp_path}/v.map",
                    "-o", str(lib), str(tmp_path / "p.c")], check=True)
    built = build("uses_b", GOOD_MODULE + "int pgdl_b(void);\nint pgdl_use(void) { return pgdl_b(); }\n",
                  f"-L{tmp_path}", "-lpgdlver", f"-Wl,-rpath,{tmp_path}")
    (tmp_path / "v.map").write_text("PGDL_1 { global: pgdl_a; local: *; };\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libpgdlver.so", f"-Wl,--version-script={tmp_path}/v.map",
                    "-o", str(lib), str(tmp_path / "p.c")], check=True)
    for version, text in (((2, 29), "symbol pgdl_b version PGDL_1 not defined in file libpgdlver.so with link "
                                     "time reference"),
                          ((2, 30), "undefined symbol: pgdl_b, version PGDL_1")):
        p = predict_load(str(built), _server(Libc(LibcKind.GLIBC, version), str(tmp_path)))
        assert p.will_load is False
        assert p.error.message == f'could not load library "{built}": {built}: {text}'


def test_a_relative_search_element_naming_a_file(build, tmp_path):
    """LD_LIBRARY_PATH=notadir:DIR, notadir a file in the data directory: ENOTDIR ends
    the search up to glibc 2.38, and the search goes on from 2.39."""
    lib = tmp_path / "deps"
    lib.mkdir()
    (tmp_path / "dep.c").write_text("int pgdl_llp(void) { return 3; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libpgdlllp.so", "-o", str(lib / "libpgdlllp.so"),
                    str(tmp_path / "dep.c")], check=True)
    built = build("uses_llp", GOOD_MODULE + "int pgdl_llp(void);\nint pgdl_u(void) { return pgdl_llp(); }\n",
                  f"-L{lib}", "-lpgdlllp")
    data = tmp_path / "data"
    data.mkdir()
    (data / "notadir").write_text("a file\n")
    for version, loads in (((2, 38), False), ((2, 39), True)):
        server = _server(Libc(LibcKind.GLIBC, version), str(tmp_path)).replace(
            data_directory=str(data), environ={"LD_LIBRARY_PATH": f"notadir:{lib}"})
        p = predict_load(str(built), server)
        assert p.will_load is loads, (version, p.error)
        if not loads:
            assert "libpgdlllp.so: cannot open shared object file: No such file or directory" in p.error.message


# -- another root (pgdl --root; scripts/matrix.sh checks it agrees with the tool inside) ---

def test_paths_inside_another_root(tmp_path):
    """Symbolic links are followed inside the root, as in a chroot: an absolute
    target is the root's, '..' stops at its top, a loop ends."""
    from pgdl import rootfs
    root = tmp_path / "root"
    (root / "lib" / "real").mkdir(parents=True)
    (root / "lib" / "real" / "ld.so").write_text("loader")
    (root / "lib64").mkdir()
    os.symlink("/lib/real/ld.so", root / "lib64" / "ld.so")          # absolute: the root's /lib
    os.symlink("real", root / "lib" / "rel")                         # relative
    os.symlink("/loop", root / "loop")
    try:
        rootfs.set_root(str(root))
        assert rootfs.realpath("/lib64/ld.so") == "/lib/real/ld.so"
        assert rootfs.host("/lib64/ld.so") == f"{root}/lib/real/ld.so"
        assert rootfs.host("/lib/rel/ld.so") == f"{root}/lib/real/ld.so"
        assert rootfs.realpath("/../../lib64/ld.so") == "/lib/real/ld.so"
        assert rootfs.host_entry("/lib64/ld.so") == f"{root}/lib64/ld.so"
        assert not os.path.exists(rootfs.host("/loop/x"))
        assert rootfs.host("/proc/self/maps") == "/proc/self/maps"   # the host's kernel
    finally:
        rootfs.set_root("/")
    assert rootfs.host("/lib64/ld.so") == "/lib64/ld.so"


def test_tool_root_must_be_a_directory(tmp_path):
    import sys
    tool = [sys.executable, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts",
                                         "pgdl")]
    done = subprocess.run(tool + ["audit", "--root", str(tmp_path / "none"), "--bindir", "/usr/bin"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "not a directory" in done.stderr


def test_upgrade_check_of_a_musl_installation_says_not_judged(build, tmp_path, musl):
    """A new installation whose loader is musl's: its libraries are not judged,
    and the rows say so (no glibc words, no failure invented)."""
    from pgdl.views.upgrade_check import OldCluster, upgrade_check
    built = build("musl_upgrade", GOOD_MODULE)
    old = OldCluster({str(built): ("db",)}, {}, str(built), ("db",))
    rows = upgrade_check(old, _server(musl, str(tmp_path)), "a musl installation")
    library = [r for r in rows if r.kind == "library"][0]
    assert library.status == "warning" and "musl" in library.message and library.pg_upgrade is None
    preload = [r for r in rows if r.kind == "preload"][0]
    assert preload.status == "warning" and "not judged" in preload.message
