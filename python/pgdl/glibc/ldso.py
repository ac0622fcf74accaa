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

import os

from .. import interrupts, rootfs
from ..elf import DT_AUXILIARY, DT_NEEDED, ElfError
from ..server import Server
from .linkmap import MAX_EDGES, MAX_OBJECTS, Dependency, Found, LinkMap, LoadFailure, LoadTree
from .dst import PLATFORMS, dst_lib, expand_dst, split_path_list
from .loader import Loader


def load_tree(module_path: str, server: Server, cache=None) -> LoadTree:
    """Every object dlopen(module_path, RTLD_NOW|RTLD_GLOBAL) would map.

    glibc stops at the first failure; pgdl records it as `error` and goes on
    with the rest of the tree, so that every missing library is listed."""
    tree = LoadTree(module=module_path, deps=[])
    try:
        loader = Loader(server, cache)
    except (ElfError, OSError, ValueError) as exc:
        tree.deps.append(Dependency(0, module_path, None, None, "path given", Found.ERROR, str(exc)))
        tree.error = f"{module_path}: pgdl cannot describe the server: {exc}"
        return tree
    tree.first_new = len(loader.maps)
    tree.global_maps = loader.global_maps
    tree.static_tls = loader.static_tls
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
        for tag, raw in current.obj.filtees or [(DT_NEEDED, n) for n in current.obj.needed]:
            interrupts.check()
            edges += 1
            if edges > MAX_EDGES or len(tree.deps) >= MAX_OBJECTS:
                failure = LoadFailure(f"{module_path}: more than {MAX_OBJECTS} dependencies; pgdl stopped", 0)
                tree.deps.append(Dependency(depth + 1, raw, current.name, None, "", Found.ERROR, failure.text))
                _fail(tree, failure)
                return
            name = loader.expander(current)(raw) if "$" in raw else raw
            if not name:
                tree.deps.append(Dependency(depth + 1, raw, current.name, None, "", Found.SKIPPED,
                                            "dynamic string token expands to nothing; glibc ignores it"))
                continue
            # dl-deps.c: a DT_FILTER filtee is mapped like a DT_NEEDED entry (and its
            # absence is as fatal); a DT_AUXILIARY one is tried, and its absence ignored.
            m = _map_row(tree, loader, current, name, depth + 1, current.name, listed=listed,
                         optional=tag == DT_AUXILIARY)
            if m is not None:
                tree.links.setdefault(id(current), []).append(m)
            if m is not None and id(m) not in listed:
                listed.add(id(m))
                queue.append((m, depth + 1))


def _map_row(tree: LoadTree, loader: Loader, requester: LinkMap | None, name: str, depth: int,
             required_by: str | None, callmap: bool = False, listed: set | None = None,
             optional: bool = False) -> LinkMap | None:
    """Map one name and add its row (once per object); None if it fails.
    optional: a DT_AUXILIARY filtee, whose failure glibc ignores."""
    try:
        mapped = loader.map_object(requester, name, callmap=callmap)
    except LoadFailure as failure:
        if optional:
            tree.deps.append(Dependency(depth, name, required_by, None, "", Found.SKIPPED,
                                        f"auxiliary filtee (DT_AUXILIARY) that glibc skips: {failure.text}"))
            return None
        status = Found.NOT_FOUND if failure.not_found else Found.ERROR
        tree.deps.append(Dependency(depth, name, required_by, None, "", status, failure.text))
        _fail(tree, failure)
        return None
    except (ElfError, OSError, ValueError, RecursionError) as exc:   # never escape
        failure = LoadFailure(f"{name}: pgdl could not examine it: {exc}", 0)
        tree.deps.append(Dependency(depth, name, required_by, None, "", Found.ERROR, failure.text))
        _fail(tree, failure)
        return None
    m = mapped.map
    if listed is not None and id(m) in listed:
        return m                         # already in this tree: glibc lists it once
    status = Found.OK if mapped.new else Found.ALREADY_LOADED
    path = m.name or loader.server.executable
    tree.deps.append(Dependency(depth, name, required_by, path, mapped.found_via, status, mapped.detail, m.obj))
    return m


def searched_directories(tree: LoadTree, server: Server) -> list[str]:
    """Every directory the RPATH and RUNPATH entries of the tree's objects and
    the server's LD_LIBRARY_PATH name, expanded as the loader expands them
    (where other copies of a library would be found)."""
    platform, lib = PLATFORMS.get(server.machine, "x86_64"), dst_lib(server)
    dirs: list[str] = []
    for dep in tree.deps:
        obj = dep.obj
        if obj is None or not dep.path:
            continue
        origin = os.path.dirname(dep.path) or "/"
        expand = lambda text, origin=origin: expand_dst(text, origin, platform, lib)   # noqa: E731
        for entries in (obj.rpath, obj.runpath):
            if entries:
                dirs += split_path_list(entries, ":", expand)
    llp = server.environ.get("LD_LIBRARY_PATH")
    if llp:
        origin = os.path.dirname(rootfs.realpath(server.executable)) if server.executable else None
        dirs += split_path_list(llp, ":;", lambda text: expand_dst(text, origin, platform, lib))
    return [d for d in dict.fromkeys(dirs) if d]
