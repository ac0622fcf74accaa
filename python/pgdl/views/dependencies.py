"""pgdl.dependencies(): the DT_NEEDED tree as the loader resolves it, breadth first."""

from __future__ import annotations

from ..errors import PgErrorRaised
from ..glibc.ldso import load_tree
from ..glibc.linkmap import Dependency, Found
from ..postgres.lookup import resolve
from ..record import Value
from ..server import Server
from .status import ERROR, OK, WARNING, Status

# What the search found, in the one status vocabulary (found_via tells "already loaded").
STATUS = {Found.OK: OK, Found.ALREADY_LOADED: OK, Found.SKIPPED: WARNING, Found.NOT_FOUND: ERROR, Found.ERROR: ERROR}


class DependencyRow(Value):
    """A row of pgdl.dependencies() (the SQL type pgdl.dependency)."""
    __slots__ = ("depth", "needed", "required_by", "path", "found_via", "status", "detail")

    def __init__(self, depth: int, needed: str, required_by: str | None, path: str | None, found_via: str,
                 status: Status, detail: str | None):
        self.depth = depth
        self.needed = needed
        self.required_by = required_by
        self.path = path
        self.found_via = found_via
        self.status = status
        self.detail = detail


def dependency_rows(name: str, server: Server) -> list[DependencyRow]:
    res = resolve(name, server)
    if res.error is not None:
        raise PgErrorRaised(res.error)
    return [_row(d) for d in load_tree(res.full_name, server).deps]


def _row(d: Dependency) -> DependencyRow:
    found_via = d.found_via or (str(d.status) if d.status is not Found.ERROR else "")
    return DependencyRow(d.depth, d.needed, d.required_by, d.path, found_via, STATUS[d.status], d.detail)
