"""diagnose(): the whole story for an extension, a library or a C function,
in the order a person reads it:

  resolution -> file access -> ELF -> magic -> dependencies -> symbols ->
  entry points -> verdict (with the server's predicted error)
"""

from __future__ import annotations

import os
import pwd
import grp
import stat

from ..postgres.extensions import CFunction, c_functions_in_script, read_control
from ..elf import ElfError, cached_elf
from .. import interrupts
from .explain import Copies, providers_of
from ..engine.predict import Prediction, predict_load
from ..record import Value
from ..server import Server

OK, WARNING, ERROR = "ok", "warning", "error"


class Finding(Value):
    """One row of pgdl.diagnose()."""
    __slots__ = ("check", "status", "subject", "detail", "hint")

    def __init__(self, check: str, status: str, subject: str | None, detail: str | None = None,
                 hint: str | None = None):
        self.check = check
        self.status = status
        self.subject = subject
        self.detail = detail
        self.hint = hint


# -- libraries ---------------------------------------------------------------

def diagnose_library(name: str, server: Server, symbol: str | None = None, label: str | None = None) -> list[Finding]:
    p = predict_load(name, server, symbol)
    out: list[Finding] = []
    out += _resolution(name, p)
    if p.stage not in ("privilege", "lookup"):
        out += _file_access(p)
    if p.module is not None or p.stage in ("elf",):
        out += _elf(p, server)
    out += _magic(p)
    out += _dependencies(p)
    out += _symbols(p, server)
    if symbol is not None:
        out += _entry_point(p, symbol)
    out.append(_verdict(p, label or (f"{name}, {symbol}" if symbol else name)))
    return out


def _resolution(name: str, p: Prediction) -> list[Finding]:
    if p.stage == "privilege":
        return [Finding("privilege", ERROR, name, p.error.message,
                        "Only superusers may LOAD libraries outside $libdir/plugins/ or create C functions.")]
    res = p.resolution
    tried = ", ".join(c.candidate for c in res.candidates) or "nothing"
    if res.error is not None:
        return [Finding("resolution", ERROR, name, res.error.message, "Fix dynamic_library_path or the name.")]
    if res.found:
        return [Finding("resolution", OK, p.libname, f"{name} resolves to {p.libname} (tried: {tried})")]
    return [Finding("resolution", ERROR, name, f"no file found for {name!r} (tried: {tried}); "
                    "the name is passed on unchanged",
                    "Install the library into $libdir (pg_config --pkglibdir) or add its directory to "
                    "dynamic_library_path.")]


def _file_access(p: Prediction) -> list[Finding]:
    path = p.libname
    blocked = _untraversable_parent(path)
    if blocked is not None:
        directory, st = blocked
        return [Finding("file access", ERROR, directory,
                        f"the server's OS user ({_user()}) cannot search directory {directory} "
                        f"(owner {_owner(st)}, mode {stat.filemode(st.st_mode)})",
                        f"Grant search permission: chmod o+x {directory} (or make the server's user a member "
                        "of its group).")]
    try:
        st = os.stat(path)
    except OSError as exc:
        dangling = os.path.islink(path)
        what = "dangling symbolic link" if dangling else os.strerror(exc.errno or 0)
        return [Finding("file access", ERROR, path, f"{path}: {what}")]
    if stat.S_ISDIR(st.st_mode):
        return [Finding("file access", ERROR, path, f"{path} is a directory, not a library")]
    if not stat.S_ISREG(st.st_mode):
        return [Finding("file access", ERROR, path, f"{path} is not a regular file ({stat.filemode(st.st_mode)})")]
    if not os.access(path, os.R_OK):
        return [Finding("file access", ERROR, path,
                        f"the server's OS user ({_user()}) cannot read {path} "
                        f"(owner {_owner(st)}, mode {stat.filemode(st.st_mode)})",
                        f"chmod a+r {path}")]
    return [Finding("file access", OK, path, f"readable by {_user()} ({st.st_size} bytes)")]


def _untraversable_parent(path: str):
    directory = os.path.dirname(os.path.abspath(path))
    parts = []
    while True:
        parts.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for d in reversed(parts):
        try:
            st = os.stat(d)
        except OSError:
            return None
        if not os.access(d, os.X_OK):
            return d, st
    return None


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _owner(st: os.stat_result) -> str:
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{user}:{group}"


def _elf(p: Prediction, server: Server) -> list[Finding]:
    if p.stage == "elf" and p.error is not None:
        return [Finding("elf", ERROR, p.libname, p.error.message.split(": ", 1)[-1])]
    obj = p.module
    if obj is None:
        return []
    return [Finding("elf", OK, p.libname, f"{obj.class_name} shared object for {obj.machine_name}"
                    + (f", SONAME {obj.soname}" if obj.soname else ""))]


def _magic(p: Prediction) -> list[Finding]:
    if p.stage == "magic" and p.error is not None:
        hint = p.error.hint or "Rebuild the module against this server's headers (pg_config --includedir-server)."
        detail = p.error.message + (f" ({p.error.detail})" if p.error.detail else "")
        return [Finding("magic", ERROR, p.libname, detail, hint)]
    if p.magic is not None:
        return [Finding("magic", OK, p.libname, f"built for PostgreSQL {p.magic.major_text}, matches this server")]
    return []


def _dependencies(p: Prediction) -> list[Finding]:
    if p.tree is None:
        return []
    out = []
    for dep in p.tree.deps[1:]:
        status = OK if dep.status.loads else ERROR
        detail = f"{dep.needed} -> {dep.path or 'not found'} ({dep.found_via})"
        if dep.detail:
            detail += f"; {dep.detail}"
        hint = None
        if status == ERROR:
            hint = ("Install the library, or make it findable for the server: set LD_LIBRARY_PATH in the "
                    "service environment, add its directory to /etc/ld.so.conf.d and run ldconfig, or "
                    "link the module with an rpath.")
        out.append(Finding("dependency", status, dep.needed, detail, hint))
    return out


def _symbols(p: Prediction, server: Server) -> list[Finding]:
    if p.binding is None:
        return []
    out = []
    copies = Copies(_search_dirs(p, server), _module_dirs(server), p.libname)
    for problem in p.binding.problems:
        interrupts.check()
        out.append(_explain_problem(problem, p, copies))
    if not out and p.stage not in ("dependencies",):
        out.append(Finding("symbols", OK, p.libname, "every undefined symbol and version requirement is satisfied"))
    return out


def _explain_problem(problem, p: Prediction, copies: Copies) -> Finding:
    subject = problem.symbol if problem.kind == "undefined" else f"{problem.version}"
    detail = problem.dlerror
    hint = None
    if problem.symbol is None and problem.version is None:
        return Finding("symbols", ERROR, problem.required_by, detail, hint)   # pgdl could not read it
    chosen_by_soname = {d.needed: d for d in p.tree.deps[1:]} if p.tree else {}
    wanted = problem.wanted_from
    candidates = []
    if wanted and wanted in chosen_by_soname:
        dep = chosen_by_soname[wanted]
        candidates = [(wanted, dep)]
    elif p.tree is not None:
        candidates = [(d.needed, d) for d in p.tree.deps[1:] if d.path]
    for soname, dep in candidates:
        cache_paths = p.tree.cache_paths_of(soname) if p.tree else []
        others = copies.of(os.path.basename(soname), dep.path, cache_paths)
        good = providers_of(problem.symbol, others) if problem.kind == "undefined" else \
            [c for c in others if _defines_version(c, problem.version)]
        if good:
            detail += (f". The loader chose {dep.path} (found via {dep.found_via}), which lacks it; "
                       f"{good[0]} has it")
            hint = (f"Make the server find {good[0]} first: put {os.path.dirname(good[0])} first in the "
                    "server's LD_LIBRARY_PATH (service environment) or in /etc/ld.so.conf.d and run ldconfig, "
                    f"or remove the stale copy {dep.path}.")
            return Finding("symbols", ERROR, subject, detail, hint)
    if problem.kind == "undefined":
        modules = copies.modules_defining(problem.symbol)
        if modules:
            names = ", ".join(os.path.basename(m) for m in modules)
            detail += f". Defined by the PostgreSQL module(s) {names}, which this backend has not loaded"
            hint = (f"Load {os.path.splitext(os.path.basename(modules[0]))[0]} first (LOAD, or list it before "
                    "this one in shared_preload_libraries), or link the module against it.")
    return Finding("symbols", ERROR, subject, detail, hint)


def _search_dirs(p: Prediction, server: Server) -> list[str]:
    """Directories worth checking for other copies: every RPATH/RUNPATH in the
    tree ($ORIGIN expanded), LD_LIBRARY_PATH, and pkglibdir."""
    dirs = []
    for dep in (p.tree.deps if p.tree else []):
        obj = dep.obj
        if obj is None:
            continue
        for entries in (obj.rpath, obj.runpath):
            for d in (entries or "").split(":"):
                origin = os.path.dirname(dep.path or "")
                dirs.append(d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin))
    dirs += server.environ.get("LD_LIBRARY_PATH", "").split(":")
    dirs.append(server.pkglibdir)
    return [d for d in dict.fromkeys(dirs) if d]


def _module_dirs(server: Server) -> list[str]:
    """pkglibdir and the other dynamic_library_path directories: where modules live."""
    dirs = [server.pkglibdir]
    for entry in server.dynamic_library_path.split(":"):
        if entry.startswith("$libdir"):
            entry = server.pkglibdir + entry[len("$libdir"):]
        if entry.startswith("/"):
            dirs.append(entry.rstrip("/") or "/")
    return list(dict.fromkeys(dirs))


def _defines_version(path: str, version: str) -> bool:
    try:
        return version in cached_elf(path).verdefs
    except (ElfError, OSError):
        return False


def _entry_point(p: Prediction, symbol: str) -> list[Finding]:
    if p.stage == "entry point" and p.error is not None:
        return [Finding("entry point", ERROR, symbol, p.error.message, p.error.hint)]
    if p.will_load:
        return [Finding("entry point", OK, symbol, f"{symbol} and pg_finfo_{symbol} are exported")]
    return []


def _verdict(p: Prediction, subject: str) -> Finding:
    if p.will_load:
        detail = "will load" + ("; " + "; ".join(p.notes) if p.notes else "")
        return Finding("verdict", OK, subject, detail)
    e = p.error
    text = f"ERROR:  {e.message}" + (f"\nDETAIL:  {e.detail}" if e.detail else "") + \
        (f"\nHINT:  {e.hint}" if e.hint else "")
    return Finding("verdict", ERROR, subject, f"the server will fail with SQLSTATE {e.sqlstate}:\n{text}")


# -- extensions ----------------------------------------------------------------

def diagnose_extension(name: str, server: Server, installed_functions: list[CFunction] | None) -> list[Finding]:
    directory = os.path.join(server.sharedir, "extension")
    control = os.path.join(directory, f"{name}.control")
    out: list[Finding] = []
    try:
        params = read_control(control)
    except OSError as exc:
        return [Finding("extension", ERROR, name, f"cannot read {control}: {os.strerror(exc.errno or 0)}")]
    out.append(Finding("extension", OK, name, f"control file {control}"))
    script_dir = params.get("directory")
    if script_dir:
        script_dir = script_dir if os.path.isabs(script_dir) else os.path.join(server.sharedir, script_dir)
    else:
        script_dir = directory
    version = params.get("default_version")
    script_text = ""
    if version:
        script = os.path.join(script_dir, f"{name}--{version}.sql")
        if os.path.isfile(script):
            out.append(Finding("extension script", OK, script, f"install script for default version {version}"))
            with open(script, encoding="utf-8", errors="replace") as f:
                script_text = f.read(8 << 20)
        else:
            out.append(Finding("extension script", WARNING, script,
                               f"no direct install script for {version}; CREATE EXTENSION must find an update path"))
    for req in [r.strip() for r in params.get("requires", "").split(",") if r.strip()]:
        req_control = os.path.join(directory, f"{req}.control")
        status = OK if os.path.isfile(req_control) else ERROR
        out.append(Finding("requires", status, req,
                           f"required extension {req}: " + ("available" if status == OK else f"{req_control} missing"),
                           None if status == OK else f"Install the {req} extension first."))
    module = params.get("module_pathname")
    functions = installed_functions if installed_functions else c_functions_in_script(script_text, module)
    libraries = sorted({f.library for f in functions} | ({module} if module else set()))
    for library in libraries:
        findings = diagnose_library(library, server)
        if findings[-1].status == ERROR:
            return out + findings
        # One verdict for the extension, at the end; this one speaks for one library.
        out += findings[:-1] + [Finding("library", OK, library, findings[-1].detail)]
    for f in functions:
        p = predict_load(f.library, server, f.symbol)
        if not p.will_load:
            out += [x for x in diagnose_library(f.library, server, f.symbol, label=f.signature)
                    if x.check in ("entry point", "verdict")]
            return out
    if functions:
        out.append(Finding("entry points", OK, name, f"all {len(functions)} C functions have their symbols"))
    out.append(Finding("verdict", OK, name, f"CREATE EXTENSION {name} will load its libraries"))
    return out
