"""An object's dynamic symbol table, read in bulk and searched as ld.so searches it.

A backend checks thousands of references against tens of thousands of
definitions, so nothing here makes one Python object per symbol: the table
is read once as bytes and viewed column by column (st_name, st_info, ...),
names are decoded only when asked for, and a name is found through the
object's own hash table (DT_GNU_HASH, else DT_HASH), as do_lookup_x() finds
it: the Bloom filter turns most objects away after a few integer operations.

Every offset comes from a possibly hostile file: bad ones raise ElfError.
"""

from __future__ import annotations

import bisect
import operator
import struct
import sys
from array import array
from functools import lru_cache
from itertools import repeat

from .. import interrupts
from .objects import (DT_GNU_HASH, DT_HASH, DT_STRSZ, DT_SYMTAB, DT_VERSYM, MAX_NAME, MAX_SYMBOLS,
                  SHN_UNDEF, STB_LOCAL, STV_DEFAULT, STV_PROTECTED, VER_NDX_GLOBAL, VERSYM_HIDDEN, ElfError,
                  ElfObject, PagedStrings, Symbol, cstring, string_table)


class DynSym:
    """The .dynsym entries of one object, index 0 included (it is the null symbol)."""

    def __init__(self, obj: ElfObject):
        self.obj = obj
        self.count = 0
        self.first_hashed = 0           # GNU hash: entries below symoffset cannot be found
        self._strtab: bytes | PagedStrings = b""
        self._gnu = None                # (nbuckets, symoffset, buckets, chain)
        self._bloom = None              # read_bloom()
        self._sysv = None               # (nbucket, buckets, chains)
        self._names: dict[int, str] = {}
        self._wanted_versions: dict[int, str] | None = None
        self._runs: _GnuRuns | None = None       # damaged tables only
        self._reach: _SysvReach | None = None
        self._by_name: dict[str, list[int]] = {}
        self._read_hash_table()
        if self.count > MAX_SYMBOLS:
            raise ElfError(f"absurd symbol count ({self.count})")
        symtab = obj.dynamic_value(DT_SYMTAB)
        if symtab is None or self.count <= 1:
            self.count = 0
            self._columns(b"")
            return
        strsz = obj.dynamic_value(DT_STRSZ) or 0
        # Most tables are read whole; libLLVM's is 3 MB, of which a few names are used.
        self._strtab = string_table(obj) if strsz <= PAGED_STRINGS else PagedStrings(obj)
        entsize = 24 if obj.elf_class == 64 else 16
        self._columns(obj.read_vaddr(symtab, self.count * entsize))
        versym_addr = obj.dynamic_value(DT_VERSYM)
        self.versym = None
        if versym_addr is not None:
            self.versym = column(obj, obj.read_vaddr(versym_addr, 2 * self.count), "H", 0, 1)
        self._version_names = obj.version_names()
        self._version_files = obj.version_files()

    # -- columns -------------------------------------------------------------

    def _columns(self, raw: bytes) -> None:
        obj = self.obj
        self.versym = None
        if obj.elf_class == 64:      # Elf64_Sym: name I, info B, other B, shndx H, value Q, size Q
            self.st_name = column(obj, raw, "I", 0, 6)
            self.st_info, self.st_other = raw[4::24], raw[5::24]
            self.st_shndx = column(obj, raw, "H", 3, 12)
            self.st_value = column(obj, raw, "Q", 1, 3)
            self.st_size = column(obj, raw, "Q", 2, 3)
        else:                        # Elf32_Sym: name I, value I, size I, info B, other B, shndx H
            self.st_name = column(obj, raw, "I", 0, 4)
            self.st_value = column(obj, raw, "I", 1, 4)
            self.st_size = column(obj, raw, "I", 2, 4)
            self.st_info, self.st_other = raw[12::16], raw[13::16]
            self.st_shndx = column(obj, raw, "H", 7, 8)

    # -- one entry -------------------------------------------------------------

    def name(self, i: int) -> str:
        """The name of entry i, remembered (hash chains compare the same entries often)."""
        name = self._names.get(i)
        if name is None:
            name = self._names[i] = self.read_name(i)
        return name

    def read_name(self, i: int) -> str:
        offset = self.st_name[i]
        if isinstance(self._strtab, PagedStrings):
            return self._strtab.string(offset)
        return cstring(self._strtab, offset)

    def names_of(self, indexes: list[int]) -> list[str | None]:
        """read_name() of many entries at once (None where a name is unreadable)."""
        table = self._strtab
        if not isinstance(table, bytes):
            return [self._name_or_none(i) for i in indexes]
        find, size, names = table.find, len(table), []
        for offset in map(self.st_name.__getitem__, indexes):
            end = find(b"\0", offset, offset + MAX_NAME + 1) if offset < size else -1
            names.append(table[offset:end].decode("utf-8", "surrogateescape") if end >= 0 else None)
        return names

    def _name_or_none(self, i: int) -> str | None:
        try:
            return self.read_name(i)
        except (ElfError, OSError):
            return None

    def versions_of(self, indexes: list[int]) -> tuple[list[str | None], list[str | None]]:
        """(version names, VERNEED files) of many entries at once, as version() gives them."""
        if self.versym is None:
            return [None] * len(indexes), [None] * len(indexes)
        if self._wanted_versions is None:
            self._wanted_versions = {k: v for k, v in self._version_names.items() if k > VER_NDX_GLOBAL}
        ndx = list(map(operator.and_, map(self.versym.__getitem__, indexes), repeat(0x7FFF)))
        return list(map(self._wanted_versions.get, ndx)), list(map(self._version_files.get, ndx))

    def version(self, i: int) -> tuple[str | None, bool, str | None]:
        """(version name, hidden bit, VERNEED file) of entry i; no name for indexes 0 and 1."""
        if self.versym is None:
            return None, False, None
        ndx = self.versym[i]
        hidden = bool(ndx & VERSYM_HIDDEN)
        ndx &= 0x7FFF
        if ndx <= VER_NDX_GLOBAL:
            return None, hidden, None
        return self._version_names.get(ndx), hidden, self._version_files.get(ndx)

    def symbol(self, i: int) -> Symbol:
        info = self.st_info[i]
        version, hidden, file = self.version(i)
        return Symbol(self.name(i), self.st_value[i], self.st_size[i], info >> 4, info & 0xF,
                      self.st_other[i] & 0x3, self.st_shndx[i], version, hidden, file)

    def is_exported_definition(self, i: int) -> bool:
        return (self.st_shndx[i] != SHN_UNDEF and self.st_info[i] >> 4 != STB_LOCAL
                and self.st_other[i] & 0x3 in (STV_DEFAULT, STV_PROTECTED))

    # -- finding names -----------------------------------------------------------

    def find(self, name: str, gnu: int | None = None) -> tuple[int, ...]:
        """Indexes of the entries named `name` that do_lookup_x() reaches through the
        hash table, in index order (a GNU hash chain's order).  `gnu`: gnu_hash(name),
        if already known."""
        if self._gnu is not None:
            return self._gnu_find(name, gnu_hash_of(name) if gnu is None else gnu)
        if self._sysv is not None:
            return self._sysv_find(name)
        return ()

    def _read_hash_table(self) -> None:
        obj = self.obj
        gnu = obj.dynamic_value(DT_GNU_HASH)
        if gnu is not None:
            e = "<" if obj.little_endian else ">"
            nbuckets, symoffset, bloom_size, _shift = struct.unpack(e + "IIII", obj.read_vaddr(gnu, 16))
            if nbuckets > MAX_SYMBOLS or symoffset > MAX_SYMBOLS:
                raise ElfError("absurd GNU hash table")
            self._bloom = obj.bloom()
            buckets_at = gnu + 16 + bloom_size * (8 if obj.elf_class == 64 else 4)
            buckets = column(obj, obj.read_vaddr(buckets_at, 4 * nbuckets), "I", 0, 1)
            last = max(buckets, default=0)
            count = symoffset
            chain: list[int] | memoryview = []
            if last >= symoffset:
                # The chain of the last non-empty bucket ends at the last symbol.
                chain_at = buckets_at + 4 * nbuckets
                n = _chain_end(obj, chain_at, last - symoffset)
                count = symoffset + n + 1
                chain = column(obj, obj.read_vaddr(chain_at, 4 * (n + 1)), "I", 0, 1)
            self.count = count
            self.first_hashed = symoffset
            self._gnu = (nbuckets, symoffset, buckets, chain)
            return
        sysv = obj.dynamic_value(DT_HASH)
        if sysv is not None:
            e = "<" if obj.little_endian else ">"
            nbucket, nchain = struct.unpack(e + "II", obj.read_vaddr(sysv, 8))
            if nbucket > MAX_SYMBOLS or nchain > MAX_SYMBOLS:
                raise ElfError("absurd hash table")
            self.count = nchain
            if nbucket:
                buckets = column(obj, obj.read_vaddr(sysv + 8, 4 * nbucket), "I", 0, 1)
                chains = column(obj, obj.read_vaddr(sysv + 8 + 4 * nbucket, 4 * nchain), "I", 0, 1)
                self._sysv = (nbucket, buckets, chains)

    def _gnu_find(self, name: str, h: int) -> tuple[int, ...]:
        nbuckets, symoffset, buckets, chain = self._gnu
        if not nbuckets or not bloom_admits(self._bloom, h):
            return ()
        i = buckets[h % nbuckets]
        if i < symoffset:
            return ()
        out = []
        stop = min(symoffset + len(chain), self.count)
        last = min(stop, i + LONG_CHAIN)
        while i < last:
            value = chain[i - symoffset]
            if (value ^ h) >> 1 == 0 and self._name_is(i, name):
                out.append(i)
            if value & 1:
                return tuple(out)
            i += 1
        if i >= stop:
            return tuple(out)
        # A chain this long is a damaged table (the end bits cleared): walking it for
        # every name would cost symbols x lookups.  The same entries, from an index.
        if self._runs is None:
            self._runs = _GnuRuns(chain, symoffset, stop)
        return tuple(out) + tuple(k for k in self._runs.matches(i, h) if self._name_is(k, name))

    def _sysv_find(self, name: str) -> tuple[int, ...]:
        nbucket, buckets, chains = self._sysv
        start = i = buckets[elf_hash(name.encode("utf-8", "surrogateescape")) % nbucket]
        out = set()
        for _ in range(LONG_CHAIN):
            if not 0 < i < self.count:
                return tuple(sorted(out))
            if self._name_is(i, name):
                out.add(i)
            i = chains[i] if i < len(chains) else 0
        if not 0 < i < self.count:
            return tuple(sorted(out))
        # A damaged table (long chains, cycles): the entries reachable from the
        # bucket, from a reachability index built once, instead of a walk per name.
        if self._reach is None:
            self._reach = _SysvReach(chains, self.count)
            self._by_name = {}
            for k, n in enumerate(self.names_of(range(self.count))):
                if n is not None:
                    self._by_name.setdefault(n, []).append(k)
        reach = self._reach
        return tuple(k for k in self._by_name.get(name, ()) if k and reach.reaches(start, k))

    def _name_is(self, i: int, name: str) -> bool:
        try:
            return self.name(i) == name
        except ElfError:
            return False


LONG_CHAIN = 64          # hash chain entries walked one by one; real chains have a few


class _GnuRuns:
    """The entries of a damaged GNU hash chain array, by hash, run by run.

    A lookup from entry i walks i, i+1, ... up to the next entry whose end bit
    is set (or the last symbol): a run.  Each run is indexed once, by the hash
    bits each entry stores, so a lookup costs one dict access and a filter
    instead of a walk of the run: the whole table costs what reading it does."""

    def __init__(self, chain, symoffset: int, stop: int):
        self.symoffset, self.stop = symoffset, stop
        self.ends = [k + symoffset for k, value in enumerate(chain[:stop - symoffset]) if value & 1]
        self.chain = chain
        self.runs: dict[int, dict[int, list[int]]] = {}

    def matches(self, i: int, h: int) -> list[int]:
        """Entries from i to the end of its run whose stored hash is h's (low bit aside)."""
        j = bisect.bisect_left(self.ends, i)
        end = self.ends[j] if j < len(self.ends) else self.stop - 1
        run = self.runs.get(end)
        if run is None:
            first = self.ends[j - 1] + 1 if j else self.symoffset
            run = self.runs[end] = {}
            for k in range(first, end + 1):
                if not k & 0xFFFF:
                    interrupts.check()
                run.setdefault(self.chain[k - self.symoffset] >> 1, []).append(k)
        return [k for k in run.get(h >> 1, ()) if k >= i]


class _SysvReach:
    """Which entries a walk of a damaged SysV hash chain reaches from a bucket.

    The chain array makes each entry point to one next entry (0, or one past the
    symbols, ends a walk): a functional graph, whose walks end in a cycle or at
    an end.  Entry c is on the walk from s when c lies between s and the walk's
    cycle or end in the forest of walks, or on that cycle: decided with one
    depth-first numbering of the forest, built in time linear in the table."""

    def __init__(self, chains, count: int):
        n = count
        nxt = array("I", bytes(4 * n))
        for v in range(1, min(n, len(chains))):
            if 0 < chains[v] < n:
                nxt[v] = chains[v]
        cycle = array("I", bytes(4 * n))   # cycle number + 1 of entries on a cycle
        state = bytearray(n)               # 0 new, 1 on the current walk, 2 done
        cycles = 0
        for v in range(1, n):
            if state[v]:
                continue
            if not v & 0xFFFF:
                interrupts.check()
            walk = []
            while v and not state[v]:
                state[v] = 1
                walk.append(v)
                v = nxt[v]
            if v and state[v] == 1:        # the walk closed a cycle at v
                cycles += 1
                for u in walk[walk.index(v):]:
                    cycle[u] = cycles
            for u in walk:
                state[u] = 2
        # The forest: each entry off a cycle is a child of the entry it points to,
        # children listed contiguously (first[p] .. first[p + 1]).
        parents = array("I", nxt)
        for v in range(1, n):
            if cycle[v]:
                parents[v] = 0
        first = array("I", bytes(4 * (n + 1)))
        for p in parents:
            first[p + 1] += 1
        for p in range(n):
            first[p + 1] += first[p]
        kids, fill = array("I", bytes(4 * n)), array("I", first)
        for v in range(1, n):
            p = parents[v]
            if p:
                kids[fill[p]] = v
                fill[p] += 1
        self.tin, self.tout, self.root = array("I", bytes(4 * n)), array("I", bytes(4 * n)), array("I", bytes(4 * n))
        clock = 0
        for r in range(1, n):
            if parents[r]:
                continue                   # not a root: on a cycle, or ending its walk
            stack = [r]
            while stack:
                v = stack.pop()
                if v >= n:                 # leaving v - n
                    self.tout[v - n] = clock
                    continue
                clock += 1
                self.tin[v], self.root[v] = clock, r
                stack.append(v + n)
                stack.extend(kids[first[v]:first[v + 1]])
        self.cycle = cycle

    def reaches(self, s: int, c: int) -> bool:
        if not 0 < s < len(self.tin):
            return False
        if self.tin[c] <= self.tin[s] <= self.tout[c]:
            return True                 # c lies between s and its root
        root = self.root[s]
        return bool(self.cycle[root]) and self.cycle[c] == self.cycle[root]


def read_bloom(obj: ElfObject) -> tuple | None:
    """(words, index mask, shift, bits per word) of the object's GNU hash Bloom
    filter, read alone: most objects of a process are never searched further.
    None if the object has no GNU hash table (every name must then be looked up)."""
    gnu = obj.dynamic_value(DT_GNU_HASH)
    if gnu is None:
        return None
    e = "<" if obj.little_endian else ">"
    _nbuckets, _symoffset, bloom_size, shift = struct.unpack(e + "IIII", obj.read_vaddr(gnu, 16))
    if bloom_size > MAX_SYMBOLS:
        raise ElfError("absurd GNU hash table")
    word = 8 if obj.elf_class == 64 else 4
    words = column(obj, obj.read_vaddr(gnu + 16, bloom_size * word), "Q" if word == 8 else "I", 0, 1)
    return words, bloom_size - 1, shift, word * 8


def bloom_admits(bloom: tuple, h: int) -> bool:
    """do_lookup_x()'s Bloom test: False means the object cannot define a name of hash h.
    An empty filter admits nothing (glibc would read past it)."""
    words, mask, shift, bits = bloom
    if not words:
        return False
    word = words[(h // bits) & mask]             # glibc requires a power of two words
    return bool((word >> (h % bits)) & (word >> ((h >> shift) % bits)) & 1)


def _chain_end(obj: ElfObject, chain_at: int, n: int) -> int:
    """Index in the GNU chain array of the entry that ends the chain starting at n."""
    e = "<" if obj.little_endian else ">"
    while n <= MAX_SYMBOLS:
        try:
            raw = obj.read_vaddr(chain_at + 4 * n, 1024)
        except ElfError:                  # near the end of the segment: word by word
            raw = obj.read_vaddr(chain_at + 4 * n, 4)
        for k, (value,) in enumerate(struct.iter_unpack(e + "I", raw)):
            if value & 1:
                return n + k
        n += len(raw) // 4
    raise ElfError("unterminated GNU hash chain")


@lru_cache(maxsize=8192)
def gnu_hash_of(name: str) -> int:
    """gnu_hash() of a name; remembered, as the same names are looked up in many objects."""
    return gnu_hash(name.encode("utf-8", "surrogateescape"))


def gnu_hash(name: bytes) -> int:
    """dl_new_hash(): h = h * 33 + c from 5381, modulo 2**32.

    Evaluated as the polynomial it is, 5381 * 33**n + sum(c[i] * 33**(n-1-i)),
    so that the loop over the characters runs in C (C++ names are long)."""
    powers, base = _hash_powers(len(name))
    return (base + sum(map(operator.mul, name, powers))) & 0xFFFFFFFF


@lru_cache(maxsize=256)
def _hash_powers(n: int) -> tuple[tuple[int, ...], int]:
    """(33**(n-1), ..., 33**0) and 5381 * 33**n, modulo 2**32: slices of one
    table, grown as longer names come, so a name costs its length once."""
    while len(_POWERS) <= n:
        _POWERS.append(_POWERS[-1] * 33 & 0xFFFFFFFF)
    return tuple(_POWERS[n - 1::-1]) if n else (), 5381 * _POWERS[n] & 0xFFFFFFFF


_POWERS = [1]     # 33**k modulo 2**32


def elf_hash(name: bytes) -> int:
    h = 0
    for c in name:
        h = (h << 4) + c
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


_NATIVE = sys.byteorder == "little"
PAGED_STRINGS = 1 << 20       # bigger string tables are read page by page


def column(obj: ElfObject, raw: bytes, code: str, first: int, stride: int):
    """Every `stride`-th item of type `code` in raw, from item `first`: an indexable sequence."""
    size = struct.calcsize(code)
    usable = len(raw) - len(raw) % (size * stride) if stride > 1 else len(raw) - len(raw) % size
    if obj.little_endian == _NATIVE:
        return memoryview(raw[:usable]).cast(code)[first::stride]
    e = "<" if obj.little_endian else ">"
    return struct.unpack(f"{e}{usable // size}{code}", raw[:usable])[first::stride]
