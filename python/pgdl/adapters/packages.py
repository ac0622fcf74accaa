"""Which Debian package installed a file, from dpkg's own lists
(/var/lib/dpkg/info/<package>.list: one installed path a line), for hints
that name the package to install for another major."""

from __future__ import annotations

import glob
import os

from ..postgres.lookup import resolve

DPKG_INFO = "/var/lib/dpkg/info"
MAX_LIST = 4 << 20


def debian_packages(paths, info: str = DPKG_INFO) -> dict[str, str]:
    """path -> package, for the paths some PostgreSQL package lists (others are left out)."""
    wanted = {os.path.normpath(p) for p in paths if p}
    found: dict[str, str] = {}
    for listing in sorted(glob.glob(os.path.join(info, "postgresql-*.list"))):
        if len(found) == len(wanted):
            break
        try:
            with open(listing, encoding="utf-8", errors="replace") as f:
                lines = f.read(MAX_LIST).splitlines()
        except OSError:
            continue
        package = os.path.basename(listing)[:-len(".list")].split(":")[0]
        for line in lines:
            if line in wanted:
                found.setdefault(line, package)
    return found


def library_packages(libraries, server) -> dict[str, str]:
    """library (as a C function names it) -> the Debian package of the file it
    resolves to on `server`, for those a PostgreSQL package installed."""
    files = {name: resolve(name, server).full_name for name in libraries}
    owners = debian_packages(f for f in files.values() if f)
    return {name: owners[f] for name, f in files.items() if f in owners}
