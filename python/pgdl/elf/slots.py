"""Which symbol each GOT slot of an x86-64 object will hold: the address the
loader stores there (R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT, R_X86_64_64),
read from the dynamic relocations.  Code reaches another object's variable or
function through such a slot; pgdl.elf.paths follows it to the name."""

from __future__ import annotations

import struct

from .. import filestate
from . import dynsym
from .format import DT_RELA, DT_RELASZ, MAX_TABLE, ElfError, struct_format
from .objects import ElfObject

DT_PLTRELSZ, DT_JMPREL = 2, 23
R_X86_64_64, R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT = 1, 6, 7
_SYMBOLIC = (R_X86_64_64, R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT)

_SLOTS = filestate.Memo(64)


def symbol_slots(obj: ElfObject) -> dict[int, str]:
    """{slot address: symbol name} (load base 0); remembered while the file is unchanged."""
    return _SLOTS.get((obj.path, obj.size), lambda: _read(obj))


def _read(obj: ElfObject) -> dict[int, str]:
    filestate.state(obj.path)
    table = dynsym.table(obj)
    slots: dict[int, str] = {}
    for start_tag, size_tag in ((DT_RELA, DT_RELASZ), (DT_JMPREL, DT_PLTRELSZ)):
        start, size = obj.dynamic_value(start_tag), obj.dynamic_value(size_tag) or 0
        if start is None or obj.elf_class != 64:
            continue
        size = min(size, MAX_TABLE)
        try:
            raw = obj.read_vaddr(start, size - size % 24)
        except ElfError:
            continue
        for r_offset, r_info, _addend in struct.iter_unpack(struct_format(obj, "QQq"), raw):
            symidx = r_info >> 32
            if r_info & 0xFFFFFFFF in _SYMBOLIC and 0 < symidx < table.count:
                slots.setdefault(r_offset, table.name(symidx))
    return slots
