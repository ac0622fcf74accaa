"""Checks on SQL arguments before any work is done."""

from __future__ import annotations

from .errors import UserError

MAX_ARGUMENT = 1 << 20     # 1 MiB: far beyond any path, small enough to stay cheap


def check_name(name: str | None, what: str = "name") -> str:
    """A library name or path as LOAD takes it; NULL and absurd sizes are refused."""
    if name is None:
        raise UserError(f"{what} must not be NULL", sqlstate="22004")
    if len(name) > MAX_ARGUMENT:
        raise UserError(f"{what} is too long ({len(name)} characters, at most {MAX_ARGUMENT})",
                        sqlstate="22023")
    return name
