"""The one status vocabulary of every view's rows."""

from __future__ import annotations

from ..record import Name


class Status(Name):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


OK, WARNING, ERROR = Status.OK, Status.WARNING, Status.ERROR
