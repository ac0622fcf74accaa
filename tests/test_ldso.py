"""pgdl.ldso against the real glibc: libraries are built here, then a helper
program dlopen()s them with RTLD_NOW | RTLD_GLOBAL (as the backend does) and
its dlerror() is compared, character for character, with pgdl's prediction.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
from pathlib import Path

import pytest

from pgdl.glibc import binding, dst, ldso, linkmap
from pgdl.glibc.loader import Loader
from pgdl.elf import DT_NEEDED, DT_RUNPATH, open_elf
from pgdl.server import Server

HELPER_SOURCE = r"""
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
int main(int argc, char **argv) {
    errno = 0;
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
    if (h == NULL) {
        const char *text = dlerror();
        printf("ERR\t%d\t%s\n", errno, text);
        return 1;
    }
    printf("OK\n");
    return 0;
}
"""


@pytest.fixture(scope="session")
def helper(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("helper") / "dlopen-helper"
    src = out.with_suffix(".c")
    src.write_text(HELPER_SOURCE)
    subprocess.run(["gcc", "-o", str(out), str(src), "-ldl"], check=True, capture_output=True, text=True)
    return str(out)


def gcc(out: Path, source: str, *flags: str, shared: bool = True) -> Path:
    """Compile C into `out` (a shared object unless told otherwise)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.parent / (out.name + ".c")
    src.write_text(source)
    cmd = ["gcc", *(["-shared", "-fPIC"] if shared else []), "-o", str(out), str(src), *flags]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def real_dlopen(helper: str, path: str, *, cwd: str, llp: str | None = None, debug: bool = False):
    """(dlerror text or None, errno, LD_DEBUG output) of the real glibc."""
    env = {"PATH": "/usr/bin:/bin"}
    if llp is not None:
        env["LD_LIBRARY_PATH"] = llp
    if debug:
        env["LD_DEBUG"] = "libs"
    run = subprocess.run([helper, path], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    line = run.stdout.strip()
    if line == "OK":
        return None, 0, run.stderr
    status, err, text = line.split("\t", 2)
    assert status == "ERR", run.stdout
    return text, int(err), run.stderr


def server_for(helper: str, cwd: str, llp: str | None = None) -> Server:
    """The helper process as pgdl sees a server: its executable, env and cwd."""
    environ = {"LD_LIBRARY_PATH": llp} if llp is not None else {}
    return Server(version_num=150000, pkglibdir="/nonexistent", executable=helper,
                  environ=environ, data_directory=cwd)


def predicted(path: str, server: Server) -> str | None:
    tree = ldso.load_tree(path, server)
    if tree.error is not None:
        return tree.error
    return binding.bind(tree, server).error


def assert_same(helper: str, path, cwd, llp: str | None = None) -> linkmap.LoadTree:
    real, _err, _ = real_dlopen(helper, str(path), cwd=str(cwd), llp=llp)
    server = server_for(helper, str(cwd), llp)
    assert predicted(str(path), server) == real
    return ldso.load_tree(str(path), server)


def row(tree: linkmap.LoadTree, needed: str) -> linkmap.Dependency:
    return next(d for d in tree.deps if d.needed == needed)


LEAF = "int leaf(void) { return 1; }\n"
MID = "int leaf(void);\nint mid(void) { return leaf(); }\n"
MOD = "int mid(void);\nint module_entry(void) { return mid(); }\n"


def build_chain(tmp: Path, dtags: str) -> Path:
    """mod.so -> libmid.so -> libleaf.so, all found through mod's path only."""
    lib = tmp / "lib"
    gcc(lib / "libleaf.so", LEAF, "-Wl,-soname,libleaf.so")
    gcc(lib / "libmid.so", MID, f"-L{lib}", "-lleaf", "-Wl,-soname,libmid.so")
    return gcc(tmp / "mod.so", MOD, f"-L{lib}", "-lmid", f"-Wl,-rpath,{lib}", f"-Wl,--{dtags}")


def test_rpath_is_inherited_by_dependencies(helper, tmp_path):
    mod = build_chain(tmp_path, "disable-new-dtags")
    tree = assert_same(helper, mod, tmp_path)
    assert tree.error is None
    assert row(tree, "libleaf.so").found_via == f"RPATH of {mod}"
    assert row(tree, "libleaf.so").path == f"{tmp_path}/lib/libleaf.so"
    assert row(tree, "libmid.so").found_via == f"RPATH of {mod}"


def test_runpath_is_not_inherited(helper, tmp_path):
    mod = build_chain(tmp_path, "enable-new-dtags")
    tree = assert_same(helper, mod, tmp_path)
    assert tree.error == "libleaf.so: cannot open shared object file: No such file or directory"
    assert tree.errno == 2
    assert row(tree, "libmid.so").found_via == f"RUNPATH of {mod}"
    assert row(tree, "libleaf.so").status == "not found"


def add_dynamic_entry(path: Path, tag: int, value: int) -> None:
    """Write (tag, value) over the first DT_NULL of a 64-bit little-endian
    object's dynamic section; GNU ld leaves spare DT_NULL entries after it.
    The result is a new file: a process that still maps the old one (a
    backend exiting after a LOAD) must not see its pages change."""
    data = bytearray(path.read_bytes())
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for k in range(phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + k * phentsize)
        if p_type == 2:                                     # PT_DYNAMIC
            break
    entries = [struct.unpack_from("<qQ", data, p_offset + 16 * i) for i in range(p_filesz // 16)]
    first_null = next(i for i, (t, _v) in enumerate(entries) if t == 0)
    assert first_null + 1 < len(entries), "no spare DT_NULL to overwrite"
    struct.pack_into("<qQ", data, p_offset + 16 * first_null, tag, value)
    patched = path.with_name(path.name + ".patched")
    patched.write_bytes(bytes(data))
    os.chmod(patched, path.stat().st_mode)
    os.replace(patched, path)


def test_repeated_runpath_last_one_counts(helper, tmp_path):
    """glibc keeps one entry per dynamic tag, the last (elf/get-dynamic-info.h):
    of two DT_RUNPATH entries, only the second is searched."""
    gcc(tmp_path / "a" / "libleaf.so", LEAF, "-Wl,-soname,libleaf.so")
    mod = gcc(tmp_path / "mod.so", "int leaf(void); int f(void) { return leaf(); }",
              f"-L{tmp_path}/a", "-lleaf", f"-Wl,-rpath,{tmp_path}/a", "-Wl,--enable-new-dtags")
    # The second names the directory "libleaf.so" (the DT_NEEDED string), which does not exist.
    add_dynamic_entry(mod, DT_RUNPATH, open_elf(str(mod)).dynamic_value(DT_NEEDED))
    tree = assert_same(helper, mod, tmp_path)
    assert tree.error == "libleaf.so: cannot open shared object file: No such file or directory"
    assert open_elf(str(mod)).runpath == "libleaf.so"


def test_missing_dependency(helper, tmp_path):
    lib = gcc(tmp_path / "lib" / "libgone.so", LEAF, "-Wl,-soname,libgone.so")
    mod = gcc(tmp_path / "mod.so", "int leaf(void); int f(void) { return leaf(); }",
              f"-L{lib.parent}", "-lgone")
    lib.unlink()
    tree = assert_same(helper, mod, tmp_path)
    assert tree.error == "libgone.so: cannot open shared object file: No such file or directory"
    assert [d.status for d in tree.deps][:2] == ["ok", "not found"]


def test_missing_module_path(helper, tmp_path):
    tree = assert_same(helper, tmp_path / "nothere.so", tmp_path)
    assert tree.deps[0].status == "not found"


def test_origin_and_relative_paths(helper, tmp_path):
    sub = tmp_path / "plugin" / "deps"
    gcc(sub / "libleaf.so", LEAF, "-Wl,-soname,libleaf.so")
    mod = gcc(tmp_path / "plugin" / "mod.so", "int leaf(void); int f(void) { return leaf(); }",
              f"-L{sub}", "-lleaf", "-Wl,-rpath,$ORIGIN/deps", "-Wl,--enable-new-dtags")
    tree = assert_same(helper, mod, tmp_path)
    assert row(tree, "libleaf.so").path == f"{tmp_path}/plugin/deps/libleaf.so"
    # A relative module path: $ORIGIN is relative to the process's cwd.
    tree = assert_same(helper, "plugin/mod.so", tmp_path)
    # glibc makes a relative object's origin absolute with the cwd.
    assert row(tree, "libleaf.so").path == f"{tmp_path}/plugin/deps/libleaf.so"


def test_ld_library_path_order(helper, tmp_path):
    """RPATH > LD_LIBRARY_PATH > RUNPATH; the first copy found wins."""
    for d in ("a", "b"):
        gcc(tmp_path / d / "libleaf.so", LEAF, "-Wl,-soname,libleaf.so")
    src = "int leaf(void); int f(void) { return leaf(); }"
    runpath = gcc(tmp_path / "runpath.so", src, f"-L{tmp_path}/a", "-lleaf",
                  f"-Wl,-rpath,{tmp_path}/a", "-Wl,--enable-new-dtags")
    rpath = gcc(tmp_path / "rpath.so", src, f"-L{tmp_path}/a", "-lleaf",
                f"-Wl,-rpath,{tmp_path}/a", "-Wl,--disable-new-dtags")
    llp = f"/nonexistent:{tmp_path}/b"
    tree = assert_same(helper, runpath, tmp_path, llp)
    assert (row(tree, "libleaf.so").path, row(tree, "libleaf.so").found_via) == \
        (f"{tmp_path}/b/libleaf.so", "LD_LIBRARY_PATH")
    tree = assert_same(helper, rpath, tmp_path, llp)
    assert row(tree, "libleaf.so").path == f"{tmp_path}/a/libleaf.so"


def test_empty_ld_library_path_component_is_cwd(helper, tmp_path):
    gcc(tmp_path / "cwd" / "libleaf.so", LEAF, "-Wl,-soname,libleaf.so")
    mod = gcc(tmp_path / "mod.so", "int leaf(void); int f(void) { return leaf(); }",
              f"-L{tmp_path}/cwd", "-lleaf")
    tree = assert_same(helper, mod, tmp_path / "cwd", "/nonexistent:")
    assert row(tree, "libleaf.so").path == "libleaf.so"
    assert row(tree, "libleaf.so").found_via == "LD_LIBRARY_PATH"


def test_32bit_copy_is_skipped(helper, tmp_path):
    gcc(tmp_path / "lib32" / "libleaf.so", "int leaf(void) { return 32; }",
        "-m32", "-nostdlib", "-Wl,-soname,libleaf.so")
    gcc(tmp_path / "lib64" / "libleaf.so", LEAF, "-Wl,-soname,libleaf.so")
    src = "int leaf(void); int f(void) { return leaf(); }"
    both = gcc(tmp_path / "both.so", src, f"-L{tmp_path}/lib64", "-lleaf",
               f"-Wl,-rpath,{tmp_path}/lib32:{tmp_path}/lib64")
    tree = assert_same(helper, both, tmp_path)
    leaf = row(tree, "libleaf.so")
    assert leaf.path == f"{tmp_path}/lib64/libleaf.so"
    assert f"{tmp_path}/lib32/libleaf.so: wrong ELF class, skipped" in leaf.detail
    only32 = gcc(tmp_path / "only32.so", src, f"-L{tmp_path}/lib64", "-lleaf",
                 f"-Wl,-rpath,{tmp_path}/lib32")
    (tmp_path / "lib64" / "libleaf.so").unlink()
    tree = assert_same(helper, only32, tmp_path)
    assert tree.error == "libleaf.so: wrong ELF class: ELFCLASS32"


def test_bad_file_in_path_stops_the_search(helper, tmp_path):
    gcc(tmp_path / "good" / "libleaf.so", LEAF, "-Wl,-soname,libleaf.so")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "libleaf.so").write_text("INPUT(-lleaf)\n")
    (tmp_path / "dir" / "libleaf.so").mkdir(parents=True)
    src = "int leaf(void); int f(void) { return leaf(); }"
    mod = gcc(tmp_path / "mod.so", src, f"-L{tmp_path}/good", "-lleaf",
              f"-Wl,-rpath,{tmp_path}/bad:{tmp_path}/good")
    tree = assert_same(helper, mod, tmp_path)
    assert tree.error == f"{tmp_path}/bad/libleaf.so: file too short"
    (tmp_path / "bad" / "libleaf.so").write_text("this is not an ELF file, and long enough to hold a header" * 4)
    tree = assert_same(helper, mod, tmp_path)
    assert tree.error == f"{tmp_path}/bad/libleaf.so: invalid ELF header"
    mod2 = gcc(tmp_path / "mod2.so", src, f"-L{tmp_path}/good", "-lleaf",
               f"-Wl,-rpath,{tmp_path}/dir:{tmp_path}/good")
    tree = assert_same(helper, mod2, tmp_path)
    assert tree.error == f"{tmp_path}/dir/libleaf.so: cannot read file data: Is a directory"


def test_unreadable_copy_is_skipped(helper, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    gcc(tmp_path / "locked" / "libleaf.so", LEAF, "-Wl,-soname,libleaf.so").chmod(0)
    gcc(tmp_path / "open" / "libleaf.so", LEAF, "-Wl,-soname,libleaf.so")
    mod = gcc(tmp_path / "mod.so", "int leaf(void); int f(void) { return leaf(); }",
              f"-L{tmp_path}/open", "-lleaf", f"-Wl,-rpath,{tmp_path}/locked:{tmp_path}/open")
    tree = assert_same(helper, mod, tmp_path)
    assert "Permission denied" in row(tree, "libleaf.so").detail


def test_already_loaded_by_soname_is_not_searched(helper, tmp_path):
    """libc.so.6 is in the process: a module's own copy is never looked at."""
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "libc.so.6").write_text("garbage" * 20)
    mod = gcc(tmp_path / "mod.so", "#include <stdlib.h>\nint f(void) { return atoi(\"1\"); }",
              f"-Wl,-rpath,{tmp_path}/fake")
    tree = assert_same(helper, mod, tmp_path)
    assert row(tree, "libc.so.6").status == "already loaded"


def test_cyclic_dependencies_terminate(helper, tmp_path):
    lib = tmp_path / "lib"
    gcc(lib / "liba.so", "int a(void) { return 1; }", "-Wl,-soname,liba.so")
    gcc(lib / "libb.so", "int a(void); int b(void) { return a(); }", f"-L{lib}", "-la", "-Wl,-soname,libb.so")
    gcc(lib / "liba.so", "int b(void); int a(void) { return 1; } int c(void) { return b(); }",
        f"-L{lib}", "-lb", "-Wl,-soname,liba.so")
    mod = gcc(tmp_path / "mod.so", "int a(void); int f(void) { return a(); }", f"-L{lib}", "-la",
              f"-Wl,-rpath,{lib}", "-Wl,--disable-new-dtags")
    tree = assert_same(helper, mod, tmp_path)
    assert [d.needed for d in tree.deps if d.status == "ok"] == [str(mod), "liba.so", "libb.so"]


def test_search_directories_match_ld_debug(helper, tmp_path):
    """The system search path (with hwcaps subdirectories) that LD_DEBUG shows."""
    gcc(tmp_path / "lib" / "libnosuch_pgdl.so", LEAF, "-Wl,-soname,libnosuch_pgdl.so")
    mod = gcc(tmp_path / "mod.so", "int leaf(void); int f(void) { return leaf(); }",
              f"-L{tmp_path}/lib", "-lnosuch_pgdl")
    real, _err, debug = real_dlopen(helper, str(mod), cwd=str(tmp_path), debug=True)
    match = re.search(r"search path=(\S+)\s+\(system search path\)", debug)
    assert match, debug
    server = server_for(helper, str(tmp_path))
    loader = Loader(server)
    expected = [(d + sub).rstrip("/") for d in loader.system_dirs for sub in loader.caps]
    assert match.group(1).split(":") == expected
    assert predicted(str(mod), server) == real


def test_absurd_inputs_give_rows_not_exceptions(helper, tmp_path):
    server = server_for(helper, str(tmp_path))
    (tmp_path / "short.so").write_bytes(b"\x7fELF")
    tree = ldso.load_tree(str(tmp_path / "short.so"), server)
    assert tree.error == f"{tmp_path}/short.so: file too short"
    assert tree.deps[0].status == "error"
    fifo = tmp_path / "fifo.so"
    os.mkfifo(fifo)
    tree = ldso.load_tree(str(fifo), server)       # must not block
    assert tree.error is not None
    many = "".join(f"-l{n} " for n in ["c"] * 3).split()
    mod = gcc(tmp_path / "mod.so", "int f(void) { return 0; }", *many)
    assert ldso.load_tree(str(mod), server).error is None


def test_dst_expansion():
    exp = lambda s: dst.expand_dst(s, "/o", "x86_64", "lib/x86_64-linux-gnu")
    assert exp("$ORIGIN/../$LIB") == "/o/../lib/x86_64-linux-gnu"
    assert exp("${ORIGIN}x/$PLATFORM") == "/ox/x86_64"
    assert exp("$ORIGINAL/$FOO") == "$ORIGINAL/$FOO"
    assert dst.expand_dst("$ORIGIN/x", None, "x86_64", "lib") == ""
    dirs = dst.split_path_list("/a//:/a:::$ORIGIN/b", ":", exp)
    assert dirs == ["/a/", "", "/o/b/"]


def test_dollar_lib_matches_glibc(helper, tmp_path):
    sub = tmp_path / "lib" / "x86_64-linux-gnu"
    gcc(sub / "libleaf.so", LEAF, "-Wl,-soname,libleaf.so")
    mod = gcc(tmp_path / "mod.so", "int leaf(void); int f(void) { return leaf(); }",
              f"-L{sub}", "-lleaf", "-Wl,-rpath,$ORIGIN/$LIB")
    tree = assert_same(helper, mod, tmp_path)
    assert row(tree, "libleaf.so").path == f"{sub}/libleaf.so"
