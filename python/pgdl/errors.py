"""PostgreSQL errors as values: what the server would report."""

from __future__ import annotations

from .record import Value


# SQLSTATEs used by the code paths pgdl simulates (src/backend/utils/errcodes.txt).
INTERNAL_ERROR = "XX000"
UNDEFINED_FILE = "58P01"
UNDEFINED_FUNCTION = "42883"
INVALID_NAME = "42602"
INSUFFICIENT_PRIVILEGE = "42501"
WRONG_OBJECT_TYPE = "42809"
OBJECT_NOT_IN_PREREQUISITE_STATE = "55000"
INVALID_PARAMETER_VALUE = "22023"
IO_ERROR = "58030"
FEATURE_NOT_SUPPORTED = "0A000"


class PgError(Value):
    """An error as the server reports it: SQLSTATE, message, detail, hint."""
    __slots__ = ("sqlstate", "message", "detail", "hint")

    def __init__(self, sqlstate: str | None, message: str, detail: str | None = None,
                 hint: str | None = None):
        self.sqlstate = sqlstate        # None: the client loses the connection instead
        self.message = message
        self.detail = detail
        self.hint = hint


def error_lines(severity: str, message: str, detail: str | None = None, hint: str | None = None) -> str:
    """An error as the server's log and libpq (default verbosity) print it, the last newline left out."""
    return f"{severity}:  {message}" + (f"\nDETAIL:  {detail}" if detail else "") + (f"\nHINT:  {hint}" if hint else "")


# libpq's words when the backend dies under the client (there is no SQLSTATE).
CONNECTION_LOST = "server closed the connection unexpectedly"


def backend_dies(how: str, hint: str) -> PgError:
    """What the client of a backend that the load kills gets; `how` says how it dies."""
    return PgError(None, CONNECTION_LOST, f"{how} The postmaster then restarts and every session is ended.", hint)


class PgErrorRaised(Exception):
    """The simulated server code path raises this error."""

    def __init__(self, error: PgError):
        super().__init__(error.message)
        self.error = error


class UserError(Exception):
    """Bad input to a pgdl function; becomes a clean SQL error."""

    def __init__(self, message: str, hint: str | None = None, sqlstate: str = INVALID_PARAMETER_VALUE):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.sqlstate = sqlstate


def errcode_for_file_access(err: int, major: int = 15) -> str:
    """The SQLSTATE elog.c's errcode_for_file_access() picks for an errno.

    ENOMEM maps to 53200 since PostgreSQL 14, ENAMETOOLONG to 58P03 since 18.
    """
    import errno
    if err == errno.ENOMEM and major >= 14:
        return "53200"
    if err == errno.ENAMETOOLONG and major >= 18:
        return "58P03"
    if err in (errno.EPERM, errno.EACCES, errno.EROFS):
        return INSUFFICIENT_PRIVILEGE
    if err == errno.ENOENT:
        return UNDEFINED_FILE
    if err == errno.EEXIST:
        return "58P02"
    if err in (errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY):
        return WRONG_OBJECT_TYPE
    if err == errno.ENOSPC:
        return "53100"
    if err in (errno.ENFILE, errno.EMFILE):
        return "53000"
    if err == errno.EIO:
        return IO_ERROR
    return INTERNAL_ERROR
