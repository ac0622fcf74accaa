"""pgdl.dependencies(): the DT_NEEDED tree as the loader resolves it, breadth first."""

from __future__ import annotations

from ..engine.contexts import in_context
from ..errors import PgErrorRaised
from ..glibc.ldso import load_tree
from ..glibc.linkmap import Dependency, Found
from ..postgres.lookup import resolve
from ..server import Server
from .status import ERROR, OK, WARNING

# What the search found, in the one status vocabulary; found_via says "already loaded",
# "not found" or "skipped".
STATUS = {Found.OK: OK, Found.ALREADY_LOADED: OK, Found.SKIPPED: WARNING, Found.NOT_FOUND: ERROR, Found.ERROR: ERROR}


def dependency_rows(name: str, server: Server) -> list[Dependency]:
    """The rows of pgdl.dependencies() (the SQL type pgdl.dependency)."""
    server = in_context(server)
    res = resolve(name, server)
    if res.error is not None:
        raise PgErrorRaised(res.error)
    return [d.replace(status=STATUS[d.status], found_via=d.found_via or _unfound(d.status))
            for d in load_tree(res.full_name, server).deps]


def _unfound(status: Found) -> str:
    return "" if status is Found.ERROR else str(status)
