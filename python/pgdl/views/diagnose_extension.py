"""diagnose() of an extension: what CREATE EXTENSION would find (the one
checker, pgdl.postgres.extensions), then the story of each library it loads
and the entry point of each C function it declares."""

from __future__ import annotations

from ..engine.predict import predict_load
from ..postgres.extensions import CFunction, check_extension
from ..server import Server
from .diagnose_library import Finding, diagnose_library
from .status import ERROR, OK


def diagnose_extension(name: str, server: Server, installed_functions: list[CFunction] | None) -> list[Finding]:
    """installed_functions: the extension's C functions in this database, if it is created here."""
    ext = check_extension(name, server)
    if ext.error is not None:
        return [Finding("extension", ERROR, name, ext.error)]
    out = [Finding("extension", OK, name, f"control file {ext.control}")]
    if ext.version:
        if ext.script is not None:
            out.append(Finding("extension script", OK, ext.script, f"install script for default version {ext.version}"))
        elif ext.installable:
            out.append(Finding("extension script", OK, ext.script_dir,
                               f"default version {ext.version} is installed through update scripts"))
        else:
            out.append(Finding("extension script", ERROR, ext.script_dir,
                               f"no install script or update path for default version {ext.version} in "
                               f"{ext.script_dir}", f"Install the {name} extension's scripts for {ext.version}."))
    else:
        out.append(Finding("extension script", ERROR, ext.control, "no default_version in the control file"))
    for req in ext.requires:
        out.append(Finding("requires", OK if req.available else ERROR, req.name,
                           f"required extension {req.name}: " + ("available" if req.available
                                                                 else f"{req.control} missing"),
                           None if req.available else f"Install the {req.name} extension first."))
    functions = installed_functions or ext.script_functions()
    libraries = sorted({f.library for f in functions} | ({ext.module} if ext.module else set()))
    for library in libraries:
        findings = diagnose_library(library, server)
        if findings[-1].status is ERROR:
            return out + findings
        # One verdict for the extension, at the end; this one speaks for one library.
        out += findings[:-1] + [Finding("library", OK, library, findings[-1].message)]
    for f in functions:
        if not predict_load(f.library, server, f.symbol).will_load:
            out += [x for x in diagnose_library(f.library, server, f.symbol, label=f.signature)
                    if x.topic in ("entry point", "verdict")]
            return out
    if functions:
        out.append(Finding("entry points", OK, name, f"all {len(functions)} C functions have their symbols"))
    out.append(Finding("verdict", OK, name, f"CREATE EXTENSION {name} will load its libraries"))
    return out
