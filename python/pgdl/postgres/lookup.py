"""PostgreSQL's library name lookup, as dfmgr.c's expand_dynamic_library_name().

For a name without a slash, each dynamic_library_path entry is tried; for a
name with one, the name itself ($libdir substituted).  If nothing is found the
same is done again with DLSUFFIX appended, and if that fails too the name is
passed to the loader unchanged, so dlopen() reports the error.
"""

from __future__ import annotations

import errno
import os

from .. import filestate
from ..errors import INVALID_NAME, PgError, PgErrorRaised, errcode_for_file_access
from ..record import Record, Value
from ..server import Server


class Candidate(Value):
    """One file name dfmgr.c tries, and what it found there (a row of pgdl.resolve(),
    the SQL type pgdl.resolution_step)."""
    __slots__ = ("step", "rule", "candidate", "file_exists", "regular_file", "chosen")

    def __init__(self, step: int, rule: str, candidate: str, file_exists: bool, regular_file: bool, chosen: bool):
        self.step = step
        self.rule = rule
        self.candidate = candidate
        self.file_exists = file_exists  # stat() succeeds
        self.regular_file = regular_file
        self.chosen = chosen


class Resolution(Record):
    """expand_dynamic_library_name(): the names tried and the one used."""
    __slots__ = ("name", "searched_name", "candidates", "full_name", "found", "error", "last_errno")

    def __init__(self, name: str, searched_name: str, candidates: list[Candidate] | None = None,
                 full_name: str | None = None, found: bool = False, error: PgError | None = None,
                 last_errno: int = 0):
        self.name = name                    # the name as given
        self.searched_name = searched_name  # after version-specific rewriting (PG 18 strips "$libdir/")
        self.candidates = [] if candidates is None else candidates
        self.full_name = full_name          # what is passed to internal_load_library()
        self.found = found
        self.error = error                  # the lookup itself raised this
        # errno of the last failed stat(): dlopen() does not touch errno, so when
        # glibc records no error code (undefined symbol, bad ELF header...) this
        # stale value is what errcode_for_file_access() turns into the SQLSTATE.
        self.last_errno = last_errno


def resolve(name: str, server: Server, for_function: bool = False) -> Resolution:
    """Simulate expand_dynamic_library_name() for `name` on `server`.

    `for_function`: the name comes from a C function (CREATE FUNCTION or a
    call, via load_external_function()) rather than LOAD or a preload setting.
    """
    searched = _strip_libdir_prefix(name, server) if for_function else name
    res = Resolution(name=name, searched_name=searched)
    try:
        full = _expand(searched, server, res)
    except PgErrorRaised as raised:
        res.error = raised.error
        return res
    if full is None:
        res.full_name = searched
    else:
        res.full_name = full
        res.found = True
    return res


def _strip_libdir_prefix(name: str, server: Server) -> str:
    # PostgreSQL 18 load_external_function() (for extension_control_path): a
    # leading "$libdir/" is removed so the rest is searched in
    # dynamic_library_path, only when no further directory separator follows.
    # LOAD and the preload settings (load_file()) do not strip it.
    if server.major >= 18 and name.startswith("$libdir/") and "/" not in name[len("$libdir/"):]:
        return name[len("$libdir/"):]
    return name


def _expand(name: str, server: Server, res: Resolution) -> str | None:
    have_slash = "/" in name
    for suffixed in (False, True):
        attempt = name + server.dlsuffix if suffixed else name
        if not have_slash:
            full = _find_in_dynamic_libpath(attempt, server, res, suffixed)
            if full is not None:
                return full
        else:
            full = substitute_libpath_macro(attempt, server)
            rule = _rule_for_slashed(attempt, suffixed)
            if _file_exists(full, res, rule, server):
                return full
    return None


def _rule_for_slashed(name: str, suffixed: bool) -> str:
    if name.startswith("$libdir"):
        rule = "$libdir macro"
    elif name.startswith("/"):
        rule = "absolute path"
    else:
        rule = "relative to the data directory"
    return rule + (" + DLSUFFIX" if suffixed else "")


def substitute_libpath_macro(name: str, server: Server) -> str:
    """dfmgr.c: only "$libdir" at the very start is recognised."""
    if not name.startswith("$"):
        return name
    sep = name.find("/")
    head = name if sep < 0 else name[:sep]
    if head != "$libdir":
        # PostgreSQL 18 shares this code with extension_control_path.
        wording = "in path" if server.major >= 18 else "in dynamic library path"
        raise PgErrorRaised(PgError(INVALID_NAME, f"invalid macro name {wording}: {name}"))
    return server.pkglibdir + ("" if sep < 0 else name[sep:])


def library_path(server: Server):
    """(number, entry, directory) of each dynamic_library_path entry, in order;
    PgErrorRaised when the server's walk of the path would reach a bad entry
    (only then: an earlier entry may find the file first)."""
    path = server.dynamic_library_path
    if path == "":
        return
    entries = path.split(":")
    for number, piece in enumerate(entries, start=1):
        if piece == "" and number < len(entries):
            # An empty piece after a trailing ':' is not caught here but
            # fails the absolute-path test below, as in C.
            raise PgErrorRaised(PgError(INVALID_NAME,
                                        'zero-length component in parameter "dynamic_library_path"'))
        mangled = canonicalize_path(substitute_libpath_macro(piece, server), server.major)
        if not mangled.startswith("/"):
            raise PgErrorRaised(PgError(
                INVALID_NAME, 'component in parameter "dynamic_library_path" is not an absolute path'))
        yield number, piece, mangled


def library_path_directories(server: Server) -> list[str]:
    """The directories dynamic_library_path names, as far as the path is valid."""
    dirs = []
    try:
        for _number, _piece, directory in library_path(server):
            dirs.append(directory)
    except PgErrorRaised:
        pass
    return dirs


def _find_in_dynamic_libpath(basename: str, server: Server, res: Resolution, suffixed: bool) -> str | None:
    for number, piece, mangled in library_path(server):
        full = f"{mangled}/{basename}"
        rule = f"dynamic_library_path entry {number} ({piece})" + (" + DLSUFFIX" if suffixed else "")
        if _file_exists(full, res, rule, server):
            return full
    return None


def _file_exists(name: str, res: Resolution, rule: str, server: Server) -> bool:
    """dfmgr.c's file_exists(): stat() succeeds and it is not a directory."""
    s = filestate.state(name)
    if s.error:
        err = s.error
        res.candidates.append(Candidate(len(res.candidates) + 1, rule, name, False, False, False))
        res.last_errno = err
        if err in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
            return False
        raise PgErrorRaised(PgError(errcode_for_file_access(err, server.major),
                                    f'could not access file "{name}": {os.strerror(err)}'))
    regular, chosen = s.is_regular, not s.is_dir
    res.candidates.append(Candidate(len(res.candidates) + 1, rule, name, True, regular, chosen))
    return chosen


def canonicalize_path(path: str, major: int) -> str:
    """src/port/path.c canonicalize_path() for Unix paths.

    PostgreSQL 15 made it resolve "." and ".." components everywhere; earlier
    versions only trimmed them from the end (commit "Make canonicalize_path()
    more canonical", 2022).
    """
    while "//" in path:
        path = path.replace("//", "/")
    if major >= 15:
        absolute = path.startswith("/")
        parts: list[str] = []
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if part == ".." and parts and parts[-1] != "..":
                parts.pop()
            elif part == ".." and absolute:
                continue
            else:
                parts.append(part)
        result = ("/" if absolute else "") + "/".join(parts)
        return result or ("/" if absolute else ".")
    # Before 15: strip trailing "/", "/." and "/.." (the latter removing a level).
    while len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    pending = 0
    while True:
        if path.endswith("/."):
            path = path[:-2] or "/"
        elif path.endswith("/.."):
            path = path[:-3] or "/"
            pending += 1
        elif pending and path not in ("", "/"):
            path = path[:path.rfind("/")] or "/"
            pending -= 1
        else:
            break
    return path
