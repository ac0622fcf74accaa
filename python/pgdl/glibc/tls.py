"""Static TLS, as glibc 2.36 hands it out on x86-64 (TLS_TCB_AT_TP).

At startup, elf/dl-tls.c _dl_determine_tlsoffset() places the TLS blocks of
the executable and what ld.so mapped with it, and sizes the static TLS area
with a surplus for later dlopen()s: (nns - 1) * 144 + nns * 144 + 512 + 144
bytes (_dl_tls_static_surplus_init: LIBC_IE_TLS, OTHER_IE_TLS, the tunables
glibc.rtld.nns = 4 and glibc.rtld.optional_static_tls = 512, LEGACY_TLS),
rounded up to the largest TLS alignment.  A dlopen()ed object whose
initial-exec TLS is relocated with R_X86_64_TPOFF64 must get its block from
what is left (dl-reloc.c CHECK_STATIC_TLS -> _dl_try_allocate_static_tls),
or dlopen() fails with "<object>: cannot allocate memory in static TLS block".
DF_STATIC_TLS itself is not looked at (2.36).
"""

from __future__ import annotations

import functools
import struct

from ..record import Record
from .tunables import tunable

TCB_ALIGNMENT = 64
LIBC_IE_TLS = OTHER_IE_TLS = LEGACY_TLS = 144
DEFAULT_NNS, DL_NNS, OPTIONAL_TLS = 4, 16, 512


def surplus(environ: dict[str, str]) -> tuple[int, int]:
    """(surplus bytes, optional budget) for the server's GLIBC_TUNABLES."""
    nns = tunable(environ, "glibc.rtld.nns", 1, DL_NNS) or DEFAULT_NNS
    optional = tunable(environ, "glibc.rtld.optional_static_tls", 0)
    optional = OPTIONAL_TLS if optional is None else optional
    return (nns - 1) * LIBC_IE_TLS + nns * OTHER_IE_TLS + optional + LEGACY_TLS, optional


# Linux's rseq area, in static TLS after the startup objects' blocks from glibc
# 2.41 ("Add Linux 'extra TLS'", sysdeps/unix/sysv/linux/dl-extra_tls.h): the
# kernel's AT_RSEQ_FEATURE_SIZE (at least 20) and AT_RSEQ_ALIGN (at least 32),
# the area at least 32 bytes; with glibc.pthread.rseq=0, 32 bytes aligned 32.
AT_RSEQ_FEATURE_SIZE, AT_RSEQ_ALIGN = 27, 28
RSEQ_AREA_SIZE_INITIAL, RSEQ_AREA_SIZE_INITIAL_USED, RSEQ_MIN_ALIGN = 32, 20, 32


def extra_tls(environ: dict[str, str], rules) -> tuple[int, int]:
    """(size, align) of the extra TLS block for the server's kernel and tunables."""
    if not rules.extra_tls:
        return 0, 0
    if tunable(environ, "glibc.pthread.rseq", 0, 1) == 0:
        return RSEQ_AREA_SIZE_INITIAL, RSEQ_MIN_ALIGN
    aux = _auxv()
    size = max(aux.get(AT_RSEQ_FEATURE_SIZE, 0), RSEQ_AREA_SIZE_INITIAL_USED)
    align = max(aux.get(AT_RSEQ_ALIGN, 0), RSEQ_MIN_ALIGN)
    return _roundup(max(size, RSEQ_AREA_SIZE_INITIAL), align), align


@functools.cache
def _auxv() -> dict[int, int]:
    """This process's auxiliary vector, read once (it does not change, and the
    kernel gives every process the same rseq values)."""
    try:
        with open("/proc/self/auxv", "rb") as f:
            data = f.read(4096)
    except OSError:
        return {}
    return {key: value for key, value in struct.iter_unpack("<QQ", data[:len(data) // 16 * 16])}


def _roundup(n: int, align: int) -> int:
    return (n + align - 1) // align * align


class StaticTls(Record):
    """What is left of the static TLS area: `free` bytes (the TCB left out), as
    _dl_try_allocate_static_tls() computes them."""
    __slots__ = ("size", "used", "align", "optional")

    def __init__(self, size: int, used: int, align: int, optional: int):
        self.size, self.used, self.align, self.optional = size, used, align, optional

    @classmethod
    def at_start(cls, blocks: list[tuple[int, int, int]], environ: dict[str, str],
                 extra_tls: tuple[int, int] = (0, 0)) -> "StaticTls":
        """blocks: (vaddr, memsz, align) of each startup object's PT_TLS, in link-map order;
        extra_tls: (size, align) of glibc's own block placed after them (extra_tls())."""
        extra, optional = surplus(environ)
        max_align, offset, freetop, freebottom = TCB_ALIGNMENT, 0, 0, 0
        for vaddr, size, align in blocks:
            firstbyte = -(vaddr & (align - 1)) & (align - 1)
            max_align = max(max_align, align)
            if freebottom - freetop >= size:
                off = _roundup(freetop + size - firstbyte, align) + firstbyte
                if off <= freebottom:
                    freetop = off
                    continue
            off = _roundup(offset + size - firstbyte, align) + firstbyte
            if off > offset + size + (freebottom - freetop):
                freetop, freebottom = offset, off - size
            offset = off
        size, align = extra_tls
        if size:
            max_align = max(max_align, align)
            offset = _roundup(offset, align) + size
        return cls(_roundup(offset + extra, max_align), offset, max_align, optional)

    def allocate(self, tls: tuple[int, int, int]) -> bool:
        """Place one block (mandatory, as for TPOFF64); False if it does not fit."""
        vaddr, size, align = tls
        if align > self.align:
            return False
        free = self.size - self.used
        firstbyte = vaddr & (align - 1)
        block = size + firstbyte
        if free < block:
            return False
        n = (free - block) // align
        self.used += free - n * align - firstbyte
        return True
