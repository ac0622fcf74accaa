"""Benchmark: pgdl's check of every module in pkglibdir vs `ldd -r` and `lddtree`.

Run through `bash bench/run.sh` (as root: installs, then runs this as the
unprivileged test user), or directly as a non-root user once pgdl is installed:

    /usr/bin/python3 bench/run.py [--runs N] [--profile]

One throwaway server (testing.postgresql).  pgdl is timed with
`pgdl.predict_load()` over every `*.so` in pkglibdir and, when the installed
version has it, with `pgdl.audit()` too.  Every figure is the median of N
runs.  `ldd -r` runs the dynamic loader on each file: that is the baseline
being compared against, never something pgdl does.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

LDDTREE = "/usr/bin/lddtree"          # pax-utils (dpkg -L pax-utils): a Python script
SYSTEM_PYTHON = "/usr/bin/python3"
UNDEFINED = re.compile(r"undefined symbol:\s*(\S+?)(?:,\s*version\s+\S+)?\s+\(")


def pg_config(option: str) -> str:
    return subprocess.run(["pg_config", option], check=True, capture_output=True, text=True).stdout.strip()


def median(values):
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return (f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, "
            f"{mem_kb / 1024 / 1024:.1f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f}")


def modules(pkglibdir: str) -> list[str]:
    return sorted(os.path.join(pkglibdir, f) for f in os.listdir(pkglibdir)
                  if f.endswith(".so") and os.path.isfile(os.path.join(pkglibdir, f)))


# -- pgdl inside a backend ----------------------------------------------------

class Bench:
    def __init__(self, pg, pkglibdir: str):
        import psycopg2
        self.psycopg2 = psycopg2
        self.dsn = pg.dsn()
        self.pkglibdir = pkglibdir
        self.has_audit = bool(self.query_once(
            "SELECT count(*) FROM pg_proc WHERE proname = 'audit' "
            "AND pronamespace = 'pgdl'::regnamespace")[0][0])
        predict = ("SELECT {} FROM pg_ls_dir(%s) f, pgdl.predict_load(%s || '/' || f) p "
                   "WHERE f LIKE '%%.so'")
        # (label, count query, rows query, params)
        self.checks = [("pgdl.predict_load() over pg_ls_dir(pkglibdir)", predict.format("count(*)"),
                        predict.format("f || ' ' || p::text") + " ORDER BY f", (pkglibdir, pkglibdir))]
        if self.has_audit:
            self.checks.insert(0, ("pgdl.audit()", "SELECT count(*) FROM pgdl.audit()",
                                   "SELECT a::text FROM pgdl.audit() a", ()))

    @staticmethod
    def create_extension(pg):
        import psycopg2
        conn = psycopg2.connect(**pg.dsn())
        conn.autocommit = True
        try:
            conn.cursor().execute("CREATE EXTENSION pgdl CASCADE")
        finally:
            conn.close()

    def connect(self):
        conn = self.psycopg2.connect(**self.dsn)
        conn.autocommit = True
        return conn

    def query_once(self, sql, params=()):
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()

    @staticmethod
    def timed(cur, sql, params=()):
        t0 = time.perf_counter()
        cur.execute(sql, params)
        rows = cur.fetchall()
        return time.perf_counter() - t0, rows

    @staticmethod
    def rss_kb(pid: int) -> int:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    def audit_run(self, check):
        """A new backend: (cold s, warm s, rss before kB, after cold kB, after warm kB, counts)."""
        _label, count_sql, _rows_sql, params = check
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                pid = cur.fetchone()[0]
                before = self.rss_kb(pid)
                cold, c1 = self.timed(cur, count_sql, params)
                after_cold = self.rss_kb(pid)
                warm, c2 = self.timed(cur, count_sql, params)
                after_warm = self.rss_kb(pid)
            return cold, warm, before, after_cold, after_warm, (c1[0][0], c2[0][0])
        finally:
            conn.close()

    def diagnose_run(self):
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cold, _rows = self.timed(cur, "SELECT count(*) FROM pgdl.diagnose('dblink')")
            return cold
        finally:
            conn.close()

    def cold_and_warm_rows(self, check):
        _label, _count_sql, rows_sql, params = check
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                _t, cold = self.timed(cur, rows_sql, params)
                _t, warm = self.timed(cur, rows_sql, params)
            return [r[0] for r in cold], [r[0] for r in warm]
        finally:
            conn.close()


# -- baselines ----------------------------------------------------------------

def ldd_loop(files: list[str]):
    """`ldd -r` per file: (seconds, [(file, undefined symbol name)])."""
    undefined = []
    t0 = time.perf_counter()
    for path in files:
        r = subprocess.run(["ldd", "-r", path], capture_output=True, text=True)
        for line in (r.stdout + r.stderr).splitlines():
            m = UNDEFINED.search(line)
            if m:
                undefined.append((path, m.group(1)))
    return time.perf_counter() - t0, undefined


def lddtree_loop(files: list[str]) -> float:
    t0 = time.perf_counter()
    for path in files:
        subprocess.run([SYSTEM_PYTHON, LDDTREE, path], capture_output=True, text=True, check=True)
    return time.perf_counter() - t0


def lddtree_once(files: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([SYSTEM_PYTHON, LDDTREE, *files], capture_output=True, text=True, check=True)
    return time.perf_counter() - t0


# -- profile of the cold path in a plain Python process ------------------------

def profile(files: list[str], top: int) -> None:
    import cProfile
    import io
    import pstats
    t0 = time.perf_counter()
    from pgdl.predict import predict_load
    from pgdl.server import Server
    import_s = time.perf_counter() - t0
    version_num = int(re.search(r"(\d+)(?:\.(\d+))?", pg_config("--version")).group(1)) * 10000
    server = Server(version_num=version_num, pkglibdir=pg_config("--pkglibdir"),
                    executable=os.path.join(pg_config("--bindir"), "postgres"), data_directory="/")
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    results = [predict_load(path, server) for path in files]
    prof.disable()
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    for path in files:
        predict_load(path, server)
    warm = time.perf_counter() - t0
    bad = [(p, r.error.message) for p, r in zip(files, results) if not r.will_load]
    print(f"\nprofile (plain Python process, {len(files)} modules): import pgdl {import_s * 1000:.0f} ms, "
          f"cold loop {cold:.3f} s under cProfile, warm loop {warm:.3f} s without; "
          f"{len(bad)} predicted not to load")
    for p, msg in bad:
        print(f"  {os.path.basename(p)}: {msg}")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(top)
    print(out.getvalue())
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    print(out.getvalue())


# -- main -----------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per figure; the median is printed (default 5)")
    ap.add_argument("--profile", action="store_true",
                    help="also profile predict_load over the same files in this process (cProfile)")
    ap.add_argument("--top", type=int, default=25, help="profile lines to print")
    args = ap.parse_args()
    if os.geteuid() == 0:
        sys.exit("run as a non-root user (PostgreSQL refuses root): bash bench/run.sh does this")
    import testing.postgresql
    from pgdl.elf import open_elf

    pkglibdir = pg_config("--pkglibdir")
    postgres = os.path.join(pg_config("--bindir"), "postgres")
    files = modules(pkglibdir)
    n = args.runs
    print(f"machine: {machine()}")
    print(f"server:  {pg_config('--version')}, pkglibdir {pkglibdir}: {len(files)} .so files; runs: {n} (median)")

    with testing.postgresql.Postgresql() as pg:
        Bench.create_extension(pg)
        b = Bench(pg, pkglibdir)
        results = []
        for check in b.checks:
            runs = [b.audit_run(check) for _ in range(n)]
            results.append((check[0], runs, b.cold_and_warm_rows(check)))
        diag = [b.diagnose_run() for _ in range(n)]

    ldd = [ldd_loop(files) for _ in range(n)]
    tree = [lddtree_loop(files) for _ in range(n)]
    tree1 = [lddtree_once(files) for _ in range(n)]
    ldd_s = median([t for t, _u in ldd])
    tree_s = median(tree)
    print()
    print(f"ldd -r, one process per file                       {ldd_s:8.3f} s")
    print(f"lddtree (pax-utils), one process per file          {tree_s:8.3f} s   "
          f"(all files in one lddtree process: {median(tree1):.3f} s)")
    print(f"pgdl.diagnose('dblink'), cold (new backend)        {median(diag):8.3f} s")
    for label, runs, _rows in results:
        cold = median([r[0] for r in runs])
        warm = median([r[1] for r in runs])
        print(f"{label}, full symbol binding (rows {sorted({r[5] for r in runs})}):")
        print(f"  cold (new backend, first call) {cold:8.3f} s   warm (same backend, second call) {warm:8.3f} s")
        print(f"  ratio pgdl/ldd -r   cold {cold / ldd_s:6.2f}   warm {warm / ldd_s:6.2f}")
        print(f"  ratio pgdl/lddtree  cold {cold / tree_s:6.2f}   warm {warm / tree_s:6.2f}")
        print(f"  backend VmRSS: before {median([r[2] for r in runs]) / 1024:.1f} MiB, "
              f"after cold call {median([r[3] for r in runs]) / 1024:.1f} MiB, "
              f"after warm call {median([r[4] for r in runs]) / 1024:.1f} MiB")

    # ldd -r's undefined symbols: the ones the postgres executable provides are false alarms.
    exe = open_elf(postgres)
    undefined = sorted(set(ldd[0][1]))
    false_alarms = [(f, s) for f, s in undefined if exe.definition(s) is not None]
    real = [(f, s) for f, s in undefined if exe.definition(s) is None]
    files_flagged = {f for f, _s in undefined}
    print(f"ldd -r 'undefined symbol' reports (distinct file+symbol): {len(undefined)} in {len(files_flagged)} "
          f"files; false alarms (defined by {postgres}): {len(false_alarms)}; other: {len(real)}")
    for f, s in real:
        print(f"  not in postgres: {os.path.basename(f)}: {s}")
    all_same = True
    for label, _runs, (cold_rows, warm_rows) in results:
        pgdl_undefined = [r for r in cold_rows if "undefined symbol" in r.lower()]
        print(f"{label}: undefined-symbol problems: {len(pgdl_undefined)}")
        for r in pgdl_undefined:
            print(f"  {r}")
        same = cold_rows == warm_rows
        all_same = all_same and same
        print(f"{label}: warm answers identical to cold: {'yes' if same else 'NO'} ({len(cold_rows)} rows"
              f"{'' if same else f', {len(set(cold_rows) ^ set(warm_rows))} differ'})")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"(other work on this machine skews every figure)")
    if args.profile:
        profile(files, args.top)
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
