"""Letting the server stop a call: statement_timeout, pg_cancel_backend(),
pg_terminate_backend().

A backend acts on a cancel or terminate request only where its code checks
for interrupts, and Python code never does.  The adapter installs a `poll`
that lets the server check (pgdl.backend runs a trivial prepared query: the
executor checks first thing); the core calls check() at regular points of
its work — per file opened, per dependency, per few thousand symbols — and
check() polls at most every INTERVAL seconds, so the checks cost nothing
measurable and a request takes effect within INTERVAL plus the longest
stretch between two checks (a few milliseconds).

The core never catches what a poll raises: the adapter's poll raises
Interrupted, a BaseException, which no `except Exception` stops.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

INTERVAL = 0.05     # seconds between polls: far below the 1 s a DBA may wait

_poll = None
_next = 0.0


class Interrupted(BaseException):
    """The server cancelled the statement (SQLSTATE and message as it reports them)."""

    def __init__(self, sqlstate: str, message: str):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message


def check() -> None:
    """Let the server act on a pending cancel or terminate request (cheap: see INTERVAL)."""
    global _next
    if _poll is not None:
        now = time.monotonic()
        if now >= _next:
            _next = now + INTERVAL
            _poll()


@contextmanager
def polling(poll):
    """check() calls `poll` inside the block (one call of a SQL function)."""
    global _poll, _next
    previous = _poll
    _poll, _next = poll, time.monotonic() + INTERVAL
    try:
        yield
    finally:
        _poll = previous
