"""pgdl.dynsym and the relocation scan: the fast paths against plain reference readings.

The fast paths read tables in bulk, search through the objects' own hash
tables and Bloom filters, skip what glibc skips and page big string tables;
each test compares them with a slow, obvious reading of the same file.
"""

from __future__ import annotations

import glob
import os
import random
import struct

import pytest

from conftest import pg_config
from pgdl import elf
from pgdl.elf import dynsym, hashing
from pgdl.glibc import binding, relocations
from test_ldso import assert_same, gcc, helper  # noqa: F401  (fixture)

POSTGRES = os.path.join(pg_config("--bindir"), "postgres")
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
OBJECTS = [POSTGRES, LIBC, *sorted(glob.glob(os.path.join(pg_config("--pkglibdir"), "*.so")))[:12]]
LLVM = sorted(glob.glob("/usr/lib/x86_64-linux-gnu/libLLVM-*.so*"))


def plain_symbols(obj: elf.ElfObject) -> list[tuple[str, int, int, int, int]]:
    """(name, value, info, other, shndx) of every .dynsym entry, one struct at a time."""
    table = dynsym.table(obj)
    strtab = obj.read_vaddr(obj.dynamic_value(elf.DT_STRTAB), obj.dynamic_value(elf.DT_STRSZ))
    raw = obj.read_vaddr(obj.dynamic_value(elf.DT_SYMTAB), table.count * 24)
    out = []
    for st_name, info, other, shndx, value, _size in struct.iter_unpack("<IBBHQQ", raw):
        out.append((elf.cstring(strtab, st_name), value, info, other, shndx))
    return out


@pytest.mark.parametrize("path", OBJECTS)
def test_columns_and_names_match_a_plain_reading(path):
    obj = elf.open_elf(path)
    table = dynsym.table(obj)
    for i, (name, value, info, other, shndx) in enumerate(plain_symbols(obj)):
        if i == 0:
            continue
        assert (table.name(i), table.st_value[i], table.st_info[i], table.st_other[i], table.st_shndx[i]) == \
            (name, value, info, other, shndx)


@pytest.mark.parametrize("path", OBJECTS)
def test_hash_lookup_finds_exactly_the_hashed_entries(path):
    obj = elf.open_elf(path)
    table = dynsym.table(obj)
    symbols = plain_symbols(obj)
    by_name: dict[str, list[int]] = {}
    for i in range(table.first_hashed, table.count):
        by_name.setdefault(symbols[i][0], []).append(i)
    names = list(by_name)
    for name in random.Random(5).sample(names, min(len(names), 2000)):
        assert table.find(name) == tuple(by_name[name])
    for i in range(1, table.first_hashed):                  # unhashed: ld.so cannot find them by name
        if symbols[i][0] not in by_name:
            assert table.find(symbols[i][0]) == ()
    assert table.find("pgdl_no_such_symbol_anywhere") == ()


def test_sysv_hash_table(tmp_path):
    lib = gcc(tmp_path / "libsysv.so", "int one(void) { return 1; }\nint two(void) { return 2; }\n",
              "-Wl,--hash-style=sysv")
    obj = elf.open_elf(str(lib))
    assert obj.dynamic_value(elf.DT_GNU_HASH) is None and obj.bloom() is None
    assert dynsym.definition(obj, "two").name == "two"
    assert dynsym.definition(obj, "three") is None


def test_sysv_only_library_binds_like_glibc(helper, tmp_path):  # noqa: F811
    gcc(tmp_path / "lib" / "libold.so", "int old_one(void) { return 1; }\n", "-Wl,--hash-style=sysv",
        "-Wl,-soname,libold.so")
    good = gcc(tmp_path / "good.so", "int old_one(void);\nint use(void) { return old_one(); }\n",
               f"-L{tmp_path}/lib", "-lold", f"-Wl,-rpath,{tmp_path}/lib", "-Wl,--hash-style=sysv")
    assert_same(helper, good, tmp_path)
    bad = gcc(tmp_path / "bad.so", "int old_two(void);\nint use(void) { return old_two(); }\n",
              f"-L{tmp_path}/lib", "-lold", f"-Wl,-rpath,{tmp_path}/lib", "-Wl,--hash-style=sysv")
    assert_same(helper, bad, tmp_path)


@pytest.mark.skipif(not LLVM, reason="libLLVM is not installed")
def test_paged_string_table_reads_the_same_names():
    obj = elf.open_elf(LLVM[0])
    table = dynsym.table(obj)
    assert isinstance(table.strings, dynsym.PagedStrings)
    strtab = obj.read_vaddr(obj.dynamic_value(elf.DT_STRTAB), obj.dynamic_value(elf.DT_STRSZ))
    for i in random.Random(3).sample(range(1, table.count), 3000):
        assert table.read_name(i) == elf.cstring(strtab, table.st_name[i])


def plain_lookups(obj: elf.ElfObject) -> list[tuple[int, int]]:
    """binding.lookups() the obvious way: every relocation read, glibc's rules applied one by one."""
    table = dynsym.table(obj)
    relative_prefix = obj.dynamic_value(relocations.DT_RELACOUNT) or 0
    rela, relasz = obj.dynamic_value(elf.DT_RELA), obj.dynamic_value(elf.DT_RELASZ) or 0
    jmprel, pltsz = obj.dynamic_value(relocations.DT_JMPREL), obj.dynamic_value(relocations.DT_PLTRELSZ) or 0
    entries = []
    if rela is not None:
        if jmprel is not None and rela + relasz == jmprel + pltsz:
            relasz -= pltsz
        entries += list(struct.iter_unpack("<QQq", obj.read_vaddr(rela, relasz)))[relative_prefix:]
    if jmprel is not None:
        entries += list(struct.iter_unpack("<QQq", obj.read_vaddr(jmprel, pltsz)))
    seen, out = set(), []
    for _offset, info, _addend in entries:
        symidx, rtype = info >> 32, info & 0xFFFFFFFF
        if symidx == 0 or symidx >= table.count or symidx in seen:
            continue
        seen.add(symidx)
        sym = table.symbol(symidx)
        defined_here = (sym.defined and symidx >= table.first_hashed and sym.type in binding.ALLOWED_TYPES
                        and (sym.value or sym.shndx == elf.SHN_ABS or sym.type == elf.STT_TLS))
        if not defined_here:
            out.append((symidx, rtype))
    return out


@pytest.mark.parametrize("path", OBJECTS + LLVM[:1])
def test_relocation_scan_matches_a_plain_reading(path):
    obj = elf.open_elf(path)
    if obj.dynamic_value(elf.DT_REL) is not None:
        pytest.skip("REL relocations: not on x86-64")
    assert binding.lookups(obj, dynsym.table(obj)) == plain_lookups(obj)


def test_empty_bloom_filter_admits_nothing(tmp_path):
    """A GNU hash table with no Bloom words (hostile): a scope search finds nothing and raises nothing."""
    from pgdl.glibc.ldso import LinkMap
    src = os.path.join(pg_config("--pkglibdir"), "plpgsql.so")
    obj = elf.open_elf(src)
    at = obj.vaddr_to_offset(obj.dynamic_value(elf.DT_GNU_HASH)) + 8      # bloom_size
    data = bytearray(open(src, "rb").read())
    data[at:at + 4] = struct.pack("<I", 0)
    broken = tmp_path / "plpgsql.so"
    broken.write_bytes(data)
    obj = elf.open_elf(str(broken))
    assert len(obj.bloom()[0]) == 0
    assert not hashing.bloom_admits(obj.bloom(), hashing.gnu_hash_of("plpgsql_call_handler"))
    scope = binding.Objects([LinkMap(str(broken), obj, set(), set())])
    ref = binding.Ref("plpgsql_call_handler", None, False, False)
    assert scope.define(ref, hashing.gnu_hash_of(ref.name)) is False


# -- damaged hash tables: indexed, not walked per name, with the same answers --

def walk_gnu(chain, symoffset, stop, i, h):
    """do_lookup_x()'s GNU chain walk from entry i: the entries whose stored hash is h's."""
    out = []
    while i < stop:
        value = chain[i - symoffset]
        if (value ^ h) >> 1 == 0:
            out.append(i)
        if value & 1:
            break
        i += 1
    return out


def walk_sysv(chains, count, start):
    """The SysV walk from a bucket, as the old code bounded it: count steps at most."""
    seen, i, steps = set(), start, 0
    while i and i < count and steps <= count:
        seen.add(i)
        i = chains[i] if i < len(chains) else 0
        steps += 1
    return seen


@pytest.mark.parametrize("seed", range(20))
def test_damaged_gnu_chain_index_equals_the_walk(seed):
    rng = random.Random(seed)
    symoffset, n = rng.randrange(5), rng.randrange(1, 400)
    # Few end bits (a damaged table) and few distinct hashes, so that runs are long and share hashes.
    chain = [(rng.randrange(8) << 1) | (rng.random() < 0.02) for _ in range(n)]
    stop = symoffset + n - rng.randrange(min(n, 3))
    runs = hashing.GnuRuns(chain, symoffset, stop)
    for _ in range(300):
        i, h = rng.randrange(symoffset, stop), rng.randrange(16)
        assert runs.matches(i, h) == walk_gnu(chain, symoffset, stop, i, h)


@pytest.mark.parametrize("seed", range(20))
def test_damaged_sysv_chain_reachability_equals_the_walk(seed):
    rng = random.Random(seed)
    count = rng.randrange(2, 300)
    # Random successors: long chains, cycles, ends (0) and entries pointing past the table.
    chains = [rng.choice([0, rng.randrange(count), rng.randrange(count), count + 5]) for _ in range(count - rng.randrange(2))]
    reach = hashing.SysvReach(chains, count)
    for start in range(1, count):
        expected = walk_sysv(chains, count, start)
        assert {c for c in range(1, count) if reach.reaches(start, c)} == expected


def patch_gnu_end_bits(path, out):
    """A copy of `path` whose GNU hash chain has no end bits: every chain runs to the last symbol."""
    obj = elf.open_elf(path)
    gnu = obj.dynamic_value(elf.DT_GNU_HASH)
    nbuckets, symoffset, bloom_size, _shift = struct.unpack("<IIII", obj.read_vaddr(gnu, 16))
    chain_at = gnu + 16 + 8 * bloom_size + 4 * nbuckets
    count = dynsym.table(obj).count
    data = bytearray(open(path, "rb").read())
    at = obj.vaddr_to_offset(chain_at, 4 * (count - symoffset))
    for k in range(count - symoffset - 1):
        value, = struct.unpack_from("<I", data, at + 4 * k)
        struct.pack_into("<I", data, at + 4 * k, value & ~1)
    out.write_bytes(bytes(data))
    return count


def test_gnu_table_without_end_bits_finds_what_the_walk_finds_at_the_cost_of_reading_it(tmp_path):
    """The postgres executable's table with every end bit cleared: each lookup would walk
    thousands of entries, 50 million for all its names (about 20 s)."""
    import time
    count = patch_gnu_end_bits(POSTGRES, tmp_path / "postgres")
    damaged = dynsym.table(elf.open_elf(str(tmp_path / "postgres")))
    names = [damaged.name(i) for i in range(damaged.first_hashed, count)]
    chain, symoffset = damaged.gnu[3], damaged.first_hashed
    start = time.process_time()
    found = {name: damaged.find(name) for name in names}
    elapsed = time.process_time() - start
    for name in random.Random(3).sample(names, 200):
        h = hashing.gnu_hash_of(name)
        nbuckets, _s, buckets, _c = damaged.gnu
        i = buckets[h % nbuckets]
        expected = tuple(k for k in walk_gnu(chain, symoffset, count, i, h) if damaged.name(k) == name) \
            if i >= symoffset and hashing.bloom_admits(damaged.obj.bloom(), h) else ()
        assert found[name] == expected
    # Walking costs about count / 2 entries per name; the index, a few.
    assert elapsed < 2.0, f"{len(names)} lookups took {elapsed:.1f} s"


def test_gnu_hash_of_long_names_costs_their_length():
    """dl_new_hash() for names of many lengths, up to the longest pgdl reads
    (a damaged string table makes such names): equal to the plain loop, and
    each name costs its length, not its length times the powers of 33 again."""
    import time

    def plain(name: bytes) -> int:
        h = 5381
        for c in name:
            h = (h * 33 + c) & 0xFFFFFFFF
        return h

    rng = random.Random(9)
    names = [bytes(rng.randrange(1, 256) for _ in range(n)) for n in range(0, 300)]
    assert [hashing.gnu_hash(n) for n in names] == [plain(n) for n in names]
    long_names = [b"x" * (elf.MAX_NAME - k * 97) for k in range(300)]
    start = time.process_time()
    hashes = [hashing.gnu_hash(n) for n in long_names]
    assert time.process_time() - start < 1.0
    assert hashes[::50] == [plain(n) for n in long_names[::50]]
