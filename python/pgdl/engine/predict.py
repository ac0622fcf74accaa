"""What `LOAD name` (or `CREATE FUNCTION ... AS name, symbol LANGUAGE C`)
would do in this session, stage by stage, as PostgreSQL and glibc do it:

  privilege -> lookup -> stat -> dlopen (file, dependencies, versions,
  symbols) -> magic block -> function symbol -> pg_finfo_<symbol>

dfmgr.c: load_file(), load_external_function(), internal_load_library();
fmgr.c: fetch_finfo_record(); pg_proc.c: fmgr_c_validator().
"""

from __future__ import annotations

import struct
from contextlib import nullcontext

from ..glibc.binding import BindResult, bind
from .. import filestate
from ..elf import ElfError, ElfObject, cached_elf
from ..elf import dynsym
from ..errors import INSUFFICIENT_PRIVILEGE, INTERNAL_ERROR, INVALID_PARAMETER_VALUE, UNDEFINED_FUNCTION, PgError
from ..glibc.ldso import LoadTree, load_tree
from ..glibc.linkmap import Found
from ..glibc.openfile import access_error, dlopen_error, module_file_failure, truncation_crash
from ..postgres.magic import MAGIC_FUNCTION, MagicBlock, MagicNotFound, judge, missing_magic_error, read_magic, server_block_bytes
from ..record import Record
from ..postgres.lookup import Resolution, resolve
from ..server import Server
from ..elf.code import returned_address


class Prediction(Record):
    """What LOAD (or CREATE FUNCTION) would do, stage by stage."""
    __slots__ = ("will_load", "stage", "error", "libname", "resolution", "module", "tree", "binding",
                 "magic", "already_loaded", "has_pg_init", "notes", "entry_points")

    def __init__(self, will_load: bool, stage: str, error: PgError | None = None, libname: str | None = None,
                 resolution: Resolution | None = None, module: ElfObject | None = None,
                 tree: LoadTree | None = None, binding: BindResult | None = None,
                 magic: MagicBlock | None = None, already_loaded: bool = False, has_pg_init: bool = False,
                 notes: list[str] | None = None, entry_points: dict[str, PgError | None] | None = None):
        self.will_load = will_load
        self.stage = stage              # where it stops, or "loaded"
        self.error = error
        self.libname = libname          # the expanded name the server uses
        self.resolution = resolution
        self.module = module
        self.tree = tree
        self.binding = binding
        self.magic = magic
        self.already_loaded = already_loaded
        self.has_pg_init = has_pg_init  # the module defines _PG_init()
        self.notes = [] if notes is None else notes
        # check_entry_point() answers: they depend on the same files as the prediction.
        self.entry_points = {} if entry_points is None else entry_points


_PREDICTIONS = filestate.Memo(1024)
_LOADINGS = filestate.Memo(512)


def predict_load(name: str, server: Server, symbol: str | None = None) -> Prediction:
    """LOAD name (symbol None), or CREATE FUNCTION ... AS name, symbol LANGUAGE C.

    Inside a call (pgdl.filestate.one_call) the answer is remembered, and
    reused while the server description is equal and every file it looked
    at is unchanged.  A remembered Prediction is shared: do not modify it."""
    return _PREDICTIONS.get((name, symbol, server.fingerprint), lambda: _predict(name, server, symbol))


class Loading(Record):
    """What internal_load_library() does with one file once it is found: dlopen
    (file, dependencies, versions, symbols) and the magic block check."""
    __slots__ = ("stage", "error", "dlerror", "dl_errno", "module", "tree", "binding", "magic",
                 "has_pg_init", "notes")

    def __init__(self, stage: str, error: PgError | None = None, dlerror: str | None = None,
                 dl_errno: int = 0, module: ElfObject | None = None, tree: LoadTree | None = None,
                 binding: BindResult | None = None, magic: MagicBlock | None = None,
                 has_pg_init: bool = False, notes: list[str] | None = None):
        self.stage = stage
        self.error = error              # a failure whatever the errno
        self.dlerror = dlerror          # or: dlopen() fails with this dlerror() ...
        self.dl_errno = dl_errno        # ... and errno (0: left as it was, see Resolution.last_errno)
        self.module = module
        self.tree = tree
        self.binding = binding
        self.magic = magic
        self.has_pg_init = has_pg_init
        self.notes = [] if notes is None else notes


def _predict(name: str, server: Server, symbol: str | None) -> Prediction:
    if symbol is None and not server.is_superuser:
        # utility.c: load_file(filename, !superuser())
        denied = _restricted_name_error(name)
        if denied:
            return Prediction(False, "privilege", denied)
    if symbol is not None and not server.is_superuser:
        return Prediction(False, "privilege", PgError(INSUFFICIENT_PRIVILEGE, "permission denied for language c"))
    res = resolve(name, server, for_function=symbol is not None)
    if res.error is not None:
        return Prediction(False, "lookup", res.error, resolution=res)
    libname = res.full_name
    p = Prediction(False, "file", libname=libname, resolution=res)
    st = filestate.state(libname)           # internal_load_library()'s stat()
    if st.error:
        p.error = access_error(libname, st.error, server.major)
        return p
    p.already_loaded = _loaded_by_postgres(libname, st, server)
    if not p.already_loaded and not _dlopen_and_magic(p, server):
        return p
    if symbol is not None and not _entry_points(p, symbol, server):
        return p
    p.will_load, p.stage = True, "loaded"
    if not p.already_loaded and p.has_pg_init:
        p.notes.append("the module's _PG_init() runs on load and may still refuse (some modules must be "
                       "listed in shared_preload_libraries)")
    if p.already_loaded:
        p.notes.append("already loaded in this backend: LOAD does nothing and no check is repeated")
    return p


def _restricted_name_error(name: str) -> PgError | None:
    """dfmgr.c check_restricted_library_name(): non-superusers may LOAD only $libdir/plugins/x."""
    prefix = "$libdir/plugins/"
    if name.startswith(prefix) and "/" not in name[len(prefix):]:
        return None
    return PgError(INSUFFICIENT_PRIVILEGE, f'access to library "{name}" is not allowed')


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


def _dlopen_and_magic(p: Prediction, server: Server) -> bool:
    # Shared by every name of the file and every C function in it.
    done = _LOADINGS.get((p.libname, server.fingerprint), lambda: _load(p.libname, server))
    p.stage, p.error, p.module, p.tree, p.binding, p.magic, p.has_pg_init = \
        done.stage, done.error, done.module, done.tree, done.binding, done.magic, done.has_pg_init
    if done.dlerror is not None:
        # The errno left by this name's lookup can show in the error.
        p.error = dlopen_error(p.libname, done.dlerror, done.dl_errno or p.resolution.last_errno, server.major)
    p.notes.extend(done.notes)
    return p.error is None


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
    done = Loading("elf")
    failure, _verdict = module_file_failure(libname, server)
    if failure is not None:
        done.dlerror, done.dl_errno = failure
        return done
    try:
        module = cached_elf(libname)
    except (ElfError, OSError) as exc:
        module = None
        done.notes.append(f"pgdl cannot read the module fully: {exc}")
    if module is not None:
        done.error = truncation_crash(libname, module)
        if done.error is not None:
            return done
    done.stage = "dependencies"
    done.tree = load_tree(libname, server)
    if done.tree.error is not None:
        done.dlerror, done.dl_errno = done.tree.error, done.tree.errno
        return done
    done.module = done.tree.deps[0].obj if done.tree.deps else None
    done.stage = "symbols"
    done.binding = bind(done.tree, server)
    if done.binding.error is not None:
        done.dlerror, done.dl_errno = done.binding.error, done.binding.errno
        return done
    done.stage = "magic"
    try:
        module = done.module or cached_elf(libname)
        with module.reading():
            done.has_pg_init = dynsym.definition(module, "_PG_init") is not None
            done.magic = read_magic(module)
    except MagicNotFound:
        done.error = missing_magic_error(libname)
        return done
    except (ElfError, OSError) as exc:
        done.notes.append(f"the magic block could not be read statically: {exc}")
        return done
    srv = server.server_magic()
    done.error = judge(done.magic, srv, server_block_bytes(srv, server.major, server.elf_class), libname,
                       server.major)
    return done


def _entry_points(p: Prediction, symbol: str, server: Server) -> bool:
    """dlsym() of the function and of pg_finfo_<symbol>, in the handle's own scope."""
    p.stage = "entry point"
    scope = _handle_scope(p)
    if _scope_lookup(scope, symbol) is None:
        p.error = PgError(UNDEFINED_FUNCTION, f'could not find function "{symbol}" in file "{p.libname}"')
        return False
    info_name = f"pg_finfo_{symbol}"
    found = _scope_lookup(scope, info_name)
    if found is None:
        p.error = PgError(UNDEFINED_FUNCTION,
                          f'could not find function information for function "{symbol}"',
                          hint="SQL-callable functions need an accompanying PG_FUNCTION_INFO_V1(funcname).")
        return False
    obj, sym = found
    api_version = _finfo_api_version(obj, sym.value, sym.size)
    if api_version is None:
        p.notes.append(f"the API version that {info_name}() reports could not be read statically")
    elif api_version != 1:
        p.error = PgError(INVALID_PARAMETER_VALUE,
                          f'unrecognized API version {api_version} reported by info function "{info_name}"')
        return False
    return True


def check_entry_point(p: Prediction, symbol: str, server: Server) -> PgError | None:
    """Only the entry-point stage, for `symbol` in a library `p` predicted to load."""
    if symbol not in p.entry_points:
        q = p.replace(notes=list(p.notes), entry_points={})
        p.entry_points[symbol] = None if _entry_points(q, symbol, server) else q.error
    return p.entry_points[symbol]


def _handle_scope(p: Prediction) -> list[ElfObject]:
    """dlsym(handle, ...) searches the module, then its dependencies breadth-first."""
    if p.tree is not None:
        return [d.obj for d in p.tree.deps if d.obj is not None]
    try:
        return [cached_elf(p.libname)]
    except (ElfError, OSError):
        return []


def _scope_lookup(scope: list[ElfObject], name: str):
    for obj in scope:
        sym = dynsym.definition(obj, name)
        if sym is not None and not sym.hidden:
            return obj, sym
    return None


def _finfo_api_version(obj: ElfObject, addr: int, size: int) -> int | None:
    """Pg_finfo_record.api_version, from the struct pg_finfo_<name>() returns."""
    try:
        target = returned_address(obj, addr, size)
        if target is None:
            return None
        raw = obj.read_vaddr(target, 4)
    except ElfError:
        return None
    return struct.unpack("<i" if obj.little_endian else ">i", raw)[0]


def as_error_row(p: Prediction) -> tuple:
    e = p.error
    if e is None:
        return (p.will_load, None, None, None, None)
    return (p.will_load, e.sqlstate, e.message, e.detail, e.hint)


__all__ = ["Prediction", "predict_load", "check_entry_point", "as_error_row", "INTERNAL_ERROR"]
