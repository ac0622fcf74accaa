"""x86-64 instructions of an object, decoded by Capstone into plain records.

Capstone's own instruction objects answer every attribute through ctypes;
pgdl.elf.paths looks at each instruction many times, so each is turned once
into an immutable `Insn` of Python values (registers by their 64-bit name,
RIP-relative addresses resolved), decoded a block at a time and kept per file.
"""

from __future__ import annotations

import sys
import types
from typing import NamedTuple

from .. import filestate
from .format import ElfError
from .objects import ElfObject

BLOCK = 16                   # bytes decoded at once, from the address asked for

_cs = None                    # the one decoder of the process, once Capstone is imported
_x86 = None


def available() -> bool:
    """Import Capstone once.  Debian's capstone 4 imports distutils.sysconfig
    and never uses it; in the backend that drags in setuptools (0.2 s and
    25 MiB of every first call), so an empty module stands in for it while
    Capstone imports, and is taken away again."""
    global _cs, _x86
    if _cs is not None:
        return True
    stand_ins = [n for n in ("distutils", "distutils.sysconfig") if n not in sys.modules]
    for name in stand_ins:
        sys.modules[name] = types.ModuleType(name)
    try:
        import capstone
        from capstone import x86
    except ImportError:          # python3-capstone is a dependency; callers say so rather than fail
        filestate.read_failed()  # perhaps for a moment (a library being upgraded): keep nothing on it
        return False
    finally:
        for name in stand_ins:
            sys.modules.pop(name, None)
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    cs.detail = True
    _cs, _x86 = cs, x86
    return True


class Op(NamedTuple):
    kind: str                 # "reg", "imm" or "mem"
    reg: str | None = None    # reg: the register's 64-bit family (eax -> rax); mem: the base's
    imm: int = 0
    rip: int | None = None    # mem: the address of a RIP-relative operand (no index)
    plain: bool = False       # mem: [base] with no index and no displacement
    size: int = 0
    write: bool = False


class Insn(NamedTuple):
    address: int
    size: int
    mnemonic: str
    ops: tuple
    written: frozenset        # the registers it writes, by family ("flags" for EFLAGS)


_FILES = filestate.FileCache(64)


class Code:
    """One file's instructions, decoded as they are asked for: kept with the file's
    state (so across walks) once it is settled, and for this walk in any case."""

    def __init__(self, obj: ElfObject):
        self.obj = obj
        self._decoded: dict[int, Insn | None] = _FILES.get(obj.path, lambda _state: {})

    def at(self, pc: int) -> Insn | None:
        """The instruction at `pc` (load base 0), None where the file has no code to decode."""
        decoded = self._decoded
        found = decoded.get(pc)
        if found is None and pc not in decoded:
            decoded.update(_block(self.obj, pc))
            found = decoded.setdefault(pc, None)
        return found


def _block(obj: ElfObject, pc: int) -> dict[int, Insn]:
    for size in (BLOCK, 1):
        try:
            code = obj.read_vaddr(pc, size)
            break
        except ElfError:
            continue
    else:
        return {}
    out = {}
    for i in _cs.disasm(code, pc):
        out[i.address] = _record(i)
    return out


def _record(i) -> Insn:
    x86 = _x86
    ops = []
    for op in i.operands:
        if op.type == x86.X86_OP_REG:
            ops.append(Op("reg", family(i.reg_name(op.reg)), size=op.size))
        elif op.type == x86.X86_OP_IMM:
            ops.append(Op("imm", imm=op.imm, size=op.size))
        elif op.type == x86.X86_OP_MEM:
            m = op.mem
            rip = i.address + i.size + m.disp if m.base == x86.X86_REG_RIP and m.index == 0 else None
            base = family(i.reg_name(m.base)) if m.base and m.base != x86.X86_REG_RIP else None
            ops.append(Op("mem", base, rip=rip, plain=m.index == 0 and m.disp == 0 and base is not None,
                          size=op.size, write=bool(op.access & 2)))      # CS_AC_WRITE
    try:
        _read, written = i.regs_access()
    except sys.modules["capstone"].CsError:      # no details for this one
        written = ()
    names = frozenset("flags" if r == x86.X86_REG_EFLAGS else family(i.reg_name(r)) for r in written)
    return Insn(i.address, i.size, i.mnemonic, tuple(ops), names)


_FAMILIES: dict[str, str] = {}
for _base in ("a", "b", "c", "d"):
    for _n in (f"{_base}l", f"{_base}h", f"{_base}x", f"e{_base}x", f"r{_base}x"):
        _FAMILIES[_n] = f"r{_base}x"
for _base in ("si", "di", "bp", "sp"):
    for _n in (f"{_base}l", _base, f"e{_base}", f"r{_base}"):
        _FAMILIES[_n] = f"r{_base}"
for _k in range(8, 16):
    for _suffix in ("b", "w", "d", ""):
        _FAMILIES[f"r{_k}{_suffix}"] = f"r{_k}"


def family(name: str | None) -> str | None:
    """A register's 64-bit name (al, ax, eax -> rax; r8d -> r8)."""
    return _FAMILIES.get(name, name) if name else None
