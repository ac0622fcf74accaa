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

import operator
import struct
from itertools import repeat

from .format import (DT_GNU_HASH, DT_HASH, DT_STRSZ, DT_SYMTAB, DT_VERSYM, MAX_SYMBOLS, SHN_UNDEF, STB_LOCAL,
                     STV_DEFAULT, STV_PROTECTED, VER_NDX_GLOBAL, VERSYM_HIDDEN, ElfError, Symbol, column)
from .hashing import LONG_CHAIN, GnuRuns, SysvReach, bloom_admits, chain_end, elf_hash, gnu_hash_of
from .objects import ElfObject
from .strings import MAX_NAME, PagedStrings, cstring, string_table


class DynSym:
    """The .dynsym entries of one object, index 0 included (it is the null symbol)."""

    def __init__(self, obj: ElfObject):
        self.obj = obj
        self.count = 0
        self.first_hashed = 0           # GNU hash: entries below symoffset cannot be found
        self.strings: bytes | PagedStrings = b""
        self.gnu = None                # (nbuckets, symoffset, buckets, chain)
        self._bloom = None              # read_bloom()
        self._sysv = None               # (nbucket, buckets, chains)
        self._names: dict[int, str] = {}
        self._wanted_versions: dict[int, str] | None = None
        self._runs: GnuRuns | None = None       # damaged tables only
        self._reach: SysvReach | None = None
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
        self.strings = string_table(obj) if strsz <= PAGED_STRINGS else PagedStrings(obj)
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
        if isinstance(self.strings, PagedStrings):
            return self.strings.string(offset)
        return cstring(self.strings, offset)

    def names_of(self, indexes: list[int]) -> list[str | None]:
        """read_name() of many entries at once (None where a name is unreadable)."""
        table = self.strings
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
        if self.gnu is not None:
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
                n = chain_end(obj, chain_at, last - symoffset)
                count = symoffset + n + 1
                chain = column(obj, obj.read_vaddr(chain_at, 4 * (n + 1)), "I", 0, 1)
            self.count = count
            self.first_hashed = symoffset
            self.gnu = (nbuckets, symoffset, buckets, chain)
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
        nbuckets, symoffset, buckets, chain = self.gnu
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
            self._runs = GnuRuns(chain, symoffset, stop)
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
            self._reach = SysvReach(chains, self.count)
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


PAGED_STRINGS = 1 << 20       # bigger string tables are read page by page


def table(obj: ElfObject) -> DynSym:
    """The object's dynamic symbol table, read on first use and kept on the object."""
    if obj.symbol_table is None:
        with obj.reading():
            obj.symbol_table = DynSym(obj)
    return obj.symbol_table


def forget(obj: ElfObject) -> None:
    """Drop the object's symbol table (read again if needed): for objects done with."""
    obj.symbol_table = None


def definition(obj: ElfObject, name: str) -> Symbol | None:
    """A global or weak definition of `name` exported by the object."""
    symbols = table(obj)
    for i in symbols.find(name):
        if symbols.is_exported_definition(i):
            return symbols.symbol(i)
    return None
