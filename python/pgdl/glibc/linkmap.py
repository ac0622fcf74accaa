"""What a dlopen() maps: glibc's link maps as the search needs them, the
dependency rows pgdl.dependencies() shows, and the tree of one dlopen."""

from __future__ import annotations

import os

from ..elf import ElfObject
from ..record import Name, Record

# Bounds: real trees have tens of objects; these only stop hostile input.
MAX_OBJECTS = 2000
MAX_EDGES = 50_000

class Rule(Name):
    """The rule of the search that found an object: how its found_via starts
    (glibc's order, elf/dl-load.c _dl_map_object)."""
    RPATH = "RPATH of "                 # DT_RPATH of an object in the chain of loaders (then the executable's)
    LD_LIBRARY_PATH = "LD_LIBRARY_PATH"
    RUNPATH = "RUNPATH of "             # DT_RUNPATH of the requesting object
    CACHE = "ld.so.cache"
    DEFAULT = "default directory"
    PATH = "path given"                 # the name has a slash: no search
    LOADED = "already loaded"

    @classmethod
    def of(cls, found_via: str) -> tuple["Rule | None", str | None]:
        """The rule and, for RPATH and RUNPATH, whose entry it was (a path, or
        "executable <path>")."""
        for rule in cls:
            if found_via.startswith(rule.value):
                owner = found_via[len(rule.value):] if rule.value.endswith(" ") else None
                return rule, owner
        return None, None


class Found(Name):
    """What the search made of one DT_NEEDED entry (a Dependency's status)."""
    OK = "ok"                           # a file is found and would be mapped
    ALREADY_LOADED = "already loaded"   # an object already in the backend is reused
    NOT_FOUND = "not found"             # the search fails (dlopen fails)
    ERROR = "error"                     # the file found (or the name) makes dlopen fail
    SKIPPED = "skipped"                 # an entry glibc ignores (its $ORIGIN etc. expands to nothing)


    @property
    def loads(self) -> bool:
        return self in (Found.OK, Found.ALREADY_LOADED)


class Dependency(Record):
    """One DT_NEEDED entry of a dlopen and what the search made of it: the
    fields are the columns of pgdl.dependencies() (views.dependencies shows
    `status` in the one status vocabulary)."""
    __slots__ = ("depth", "needed", "required_by", "path", "found_via", "status", "detail", "_obj")

    def __init__(self, depth: int, needed: str, required_by: str | None, path: str | None, found_via: str,
                 status: Found, detail: str | None = None, obj: ElfObject | None = None):
        self.depth = depth
        self.needed = needed
        self.required_by = required_by
        self.path = path
        self.found_via = found_via
        self.status = status
        self.detail = detail
        self._obj = obj

    @property
    def obj(self) -> ElfObject | None:
        """The object mapped for it (not a column)."""
        return self._obj


class LoadTree:
    """What dlopen() of one module would map, and where it would fail."""
    __slots__ = ("module", "deps", "error", "errno", "cache", "maps", "links", "first_new", "global_maps",
                 "static_tls")

    def __init__(self, module: str, deps: list[Dependency], error: str | None = None, errno: int = 0,
                 cache: object = None, maps: list[LinkMap] | None = None,
                 links: dict[int, list[LinkMap]] | None = None, first_new: int = 0,
                 global_maps: list[LinkMap] | None = None):
        self.module = module
        self.deps = deps  # breadth-first, the order glibc maps them
        self.error = error  # dlerror() of the first mapping failure
        self.errno = errno  # errno dlopen leaves with it (0 = unknown)
        # The ld.so.cache searched (diagnose.py offers other copies: cache_paths_of()).
        self.cache = cache
        # For pgdl.binding: the process's objects after mapping, in glibc's
        # namespace order (already loaded first), and each new object's
        # DT_NEEDED resolved to objects (l_initfini without itself).
        self.maps = [] if maps is None else maps
        self.links = {} if links is None else links
        self.first_new = first_new  # maps[first_new:] are the objects this dlopen maps
        self.global_maps = [] if global_maps is None else global_maps  # the global scope
        self.static_tls = None      # pgdl.glibc.tls.StaticTls before this dlopen (None: not known)

    def cache_paths_of(self, soname: str) -> list[str]:
        """Every path /etc/ld.so.cache lists for this SONAME (other copies worth a look)."""
        return list(self.cache.paths_of(soname)) if self.cache is not None else []


class LoadFailure(Exception):
    """dlopen fails here; `text` is dlerror(), `errno` its errcode; `not_found`:
    the search found no usable file (as opposed to a file that is unusable)."""

    def __init__(self, text: str, err: int = 0, not_found: bool = False):
        super().__init__(text)
        self.text = text
        self.errno = err
        self.not_found = not_found


class LinkMap:
    """The part of glibc's struct link_map the search needs."""
    __slots__ = ("name", "obj", "names", "ids", "loader", "preloaded", "is_main")

    def __init__(self, name: str, obj: ElfObject | None, names: set[str], ids: set[tuple[int, int]],
                 loader: LinkMap | None = None, preloaded: bool = False, is_main: bool = False):
        self.name = name                # l_name: the path it was opened as
        self.obj = obj
        self.names = names              # l_libname entries and SONAME
        self.ids = ids                  # (st_dev, st_ino)
        self.loader = loader            # l_loader
        self.preloaded = preloaded      # in the process before this dlopen
        self.is_main = is_main

    @property
    def origin(self) -> str:
        return os.path.dirname(self.name) or "/"


class Mapped(Record):
    """What Loader.map_object() made of one name."""
    __slots__ = ("map", "new", "found_via", "detail")

    def __init__(self, map: LinkMap, new: bool, found_via: str, detail: str | None = None):
        self.map = map
        self.new = new                  # mapped by this dlopen (not already in the process)
        self.found_via = found_via      # the rule that found it ("RUNPATH of ...", "ld.so.cache", ...)
        self.detail = detail            # candidates rejected on the way
