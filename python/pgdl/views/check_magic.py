"""check_magic(): resolve a name as LOAD would, read the magic block, compare."""

from __future__ import annotations

import os

from ..elf import ElfError, cached_elf
from ..errors import PgError
from ..postgres.magic import (MagicBlock, MagicField, MagicNotFound, compare_fields, judge,
                    missing_magic_error, read_magic, server_block_bytes, server_layout_length)
from .. import filestate
from ..glibc.openfile import module_file_failure
from ..postgres.dfmgr import access_error, dlopen_error
from ..record import Name, Record, Value
from ..postgres.lookup import resolve
from ..server import Server


class MagicReport(Record):
    """check_magic(): the module's magic block field by field, and the verdict."""
    __slots__ = ("libname", "fields", "block", "error", "note")

    def __init__(self, libname: str | None, fields: list[MagicField] | None = None,
                 block: MagicBlock | None = None, error: PgError | None = None, note: str | None = None):
        self.libname = libname          # the expanded name the server would use
        self.fields = [] if fields is None else fields
        self.block = block
        self.error = error              # what LOAD would raise at or before the magic check
        self.note = note                # why the block could not be judged, if so

    @property
    def accepted(self) -> bool:
        return self.error is None and self.note is None


def check_magic(name: str, server: Server) -> MagicReport:
    res = resolve(name, server)
    if res.error is not None:
        return MagicReport(None, error=res.error)
    libname = res.full_name
    report = MagicReport(libname)
    st = filestate.state(libname)
    if st.error:
        report.error = access_error(libname, st.error, server.major)
        return report
    failure = module_file_failure(libname, server)
    if failure is not None:
        report.error = dlopen_error(libname, failure.dlerror, failure.errno or res.last_errno, server.major)
        return report
    try:
        obj = cached_elf(libname)
    except (ElfError, OSError) as exc:
        report.note = f"not a loadable ELF file: {_reason(exc)}"
        return report
    major = server.major
    srv = server.server_magic()
    try:
        block = read_magic(obj)
    except MagicNotFound:
        report.fields = [MagicField("magic block", "missing", "present", False)]
        report.error = missing_magic_error(libname)
        return report
    except ElfError as exc:
        report.note = f"the magic block could not be read: {exc}"
        return report
    report.block = block
    report.fields = compare_fields(block, srv, server_layout_length(major, server.elf_class))
    report.error = judge(block, srv, server_block_bytes(srv, major, server.elf_class), libname, major)
    return report


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return os.strerror(exc.errno or 0) if exc.errno else str(exc)
    return str(exc)


class Verdict(Name):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    NOT_JUDGED = "not judged"


class MagicCheck(Value):
    """A row of pgdl.check_magic() (the SQL type pgdl.magic_check): one field of the
    magic block against the server's, and the verdict on the whole block."""
    __slots__ = ("field", "library_value", "server_value", "matches", "verdict", "sqlstate", "message", "detail",
                 "hint")

    def __init__(self, field: str | None, library_value: str | None, server_value: str | None,
                 matches: bool | None, verdict: Verdict, sqlstate: str | None = None, message: str | None = None,
                 detail: str | None = None, hint: str | None = None):
        self.field = field              # None: no field could be read (the verdict says why)
        self.library_value = library_value
        self.server_value = server_value
        self.matches = matches
        self.verdict = verdict
        self.sqlstate = sqlstate        # what LOAD would raise at or before the magic check
        self.message = message          # ... or why the block could not be judged
        self.detail = detail
        self.hint = hint


def check_magic_rows(name: str, server: Server) -> list[MagicCheck]:
    """One row per field of the block (at least one), each with the verdict."""
    report = check_magic(name, server)
    e = report.error
    if e is not None:
        verdict = (Verdict.REJECTED, e.sqlstate, e.message, e.detail, e.hint)
    elif report.note is not None:
        verdict = (Verdict.NOT_JUDGED, None, report.note, None, None)
    else:
        verdict = (Verdict.ACCEPTED, None, None, None, None)
    fields = [(f.field, f.library_value, f.server_value, f.matches) for f in report.fields] or \
        [(None, None, None, None)]
    return [MagicCheck(*field, *verdict) for field in fields]
