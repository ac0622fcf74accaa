"""What binding a dlopen() finds wrong: the problems and the one glibc reports."""

from __future__ import annotations


from ..errors import PgError, backend_dies
from ..record import Name, Record
from .linkmap import LinkMap


class Problem(Name):
    VERSION = "version"                 # a version requirement no provider defines (dl-version.c)
    UNDEFINED = "undefined"             # a symbol reference nothing defines (dl-lookup.c)
    RELOCATION = "relocation"           # a relocation type the loader does not know (dl-machine.h)
    STATIC_TLS = "static TLS"           # initial-exec TLS that no longer fits (dl-tls.c)
    ISA_LEVEL = "ISA level"             # x86-64 ISA level above this CPU's (sysdeps/x86/dl-prop.h)
    ASSERTION = "ld.so assertion"       # ld.so aborts the process (exit 127): the backend dies
    PROTECTION = "memory protection"    # PT_GNU_RELRO's mprotect() fails (dl-reloc.c)


class BindingProblem(Record):
    """A version requirement or symbol reference dlopen() cannot satisfy.

    With neither symbol nor version, pgdl could not read a table it needs:
    dlerror says which, in place of glibc's text."""
    __slots__ = ("kind", "symbol", "version", "required_by", "wanted_from", "dlerror", "why", "errno", "certain")

    def __init__(self, kind: Problem, symbol: str | None, version: str | None, required_by: str,
                 wanted_from: str | None, dlerror: str, why: str | None = None, errno: int = 0,
                 certain: bool = True):
        self.kind = kind
        self.symbol = symbol            # the undefined symbol (None for a version problem)
        self.version = version          # the version wanted, if any
        self.required_by = required_by  # path of the object that needs it
        self.wanted_from = wanted_from  # the SONAME a version is required from (VERNEED file)
        self.dlerror = dlerror          # glibc's text for this problem
        self.why = why                  # for an assertion or a memory problem: what in the file causes it
        self.errno = errno              # glibc's error code (0: none, dlerror adds no strerror)
        self.certain = certain          # False: happens or not depending on where the kernel maps things


class BindResult(Record):
    """Every binding problem of one dlopen(), and the one glibc reports."""
    __slots__ = ("problems", "error", "errno")

    def __init__(self, problems: list[BindingProblem] | None = None, error: str | None = None,
                 errno: int = 0):
        self.problems = [] if problems is None else problems
        self.error = error              # the dlerror() glibc reports: the first problem in its order
        self.errno = errno              # errcode 0: dlopen leaves errno unspecified


# What to do about a file ld.so cannot make sense of.
DAMAGED_FILE_HINT = "The file is damaged or was not linked for this architecture: rebuild or reinstall it."


def assertion_crash(libname: str, problem: BindingProblem) -> PgError:
    """What the client sees when ld.so aborts the backend (exit code 127)."""
    if problem.why is not None:
        return backend_dies(
            f"The dynamic linker aborts the backend (exit code 127) while {libname} is loaded: {problem.why}. "
            f"The server log says: {problem.dlerror}", DAMAGED_FILE_HINT)
    return backend_dies(
        f"The dynamic linker aborts the backend (exit code 127) while {libname} is loaded: "
        f"{problem.required_by} wants {problem.symbol} at version {problem.version} of {problem.wanted_from}, "
        f"whose copy found has no version information. The server log says: {problem.dlerror}",
        f"Install the {problem.wanted_from} the module was built against (one with symbol versions), "
        "or rebuild the module against the copy the server finds.")


def l_name(m: LinkMap) -> str:
    """The name glibc's messages give an object: its l_name, the executable's path."""
    return m.name or (m.obj.path if m.obj else "")
