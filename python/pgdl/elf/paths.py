"""The paths through a function's x86-64 code, followed without running it.

A small abstract interpreter over instructions decoded by Capstone.  A
register holds what is known of it: a constant, an address in the file, the
symbol whose GOT slot it was loaded from, the value of that symbol's
variable, or what a call returned.  A conditional jump on a known value goes
one way, on an unknown value both ways (the path is then no longer
`certain`).  Each call to another object's function is handed to the caller's
Semantics, which says what it returns, whether it returns at all, and keeps
its own per-path notes; calls inside the object are followed (a few levels
deep).  A state met again at the same address is followed once, and the
whole walk is bounded: past the bound the answer is `complete = False`.

Only x86-64 is decoded (`DECODED`); pgdl.postgres.pg_init says so for others.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from .. import interrupts
from ..record import Name, Record
from .format import EM_X86_64, ElfError
from .objects import ElfObject
from .slots import symbol_slots
from .x86_64 import Code, Insn, Op, available

DECODED = {EM_X86_64: "x86-64"}
MAX_STEPS = 40_000           # instructions interpreted, over all paths
MAX_DEPTH = 3                # calls into the object's own functions followed
_ARGS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
_CLOBBERED = ("rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11")


class Kind(Name):
    CONST = "const"          # an integer
    ADDRESS = "address"      # an address in the object (load base 0): a string, a table
    SLOT = "slot"            # the address a GOT slot holds: another object's symbol
    VARIABLE = "variable"    # the value of that symbol's variable
    RESULT = "result"        # what a call returned: the Semantics' own token


class Known(NamedTuple):
    kind: Kind
    value: object


UNKNOWN = None


class Ending(Name):
    RETURN = "return"        # the function returned
    NORETURN = "noreturn"    # a call that does not return (Semantics said so)
    LOST = "lost"            # the code could not be followed (indirect jump, undecodable)


class PathEnd(Record):
    """Where one path ends, and how sure the walk is that it can be taken."""
    __slots__ = ("ending", "notes", "certain", "steered")

    def __init__(self, ending: Ending, notes, certain: bool, steered: bool):
        self.ending = ending
        self.notes = notes          # the Semantics' per-path notes at the end
        self.certain = certain      # no unknown condition was met on the way
        self.steered = steered      # a known state variable decided a branch since the last unknown one


class Walk(Record):
    __slots__ = ("ends", "complete", "error")

    def __init__(self, ends: list[PathEnd], complete: bool, error: str | None = None):
        self.ends = ends
        self.complete = complete    # every path was followed to its end
        self.error = error          # why nothing could be decoded


class Semantics(Protocol):
    def variable(self, symbol: str) -> int | None:
        """The value of another object's variable this process has (None: not known)."""

    def call(self, symbol: str, args: tuple, notes) -> tuple[bool, object, object]:
        """A call of `symbol` with the argument registers' values:
        (returns, the value it returns (a Known or None), the path's new notes)."""

    def result(self, token) -> int | None:
        """The integer a call's result token stands for, if known."""


def walk(obj: ElfObject, entry: int, semantics: Semantics, notes=None) -> Walk:
    if obj.machine not in DECODED:
        return Walk([], False, f"code for {obj.machine_name} is not decoded (only {', '.join(DECODED.values())})")
    if not available():
        return Walk([], False, "python3-capstone is not installed")
    return _Walker(obj, semantics).run(entry, notes)


class _State(NamedTuple):
    pc: int
    regs: tuple                # sorted (register, Known) pairs: the known ones
    flags: object              # (Known left, Known right) of the last cmp/test, or None
    stores: tuple              # sorted (address, Known) written to the object's own memory
    stack: tuple               # return addresses of the object's own calls being followed
    notes: object
    certain: bool
    steered: bool


class _Walker:
    def __init__(self, obj: ElfObject, semantics: Semantics):
        self.obj, self.sem = obj, semantics
        self.code = Code(obj)
        self.slots = symbol_slots(obj)
        self._stubs: dict[int, str | None] = {}

    def run(self, entry: int, notes) -> Walk:
        todo = [_State(entry, (), None, (), (), notes, True, False)]
        seen: set = set()
        ends: list[PathEnd] = []
        steps = 0
        while todo:
            st = todo.pop()
            while st is not None:
                if st in seen:
                    break
                seen.add(st)
                steps += 1
                if steps > MAX_STEPS:
                    return Walk(ends, False)
                if steps % 512 == 0:
                    interrupts.check()
                st = self.step(st, todo, ends)
        return Walk(ends, True)

    def stub_symbol(self, target: int) -> str | None:
        """The symbol a PLT stub at `target` jumps to (endbr64; [bnd] jmp *slot(%rip))."""
        if target not in self._stubs:
            name, pc = None, target
            for _ in range(2):
                i = self.code.at(pc)
                if i is None:
                    break
                if i.mnemonic == "endbr64":
                    pc += i.size
                    continue
                if i.mnemonic in ("jmp", "bnd jmp") and len(i.ops) == 1 and i.ops[0].rip is not None:
                    name = self.slots.get(i.ops[0].rip)
                break
            self._stubs[target] = name
        return self._stubs[target]

    # -- one instruction ----------------------------------------------------------

    def step(self, st: _State, todo: list, ends: list) -> _State | None:
        i = self.code.at(st.pc)
        if i is None:
            ends.append(PathEnd(Ending.LOST, st.notes, False, False))
            return None
        m, ops, nxt = i.mnemonic, i.ops, st.pc + i.size
        regs = dict(st.regs)
        if m in ("ret", "bnd ret", "ret far"):
            if st.stack:
                return st._replace(pc=st.stack[-1], stack=st.stack[:-1], flags=None,
                                   regs=self._pack(regs, keep_callee_saved=True))
            ends.append(PathEnd(Ending.RETURN, st.notes, st.certain, st.steered))
            return None
        if m in ("ud2", "hlt", "int3"):
            return None                  # after a call that does not return
        if m in ("call", "jmp", "bnd jmp"):
            return self._transfer(st, i, regs, ends, tail=m != "call")
        if m.startswith("j") or m.startswith("bnd j"):
            return self._branch(st, i, todo)
        if m in ("cmp", "test") and len(ops) == 2:
            left, right = self._read(st, regs, ops[0]), self._read(st, regs, ops[1])
            if m == "test" and not (ops[0].kind == ops[1].kind == "reg" and ops[0].reg == ops[1].reg):
                flags = None             # a bit test: only `test r, r` compares with zero
            else:
                flags = (left, Known(Kind.CONST, 0) if m == "test" else right)
            return st._replace(pc=nxt, flags=flags)
        stores = st.stores
        if m in ("mov", "movzx", "movsx", "movsxd", "lea") and len(ops) == 2:
            src = ops[1]
            value = (Known(Kind.ADDRESS, src.rip) if src.rip is not None else None) if m == "lea" \
                else self._read(st, regs, src)
            if ops[0].kind == "reg":
                regs[ops[0].reg] = value
            else:
                stores = self._store(st, ops[0], value)
            return st._replace(pc=nxt, regs=self._pack(regs), stores=stores)
        if m == "xor" and len(ops) == 2 and ops[0].kind == ops[1].kind == "reg" and ops[0].reg == ops[1].reg:
            regs[ops[0].reg] = Known(Kind.CONST, 0)
            return st._replace(pc=nxt, regs=self._pack(regs), flags=None)
        # Anything else: what it writes is no longer known.
        flags = None if "flags" in i.written else st.flags
        for reg in i.written:
            if reg not in ("flags", "rsp", "rip"):
                regs.pop(reg, None)
        if ops and ops[0].kind == "mem" and ops[0].write:
            stores = self._store(st, ops[0], UNKNOWN)
        return st._replace(pc=nxt, regs=self._pack(regs), flags=flags, stores=stores)

    def _transfer(self, st: _State, i: Insn, regs: dict, ends: list, tail: bool) -> _State | None:
        op = i.ops[0] if i.ops else None
        nxt = st.pc + i.size
        target = op.imm if op is not None and op.kind == "imm" else None
        symbol = None
        if target is None and op is not None and op.rip is not None:
            symbol = self.slots.get(op.rip)       # call *slot(%rip): -fno-plt
        elif target is not None:
            symbol = self.stub_symbol(target)
        if symbol is None and target is not None:
            if tail:                              # a jump within the function (or a tail call inside the object)
                return st._replace(pc=target)
            if len(st.stack) < MAX_DEPTH:
                return st._replace(pc=target, stack=st.stack + (nxt,), flags=None)
        if symbol is None and tail:               # jmp *%reg: a switch table, not followed
            ends.append(PathEnd(Ending.LOST, st.notes, False, False))
            return None
        args = tuple(regs.get(r) for r in _ARGS)
        if symbol is None:
            returns, value, notes = True, UNKNOWN, st.notes
        else:
            returns, value, notes = self.sem.call(symbol, args, st.notes)
        if not returns:
            ends.append(PathEnd(Ending.NORETURN, notes, st.certain, st.steered))
            return None
        for r in _CLOBBERED:
            regs.pop(r, None)
        if value is not None:
            regs["rax"] = value
        after = st._replace(pc=nxt, regs=self._pack(regs), flags=None, notes=notes)
        if tail:                                  # jmp to another object's function: its return is ours
            if after.stack:
                return after._replace(pc=after.stack[-1], stack=after.stack[:-1])
            ends.append(PathEnd(Ending.RETURN, notes, st.certain, st.steered))
            return None
        return after

    def _branch(self, st: _State, i: Insn, todo: list) -> _State | None:
        op = i.ops[0] if i.ops else None
        nxt = st.pc + i.size
        if op is None or op.kind != "imm":
            return None
        taken = self._condition(i.mnemonic.replace("bnd ", ""), st.flags)
        if taken is None:
            todo.append(st._replace(pc=op.imm, certain=False, steered=False))
            return st._replace(pc=nxt, certain=False, steered=False)
        steered = st.steered or self._from_state(st.flags)
        return st._replace(pc=op.imm if taken else nxt, steered=steered)

    def _condition(self, m: str, flags) -> bool | None:
        if flags is None:
            return None
        left, right = (self._concrete(v) for v in flags)
        if left is None or right is None:
            return None
        if m in ("je", "jz", "jne", "jnz"):
            if left is _NONZERO or right is _NONZERO:
                if right is _NONZERO or right != 0:
                    return None
                return m in ("jne", "jnz")
            return (left == right) == (m in ("je", "jz"))
        if left is _NONZERO or right is _NONZERO:
            return None
        signed = {"jl": left < right, "jge": left >= right, "jle": left <= right, "jg": left > right,
                  "js": left - right < 0, "jns": left - right >= 0}
        if m in signed:
            return signed[m]
        u_left, u_right = left & (1 << 64) - 1, right & (1 << 64) - 1
        unsigned = {"jb": u_left < u_right, "jae": u_left >= u_right, "jbe": u_left <= u_right, "ja": u_left > u_right}
        return unsigned.get(m)

    def _from_state(self, flags) -> bool:
        return any(v is not None and v.kind is Kind.VARIABLE for v in flags)

    def _concrete(self, v: Known | None):
        if v is None:
            return None
        if v.kind is Kind.CONST:
            return v.value
        if v.kind in (Kind.ADDRESS, Kind.SLOT):
            return _NONZERO
        if v.kind is Kind.VARIABLE:
            return self.sem.variable(v.value)
        return self.sem.result(v.value)

    # -- operands -----------------------------------------------------------------

    def _read(self, st: _State, regs: dict, op: Op) -> Known | None:
        if op.kind == "imm":
            return Known(Kind.CONST, op.imm)
        if op.kind == "reg":
            return regs.get(op.reg)
        if op.rip is not None:
            symbol = self.slots.get(op.rip)
            if symbol is not None and op.size == 8:
                return Known(Kind.SLOT, symbol)
            written = dict(st.stores)
            if op.rip in written:
                return written[op.rip]
            return self._initial(op.rip, op.size)
        if op.plain:
            base = regs.get(op.reg)
            if base is not None and base.kind is Kind.SLOT:
                return Known(Kind.VARIABLE, base.value)
        return None

    def _initial(self, where: int, size: int) -> Known | None:
        """The object's own static data as the file (or .bss) has it before any code ran:
        _PG_init() runs once, right after the file is mapped."""
        if size not in (1, 2, 4, 8):
            return None
        try:
            data = self.obj.read_vaddr(where, size)
        except ElfError:
            in_bss = any(v <= where < v + memsz for v, _o, _f, memsz in self.obj.loads)
            return Known(Kind.CONST, 0) if in_bss else None
        return Known(Kind.CONST, int.from_bytes(data, "little" if self.obj.little_endian else "big"))

    def _store(self, st: _State, op: Op, value) -> tuple:
        if op.rip is None:
            return st.stores
        written = dict(st.stores)
        written[op.rip] = value
        return tuple(sorted(written.items(), key=lambda kv: kv[0]))

    @staticmethod
    def _pack(regs: dict, keep_callee_saved: bool = False) -> tuple:
        if keep_callee_saved:
            regs = {r: v for r, v in regs.items() if r not in _CLOBBERED or r == "rax"}
        return tuple(sorted((r, v) for r, v in regs.items() if v is not None))


class _NonZero:
    """An address: not zero, value unknown."""

    def __repr__(self) -> str:
        return "NONZERO"


_NONZERO = _NonZero()
