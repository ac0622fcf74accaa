"""Section headers, read only for what the program headers cannot tell: the
optional .symtab (the magic block of an unstripped build), and the value a
RELATIVE relocation stores at an address."""

from __future__ import annotations

import struct

from .format import (DT_REL, DT_RELA, DT_RELASZ, DT_RELR, DT_RELRSZ, DT_RELSZ, MAX_SHNUM, MAX_TABLE,
                     RELATIVE_RELOCS, SHT_SYMTAB, ElfError, Symbol, struct_format)
from .strings import cstring

def section_headers(obj) -> list[tuple[int, int, int, int, int, int]]:
    """(name, type, addr, offset, size, link) of every section; [] if absent."""
    shoff, shnum = obj.shoff, obj.shnum
    entsize = 64 if obj.elf_class == 64 else 40
    if shoff == 0 or shnum == 0 or obj.shentsize != entsize or shnum > MAX_SHNUM:
        return []
    if shoff + shnum * entsize > obj.size:
        return []
    raw = obj.read_at(shoff, shnum * entsize)
    spec = "IIQQQQIIQQ" if obj.elf_class == 64 else "IIIIIIIIII"
    out = []
    for fields in struct.iter_unpack(struct_format(obj, spec), raw):
        sh_name, sh_type, _flags, sh_addr, sh_offset, sh_size, sh_link = fields[:7]
        out.append((sh_name, sh_type, sh_addr, sh_offset, sh_size, sh_link))
    return out


def symtab_symbol(obj, prefix: str) -> Symbol | None:
    """A .symtab symbol whose name starts with the prefix (unstripped files only)."""
    sections = section_headers(obj)
    for _name, sh_type, _addr, sh_offset, sh_size, sh_link in sections:
        if sh_type != SHT_SYMTAB or sh_link >= len(sections):
            continue
        if sh_size > MAX_TABLE or sections[sh_link][4] > MAX_TABLE:
            raise ElfError("absurd symbol table size")
        strings = obj.read_at(sections[sh_link][3], sections[sh_link][4])
        raw = obj.read_at(sh_offset, sh_size - sh_size % (24 if obj.elf_class == 64 else 16))
        spec = "IBBHQQ" if obj.elf_class == 64 else "IIIBBH"
        wanted = prefix.encode()
        for fields in struct.iter_unpack(struct_format(obj, spec), raw):
            if obj.elf_class == 64:
                st_name, st_info, st_other, st_shndx, st_value, st_size = fields
            else:
                st_name, st_value, st_size, st_info, st_other, st_shndx = fields
            if st_name < len(strings) and strings.startswith(wanted, st_name):
                name = cstring(strings, st_name)
                return Symbol(name, st_value, st_size, st_info >> 4, st_info & 0xF, st_other & 3, st_shndx)
    return None


def relative_relocation(obj, vaddr: int) -> int | None:
    """The value a RELATIVE relocation stores at `vaddr` (load base 0), if any."""
    relative = RELATIVE_RELOCS.get(obj.machine)
    word = 8 if obj.elf_class == 64 else 4
    rela = obj.dynamic_value(DT_RELA)
    if rela is not None and relative is not None:
        size = min(obj.dynamic_value(DT_RELASZ) or 0, MAX_TABLE)
        entsize = 24 if obj.elf_class == 64 else 12
        raw = obj.read_vaddr(rela, size - size % entsize)
        spec = "QQq" if obj.elf_class == 64 else "IIi"
        for r_offset, r_info, r_addend in struct.iter_unpack(struct_format(obj, spec), raw):
            rtype = r_info & 0xFFFFFFFF if obj.elf_class == 64 else r_info & 0xFF
            if r_offset == vaddr and rtype == relative:
                return r_addend
    rel = obj.dynamic_value(DT_REL)
    if rel is not None and relative is not None:
        size = min(obj.dynamic_value(DT_RELSZ) or 0, MAX_TABLE)
        entsize = 16 if obj.elf_class == 64 else 8
        raw = obj.read_vaddr(rel, size - size % entsize)
        for r_offset, r_info in struct.iter_unpack(struct_format(obj, "QQ" if word == 8 else "II"), raw):
            rtype = r_info & 0xFFFFFFFF if word == 8 else r_info & 0xFF
            if r_offset == vaddr and rtype == relative:
                return _word_at(obj, vaddr)
    relr = obj.dynamic_value(DT_RELR)
    if relr is not None and _relr_covers(obj, relr, vaddr):
        return _word_at(obj, vaddr)
    return None


def _word_at(obj, vaddr: int) -> int:
    word = 8 if obj.elf_class == 64 else 4
    return struct.unpack(struct_format(obj, "Q" if word == 8 else "I"), obj.read_vaddr(vaddr, word))[0]


def _relr_covers(obj, relr: int, vaddr: int) -> bool:
    """Whether the packed RELR table relocates the word at vaddr."""
    word = 8 if obj.elf_class == 64 else 4
    size = min(obj.dynamic_value(DT_RELRSZ) or 0, MAX_TABLE)
    raw = obj.read_vaddr(relr, size - size % word)
    where = 0
    for (entry,) in struct.iter_unpack(struct_format(obj, "Q" if word == 8 else "I"), raw):
        if entry & 1 == 0:
            where = entry
            if where == vaddr:
                return True
            where += word
        else:
            bits = entry >> 1
            for i in range(word * 8 - 1):
                if bits >> i & 1 and where + i * word == vaddr:
                    return True
            where += (word * 8 - 1) * word
    return False
