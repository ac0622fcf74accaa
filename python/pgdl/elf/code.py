"""The address a tiny accessor function returns, read from its machine code.

PG_MODULE_MAGIC's Pg_magic_func() and PG_FUNCTION_INFO_V1's pg_finfo_<name>()
each just return the address of a static const struct.  Compilers emit that
as one PC-relative address computation, which is decoded here so the struct
can be read from the file without running anything.
"""

from __future__ import annotations

import struct

from .format import EM_AARCH64, EM_X86_64, ElfError
from .objects import ElfObject


def returned_address(obj: ElfObject, func_addr: int, func_size: int) -> int | None:
    """The address loaded into the return register, or None if the code is not recognised."""
    code_len = min(max(func_size, 16), 64)
    try:
        code = obj.read_vaddr(func_addr, code_len)
    except ElfError:
        code = obj.read_vaddr(func_addr, min(func_size, 64)) if func_size else b""
    if obj.machine == EM_X86_64:
        return _x86_64_lea_rax(code, func_addr)
    if obj.machine == EM_AARCH64:
        return _aarch64_adrp_add_x0(code, func_addr, obj.little_endian)
    return None


def _x86_64_lea_rax(code: bytes, func_addr: int) -> int | None:
    """First `lea disp32(%rip),%rax` (48 8d 05), the value Pg_magic_func returns."""
    at = code.find(b"\x48\x8d\x05")
    if at < 0 or at + 7 > len(code):
        return None
    disp = struct.unpack_from("<i", code, at + 3)[0]
    return func_addr + at + 7 + disp


def _aarch64_adrp_add_x0(code: bytes, func_addr: int, little: bool) -> int | None:
    """`adrp x0, page` + `add x0, x0, #lo12`, or `adr x0, label` (as lld relaxes it)."""
    e = "<" if little else ">"
    words = [struct.unpack_from(e + "I", code, i)[0] for i in range(0, len(code) - 3, 4)]
    for i, insn in enumerate(words):
        pc = func_addr + 4 * i
        if insn & 0x9F00001F == 0x10000000:            # adr x0, label
            return pc + _adr_immediate(insn)
        if insn & 0x9F00001F != 0x90000000:            # adrp x0, page
            continue
        page = (pc & ~0xFFF) + (_adr_immediate(insn) << 12)
        nxt = words[i + 1] if i + 1 < len(words) else 0
        if nxt & 0xFFC003FF == 0x91000000:             # add x0, x0, #imm12 (no shift)
            return page + ((nxt >> 10) & 0xFFF)
        return page
    return None


def _adr_immediate(insn: int) -> int:
    """The signed 21-bit immhi:immlo field shared by ADR and ADRP."""
    imm = (((insn >> 5) & 0x7FFFF) << 2) | ((insn >> 29) & 0x3)
    return imm - (1 << 21) if imm & (1 << 20) else imm
