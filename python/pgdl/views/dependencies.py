"""pgdl.dependencies(): the DT_NEEDED tree as the loader resolves it, breadth first."""

from __future__ import annotations

from ..errors import PgErrorRaised
from ..glibc.ldso import load_tree
from ..postgres.lookup import resolve
from ..server import Server


def dependency_rows(name: str, server: Server) -> list[tuple]:
    """(depth, needed, required_by, path, found_via, status, detail) rows."""
    res = resolve(name, server)
    if res.error is not None:
        raise PgErrorRaised(res.error)
    return [(d.depth, d.needed, d.required_by, d.path, d.found_via, str(d.status), d.detail)
            for d in load_tree(res.full_name, server).deps]
