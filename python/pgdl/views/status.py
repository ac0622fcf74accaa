"""The one status vocabulary of every view's rows."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


OK, WARNING, ERROR = Status.OK, Status.WARNING, Status.ERROR
