"""diagnose(target): what a DBA types — a C function signature, an extension
name or a library name or path — told as a story (diagnose_library,
diagnose_extension).  The database's catalog is the adapter's: it answers
through a Catalog."""

from __future__ import annotations

import os
import re
from typing import Protocol

from .. import filestate
from ..errors import UNDEFINED_FUNCTION, UserError
from ..postgres.extensions import CFunction, control_directory
from ..server import Server
from .diagnose_extension import diagnose_extension
from .diagnose_library import Finding, diagnose_library

SIGNATURE = re.compile(r"^\s*[\w.\"$]+\s*\(.*\)\s*$", re.DOTALL)


class Catalog(Protocol):
    def function(self, signature: str) -> tuple[CFunction, str] | None:
        """The function a signature names (as the caller's search_path finds it) and the
        name of its language; UserError if the signature is not valid."""

    def extension_functions(self, extension: str) -> list[CFunction]:
        """The C functions of an extension created in this database (none if it is not)."""


def diagnose(name: str, text: str | None, server: Server, catalog: Catalog) -> list[Finding]:
    """name: the target as the bytes the server would use; text: the same as
    text of the database's encoding (None if it is not text there)."""
    if text is not None and SIGNATURE.match(text):
        return _diagnose_function(name, text, server, catalog)
    if text is not None and "/" not in name \
            and filestate.state(os.path.join(control_directory(server), f"{name}.control")).is_regular:
        return diagnose_extension(name, server, catalog.extension_functions(text) or None)
    return diagnose_library(name, server)


def _diagnose_function(name: str, signature: str, server: Server, catalog: Catalog) -> list[Finding]:
    found = catalog.function(signature)
    if found is None:
        raise UserError(f"function {name} does not exist", sqlstate=UNDEFINED_FUNCTION,
                        hint="Give a function signature with argument types, e.g. dblink_connect(text).")
    function, language = found
    if language != "c":
        raise UserError(f"function {function.signature} is written in {language}, not C",
                        hint="pgdl diagnoses C-language functions and the libraries they live in.")
    return diagnose_library(function.library, server, function.symbol, label=function.signature)
