"""upgrade_check(): before a major upgrade, what the new installation will say
of every library the old cluster uses, both ways DBAs upgrade.

pg_upgrade --check (src/bin/pg_upgrade/function.c check_loadable_libraries)
LOADs each distinct probin of the old cluster's C functions, sorted, in a new
session of the freshly initdb'ed new cluster, and writes each failure into
loadable_libraries.txt as `could not load library "%s": %s` (the second %s
is libpq's whole error message) followed by `In database: %s` for every
database that uses it.  A dump and restore (Debian's pg_upgradecluster
default) runs CREATE EXTENSION for each extension: the new installation's
control file, default version and module_pathname.  The preload settings are
judged as if the new cluster were configured like the old one.
Pure: the adapter gathers the old cluster's facts and describes the new
installation (pgdl.adapters.installation)."""

from __future__ import annotations

import os

from .. import interrupts
from ..errors import error_lines
from ..engine.contexts import boot
from ..engine.predict import Prediction, predict_load
from ..postgres.extensions import check_extension
from ..postgres.preloads import split_library_list
from ..record import Value
from ..server import Context, Preloads, Server
from .status import ERROR, OK, WARNING


class UpgradeRow(Value):
    """One row of pgdl.upgrade_check()."""
    __slots__ = ("kind", "subject", "status", "message", "hint", "library", "pg_upgrade", "databases")

    def __init__(self, kind: str, subject: str, status: str, message: str, hint: str | None = None,
                 library: str | None = None, pg_upgrade: str | None = None, databases: str | None = None):
        self.kind = kind
        self.subject = subject
        self.status = status
        self.message = message
        self.hint = hint
        self.library = library
        self.pg_upgrade = pg_upgrade    # the lines pg_upgrade --check writes for it, if it fails
        self.databases = databases      # the databases that use it, comma-separated


class OldCluster(Value):
    """What the old cluster uses, as the adapter could see it."""
    __slots__ = ("probins", "extensions", "shared_preload_libraries", "databases", "packages")

    def __init__(self, probins: dict[str, tuple[str, ...]], extensions: dict[str, tuple[str, ...]],
                 shared_preload_libraries: str, databases: tuple[str, ...], packages: dict[str, str] | None = None):
        self.probins = probins          # probin -> the databases whose C functions use it
        self.extensions = extensions    # extension -> the databases it is created in
        self.shared_preload_libraries = shared_preload_libraries
        self.databases = databases      # the databases looked at
        self.packages = packages or {}  # a library's file -> the Debian package that installed it


def upgrade_check(old: OldCluster, new: Server, described: str) -> list[UpgradeRow]:
    """new: the new installation (pgdl.adapters.installation), its context a new session."""
    fresh = new.replace(context=Context.NEW_SESSION, preloads=Preloads())
    rows = [UpgradeRow("installation", new.pkglibdir, OK, described),
            UpgradeRow("coverage", ", ".join(old.databases) or "(none)", OK,
                       f"C functions and extensions of the database(s) {', '.join(old.databases) or '(none)'}; "
                       "the preload settings as if the new cluster were configured like the old one")]
    for probin in sorted(old.probins):
        interrupts.check()
        p = predict_load(probin, fresh)
        rows.append(_library_row("library", probin, probin, p, old, new, old.probins[probin]))
    for name in sorted(old.extensions):
        interrupts.check()
        rows += _extension_rows(name, old, new, fresh)
    rows += _preload_rows(old, new)
    failing = sum(r.status == ERROR for r in rows)
    rows.append(UpgradeRow("summary", "upgrade", ERROR if failing else OK,
                           f"{failing} problem(s) for PostgreSQL {new.major}" if failing
                           else f"everything the old cluster uses loads in PostgreSQL {new.major}"))
    return rows


def pg_upgrade_lines(probin: str, p: Prediction, databases: tuple[str, ...]) -> str:
    """loadable_libraries.txt's lines for a failing LOAD: libpq's message is
    "ERROR:  %s\\n", with DETAIL and HINT lines (its default verbosity)."""
    e = p.error
    if e.sqlstate is None:          # the backend died: libpq's own words
        text = f"{e.message}\n\tThis probably means the server terminated abnormally\n" \
               "\tbefore or while processing the request.\n"
    else:
        text = error_lines("ERROR", e.message, e.detail, e.hint) + "\n"
    return f'could not load library "{probin}": {text}' + "".join(f"In database: {db}\n" for db in databases)


def _library_row(kind: str, subject: str, probin: str, p: Prediction, old: OldCluster, new: Server,
                 databases: tuple[str, ...]) -> UpgradeRow:
    used = ", ".join(databases)
    if p.will_load:
        return UpgradeRow(kind, subject, OK, f"{probin} will load ({p.libname})", library=probin, databases=used)
    if p.error is None:             # not judged (the new installation's loader is musl's, say)
        return UpgradeRow(kind, subject, WARNING, f"{probin}: not judged: {p.loading.uncertain}", library=probin,
                          databases=used)
    e = p.error
    message = (e.message or "not judged") + (f" ({e.detail})" if e.detail else "")
    return UpgradeRow(kind, subject, ERROR, message, _hint(probin, p.libname, old, new), probin,
                      pg_upgrade_lines(probin, p, databases) if e.message else None, used)


def _hint(library: str, path: str | None, old: OldCluster, new: Server) -> str:
    """library: as the old cluster names it; path: the file the new installation would load."""
    name = os.path.basename(library).removesuffix(new.dlsuffix)
    package = old.packages.get(library) or old.packages.get(path or "")
    debian = ""
    if package:
        # Debian names extension packages postgresql-NN-<name>.
        parts = package.split("-", 2)
        if len(parts) == 3 and parts[0] == "postgresql" and parts[1].isdigit():
            debian = f" (on Debian: apt-get install postgresql-{new.major}-{parts[2]})"
    return (f"Install the PostgreSQL {new.major} build of {name}{debian}, or rebuild it against PostgreSQL "
            f"{new.major}'s headers, or drop the functions (or the extension) that use it before upgrading.")


def _extension_rows(name: str, old: OldCluster, new: Server, fresh: Server) -> list[UpgradeRow]:
    used = ", ".join(old.extensions[name])
    ext = check_extension(name, new)
    if ext.error is not None:
        return [UpgradeRow("extension", name, ERROR, f'extension "{name}" is not available',
                           f"The extension must first be installed on the system where PostgreSQL is running: "
                           f"{_hint(name, None, old, new)}", databases=used)]
    if not ext.installable:
        return [UpgradeRow("extension", name, ERROR, f"{ext.not_installable} (no script in {ext.script_dir})",
                           databases=used)]
    libraries = sorted({f.library for f in ext.script_functions()} | ({ext.module} if ext.module else set()))
    rows = []
    for library in libraries:
        p = predict_load(library, fresh)
        row = _library_row("extension", name, library, p, old, new, old.extensions[name])
        rows.append(row.replace(pg_upgrade=None))       # a restore's CREATE EXTENSION fails, not pg_upgrade
    return rows or [UpgradeRow("extension", name, OK, f"{name} {ext.version} has no C library", databases=used)]


def _preload_rows(old: OldCluster, new: Server) -> list[UpgradeRow]:
    names = tuple(split_library_list(old.shared_preload_libraries))
    if not names:
        return []
    start = boot(new.replace(context=Context.SERVER_START, preloads=Preloads(at_start=names,
                                                                              at_start_from="the old cluster")))
    rows = []
    for step in start.steps:
        p = step.prediction
        if p.will_load:
            rows.append(UpgradeRow("preload", step.name, OK, f"{step.name} will load at server start",
                                   library=step.name))
        elif p.error is None:
            rows.append(UpgradeRow("preload", step.name, WARNING,
                                   f"{step.name}: not judged at server start: {p.loading.uncertain}",
                                   library=step.name))
        else:
            e = p.error
            rows.append(UpgradeRow("preload", step.name, ERROR,
                                   f"the new server will not start: FATAL:  {e.message}",
                                   _hint(step.name, p.libname, old, new), step.name))
    return rows
