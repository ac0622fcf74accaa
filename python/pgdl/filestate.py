"""The state of the files an answer was worked out from.

A backend keeps pgdl's answers between calls.  An answer is reused only
while every path it looked at is in the same state as then: for a file or
directory the same (device, inode, mode, size, mtime, ctime), for a path
that could not be examined the same errno.  A replaced library, a new file
in a searched directory, a chmod, a new /etc/ld.so.cache: each changes the
state of a path some answer looked at, and that answer is worked out again.

Within one call (`one_call()`), each path is examined once: the whole call
sees one consistent picture, and re-checking a remembered answer costs a
dictionary lookup per path.  Outside a call (the pure core in tests) no
answer is remembered.

A file written a moment ago may be written again within the same timestamp
tick, leaving its state unchanged (git's "racily clean" problem).  So a
state less than a second old is not trusted: nothing that depends on it is
remembered.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections import OrderedDict
from contextlib import contextmanager

from . import rootfs


class State(tuple):
    """stat() of a path as a comparable, hashable value: (errno,) when it
    failed, else (st_dev, st_ino, st_mode, st_size, st_mtime_ns, st_ctime_ns,
    st_uid, st_gid)."""

    __slots__ = ()

    @classmethod
    def of(cls, st: os.stat_result) -> "State":
        return cls((st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_uid,
                    st.st_gid))

    @property
    def error(self) -> int:
        """The errno of a failed stat(), 0 if it succeeded."""
        return self[0] if len(self) == 1 else 0

    @property
    def identity(self) -> tuple[int, int] | None:
        """(st_dev, st_ino), as ld.so tells files apart; None if stat() failed."""
        return (self[0], self[1]) if len(self) > 1 else None

    @property
    def content(self) -> tuple | None:
        """(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns): which file, and
        which version of its bytes (a chmod leaves it the same); None if stat() failed."""
        return (self[0], self[1], self[3], self[4], self[5]) if len(self) > 1 else None

    @property
    def mode(self) -> int | None:
        return self[2] if len(self) > 1 else None

    @property
    def size(self) -> int | None:
        return self[3] if len(self) > 1 else None

    @property
    def owner(self) -> tuple[int, int] | None:
        """(st_uid, st_gid)."""
        return (self[6], self[7]) if len(self) > 1 else None

    @property
    def changed_ns(self) -> int:
        """The later of mtime and ctime (0 if stat() failed)."""
        return max(self[4], self[5]) if len(self) > 1 else 0

    @property
    def is_dir(self) -> bool:
        return len(self) > 1 and stat.S_ISDIR(self[2])

    @property
    def is_regular(self) -> bool:
        return len(self) > 1 and stat.S_ISREG(self[2])


SETTLED_NS = 1_000_000_000      # how old a change must be before an answer built on it is kept

_call: dict[str, State] | None = None        # this call's states, by path
_call_number = 0                             # which call _call belongs to
_witnesses: list["Witness"] = []             # computations under way, innermost last
_call_memo: dict | None = None               # this call's own remembered answers (this_call())
failed_reads = 0                             # reads that failed in this process (read_failed())


def read_failed() -> None:
    """A read failed (an I/O error, a file that changed under the reader, or
    one that is not the file examined): an answer worked out meanwhile is not
    remembered (Memo, FileCache), so the next call works it out again; and
    this process keeps nothing more across backends (pgdl.persist), for what
    rests on the failure may be in its caches still.  A damaged file, which
    fails the same way each time, is no reason: its errors are not failed reads."""
    global failed_reads
    failed_reads += 1


def _examine(path: str) -> State:
    try:
        st = os.stat(rootfs.host(path))
    except OSError as exc:
        return State((exc.errno or errno.EIO,))
    except ValueError:                       # an embedded NUL byte
        return State((errno.EINVAL,))
    return State.of(st)


def state(path: str) -> State:
    """stat(path) as a comparable value, noted by every computation under way."""
    if _call is None:
        s = _examine(path)
    else:
        s = _call.get(path)
        if s is None:
            s = _call[path] = _examine(path)
    for w in _witnesses:
        w.seen.setdefault(path, s)
    return s


def glob(pattern: str) -> list[str]:
    """rootfs.glob(pattern), with every directory it lists noted: a name added
    to one, or removed, changes its state."""
    def wild(text: str) -> bool:
        return any(c in text for c in "*?[")
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        if wild(part):
            prefix = "/".join(parts[:i]) or "/"
            for directory in (rootfs.glob(prefix) if wild(prefix) else [prefix]):
                state(directory)
    return rootfs.glob(pattern)


def settled(s: State, now: int | None = None) -> bool:
    """Whether a state is old enough that an unseen change within its timestamp is ruled out."""
    if s.error:
        return True
    return (time.time_ns() if now is None else now) - s.changed_ns >= SETTLED_NS


@contextmanager
def one_call():
    """One SQL function call: answers may be remembered and reused."""
    global _call, _call_number, _call_memo
    if _call is not None:
        yield                                # already inside one
        return
    _call, _call_number, _call_memo = {}, _call_number + 1, {}
    try:
        yield
    finally:
        _call = _call_memo = None


def in_call() -> bool:
    """Whether answers may be remembered now (inside one_call())."""
    return _call is not None


def this_call() -> dict:
    """A dict for answers that hold for the rest of this call: every file keeps
    the state it was first seen in until the call ends.  Outside a call, an
    empty dict each time (nothing is remembered).  A key made of objects' ids
    must keep those objects in its value, so no id is reused meanwhile."""
    return _call_memo if _call_memo is not None else {}


class Witness:
    """Every path one computation looked at, with its state at that moment.

    A remembered answer used inside another computation is recorded as a
    part (its own Witness) rather than path by path, and each part is
    checked at most once per call."""

    def __init__(self):
        self.seen: dict[str, State] = {}
        self.parts: list[Witness] = []   # remembered answers used: kept only if settled themselves
        self._held_in = 0                # the call in which holds() last said yes

    @property
    def settled(self) -> bool:
        """False if something looked at changed too recently for the answer to be kept."""
        now = time.time_ns()
        return all(settled(s, now) for s in self.seen.values())

    def holds(self) -> bool:
        """Whether every path is still as it was (and so is the answer).

        Computations under way now depend on this answer too: it becomes one of their parts."""
        ok = (_call is not None and self._held_in == _call_number) or self._check()
        if ok:
            if _call is not None:
                self._held_in = _call_number
            for w in _witnesses:
                w.parts.append(self)
        return ok

    def flat(self) -> dict[str, State]:
        """Every path this answer rests on, its parts' too, with the state it was seen in."""
        out: dict[str, State] = {}
        todo, done = [self], set()
        while todo:
            w = todo.pop()
            if id(w) not in done:
                done.add(id(w))
                for path, s in w.seen.items():
                    out.setdefault(path, s)
                todo.extend(w.parts)
        return out

    def _check(self) -> bool:
        outer = _witnesses[:]
        _witnesses.clear()                   # parts are noted whole, not path by path
        try:
            return unchanged(self.seen, self.seen.values()) and all(part.holds() for part in self.parts)
        finally:
            _witnesses.extend(outer)


def without_implied(rests_on: dict[str, State]) -> dict[str, State]:
    """rests_on without the missing paths whose directory's state says so.

    A name cannot be added to a directory without changing the directory's
    mtime and ctime, and nothing is in a directory that does not exist: while
    the directory is in the same state, a path in it that was missing still
    is.  (The directory was examined in the same call; changed during it, it
    is not settled and nothing resting on it is kept.)  Half an audit's
    paths are such misses: $libdir/name before $libdir/name.so."""
    out = {}
    for path, s in rests_on.items():
        if s.error == errno.ENOENT:
            parent = os.path.dirname(path)
            known = rests_on.get(parent) or rests_on.get(parent + "/")
            if known is not None and (known.is_dir or known.error == errno.ENOENT):
                continue
        out[path] = s
    return out


def unchanged(paths, states) -> bool:
    """Whether each path is in the state given (a Witness.flat() kept as two tuples):
    the whole answer resting on them still holds.  Each path examined once a call."""
    known = _call if _call is not None else {}
    for path, s in zip(paths, states):
        now = known.get(path)
        if now is None:
            now = known[path] = _examine(path)
        if now != s:
            return False
    return True


def watching() -> "_Watching":
    """`with watching() as witness:` collects the paths looked at inside the block."""
    return _Watching()


class _Watching:
    __slots__ = ("witness",)

    def __enter__(self) -> Witness:
        self.witness = Witness()
        _witnesses.append(self.witness)
        return self.witness

    def __exit__(self, *exc) -> None:
        _witnesses.remove(self.witness)


class Memo:
    """Answers remembered between calls while their witnesses hold.

    At most `size` answers; the least recently used is dropped first.  Only
    inside a call: outside one, every answer is worked out afresh."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[object, tuple[Witness, object]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key, compute):
        """The remembered answer for `key` if it still holds, else compute() (remembered if settled)."""
        if _call is None:
            return compute()
        hit = self._items.get(key)
        if hit is not None and hit[0].holds():
            self._items.move_to_end(key)
            return hit[1]
        before = failed_reads
        with watching() as witness:
            value = compute()
        if witness.settled and failed_reads == before:
            self._items[key] = (witness, value)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


class FileCache:
    """Values worked out from one file, kept while the file is in the same state.

    The key is the state itself, so no witness is needed and the cache works
    outside calls too.  At most `size` values; a value worked out from a state
    that is not settled is not kept."""

    def __init__(self, size: int, kept=None):
        """kept: a pgdl.persist.Kind, to keep the values across backends too."""
        self.size, self.kept = size, kept
        self._items: OrderedDict[tuple, object] = OrderedDict()

    def get(self, path: str, compute, *extra):
        """compute(state of path), remembered under (path, state, *extra)."""
        s = state(path)
        key = (path, s, *extra)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        before = failed_reads
        value = compute(s) if self.kept is None else self.kept.answer(key, (s,), lambda: compute(s))
        if settled(s) and failed_reads == before:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value
