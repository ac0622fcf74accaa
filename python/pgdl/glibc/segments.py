"""What ld.so touches in memory once a module is mapped, and where that is not
memory its segments map (or write where no segment is writable): the
backend dies with SIGSEGV, as for a mutated module whose PT_LOAD became
PT_NOTE or lost PF_W.  dl-load.c reads the dynamic section at its
address (elf_get_dynamic_info), then the tables it points to; dl-reloc.c
writes every relocation's target."""

from __future__ import annotations

from ..elf import (EM_X86_64, DT_GNU_HASH, DT_HASH, DT_RELA, DT_RELAENT, DT_RELR, DT_RELRENT, DT_STRTAB,
                   DT_SYMTAB, DT_VERNEED, DT_VERSYM, ElfError)
from .. import filestate, persist
from ..errors import CONNECTION_LOST, PgError, backend_dies
from .problems import DAMAGED_FILE_HINT
from .relocations import DT_JMPREL, DT_PLTREL, relocation_targets

_TABLES = {DT_STRTAB: "DT_STRTAB", DT_SYMTAB: "DT_SYMTAB", DT_HASH: "DT_HASH", DT_GNU_HASH: "DT_GNU_HASH",
           DT_RELA: "DT_RELA", DT_JMPREL: "DT_JMPREL", DT_VERSYM: "DT_VERSYM", DT_VERNEED: "DT_VERNEED"}
DT_TEXTREL, DT_FLAGS, DF_TEXTREL = 22, 30, 0x4


def _mapped(obj, start: int, size: int = 1) -> bool:
    return any(v <= start and start + max(size, 1) <= v + memsz for v, _o, _f, memsz in obj.loads)


_TOUCHES = filestate.FileCache(512, persist.Kind("touches"))


def segmentation_crash(libname: str, obj) -> PgError | None:
    """The first read or write of unmapped (or read-only) memory, as a dead backend.
    Judged once per file state: the objects most modules need (libc, libpq, libLLVM)
    are checked for every dlopen that maps them anew."""
    why = _TOUCHES.get(obj.path, lambda _state: _first_bad_touch(obj), obj.size)
    if why is None:
        return None
    return backend_dies(f"The backend is killed by SIGSEGV while the dynamic linker loads {libname}: {why}.",
                        _HEADERS_HINT)


_HEADERS_HINT = ("The file's program headers do not describe its contents (a damaged or mis-built file): "
                 "rebuild or reinstall it.")


def overwrite_crash(libname: str, name: str, why: str) -> PgError:
    """Memory of the process replaced by an object's zero pages: what a crash would look like."""
    return PgError(None, CONNECTION_LOST,
                   f"The backend may die while the dynamic linker loads {libname}: in {name}, {why}. Whether "
                   "anything is mapped there depends on where the kernel places the object, so the LOAD may "
                   "also succeed, leaving other memory of the process zeroed.", _HEADERS_HINT)


def _first_bad_touch(obj) -> str | None:
    if obj.dynamic_range is not None:
        vaddr, memsz = obj.dynamic_range
        if not _mapped(obj, vaddr, memsz):
            return f"its dynamic section (address {vaddr:#x}) lies outside every loaded segment"
    for tag, name in _TABLES.items():
        where = obj.dynamic_value(tag)
        if where is not None and not _mapped(obj, where):
            return f"its {name} table (address {where:#x}) lies outside every loaded segment"
    textrel = obj.dynamic_value(DT_TEXTREL) is not None or (obj.dynamic_value(DT_FLAGS) or 0) & DF_TEXTREL
    if textrel:
        return None                     # ld.so makes the text writable while it relocates
    try:
        for chunk in relocation_targets(obj):
            if not len(chunk):
                continue
            low, high = min(chunk), max(chunk)
            if any(v <= low and high + 8 <= v + memsz for v, memsz in obj.writable):
                continue                # the whole chunk writes into one writable segment
            for target in chunk:
                if not any(v <= target and target + 8 <= v + memsz for v, memsz in obj.writable):
                    place = "a read-only segment" if _mapped(obj, target) else "no loaded segment"
                    return f"a relocation writes to address {target:#x}, in {place}"
    except (ElfError, OSError, ValueError):
        return None
    return None


# elf/get-dynamic-info.h asserts, right after mapping an object, that its
# dynamic section describes RELA tables (x86-64 has no REL) with entries of
# the right size: ld.so then prints the assertion's line (pgdl.glibc.release)
# and exits with code 127.  Each check is made only when the table it sizes is
# there: (the tag, the table it depends on, the value it must have).
_DYNAMIC_ASSERTIONS = ((DT_PLTREL, DT_PLTREL, DT_RELA, "DT_PLTREL"), (DT_RELAENT, DT_RELA, 24, "DT_RELAENT"),
                       (DT_RELRENT, DT_RELR, 8, "DT_RELRENT"))


def dynamic_assertion_crash(libname: str, obj, rules) -> PgError | None:
    if obj.machine != EM_X86_64 or obj.elf_class != 64:
        return None
    for tag, table, expected, name in _DYNAMIC_ASSERTIONS:
        line = rules.assertion(name)
        if obj.dynamic_value(table) is None or line is None:
            continue
        value = obj.dynamic_value(tag)
        if value is None:
            # The assertion reads the entry through a NULL pointer.
            return backend_dies(f"The backend is killed by SIGSEGV while the dynamic linker maps {libname}: its "
                                f"dynamic section has a table (tag {table}) but no entry size for it (tag {tag}), "
                                "which ld.so reads through a null pointer.", DAMAGED_FILE_HINT)
        if value != expected:
            return backend_dies(f"The dynamic linker aborts the backend (exit code 127) while it maps {libname}: "
                                f"its dynamic section has an impossible value ({value}) for tag {tag}. The server "
                                f"log says: {line}", DAMAGED_FILE_HINT)
    return None
