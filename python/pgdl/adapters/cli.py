"""pgdl, the shell tool: the same engine outside the server, for packagers,
CI and hosts without a running server.  The installation is described from
its files (pgdl.adapters.installation); nothing under diagnosis is loaded.

Exit status: 0 when everything will load (warnings allowed), 1 when something
will not, 2 for usage or I/O errors."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap

from .. import __version__, filestate, persist, rootfs
from ..errors import PgErrorRaised, UserError
from ..server import Context
from .installation import Installation, installation
from .validate import target_argument

COMMANDS = ("explain", "diagnose", "predict-load", "dependencies", "tree", "check-magic", "audit", "upgrade-check")
WIDTH = 80
_HELP = {
    "explain": "why each TARGET will or will not load: the verdict and the fix first, then each step",
    "diagnose": "why each TARGET (extension or library) will or will not load, step by step",
    "predict-load": "what LOAD 'TARGET' would do: the server's own error",
    "dependencies": "the DT_NEEDED tree of TARGET as the dynamic linker resolves it",
    "check-magic": "TARGET's magic block next to the installation's values",
    "audit": "every shared object and extension of the installation",
    "upgrade-check": "TARGET: a new installation's bindir; --dbname: the old cluster",
    "tree": "the dependency tree of TARGET, with why each path was chosen and what was rejected",
}
OK, WILL_NOT_LOAD, USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):                  # argparse's own exit code is 2 as well; say so plainly
        self.print_usage(sys.stderr)
        print(f"pgdl: {message}", file=sys.stderr)
        raise SystemExit(USAGE)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pgdl", formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Explain, without loading it, why a C library will or will not load into a\n"
                            "PostgreSQL installation (described from its files).",
                epilog="commands:\n" + "".join(f"  {name:<15} {text}\n" for name, text in _HELP.items()) +
                       "\nexit status: 0 everything will load (warnings allowed), 1 something will not,\n"
                       "2 usage or I/O error")
    p.add_argument("--version", action="version", version=f"pgdl {__version__}")
    p.add_argument("command", choices=COMMANDS, metavar="COMMAND", help="see the commands below")
    p.add_argument("targets", nargs="*", metavar="TARGET",
                   help="libraries, extensions or C function signatures (upgrade-check: the new bindir)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--pg-config", metavar="PATH", help="the installation whose pg_config this is")
    where.add_argument("--bindir", metavar="DIR", help="the installation whose binaries are in DIR")
    p.add_argument("--context", choices=[str(c) for c in Context], default=str(Context.NEW_SESSION),
                   help="the process asked about (default: new session)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--root", metavar="DIR",
                   help="an installation inside another root (a chroot, a container image): its paths, "
                        "--bindir among them, are read below DIR")
    p.add_argument("--dbname", metavar="CONNINFO",
                   help="upgrade-check: the old cluster to cover, every database of it")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.root:
            if not os.path.isdir(args.root):
                raise UserError(f"--root {args.root}: not a directory")
            rootfs.set_root(args.root)
        where = _installation(args)
        with filestate.one_call(), persist.kept():    # one answer: each file looked at once, in one state
            if args.command in ("explain", "tree"):
                return _report(args, where)
            results = _run(args, where)
    except (UserError, PgErrorRaised, OSError) as exc:
        message = exc.message if isinstance(exc, UserError) else (
            exc.error.message if isinstance(exc, PgErrorRaised) else f"{exc.filename or ''}: {exc.strerror}")
        print(f"pgdl: {message}", file=sys.stderr)
        return USAGE
    rows = [_as_dict(r) for r in results]
    if args.format == "json":
        print(json.dumps({"pgdl": __version__, "command": args.command, "installation": where.describe(),
                          "results": rows}, indent=2, ensure_ascii=False))
    else:
        print(_text(args.command, where, rows))
    return WILL_NOT_LOAD if any(_fails(r) for r in rows) else OK


def _installation(args) -> Installation:
    context = Context(args.context)
    if args.bindir:
        return installation(args.bindir, context, dict(os.environ))
    if args.root:
        raise UserError("with --root, give --bindir (the installation's pg_config is not run)")
    pg_config = args.pg_config or shutil.which("pg_config")
    if not pg_config:
        raise UserError("no installation: give --bindir DIR or --pg-config PATH (no pg_config on PATH)")
    try:
        bindir = subprocess.run([pg_config, "--bindir"], check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise UserError(f"cannot run {pg_config} --bindir: {exc}")
    return installation(bindir, context, dict(os.environ))


def _run(args, where: Installation) -> list:
    server = where.server
    targets = args.targets
    if args.command in ("predict-load", "check-magic", "diagnose", "dependencies") and not targets:
        raise UserError(f"{args.command} needs at least one TARGET")
    if args.command == "predict-load":
        from ..views.predict_load import predict_load_row
        return [_named(t, predict_load_row(t, server)) for t in targets]
    if args.command == "check-magic":
        from ..views.check_magic import check_magic_rows
        return [_named(t, r) for t in targets for r in check_magic_rows(t, server)]
    if args.command == "dependencies":
        from ..views.dependencies import dependency_rows
        return [r for t in targets for r in dependency_rows(t, server)]
    if args.command == "diagnose":
        from ..views.diagnose import diagnose_rows
        return [r for t in map(target_argument, targets) for r in diagnose_rows(t, t, server, _NoDatabase())]
    if args.command == "audit":
        from ..views.audit import audit
        return audit(server, [])
    return _upgrade_check(args, server)


def _report(args, where: Installation) -> int:
    """explain and tree: pgdl.explain()'s and pgdl.tree()'s lines, one block per TARGET."""
    from ..views.report import explain_lines, tree_lines
    from ..views.status import ERROR
    if not args.targets:
        raise UserError(f"{args.command} needs at least one TARGET")
    server, blocks, failed = where.server, [], False
    for target in args.targets:
        if args.command == "explain":
            from ..views.diagnose import diagnose
            findings = diagnose(target_argument(target), target, server, _NoDatabase())
            lines = explain_lines(findings, WIDTH)
            failed |= any(f.topic == "verdict" and f.status is ERROR for f in findings)
        else:
            from ..views.dependencies import dependency_rows
            from ..views.predict_load import predict_load_row
            lines = tree_lines(target, dependency_rows(target, server), server, WIDTH)
            failed |= predict_load_row(target, server).will_load is False
        blocks.append({"target": target, "lines": [r.line for r in lines]})
    if args.format == "json":
        print(json.dumps({"pgdl": __version__, "command": args.command, "installation": where.describe(),
                          "results": blocks}, indent=2, ensure_ascii=False))
    else:
        print("\n\n".join(["\n".join(_wrap(where.describe(), ""))] + ["\n".join(b["lines"]) for b in blocks]))
    return WILL_NOT_LOAD if failed else OK


def _upgrade_check(args, old_server) -> list:
    """TARGET: the new installation's bindir; --dbname: the old cluster, every database."""
    from ..views.upgrade_check import upgrade_check
    if len(args.targets) != 1:
        raise UserError("upgrade-check needs one TARGET: the bindir of the new installation")
    if not args.dbname:
        raise UserError("upgrade-check needs --dbname: the old cluster whose C functions and extensions to check")
    new = installation(args.targets[0], Context.NEW_SESSION, dict(os.environ))
    old = _old_cluster(args.dbname, old_server)
    return upgrade_check(old, new.server, new.describe())


def _old_cluster(conninfo: str, old_server):
    """Every connectable database of the old cluster, as pg_upgrade collects them."""
    import psycopg2
    from ..views.upgrade_check import OldCluster
    from .catalog import _EXTENSIONS, _PROBINS
    from .packages import library_packages
    probins: dict[str, list[str]] = {}
    extensions: dict[str, list[str]] = {}
    try:
        with psycopg2.connect(conninfo) as conn, conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_catalog.pg_database WHERE datallowconn ORDER BY 1")
            databases = [r[0] for r in cur.fetchall()]
            cur.execute("SELECT pg_catalog.current_setting('shared_preload_libraries')")
            shared = cur.fetchone()[0]
        for database in databases:
            with psycopg2.connect(conninfo, dbname=database) as conn, conn.cursor() as cur:
                cur.execute(_PROBINS.query)
                for (probin,) in cur.fetchall():
                    probins.setdefault(probin, []).append(database)
                cur.execute(_EXTENSIONS.query)
                for name, _version in cur.fetchall():
                    extensions.setdefault(name, []).append(database)
    except psycopg2.Error as exc:
        raise UserError(f"cannot read the old cluster: {str(exc).strip()}")
    return OldCluster({p: tuple(d) for p, d in probins.items()}, {e: tuple(d) for e, d in extensions.items()},
                      shared, tuple(databases), library_packages(probins, old_server))


class _NoDatabase:
    """diagnose's catalog without a database: signatures only as the extensions' scripts declare them."""

    def function(self, signature):
        return None                 # looked for in the extensions' install scripts

    def extension(self, extension):
        return None, []

    def functions_named(self, name):
        return []


def _named(target: str, row) -> dict:
    out = {"target": target}
    out.update(_as_dict(row))
    return out


def _as_dict(row) -> dict:
    if isinstance(row, dict):
        return row
    return {name: (str(v) if hasattr(v, "value") else v) for name, v in zip(row._fields, row._values())}


def _fails(row: dict) -> bool:
    return row.get("will_load") is False or row.get("status") == "error" or row.get("verdict") in ("rejected",)


# -- text for an 80-column terminal ---------------------------------------------------

def _wrap(text: str, indent: str = "    ") -> list[str]:
    out = []
    for line in str(text).splitlines() or [""]:
        out += textwrap.wrap(line, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ",
                             break_long_words=True, break_on_hyphens=False) or [indent]
    return out


def _text(command: str, where: Installation, rows: list[dict]) -> str:
    lines = _wrap(where.describe(), "")
    if command == "predict-load":
        for r in rows:
            if r["will_load"]:
                lines.append(f"{r['target']}: will load")
                continue
            lines += _wrap(f"{r['target']}: " + ("will not load" if r["will_load"] is False else "not judged"), "")
            for label, key in (("ERROR", "message"), ("DETAIL", "detail"), ("HINT", "hint")):
                if r.get(key):
                    lines += _wrap(f"{label}:  {r[key]}")
    elif command == "dependencies":
        for r in rows:
            via = f" [{r['found_via']}]" if r.get("found_via") else ""
            head = "  " * int(r["depth"]) + f"{r['needed']} => {r.get('path') or 'not found'}{via}"
            lines += _wrap(head + ("" if r["status"] == "ok" else f" ({r['status']})"), "")
            if r.get("detail") and r["status"] != "ok":
                lines += _wrap(r["detail"], "  " * int(r["depth"]) + "    ")
    else:
        for r in rows:
            status = r.get("status") or r.get("verdict") or ""
            subject = r.get("subject") or r.get("field") or r.get("target") or ""
            kind = r.get("topic") or r.get("kind") or ""
            lines += _wrap(f"[{status}] {kind} {subject}".rstrip(), "")
            for key in ("message", "library_value", "detail", "pg_upgrade"):
                if r.get(key) and not (key == "library_value" and r.get("message")):
                    lines += _wrap(r[key])
            if r.get("hint"):
                lines += _wrap(f"hint: {r['hint']}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
