"""Start a throwaway cluster, install pgdl in it and show real diagnoses with psql."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import testing.postgresql

BROKEN = r"""
#include "postgres.h"
#include "fmgr.h"
/* A module built for another major version: its magic block says 14. */
PGDLLEXPORT const Pg_magic_struct *Pg_magic_func(void);
const Pg_magic_struct *Pg_magic_func(void)
{
    static const Pg_magic_struct data = { sizeof(Pg_magic_struct), 1400, FUNC_MAX_ARGS, INDEX_MAX_KEYS,
                                          NAMEDATALEN, FLOAT8PASSBYVAL, FMGR_ABI_EXTRA };
    return &data;
}
"""


def build_broken(directory: str) -> str:
    include = subprocess.run(["pg_config", "--includedir-server"], capture_output=True, text=True,
                             check=True).stdout.strip()
    src = os.path.join(directory, "broken.c")
    out = os.path.join(directory, "broken.so")
    with open(src, "w") as f:
        f.write(BROKEN)
    subprocess.run(["gcc", "-shared", "-fPIC", "-I", include, "-o", out, src], check=True)
    return out


def main() -> int:
    with testing.postgresql.Postgresql() as pg, tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        broken = build_broken(tmp)
        dsn = pg.dsn()
        psql = ["psql", "-X", "-h", dsn["host"], "-p", str(dsn["port"]), "-U", dsn["user"], "-d", dsn["database"],
                "--echo-queries", "-v", "ON_ERROR_STOP=1"]
        script = f"""
CREATE EXTENSION pgdl CASCADE;
SELECT * FROM pgdl.resolve('dblink');
SELECT * FROM pgdl.check_magic('$libdir/dblink');
SELECT field, library_value, server_value, matches, verdict, message, detail FROM pgdl.check_magic('{broken}');
SELECT * FROM pgdl.predict_load('{broken}');
\\x on
SELECT * FROM pgdl.diagnose('dblink');
\\x off
SELECT depth, needed, path, found_via, status FROM pgdl.dependencies('dblink') WHERE depth <= 1;
\\set ON_ERROR_STOP 0
LOAD '{broken}';
"""
        return subprocess.run(psql, input=script, text=True).returncode


if __name__ == "__main__":
    sys.exit(main())
