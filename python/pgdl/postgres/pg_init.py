"""Whether a module's _PG_init() raises an error in the process that loads
it, decided from its own code and data (pgdl.elf.paths), never by running it.

Modules such as pg_cron, pgaudit, pglogical and pg_stat_kcache refuse unless
`process_shared_preload_libraries_in_progress` is true; sepgsql refuses when
`IsUnderPostmaster` is.  Their code reads the variable through its GOT slot,
branches on it, and on one side reaches ereport()/elog() at ERROR or FATAL:
errstart[_cold](level) -> errcode() -> errmsg[_internal]() -> errhint() ...
-> errfinish().  The walk follows _PG_init with the process's state known
(ProcessState) and reports the error it reaches, word for word where the
message is a constant string (or formatted from constants).

It also notes the custom settings the module defines (DefineCustom*Variable)
and reads (GetConfigOption): pg_stat_kcache reads pg_stat_statements.max,
which exists only once pg_stat_statements is loaded.

elog.h: ERROR is 20 and FATAL 21 up to PostgreSQL 13; WARNING_CLIENT_ONLY
(20) came in 14, so ERROR is 21 and FATAL 22 from 14 on.  ereport() calls
errstart_cold() for a constant level >= ERROR since 14, errstart() before.
PostgreSQL 12's errstart() also takes the file, line and function, before
the domain; the level is the first argument in every version.
"""

from __future__ import annotations

from .. import filestate, persist
from ..elf import ElfError, ElfObject, dynsym
from ..elf.paths import Ending, Kind, Known, walk
from ..elf.slots import symbol_slots
from ..errors import INTERNAL_ERROR, PgError
from ..record import Name, Value

UNDEFINED_OBJECT = "42704"


class ProcessState(Value):
    """What the process loading the module has, as _PG_init() can read it."""
    __slots__ = ("preload_in_progress", "under_postmaster", "custom_settings")

    def __init__(self, preload_in_progress: bool, under_postmaster: bool, custom_settings: frozenset = frozenset()):
        self.preload_in_progress = preload_in_progress   # the postmaster loading shared_preload_libraries
        self.under_postmaster = under_postmaster         # a backend (false in the postmaster)
        self.custom_settings = custom_settings           # custom settings (x.y) that exist, placeholders too

    def variables(self) -> dict[str, int]:
        return {"process_shared_preload_libraries_in_progress": int(self.preload_in_progress),
                "IsUnderPostmaster": int(self.under_postmaster),
                "IsPostmasterEnvironment": 1,
                "IsBinaryUpgrade": 0,
                "IsBackgroundWorker": 0,
                "process_shmem_requests_in_progress": 0}


class Severity(Name):
    ERROR = "ERROR"
    FATAL = "FATAL"


class Refusal(Value):
    """The error _PG_init() raises."""
    __slots__ = ("severity", "error", "format")

    def __init__(self, severity: Severity, error: PgError, format: str | None):
        self.severity = severity
        self.error = error          # message None: formatted at run time from values pgdl cannot know
        self.format = format        # errmsg's format string


class Verdict(Name):
    PASSES = "passes"               # no error on any path this process takes
    REFUSES = "refuses"             # every condition on the way to the error is known
    NOT_JUDGED = "not judged"       # an error may follow, under conditions pgdl cannot know


class PgInitCheck(Value):
    __slots__ = ("verdict", "refusal", "reason", "defines")

    def __init__(self, verdict: Verdict, refusal: Refusal | None = None, reason: str | None = None,
                 defines: frozenset = frozenset()):
        self.verdict = verdict
        self.refusal = refusal
        self.reason = reason        # why not judged
        self.defines = defines      # custom settings it defines on the way


class _Report(Value):
    """An ereport() in progress on one path."""
    __slots__ = ("level", "sqlstate", "message", "format", "detail", "hint")

    def __init__(self, level: int, sqlstate: str | None = None, message: str | None = None,
                 format: str | None = None, detail: str | None = None, hint: str | None = None):
        self.level, self.sqlstate, self.message, self.format = level, sqlstate, message, format
        self.detail, self.hint = detail, hint


_CHECKS = filestate.Memo(256)
_NORETURN = {"abort", "exit", "_exit", "proc_exit", "pg_re_throw", "ExceptionalCondition", "__stack_chk_fail",
             "__assert_fail", "siglongjmp", "longjmp"}
_STATE_VARIABLES = set(ProcessState(False, False).variables())
_DEFINES = {"DefineCustomBoolVariable", "DefineCustomIntVariable", "DefineCustomRealVariable",
            "DefineCustomStringVariable", "DefineCustomEnumVariable"}


def check_pg_init(obj: ElfObject, state: ProcessState, built_for: int) -> PgInitCheck | None:
    """None when the module has no _PG_init(); `built_for`: the major of the
    headers it was built with (its magic block), which fixes the error levels.
    A function of the module's file alone (and Capstone's decoding of it):
    kept across backends too."""
    def kept() -> PgInitCheck | None:
        file, decoder = filestate.state(obj.path), _decoder()
        key = (obj.path, file, state.preload_in_progress, state.under_postmaster,
               tuple(sorted(state.custom_settings)), built_for, decoder)
        rests_on = [file] if decoder[1] is None else [file, decoder[1]]
        return _KEPT.answer(key, rests_on, lambda: _check(obj, state, built_for))
    return _CHECKS.get((obj.path, obj.size, state, built_for), kept)


def _decoder() -> tuple:
    """Capstone's module file and its state, found without importing it."""
    import importlib.util
    spec = importlib.util.find_spec("capstone")
    origin = spec.origin if spec is not None and spec.origin else ""
    return origin, filestate.state(origin) if origin else None


def _plain(check: PgInitCheck | None):
    if check is None:
        return None
    refusal = check.refusal
    return (check.verdict.value,
            None if refusal is None else (refusal.severity.value, refusal.error._values(), refusal.format),
            check.reason, tuple(sorted(check.defines)))


def _unplain(plain) -> PgInitCheck | None:
    if plain is None:
        return None
    verdict, refusal, reason, defines = plain
    if refusal is not None:
        severity, error, format = refusal
        refusal = Refusal(Severity(severity), PgError(*error), format)
    return PgInitCheck(Verdict(verdict), refusal, reason, frozenset(defines))


_KEPT = persist.Kind("pg_init", _plain, _unplain)


def _check(obj: ElfObject, state: ProcessState, built_for: int) -> PgInitCheck | None:
    filestate.state(obj.path)
    try:
        init = dynsym.definition(obj, "_PG_init")
    except ElfError:
        return PgInitCheck(Verdict.NOT_JUDGED, reason="its symbol table cannot be read")
    if init is None:
        return None
    if not _worth_walking(obj, state):
        return PgInitCheck(Verdict.PASSES)
    sem = _Semantics(obj, state, built_for)
    try:
        with obj.reading():
            result = walk(obj, init.value, sem)
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


def _worth_walking(obj: ElfObject, state: ProcessState) -> bool:
    """Whether the code can depend on what the walk knows: it reads the
    process's state or a setting, or (at server start, where later libraries
    may read them) defines settings.  Most modules do none of these, and are
    not decoded at all."""
    try:
        imported = set(symbol_slots(obj).values())
    except ElfError:
        return True
    return bool(imported & _STATE_VARIABLES or "GetConfigOption" in imported
                or state.preload_in_progress and imported & _DEFINES)


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
        if symbol in _DEFINES:
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
