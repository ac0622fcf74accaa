"""How pgdl's cost grows with the number of modules and the size of their
closures, beside `ldd -r` and libtree over the same files.

N PostgreSQL modules (N = 10, 50, 100, 200), built against the server's
headers, each linked either with nothing but libc ("small") or with GDAL,
whose closure is about a hundred libraries ("big", skipped without
libgdal).  The modules are copies of one build under N names: they share
their dependencies, as a host's modules do.  Measured, each a whole process:
`pgdl predict-load` of the N files (one call of the shell tool: the engine
the SQL audit uses, PL/Python aside, keeping no answers across processes, so
that each run works everything out), `ldd -r` once per file, and one libtree
process over all N (its dependency search, without symbol binding).

Usage: /usr/bin/python3 bench/scaling.py [--runs N]   (bench/run.sh runs it)"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = (10, 50, 100, 200)
REPO = Path(__file__).resolve().parent.parent
MODULE = r"""
#include "postgres.h"
#include "fmgr.h"
PG_MODULE_MAGIC;
%s
PG_FUNCTION_INFO_V1(scaling_fn);
Datum scaling_fn(PG_FUNCTION_ARGS) { %s }
"""
SMALL = ("", "PG_RETURN_INT32(1);")
BIG = ("extern const char *GDALVersionInfo(const char *);",
       "PG_RETURN_INT32(GDALVersionInfo(\"RELEASE_NAME\") != NULL);")


def pg_config(flag: str) -> str:
    return subprocess.run(["pg_config", flag], capture_output=True, text=True, check=True).stdout.strip()


def build(directory: Path, kind: str, count: int) -> list[str]:
    """count copies of one module of that kind."""
    decl, body = BIG if kind == "big" else SMALL
    src = directory / f"{kind}.c"
    src.write_text(MODULE % (decl, body))
    first = directory / f"{kind}_0.so"
    libs = sorted(glob.glob("/lib/*-linux-gnu/libgdal.so.*[0-9]"))[:1] if kind == "big" else []
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-I", pg_config("--includedir-server"), "-o", str(first),
                    str(src), *libs], check=True, capture_output=True)
    out = [str(first)]
    for i in range(1, count):
        copy = directory / f"{kind}_{i}.so"
        shutil.copyfile(first, copy)
        out.append(str(copy))
    return out


def timed(command: list[str], **kw) -> float:
    t0 = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t0


def pgdl(files: list[str]) -> float:
    """Without the answers pgdl keeps across processes (PGDL_CACHE_DIR empty): every
    run works everything out, as a host's first audit does."""
    return timed([sys.executable, "-m", "pgdl", "predict-load", *files], cwd=REPO / "python",
                 env={**os.environ, "PGDL_CACHE_DIR": ""})


def ldd(files: list[str]) -> float:
    t0 = time.perf_counter()
    for f in files:
        subprocess.run(["ldd", "-r", f], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def libtree(files: list[str]) -> float | None:
    return timed(["libtree", *files]) if shutil.which("libtree") else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per figure; the median is printed (default 3)")
    args = ap.parse_args()
    kinds = ["small"] + (["big"] if glob.glob("/lib/*-linux-gnu/libgdal.so.*") else [])
    print(f"scaling: pgdl predict-load (one process) / ldd -r (one process per file) / libtree (one process); "
          f"medians of {args.runs}")
    print(f"{'kind':<6} {'modules':>7} {'pgdl s':>8} {'ldd -r s':>9} {'libtree s':>10} {'pgdl/ldd':>9} "
          f"{'pgdl/libtree':>13}")
    growth = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        for kind in kinds:
            files = build(Path(tmp), kind, max(SIZES))
            for n in SIZES:
                subset = files[:n]
                p = statistics.median(pgdl(subset) for _ in range(args.runs))
                d = statistics.median(ldd(subset) for _ in range(args.runs))
                t = libtree(subset)
                t = statistics.median([t] + [libtree(subset) for _ in range(args.runs - 1)]) if t else None
                growth.setdefault(kind, []).append((n, p, d))
                shown_t = f"{t:10.3f}" if t else f"{'-':>10}"
                ratio_t = f"{p / t:13.2f}" if t else f"{'-':>13}"
                print(f"{kind:<6} {n:>7} {p:8.3f} {d:9.3f} {shown_t} {p / d:9.2f} {ratio_t}")
    for kind, rows in growth.items():
        (n0, p0, d0), (n1, p1, d1) = rows[0], rows[-1]
        # Past the fixed start (Python, pgdl's import), the cost per module added:
        per_pgdl, per_ldd = (p1 - p0) / (n1 - n0), (d1 - d0) / (n1 - n0)
        verdict = "no faster" if per_pgdl <= per_ldd else "FASTER"
        print(f"{kind}: from {n0} to {n1} modules pgdl grows by {p1 - p0:.3f} s ({per_pgdl * 1000:.1f} ms a module), "
              f"ldd -r by {d1 - d0:.3f} s ({per_ldd * 1000:.1f} ms a module): pgdl grows {verdict} than ldd -r")
    return 0


if __name__ == "__main__":
    sys.exit(main())
