"""Whole replies of calls, kept while everything they were worked out from is the same.

A call's reply (the rows an SQL function returns, as the JSON pgdl._run()
hands back) is a function of three things:

* the facts the adapter gathers before any rule runs: the arguments, the
  session's settings, the role's catalog rows, the process's environment
  and mapped files (pgdl.adapters.describe.ServerFacts, ContextFacts);
* the files the rules read, each noted with its state by pgdl.filestate;
* what it asked the database's catalog meanwhile (an Asked source).

So a reply is kept under a digest of its facts, with the state of every path
it rests on and each question it asked with a digest of the answer.  Before
it is handed out again, every path is examined and every question asked
anew: one has changed, and the reply is worked out afresh.  Reusing it needs
none of the rules' modules: a new backend's first call imports only the
adapters.

Replies are kept in the backend (the last few) and across backends, one file
per key in the `replies` directory beside pgdl.persist's answers file (a new
backend reads only the one it needs), under persist's rules: only inside
persist.kept(), only replies resting on settled states, none once a read
failed in this process; a file is trusted only if the OS user owns it and
nobody else may write to it or its directory; pgdl's code is part of each key.
Deleting the directory is always safe.
"""

from __future__ import annotations

import marshal
import os
from collections import OrderedDict

from . import filestate, persist
from .errors import UserError

DIRECTORY = "replies"
FORMAT = 1                    # of a reply file's contents
MAX_KEPT = 8                  # replies a backend keeps in memory
MAX_FILES = 2_000             # reply files kept; past it the least recently used quarter goes
MAX_BYTES = 4 << 20           # a larger reply is neither written nor read

_mine: OrderedDict[bytes, "Reply"] = OrderedDict()


class Reply:
    """A reply, the paths it rests on with their states, and the questions it asked."""

    __slots__ = ("paths", "states", "questions", "text")

    def __init__(self, paths: tuple, states: tuple, questions: tuple, text: str):
        self.paths, self.states, self.questions, self.text = paths, states, questions, text

    def holds(self, source) -> bool:
        """Whether every path is in the same state and every question gets the same answer."""
        if not filestate.unchanged(self.paths, self.states):
            return False
        try:
            return all(persist.digest_of(getattr(source, method)(*args)) == digest
                       for method, args, digest in self.questions)
        except UserError:               # the question itself now fails: the call says why when worked out
            return False


class Asked:
    """A source of answers other than files (the database's catalog): each
    question asked through it is noted with a digest of its answer."""

    def __init__(self, source):
        self._source, self.questions = source, []

    def __getattr__(self, method: str):
        ask = getattr(self._source, method)

        def asked(*args):
            answer = ask(*args)
            self.questions.append((method, args, persist.digest_of(answer)))
            return answer
        return asked


def reply(key: tuple, compute, source=None) -> str:
    """compute(source) -> the reply's text, or the one kept under `key` while it holds.

    key: the call's facts as plain values (a repr that tells them apart);
    source: what compute() may ask besides files (None: nothing)."""
    if not filestate.in_call():
        return compute(source)
    digest = persist.digest_of((persist.CODE, key))
    kept = _mine.get(digest)
    if kept is None and persist.keeping():
        kept = _read(digest)
    if kept is not None and kept.holds(source):
        _remember(digest, kept)
        return kept.text
    asked = None if source is None else Asked(source)
    before = filestate.failed_reads
    with filestate.watching() as witness:
        text = compute(asked)
    rests_on = witness.flat()
    if filestate.failed_reads == before and persist.settled(rests_on.values()):
        rests_on = filestate.without_implied(rests_on)
        kept = Reply(tuple(rests_on), tuple(tuple(s) for s in rests_on.values()),
                     () if asked is None else tuple(asked.questions), text)
        _remember(digest, kept)
        if persist.keeping():
            try:
                _write(digest, kept)
            except OSError:          # a cache: never the reason a call fails
                pass
    return text


def _remember(digest: bytes, kept: Reply) -> None:
    _mine[digest] = kept
    _mine.move_to_end(digest)
    while len(_mine) > MAX_KEPT:
        _mine.popitem(last=False)


def _read(digest: bytes) -> Reply | None:
    directory = persist.open_directory(DIRECTORY, create=False)
    if directory is None:
        return None
    try:
        found = persist.read_trusted(directory, digest.hex(), MAX_BYTES)
        if found is None:
            return None
        os.utime(digest.hex(), dir_fd=directory, follow_symlinks=False)     # used: the last to be dropped
        return _reply_of(marshal.loads(found[0]), digest)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    finally:
        os.close(directory)


def _reply_of(plain, digest: bytes) -> Reply | None:
    """A reply file's contents, if they are what this code writes for this key."""
    if not (isinstance(plain, tuple) and len(plain) == 6 and plain[0] == FORMAT and plain[1] == digest):
        return None
    _format, _digest, paths, states, questions, text = plain
    if not (isinstance(paths, tuple) and isinstance(states, tuple) and len(paths) == len(states)
            and all(isinstance(p, str) for p in paths) and all(isinstance(s, tuple) for s in states)
            and isinstance(questions, tuple) and all(isinstance(q, tuple) and len(q) == 3 for q in questions)
            and isinstance(text, str)):
        return None
    return Reply(paths, states, questions, text)


def _write(digest: bytes, kept: Reply) -> None:
    data = marshal.dumps((FORMAT, digest, kept.paths, kept.states, kept.questions, kept.text))
    if len(data) > MAX_BYTES:
        return
    directory = persist.open_directory(DIRECTORY)
    if directory is None:
        return
    try:
        persist.write_replacing(directory, digest.hex(), data)
        _prune(directory)
    finally:
        os.close(directory)


def _prune(directory: int) -> None:
    """Past MAX_FILES, the least recently used quarter goes (and temporary files
    a backend killed mid-write left behind)."""
    names = os.listdir(directory)
    if len(names) <= MAX_FILES:
        return
    aged = []
    for name in names:
        try:
            aged.append((os.stat(name, dir_fd=directory, follow_symlinks=False).st_mtime_ns, name))
        except OSError:
            pass
    aged.sort()
    for _mtime, name in aged[:len(aged) - MAX_FILES * 3 // 4]:
        try:
            os.unlink(name, dir_fd=directory)
        except OSError:
            pass
