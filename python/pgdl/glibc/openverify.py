"""glibc's open_verify() for one file: would dlopen() accept this file as ELF?

glibc elf/dl-load.c (2.28-2.40 alike here) reads the first bytes of the file
and checks, in this order: length, e_ident (magic, class, byte order,
version, OS ABI, ABI version, padding), e_version, e_machine, e_type and
e_phentsize.  A wrong class or machine is "not fatal" (the search goes on to
the next directory); everything else stops with the message below.
"""

from __future__ import annotations

import struct

from ..elf import ELFCLASS64, ELFDATA2LSB, ELFMAG, ET_DYN, ET_EXEC, EM_X86_64
from ..record import Value

EV_CURRENT = 1
ELFOSABI_SYSV, ELFOSABI_GNU = 0, 3


class Verdict(Value):
    """glibc open_verify()'s judgement of a file's first bytes."""
    __slots__ = ("ok", "error", "other_class", "other_machine")

    def __init__(self, ok: bool, error: str | None = None, other_class: bool = False,
                 other_machine: bool = False):
        self.ok = ok
        self.error = error                  # glibc's errstring, e.g. "invalid ELF header"
        self.other_class = other_class      # skipped: wrong ELFCLASS (search continues)
        self.other_machine = other_machine  # skipped: wrong e_machine (search continues)


def verify_header(head: bytes, *, host_machine: int = EM_X86_64, host_class: int = 64,
                  size: int | None = None) -> Verdict:
    """Judge the first bytes of a file (at least 64 if the file has them);
    size: the file's, to know whether its program headers can be read."""
    ehdr_size = 64 if host_class == 64 else 52
    if len(head) < ehdr_size:
        return Verdict(False, "file too short")
    expected_class = ELFCLASS64 if host_class == 64 else 1
    e_ident = head[:16]
    osabi, abiversion = e_ident[7], e_ident[8]
    ident_ok = (e_ident[:4] == ELFMAG and e_ident[4] == expected_class and e_ident[5] == ELFDATA2LSB
                and e_ident[6] == EV_CURRENT and osabi in (ELFOSABI_SYSV, ELFOSABI_GNU)
                and _abiversion_ok(osabi, abiversion) and e_ident[9:16] == b"\0" * 7)
    if not ident_ok:
        if e_ident[:4] != ELFMAG:
            return Verdict(False, "invalid ELF header")
        if e_ident[4] != expected_class:
            return Verdict(False, None, other_class=True)
        if e_ident[5] != ELFDATA2LSB:
            return Verdict(False, "ELF file data encoding not little-endian")
        if e_ident[6] != EV_CURRENT:
            return Verdict(False, "ELF file version ident does not match current one")
        if osabi not in (ELFOSABI_SYSV, ELFOSABI_GNU):
            return Verdict(False, "ELF file OS ABI invalid")
        if not _abiversion_ok(osabi, abiversion):
            return Verdict(False, "ELF file ABI version invalid")
        if e_ident[9:16] != b"\0" * 7:
            return Verdict(False, "nonzero padding in e_ident")
        return Verdict(False, "internal error")
    e_type, e_machine, e_version = struct.unpack_from("<HHI", head, 16)
    if e_version != EV_CURRENT:
        return Verdict(False, "ELF file version does not match current one")
    if e_machine != host_machine:
        return Verdict(False, None, other_machine=True)
    if e_type not in (ET_DYN, ET_EXEC):
        return Verdict(False, "only ET_DYN and ET_EXEC can be loaded")
    phentsize = struct.unpack_from("<H", head, 54 if host_class == 64 else 42)[0]
    if phentsize != (56 if host_class == 64 else 32):
        return Verdict(False, "ELF file's phentsize not the expected size")
    if size is not None:
        phoff = struct.unpack_from("<Q" if host_class == 64 else "<I", head, 32 if host_class == 64 else 28)[0]
        phnum = struct.unpack_from("<H", head, 56 if host_class == 64 else 44)[0]
        if phoff + phnum * phentsize > size:
            # The pread() of the program headers comes back short: errno is left 0.
            return Verdict(False, "cannot read file data")
    return Verdict(True)


def _abiversion_ok(osabi: int, abiversion: int) -> bool:
    # glibc 2.36 accepts ABI versions up to LIBC_ABI_MAX - 1 for GNU/SYSV
    # (unique symbols, IFUNC, absolute symbols...); 0 is always fine.
    if osabi == ELFOSABI_GNU:
        return abiversion < 4
    return abiversion == 0
