"""Test harness: one throwaway PostgreSQL server for the session, real backends.

Run as an unprivileged OS user (scripts/test.sh arranges it when started as
root): PostgreSQL refuses to run as root, and the server then sees the files
the tests build exactly as the tests do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

import psycopg2  # noqa: E402
import testing.postgresql  # noqa: E402


def pg_config(option: str) -> str:
    return subprocess.run(["pg_config", option], check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class ServerError:
    sqlstate: str | None
    message: str | None
    detail: str | None
    hint: str | None


class Cluster:
    """A running test server and ways to talk to it in fresh sessions."""

    def __init__(self, pg: testing.postgresql.Postgresql):
        self.pg = pg
        self.dsn = pg.dsn()

    def connect(self, **overrides):
        params = dict(self.dsn)
        params.update(overrides)
        conn = psycopg2.connect(**params)
        conn.autocommit = True
        return conn

    def query(self, sql: str, params=(), *, setup: tuple[str, ...] = (), user: str | None = None,
              database: str | None = None):
        """Rows of `sql` in a fresh session (after the `setup` statements)."""
        conn = self.connect(**({"user": user} if user else {}), **({"database": database} if database else {}))
        try:
            with conn.cursor() as cur:
                for statement in setup:
                    cur.execute(statement)
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    @property
    def log_path(self) -> str:
        """The server's log (testing.postgresql sends the postmaster's output there)."""
        return os.path.join(self.pg.base_dir, f"{self.pg.name}.log")

    def log_size(self) -> int:
        return os.path.getsize(self.log_path)

    def log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def wait_for_recovery(self, since: int | None = None, timeout: float = 60) -> None:
        """After a backend dies the postmaster restarts every session: wait until it
        has (its log says so after the crash) and accepts again.  since: the log's
        size before the crash, so that a crash not logged yet is waited for too."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_since(since or 0)
            # Every major says this once it has seen a backend die (PostgreSQL 18 names
            # the "client backend", earlier ones the "server process").
            crash = text.rfind("terminating any other active server processes")
            if crash < 0 and since is not None:
                recovered = False           # the postmaster has not noticed yet
            else:
                recovered = crash < 0 or "ready to accept connections" in text[crash:]
            if recovered:
                try:
                    self.query("SELECT 1")
                    return
                except psycopg2.OperationalError:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not recover: {text[-2000:]}")
            time.sleep(0.2)

    def settle(self, since: int, grace: float = 1.0) -> None:
        """After something that may have killed a backend, even once its session
        ended (memory it damaged): give the postmaster `grace` seconds to notice,
        and wait out the restart if it did."""
        time.sleep(grace)
        if "terminating any other active server processes" in self.log_since(since):
            self.wait_for_recovery(since)

    def error_of(self, sql: str, params=(), *, setup: tuple[str, ...] = (), user: str | None = None,
                 database: str | None = None):
        """The error the server raises for `sql` in a fresh session, or None if it succeeds."""
        try:
            self.query(sql, params, setup=setup, user=user, database=database)
        except psycopg2.Error as exc:
            diag = exc.diag
            return ServerError(diag.sqlstate, diag.message_primary, diag.message_detail, diag.message_hint)
        return None

    def context_of(self, sql: str, params=(), *, user: str | None = None) -> str | None:
        """The CONTEXT of the error the server raises for `sql` (None if it succeeds)."""
        try:
            self.query(sql, params, user=user)
        except psycopg2.Error as exc:
            return exc.diag.context
        return None


class OwnServer:
    """A server of the test's own, of the installation in `bindir`, started and
    restarted for real with pg_ctl."""

    def __init__(self, root, bindir: str, port_base: int = 25000, initdb_options: tuple[str, ...] = ()):
        self.bindir = bindir
        self.data, self.sock, self.log = root / "data", root, root / "server.log"
        self.port = port_base + os.getpid() % 5000
        subprocess.run([f"{bindir}/initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                        *initdb_options], check=True, capture_output=True)

    def start(self, **environ: str) -> bool:
        """environ: variables added to the postmaster's environment."""
        self.log.write_text("")
        done = subprocess.run([f"{self.bindir}/pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                               "-o", f"-p {self.port} -k {self.sock} -c listen_addresses=''", "start"],
                              capture_output=True, env={**os.environ, **environ})
        return done.returncode == 0

    def stop(self):
        subprocess.run([f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"],
                       capture_output=True)

    @property
    def cluster(self) -> "Cluster":
        """Fresh sessions of it, as conftest.Cluster gives them."""
        dsn = {"host": str(self.sock), "port": self.port, "user": "postgres", "database": "postgres"}
        return Cluster(SimpleNamespace(dsn=lambda: dsn))

    def query(self, sql, params=()):
        return self.cluster.query(sql, params)

    def set_preload(self, value: str):
        """As the next start reads it, even when the server is down."""
        (self.data / "postgresql.auto.conf").write_text(f"shared_preload_libraries = '{value}'\n")


def started_server(tmp_path_factory, name: str, port_base: int, bindir: str | None = None, pgdl: bool = True,
                   **environ: str):
    """A generator for a module-scoped fixture: an OwnServer in a directory of its
    own, started with `environ` (and pgdl created), stopped afterwards."""
    root = tmp_path_factory.mktemp(name)
    os.chmod(root, 0o755)
    server = OwnServer(root, bindir or pg_config("--bindir"), port_base=port_base)
    assert server.start(**environ), server.log.read_text()
    if pgdl:
        server.query("CREATE EXTENSION pgdl CASCADE")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cluster():
    with testing.postgresql.Postgresql() as pg:
        c = Cluster(pg)
        c.query("CREATE EXTENSION pgdl CASCADE")
        yield c


@pytest.fixture(scope="session")
def server_include() -> str:
    return pg_config("--includedir-server")


@pytest.fixture
def build(tmp_path, server_include):
    """Compile C source into a shared object against the server's headers."""
    os.chmod(tmp_path, 0o755)

    def _build(name: str, source: str, *flags: str, compiler: str = "gcc", output: str | None = None) -> Path:
        src = tmp_path / f"{name}.c"
        src.write_text(source)
        out = tmp_path / (output or f"{name}.so")
        cmd = [compiler, "-shared", "-fPIC", "-O2", "-I", server_include, "-o", str(out), str(src), *flags]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        return out

    return _build


def predicted(rows_or_row) -> ServerError:
    """A pgdl (sqlstate, message, detail, hint) tuple as a ServerError."""
    sqlstate, message, detail, hint = rows_or_row
    return ServerError(sqlstate, message, detail, hint)
