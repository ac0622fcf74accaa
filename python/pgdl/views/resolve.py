"""pgdl.resolve(): the files the server tries for LOAD name, in its order."""

from __future__ import annotations

from .. import filestate
from ..errors import PgErrorRaised
from ..postgres.lookup import Candidate, resolve
from ..server import Server

PASSED_ON = "not found: passed to the loader as given"


def resolve_rows(name: str, server: Server) -> list[Candidate]:
    """The lookup's candidates, and the name passed on if none is found; the lookup's own error is raised."""
    res = resolve(name, server)
    if res.error is not None:
        raise PgErrorRaised(res.error)
    if res.found:
        return res.candidates
    st = filestate.state(res.full_name)
    return res.candidates + [Candidate(len(res.candidates) + 1, PASSED_ON, res.full_name, not st.error,
                                       st.is_regular, True)]
