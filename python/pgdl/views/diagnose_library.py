"""diagnose() of one library (or one C function in it): the prediction's
trace told in the order a person reads it, with a hint for every problem:

  resolution -> file access -> ELF -> magic -> dependencies -> symbols ->
  entry points -> verdict (with the server's predicted error)

Everything shown comes from the trace (pgdl.engine.trace); the only new
reading is the search for the other copies a hint points to (explain).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat

from .. import filestate, interrupts
from ..elf import ElfError, cached_elf, dynsym
from ..errors import error_lines
from ..engine.predict import predict_load
from ..engine.trace import Prediction, Stage
from ..glibc.ldso import searched_directories
from ..glibc.linkmap import Found
from ..glibc.problems import BindingProblem, Problem
from ..postgres.lookup import library_path_directories
from ..record import Value
from ..postgres.magic import MAGIC_FUNCTION
from ..postgres.pg_init import Verdict
from ..postgres.translate import as_server_says
from ..server import SHARED_OBJECT, Context, Server
from . import remedy
from .copies import Copies, misplaced_copies, providers_of
from .status import ERROR, OK, WARNING, Status


class Finding(Value):
    """A row of pgdl.diagnose() (the SQL type pgdl.finding)."""
    __slots__ = ("topic", "status", "subject", "message", "hint")

    def __init__(self, topic: str, status: Status, subject: str | None, message: str | None = None,
                 hint: str | None = None):
        self.topic = topic              # what the row is about: resolution, file access, elf, ... verdict
        self.status = status
        self.subject = subject          # the name, file, symbol or version it concerns
        self.message = message
        self.hint = hint


def one_line(text: str | None) -> str | None:
    """A finding's text on one line: the server's ERROR / DETAIL / HINT lines joined by a space."""
    return None if text is None else " ".join(text.split("\n"))


def diagnose_library(name: str, server: Server, symbol: str | None = None, label: str | None = None,
                     elsewhere: Server | None = None) -> list[Finding]:
    """server: the process asked about (pgdl.engine.contexts); elsewhere: this
    session, when that is another process, to say where the two differ."""
    p = predict_load(name, server, symbol)
    out: list[Finding] = []
    shown = p
    if p.stage is Stage.PRIVILEGE:
        # One finding: every later stage is still judged, as for a superuser.
        who = f"role {server.role.name}" if server.role else "this role"
        out.append(Finding("privilege", ERROR, name, f"{p.error.message} (for {who})",
                           "Only superusers may LOAD libraries outside $libdir/plugins/ or create C functions."))
        shown = p.beyond
    out += _resolution(name, shown, server)
    if shown.stage is not Stage.LOOKUP:
        out += _file_access(shown, server)
    if shown.module is not None or shown.stage is Stage.ELF:
        out += _elf(shown)
    out += _magic(shown)
    out += _pg_init(shown, server)
    out += _dependencies(shown, server)
    out += _symbols(shown, server)
    if symbol is not None:
        out += _entry_point(shown, symbol)
    if elsewhere is not None and not p.will_load:
        # Only a failure is compared with this session (whose PL/Python, SETs and
        # LOADs may hide it): a second full prediction for every library that loads
        # would double the work of a diagnosis.
        out += _difference(p, predict_load(name, elsewhere, symbol), elsewhere, server)
    out.append(_verdict(p, label or (f"{name}, {symbol}" if symbol else name), server))
    return out


PRELOAD_ADVICE = "List it in shared_preload_libraries and restart the server."


def _pg_init(p: Prediction, server: Server) -> list[Finding]:
    check = p.pg_init
    if check is None:
        return []
    where = _process(server)
    if check.verdict is Verdict.REFUSES:
        r = check.refusal
        text = r.error.message if r.error.message is not None else f"(formatted at run time) {r.format}"
        hint = PRELOAD_ADVICE if server.context is not Context.SERVER_START else \
            (r.error.hint or "Check the order of shared_preload_libraries: a library it needs must come first.")
        return [Finding("_PG_init", ERROR, p.libname, f"its _PG_init() raises {r.severity} in {where}: {text}", hint)]
    if check.verdict is Verdict.NOT_JUDGED:
        return [Finding("_PG_init", WARNING, p.libname, f"its _PG_init() could not be judged for {where}: "
                        f"{check.reason}" + (f" (the error: {check.refusal.error.message or check.refusal.format})"
                                             if check.refusal else ""),
                        "Try it on a test server, or list it in shared_preload_libraries if its documentation "
                        "says so.")]
    return [Finding("_PG_init", OK, p.libname, f"its _PG_init() raises no error in {where}")]


def _process(server: Server) -> str:
    if server.context is Context.SERVER_START:
        return "the postmaster at server start"
    return "a new session" if server.context is Context.NEW_SESSION else "this session"


def _difference(p: Prediction, here: Prediction, elsewhere: Server, server: Server) -> list[Finding]:
    """Where this session and the process asked about disagree."""
    if p.will_load == here.will_load and p.error == here.error:
        return []
    where = _process(server)
    subject = p.libname or here.libname
    if here.will_load or not p.will_load and here.stage.order > p.stage.order:
        got = "loads here" if here.will_load else f"gets further here ({_error_text(here.error)})"
        return [Finding("context", WARNING, subject,
                        f"{got} only because {_loaded_here_only(p, elsewhere)}; {where} fails with: "
                        f"{_error_text(p.error)}",
                        "Judge by the new session: it is what other sessions, CREATE EXTENSION there and every "
                        "user get.")]
    if p.will_load:
        return [Finding("context", WARNING, subject,
                        f"fails in this session ({_error_text(here.error)}), but loads in {where}")]
    return [Finding("context", WARNING, subject, f"fails differently in this session: {_error_text(here.error)}")]


def _loaded_here_only(p: Prediction, here: Server) -> str:
    """What this session has loaded that the other process lacks: what defines the missing symbols."""
    wanted = [b.symbol for b in (p.binding.problems if p.binding else ()) if b.symbol]
    for obj in here.loaded:
        if not SHARED_OBJECT.search(obj.path) or not wanted:
            continue
        try:
            elf = cached_elf(obj.path)
            if any(dynsym.definition(elf, s) is not None for s in wanted[:8]):
                base = os.path.basename(obj.path)
                return f"PL/Python ({base}) is loaded in this session" if base.startswith("libpython") \
                    else f"{base} is loaded in this session"
        except (ElfError, OSError):
            continue
    return "this session has already loaded what it needs"


def _error_text(e) -> str:
    return e.message if e.message is not None else "an error formatted at run time"


def _resolution(name: str, p: Prediction, server: Server) -> list[Finding]:
    res = p.resolution
    tried = ", ".join(c.candidate for c in res.candidates) or "nothing"
    if res.error is not None:
        return [Finding("resolution", ERROR, name, res.error.message, "Fix dynamic_library_path or the name.")]
    if res.found:
        return [Finding("resolution", OK, p.libname, f"{name} resolves to {p.libname} (tried: {tried})")]
    return [Finding("resolution", ERROR, name, f"no file found for {name!r} (tried: {tried}); "
                    "the name is passed on unchanged",
                    misplaced_hint(name, server) or "Install the library into $libdir (pg_config --pkglibdir) "
                    "or add its directory to dynamic_library_path.")]


def misplaced_hint(name: str, server: Server) -> str | None:
    """What to do with a file of that name that is only in the wrong directory (None: there is none)."""
    if "/" in name.removeprefix("$libdir/"):
        return None
    searched = library_path_directories(server) or [server.pkglibdir]
    copies = misplaced_copies(name.removeprefix("$libdir/"), searched, server.sharedir, server.dlsuffix)
    if not copies:
        return None
    target = server.pkglibdir if name.startswith("$libdir/") else searched[0]
    fits = [c for c in copies if c.built_for == server.major]
    if fits:
        c = fits[0]
        return (f"{c.path} has that name but is not where the server looks ({', '.join(searched)}): "
                f"move it there: `mv {c.path} {target}/`.")
    c = copies[0]
    built = f"built for PostgreSQL {c.built_for}" if c.built_for else "without a readable magic block"
    return (f"{c.path} has that name but is {built}, in a directory the server does not search: install the "
            f"build for PostgreSQL {server.major} into {target} (make install with this server's pg_config).")


def _file_access(p: Prediction, server: Server) -> list[Finding]:
    access, path = p.access, p.libname
    if access.blocked is not None:
        directory, st = access.blocked, access.blocked_state
        return [Finding("file access", ERROR, directory,
                        f"the server's OS user ({_user()}) cannot search directory {directory} "
                        f"(owner {_owner(st)}, mode {stat.filemode(st.mode)})",
                        f"Grant search permission: `chmod {_who(st, server)}+x {directory}`.")]
    st = access.state
    if st.error:
        what = "dangling symbolic link" if access.dangling else os.strerror(st.error)
        return [Finding("file access", ERROR, path, f"{path}: {what}")]
    if st.is_dir:
        return [Finding("file access", ERROR, path, f"{path} is a directory, not a library")]
    if not st.is_regular:
        return [Finding("file access", ERROR, path, f"{path} is not a regular file ({stat.filemode(st.mode)})")]
    if not access.readable:
        return [Finding("file access", ERROR, path,
                        f"the server's OS user ({_user()}) cannot read {path} "
                        f"(owner {_owner(st)}, mode {stat.filemode(st.mode)})",
                        f"Grant read permission: `chmod a+r {path}`.")]
    return [Finding("file access", OK, path, f"readable by {_user()} ({st.size} bytes)")]


def _who(st: filestate.State, server: Server) -> str:
    """The permission class (u, g or o) that applies to the server's OS user: only that one's bits count."""
    owner, group = st.owner
    return "u" if owner == server.uid else "g" if group in server.gids else "o"


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _owner(st: filestate.State) -> str:
    uid, gid = st.owner
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return f"{user}:{group}"


def _elf(p: Prediction) -> list[Finding]:
    if p.stage is Stage.ELF and p.error is not None:
        return [Finding("elf", ERROR, p.libname, p.error.message.split(": ", 1)[-1])]
    obj = p.module
    if obj is None:
        return []
    return [Finding("elf", OK, p.libname, f"{obj.class_name} shared object for {obj.machine_name}"
                    + (f", SONAME {obj.soname}" if obj.soname else ""))]


def _magic(p: Prediction) -> list[Finding]:
    if p.stage is Stage.MAGIC and p.error is not None:
        hint = p.error.hint or "Rebuild the module against this server's headers (pg_config --includedir-server)."
        detail = p.error.message + (f" ({p.error.detail})" if p.error.detail else "")
        return [Finding("magic", ERROR, p.libname, detail, hint)]
    if p.magic is not None:
        return [Finding("magic", OK, p.libname, f"built for PostgreSQL {p.magic.major_text}, matches this server")]
    return []


def _dependencies(p: Prediction, server: Server) -> list[Finding]:
    if p.tree is None:
        return []
    out = []
    copies = None
    for dep in p.tree.deps[1:]:
        status = OK if dep.status.loads else ERROR
        detail = f"{dep.needed} -> {dep.path or 'not found'} ({dep.found_via})"
        if dep.detail:
            detail += f"; {dep.detail}"
        hint = None
        if dep.status is Found.NOT_FOUND:
            # A vendor's bundle keeps its libraries beside the module.
            copies = copies or Copies([os.path.dirname(p.libname), server.pkglibdir], [], p.libname)
            hint = remedy.not_found(p, dep, copies.of(os.path.basename(dep.needed), None,
                                                      p.tree.cache_paths_of(dep.needed)), server)
        out.append(Finding("dependency", status, dep.needed, detail, hint))
    return out


def _symbols(p: Prediction, server: Server) -> list[Finding]:
    if p.binding is None:
        return []
    out = []
    if p.binding.problems:
        # Other copies: where the tree's RPATH/RUNPATH and LD_LIBRARY_PATH point, beside the
        # module (a vendor's bundle) and pkglibdir;
        # modules: pkglibdir and dynamic_library_path.
        copies = Copies(searched_directories(p.tree, server) + [os.path.dirname(p.libname), server.pkglibdir],
                        list(dict.fromkeys([server.pkglibdir] + library_path_directories(server))), p.libname)
    for problem in p.binding.problems:
        interrupts.check()
        out.append(_explain_problem(problem, p, copies, server))
    if not out and p.stage is not Stage.DEPENDENCIES:
        out.append(Finding("symbols", OK, p.libname, "every undefined symbol and version requirement is satisfied"))
    return out


def _explain_problem(problem: BindingProblem, p: Prediction, copies: Copies, server: Server) -> Finding:
    subject = problem.symbol if problem.kind is Problem.UNDEFINED else f"{problem.version}"
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
        good = providers_of(problem.symbol, others) if problem.kind is Problem.UNDEFINED else \
            [c for c in others if _defines_version(c, problem.version)]
        if good:
            detail += (f". The loader chose {dep.path} (found via {dep.found_via}), which lacks it; "
                       f"{good[0]} has it")
            return Finding("symbols", ERROR, subject, detail, remedy.wrong_copy(p, dep, good[0], server))
    if problem.kind is Problem.UNDEFINED:
        modules = copies.modules_defining(problem.symbol)
        if modules:
            names = ", ".join(os.path.basename(m) for m in modules)
            detail += f". Defined by the PostgreSQL module(s) {names}, which this backend has not loaded"
            first = os.path.basename(modules[0]).removesuffix(server.dlsuffix)
            hint = (f"Load {first} first: `LOAD '{first}'` before this one in the session, or list {first} before "
                    "it in shared_preload_libraries, or link the module against it.")
        elif problem.version is None and problem.required_by == p.libname and _is_postgres_module(p):
            detail += (f". Nothing the module is linked with defines it, nor does the server executable "
                       f"{server.executable}: PostgreSQL modules take unversioned symbols like it from the server "
                       f"itself, so {os.path.basename(p.libname)} was most likely built against a newer minor "
                       f"release than this server's {server.version_text}")
            hint = (f"Upgrade the server packages to the minor release the module was built for (or newer), or "
                    f"install a build of it for PostgreSQL {server.version_text}.")
    return Finding("symbols", ERROR, subject, detail, hint)


def _is_postgres_module(p: Prediction) -> bool:
    """It has a magic block (dlopen fails before PostgreSQL would check it)."""
    try:
        return p.module is not None and dynsym.definition(p.module, MAGIC_FUNCTION) is not None
    except (ElfError, OSError):
        return False


def _defines_version(path: str, version: str) -> bool:
    try:
        return version in cached_elf(path).verdefs
    except (ElfError, OSError):
        return False


def _entry_point(p: Prediction, symbol: str) -> list[Finding]:
    if p.stage is Stage.ENTRY_POINT and p.error is not None:
        return [Finding("entry point", ERROR, symbol, p.error.message, p.error.hint)]
    if p.will_load:
        return [Finding("entry point", OK, symbol, f"{symbol} and pg_finfo_{symbol} are exported")]
    return []


def _verdict(p: Prediction, subject: str, server: Server) -> Finding:
    """The server's words in its language (lc_messages); pgdl's own in English."""
    where = _process(server)
    if p.will_load:
        detail = f"will load in {where}" + ("; " + "; ".join(p.notes) if p.notes else "")
        unjudged = p.pg_init is not None and p.pg_init.verdict is Verdict.NOT_JUDGED
        return Finding("verdict", WARNING if unjudged else OK, subject, detail)
    e = as_server_says(p.error, server)
    if p.will_load is None and e is None:
        return Finding("verdict", WARNING, subject, f"not judged for {where}: {p.loading.uncertain}")
    if p.will_load is None:
        # Whether it fails depends on the address layout (pgdl.glibc.mapping).
        return Finding("verdict", ERROR, subject, f"{where} may fail, depending on where the kernel maps the "
                       f"objects: {p.loading.uncertain}. If it fails, the client sees: {_error_text(e)}"
                       + (f"\nDETAIL:  {e.detail}" if e.detail and e.sqlstate else ""))
    if server.context is Context.SERVER_START:
        # elog.c: an ERROR with no handler to catch it (the postmaster's start) is FATAL.
        return Finding("verdict", ERROR, subject, "the server will not start; its log says:\n"
                       + server_log_lines(e))
    if e.sqlstate is None:
        # The backend dies: the client has no error, only a lost connection.
        return Finding("verdict", ERROR, subject, f"the backend of {where} dies; the client sees: {e.message}\n"
                       f"{e.detail}" + (f"\nHINT:  {e.hint}" if e.hint else ""))
    severity = p.pg_init.refusal.severity if p.stage is Stage.INIT else "ERROR"
    text = error_lines(severity, _error_text(e), e.detail, e.hint)
    return Finding("verdict", ERROR, subject, f"{where} will fail with SQLSTATE {e.sqlstate}:\n{text}")


def server_log_lines(e) -> str:
    """The lines a FATAL error at start writes (log_line_prefix left out)."""
    return error_lines("FATAL", _error_text(e), e.detail, e.hint)
