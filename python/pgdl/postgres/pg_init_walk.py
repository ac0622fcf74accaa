"""The walk of a module's _PG_init() (pgdl.elf.paths) with PostgreSQL's
functions as it calls them: ereport()'s steps, the settings it defines and
reads.  Imported only for a module worth walking (pgdl.postgres.pg_init)."""

from __future__ import annotations

from ..elf import ElfError, ElfObject
from ..elf.paths import Ending, Kind, Known, walk
from ..errors import INTERNAL_ERROR, PgError
from ..record import Value
from .pg_init import (SETTING_DEFINERS, UNDEFINED_OBJECT, PgInitCheck, ProcessState, Refusal, Severity,
                      Verdict)

_NORETURN = {"abort", "exit", "_exit", "proc_exit", "pg_re_throw", "ExceptionalCondition", "__stack_chk_fail",
             "__assert_fail", "siglongjmp", "longjmp"}


def judge(obj: ElfObject, init: int, state: ProcessState, built_for: int) -> PgInitCheck:
    """The verdict on _PG_init() at address `init`, from every path the walk follows."""
    sem = _Semantics(obj, state, built_for)
    try:
        with obj.reading():
            result = walk(obj, init, sem)
    except (ElfError, OSError) as exc:
        return PgInitCheck(Verdict.NOT_JUDGED, reason=f"its code cannot be read: {exc}")
    defines = frozenset(sem.defines)
    if result.error is not None:
        return PgInitCheck(Verdict.NOT_JUDGED, reason=result.error, defines=defines)
    refusals = [e for e in result.ends if e.ending is Ending.NORETURN and isinstance(e.notes, Refusal)]
    certain = next((e.notes for e in refusals if e.certain), None)
    if certain is not None:
        return PgInitCheck(Verdict.REFUSES, certain, defines=defines)
    steered = next((e.notes for e in refusals if e.steered), None)
    if steered is not None:
        return PgInitCheck(Verdict.NOT_JUDGED, steered,
                           reason="it may raise this error, under conditions pgdl cannot know", defines=defines)
    if not result.complete and sem.consulted:
        return PgInitCheck(Verdict.NOT_JUDGED, reason="its code is too large to follow every path",
                           defines=defines)
    return PgInitCheck(Verdict.PASSES, defines=defines)




class _Report(Value):
    """An ereport() in progress on one path."""
    __slots__ = ("level", "sqlstate", "message", "format", "detail", "hint")

    def __init__(self, level: int, sqlstate: str | None = None, message: str | None = None,
                 format: str | None = None, detail: str | None = None, hint: str | None = None):
        self.level, self.sqlstate, self.message, self.format = level, sqlstate, message, format
        self.detail, self.hint = detail, hint


class _Semantics:
    """PostgreSQL's functions as _PG_init() calls them (pgdl.elf.paths.Semantics)."""

    def __init__(self, obj: ElfObject, state: ProcessState, built_for: int):
        self.obj, self.state = obj, state
        self.vars = state.variables()
        self.error_level = 20 if built_for <= 13 else 21      # elog.h, see the module docstring
        self.defines: set[str] = set()
        self.consulted = False

    def variable(self, symbol: str) -> int | None:
        value = self.vars.get(symbol)
        self.consulted |= value is not None
        return value

    def result(self, token) -> int | None:
        return token if isinstance(token, int) else None

    def call(self, symbol: str, args: tuple, notes):
        report = notes if isinstance(notes, _Report) else None
        if symbol in ("errstart", "errstart_cold"):
            level = _const(args[0])
            if level is None:
                return True, None, None
            # errstart() returns true for ERROR and above; below, it depends on the log settings.
            return True, Known(Kind.RESULT, 1 if level >= self.error_level else None), _Report(level)
        if report is not None:
            if symbol == "errfinish":
                if report.level >= self.error_level:
                    return False, None, self._refusal(report)
                return True, None, None
            if symbol == "errcode":
                code = _const(args[0])
                return True, None, report.replace(sqlstate=unpack_sqlstate(code) if code is not None else None)
            if symbol in ("errmsg", "errmsg_internal"):
                fmt = self._string(args[0])
                return True, None, report.replace(format=fmt, message=self._format(fmt, args[1:]))
            if symbol in ("errhint", "errdetail", "errdetail_internal"):
                field = "hint" if symbol == "errhint" else "detail"
                return True, None, report.replace(**{field: self._format(self._string(args[0]), args[1:])})
        if symbol in _NORETURN:
            return False, None, notes
        if symbol in SETTING_DEFINERS:
            name = self._string(args[0])
            if name:
                self.defines.add(name)
            return True, None, notes
        if symbol == "GetConfigOption":
            return self._get_config_option(args, notes)
        return True, None, notes

    def _get_config_option(self, args: tuple, notes):
        name, missing_ok = self._string(args[0]), _const(args[1])
        if name is None or missing_ok is None:
            return True, None, notes
        exists = "." not in name or name in self.state.custom_settings or name in self.defines
        if exists:
            return True, Known(Kind.ADDRESS, -1), notes
        if missing_ok:
            return True, Known(Kind.CONST, 0), notes
        # guc.c GetConfigOption(): find_option() fails and missing_ok is false.
        error = PgError(UNDEFINED_OBJECT, f'unrecognized configuration parameter "{name}"')
        return False, None, Refusal(Severity.ERROR, error, 'unrecognized configuration parameter "%s"')

    def _refusal(self, report: _Report) -> Refusal:
        severity = Severity.FATAL if report.level > self.error_level else Severity.ERROR
        # errstart(): an ERROR without errcode() is ERRCODE_INTERNAL_ERROR.
        error = PgError(report.sqlstate or INTERNAL_ERROR, report.message, report.detail, report.hint)
        return Refusal(severity, error, report.format)

    def _string(self, v: Known | None) -> str | None:
        """The NUL-terminated string at an address of the module (at most 8 KiB)."""
        if v is None or v.kind is not Kind.ADDRESS or v.value < 0:
            return None
        out, at = b"", v.value
        while len(out) < 8192:
            try:
                chunk = self.obj.read_vaddr(at, 64)
            except ElfError:                 # near the end of its segment
                try:
                    chunk = self.obj.read_vaddr(at, 1)
                except ElfError:
                    return None
            end = chunk.find(b"\0")
            if end >= 0:
                return (out + chunk[:end]).decode("utf-8", "replace")
            out, at = out + chunk, at + len(chunk)
        return None

    def _format(self, fmt: str | None, args: tuple) -> str | None:
        """The text errmsg() makes of a format and the rest of the argument registers,
        when each conversion's value is a constant (%s of a string, %d of an integer)."""
        if fmt is None:
            return None
        out, values, k = [], list(args), 0
        while k < len(fmt):
            c = fmt[k]
            if c != "%":
                out.append(c)
                k += 1
                continue
            conv = fmt[k + 1:k + 2]
            k += 2
            if conv == "%":
                out.append("%")
                continue
            if not values:
                return None
            v = values.pop(0)
            if conv == "s":
                text = self._string(v)
                if text is None:
                    return None
                out.append(text)
            elif conv in ("d", "i", "u") and _const(v) is not None:
                n = _const(v) & 0xFFFFFFFF
                out.append(str(n if conv == "u" or n < 1 << 31 else n - (1 << 32)))
            else:
                return None
        return "".join(out)


def _const(v: Known | None) -> int | None:
    return v.value if v is not None and v.kind is Kind.CONST else None


def unpack_sqlstate(code: int) -> str:
    """elog.h PGUNSIXBIT: MAKE_SQLSTATE packs five characters six bits each."""
    return "".join(chr(((code >> (6 * k)) & 0x3F) + ord("0")) for k in range(5))
