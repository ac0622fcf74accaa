"""What the CPU makes ld.so look for: legacy hwcaps bits and platform, the
x86-64 ISA level (glibc-hwcaps subdirectories, from glibc 2.33), as glibc
2.36 derives them (sysdeps/x86/dl-hwcap.h, get-isa-level.h, dl-hwcaps.c)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from ..elf import EM_X86_64
from ..record import Value
from .dst import PLATFORMS
from .release import HOST_DEFAULT, Rules

# x86 legacy hwcaps (sysdeps/x86/dl-hwcap.h, dl-procinfo.[ch]).
HWCAP_X86_SSE2 = 1 << 0


HWCAP_X86_64 = 1 << 1


HWCAP_X86_AVX512_1 = 1 << 2


DL_FIRST_PLATFORM = 48


X86_PLATFORMS = ("i586", "i686", "haswell", "xeon_phi")


# GNU_PROPERTY_X86_ISA_1_* bits: baseline, v2, v3, v4.
ISA_1_BASELINE, ISA_1_V2, ISA_1_V3, ISA_1_V4 = 1, 2, 4, 8


X86_64_HWCAPS_SUBDIRS = ("x86-64-v4", "x86-64-v3", "x86-64-v2")


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
        self.hwcap, self.hwcap_mask, self.platform = hwcap, hwcap_mask, platform
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



def capability_subdirs(machine: int = EM_X86_64, host: HostCaps | None = None, rules: Rules | None = None) -> list[str]:
    """The subdirectories open_path() tries in every directory, in order.

    glibc 2.36 _dl_important_hwcaps: the active glibc-hwcaps names (most
    capable first; from 2.33), then the legacy power set of the masked hwcap
    bit names, the platform and "tls" (components in reverse order, largest
    set first; gone from 2.37), ending with "" (the directory itself).
    """
    if machine != EM_X86_64:
        return [""]        # not modelled beyond the plain directory
    rules = rules or Rules(HOST_DEFAULT)
    host = host or detect_host_caps()
    subdirs = [f"glibc-hwcaps/{name}/" for name in host.hwcaps] if rules.glibc_hwcaps else []
    if not rules.legacy_hwcaps:
        return subdirs + [""]
    parts = []
    masked = host.hwcap & host.hwcap_mask
    for bit, name in ((0, "sse2"), (1, "x86_64"), (2, "avx512_1")):
        if masked >> bit & 1:
            parts.append(name)
    parts.append(host.platform or PLATFORMS[machine])
    parts.append("tls")
    count = len(parts)
    for i in range(1 << count):
        mask = (1 << count) - 1 - i
        chosen = [parts[k] for k in reversed(range(count)) if mask >> k & 1]
        subdirs.append("".join(p + "/" for p in chosen))
    return subdirs


_CAPS: dict[tuple, list[str]] = {}


def host_capability_subdirs(machine: int, rules: Rules) -> list[str]:
    """capability_subdirs() of this host: the CPU does not change under a backend."""
    key = (machine, rules.glibc_hwcaps, rules.legacy_hwcaps)
    if key not in _CAPS:
        _CAPS[key] = capability_subdirs(machine, rules=rules)
    return _CAPS[key]



def x86_platform_mask() -> int:
    return ((1 << len(X86_PLATFORMS)) - 1) << DL_FIRST_PLATFORM


def x86_platform_bit(platform: str | None) -> int:
    # _dl_string_platform (x86-64: only "haswell" and "xeon_phi" are known);
    # an unknown platform gives (uint64_t) -1, which no entry matches.
    if platform in X86_PLATFORMS:
        return 1 << (DL_FIRST_PLATFORM + X86_PLATFORMS.index(platform))
    return (1 << 64) - 1
