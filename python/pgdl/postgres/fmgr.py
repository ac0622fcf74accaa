"""A C function's entry points, as fmgr.c and dfmgr.c find them once the
library is loaded: load_external_function() looks the symbol up with
dlsym(handle), fetch_finfo_record() then pg_finfo_<symbol> and the API
version the info function returns."""

from __future__ import annotations

import struct

from ..elf import ElfError, ElfObject, dynsym
from ..elf.code import returned_address
from ..errors import INVALID_PARAMETER_VALUE, UNDEFINED_FUNCTION, PgError
from ..record import Value


class EntryPoint(Value):
    """What fmgr makes of one symbol of a loaded library."""
    __slots__ = ("error", "note")

    def __init__(self, error: PgError | None = None, note: str | None = None):
        self.error = error              # what CREATE FUNCTION (or the first call) raises
        self.note = note                # what could not be judged without running code


def entry_point(scope: list[ElfObject], libname: str, symbol: str) -> EntryPoint:
    """dlsym() of the function and of pg_finfo_<symbol> in the handle's scope
    (the module, then its dependencies breadth-first), and the API version."""
    if _scope_lookup(scope, symbol) is None:
        return EntryPoint(PgError(UNDEFINED_FUNCTION, f'could not find function "{symbol}" in file "{libname}"'))
    info_name = f"pg_finfo_{symbol}"
    found = _scope_lookup(scope, info_name)
    if found is None:
        return EntryPoint(PgError(UNDEFINED_FUNCTION, f'could not find function information for function "{symbol}"',
                                  hint="SQL-callable functions need an accompanying PG_FUNCTION_INFO_V1(funcname)."))
    obj, sym = found
    api_version = _finfo_api_version(obj, sym.value, sym.size)
    if api_version is None:
        return EntryPoint(note=f"the API version that {info_name}() reports could not be read statically")
    if api_version != 1:
        return EntryPoint(PgError(INVALID_PARAMETER_VALUE,
                                  f'unrecognized API version {api_version} reported by info function "{info_name}"'))
    return EntryPoint()


def _scope_lookup(scope: list[ElfObject], name: str):
    for obj in scope:
        sym = dynsym.definition(obj, name)
        if sym is not None and not sym.hidden:
            return obj, sym
    return None


def _finfo_api_version(obj: ElfObject, addr: int, size: int) -> int | None:
    """Pg_finfo_record.api_version, from the struct pg_finfo_<name>() returns."""
    try:
        target = returned_address(obj, addr, size)
        if target is None:
            return None
        raw = obj.read_vaddr(target, 4)
    except ElfError:
        return None
    return struct.unpack("<i" if obj.little_endian else ">i", raw)[0]
