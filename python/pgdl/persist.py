"""Answers kept across backends, in one small file of the server's OS user.

A new backend knows nothing of what the last one worked out: binding every
module of a host against its closure costs most of a first audit, and it is
the same answer as long as the same files are bound by the same rules.  So
such answers are kept in a file, each under a digest of everything it is a
function of:

* the state (pgdl.filestate.State: device, inode, mode, size, mtime, ctime,
  owner) of every file it was worked out from, with its path, in order;
* the rules applied (the glibc release, the machine) and pgdl's own code.

A library replaced, rebuilt or chmod'ed changes its state; an ldconfig, an
environment or a SET that makes the loader choose another file changes the
paths; so the entry is never found again, and the answer is worked out
afresh (and kept in turn).  Only answers from settled states are kept
(pgdl.filestate.settled: a file written within the last second may change
again within its timestamp).  Which files an answer rests on is worked out
anew by each call; only the answer kept is reused.

The file is ~/.cache/pgdl/answers of the OS user (its home from the password
database), read only if that user owns it and its directory (neither a
symlink) and nobody else can write to either.  PGDL_CACHE_DIR in the
server's environment names another directory (absolute); set to the empty
string, nothing is kept.  Deleting the file is always safe: each call looks
whether it changed.  Only inside `kept()` (one SQL call, one shell-tool run)
are answers looked up or kept; a process in which a read failed keeps no more
(pgdl.filestate.read_failed()).
"""

from __future__ import annotations

import marshal
import os
import pwd
import stat
import time
from contextlib import contextmanager

try:
    from _blake2 import blake2b      # what hashlib serves it from, without hashlib's 4 ms import
except ImportError:                  # pragma: no cover - a Python built without it
    from hashlib import blake2b

from . import filestate

FILE_NAME = "answers"
MAX_ENTRIES = 5_000           # an audit of a big host keeps about 200 a context; the least recently used go
MAX_BYTES = 8 << 20           # a larger file is not read, nor written

_answers: dict[bytes, object] | None = None     # as read (and added to) by this process
_loaded_state: filestate.State | None = None    # the file's state when read
_new: dict[bytes, object] = {}                  # kept in this block, written at its end
_used: set[bytes] = set()                       # found by this process: the last to be dropped
_active = False
_started_ns = 0                                 # when this block began (pgdl.filestate.settled)


@contextmanager
def kept():
    """One call: answers may be looked up and kept; the new ones are written at the end."""
    global _active, _answers, _started_ns
    if _active:
        yield
        return
    _active, _started_ns = True, time.time_ns()
    if _answers is not None and _file_identity() != _loaded_state:
        _answers = None                  # changed or removed since this process read it: read it again
    try:
        yield
    finally:
        _active = False
        if _new:
            try:
                _write()
            except Exception:            # a cache: never the reason a call fails
                pass
            _new.clear()


class Kind:
    """One kind of answer kept, and how its values are written as plain data."""

    __slots__ = ("name", "to_plain", "from_plain")

    def __init__(self, name: str, to_plain=None, from_plain=None):
        self.name, self.to_plain, self.from_plain = name, to_plain, from_plain

    def answer(self, key: tuple, rests_on, compute):
        """The answer kept under key, else compute()'s (then kept, if every state
        it rests on -- those in the key -- is settled).  key: plain values with
        a repr that tells them apart (tuples, str, int, bool, None, States)."""
        if not _active or CODE is None or _load() is None:
            return compute()
        digest = digest_of((CODE, self.name, key))
        kept = _answers.get(digest)
        if isinstance(kept, tuple) and len(kept) == 1:
            try:
                value = kept[0] if self.from_plain is None else self.from_plain(kept[0])
            except (TypeError, ValueError):  # not what this code writes: work it out
                pass
            else:
                _used.add(digest)
                return value
        value = compute()
        if settled(rests_on):
            _answers[digest] = _new[digest] = (value if self.to_plain is None else self.to_plain(value),)
        return value


def keeping() -> bool:
    """Whether answers may be kept across backends now: inside kept(), with
    pgdl's code identified, and no read failed in this process."""
    return _active and CODE is not None and not filestate.failed_reads


def settled(states) -> bool:
    """Whether an answer resting on these states may be kept: no read failed in
    this process, and each state was settled when this block began (a state
    examined during the block was examined after it began)."""
    return not filestate.failed_reads and all(filestate.settled(s, _started_ns) for s in states)


def digest_of(value) -> bytes:
    """A short stand-in for a long part of a key (the same value, the same digest)."""
    return blake2b(repr(value).encode("utf-8", "surrogateescape"), digest_size=16).digest()


def _code_identity() -> str | None:
    """pgdl's version and the state of each of its modules, as this process
    imported them: new code, new answers.  None (nothing kept) if they cannot be read."""
    from . import __version__
    parts, directories = [__version__], [os.path.dirname(os.path.abspath(__file__))]
    try:
        for directory in directories:
            with os.scandir(directory) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    if entry.is_dir(follow_symlinks=False) and entry.name != "__pycache__":
                        directories.append(entry.path)
                    elif entry.name.endswith(".py"):
                        st = entry.stat()
                        parts.append((entry.path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    except OSError:
        return None
    return digest_of(parts).hex()


CODE = _code_identity()


def directory() -> str | None:
    """Where the answers are kept, or None if nowhere."""
    chosen = os.environ.get("PGDL_CACHE_DIR")
    if chosen is not None:
        return chosen if os.path.isabs(chosen) else None
    try:
        home = pwd.getpwuid(os.geteuid()).pw_dir
    except KeyError:
        return None
    return os.path.join(home, ".cache", "pgdl") if home and home != "/" else None


def trusted(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def open_directory(subdirectory: str | None = None, create: bool = True) -> int | None:
    """The answers' directory, or a subdirectory of it (made if `create`),
    opened (never through a symlink) if it is to be trusted."""
    where = directory()
    if where is None:
        return None
    try:
        os.makedirs(where, mode=0o700, exist_ok=True)
    except OSError:
        return None
    fd = _trusted_directory(where)
    if fd is None or subdirectory is None:
        return fd
    try:
        if create:
            try:
                os.mkdir(subdirectory, 0o700, dir_fd=fd)
            except FileExistsError:
                pass
        return _trusted_directory(subdirectory, fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def _trusted_directory(path: str, dir_fd: int | None = None) -> int | None:
    """path (relative to dir_fd) opened as a directory, not through a symlink, if it is to be trusted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if trusted(os.fstat(fd)):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _file_identity() -> filestate.State | None:
    """The answers file's state now, or None if there is none to trust."""
    fd = open_directory()
    if fd is None:
        return None
    try:
        return filestate.State.of(os.stat(FILE_NAME, dir_fd=fd, follow_symlinks=False))
    except OSError:
        return None
    finally:
        os.close(fd)


def _load() -> dict | None:
    """The kept answers (read when a block first needs them), or None if none can be kept."""
    global _answers, _loaded_state
    if _answers is None:
        fd = open_directory()
        if fd is None:
            return None
        try:
            _answers, _loaded_state = _read(fd)
        finally:
            os.close(fd)
    return _answers


def read_trusted(directory_fd: int, name: str, limit: int) -> tuple[bytes, os.stat_result] | None:
    """The bytes of `name` in the directory, and its stat(), if it is a regular
    file (not a symlink) of this user that nobody else may write, of at most `limit` bytes."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not trusted(st) or st.st_size > limit:
            return None
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), st
    except OSError:
        return None
    finally:
        os.close(fd)


def write_replacing(directory_fd: int, name: str, data: bytes) -> None:
    """`name` in the directory replaced by `data` at once: written to a temporary
    file of a random name (nobody else may write the directory), renamed over it."""
    temporary = f".{name}.{os.getpid()}.{os.urandom(6).hex()}"
    out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                  dir_fd=directory_fd)
    try:
        with os.fdopen(out, "wb") as f:
            f.write(data)
        os.replace(temporary, name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
    except BaseException:
        os.unlink(temporary, dir_fd=directory_fd)
        raise


def _read(directory_fd: int) -> tuple[dict, filestate.State | None]:
    found = read_trusted(directory_fd, FILE_NAME, MAX_BYTES)
    if found is None:
        return {}, None
    try:
        answers = marshal.loads(found[0])
    except (EOFError, ValueError, TypeError):
        return {}, None
    return (answers, filestate.State.of(found[1])) if isinstance(answers, dict) else ({}, None)


def _write() -> None:
    """Write the answers, with what another process wrote meanwhile (concurrent
    writers may lose each other's latest answers: it is a cache)."""
    global _answers, _loaded_state
    fd = open_directory()
    if fd is None or _answers is None:
        return
    try:
        try:
            now = filestate.State.of(os.stat(FILE_NAME, dir_fd=fd, follow_symlinks=False))
        except OSError:
            now = None
        if now != _loaded_state:
            # Written by another process since this one read it, or removed: start from that.
            theirs = _read(fd)[0] if now is not None else {}
            theirs.update(_new)
            _answers = theirs
        for digest in (*_used, *_new):       # the answers in use move to the end, last to go
            if digest in _answers:
                _answers[digest] = _answers.pop(digest)
        while len(_answers) > MAX_ENTRIES:
            del _answers[next(iter(_answers))]
        data = marshal.dumps(_answers)
        if len(data) > MAX_BYTES:
            return
        write_replacing(fd, FILE_NAME, data)
        _loaded_state = filestate.State.of(os.stat(FILE_NAME, dir_fd=fd, follow_symlinks=False))
    except OSError:
        pass
    finally:
        os.close(fd)
