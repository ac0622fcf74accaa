"""What is in the backend before a dlopen: the executable's startup closure
(as ld.so mapped it), the objects mapped since (server.loaded, from
/proc/PID/maps), merged by file identity, and the global scope they make."""

from __future__ import annotations

import re

from .. import filestate, rootfs
from ..elf import ET_DYN, ElfError, cached_elf
from ..record import Record
from ..server import Server
from .linkmap import MAX_EDGES, MAX_OBJECTS, LinkMap, LoadFailure
from .relocations import relocation_facts
from .tls import StaticTls, extra_tls

def preloaded_maps(server: Server, loader, startup: list[LinkMap]) -> list[LinkMap]:
    """The objects in the backend before the dlopen, with glibc's l_name.

    With server.loaded (from /proc/PID/maps) every mapped ELF shared object
    counts; the l_name of those the executable pulled in at startup (`startup`,
    executable_closure()) is the path ld.so found them under (maps show the
    resolved path instead).  Without it, the executable's own dependency tree
    is assumed."""
    if not server.loaded:
        return startup
    by_id = {i: m for m in startup for i in m.ids}
    out = []
    for lo in server.loaded:
        ids = {(lo.dev, lo.inode)} if lo.inode else set()
        ident = filestate.state(lo.path).identity
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


def startup_maps(server: Server, loader) -> Startup:
    """preloaded_maps() merged by file identity, the names that go to the
    executable's own map, the Loader's indexes of the executable and these
    maps, and the global scope; reused while the files looked at are
    unchanged.  The maps are shared: a Loader copies one before it changes
    it (Loader.map_object)."""
    return _STARTUP.get((server.fingerprint, id(loader.cache)), lambda: _startup(server, loader))


class Startup(Record):
    """startup_maps(): what a Loader starts from (shared between Loaders: read only)."""
    __slots__ = ("cache", "maps", "main_names", "by_name", "by_id", "global_maps", "static_tls")

    def __init__(self, cache, maps: list[LinkMap], main_names: set[str], by_name: dict[str, int],
                 by_id: dict[tuple[int, int], int], global_maps: list[LinkMap], static_tls: StaticTls):
        self.cache = cache              # kept with the answer, so that its id, in the key, stays unique
        self.maps = maps                # merged by file identity
        self.main_names = main_names    # names that belong to the executable's own map
        self.by_name, self.by_id = by_name, by_id    # indexes of the executable and these maps
        self.global_maps = global_maps
        self.static_tls = static_tls    # what is left of static TLS before the dlopen


def _startup(server: Server, loader) -> Startup:
    filestate.state(server.executable)      # its DT_NEEDED list is where startup began
    closure = executable_closure(server, loader)
    maps, main_names = merged(preloaded_maps(server, loader, closure), loader.main)
    main = loader.main
    listed = maps if main is None else \
        [LinkMap(main.name, main.obj, main.names | main_names, main.ids, is_main=True)] + maps
    by_name, by_id = indexes(listed)
    return Startup(loader.cache, maps, main_names, by_name, by_id, in_global_scope(maps),
                   _static_tls(server, main, closure, maps))


def _static_tls(server: Server, main: LinkMap | None, closure: list[LinkMap], maps: list[LinkMap]) -> StaticTls:
    """Static TLS as the startup left it, less what objects loaded since took
    (those with TPOFF64 relocations of their own TLS, in the order listed)."""
    started = ([main] if main is not None else []) + closure
    tls = StaticTls.at_start([m.obj.tls for m in started if m.obj is not None and m.obj.tls], server.environ,
                             extra_tls(server.environ, server.rules))
    at_start = {i for m in closure for i in m.ids}
    for m in maps:
        if m.obj is not None and m.obj.tls and not m.ids & at_start and relocation_facts(m.obj).static_tls:
            tls.allocate(m.obj.tls)
    return tls


# Python extension modules are dlopen'ed RTLD_LOCAL: not in the global scope.
_RTLD_LOCAL_HINT = re.compile(r"(/lib-dynload/|/site-packages/|/dist-packages/|\.cpython-[^/]*\.so$|\.abi3\.so$)")


def in_global_scope(maps: list[LinkMap]) -> list[LinkMap]:
    """The objects of the global scope: the executable, and the others but
    those loaded RTLD_LOCAL.  PostgreSQL loads modules RTLD_GLOBAL."""
    return [m for m in maps if m.obj is not None and (m.is_main or not _RTLD_LOCAL_HINT.search(m.name))]


def indexes(maps: list[LinkMap]) -> tuple[dict[str, int], dict[tuple[int, int], int]]:
    """Positions by name (find_by_name) and by file identity: the first map in order wins."""
    by_name: dict[str, int] = {}
    by_id: dict[tuple[int, int], int] = {}
    for k, m in enumerate(maps):
        index_map(m, k, by_name, by_id)
    return by_name, by_id


def index_map(m: LinkMap, k: int, by_name: dict, by_id: dict) -> None:
    if not m.is_main:                    # the executable's l_name is "": never matched by name
        by_name.setdefault(m.name, k)
    for name in m.names:
        by_name.setdefault(name, k)
    for ident in m.ids:
        by_id.setdefault(ident, k)


def merged(maps: list[LinkMap], main: LinkMap | None) -> tuple[list[LinkMap], set[str]]:
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


SYSTEM_PRELOAD = "/etc/ld.so.preload"


def preload_names(server: Server) -> list[str]:
    """What ld.so maps right after the executable, before its DT_NEEDED
    (rtld.c dl_main: LD_PRELOAD, split at spaces and colons, then the
    whitespace-separated names of /etc/ld.so.preload)."""
    names = re.split(r"[ :]+", server.environ.get("LD_PRELOAD", ""))
    if filestate.state(SYSTEM_PRELOAD).is_regular:
        try:
            with open(rootfs.host(SYSTEM_PRELOAD), encoding="utf-8", errors="surrogateescape") as f:
                names += f.read(1 << 16).split()
        except OSError:
            pass
    return [n for n in names if n]


def executable_closure(server: Server, loader) -> list[LinkMap]:
    """What ld.so mapped at startup for the executable: the preloads, then
    the DT_NEEDED tree breadth-first."""
    if loader.main is None or loader.main.obj is None:
        return []
    startup = loader.fresh()             # nothing mapped yet but the executable
    maps: list[LinkMap] = []
    for name in preload_names(server):
        try:
            mapped = startup.map_object(startup.main, name)
        except LoadFailure:
            continue                     # ld.so says so on stderr and goes on
        if mapped.new:
            mapped.map.preloaded = True
            maps.append(mapped.map)
    queue = [startup.main] + list(maps)
    edges = 0
    while queue and len(maps) < MAX_OBJECTS:
        current = queue.pop(0)
        for needed in current.obj.needed if current.obj else []:
            edges += 1
            if edges > MAX_EDGES:
                return maps
            try:
                mapped = startup.map_object(current, needed)
            except LoadFailure:
                continue
            if mapped.new:
                mapped.map.preloaded = True
                maps.append(mapped.map)
                queue.append(mapped.map)
    return maps
