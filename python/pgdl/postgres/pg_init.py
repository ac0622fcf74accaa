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

import os

from .. import filestate, persist
from ..elf import ElfError, ElfObject, dynsym
from ..elf.slots import symbol_slots
from ..errors import PgError
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


_CHECKS = filestate.Memo(256)
_STATE_VARIABLES = set(ProcessState(False, False).variables())
SETTING_DEFINERS = {"DefineCustomBoolVariable", "DefineCustomIntVariable", "DefineCustomRealVariable",
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
        return _KEPT.answer(key, [file, *(s for _f, s in decoder)], lambda: _check(obj, state, built_for))
    return _CHECKS.get((obj.path, obj.size, state, built_for), kept)


# Where the decoder's library may be: Debian's python3-capstone loads libcapstone.so.4
# through the loader; a wheel carries its own beside the module.
_DECODER_DIRECTORIES = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/usr/lib",
                        "/usr/local/lib")


def _decoder() -> tuple:
    """What decodes the walk, found without importing it (once a call): Capstone's
    module and every libcapstone file where it may be loaded from, with their states."""
    memo = filestate.this_call()
    found = memo.get("decoder")
    if found is None:
        import glob
        import importlib.util
        spec = importlib.util.find_spec("capstone")
        files = [spec.origin] if spec is not None and spec.origin else []
        places = [*_DECODER_DIRECTORIES, *(os.path.join(os.path.dirname(f), "lib") for f in files)]
        files += sorted(f for d in places for f in glob.glob(os.path.join(d, "libcapstone.so*")))
        found = memo["decoder"] = tuple((f, filestate.state(f)) for f in [*files, *places])   # a libcapstone added
    return found


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
    from .pg_init_walk import judge      # Capstone and the walker, only for the few modules worth walking
    return judge(obj, init.value, state, built_for)


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
                or state.preload_in_progress and imported & SETTING_DEFINERS)
