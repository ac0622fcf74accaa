"""One dlopen()'s search and mapping checks, as glibc 2.36's elf/dl-load.c
does them: _dl_map_object (by name, by path), open_path with the
hardware-capability subdirectories, the ld.so.cache lookup, open_verify and
_dl_map_object_from_fd's checks."""

from __future__ import annotations

import errno as errnos
import functools
import os

from .. import filestate, rootfs
from ..elf import DF_1_NOOPEN, DF_1_PIE, ElfError, ElfObject, cached_elf
from ..record import Record
from ..server import Server
from . import cachefile
from .dst import PLATFORMS, dst_lib, expand_dst, split_path_list, system_dirs
from .hwcaps import host_capability_subdirs
from .linkmap import MAX_OBJECTS, LinkMap, LoadFailure, Mapped, Rule
from .mapping import mapping_failure, needs_executable_stack, stack_executable
from .openfile import IS_A_DIRECTORY, read_header
from .openverify import verify_header
from .startup import in_global_scope, indexes, index_map, merged, startup_maps


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
        self.rules = server.rules
        self.caps = host_capability_subdirs(server.machine, self.rules)
        self.system_dirs = system_dirs(server)
        self.platform = PLATFORMS.get(server.machine, "x86_64")
        self.lib = dst_lib(server)
        self.cwd = server.data_directory or "/"
        self.main = _main_map(server)
        self.maps: list[LinkMap] = [self.main] if self.main else []
        self._shared: set[int] = set()            # maps shared with other Loaders: copy before changing
        if preloaded is None:
            start = startup_maps(server, self)
            preloaded, main_names, by_name, by_id, global_maps = (start.maps, set(start.main_names), start.by_name,
                                                                  start.by_id, start.global_maps)
            self._shared = {id(m) for m in preloaded}
            self.static_tls = start.static_tls
        else:
            self.static_tls = None
            preloaded, main_names = merged(preloaded, self.main)
            by_name = by_id = global_maps = None
        self.maps.extend(preloaded)                    # merged by identity
        if self.main is not None:
            self.main.names |= main_names
        if by_name is None:
            by_name, by_id = indexes(self.maps)
            global_maps = in_global_scope(preloaded)
        self._by_name, self._by_id = dict(by_name), dict(by_id)
        self.global_maps = [self.main] + global_maps if self.main else list(global_maps)

    @functools.cached_property
    def stack_executable(self) -> bool:
        """What the startup objects made of the stack (at startup ld.so makes it
        executable for an object that asks): asked only when a module needs it.
        Objects this dlopen has mapped by then count too, harmlessly: one that
        needed an executable stack has already been refused."""
        return stack_executable(self.server.environ, [m.obj for m in self.maps if m.obj is not None], self.rules)

    def fresh(self) -> "Loader":
        """A loader with nothing mapped but the executable (for its startup closure)."""
        return Loader(self.server, self.cache if self.cache is not None else False, preloaded=[])

    # -- environment ------------------------------------------------------

    def fs(self, path: str) -> str:
        """A path as the backend would open it (relative to its cwd)."""
        return path if path.startswith("/") else os.path.join(self.cwd, path)

    def expander(self, m: LinkMap | None):
        origin = m.origin if m is not None else None
        if m is not None and m.is_main:
            origin = os.path.dirname(rootfs.realpath(self.server.executable)) or "/"
        elif m is not None and not m.name.startswith("/"):
            origin = os.path.dirname(os.path.join(self.cwd, m.name)) or "/"
        return lambda text: expand_dst(text, origin, self.platform, self.lib)

    # -- _dl_map_object -----------------------------------------------------

    def find_by_name(self, name: str) -> LinkMap | None:
        """The first map whose l_name (not the executable's) or l_libname/SONAME is `name`."""
        k = self._by_name.get(name)
        return None if k is None else self.maps[k]

    def map_object(self, loader: LinkMap | None, name: str, callmap: bool = False) -> Mapped:
        """What _dl_map_object makes of `name`; LoadFailure if dlopen fails.

        loader is the requesting object (the executable for the module
        itself).  callmap: dlopen's own call, whose result has no l_loader."""
        existing = self.find_by_name(name)
        if existing is not None:
            return Mapped(existing, False, Rule.LOADED.value)
        search = _Search()
        if "/" in name:
            realname = name
            probe = self.probe(realname, search)
            if not probe.ok:
                raise self._not_found(name, search)
            via = Rule.PATH.value
        else:
            realname, via = self.search(loader, name, search)
        detail = "; ".join(search.notes) or None
        ident = filestate.state(self.fs(realname)).identity
        k = self._by_id.get(ident) if ident else None
        if k is not None and self.maps[k].is_main:
            # The executable's link map has no file id (rtld.c never sets it): naming its
            # file maps it anew, and check_mappable() refuses a PIE.
            k = None
        if k is not None:
            m = self.maps[k]
            if id(m) in self._shared:
                self._shared.discard(id(m))
                m = self.maps[k] = LinkMap(m.name, m.obj, set(m.names), set(m.ids), m.loader,
                                           m.preloaded, m.is_main)
            m.names.add(name)
            self._by_name.setdefault(name, k)
            return Mapped(m, False, f"{Rule.LOADED.value} (same file as " + (m.name or "the executable") + ")", detail)
        obj = self.check_mappable(name, realname)
        m = LinkMap(realname, obj, {name} | ({obj.soname} if obj.soname else set()),
                    {ident} if ident else set(), None if callmap else loader)
        self.maps.append(m)
        index_map(m, len(self.maps) - 1, self._by_name, self._by_id)
        return Mapped(m, True, via, detail)

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
            return cached, Rule.CACHE.value
        if requester is None or requester.obj is None or not requester.obj.nodeflib:
            search.searched.append("default directories")
            found = self.open_path(name, self.system_dirs, search)
            if found is not None:
                return found, Rule.DEFAULT.value
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
                    yield (f"{Rule.RPATH.value}{'executable ' + self.server.executable if chain.is_main else chain.name}",
                           dirs)
                    did_main |= chain.is_main
                chain, seen = chain.loader, seen + 1
            main = self.main
            if not did_main and main is not None and main.obj is not None and main.obj.runpath is None:
                dirs = self._rpath_dirs(main)
                if dirs:
                    yield f"{Rule.RPATH.value}executable {self.server.executable}", dirs
        llp = self.server.environ.get("LD_LIBRARY_PATH")
        if llp:
            dirs = split_path_list(llp, ":;", self.expander(self.main))
            if dirs:
                yield Rule.LD_LIBRARY_PATH.value, dirs
        if loader is not None and loader.obj is not None and loader.obj.runpath:
            dirs = split_path_list(loader.obj.runpath, ":", self.expander(loader))
            if dirs:
                what = f"executable {self.server.executable}" if loader.is_main else loader.name
                yield f"{Rule.RUNPATH.value}{what}", dirs

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
                if where.startswith("/") and not filestate.state(where).is_dir:
                    search.errno = errnos.ENOENT     # known absent: never opened
                    continue
                here_any = True
                candidate = where + name
                if self.probe(candidate, search).ok:
                    return candidate
            if here_any and search.errno not in self.rules.search_goes_on_after:
                # open_path gives up on this list ("exists but unusable").
                search.notes.append(f"search list abandoned at {directory or './'}: {os.strerror(search.errno)}")
                return None
        return None

    def cache_lookup(self, name: str, requester: LinkMap | None, search: _Search) -> str | None:
        if self.cache is None:
            return None
        search.searched.append("ld.so.cache")
        try:
            cached = self.cache.lookup(name, elf_class=self.server.elf_class, rules=self.rules)
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
        head, err = read_header(path)
        if err == errnos.EISDIR:
            raise LoadFailure(f"{candidate}: {IS_A_DIRECTORY}", errnos.EISDIR)
        if err == errnos.ENODEV:            # a device or FIFO: glibc would read it
            raise LoadFailure(f"{candidate}: file too short", 0)
        if err:
            search.errno = err
            if err != errnos.ENOENT:
                search.notes.append(f"{candidate}: {os.strerror(err)}")
            return _Probe(False, err)
        verdict = verify_header(head, host_machine=self.server.machine, host_class=self.server.elf_class,
                                size=filestate.state(path).size)
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
            return LoadFailure(f"{name}: wrong ELF class: {other}", 0, not_found=True)
        if search.errno:
            return LoadFailure(f"{name}: cannot open shared object file: {os.strerror(search.errno)}",
                               search.errno, not_found=True)
        return LoadFailure(f"{name}: cannot open shared object file", 0, not_found=True)

    def check_mappable(self, name: str, realname: str) -> ElfObject:
        """_dl_map_object_from_fd's checks, in its order; errors name `name`."""
        try:
            obj = cached_elf(self.fs(realname))
        except (ElfError, OSError, ValueError) as exc:
            raise LoadFailure(f"{name}: pgdl cannot read this file: {exc}", 0)
        refused = mapping_failure(obj, self.fs(realname), self.rules)
        if refused is not None:
            raise LoadFailure(f"{name}: {refused}", 0)
        if obj.flags_1 & DF_1_PIE and self.rules.pie_refused:
            raise LoadFailure(f"{name}: cannot dynamically load position-independent executable", 0)
        if obj.flags_1 & DF_1_NOOPEN:
            raise LoadFailure(f"{name}: shared object cannot be dlopen()ed", 0)
        if self.rules.execstack_refused and needs_executable_stack(obj) and not self.stack_executable:
            raise LoadFailure(f"{name}: cannot enable executable stack as shared object requires: "
                              f"{os.strerror(errnos.EINVAL)}", errnos.EINVAL)
        return obj


LD_SO_CACHE = "/etc/ld.so.cache"


_LD_SO_CACHE = filestate.FileCache(1)


def _load_cache():
    """/etc/ld.so.cache, parsed once while the file is in the same state."""
    return _LD_SO_CACHE.get(LD_SO_CACHE, lambda _state: _parse_cache())


def _parse_cache():
    try:
        return cachefile.load(LD_SO_CACHE)
    except (cachefile.LdCacheError, OSError):
        return None                      # ld.so ignores an unusable cache


def _main_map(server: Server) -> LinkMap | None:
    if not server.executable:
        return None
    try:
        obj = cached_elf(server.executable)
    except (ElfError, OSError):
        obj = None
    ident = filestate.state(server.executable).identity
    # The executable's l_name is "": it is never matched by name.
    return LinkMap("", obj, set(), {ident} if ident else set(), is_main=True)
