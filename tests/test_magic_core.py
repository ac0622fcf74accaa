"""Reading and judging magic blocks without a server: every layout, both CPUs."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from modules import PG18_EXT_MAGIC
from pgdl.elf import open_elf
from pgdl.postgres.magic import (MagicBlock, compare_fields, judge, read_magic, server_block_bytes,
                        server_layout_length)
from pgdl.server import ServerMagic


def build_plain(tmp_path, source, target):
    """Build a module needing no system headers, for x86-64 (gcc) or AArch64 (clang + lld)."""
    src = tmp_path / "m.c"
    src.write_text(source)
    out = tmp_path / f"m_{target}.so"
    if target == "x86_64":
        cmd = ["gcc", "-shared", "-fPIC", "-O2", "-o", str(out), str(src)]
    else:
        if not shutil.which("clang") or not shutil.which("ld.lld"):
            pytest.fail("clang and lld are needed to cross-build the AArch64 fixture (scripts/install-deps.sh)")
        cmd = ["clang", "--target=aarch64-linux-gnu", "-nostdlib", "-shared", "-fPIC", "-O2", "-fuse-ld=lld",
               "-o", str(out), str(src)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


# bookworm's ld.bfd cannot pack RELR relocations; lld (used for AArch64) can.
@pytest.mark.parametrize("target, relr", [("x86_64", False), ("aarch64", False), ("aarch64", True)])
def test_pg18_ext_block_with_relocated_pointers(tmp_path, target, relr):
    source = PG18_EXT_MAGIC
    out = build_plain(tmp_path, source, target)
    if relr:
        out = tmp_path / "relr.so"
        subprocess.run(["clang", "--target=aarch64-linux-gnu", "-nostdlib", "-shared", "-fPIC", "-O0",
                        "-fuse-ld=lld", "-Wl,--pack-dyn-relocs=relr", "-o", str(out), str(tmp_path / "m.c")],
                       check=True, capture_output=True)
    obj = open_elf(str(out))
    block = read_magic(obj)
    assert (block.length, block.version, block.funcmaxargs, block.namedatalen) == (72, 1800, 100, 64)
    assert block.abi_extra == "PostgreSQL"
    assert (block.name, block.module_version) == ("my_module", "1.2.3")


PG15 = ServerMagic(version=1500)
PG18 = ServerMagic(version=1800)


def block_for(server, major, **changes):
    raw = bytearray(server_block_bytes(server, major))
    fields = dict(length=len(raw), version=server.version, funcmaxargs=server.funcmaxargs,
                  indexmaxkeys=server.indexmaxkeys, namedatalen=server.namedatalen,
                  float8byval=server.float8byval, abi_extra=server.abi_extra if major >= 15 else None)
    fields.update(changes)
    offsets = {"version": 4, "funcmaxargs": 8, "indexmaxkeys": 12, "namedatalen": 16}
    for key, off in offsets.items():
        raw[off:off + 4] = int(fields[key]).to_bytes(4, "little")
    if major >= 15 and fields["abi_extra"] is not None:
        raw[24:56] = fields["abi_extra"].encode().ljust(32, b"\0")
    return MagicBlock(raw=bytes(raw), **fields)


@pytest.mark.parametrize("major, length", [(12, 28), (13, 24), (14, 24), (15, 56), (16, 56), (17, 56), (18, 72), (19, 72)])
def test_layout_lengths(major, length):
    assert server_layout_length(major) == length
    assert len(server_block_bytes(ServerMagic(version=major * 100), major)) == length


def test_pg18_ignores_module_name_and_version():
    block = block_for(PG18, 18)
    named = block.replace(name="x", module_version="9")
    assert judge(named, PG18, server_block_bytes(PG18, 18), "/m.so", 18) is None


@pytest.mark.parametrize("major", [13, 14])
def test_no_abi_check_before_15(major):
    srv = ServerMagic(version=major * 100)
    block = block_for(srv, major, namedatalen=32)
    err = judge(block, srv, server_block_bytes(srv, major), "/m.so", major)
    assert err.detail == "Server has NAMEDATALEN = 64, library has 32."
    assert all(f.field != "ABI extra" for f in compare_fields(block, srv, 24))


def test_pg12_compares_float4byval():
    srv = ServerMagic(version=1200)
    raw = bytearray(server_block_bytes(srv, 12))
    raw[20:24] = (0).to_bytes(4, "little")
    block = MagicBlock(length=28, version=1200, funcmaxargs=100, indexmaxkeys=32, namedatalen=64,
                       float4byval=False, float8byval=True, raw=bytes(raw))
    err = judge(block, srv, server_block_bytes(srv, 12), "/m.so", 12)
    assert err.detail == "Server has FLOAT4PASSBYVAL = true, library has false."


PG19 = ServerMagic(version=1900)


def test_pg19_from_its_source():
    """PostgreSQL 19 (REL_19_STABLE, read from source; no 19 server is reachable
    here): the 18 layout and checks, its own version."""
    assert judge(block_for(PG19, 19), PG19, server_block_bytes(PG19, 19), "/m.so", 19) is None
    err = judge(block_for(PG18, 18), PG19, server_block_bytes(PG19, 19), "/m.so", 19)
    assert err.message == 'incompatible library "/m.so": version mismatch'
    assert err.detail == "Server is version 19, library is version 18."
    err = judge(block_for(PG19, 19, abi_extra="EDB"), PG19, server_block_bytes(PG19, 19), "/m.so", 19)
    assert err.message == 'incompatible library "/m.so": ABI mismatch'


def test_version_checked_before_abi():
    block = block_for(PG15, 15, version=1600, abi_extra="Other")
    err = judge(block, PG15, server_block_bytes(PG15, 15), "/m.so", 15)
    assert err.message == 'incompatible library "/m.so": version mismatch'
    assert err.detail == "Server is version 15, library is version 16."


def test_common_machine_names_are_pyelftools_own():
    """pgdl.elf names common machines without importing pyelftools: the same words."""
    from elftools.elf.descriptions import describe_e_machine
    from elftools.elf.enums import ENUM_E_MACHINE
    from pgdl.elf import COMMON_MACHINES
    names = {value: name for name, value in ENUM_E_MACHINE.items() if isinstance(value, int)}
    for machine, text in COMMON_MACHINES.items():
        assert describe_e_machine(names[machine]) == text
