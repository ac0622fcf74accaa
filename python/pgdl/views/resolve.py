"""pgdl.resolve(): the files the server tries for LOAD name, in its order."""

from __future__ import annotations

from .. import filestate
from ..errors import PgErrorRaised
from ..postgres.lookup import resolve
from ..record import Value
from ..server import Server

PASSED_ON = "not found: passed to the loader as given"


class Step(Value):
    """A row of pgdl.resolve() (the SQL type pgdl.resolution_step)."""
    __slots__ = ("step", "rule", "candidate", "file_exists", "regular_file", "chosen")

    def __init__(self, step: int, rule: str, candidate: str, file_exists: bool, regular_file: bool, chosen: bool):
        self.step = step
        self.rule = rule
        self.candidate = candidate
        self.file_exists = file_exists  # stat() succeeds
        self.regular_file = regular_file
        self.chosen = chosen


def resolve_rows(name: str, server: Server) -> list[Step]:
    """The lookup's candidates; the lookup's own error is raised."""
    res = resolve(name, server)
    if res.error is not None:
        raise PgErrorRaised(res.error)
    rows = [Step(c.step, c.rule, c.candidate, c.exists, c.regular_file, c.chosen) for c in res.candidates]
    if not res.found:
        st = filestate.state(res.full_name)
        rows.append(Step(len(rows) + 1, PASSED_ON, res.full_name, not st.error, st.is_regular, True))
    return rows
