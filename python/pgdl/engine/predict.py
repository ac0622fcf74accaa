"""What `LOAD name` (or `CREATE FUNCTION ... AS name, symbol LANGUAGE C`)
would do in this session, stage by stage, as PostgreSQL and glibc do it:

  privilege -> lookup -> stat -> dlopen (file, dependencies, versions,
  symbols) -> magic block -> _PG_init -> function symbol -> pg_finfo_<symbol>

The server description says which process loads (server.context:
pgdl.engine.contexts makes it): that decides what is loaded already and what
_PG_init() sees.

dfmgr.c: load_file(), load_external_function(), internal_load_library();
fmgr.c: fetch_finfo_record(); pg_proc.c: fmgr_c_validator().  Each stage's
rules live in pgdl.postgres and pgdl.glibc; this module runs them in the
server's order and records what each saw (pgdl.engine.trace).
"""

from __future__ import annotations

import os
from contextlib import nullcontext

from .. import filestate
from ..elf import ElfError, ElfObject, cached_elf, dynsym
from ..errors import INSUFFICIENT_PRIVILEGE, PgError
from ..glibc.binding import bind
from ..glibc.ldso import load_tree
from ..glibc.linkmap import Found
from ..glibc.mapping import mapping_failure, zero_fill_overreach
from ..libc import LibcKind
from ..glibc.problems import Problem, assertion_crash
from ..glibc.segments import dynamic_assertion_crash, overwrite_crash, segmentation_crash
from ..glibc.openfile import examine_access, module_file_failure, truncation_crash
from ..postgres.dfmgr import access_error, dlopen_error, restricted_name_error
from ..postgres.fmgr import EntryPoint, entry_point
from ..postgres.lookup import resolve
from ..postgres.magic import MAGIC_FUNCTION, MagicNotFound, judge, missing_magic_error, read_magic, server_block_bytes
from ..postgres.pg_init import ProcessState, Verdict, check_pg_init
from ..server import Context, Server
from .trace import Loading, Prediction, Stage

_PREDICTIONS = filestate.Memo(1024)
_LOADINGS = filestate.Memo(512)
_ENTRY_POINTS = filestate.Memo(4096)

ALREADY_LOADED_NOTE = "already loaded in this backend: LOAD does nothing and no check is repeated"


def predict_load(name: str, server: Server, symbol: str | None = None) -> Prediction:
    """LOAD name (symbol None), or CREATE FUNCTION ... AS name, symbol LANGUAGE C.

    Inside a call (pgdl.filestate.one_call) the answer is remembered, and
    reused while the server description is equal and every file it looked
    at is unchanged."""
    return _PREDICTIONS.get((name, symbol, server.fingerprint), lambda: _predict(name, server, symbol))


def check_entry_point(p: Prediction, symbol: str, server: Server) -> PgError | None:
    """Only the entry-point stage, for `symbol` in a library `p` predicted to load."""
    return _entry_point(p, symbol, server).error


def process_state(server: Server) -> ProcessState:
    """What _PG_init() reads of the process that loads the module."""
    postmaster = server.context is Context.SERVER_START
    return ProcessState(preload_in_progress=postmaster, under_postmaster=not postmaster,
                        custom_settings=server.custom_settings)


def _predict(name: str, server: Server, symbol: str | None) -> Prediction:
    denied = None
    if symbol is None and not server.is_superuser:
        # utility.c: load_file(filename, !superuser())
        denied = restricted_name_error(name)
    elif symbol is not None and not server.is_superuser:
        denied = PgError(INSUFFICIENT_PRIVILEGE, "permission denied for language c")
    if denied is not None:
        beyond = predict_load(name, server.replace(is_superuser=True), symbol)
        return Prediction(False, Stage.PRIVILEGE, denied, beyond=beyond)
    res = resolve(name, server, for_function=symbol is not None)
    if res.error is not None:
        return Prediction(False, Stage.LOOKUP, res.error, resolution=res)
    libname = res.full_name
    access = examine_access(libname)        # internal_load_library()'s stat(), and the way there
    if access.state.error:
        return Prediction(False, Stage.FILE, access_error(libname, access.state.error, server.major), libname,
                          res, access)
    loading = None
    if not _loaded_by_postgres(libname, access.state, server):
        # Shared by every name of the file and every C function in it.
        loading = _LOADINGS.get((libname, server.fingerprint), lambda: _load(libname, server))
        error = loading.error
        if error is None and loading.dlerror is not None:
            # The errno left by this name's lookup can show in the error.
            dl_errno = loading.dl_errno if server.rules.dlerror_sets_errno else 0
            error = dlopen_error(libname, loading.dlerror, dl_errno or res.last_errno, server.major)
        if error is not None:
            verdict = None if loading.uncertain else False
            return Prediction(verdict, loading.stage, error, libname, res, access, loading, notes=loading.notes)
    p = Prediction(None if loading is not None and loading.uncertain else True, Stage.LOADED, None, libname, res,
                   access, loading, loading is None, loading.notes if loading else ())
    notes = p.notes
    if symbol is not None:
        found = _entry_point(p, symbol, server)
        if found.error is not None:
            return p.replace(will_load=False, stage=Stage.ENTRY_POINT, error=found.error)
        notes += (found.note,) if found.note else ()
    if loading is not None and loading.pg_init is not None and loading.pg_init.verdict is Verdict.NOT_JUDGED:
        notes += (f"its _PG_init() could not be judged: {loading.pg_init.reason}",)
    if loading is None:
        notes += (ALREADY_LOADED_NOTE,)
    return p.replace(notes=notes)


def _loaded_by_postgres(libname: str, st: filestate.State, server: Server) -> bool:
    """Whether dfmgr.c's file_list holds this file (same name or same inode).

    The list itself is not visible from Python.  A mapped file that carries a
    magic block was loaded through dfmgr.c; a library mapped only as some
    module's dependency was not, and LOAD would still dlopen and check it.
    """
    for obj in server.loaded:
        if obj.path == libname or (obj.dev, obj.inode) == st.identity:
            try:
                return dynsym.definition(cached_elf(obj.path), MAGIC_FUNCTION) is not None
            except (ElfError, OSError):
                return False
    return False


def _load(libname: str, server: Server) -> Loading:
    try:
        held = cached_elf(libname).reading()     # one open for every read of the module below
    except (ElfError, OSError):
        held = nullcontext()
    with held:
        done = _dlopen(libname, server)
    if done.tree is not None:
        # The objects this dlopen maps anew are not in the process: their symbol
        # tables (megabytes for libLLVM) need not stay in the backend's memory.
        for dep in done.tree.deps:
            if dep.status is Found.OK and dep.obj is not None:
                dynsym.forget(dep.obj)
    return done


def _dlopen(libname: str, server: Server) -> Loading:
    if server.libc is not None and server.libc.kind is LibcKind.MUSL:
        return _without_loader(libname, server)
    failure = module_file_failure(libname, server)
    if failure is not None:
        return Loading(Stage.ELF, dlerror=failure.dlerror, dl_errno=failure.errno)
    notes: tuple[str, ...] = ()
    try:
        module = cached_elf(libname)
    except (ElfError, OSError) as exc:
        module = None
        notes = (f"pgdl cannot read the module fully: {exc}",)
    path = libname if libname.startswith("/") else os.path.join(server.data_directory, libname)
    if module is not None and mapping_failure(module, path, server.rules) is None:
        # What kills the backend happens once the segments are mapped: a mapping
        # failure comes first (and load_tree() reports it).
        crash = _crash(libname, module, server)
        if crash is not None:
            return Loading(Stage.ELF, crash, notes=notes)
    tree = load_tree(libname, server)
    if tree.error is not None:
        return Loading(Stage.DEPENDENCIES, dlerror=tree.error, dl_errno=tree.errno, tree=tree, notes=notes)
    module = tree.deps[0].obj if tree.deps else None
    for m in tree.maps[tree.first_new + 1:]:
        # Each dependency mapped anew, in the order ld.so maps them.  (Its relocation
        # writes come later in truth, after every object is mapped.)
        crash = _crash(f"{m.name} (a dependency of {libname})", m.obj, server) if m.obj is not None else None
        if crash is not None:
            return Loading(Stage.DEPENDENCIES, crash, module=module, tree=tree, notes=notes)
    for m in tree.maps[tree.first_new:]:
        overreach = zero_fill_overreach(m.obj) if m.obj is not None else None
        if overreach is not None:
            return Loading(Stage.ELF if m.obj is module else Stage.DEPENDENCIES,
                           overwrite_crash(libname, m.name, overreach), module=module, tree=tree, notes=notes,
                           uncertain=overreach)
    binding = bind(tree, server)
    if binding.error is not None:
        first = binding.problems[0]
        if first.kind is Problem.ASSERTION:
            return Loading(Stage.SYMBOLS, assertion_crash(libname, first), module=module, tree=tree,
                           binding=binding, notes=notes)
        return Loading(Stage.SYMBOLS, dlerror=binding.error, dl_errno=binding.errno, module=module, tree=tree,
                       binding=binding, notes=notes, uncertain=None if first.certain else first.why)
    return _postgres_checks(libname, server, Loading(Stage.MAGIC, module=module, tree=tree, binding=binding,
                                                     notes=notes))


def _without_loader(libname: str, server: Server) -> Loading:
    """A C library whose loader pgdl does not model (musl): no dlopen() stage is
    judged, the PostgreSQL checks that follow it still are."""
    why = (f"the server runs with {server.libc.describe()}, whose dynamic loader pgdl does not model: "
           "whether dlopen() succeeds is not predicted (only PostgreSQL's own checks are)")
    try:
        module = cached_elf(libname)
    except (ElfError, OSError) as exc:
        return Loading(Stage.ELF, notes=(f"pgdl cannot read the module: {exc}",), uncertain=why)
    loaded = _postgres_checks(libname, server, Loading(Stage.MAGIC, module=module, notes=(why,)))
    return loaded if loaded.error is not None else loaded.replace(uncertain=why)


def _postgres_checks(libname: str, server: Server, loaded: Loading) -> Loading:
    """What internal_load_library() does once dlopen() returns: the magic block, then _PG_init()."""
    module, notes = loaded.module, loaded.notes
    try:
        module = module or cached_elf(libname)
        with module.reading():
            loaded = loaded.replace(has_pg_init=dynsym.definition(module, "_PG_init") is not None)
            magic = read_magic(module)
    except MagicNotFound:
        return loaded.replace(error=missing_magic_error(libname))
    except (ElfError, OSError) as exc:
        return loaded.replace(notes=notes + (f"the magic block could not be read statically: {exc}",))
    srv = server.server_magic()
    error = judge(magic, srv, server_block_bytes(srv, server.major, server.elf_class), libname, server.major)
    loaded = loaded.replace(error=error, magic=magic)
    if error is not None or not loaded.has_pg_init or module is None:
        return loaded
    # dfmgr.c internal_load_library(): _PG_init() runs once the magic block is accepted.
    check = check_pg_init(module, process_state(server), magic.version // 100 if magic.version else server.major)
    loaded = loaded.replace(pg_init=check)
    if check is not None and check.verdict is Verdict.REFUSES:
        return loaded.replace(stage=Stage.INIT, error=check.refusal.error)
    return loaded


def _crash(name: str, obj: ElfObject, server: Server) -> PgError | None:
    """What kills the backend once an object's segments are mapped, first to last."""
    return (truncation_crash(name, obj) or dynamic_assertion_crash(name, obj, server.rules)
            or segmentation_crash(name, obj))


def _entry_point(p: Prediction, symbol: str, server: Server) -> EntryPoint:
    """fmgr's lookup of `symbol` in a library predicted to load; remembered like predictions."""
    return _ENTRY_POINTS.get((p.libname, symbol, server.fingerprint),
                             lambda: entry_point(_handle_scope(p), p.libname, symbol))


def _handle_scope(p: Prediction) -> list[ElfObject]:
    """dlsym(handle, ...) searches the module, then its dependencies breadth-first."""
    if p.tree is not None:
        return [d.obj for d in p.tree.deps if d.obj is not None]
    try:
        return [cached_elf(p.libname)]
    except (ElfError, OSError):
        return []


__all__ = ["Prediction", "Stage", "predict_load", "check_entry_point"]
