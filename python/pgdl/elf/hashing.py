"""The hash functions and tables do_lookup_x() searches: gnu_hash (dl_new_hash),
the SysV elf_hash, the GNU Bloom filter, and indexes that keep a damaged
table (chains without end bits, cycles) from costing names x symbols."""

from __future__ import annotations

import bisect
import operator
import struct
from array import array
from functools import lru_cache

from .. import interrupts
from .format import DT_GNU_HASH, MAX_SYMBOLS, ElfError, column

LONG_CHAIN = 64          # hash chain entries walked one by one; real chains have a few


class GnuRuns:
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


class SysvReach:
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


def read_bloom(obj) -> tuple | None:
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


def chain_end(obj, chain_at: int, n: int) -> int:
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
