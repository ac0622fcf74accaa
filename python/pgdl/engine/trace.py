"""What one load goes through, stage by stage: the trace every view renders.

A Loading is what internal_load_library() does with one file once it is
found (shared by every name of that file and every C function in it); a
Prediction is one LOAD or CREATE FUNCTION: the privilege check, the name
lookup, the file, that file's Loading, the entry points.  Both are made
once, whole, and never changed: remembered answers are shared.
"""

from __future__ import annotations


from ..elf import ElfObject
from ..errors import PgError
from ..glibc.linkmap import LoadTree
from ..glibc.openfile import FileAccess
from ..glibc.problems import BindResult
from ..postgres.lookup import Resolution
from ..postgres.magic import MagicBlock
from ..postgres.pg_init import PgInitCheck
from ..record import Name, Record


class Stage(Name):
    """Where a load stops (in the server's order), or LOADED."""
    PRIVILEGE = "privilege"             # LOAD's $libdir/plugins rule, C functions for superusers
    LOOKUP = "lookup"                   # expand_dynamic_library_name()
    FILE = "file"                       # internal_load_library()'s stat()
    ELF = "elf"                         # dlopen(): the module file itself
    DEPENDENCIES = "dependencies"       # dlopen(): mapping its DT_NEEDED tree
    SYMBOLS = "symbols"                 # dlopen(): versions and relocations (RTLD_NOW)
    MAGIC = "magic"                     # the magic block
    INIT = "_PG_init"                   # the module's _PG_init() raises an error
    ENTRY_POINT = "entry point"         # the function symbol and pg_finfo_<symbol>
    LOADED = "loaded"

    @property
    def order(self) -> int:
        """How far a load got: later stages are greater."""
        return list(Stage).index(self)


class Loading(Record):
    """dlopen() (file, dependencies, versions, symbols) and the magic block check of one file."""
    __slots__ = ("stage", "error", "dlerror", "dl_errno", "module", "tree", "binding", "magic",
                 "has_pg_init", "pg_init", "notes", "uncertain")

    def __init__(self, stage: Stage, error: PgError | None = None, dlerror: str | None = None,
                 dl_errno: int = 0, module: ElfObject | None = None, tree: LoadTree | None = None,
                 binding: BindResult | None = None, magic: MagicBlock | None = None,
                 has_pg_init: bool = False, pg_init: PgInitCheck | None = None, notes: tuple[str, ...] = (),
                 uncertain: str | None = None):
        self.stage = stage              # where it stops, or MAGIC once the block is accepted
        self.error = error              # a failure whatever the errno
        self.dlerror = dlerror          # or: dlopen() fails with this dlerror() ...
        self.dl_errno = dl_errno        # ... and errno (0: left as it was, see Resolution.last_errno)
        self.module = module
        self.tree = tree
        self.binding = binding
        self.magic = magic
        self.has_pg_init = has_pg_init  # the module defines _PG_init()
        self.pg_init = pg_init          # what its _PG_init() does in this process (postgres.pg_init)
        self.notes = notes
        # Why the failure (error or dlerror) happens or not depending on where the
        # kernel maps the objects: the prediction's will_load is then None.
        self.uncertain = uncertain


class _OfLoading:
    """A field of a Prediction's Loading: None before the file stage, or when already loaded."""

    def __set_name__(self, owner, name: str):
        self.name = name

    def __get__(self, p, owner=None):
        if p is None:
            return self
        return getattr(p.loading, self.name) if p.loading is not None else None


class Prediction(Record):
    """What LOAD (or CREATE FUNCTION) would do, stage by stage."""
    __slots__ = ("will_load", "stage", "error", "libname", "resolution", "access", "loading",
                 "already_loaded", "notes", "beyond")

    def __init__(self, will_load: bool | None, stage: Stage, error: PgError | None = None, libname: str | None = None,
                 resolution: Resolution | None = None, access: FileAccess | None = None,
                 loading: Loading | None = None, already_loaded: bool = False, notes: tuple[str, ...] = (),
                 beyond: "Prediction | None" = None):
        self.will_load = will_load      # None: fails with `error` or not, as the kernel places things
        self.stage = stage              # where it stops, or LOADED
        self.error = error              # the server's error, word for word
        self.libname = libname          # the expanded name the server uses
        self.resolution = resolution
        self.access = access            # the file as the server's OS user reaches it
        self.loading = loading          # None before the file stage, or when already loaded
        self.already_loaded = already_loaded
        self.notes = notes
        # Refused at the privilege stage: the same load for a superuser, so
        # that every later stage is still judged and shown.
        self.beyond = beyond

    # What the file's loading found, for the views.
    module = _OfLoading()
    tree = _OfLoading()
    binding = _OfLoading()
    magic = _OfLoading()
    pg_init = _OfLoading()
