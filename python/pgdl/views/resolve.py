"""pgdl.resolve(): the files the server tries for LOAD name, in its order."""

from __future__ import annotations

from .. import filestate
from ..errors import PgErrorRaised
from ..postgres.lookup import resolve
from ..server import Server

PASSED_ON = "not found: passed to the loader as given"


def resolve_rows(name: str, server: Server) -> list[tuple]:
    """(step, rule, candidate, exists, regular_file, chosen) rows; the lookup's own error is raised."""
    res = resolve(name, server)
    if res.error is not None:
        raise PgErrorRaised(res.error)
    rows = [(c.step, c.rule, c.candidate, c.exists, c.regular_file, c.chosen) for c in res.candidates]
    if not res.found:
        st = filestate.state(res.full_name)
        rows.append((len(rows) + 1, PASSED_ON, res.full_name, not st.error, st.is_regular, True))
    return rows
