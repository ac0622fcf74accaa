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
database), read only if that user owns it and its directory and nobody else
can write to either.  PGDL_CACHE_DIR in the server's environment names
another directory; set to the empty string, nothing is kept.  Deleting the
file is always safe.  Only inside `kept()` (one SQL call, one shell-tool run)
are answers looked up or kept.
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
MAX_BYTES = 8 << 20           # a file larger than this is not read (it is not pgdl's)

_answers: dict[bytes, object] | None = None     # loaded on first use in a kept() block
_loaded_state: tuple | None = None              # the file's (ino, size, mtime_ns) when read
_new: dict[bytes, object] = {}                  # kept in this block, written at its end
_used: set[bytes] = set()                       # found by this process: the last to be dropped
_active = False
_code: str | None = None
_distrusted = 0                                 # reads that failed (pgdl.elf.objects), ever


@contextmanager
def kept():
    """One call: answers may be looked up and kept; the new ones are written at the end."""
    global _active
    if _active:
        yield
        return
    _active = True
    try:
        yield
    finally:
        _active = False
        if _new:
            _write()


def get(kind: str, key: tuple):
    """The answer kept under (kind, key), or None.  key: plain values, the
    states of the files the answer rests on among them."""
    return _get(_digest(kind, key)) if _active else None


def put(kind: str, key: tuple, value, rests_on) -> None:
    """Keep `value` (plain data marshal can write) under (kind, key), if every
    state it rests on (the states in the key) is settled."""
    if _active:
        _put(_digest(kind, key), value, rests_on)


def _get(digest: bytes):
    answers = _load()
    found = None if answers is None else answers.get(digest)
    if found is not None:
        _used.add(digest)
    return found


def _put(digest: bytes, value, rests_on) -> None:
    if _load() is None:
        return
    now = time.time_ns()
    if all(filestate.settled(s, now) for s in rests_on):
        _answers[digest] = _new[digest] = value


def digest_of(value) -> bytes:
    """A short stand-in for a long part of a key (the same value, the same digest)."""
    return blake2b(repr(value).encode("utf-8", "surrogateescape"), digest_size=16).digest()


def distrust() -> None:
    """A read failed (an I/O error, a file that changed under the reader): the
    answers being worked out now may rest on it and are not kept, whatever
    they are (a damaged file's answer, which fails the same way each time,
    is still kept)."""
    global _distrusted
    _distrusted += 1


class Kind:
    """One kind of answer kept, and how its values are written as plain data."""

    __slots__ = ("name", "to_plain", "from_plain")

    def __init__(self, name: str, to_plain=None, from_plain=None):
        self.name, self.to_plain, self.from_plain = name, to_plain, from_plain

    def answer(self, key: tuple, rests_on, compute):
        """The answer kept under key, else compute()'s (then kept, if what it rests on is settled)."""
        if not _active:
            return compute()
        digest = _digest(self.name, key)
        kept = _get(digest)
        if isinstance(kept, tuple) and len(kept) == 1:
            try:
                return kept[0] if self.from_plain is None else self.from_plain(kept[0])
            except (TypeError, ValueError):  # not what this code writes: work it out
                pass
        failed_reads = _distrusted
        value = compute()
        if _distrusted == failed_reads:
            _put(digest, (value if self.to_plain is None else self.to_plain(value),), rests_on)
        return value


def _digest(kind: str, key: tuple) -> bytes:
    return digest_of((_code_identity(), kind, key))


def _code_identity() -> str:
    """pgdl's version and the state of each of its modules: new code, new answers."""
    global _code
    if _code is None:
        from . import __version__
        parts, directories = [__version__], [os.path.dirname(os.path.abspath(__file__))]
        for directory in directories:
            with os.scandir(directory) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    if entry.is_dir(follow_symlinks=False) and entry.name != "__pycache__":
                        directories.append(entry.path)
                    elif entry.name.endswith(".py"):
                        st = entry.stat()
                        parts.append((entry.path, st.st_size, st.st_mtime_ns))
        _code = digest_of(parts).hex()
    return _code


def directory() -> str | None:
    """Where the answers are kept, or None if nowhere."""
    chosen = os.environ.get("PGDL_CACHE_DIR")
    if chosen is not None:
        return chosen or None
    try:
        home = pwd.getpwuid(os.geteuid()).pw_dir
    except KeyError:
        return None
    return os.path.join(home, ".cache", "pgdl") if home and home != "/" else None


def _trusted(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _load() -> dict | None:
    """The kept answers (read once a process), or None if none can be kept."""
    global _answers, _loaded_state
    if _answers is not None:
        return _answers
    where = directory()
    if where is None:
        return None
    try:
        os.makedirs(where, mode=0o700, exist_ok=True)
        if not _trusted(os.stat(where)):
            return None
    except OSError:
        return None
    _answers, _loaded_state = _read(os.path.join(where, FILE_NAME))
    return _answers


def _read(path: str) -> tuple[dict, tuple | None]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return {}, None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not _trusted(st) or st.st_size > MAX_BYTES:
            return {}, None
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(MAX_BYTES + 1)
        answers = marshal.loads(data)
    except (OSError, EOFError, ValueError, TypeError):
        return {}, None
    finally:
        os.close(fd)
    if not isinstance(answers, dict):      # a key that is no digest is never looked up; values are checked on use
        return {}, None
    return answers, (st.st_ino, st.st_size, st.st_mtime_ns)


def _write() -> None:
    """Write the answers, with what another backend wrote meanwhile; a failure only loses the cache."""
    global _answers, _loaded_state
    where, new = directory(), dict(_new)
    _new.clear()
    if where is None or _answers is None:
        return
    path = os.path.join(where, FILE_NAME)
    try:
        st = os.stat(path)
        now = (st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        now = None
    if now is not None and now != _loaded_state:
        theirs, _ = _read(path)
        theirs.update(new)
        _answers = theirs
    for digest in (*_used, *new):            # the answers in use move to the end, last to go
        if digest in _answers:
            _answers[digest] = _answers.pop(digest)
    while len(_answers) > MAX_ENTRIES:
        del _answers[next(iter(_answers))]
    temporary = os.path.join(where, f".{FILE_NAME}.{os.getpid()}")    # one backend writes it at a time
    try:
        try:
            os.unlink(temporary)             # left by a backend that died writing it
        except FileNotFoundError:
            pass
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                marshal.dump(_answers, f)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
        st = os.stat(path)
        _loaded_state = (st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        pass
