"""glibc's /etc/ld.so.cache, read the way ld.so reads it (nothing is loaded).

Formats (glibc sysdeps/generic/dl-cache.h, elf/dl-cache.c, elf/cache.c):

* new: a 48-byte ``struct cache_file_new`` ("glibc-ld.so.cache" "1.1",
  nlibs, len_strings, flags, extension_offset) followed by nlibs 24-byte
  ``struct file_entry_new`` (flags, key, value, osversion, hwcap).  String
  indices are offsets from the start of that header.  This is all ldconfig
  writes since glibc 2.32.
* old: "ld.so-1.7.0", nlibs, then nlibs 12-byte ``struct file_entry``
  (flags, key, value); strings are offsets from the end of that array.
* combined: the old format, with the new header (and its entries) placed at
  ALIGN8(16 + 12*nlibs), i.e. at "string 0" of the old table.  ld.so then
  uses only the new part; if the new magic is absent it uses the old part.

The optional extension directory (new format, ``extension_offset`` from the
start of the file) carries tag 0: the generating glibc version, and tag 1:
an array of uint32 string indices (from the start of the file) naming the
glibc-hwcaps subdirectories; an entry whose hwcap field is
DL_CACHE_HWCAP_EXTENSION (bit 62, ignoring the low 32 bits and the ISA level
bits 32..41) has its low 32 bits index that array.

``parse`` raises LdCacheError exactly where ld.so would ignore the whole file
(and also where ld.so would read outside the file, which real ldconfig output
never does).  A malformed extension directory does not make ld.so ignore the
cache: it only disables the glibc-hwcaps entries, and that is what ``parse``
does too (see ``LdCache.extension_error``).
"""

from __future__ import annotations

import functools
import os
import stat
import struct
from collections.abc import Sequence

from ..record import Record, Value

__all__ = [
    "CacheEntry", "LdCache", "LdCacheError", "HostCaps", "parse", "load",
    "libcmp", "DEFAULT_ID_X86_64", "DEFAULT_ID_X32", "DEFAULT_ID_I386",
]

CACHEMAGIC = b"ld.so-1.7.0"
CACHEMAGIC_VERSION_NEW = b"glibc-ld.so.cache1.1"
OLD_HEADER_SIZE = 16          # sizeof (struct cache_file)
OLD_ENTRY_SIZE = 12           # sizeof (struct file_entry)
NEW_HEADER_SIZE = 48          # sizeof (struct cache_file_new)
NEW_ENTRY_SIZE = 24           # sizeof (struct file_entry_new)
CACHE_EXTENSION_MAGIC = (-358342284) & 0xFFFFFFFF
EXT_TAG_GENERATOR = 0
EXT_TAG_GLIBC_HWCAPS = 1
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

# x86 legacy hwcaps (sysdeps/x86/dl-hwcap.h, dl-procinfo.[ch]).
HWCAP_X86_SSE2 = 1 << 0
HWCAP_X86_64 = 1 << 1
HWCAP_X86_AVX512_1 = 1 << 2
_DL_FIRST_PLATFORM = 48
_X86_PLATFORMS = ("i586", "i686", "haswell", "xeon_phi")
# GNU_PROPERTY_X86_ISA_1_* bits: baseline, v2, v3, v4.
ISA_1_BASELINE, ISA_1_V2, ISA_1_V3, ISA_1_V4 = 1, 2, 4, 8
_X86_64_HWCAPS_SUBDIRS = ("x86-64-v4", "x86-64-v3", "x86-64-v2")


class LdCacheError(ValueError):
    """The cache file is unusable (ld.so would ignore it), or unreadable."""


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


class HostCaps(Value):
    """What one process's ld.so uses to filter cache entries.

    hwcap/hwcap_mask/platform: GLRO(dl_hwcap), glibc.cpu.hwcap_mask and
    GLRO(dl_platform) (legacy hwcaps, still honoured by 2.36's cache lookup).
    isa_1: the CPU's GNU_PROPERTY_X86_ISA_1 bits (cpu_features->isa_1).
    hwcaps: glibc-hwcaps subdirectory names in preference order, i.e.
    --glibc-hwcaps-prepend names followed by the active built-in ones.
    """
    __slots__ = ("hwcap", "hwcap_mask", "platform", "isa_1", "hwcaps")

    def __init__(self, hwcap: int = HWCAP_X86_64, hwcap_mask: int = HWCAP_X86_64 | HWCAP_X86_AVX512_1,
                 platform: str | None = None, isa_1: int = ISA_1_BASELINE, hwcaps: tuple[str, ...] = ()):
        self.hwcap = hwcap
        self.hwcap_mask = hwcap_mask
        self.platform = platform
        self.isa_1 = isa_1
        self.hwcaps = hwcaps

    @staticmethod
    def x86_64(isa_1: int, *, intel: bool = False, avx512_1: bool = False,
               haswell: bool = False, prepend: Sequence[str] = ()) -> "HostCaps":
        """An x86-64 process, as cpu_features.c and dl-hwcaps-subdirs.c set it up."""
        hwcap = HWCAP_X86_64
        platform = None
        if intel:
            if avx512_1:
                hwcap |= HWCAP_X86_AVX512_1
            if haswell:
                platform = "haswell"
        active = []
        for bit, name in ((ISA_1_V2, "x86-64-v2"), (ISA_1_V3, "x86-64-v3"), (ISA_1_V4, "x86-64-v4")):
            if not isa_1 & bit:
                break
            active.append(name)
        active.reverse()                       # preference order: v4, v3, v2
        return HostCaps(hwcap=hwcap, hwcap_mask=HWCAP_X86_64 | HWCAP_X86_AVX512_1,
                        platform=platform, isa_1=isa_1, hwcaps=tuple(prepend) + tuple(active))

    @staticmethod
    def i386(*, sse2: bool = True, platform: str | None = "i686") -> "HostCaps":
        """An i386 process: no glibc-hwcaps subdirectories (generic list is empty)."""
        return HostCaps(hwcap=HWCAP_X86_SSE2 if sse2 else 0, hwcap_mask=HWCAP_X86_SSE2,
                        platform=platform, isa_1=0, hwcaps=())


def _cpuinfo_flags(text: str) -> tuple[set[str], str]:
    flags: set[str] = set()
    vendor = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "flags" and not flags:
            flags = set(value.split())
        elif key == "vendor_id" and not vendor:
            vendor = value.strip()
    return flags, vendor


def host_caps_from_cpuinfo(text: str) -> HostCaps:
    """HostCaps of an x86-64 process on the CPU that /proc/cpuinfo describes.

    Mirrors sysdeps/x86/get-isa-level.h (glibc 2.36).  GLIBC_TUNABLES that
    mask CPU features are not taken into account.
    """
    f, vendor = _cpuinfo_flags(text)
    isa = 0
    if {"cmov", "cx8", "fpu", "fxsr", "mmx", "sse", "sse2"} <= f:
        isa |= ISA_1_BASELINE
        # SSE3 is "pni", LAHF64_SAHF64 "lahf_lm".
        if {"cx16", "lahf_lm", "popcnt", "pni", "ssse3", "sse4_1", "sse4_2"} <= f:
            isa |= ISA_1_V2
            # LZCNT is reported as "abm"; the kernel hides "avx" when the OS
            # cannot save AVX state, so "usable" is approximated by presence.
            if {"avx", "avx2", "f16c", "fma", "abm", "movbe"} <= f:
                isa |= ISA_1_V3
                if {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= f:
                    isa |= ISA_1_V4
    intel = vendor == "GenuineIntel"
    avx512_1 = {"avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= f and "avx512er" not in f
    haswell = {"avx2", "fma", "bmi1", "bmi2", "abm", "movbe", "popcnt"} <= f and not (
        "avx512cd" in f and "avx512er" in f and "avx512pf" in f)
    return HostCaps.x86_64(isa, intel=intel, avx512_1=avx512_1, haswell=haswell)


@functools.lru_cache(maxsize=1)
def detect_host_caps() -> HostCaps:
    """HostCaps of an x86-64 process on this machine (from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            return host_caps_from_cpuinfo(fh.read(1 << 20))
    except OSError:
        return HostCaps.x86_64(ISA_1_BASELINE)


class _Raw(Record):
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

    def __init__(self, format: str, data: bytes, strbase: int, strsize: int, raw: list[_Raw],
                 entry_size: int):
        self.format = format                         # "new", "old" or "old+new"
        self.generator: str | None = None            # extension tag 0 text
        self.hwcaps_subdirs: list[str | None] = []   # extension tag 1
        self.extension_error: str | None = None      # set if ld.so would ignore the extensions
        self._data = data
        self._strbase = strbase                      # string table start
        self._strsize = strsize                      # glibc's string_table_size
        self._raw = raw
        self._entry_size = entry_size
        self._hwcaps_index: list[int] = []
        self._answers: dict = {}                     # lookup() results
        self._paths: dict | None = None              # paths_of() index
        self._entries: list[CacheEntry] | None = None
        self._hwcaps_names: dict[int, str] = {}

    @property
    def entries(self) -> list[CacheEntry]:
        """Every entry, in file order (decoded on first use: lookups do not need them)."""
        if self._entries is None:
            self._entries = _entries(self, self._hwcaps_names)
        return self._entries

    def lookup(self, soname: str, *, elf_class: int = 64, machine_flags: int | None = None,
               host: HostCaps | None = None) -> str | None:
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
        key = (soname, machine_flags, host)
        if key not in self._answers:
            name = os.fsencode(soname).split(b"\0", 1)[0]
            self._answers[key] = self._search(name, machine_flags, accepted, host)
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
        return _cstr(self._data, self._strbase + index)

    def _search(self, name: bytes, default_id: int, accepted: tuple[int, ...],
                host: HostCaps) -> str | None:
        raw = self._raw
        strsize = self._strsize
        new = self._entry_size >= NEW_ENTRY_SIZE
        platform_bits = _x86_platform_bit(host.platform)
        hwcap_exclude = ~((host.hwcap & host.hwcap_mask) | _x86_platform_mask() | _DL_HWCAP_TLS_MASK) & _U64
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
                            named = _is_hwcap_extension(lib.hwcap)
                            if named and not _isa_level_compatible(lib.hwcap, host.isa_1):
                                take = False
                            elif not named and best is not None:
                                break
                            elif not named and lib.hwcap & hwcap_exclude:
                                take = False
                            elif (lib.hwcap & _x86_platform_mask()) and \
                                    (lib.hwcap & _x86_platform_mask()) != platform_bits:
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
                lname = _cstr(self._data, left[li])
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


def _x86_platform_mask() -> int:
    return ((1 << len(_X86_PLATFORMS)) - 1) << _DL_FIRST_PLATFORM


def _x86_platform_bit(platform: str | None) -> int:
    # _dl_string_platform (x86-64: only "haswell" and "xeon_phi" are known);
    # an unknown platform gives (uint64_t) -1, which no entry matches.
    if platform in _X86_PLATFORMS:
        return 1 << (_DL_FIRST_PLATFORM + _X86_PLATFORMS.index(platform))
    return _U64


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


def _cstr(data: bytes, start: int) -> bytes:
    if start >= len(data):
        return b""
    end = data.find(b"\0", start)
    return data[start:] if end < 0 else data[start:end]


def _endian_ok(flags: int) -> bool:
    # cache_file_new_matches_endian: 0 (unset) or little endian (2).
    return flags == 0 or (flags & 3) == 2


def parse(data: bytes) -> LdCache:
    """Parse the bytes of an ld.so.cache file (see the module docstring)."""
    data = bytes(data)
    size = len(data)
    if size > NEW_HEADER_SIZE and data.startswith(CACHEMAGIC_VERSION_NEW):
        nlibs = struct.unpack_from("<I", data, 20)[0]
        if (size - NEW_HEADER_SIZE) // NEW_ENTRY_SIZE < nlibs:
            raise LdCacheError(f"ld.so.cache: {nlibs} entries do not fit in {size} bytes")
        return _parse_new(data, 0, nlibs, "new")
    if size > OLD_HEADER_SIZE and data.startswith(CACHEMAGIC):
        nlibs = struct.unpack_from("<I", data, 12)[0]
        if (size - OLD_HEADER_SIZE) // OLD_ENTRY_SIZE < nlibs:
            raise LdCacheError(f"ld.so.cache: {nlibs} old-format entries do not fit in {size} bytes")
        offset = (OLD_HEADER_SIZE + nlibs * OLD_ENTRY_SIZE + 7) & ~7
        if size >= offset + NEW_HEADER_SIZE and data.startswith(CACHEMAGIC_VERSION_NEW, offset):
            nnew = struct.unpack_from("<I", data, offset + 20)[0]
            # ld.so does not check this count; reading past the file is not an option here.
            if (size - offset - NEW_HEADER_SIZE) // NEW_ENTRY_SIZE < nnew:
                raise LdCacheError(f"ld.so.cache: {nnew} entries do not fit after offset {offset}")
            return _parse_new(data, offset, nnew, "old+new")
        strbase = OLD_HEADER_SIZE + nlibs * OLD_ENTRY_SIZE
        raws = []
        for i in range(nlibs):
            flags, key, value = struct.unpack_from("<iII", data, OLD_HEADER_SIZE + i * OLD_ENTRY_SIZE)
            raws.append(_Raw(flags, key, value, 0))
        return LdCache("old", data, strbase, size - strbase, raws, OLD_ENTRY_SIZE)
    if size <= NEW_HEADER_SIZE and data.startswith(CACHEMAGIC_VERSION_NEW):
        raise LdCacheError(f"ld.so.cache: file too short ({size} bytes) for its header")
    raise LdCacheError("ld.so.cache: no valid cache magic (neither 'glibc-ld.so.cache1.1' nor 'ld.so-1.7.0')")


def _parse_new(data: bytes, base: int, nlibs: int, fmt: str) -> LdCache:
    size = len(data)
    hflags = data[base + 28]
    if not _endian_ok(hflags):
        raise LdCacheError(f"ld.so.cache: wrong or invalid endianness (flags {hflags:#x})")
    ext_offset = struct.unpack_from("<I", data, base + 32)[0]
    raws = []
    for i in range(nlibs):
        flags, key, value, _osv, hwcap = struct.unpack_from(
            "<iIIIQ", data, base + NEW_HEADER_SIZE + i * NEW_ENTRY_SIZE)
        raws.append(_Raw(flags, key, value, hwcap))
    # ld.so passes the whole file size as the (inexact) string table size.
    cache = LdCache(fmt, data, base, size, raws, NEW_ENTRY_SIZE)
    sections, err = _load_extensions(data, ext_offset)
    cache.extension_error = err
    if err is None:
        gen = sections.get(EXT_TAG_GENERATOR)
        if gen is not None:
            cache.generator = data[gen[0]:gen[0] + gen[1]].decode("utf-8", "replace")
        hw = sections.get(EXT_TAG_GLIBC_HWCAPS)
        if hw is not None:
            off, length = hw
            cache._hwcaps_index = list(struct.unpack_from(f"<{length // 4}I", data, off))
            cache.hwcaps_subdirs = [os.fsdecode(_cstr(data, i)) if i < size else None
                                    for i in cache._hwcaps_index]
    cache._hwcaps_names = {i: s for i, s in enumerate(cache.hwcaps_subdirs) if s is not None}
    return cache


def _load_extensions(data: bytes, ext_offset: int) -> tuple[dict[int, tuple[int, int]], str | None]:
    """cache_extension_load + cache_extension_verify; offsets from file start."""
    size = len(data)
    if ext_offset == 0:
        return {}, None
    if ext_offset % 4:
        return {}, "extension offset is misaligned"
    if ext_offset + 8 > size:
        return {}, "extension directory extends beyond the end of the file"
    magic, count = struct.unpack_from("<II", data, ext_offset)
    if magic != CACHE_EXTENSION_MAGIC:
        return {}, "bad extension magic"
    if ext_offset + 8 + count * 16 > size:
        return {}, "extension array extends beyond the end of the file"
    sections: dict[int, tuple[int, int]] = {}
    for i in range(count):
        tag, _flags, off, length = struct.unpack_from("<IIII", data, ext_offset + 8 + 16 * i)
        if off + length > 0xFFFFFFFF or off + length > size:
            # glibc's __builtin_add_overflow is on a size_t, so only size matters on 64-bit.
            return {}, f"extension section {i} extends beyond the end of the file"
        if tag >= 2:
            continue
        sections[tag] = (off, length)      # a later section with the same tag wins
    hw = sections.get(EXT_TAG_GLIBC_HWCAPS)
    if hw is not None and (hw[1] == 0 or hw[0] % 4 or hw[1] % 4):
        del sections[EXT_TAG_GLIBC_HWCAPS]
    return sections, None


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


def load(path: str = "/etc/ld.so.cache", max_bytes: int = 64 * 1024 * 1024) -> LdCache:
    """Read and parse a cache file; only regular files of at most max_bytes."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise LdCacheError(f"{path}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise LdCacheError(f"{path}: not a regular file")
    if st.st_size > max_bytes:
        raise LdCacheError(f"{path}: {st.st_size} bytes is more than the limit of {max_bytes}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise LdCacheError(f"{path}: {exc.strerror}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):   # swapped since the stat
            raise LdCacheError(f"{path}: not a regular file")
        chunks, total = [], 0
        while total < max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total >= max_bytes and os.fstat(fd).st_size > max_bytes:   # grew meanwhile
            raise LdCacheError(f"{path}: more than the limit of {max_bytes} bytes")
    except OSError as exc:
        raise LdCacheError(f"{path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return parse(b"".join(chunks))
