"""diagnose() of an extension: what CREATE EXTENSION would find (the one
checker, pgdl.postgres.extensions), then the story of each library it loads
and the entry point of each C function it declares."""

from __future__ import annotations

from ..engine.predict import predict_load
from ..errors import INVALID_PARAMETER_VALUE, error_lines
from ..postgres.extensions import check_extension, check_update, create_permission_error
from ..server import CFunction, Server
from .diagnose_library import Finding, diagnose_library
from .extension_update import update_story
from .status import ERROR, OK, WARNING


def diagnose_extension(name: str, server: Server, installed_functions: list[CFunction] | None,
                       here: Server | None = None, installed_version: str | None = None) -> list[Finding]:
    """installed_functions: the extension's C functions in this database, if it is created here,
    and installed_version its version; here: this session, when the question is about another process."""
    ext = check_extension(name, server)
    if ext.error is not None:
        return [Finding("extension", ERROR, name, ext.error)]
    out = [Finding("extension", OK, name, f"control file {ext.control}")]
    role = server.role
    denied = create_permission_error(ext, server.is_superuser, role.can_create if role else False, server.major) \
        if installed_functions is None else None
    if denied is not None:
        # One finding: the rest is still judged.
        out.append(Finding("privilege", ERROR, name, f"{denied.message} (for role {role.name if role else '?'})",
                           denied.hint))
    elif not server.is_superuser and ext.trusted and installed_functions is None:
        out.append(Finding("privilege", OK, name, "a trusted extension: its script runs as the bootstrap superuser"))
    # CREATE EXTENSION's script creates the C functions, whose validator loads
    # the libraries, as a superuser (a trusted extension's script runs as one).
    server = server.replace(is_superuser=True)
    here = here.replace(is_superuser=True) if here is not None else None
    if ext.version:
        if ext.script is not None:
            out.append(Finding("extension script", OK, ext.script, f"install script for default version {ext.version}"))
        elif ext.installable:
            out.append(Finding("extension script", OK, ext.script_dir,
                               f"default version {ext.version} is installed through update scripts"))
        elif ext.alias_of is not None:
            return out + [Finding("extension script", ERROR, ext.script_dir, ext.alias_note,
                                  f"CREATE EXTENSION {ext.alias_of}"),
                          Finding("verdict", ERROR, name, f'CREATE EXTENSION "{name}" will fail with SQLSTATE '
                                  f"{INVALID_PARAMETER_VALUE}:\n" + error_lines("ERROR", ext.not_installable))]
        else:
            out.append(Finding("extension script", ERROR, ext.script_dir,
                               f"no install script or update path for default version {ext.version} in "
                               f"{ext.script_dir}: CREATE EXTENSION fails: {ext.not_installable}",
                               f"Install the {name} extension's scripts for {ext.version}."))
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
        findings = diagnose_library(library, server, elsewhere=here)
        if findings[-1].status is ERROR:
            return out + findings[:-1] + [_for_extension(name, findings[-1])]
        # One verdict for the extension, at the end; this one speaks for one library.
        out += findings[:-1] + [Finding("library", findings[-1].status, library, findings[-1].message)]
    for f in functions:
        if predict_load(f.library, server, f.symbol).will_load is False:
            *entry, verdict = [x for x in diagnose_library(f.library, server, f.symbol, label=f.signature)
                               if x.topic in ("entry point", "verdict")]
            return out + entry + [_for_extension(name, verdict)]
    if functions:
        out.append(Finding("entry points", OK, name, f"all {len(functions)} C functions have their symbols"))
    update = check_update(ext, installed_version, server, predict_load) if installed_version else None
    if update is not None:
        status, message, hint = update_story(update)
        out.append(Finding("update", status, name, message, hint))
        if update.error is not None:
            e = update.error
            out.append(Finding("verdict", ERROR, name, f"its libraries load, but ALTER EXTENSION {name} UPDATE "
                               f"will fail with SQLSTATE {e.sqlstate}:\n"
                               + error_lines("ERROR", e.message, e.detail, e.hint)))
            return out
    if denied is not None:
        e = denied
        out.append(Finding("verdict", ERROR, name, f"CREATE EXTENSION {name} will fail with SQLSTATE {e.sqlstate}:\n"
                           f"ERROR:  {e.message}\nHINT:  {e.hint}"))
        return out
    unsure = any(f.status is WARNING and f.topic in ("_PG_init", "library") for f in out)
    out.append(Finding("verdict", WARNING if unsure else OK, name,
                       f"CREATE EXTENSION {name} will load its libraries"
                       + (" unless a _PG_init() that could not be judged refuses" if unsure else "")))
    return out


def _for_extension(name: str, verdict: Finding) -> Finding:
    """A library's verdict, said of the CREATE EXTENSION that loads it."""
    return verdict.replace(subject=name, message=f"CREATE EXTENSION {name}: {verdict.message}")
