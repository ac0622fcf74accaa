"""What makes the server load the right copy of a library: a remedy for the
rule of the search that picked the wrong copy, or found none.

glibc searches in this order (elf/dl-load.c _dl_map_object, 2.28-2.43): the
DT_RPATH of the requester and of its loaders, LD_LIBRARY_PATH, the
requester's DT_RUNPATH, ld.so.cache, the default directories.  A remedy
works only where it comes before the rule that won: nothing in the
environment overrides a DT_RPATH, LD_LIBRARY_PATH overrides a DT_RUNPATH and
the cache.  A remedy that changes the server's environment is checked by
predicting the load again with it applied.  Commands are written between
backquotes, as they are to be run."""

from __future__ import annotations

import os
import shlex

from ..elf import ElfError, cached_elf
from ..engine.predict import predict_load
from ..engine.trace import Prediction
from ..glibc.dst import system_dirs
from ..glibc.ldso import searched_directories
from ..glibc.linkmap import Dependency, Rule
from ..server import Server

EXECUTABLE = "executable "


def wrong_copy(p: Prediction, dep: Dependency, good: str, server: Server) -> str:
    """dep: the copy the loader chose, which lacks what is needed; good: a copy that has it."""
    rule, owner = Rule.of(dep.found_via)
    bad, gooddir = dep.path, os.path.dirname(good)
    away = _move_away(bad) if _searched(good, p, server) else None
    if rule is Rule.RPATH:
        relink = _relink(owner, gooddir, "rpath")
        return (f"The DT_RPATH of {_name(owner)} is searched before LD_LIBRARY_PATH and ld.so.cache, so neither "
                f"can override it: " + _either(relink, away or f"remove the stale copy {bad}") + ".")
    if rule is Rule.LOADED:
        relinks = [_relink(o, gooddir, _search_tag(o)) for o in _loaded_requirers(dep.needed, bad, server)]
        what = _either(*relinks) if any(relinks) else (
            f"make what loads it (shared_preload_libraries, an earlier LOAD, the server's own dependencies) "
            f"use {good}")
        return (f"{bad} is already loaded in this process, and the loader reuses it whatever its search would "
                f"find: {what}; then restart the server.")
    if rule is Rule.PATH:
        requester = dep.required_by or (p.libname or "the module")
        return (f"DT_NEEDED of {requester} names {dep.needed} by its path, so no search is made: relink it "
                f"against {good}, or run `patchelf --replace-needed {shlex.quote(dep.needed)} {shlex.quote(good)} "
                f"{shlex.quote(requester)}`.")
    environment = _environment(p, server, gooddir, drop=os.path.dirname(bad))
    if rule is Rule.LD_LIBRARY_PATH:
        return f"The server's LD_LIBRARY_PATH finds {bad} first: " + _either(environment, away) + "."
    if rule is Rule.RUNPATH:
        return (f"LD_LIBRARY_PATH is searched before the DT_RUNPATH of {_name(owner)}: "
                + _either(environment, _relink(owner, gooddir, "runpath"), away) + ".")
    if rule is Rule.CACHE:
        cached = p.tree is not None and good in p.tree.cache_paths_of(os.path.basename(dep.needed))
        rebuild = (f"{away} and rebuild the cache: `ldconfig`" if cached and away else
                   f"list {gooddir} in a file of /etc/ld.so.conf.d read before the one that lists "
                   f"{os.path.dirname(bad)}, and run `ldconfig`")
        return f"ld.so.cache gives {bad}; LD_LIBRARY_PATH is searched before it: " + _either(environment, rebuild) + "."
    return f"{bad} is found in a default directory, searched last: " + _either(environment, away) + "."


def not_found(p: Prediction, dep: Dependency, copies: list[str], server: Server) -> str:
    """dep: a DT_NEEDED entry no search rule found; copies: files of that name elsewhere."""
    usable = [c for c in copies if _fits(c, server)]
    if not usable:
        return (f"No copy of {dep.needed} for this machine is installed: install the package that provides it "
                f"(on Debian, `apt-file search {dep.needed}` names it), or rebuild {_name(dep.required_by)} "
                "against what is installed.")
    good = usable[0]
    gooddir = os.path.dirname(good)
    requester = dep.required_by
    relink = _relink(requester, gooddir, "runpath")
    return (f"{good} is not in any directory the loader searches for it: "
            + _either(_environment(p, server, gooddir),
                      f"list {gooddir} in a file in /etc/ld.so.conf.d and run `ldconfig`", relink) + ".")


def _either(*options: str | None) -> str:
    options = [o for o in options if o]
    return "; or ".join(options) if options else "remove the stale copy"


def _name(owner: str | None) -> str:
    if not owner:
        return "the module"
    return f"the server executable {owner[len(EXECUTABLE):]}" if owner.startswith(EXECUTABLE) else owner


def _move_away(path: str) -> str:
    return f"move the stale copy away: `mv {shlex.quote(path)} {shlex.quote(path + '.stale')}`"


def _relink(owner: str | None, gooddir: str, tag: str) -> str | None:
    """Put gooddir first in the owner's DT_RPATH or DT_RUNPATH (never the server's own executable)."""
    if not owner or owner.startswith(EXECUTABLE):
        return None
    try:
        current = getattr(cached_elf(owner), tag)
    except (ElfError, OSError):
        return None
    entries = [gooddir] + [e for e in (current or "").split(":") if e and e.rstrip("/") != gooddir.rstrip("/")]
    force = "--force-rpath " if tag == "rpath" else ""
    return (f"put {gooddir} first in the DT_{tag.upper()} of {owner}: relink it with -Wl,-rpath,{gooddir}"
            + ("" if tag == "rpath" else " -Wl,--enable-new-dtags")
            + f", or run `patchelf {force}--set-rpath {shlex.quote(':'.join(entries))} {shlex.quote(owner)}`")


def _loaded_requirers(needed: str, bad: str, server: Server) -> list[str]:
    """The objects already in the process whose DT_NEEDED names `needed`: what loaded
    the copy there (the server executable aside: it is rebuilt by nobody here)."""
    out = []
    for o in server.loaded:
        if o.path in (bad, server.executable) or not o.path.startswith("/"):
            continue
        try:
            if needed in cached_elf(o.path).needed:
                out.append(o.path)
        except (ElfError, OSError):
            continue
    return out


def _search_tag(path: str) -> str:
    """The tag to put a directory in: the DT_RPATH it has, else a DT_RUNPATH."""
    try:
        obj = cached_elf(path)
    except (ElfError, OSError):
        return "runpath"
    return "rpath" if obj.rpath and not obj.runpath else "runpath"


def _environment(p: Prediction, server: Server, gooddir: str, drop: str | None = None) -> str:
    """LD_LIBRARY_PATH with gooddir first (and without the stale copy's directory),
    where this server's environment is set, and whether the load then succeeds."""
    current = server.environ.get("LD_LIBRARY_PATH", "")
    kept = [d for d in current.split(":") if d and d.rstrip("/") not in (gooddir.rstrip("/"), (drop or "").rstrip("/"))]
    value = ":".join([gooddir] + kept)
    text = f"set LD_LIBRARY_PATH={value} in {server.service.describe()} and restart the server"
    if p.libname:
        after = predict_load(p.libname, server.replace(environ={**server.environ, "LD_LIBRARY_PATH": value}))
        if after.will_load:
            text += " (pgdl predicts the load then succeeds)"
        elif after.error is not None and after.error != p.error:
            text += f" (the load then still fails: {after.error.message})"
    return text


def _searched(path: str, p: Prediction, server: Server) -> bool:
    """Whether the loader would reach `path` once the stale copy is gone."""
    directory = os.path.dirname(path).rstrip("/") + "/"
    if p.tree is not None and (directory in searched_directories(p.tree, server)
                               or path in p.tree.cache_paths_of(os.path.basename(path))):
        return True
    return directory in system_dirs(server)


def _fits(path: str, server: Server) -> bool:
    try:
        obj = cached_elf(path)
    except (ElfError, OSError):
        return False
    return obj.machine == server.machine and obj.elf_class == server.elf_class
