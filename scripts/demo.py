"""The field report behind pgdl (shared/seeds/000), end to end on a throwaway
cluster: CREATE EXTENSION dblink fails with `undefined symbol:
PQconnectionUsedPassword` because the server's environment puts an old libpq
first.  pgdl explains it from SQL, the fix it gives (the LD_LIBRARY_PATH to
restart the server with) is applied, and the real CREATE EXTENSION then works.

The "old libpq" is built here: a libpq.so.5 with every function dblink.so
needs from libpq except PQconnectionUsedPassword, as libpq releases before it
had (it came in 8.3)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

BANNER = "\n=== {} ===\n"


def run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw)


def pg_config(flag: str) -> str:
    return run("pg_config", flag).stdout.strip()


def build_old_libpq(directory: str) -> None:
    """Stubs of what dblink.so takes from libpq, PQconnectionUsedPassword left out."""
    dblink = os.path.join(pg_config("--pkglibdir"), "dblink.so")
    undefined = run("nm", "-D", "--undefined-only", dblink).stdout.split()
    wanted = sorted(s for s in undefined if s.startswith("PQ") and s != "PQconnectionUsedPassword")
    source = os.path.join(directory, "oldpq.c")
    with open(source, "w") as f:
        f.writelines(f"void {name}(void) {{}}\n" for name in wanted)
    run("gcc", "-shared", "-fPIC", "-Wl,-soname,libpq.so.5", "-o", os.path.join(directory, "libpq.so.5"), source)


class Cluster:
    """initdb and pg_ctl, with the environment the server is started in."""

    def __init__(self, root: str):
        self.root, self.data, self.bindir = root, os.path.join(root, "data"), pg_config("--bindir")
        run(os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "postgres", "-A", "trust")

    def start(self, environ: dict) -> None:
        run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-w", "-l", os.path.join(self.root, "log"),
            "-o", f"-k {self.root} -c listen_addresses= -p 54329", "start", env=environ)

    def stop(self) -> None:
        run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-w", "-m", "fast", "stop")

    def psql(self, script: str) -> None:
        sys.stdout.flush()
        subprocess.run(self._psql + ["--echo-queries"], input=script, text=True, check=True)

    def value(self, query: str) -> str:
        return run(*self._psql, "-At", "-c", query).stdout.strip()

    @property
    def _psql(self) -> list[str]:
        return ["psql", "-X", "-h", self.root, "-p", "54329", "-U", "postgres", "-d", "postgres"]


def main() -> int:
    with tempfile.TemporaryDirectory() as root:
        os.chmod(root, 0o755)
        old = os.path.join(root, "old-libpq")
        os.mkdir(old)
        build_old_libpq(old)
        cluster = Cluster(root)
        print(BANNER.format(f"The server starts with LD_LIBRARY_PATH={old}, where an old libpq.so.5 is"))
        cluster.start({**os.environ, "LD_LIBRARY_PATH": old})
        try:
            cluster.psql("CREATE EXTENSION dblink;\n")
            print(BANNER.format("What pgdl says, from SQL, without loading dblink"))
            cluster.psql("CREATE EXTENSION pgdl CASCADE;\n"
                         "SELECT * FROM pgdl.explain('dblink');\n"
                         "SELECT * FROM pgdl.tree('dblink');\n")
            fix = cluster.value("SELECT hint FROM pgdl.diagnose('dblink') WHERE topic = 'symbols'")
        finally:
            cluster.stop()
        path = re.search(r"set LD_LIBRARY_PATH=(\S+) in", fix).group(1)
        print(BANNER.format(f"pgdl's fix applied: the server restarted with LD_LIBRARY_PATH={path}"))
        cluster.start({**os.environ, "LD_LIBRARY_PATH": path})
        try:
            cluster.psql("SELECT * FROM pgdl.explain('dblink') LIMIT 1;\n"
                         "CREATE EXTENSION dblink;\n"
                         "SELECT dblink_get_connections() IS NULL AS no_connections_yet;\n")
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
