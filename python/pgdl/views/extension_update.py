"""ALTER EXTENSION name UPDATE told for a DBA (diagnose and audit say it alike)."""

from __future__ import annotations

import os

from ..postgres.extensions import UpdateCheck
from .status import ERROR, OK, Status


def update_story(check: UpdateCheck) -> tuple[Status, str, str | None]:
    """(status, message, hint) of one extension's update to its default version."""
    what = f"ALTER EXTENSION {check.name} UPDATE (from {check.start} to {check.target})"
    if check.error is None:
        via = ", ".join(os.path.basename(s) for s in check.scripts)
        return OK, f"{what} finds every C function its scripts declare ({via})", None
    if check.failing is None:
        return ERROR, f"{what} fails: {check.error.message}", \
            f"Install the {check.name} update scripts for {check.target}, or stay on {check.start}."
    return (ERROR, f"{what} fails where {check.failing} is created: {check.error.message}",
            f"Install the library of {check.name} {check.target} (the package that ships these scripts ships it "
            f"too: a half-upgraded package?), restart sessions that loaded the old one, then update.")
