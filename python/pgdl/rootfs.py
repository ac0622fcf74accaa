"""The file system the described installation sees: "/" for a running server
(and for the shell tool by default), another root directory -- a chroot, a
container image -- for `pgdl --root DIR`.  Paths in pgdl stay as the
installation sees them; only where a file is opened, stat()ed or listed is
one turned into the host's path here, its symbolic links followed inside the
root as the kernel follows them in a chroot.  /proc is the host's: the same
kernel and CPU run both."""

from __future__ import annotations

import os

MAXSYMLINKS = 40

_root = "/"


def set_root(root: str) -> None:
    """Every path from now on is read below `root` (the shell tool's --root)."""
    global _root
    _root = os.path.abspath(root)


def root() -> str:
    return _root


def host(path: str) -> str:
    """Where the installation's `path` is on this host."""
    if _root == "/" or path.startswith("/proc/"):
        return path
    return _root + (_resolve(path) if path.startswith("/") else "/" + path)


def host_entry(path: str) -> str:
    """host() of the directory, the last component itself not followed (for lstat)."""
    if _root == "/":
        return path
    parent, name = os.path.split(path)
    return os.path.join(host(parent or "/"), name)


def realpath(path: str) -> str:
    """os.path.realpath() as the installation sees it (inside its root)."""
    if _root == "/":
        return os.path.realpath(path)
    return _resolve(path if path.startswith("/") else "/" + path)


def _resolve(path: str) -> str:
    """The in-root path with every symbolic link followed inside the root; a
    component that is not a link, or does not exist, is kept as it is."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = "/" + "/".join(done + [part])
        try:
            target = os.readlink(_root + candidate)
        except OSError:             # not a link (or not there): the kernel would stop or go on here too
            done.append(part)
            continue
        hops += 1
        if hops > MAXSYMLINKS:
            return candidate        # ELOOP: opening it fails as it would
        if target.startswith("/"):
            done = []
        parts[:0] = [p for p in target.split("/") if p not in ("", ".")]
    return "/" + "/".join(done)


def glob(pattern: str) -> list[str]:
    """glob.glob() inside the installation's root, as paths it sees."""
    import glob as globbing
    if _root == "/":
        return globbing.glob(pattern)
    return [p[len(_root):] for p in globbing.glob(_root + pattern)]
