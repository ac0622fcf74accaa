"""check_magic(): resolve a name as LOAD would, read the magic block, compare."""

from __future__ import annotations

import os

from ..elf import ElfError, cached_elf
from ..errors import PgError
from ..postgres.magic import (MagicBlock, MagicField, MagicNotFound, compare_fields, judge,
                    missing_magic_error, read_magic, server_block_bytes, server_layout_length)
from ..glibc.openfile import access_error, check_module_file
from ..record import Record
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
    try:
        os.stat(libname)
    except OSError as exc:
        report.error = access_error(libname, exc.errno or 0, server.major)
        return report
    report.error, _ = check_module_file(libname, server, res.last_errno)
    if report.error is not None:
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
