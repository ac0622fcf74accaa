"""glibc's /etc/ld.so.cache as ld.so searches it (elf/dl-cache.c
_dl_load_cache_lookup): entries by key in _dl_cache_libcmp order, filtered
by ELF class, legacy hwcaps, platform and glibc-hwcaps subdirectory.  The
file itself is read by pgdl.glibc.cachefile."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..record import Record, Value
from .hwcaps import HostCaps, detect_host_caps, x86_platform_bit, x86_platform_mask
from .release import HOST_DEFAULT, Rules

__all__ = [
    "CacheEntry", "LdCache",
    "libcmp", "DEFAULT_ID_X86_64", "DEFAULT_ID_X32", "DEFAULT_ID_I386",
]

DL_CACHE_HWCAP_EXTENSION = 1 << 62
DL_CACHE_HWCAP_ISA_LEVEL_MASK = (1 << 10) - 1
_DL_HWCAP_TLS_MASK = 1 << 63
_U64 = (1 << 64) - 1

# ldconfig's flag values (sysdeps/generic/ldconfig.h).
FLAG_TYPE_MASK = 0x00FF
FLAG_REQUIRED_MASK = 0xFF00
FLAG_ELF_LIBC6 = 0x0003
_TYPE_DESCR = {0: "libc4", 1: "ELF", 2: "libc5", 3: "libc6"}
# FLAG_REQUIRED_MASK value -> (ldconfig -p text, ELF class).  The class of
# an entry with no "required" bits is 32 (i386 on an x86 host, where ldconfig
# sets FLAG_X8664_LIB64 for every 64-bit object).  RISC-V flags carry only
# the float ABI, so their class is unknown.
_REQUIRED = {
    0x0000: ("", 32),
    0x0100: ("64bit", 64),            # FLAG_SPARC_LIB64
    0x0200: ("IA-64", 64),            # FLAG_IA64_LIB64
    0x0300: ("x86-64", 64),           # FLAG_X8664_LIB64
    0x0400: ("64bit", 64),            # FLAG_S390_LIB64
    0x0500: ("64bit", 64),            # FLAG_POWERPC_LIB64
    0x0600: ("N32", 32),              # FLAG_MIPS64_LIBN32
    0x0700: ("64bit", 64),            # FLAG_MIPS64_LIBN64
    0x0800: ("x32", 32),              # FLAG_X8664_LIBX32
    0x0900: ("hard-float", 32),       # FLAG_ARM_LIBHF
    0x0A00: ("AArch64", 64),          # FLAG_AARCH64_LIB64
    0x0B00: ("soft-float", 32),       # FLAG_ARM_LIBSF
    0x0C00: ("nan2008", 32),          # FLAG_MIPS_LIB32_NAN2008
    0x0D00: ("N32,nan2008", 32),      # FLAG_MIPS64_LIBN32_NAN2008
    0x0E00: ("64bit,nan2008", 64),    # FLAG_MIPS64_LIBN64_NAN2008
    0x0F00: ("soft-float", 0),        # FLAG_RISCV_FLOAT_ABI_SOFT
    0x1000: ("double-float", 0),      # FLAG_RISCV_FLOAT_ABI_DOUBLE
}

# _DL_CACHE_DEFAULT_ID of the x86 dynamic loaders (sysdeps/.../dl-cache.h).
DEFAULT_ID_X86_64 = 0x0303    # FLAG_X8664_LIB64 | FLAG_ELF_LIBC6
DEFAULT_ID_X32 = 0x0803       # FLAG_X8664_LIBX32 | FLAG_ELF_LIBC6
DEFAULT_ID_I386 = 0x0003      # generic: FLAG_ELF_LIBC6


class CacheEntry(Value):
    """One library entry of /etc/ld.so.cache."""
    __slots__ = ("name", "path", "flags", "elf_class", "machine", "hwcap", "hwcaps_subdir")

    def __init__(self, name: str, path: str, flags: int, elf_class: int, machine: str, hwcap: int,
                 hwcaps_subdir: str | None):
        self.name = name                    # soname key, e.g. "libpq.so.5"
        self.path = path                    # e.g. "/lib/x86_64-linux-gnu/libpq.so.5"
        self.flags = flags                  # raw flags (int32)
        self.elf_class = elf_class          # 32 or 64 (from flags), 0 if unknown
        self.machine = machine              # ldconfig -p's text after "libc6,": "x86-64", "x32", "" ...
        self.hwcap = hwcap                  # raw 64-bit hwcap field (0 in the old format)
        self.hwcaps_subdir = hwcaps_subdir  # glibc-hwcaps subdirectory name, e.g. "x86-64-v3"

    @property
    def hwcaps_extension(self) -> bool:
        """True if glibc treats this as a glibc-hwcaps ("named hwcap") entry."""
        return _is_hwcap_extension(self.hwcap)

    @property
    def isa_level(self) -> int:
        """ISA level index stored by ldconfig (0 baseline .. 3 x86-64-v4)."""
        return (self.hwcap >> 32) & DL_CACHE_HWCAP_ISA_LEVEL_MASK

    @property
    def ldconfig_label(self) -> str:
        """The text in parentheses on this entry's ``ldconfig -p`` line."""
        kind = _TYPE_DESCR.get(self.flags & FLAG_TYPE_MASK, "unknown")
        req = self.flags & FLAG_REQUIRED_MASK
        if req in _REQUIRED:
            text = _REQUIRED[req][0]
            label = kind + ("," + text if text else "")
        else:
            label = f"{kind},{req}"
        if self.hwcaps_subdir is not None:
            label += f', hwcap: "{self.hwcaps_subdir}"'
        elif self.hwcap != 0:
            label += f", hwcap: {self.hwcap:#018x}"
        return label

    def ldconfig_line(self) -> str:
        """This entry as ``ldconfig -p`` prints it (without the newline)."""
        return f"\t{self.name} ({self.ldconfig_label}) => {self.path}"


class RawEntry(Record):
    """An entry as stored: flags, string offsets, hwcap."""
    __slots__ = ("flags", "key", "value", "hwcap")

    def __init__(self, flags: int, key: int, value: int, hwcap: int):
        self.flags = flags
        self.key = key
        self.value = value
        self.hwcap = hwcap


class LdCache:
    """A parsed /etc/ld.so.cache, searched as ld.so searches it."""
    __slots__ = ("format", "generator", "hwcaps_subdirs", "extension_error", "_data", "_strbase",
                 "_strsize", "_raw", "_entry_size", "_hwcaps_index", "_answers", "_paths", "_entries",
                 "_hwcaps_names")

    def __init__(self, format: str, data: bytes, strbase: int, strsize: int, raw: list[RawEntry],
                 entry_size: int, generator: str | None = None, hwcaps_index: list[int] | None = None,
                 extension_error: str | None = None):
        self.format = format                         # "new", "old" or "old+new"
        self.generator = generator                   # extension tag 0 text
        self.extension_error = extension_error       # set if ld.so would ignore the extensions
        self._data = data
        self._strbase = strbase                      # string table start
        self._strsize = strsize                      # glibc's string_table_size
        self._raw = raw
        self._entry_size = entry_size
        self._hwcaps_index = hwcaps_index or []      # extension tag 1: string offsets
        size = len(data)
        self.hwcaps_subdirs: list[str | None] = [os.fsdecode(cstr(data, i)) if i < size else None
                                                 for i in self._hwcaps_index]
        self._hwcaps_names = {i: s for i, s in enumerate(self.hwcaps_subdirs) if s is not None}
        self._answers: dict = {}                     # lookup() results
        self._paths: dict | None = None              # paths_of() index
        self._entries: list[CacheEntry] | None = None

    @property
    def entries(self) -> list[CacheEntry]:
        """Every entry, in file order (decoded on first use: lookups do not need them)."""
        if self._entries is None:
            self._entries = _entries(self, self._hwcaps_names)
        return self._entries

    def lookup(self, soname: str, *, elf_class: int = 64, machine_flags: int | None = None,
               host: HostCaps | None = None, rules: Rules | None = None) -> str | None:
        """What _dl_load_cache_lookup(soname) returns in a process (glibc 2.33-2.36).

        elf_class/machine_flags select the process's ld.so: machine_flags is
        its _DL_CACHE_DEFAULT_ID (0x303 x86-64, the default for class 64;
        0x803 x32; 3 i386, the default for class 32).  x86-64 and x32 accept
        only entries with exactly those flags; the generic (i386) check also
        accepts flags 1 but keeps looking for a flags-3 entry.  host defaults
        to this machine's CPU for x86-64 and to HostCaps.i386() otherwise.

        glibc (elf/dl-cache.c search_cache): binary search by _dl_cache_libcmp
        for the first entry with this key, then walk the run of equal keys.
        ldconfig sorts glibc-hwcaps entries before the others within a run.
        A glibc-hwcaps entry is usable if its ISA level is supported by the
        CPU and its subdirectory is among the process's active/prepended
        hwcaps; among usable ones the most preferred (lowest priority number,
        e.g. x86-64-v4 before v3 before v2) wins, and once a non-hwcaps entry
        is reached after any usable hwcaps entry, that best one is returned.
        Otherwise the first non-hwcaps entry with acceptable flags, no
        excluded legacy hwcap bits and a matching (or no) platform is taken.
        """
        if machine_flags is None:
            if elf_class == 64:
                machine_flags = DEFAULT_ID_X86_64
            elif elf_class == 32:
                machine_flags = DEFAULT_ID_I386
            else:
                raise ValueError(f"elf_class must be 32 or 64, not {elf_class!r}")
        if host is None:
            host = detect_host_caps() if machine_flags == DEFAULT_ID_X86_64 else HostCaps.i386()
        if machine_flags == DEFAULT_ID_I386:
            accepted = (1, DEFAULT_ID_I386)
        else:
            accepted = (machine_flags,)
        rules = rules or Rules(HOST_DEFAULT)
        key = (soname, machine_flags, host, rules.glibc_hwcaps, rules.cache_legacy_hwcaps)
        if key not in self._answers:
            name = os.fsencode(soname).split(b"\0", 1)[0]
            self._answers[key] = self._search(name, machine_flags, accepted, host, rules)
        return self._answers[key]

    def paths_of(self, soname: str) -> list[str]:
        """Every path the cache lists for this name, in file order (any class or flags)."""
        if self._paths is None:
            self._paths = {}
            for entry in self.entries:
                self._paths.setdefault(entry.name, []).append(entry.path)
        return self._paths.get(soname, [])

    # -- glibc's search_cache -------------------------------------------------

    def _str(self, index: int) -> bytes:
        return cstr(self._data, self._strbase + index)

    def _search(self, name: bytes, default_id: int, accepted: tuple[int, ...],
                host: HostCaps, rules: Rules) -> str | None:
        raw = self._raw
        strsize = self._strsize
        new = self._entry_size >= 24         # sizeof (struct file_entry_new): the new format
        platform_bits = x86_platform_bit(host.platform)
        hwcap_exclude = ~((host.hwcap & host.hwcap_mask) | x86_platform_mask() | _DL_HWCAP_TLS_MASK) & _U64
        priorities: list[int] | None = None

        left, right = 0, len(raw) - 1
        best: int | None = None
        best_priority = 0
        while left <= right:
            middle = (left + right) // 2
            key = raw[middle].key
            if key >= strsize:
                return None
            cmpres = libcmp(name, self._str(key))
            if cmpres == 0:
                left = middle
                while middle > 0:
                    key = raw[middle - 1].key
                    if key >= strsize or libcmp(name, self._str(key)) != 0:
                        break
                    middle -= 1
                while True:
                    lib = raw[middle]
                    if middle > left and (lib.key >= strsize or libcmp(name, self._str(lib.key)) != 0):
                        break
                    take = False
                    named = False
                    if lib.flags in accepted and lib.value < strsize:
                        take = True
                        if new:
                            # glibc-hwcaps entries are known from 2.33 (before, their high
                            # bits are excluded like any unknown legacy bit).
                            named = rules.glibc_hwcaps and _is_hwcap_extension(lib.hwcap)
                            if named and not _isa_level_compatible(lib.hwcap, host.isa_1):
                                take = False
                            elif not named and best is not None:
                                break
                            elif not named and not rules.cache_legacy_hwcaps and lib.hwcap:
                                take = False        # 2.40: legacy hwcaps entries are skipped
                            elif not named and lib.hwcap & hwcap_exclude:
                                take = False
                            elif (lib.hwcap & x86_platform_mask()) and \
                                    (lib.hwcap & x86_platform_mask()) != platform_bits:
                                take = False
                            elif named:
                                if priorities is None:
                                    priorities = self._priorities(host.hwcaps)
                                idx = lib.hwcap & 0xFFFFFFFF
                                prio = priorities[idx] if idx < len(priorities) else 0
                                if prio == 0:
                                    take = False
                                elif best is None or prio < best_priority:
                                    best_priority = prio
                                else:
                                    take = False
                        if take:
                            best = lib.value
                            if not named and lib.flags == default_id:
                                break
                    middle += 1
                    if middle > right:
                        break
                break
            if cmpres < 0:
                left = middle + 1
            else:
                right = middle - 1
        if best is None:
            return None
        return os.fsdecode(self._str(best))

    def _priorities(self, hwcaps: Sequence[str]) -> list[int]:
        """glibc_hwcaps_priorities_init: merge two name-sorted lists."""
        if self.extension_error is not None:
            return []
        right = sorted(((os.fsencode(n), i + 1) for i, n in enumerate(hwcaps)), key=lambda p: p[0])
        # sort_priorities_by_name is a stable insertion sort: equal names keep order.
        result = []
        li, ri = 0, 0
        left = self._hwcaps_index
        while li < len(left) and ri < len(right):
            if left[li] < len(self._data):
                lname = cstr(self._data, left[li])
                rname = right[ri][0]
                if lname == rname:
                    result.append(right[ri][1])
                    li += 1
                    ri += 1
                elif lname < rname:
                    result.append(0)
                    li += 1
                else:
                    ri += 1
            else:
                # glibc writes 0 here without advancing (a bug on hostile input).
                result.append(0)
                li += 1
        result.extend([0] * (len(left) - li))
        return result


def _is_hwcap_extension(hwcap: int) -> bool:
    return ((hwcap >> 32) & ~DL_CACHE_HWCAP_ISA_LEVEL_MASK & 0xFFFFFFFF) == (DL_CACHE_HWCAP_EXTENSION >> 32)


def _isa_level_compatible(hwcap: int, isa_1: int) -> bool:
    level = 1 << ((hwcap >> 32) & DL_CACHE_HWCAP_ISA_LEVEL_MASK)
    return (level & isa_1) == level


def _signed8(c: int) -> int:
    return c - 256 if c >= 128 else c


def _wrap32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= (1 << 31) else v


def libcmp(p1: bytes, p2: bytes) -> int:
    """glibc's _dl_cache_libcmp: digit runs compare numerically (C int, x86 char)."""
    if p1 == p2:
        return 0
    n1, n2 = len(p1), len(p2)
    # Up to their first difference the names walk in step, and so compare
    # equal: start there, or at the start of the digit run it falls in.  The
    # first differing byte is the highest one set in the XOR of the two.
    n = min(n1, n2)
    i = n - ((int.from_bytes(p1[:n], "big") ^ int.from_bytes(p2[:n], "big")).bit_length() + 7) // 8
    while i > 0 and 0x30 <= p1[i - 1] <= 0x39:
        i -= 1
    j = i

    def at(s: bytes, k: int, n: int) -> int:
        return s[k] if k < n else 0

    while at(p1, i, n1) != 0:
        c1, c2 = at(p1, i, n1), at(p2, j, n2)
        if 0x30 <= c1 <= 0x39:
            if 0x30 <= c2 <= 0x39:
                v1 = c1 - 0x30
                v2 = c2 - 0x30
                i += 1
                j += 1
                while 0x30 <= at(p1, i, n1) <= 0x39:
                    v1 = _wrap32(v1 * 10 + at(p1, i, n1) - 0x30)
                    i += 1
                while 0x30 <= at(p2, j, n2) <= 0x39:
                    v2 = _wrap32(v2 * 10 + at(p2, j, n2) - 0x30)
                    j += 1
                if v1 != v2:
                    return _wrap32(v1 - v2)
            else:
                return 1
        elif 0x30 <= c2 <= 0x39:
            return -1
        elif c1 != c2:
            return _signed8(c1) - _signed8(c2)
        else:
            i += 1
            j += 1
    return _signed8(at(p1, i, n1)) - _signed8(at(p2, j, n2))


def cstr(data: bytes, start: int) -> bytes:
    if start >= len(data):
        return b""
    end = data.find(b"\0", start)
    return data[start:] if end < 0 else data[start:end]


def _entries(cache: LdCache, hwcaps_names: dict[int, str]) -> list[CacheEntry]:
    out = []
    for r in cache._raw:
        name_b = cache._str(r.key) if r.key < cache._strsize else None
        path_b = cache._str(r.value) if r.value < cache._strsize else None
        if name_b is None or path_b is None:
            continue  # ld.so never returns such an entry
        req = r.flags & FLAG_REQUIRED_MASK
        machine, elf_class = _REQUIRED.get(req, (str(req), 0))
        if r.flags & FLAG_TYPE_MASK == 0 and req == 0:
            elf_class = 0          # libc4 (a.out)
        subdir = None
        if _is_hwcap_extension(r.hwcap):
            subdir = hwcaps_names.get(r.hwcap & 0xFFFFFFFF)
        out.append(CacheEntry(name=os.fsdecode(name_b), path=os.fsdecode(path_b), flags=r.flags,
                              elf_class=elf_class, machine=machine, hwcap=r.hwcap,
                              hwcaps_subdir=subdir))
    return out

