"""Text to be read in a terminal: pgdl.explain() (a diagnosis, the verdict
first) and pgdl.tree() (the dependency tree, lddtree-style, with why each
path was chosen).  One line a row, at most WIDTH characters; long paths are
broken after a "/" rather than anywhere."""

from __future__ import annotations

import os
from itertools import groupby

from ..glibc.linkmap import Dependency, Rule
from ..record import Value
from ..server import Server
from .diagnose_library import Finding, one_line
from .predict_load import predict_load_row
from .status import ERROR, OK

WIDTH = 100


class ReportLine(Value):
    """A row of pgdl.explain() and pgdl.tree() (the SQL type pgdl.report_line)."""
    __slots__ = ("line",)

    def __init__(self, line: str):
        self.line = line


def wrap(text: str, first: str = "", rest: str | None = None, width: int = WIDTH) -> list[str]:
    """text after `first`, its continuation lines after `rest` (default: as
    many spaces as `first`).  A word too long for a line is broken after its
    last "/" that fits (a path reads on), else where the line ends."""
    rest = " " * len(first) if rest is None else rest
    lines: list[str] = []
    line, empty = first, True                      # empty: nothing after the indent yet
    for word in text.split():
        while word:
            sep = "" if empty else " "
            if len(line) + len(sep) + len(word) <= width:
                line, empty, word = line + sep + word, False, ""
            elif not empty and len(rest) + len(word) <= width:
                lines.append(line)                 # it fits on a line of its own
                line, empty = rest, True
            else:                                  # too long for any line: break it
                room = width - len(line) - len(sep)
                cut = word.rfind("/", 0, room) + 1 if room > 0 else 0
                if cut == 0 and not empty:
                    lines.append(line)
                    line, empty = rest, True
                    continue
                cut = cut or max(room, 1)
                lines.append(line + sep + word[:cut])
                line, empty, word = rest, True, word[cut:]
    if not empty or not lines:
        lines.append(line.rstrip())
    return lines


# -- explain ---------------------------------------------------------------------

def explain_lines(findings: list[Finding], width: int = WIDTH) -> list[ReportLine]:
    """The verdict and the fix first, then every step of the story."""
    verdict = next((f for f in findings if f.topic == "verdict"), None)
    story = [f for f in findings if f is not verdict]
    out: list[str] = []
    if verdict is not None:
        head, *server_lines = verdict.message.split("\n")
        out += wrap(head, f"{verdict.status.upper()}: ", width=width)
        for text in server_lines:                      # the server's ERROR / DETAIL / HINT lines
            label, _, said = text.partition(":  ")
            out += wrap(said, f"  {label}:  ", width=width) if said else wrap(text, "  ", width=width)
        fix = next((f.hint for f in story if f.status is ERROR and f.hint), None)
        if fix:
            out += wrap(fix, "  fix: ", width=width)
        out.append("")
    else:
        fix = None
    column = max((len(f.topic) for f in story), default=0)
    for f, more in _runs(story):
        if more:
            out += wrap(f"... and {more} more like these (pgdl.diagnose() lists them all)",
                        " " * (column + 10), width=width)
            continue
        message = f.message or ""
        if f.subject and f.subject not in message:
            message = f"{f.subject}: {message}" if message else f.subject
        first = f"{str(f.status):<7} {f.topic:<{column}}  "
        out += wrap(one_line(message), first, width=width)
        if f.hint and f.status is not OK and f.hint != fix:      # the fix is said once, at the top
            out += wrap(f.hint, " " * len(first) + "hint: ", width=width)
    return [ReportLine(line) for line in out]


# A run of findings of one topic and status (a module missing seventy symbols)
# shows its first few, then how many more there are.
SHOWN_OF_A_RUN = 3


def _runs(story: list[Finding]):
    """(finding, 0) for each one shown, (last of a run, n) where n more of it are left out."""
    for _key, group in groupby(story, key=lambda f: (f.topic, f.status)):
        run = list(group)
        if len(run) > SHOWN_OF_A_RUN + 1:
            yield from ((f, 0) for f in run[:SHOWN_OF_A_RUN])
            yield run[-1], len(run) - SHOWN_OF_A_RUN
        else:
            yield from ((f, 0) for f in run)


# -- tree ------------------------------------------------------------------------

def tree_lines(name: str, deps: list[Dependency], server: Server, width: int = WIDTH) -> list[ReportLine]:
    """deps: dependency_rows() of name (breadth first, each object once, under
    the first object that needs it: glibc's load order)."""
    children: dict[str | None, list[Dependency]] = {}
    for d in deps[1:]:
        children.setdefault(d.required_by, []).append(d)
    out: list[str] = []
    if deps:
        root = deps[0]
        shown = root.path or root.needed
        out += wrap(shown if shown == name else f"{shown} [{name}]", "", width=width)
        _branch(children, root.path, "", out, {root.path}, width)
    p = predict_load_row(name, server)
    if p.will_load:
        out += wrap(f"=> LOAD '{name}' will load", "", "   ", width=width)
    elif p.message is not None:
        out += wrap(p.message, "=> LOAD fails: ", "   ", width=width)
    else:
        out += wrap("not judged: the dynamic loader's part is not predicted here", "=> ", "   ", width=width)
    return [ReportLine(line) for line in out]


def _branch(children, parent: str | None, prefix: str, out: list[str], drawn: set, width: int) -> None:
    kids = children.get(parent, [])
    for i, d in enumerate(kids):
        last = i == len(kids) - 1
        elbow, below = ("└── ", "    ") if last else ("├── ", "│   ")
        if d.path:
            flag = "" if d.status is OK else f" ({d.status})"
            head = f"{d.needed} => {d.path} [{_reason(d.found_via)}]{flag}"
        else:
            head = f"{d.needed} => {d.found_via or d.status}"
        out += wrap(head, prefix + elbow, prefix + below + "    ", width=width)
        for note in d.detail.split("; ") if d.detail else ():
            label = "rejected: " if d.status is OK else ""
            out += wrap(label + note, prefix + below + "    ", width=width)
        if d.path and d.path not in drawn and d.status is not ERROR:
            drawn.add(d.path)
            _branch(children, d.path, prefix + below, out, drawn, width)


def _reason(found_via: str) -> str:
    """`RPATH of /usr/lib/postgresql/15/lib/dblink.so` reads `RPATH of dblink.so`."""
    rule, owner = Rule.of(found_via)
    if owner:
        return f"{rule.value}{os.path.basename(owner.removeprefix('executable '))}"
    return found_via
