"""Where the server's process environment is set, as far as its files tell:
the place a remedy that changes LD_LIBRARY_PATH must name.

The postmaster's PID is the first line of postmaster.pid; its cgroup names
the systemd unit that started it; Debian's pg_ctlcluster adds the variables
of /etc/postgresql/<version>/<cluster>/environment (postgresql-common)."""

from __future__ import annotations

import os
import re

from .. import filestate, rootfs
from ..server import Service

UNIT = re.compile(r"/([^/]+\.service)$")


# Worked out once per postmaster: every call describes the server, and only a
# restart (a new postmaster.pid) can change the unit or the cluster's files.
_SERVICES = filestate.FileCache(4)


def service_of(data_directory: str) -> Service:
    pidfile = os.path.join(data_directory, "postmaster.pid")
    return _SERVICES.get(pidfile, lambda _state: Service(_unit(pidfile), _debian_environment(data_directory)))


def _unit(pidfile: str) -> str | None:
    try:
        with open(rootfs.host(pidfile)) as f:
            pid = int(f.readline())
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                m = UNIT.search(line.strip())
                if m:
                    return m.group(1)
    except (OSError, ValueError):
        pass
    return None


def _debian_environment(data_directory: str) -> str | None:
    """The cluster whose postgresql.conf names this data directory (Debian's layout)."""
    real = rootfs.realpath(data_directory)
    for conf in sorted(rootfs.glob("/etc/postgresql/*/*/postgresql.conf")):
        try:
            with open(rootfs.host(conf), encoding="utf-8", errors="replace") as f:
                m = re.search(r"^\s*data_directory\s*=\s*'([^']*)'", f.read(1 << 20), re.MULTILINE)
        except OSError:
            continue
        if m and rootfs.realpath(m.group(1)) == real:
            return os.path.join(os.path.dirname(conf), "environment")
    return None
