"""Which files dlopen() would map for a module, as glibc's ld.so finds them.

Simulates glibc 2.36 (Debian bookworm) elf/dl-load.c `_dl_map_object` and
elf/dl-deps.c `_dl_map_object_deps` for dlopen(path, RTLD_NOW|RTLD_GLOBAL)
called from the server executable.  Nothing is loaded: files are opened and
their headers read, never mapped.

For a DT_NEEDED name without a slash the directories are, in order:
  1. DT_RPATH of the requester, then of the object that loaded it, and so on
     up the chain (the dlopen'ed module ends the chain), then DT_RPATH of the
     executable -- all skipped when the requester has DT_RUNPATH;
  2. LD_LIBRARY_PATH of the server process (':' or ';' separated);
  3. DT_RUNPATH of the requester only;
  4. /etc/ld.so.cache (entries under the system directories are ignored
     when the requester has DF_1_NODEFLIB);
  5. the system directories, unless the requester has DF_1_NODEFLIB.
Every directory is tried with each hardware-capability subdirectory first
(glibc-hwcaps/x86-64-vN/, then 2.36's legacy tls/ and platform dirs; legacy
hwcaps subdirectories were removed in glibc 2.37).  A file of the other ELF
class or machine is skipped; other bad files stop the whole dlopen.
Objects already in the process are reused by name (l_name, requested names,
SONAME) before any search, and by file identity (st_dev, st_ino) after the
file is opened.
"""

from __future__ import annotations

import errno as errnos
import os
import re
import stat

from .. import filestate, interrupts
from . import ldcache
from ..elf import EM_AARCH64, EM_X86_64, ET_DYN, ElfError, ElfObject, cached_elf
from .openfile import read_header
from .openverify import verify_header
from ..record import Record
from ..server import Server

# DT_FLAGS_1 bits checked when an object is mapped (elf.h).
DF_1_NOOPEN = 0x40
DF_1_PIE = 0x08000000

# Bounds: real trees have tens of objects; these only stop hostile input.
MAX_OBJECTS = 2000
MAX_EDGES = 50_000
MAX_PATH_ENTRIES = 2000

# Debian's multiarch glibc: SYSTEM_DIRS and $LIB (configure slibdir/libdir).
_TRIPLETS = {EM_X86_64: "x86_64-linux-gnu", EM_AARCH64: "aarch64-linux-gnu"}
_PLATFORMS = {EM_X86_64: "x86_64", EM_AARCH64: "aarch64"}  # AT_PLATFORM


def system_dirs(machine: int) -> list[str]:
    triplet = _TRIPLETS.get(machine, "x86_64-linux-gnu")
    return [f"/lib/{triplet}/", f"/usr/lib/{triplet}/", "/lib/", "/usr/lib/"]


def dst_lib(machine: int) -> str:
    """What $LIB expands to (Debian: the multiarch directory)."""
    return "lib/" + _TRIPLETS.get(machine, "x86_64-linux-gnu")


class Dependency:
    """One row of pgdl.dependencies().

    status is one of:
      "ok"             -- a file is found and would be mapped
      "already loaded" -- an object already in the backend is reused
      "not found"      -- the search fails (dlopen fails)
      "error"          -- the file found (or the name) makes dlopen fail
      "skipped"        -- a DT_NEEDED entry glibc ignores (its $ORIGIN etc.
                          expands to nothing)
    """
    __slots__ = ("depth", "needed", "required_by", "path", "found_via", "status", "detail", "obj")

    def __init__(self, depth: int, needed: str, required_by: str | None, path: str | None, found_via: str,
                 status: str, detail: str | None = None, obj: ElfObject | None = None):
        self.depth = depth
        self.needed = needed
        self.required_by = required_by
        self.path = path
        self.found_via = found_via
        self.status = status
        self.detail = detail
        self.obj = obj


class LoadTree:
    """What dlopen() of one module would map, and where it would fail."""
    __slots__ = ("module", "deps", "error", "errno", "cache", "maps", "links", "first_new", "global_maps")

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

    def cache_paths_of(self, soname: str) -> list[str]:
        """Every path /etc/ld.so.cache lists for this SONAME (other copies worth a look)."""
        return list(self.cache.paths_of(soname)) if self.cache is not None else []


class LoadFailure(Exception):
    """dlopen fails here; `text` is dlerror(), `errno` its errcode."""

    def __init__(self, text: str, err: int = 0):
        super().__init__(text)
        self.text = text
        self.errno = err


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


# -- hardware capability subdirectories ------------------------------------

def capability_subdirs(machine: int = EM_X86_64, host: ldcache.HostCaps | None = None) -> list[str]:
    """The subdirectories open_path() tries in every directory, in order.

    glibc 2.36 _dl_important_hwcaps: the active glibc-hwcaps names (most
    capable first), then the legacy power set of the masked hwcap bit names,
    the platform and "tls" (components in reverse order, largest set first),
    ending with "" (the directory itself).
    """
    if machine != EM_X86_64:
        return [""]        # not modelled beyond the plain directory
    host = host or ldcache.detect_host_caps()
    subdirs = [f"glibc-hwcaps/{name}/" for name in host.hwcaps]
    parts = []
    masked = host.hwcap & host.hwcap_mask
    for bit, name in ((0, "sse2"), (1, "x86_64"), (2, "avx512_1")):
        if masked >> bit & 1:
            parts.append(name)
    parts.append(host.platform or _PLATFORMS[machine])
    parts.append("tls")
    count = len(parts)
    for i in range(1 << count):
        mask = (1 << count) - 1 - i
        chosen = [parts[k] for k in reversed(range(count)) if mask >> k & 1]
        subdirs.append("".join(p + "/" for p in chosen))
    return subdirs


_CAPS: dict[int, list[str]] = {}


def _capability_subdirs(machine: int) -> list[str]:
    """capability_subdirs() of this host: the CPU does not change under a backend."""
    if machine not in _CAPS:
        _CAPS[machine] = capability_subdirs(machine)
    return _CAPS[machine]


# -- dynamic string tokens -------------------------------------------------

def _is_dst(text: str, at: int, ref: str) -> int:
    """Length of the token `ref` at text[at:] (after the '$'), 0 if none."""
    curly = text.startswith("{", at)
    start = at + 1 if curly else at
    if not text.startswith(ref, start):
        return 0
    end = start + len(ref)
    nxt = text[end] if end < len(text) else ""
    if curly:
        return len(ref) + 2 if nxt == "}" else 0
    if nxt and (nxt.isascii() and (nxt.isalnum() or nxt == "_")):
        return 0
    return len(ref)


def expand_dst(text: str, origin: str | None, platform: str, lib: str) -> str:
    """_dl_dst_substitute: $ORIGIN, $PLATFORM, $LIB (also ${...}).

    An unknown origin discards the whole string ("" is returned)."""
    out = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
            continue
        i += 1
        for ref, value in (("ORIGIN", origin), ("PLATFORM", platform), ("LIB", lib)):
            n = _is_dst(text, i, ref)
            if n:
                if value is None:
                    return ""
                out.append(value)
                i += n
                break
        else:
            out.append("$")
    return "".join(out)


def split_path_list(value: str, separators: str, expand) -> list[str]:
    """fillin_rpath: directories with one trailing '/', "" meaning the cwd.

    Empty components stay (the current directory); a component that
    expands to nothing is dropped; duplicates are dropped."""
    dirs: list[str] = []
    component = []
    pieces = []
    for ch in value:
        if ch in separators:
            pieces.append("".join(component))
            component = []
        else:
            component.append(ch)
    pieces.append("".join(component))
    for piece in pieces[:MAX_PATH_ENTRIES]:
        if piece:
            piece = expand(piece)
            if not piece:
                continue
            piece = piece.rstrip("/") or "/"
            if not piece.endswith("/"):
                piece += "/"
        if piece not in dirs:
            dirs.append(piece)
    return dirs


# -- the loader ------------------------------------------------------------

class _Probe(Record):
    """What open_verify() made of one candidate file."""
    __slots__ = ("ok", "err", "other_class", "note")

    def __init__(self, ok: bool, err: int = 0, other_class: bool = False, note: str | None = None):
        self.ok = ok
        self.err = err
        self.other_class = other_class
        self.note = note


class _Search:
    """State of one _dl_map_object name search."""

    def __init__(self):
        self.errno = 0
        self.found_other_class = False
        self.notes: list[str] = []
        self.searched: list[str] = []


class Loader:
    """One dlopen() in one backend: the already loaded objects and the rules."""

    def __init__(self, server: Server, cache=None, preloaded: list[LinkMap] | None = None):
        self.server = server
        self.cache = _load_cache() if cache is None else (cache or None)
        self.caps = _capability_subdirs(server.machine)
        self.system_dirs = system_dirs(server.machine)
        self.platform = _PLATFORMS.get(server.machine, "x86_64")
        self.lib = dst_lib(server.machine)
        self.cwd = server.data_directory or "/"
        self.main = _main_map(server)
        self.maps: list[LinkMap] = [self.main] if self.main else []
        self._shared: set[int] = set()            # maps shared with other Loaders: copy before changing
        if preloaded is None:
            preloaded, main_names, by_name, by_id, global_maps = _startup_maps(server, self)
            self._shared = {id(m) for m in preloaded}
        else:
            preloaded, main_names = _merged(preloaded, self.main)
            by_name = by_id = global_maps = None
        self.maps.extend(preloaded)                    # merged by identity
        if self.main is not None:
            self.main.names |= main_names
        if by_name is None:
            by_name, by_id = _indexes(self.maps)
            global_maps = _global_scope(preloaded)
        self._by_name, self._by_id = dict(by_name), dict(by_id)
        self.global_maps = [self.main] + global_maps if self.main else list(global_maps)

    # -- environment ------------------------------------------------------

    def fs(self, path: str) -> str:
        """A path as the backend would open it (relative to its cwd)."""
        return path if path.startswith("/") else os.path.join(self.cwd, path)

    def expander(self, m: LinkMap | None):
        origin = m.origin if m is not None else None
        if m is not None and m.is_main:
            origin = os.path.dirname(os.path.realpath(self.server.executable)) or "/"
        elif m is not None and not m.name.startswith("/"):
            origin = os.path.dirname(os.path.join(self.cwd, m.name)) or "/"
        return lambda text: expand_dst(text, origin, self.platform, self.lib)

    # -- _dl_map_object -----------------------------------------------------

    def find_by_name(self, name: str) -> LinkMap | None:
        """The first map whose l_name (not the executable's) or l_libname/SONAME is `name`."""
        k = self._by_name.get(name)
        return None if k is None else self.maps[k]

    def map_object(self, loader: LinkMap | None, name: str, callmap: bool = False
                   ) -> tuple[LinkMap, bool, str, str | None]:
        """(map, newly mapped?, found_via, detail); LoadFailure if dlopen fails.

        loader is the requesting object (the executable for the module
        itself).  callmap: dlopen's own call, whose result has no l_loader."""
        existing = self.find_by_name(name)
        if existing is not None:
            return existing, False, "already loaded", None
        search = _Search()
        if "/" in name:
            realname = name
            probe = self.probe(realname, search)
            if not probe.ok:
                raise self._not_found(name, search)
            via = "path given"
        else:
            realname, via = self.search(loader, name, search)
        detail = "; ".join(search.notes) or None
        ident = _identity(self.fs(realname))
        k = self._by_id.get(ident) if ident else None
        if k is not None:
            m = self.maps[k]
            if id(m) in self._shared:
                self._shared.discard(id(m))
                m = self.maps[k] = LinkMap(m.name, m.obj, set(m.names), set(m.ids), m.loader,
                                           m.preloaded, m.is_main)
            m.names.add(name)
            self._by_name.setdefault(name, k)
            return m, False, "already loaded (same file as " + (m.name or "the executable") + ")", detail
        obj = self.check_mappable(name, realname)
        m = LinkMap(realname, obj, {name} | ({obj.soname} if obj.soname else set()),
                    {ident} if ident else set(), None if callmap else loader)
        self.maps.append(m)
        _index_map(m, len(self.maps) - 1, self._by_name, self._by_id)
        return m, True, via, detail

    def search(self, loader: LinkMap | None, name: str, search: _Search) -> tuple[str, str]:
        """The file a name without a slash resolves to, and which rule found it."""
        for label, dirs in self.search_lists(loader):
            search.searched.append(label)
            found = self.open_path(name, dirs, search)
            if found is not None:
                return found, label
        requester = loader or self.main
        cached = self.cache_lookup(name, requester, search)
        if cached is not None:
            return cached, "ld.so.cache"
        if requester is None or requester.obj is None or not requester.obj.nodeflib:
            search.searched.append("default directories")
            found = self.open_path(name, self.system_dirs, search)
            if found is not None:
                return found, "default directory"
        else:
            search.notes.append("default directories skipped (DF_1_NODEFLIB)")
        raise self._not_found(name, search)

    def search_lists(self, loader: LinkMap | None):
        """(label, directories) before the cache, in glibc's order."""
        if loader is None or loader.obj is None or loader.obj.runpath is None:
            did_main = False
            chain, seen = loader, 0
            while chain is not None and seen < MAX_OBJECTS:
                dirs = self._rpath_dirs(chain)
                if dirs:
                    yield (f"RPATH of {'executable ' + self.server.executable if chain.is_main else chain.name}",
                           dirs)
                    did_main |= chain.is_main
                chain, seen = chain.loader, seen + 1
            main = self.main
            if not did_main and main is not None and main.obj is not None and main.obj.runpath is None:
                dirs = self._rpath_dirs(main)
                if dirs:
                    yield f"RPATH of executable {self.server.executable}", dirs
        llp = self.server.environ.get("LD_LIBRARY_PATH")
        if llp:
            dirs = split_path_list(llp, ":;", self.expander(self.main))
            if dirs:
                yield "LD_LIBRARY_PATH", dirs
        if loader is not None and loader.obj is not None and loader.obj.runpath:
            dirs = split_path_list(loader.obj.runpath, ":", self.expander(loader))
            if dirs:
                what = f"executable {self.server.executable}" if loader.is_main else loader.name
                yield f"RUNPATH of {what}", dirs

    def _rpath_dirs(self, m: LinkMap) -> list[str]:
        # The executable's DT_RPATH is ignored when it has DT_RUNPATH
        # (_dl_init_paths); other objects' DT_RPATH always counts in the chain.
        if m.obj is None or not m.obj.rpath or (m.is_main and m.obj.runpath is not None):
            return []
        return split_path_list(m.obj.rpath, ":", self.expander(m))

    def open_path(self, name: str, dirs: list[str], search: _Search) -> str | None:
        for directory in dirs:
            here_any = False
            for sub in self.caps:
                where = directory + sub
                # Relative directories are always tried (the cwd may change).
                if where.startswith("/") and not _is_dir(where):
                    search.errno = errnos.ENOENT     # known absent: never opened
                    continue
                here_any = True
                candidate = where + name
                if self.probe(candidate, search).ok:
                    return candidate
            if here_any and search.errno not in (errnos.ENOENT, errnos.EACCES):
                # open_path gives up on this list ("exists but unusable").
                search.notes.append(f"search list abandoned at {directory or './'}: {os.strerror(search.errno)}")
                return None
        return None

    def cache_lookup(self, name: str, requester: LinkMap | None, search: _Search) -> str | None:
        if self.cache is None:
            return None
        search.searched.append("ld.so.cache")
        try:
            cached = self.cache.lookup(name, elf_class=self.server.elf_class)
        except (ValueError, OSError, IndexError) as exc:
            search.notes.append(f"ld.so.cache unreadable: {exc}")
            return None
        if cached is None:
            return None
        if requester is not None and requester.obj is not None and requester.obj.nodeflib \
                and any(cached.startswith(d) for d in self.system_dirs):
            search.notes.append(f"{cached}: ld.so.cache entry ignored (DF_1_NODEFLIB)")
            return None
        return cached if self.probe(cached, search).ok else None

    def probe(self, candidate: str, search: _Search) -> _Probe:
        """open_verify(): usable, skipped (errno set) or fatal (LoadFailure)."""
        path = self.fs(candidate)
        filestate.state(path)            # what was read depends on it
        try:
            head = read_header(path)
        except IsADirectoryError:
            raise LoadFailure(f"{candidate}: cannot read file data: Is a directory", errnos.EISDIR)
        except OSError as exc:
            err = exc.errno or errnos.EIO
            if err == errnos.ENODEV:        # a device or FIFO: glibc would read it
                raise LoadFailure(f"{candidate}: file too short", 0)
            search.errno = err
            if err != errnos.ENOENT:
                search.notes.append(f"{candidate}: {os.strerror(err)}")
            return _Probe(False, err)
        verdict = verify_header(head, host_machine=self.server.machine, host_class=self.server.elf_class)
        if verdict.ok:
            return _Probe(True)
        if verdict.other_class or verdict.other_machine:
            search.errno = errnos.ENOENT
            search.found_other_class |= verdict.other_class
            why = "wrong ELF class" if verdict.other_class else "wrong machine"
            search.notes.append(f"{candidate}: {why}, skipped")
            return _Probe(False, errnos.ENOENT, verdict.other_class)
        raise LoadFailure(f"{candidate}: {verdict.error}", 0)

    def _not_found(self, name: str, search: _Search) -> LoadFailure:
        if search.found_other_class:
            other = "ELFCLASS32" if self.server.elf_class == 64 else "ELFCLASS64"
            return LoadFailure(f"{name}: wrong ELF class: {other}", 0)
        if search.errno:
            return LoadFailure(f"{name}: cannot open shared object file: {os.strerror(search.errno)}",
                               search.errno)
        return LoadFailure(f"{name}: cannot open shared object file", 0)

    def check_mappable(self, name: str, realname: str) -> ElfObject:
        """_dl_map_object_from_fd's checks, in its order; errors name `name`."""
        try:
            obj = cached_elf(self.fs(realname))
        except (ElfError, OSError, ValueError) as exc:
            raise LoadFailure(f"{name}: pgdl cannot read this file: {exc}", 0)
        if not obj.loads:
            raise LoadFailure(f"{name}: object file has no loadable segments", 0)
        if obj.e_type != ET_DYN:
            raise LoadFailure(f"{name}: cannot dynamically load executable", 0)
        if not obj.has_dynamic:
            raise LoadFailure(f"{name}: object file has no dynamic section", 0)
        if obj.flags_1 & DF_1_PIE:
            raise LoadFailure(f"{name}: cannot dynamically load position-independent executable", 0)
        if obj.flags_1 & DF_1_NOOPEN:
            raise LoadFailure(f"{name}: shared object cannot be dlopen()ed", 0)
        return obj


LD_SO_CACHE = "/etc/ld.so.cache"
_LD_SO_CACHE = filestate.FileCache(1)


def _load_cache():
    """/etc/ld.so.cache, parsed once while the file is in the same state."""
    return _LD_SO_CACHE.get(LD_SO_CACHE, lambda _state: _parse_cache())


def _parse_cache():
    try:
        return ldcache.load(LD_SO_CACHE)
    except (ldcache.LdCacheError, OSError):
        return None                      # ld.so ignores an unusable cache


def _is_dir(path: str) -> bool:
    s = filestate.state(path)
    return len(s) > 1 and stat.S_ISDIR(s[2])


def _identity(path: str) -> tuple[int, int] | None:
    s = filestate.state(path)
    return (s[0], s[1]) if len(s) > 1 else None


def _main_map(server: Server) -> LinkMap | None:
    if not server.executable:
        return None
    try:
        obj = cached_elf(server.executable)
    except (ElfError, OSError):
        obj = None
    ident = _identity(server.executable)
    # The executable's l_name is "": it is never matched by name.
    return LinkMap("", obj, set(), {ident} if ident else set(), is_main=True)


def preloaded_maps(server: Server, loader: Loader) -> list[LinkMap]:
    """The objects in the backend before the dlopen, with glibc's l_name.

    With server.loaded (from /proc/PID/maps) every mapped ELF shared object
    counts; the l_name of those the executable pulled in at startup is the
    path ld.so found them under (maps show the resolved path instead).
    Without it, the executable's own dependency tree is assumed."""
    startup = executable_closure(server, loader)
    if not server.loaded:
        return startup
    by_id = {i: m for m in startup for i in m.ids}
    out = []
    for lo in server.loaded:
        ids = {(lo.dev, lo.inode)} if lo.inode else set()
        ident = _identity(lo.path)
        if ident:
            ids.add(ident)
        known = next((by_id[i] for i in ids if i in by_id), None)
        if known is not None:
            known.ids |= ids
            out.append(known)
            continue
        try:
            obj = cached_elf(lo.path)
        except (ElfError, OSError, ValueError):
            continue                         # locale archives, deleted files...
        if obj.e_type != ET_DYN or not obj.has_dynamic:
            continue
        out.append(LinkMap(lo.path, obj, {obj.soname} if obj.soname else set(), ids, preloaded=True))
    return out


_STARTUP = filestate.Memo(1)


def _startup_maps(server: Server, loader: Loader) -> tuple[list[LinkMap], set[str], dict, dict, list[LinkMap]]:
    """preloaded_maps() merged by file identity, the names that go to the
    executable's own map, the Loader's indexes of the executable and these
    maps, and the global scope; reused while the files looked at are
    unchanged.  The maps are shared: a Loader copies one before it changes
    it (Loader.map_object)."""
    # The cache object is kept with the answer, so that its id, in the key, stays unique.
    _cache, maps, main_names, by_name, by_id, global_maps = _STARTUP.get(
        (server.fingerprint, id(loader.cache)), lambda: _startup(server, loader))
    return maps, set(main_names), by_name, by_id, global_maps


def _startup(server: Server, loader: Loader) -> tuple:
    filestate.state(server.executable)      # its DT_NEEDED list is where startup began
    maps, main_names = _merged(preloaded_maps(server, loader), loader.main)
    main = loader.main
    listed = maps if main is None else \
        [LinkMap(main.name, main.obj, main.names | main_names, main.ids, is_main=True)] + maps
    by_name, by_id = _indexes(listed)
    return loader.cache, maps, main_names, by_name, by_id, _global_scope(maps)


# Python extension modules are dlopen'ed RTLD_LOCAL: not in the global scope.
_RTLD_LOCAL_HINT = re.compile(r"(/lib-dynload/|/site-packages/|/dist-packages/|\.cpython-[^/]*\.so$|\.abi3\.so$)")


def _global_scope(maps: list[LinkMap]) -> list[LinkMap]:
    """The objects of the global scope: the executable, and the others but
    those loaded RTLD_LOCAL.  PostgreSQL loads modules RTLD_GLOBAL."""
    return [m for m in maps if m.obj is not None and (m.is_main or not _RTLD_LOCAL_HINT.search(m.name))]


def _indexes(maps: list[LinkMap]) -> tuple[dict[str, int], dict[tuple[int, int], int]]:
    """Positions by name (find_by_name) and by file identity: the first map in order wins."""
    by_name: dict[str, int] = {}
    by_id: dict[tuple[int, int], int] = {}
    for k, m in enumerate(maps):
        _index_map(m, k, by_name, by_id)
    return by_name, by_id


def _index_map(m: LinkMap, k: int, by_name: dict, by_id: dict) -> None:
    if not m.is_main:                    # the executable's l_name is "": never matched by name
        by_name.setdefault(m.name, k)
    for name in m.names:
        by_name.setdefault(name, k)
    for ident in m.ids:
        by_id.setdefault(ident, k)


def _merged(maps: list[LinkMap], main: LinkMap | None) -> tuple[list[LinkMap], set[str]]:
    """One map per file, as in ld.so's namespace: a file listed again (same
    st_dev, st_ino) lends its names to its first map; the executable's own
    names are returned apart, for its map."""
    main_names: set[str] = set()
    out: list[LinkMap] = []
    for m in maps:
        if main is not None and main.ids & m.ids:
            main_names |= m.names
            continue
        for existing in out:
            if existing.ids & m.ids:
                existing.names |= m.names
                break
        else:
            out.append(m)
    return out, main_names


def executable_closure(server: Server, loader: Loader) -> list[LinkMap]:
    """What ld.so mapped at startup for the executable (breadth-first)."""
    main = loader.main
    if main is None or main.obj is None:
        return []
    maps: list[LinkMap] = []
    saved = loader.maps, loader._shared, getattr(loader, "_by_name", None), getattr(loader, "_by_id", None)
    loader.maps, loader._shared = [main], set()
    loader._by_name, loader._by_id = _indexes(loader.maps)
    try:
        queue = [main]
        edges = 0
        while queue and len(maps) < MAX_OBJECTS:
            current = queue.pop(0)
            for needed in current.obj.needed if current.obj else []:
                edges += 1
                if edges > MAX_EDGES:
                    return maps
                try:
                    m, new, _via, _detail = loader.map_object(current, needed)
                except LoadFailure:
                    continue
                if new:
                    m.preloaded = True
                    maps.append(m)
                    queue.append(m)
    finally:
        loader.maps, loader._shared, loader._by_name, loader._by_id = saved
    return maps


# -- the walk --------------------------------------------------------------

def load_tree(module_path: str, server: Server, cache=None) -> LoadTree:
    """Every object dlopen(module_path, RTLD_NOW|RTLD_GLOBAL) would map.

    glibc stops at the first failure; pgdl records it as `error` and goes on
    with the rest of the tree, so that every missing library is listed."""
    tree = LoadTree(module=module_path, deps=[])
    try:
        loader = Loader(server, cache)
    except (ElfError, OSError, ValueError) as exc:
        tree.deps.append(Dependency(0, module_path, None, None, "path given", "error", str(exc)))
        tree.error = f"{module_path}: pgdl cannot describe the server: {exc}"
        return tree
    tree.first_new = len(loader.maps)
    tree.global_maps = loader.global_maps
    _walk(tree, loader, module_path)
    tree.maps = list(loader.maps)
    tree.cache = loader.cache
    return tree


def _fail(tree: LoadTree, failure: LoadFailure) -> None:
    if tree.error is None:
        tree.error, tree.errno = failure.text, failure.errno


def _walk(tree: LoadTree, loader: Loader, module_path: str) -> None:
    root_row = _map_row(tree, loader, loader.main, module_path, 0, None, callmap=True)
    if root_row is None:
        return
    queue: list[tuple[LinkMap, int]] = [(root_row, 0)]
    listed = {id(root_row)}
    edges = 0
    while queue:
        current, depth = queue.pop(0)
        if current.preloaded or current.obj is None:
            continue                     # its dependencies are loaded already
        for raw in current.obj.needed:
            interrupts.check()
            edges += 1
            if edges > MAX_EDGES or len(tree.deps) >= MAX_OBJECTS:
                failure = LoadFailure(f"{module_path}: more than {MAX_OBJECTS} dependencies; pgdl stopped", 0)
                tree.deps.append(Dependency(depth + 1, raw, current.name, None, "", "error", failure.text))
                _fail(tree, failure)
                return
            name = loader.expander(current)(raw) if "$" in raw else raw
            if not name:
                tree.deps.append(Dependency(depth + 1, raw, current.name, None, "", "skipped",
                                            "dynamic string token expands to nothing; glibc ignores it"))
                continue
            m = _map_row(tree, loader, current, name, depth + 1, current.name, listed=listed)
            if m is not None:
                tree.links.setdefault(id(current), []).append(m)
            if m is not None and id(m) not in listed:
                listed.add(id(m))
                queue.append((m, depth + 1))


def _map_row(tree: LoadTree, loader: Loader, requester: LinkMap | None, name: str, depth: int,
             required_by: str | None, callmap: bool = False, listed: set | None = None) -> LinkMap | None:
    """Map one name and add its row (once per object); None if it fails."""
    try:
        m, new, via, detail = loader.map_object(requester, name, callmap=callmap)
    except LoadFailure as failure:
        status = "not found" if "cannot open shared object file" in failure.text \
            or "wrong ELF class" in failure.text else "error"
        tree.deps.append(Dependency(depth, name, required_by, None, "", status, failure.text))
        _fail(tree, failure)
        return None
    except (ElfError, OSError, ValueError, RecursionError) as exc:   # never escape
        failure = LoadFailure(f"{name}: pgdl could not examine it: {exc}", 0)
        tree.deps.append(Dependency(depth, name, required_by, None, "", "error", failure.text))
        _fail(tree, failure)
        return None
    if listed is not None and id(m) in listed:
        return m                         # already in this tree: glibc lists it once
    status = "ok" if new else "already loaded"
    path = m.name or loader.server.executable
    tree.deps.append(Dependency(depth, name, required_by, path, via, status, detail, m.obj))
    return m
