"""The dynamic relocations ld.so applies to an object, in its order, and
what dl-machine.h (x86-64, glibc 2.36) makes of their types."""

from __future__ import annotations

from .. import filestate, interrupts, persist
from ..elf import DT_REL, DT_RELA, DT_RELASZ, DT_RELSZ, EM_X86_64, ElfError, ElfObject
from ..elf.format import column
from ..record import Value

DT_PLTRELSZ, DT_PLTREL, DT_JMPREL = 2, 20, 23
DT_RELACOUNT, DT_RELCOUNT = 0x6FFFFFF9, 0x6FFFFFFA
MAX_RELOCS = 2_000_000
RELOC_CHUNK = 4096            # relocations read at a time

# sysdeps/x86_64/dl-machine.h elf_machine_rela(): the types it applies; any
# other is "unexpected reloc type" (R_X86_64_TPOFF32, 0x17, among them).
ACCEPTED = {EM_X86_64: frozenset({0, 1, 2, 5, 6, 7, 8, 10, 16, 17, 18, 32, 33, 36, 37, 38})}
TPOFF = {EM_X86_64: 18}       # R_X86_64_TPOFF64: the symbol's TLS block must be in static TLS
# do-rel.h applies the first DT_RELACOUNT relocations with elf_machine_rela_relative(),
# which asserts their type (pgdl.glibc.release "RELATIVE"): RELATIVE, or RELATIVE64.
RELATIVE = {EM_X86_64: frozenset({8, 38})}


class RelocationFacts(Value):
    __slots__ = ("first_bad_type", "static_tls", "bad_relative")

    def __init__(self, first_bad_type: int | None, static_tls: bool, bad_relative: int | None = None):
        self.first_bad_type = first_bad_type    # the first type elf_machine_rela() does not know
        self.static_tls = static_tls            # a TPOFF64 relocation against the object's own TLS
        self.bad_relative = bad_relative        # the first non-relative type in the DT_RELACOUNT prefix


_FACTS = filestate.FileCache(256, persist.Kind("relocations", lambda f: f._values(), lambda v: RelocationFacts(*v)))


def relocation_targets(obj: ElfObject):
    """The r_offset of every RELA relocation ld.so applies (64-bit objects), in order,
    a chunk (an indexable sequence) at a time."""
    if obj.elf_class != 64:
        return
    for start_tag, size_tag in ((DT_RELA, DT_RELASZ), (DT_JMPREL, DT_PLTRELSZ)):
        start, size = obj.dynamic_value(start_tag), obj.dynamic_value(size_tag) or 0
        if start is None:
            continue
        total = min(size // 24, MAX_RELOCS)
        for first in range(0, total, RELOC_CHUNK):
            interrupts.check()
            n = min(RELOC_CHUNK, total - first)
            yield column(obj, obj.read_vaddr(start + first * 24, n * 24), "Q", 0, 3)


def relocation_facts(obj: ElfObject) -> RelocationFacts:
    """Read once per file state: the relocation tables are walked whole."""
    return _FACTS.get(obj.path, lambda _state: _facts(obj), obj.size)


def _facts(obj: ElfObject) -> RelocationFacts:
    accepted, tpoff = ACCEPTED.get(obj.machine), TPOFF.get(obj.machine)
    if accepted is None or obj.elf_class != 64:
        return RelocationFacts(None, False)
    first_bad, static, bad_relative = None, False, None
    relative = RELATIVE[obj.machine]
    try:
        for infos in relocation_infos(obj, prefix=True):
            if len(infos) and min(infos) == max(infos) and min(infos) in relative:
                continue                # all plain RELATIVE (r_info == 8): the usual prefix, seen at C speed
            bad_relative = next((info & 0xFFFFFFFF for info in infos if info & 0xFFFFFFFF not in relative), None)
            if bad_relative is not None:
                break
        for infos in relocation_infos(obj):
            for info in infos:
                kind = info & 0xFFFFFFFF
                if kind not in accepted and first_bad is None:
                    first_bad = kind
                # Against the object's own TLS: no symbol, or a symbol it defines (local-exec
                # and initial-exec of its own variables).
                if kind == tpoff and obj.tls is not None:
                    static = True
    except (ElfError, OSError, ValueError):
        pass
    return RelocationFacts(first_bad, static, bad_relative)


def relocation_infos(obj: ElfObject, prefix: bool = False):
    """The r_info words of the relocations ld.so applies, in order, a chunk at a time:
    those it looks at one by one, or (prefix) the DT_RELACOUNT ones it applies as relative."""
    is64 = obj.elf_class == 64
    jmprel = obj.dynamic_value(DT_JMPREL)
    pltsz = obj.dynamic_value(DT_PLTRELSZ) or 0
    pltrel = obj.dynamic_value(DT_PLTREL)
    for tag, size_tag, count_tag, rela in ((DT_REL, DT_RELSZ, DT_RELCOUNT, False),
                                           (DT_RELA, DT_RELASZ, DT_RELACOUNT, True)):
        start = obj.dynamic_value(tag)
        size = obj.dynamic_value(size_tag) or 0
        plt_here = jmprel is not None and pltrel == tag
        if start is not None and plt_here and start + size == jmprel + pltsz and jmprel >= start:
            size -= pltsz                   # DT_RELASZ includes .rela.plt (elf/dynamic-link.h)
        entsize = (24 if rela else 16) if is64 else (12 if rela else 8)
        ranges = []
        if start is not None:
            skip = min(obj.dynamic_value(count_tag) or 0, max(size, 0) // entsize)
            ranges.append((start, skip * entsize) if prefix else (start + skip * entsize, size - skip * entsize))
        if plt_here and not prefix:
            ranges.append((jmprel, pltsz))
        word = 8 if is64 else 4
        for where, nbytes in ranges:
            total = min(nbytes // entsize, MAX_RELOCS)
            for first in range(0, max(total, 0), RELOC_CHUNK):
                interrupts.check()
                n = min(RELOC_CHUNK, total - first)
                raw = obj.read_vaddr(where + first * entsize, n * entsize)
                # r_info is the second word of Elf_Rel and Elf_Rela alike.
                yield column(obj, raw, "Q" if is64 else "I", 1, entsize // word)
