"""Checks on SQL arguments before any work is done."""

from __future__ import annotations

from ..errors import UserError

MAX_ARGUMENT = 1 << 20     # 1 MiB: far beyond any path, small enough to stay cheap
# What a blank target is made of: ASCII white space, as the SQL domain
# pgdl.target (sql/pgdl--0.8.0--0.9.0.sql) trims it.
BLANK = " \t\n\r\f\v"


def name_argument(value: str | None, what: str = "name") -> str:
    """A library name, path or symbol as the SQL functions send it — its bytes
    in the database's encoding, in hexadecimal (pgdl._bytes()) — as the str
    that holds those bytes (pgdl.servertext).  NULL, absurd sizes and
    anything but hexadecimal are refused."""
    if value is None:
        raise UserError(f"{what} must not be NULL", sqlstate="22004")
    if len(value) > 2 * MAX_ARGUMENT:             # two hexadecimal digits a byte
        raise UserError(f"{what} is too long ({len(value) // 2} bytes, at most {MAX_ARGUMENT})",
                        sqlstate="22023")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise UserError(f"{what} must be given as its bytes in hexadecimal (pgdl._bytes)",
                        sqlstate="22023") from None
    return raw.decode("utf-8", "surrogateescape")


def target_argument(name: str) -> str:
    """What diagnose and explain are asked about: anything but blank (for SQL
    callers the domain pgdl.target has refused it already, in their frame)."""
    if not name.strip(BLANK):
        raise UserError("target must name an extension, a library or a C function", sqlstate="22023",
                        hint="Name an extension, a library (name or path) or a C function, e.g. dblink.")
    return name
