"""What the catalog and the extension files say: C functions and control files."""

from __future__ import annotations

import re

from ..record import Value


class CFunction(Value):
    """A LANGUAGE C function: pg_proc's signature, probin (library) and prosrc (symbol)."""
    __slots__ = ("signature", "library", "symbol")

    def __init__(self, signature: str, library: str, symbol: str):
        self.signature = signature
        self.library = library
        self.symbol = symbol


def read_control(path: str) -> dict[str, str]:
    """A control file's parameters (the same simple name = 'value' syntax as postgresql.conf)."""
    params = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f.read(1 << 20).splitlines():
            m = re.match(r"\s*(\w+)\s*=?\s*(?:'((?:[^']|'')*)'|([^\s#]+))", line)
            if m:
                params[m.group(1)] = (m.group(2).replace("''", "'") if m.group(2) is not None else m.group(3))
    return params


C_FUNCTION = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+([\w.\"]+)\s*\(([^)]*)\)(.*?);", re.IGNORECASE | re.DOTALL)
AS_CLAUSE = re.compile(r"AS\s+'([^']*)'\s*(?:,\s*'([^']*)')?", re.IGNORECASE)
LANGUAGE_C = re.compile(r"LANGUAGE\s+'?C'?\b", re.IGNORECASE)


def c_functions_in_script(text: str, module_pathname: str | None) -> list[CFunction]:
    out = []
    for m in C_FUNCTION.finditer(text):
        name, args, rest = m.group(1), m.group(2), m.group(3)
        if not LANGUAGE_C.search(rest):
            continue
        a = AS_CLAUSE.search(rest)
        if not a:
            continue
        library = a.group(1).replace("MODULE_PATHNAME", module_pathname or "MODULE_PATHNAME")
        symbol = a.group(2) or name.split(".")[-1].strip('"')
        out.append(CFunction(f"{name}({' '.join(args.split())})", library, symbol))
    return out
