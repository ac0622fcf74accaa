"""GLIBC_TUNABLES as the server's loader reads them from its environment
(elf/dl-tunables.c): name=value items separated by ':'; a malformed item or
a value outside a tunable's range is ignored (the default stays)."""

from __future__ import annotations


def tunable(environ: dict[str, str], name: str, minimum: int = 0, maximum: int | None = None) -> int | None:
    """The value the server's environment gives tunable `name` (the last one
    given), or None: not given, not a number, or out of [minimum, maximum]."""
    found = None
    for item in environ.get("GLIBC_TUNABLES", "").split(":"):
        key, sep, value = item.partition("=")
        if key != name or not sep:
            continue
        try:
            number = int(value, 0)
        except ValueError:
            continue
        if number >= minimum and (maximum is None or number <= maximum):
            found = number
    return found
