"""Benchmark: pgdl's check of every module in pkglibdir vs `ldd -r` and `lddtree`.

Run through `bash bench/run.sh` (as root: installs, then runs this as the
unprivileged test user), or directly as a non-root user once pgdl is installed:

    /usr/bin/python3 bench/run.py [--runs N] [--profile]

One throwaway server (testing.postgresql).  Each run, in this order, each
after the same one-second idle: pgdl in new backends, `pgdl.audit()` (which
checks every shared object in pkglibdir, every extension's module, the
preload settings and the database's C functions, with full symbol binding);
a loop of `ldd -r` over every `*.so` in pkglibdir; `pgdl.diagnose('dblink')`;
the same loop with pax-utils' `lddtree`, and one `lddtree` over all files;
`pgdl.predict_load()` called once per file.  Every figure is
the median of N runs; ratios are medians of the per-run ratios.  `ldd -r`
runs the dynamic loader on each file: it is the baseline being compared
against, never something pgdl does.

"Cold" is a new backend whose pgdl caches are empty.  It is timed three ways:
the first call of the session (PL/Python starts its interpreter, pgdl is
imported), after PL/Python has started (a `DO ... LANGUAGE plpython3u` first),
and, for diagnose, after pgdl is imported too (a `pgdl.resolve()` call first).
The answers pgdl keeps across backends (pgdl.persist) are those an earlier
backend kept, as on any host after its first audit; the audit is also timed
with none kept (a host's first audit), and its rows compared.
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
START_PLPYTHON = "DO $$ pass $$ LANGUAGE plpython3u"
IMPORT_PGDL = "SELECT count(*) FROM pgdl.resolve('plpgsql')"

IDLE_S = 1.0                          # before each measurement, for every tool alike

# Issue #19's targets (on a host with Debian's common extension packages: bench/run.sh installs them).
COLD_RATIO, COLD_RATIO_PLPYTHON, WARM_S, DIAGNOSE_S, RSS_MIB = 0.25, 0.20, 0.010, 0.050, 30.0


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


SECOND = os.environ.get("PGDL_SECOND_INSTALLATION", "/opt/pgdl/postgresql-17")
TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "pgdl")


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def tool_audit(bindir: str) -> float:
    """The shell tool's audit of an installation, as a whole process (Python's start included)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, TOOL, "audit", "--bindir", bindir, "--format", "json"],
                   capture_output=True, check=False)
    return time.perf_counter() - t0


def modules(pkglibdir: str) -> list[str]:
    return sorted(os.path.join(pkglibdir, f) for f in os.listdir(pkglibdir)
                  if f.endswith(".so") and os.path.isfile(os.path.join(pkglibdir, f)))


# -- pgdl inside a backend ----------------------------------------------------

class Session:
    """A new backend: run statements, time them, read its VmRSS."""

    def __init__(self, dsn):
        import psycopg2
        self.conn = psycopg2.connect(**dsn)
        self.conn.autocommit = True
        self.cur = self.conn.cursor()
        self.cur.execute("SELECT pg_backend_pid()")
        self.pid = self.cur.fetchone()[0]

    def timed(self, sql, params=()):
        t0 = time.perf_counter()
        self.cur.execute(sql, params)
        rows = self.cur.fetchall() if self.cur.description else []
        return time.perf_counter() - t0, rows

    def rss_mib(self) -> float:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def close(self):
        self.conn.close()


class Pgdl:
    def __init__(self, pg, pkglibdir: str):
        self.dsn = pg.dsn()
        self.pkglibdir = pkglibdir
        s = Session(self.dsn)
        s.cur.execute("CREATE EXTENSION IF NOT EXISTS pgdl CASCADE")
        s.close()

    def audit(self) -> dict:
        """A new backend with no answers kept across backends (a host's first audit); one
        with those it kept, first call, then warm; then one with PL/Python started first."""
        out = {}
        forget_kept_answers()
        s = Session(self.dsn)
        try:
            out["cold_unkept"], unkept_rows = s.timed("SELECT a::text FROM pgdl.audit() a")
        finally:
            s.close()
        s = Session(self.dsn)
        try:
            out["rss_new"] = s.rss_mib()
            out["cold_first"], cold_rows = s.timed("SELECT a::text FROM pgdl.audit() a")
            out["rss_cold"] = s.rss_mib()
            out["warm"], warm_rows = s.timed("SELECT a::text FROM pgdl.audit() a")
            out["rss_warm"] = s.rss_mib()
        finally:
            s.close()
        out["rows"] = len(cold_rows)
        out["same"] = cold_rows == warm_rows == unkept_rows
        out["cold_rows"] = [r[0] for r in cold_rows]
        s = Session(self.dsn)
        try:
            s.timed(START_PLPYTHON)
            out["rss_plpython"] = s.rss_mib()
            out["cold_plpython"], _rows = s.timed("SELECT count(*) FROM pgdl.audit()")
            out["rss_plpython_cold"] = s.rss_mib()
        finally:
            s.close()
        return out

    def upgrade_check(self, bindir: str) -> float:
        """pgdl.upgrade_check() of another installation, the first call of a new backend."""
        s = Session(self.dsn)
        try:
            return s.timed("SELECT count(*) FROM pgdl.upgrade_check(%s)" % quote(bindir))[0]
        finally:
            s.close()

    def diagnose(self) -> dict:
        """A new backend's first call with nothing kept (a host's first diagnose); then,
        as for the audit, new backends after an earlier one kept its reply."""
        sql = "SELECT count(*) FROM pgdl.diagnose('dblink')"
        out = {}
        forget_kept_answers()
        s = Session(self.dsn)
        try:
            out["first_unkept"], _rows = s.timed(sql)
        finally:
            s.close()
        for label, setup in (("first", ()), ("plpython", (START_PLPYTHON,)),
                             ("imported", (START_PLPYTHON, IMPORT_PGDL))):
            s = Session(self.dsn)
            try:
                for statement in setup:
                    seconds, _rows = s.timed(statement)
                    if statement == IMPORT_PGDL:
                        out["import"] = seconds
                    elif label == "plpython":
                        out["plpython_start"] = seconds
                out[label], _rows = s.timed(sql)
                if label == "imported":
                    out["warm"], _rows = s.timed(sql)
            finally:
                s.close()
        return out

    def predict_each(self) -> tuple[float, float]:
        """pgdl.predict_load() once per file (one SQL call each), cold and warm, one backend."""
        sql = ("SELECT f || ' ' || p::text FROM pg_ls_dir(%s) f, pgdl.predict_load(%s || '/' || f) p "
               "WHERE f LIKE '%%.so' ORDER BY f")
        s = Session(self.dsn)
        try:
            cold, c = s.timed(sql, (self.pkglibdir, self.pkglibdir))
            warm, w = s.timed(sql, (self.pkglibdir, self.pkglibdir))
        finally:
            s.close()
        if c != w:
            raise SystemExit("predict_load: warm answers differ from cold ones")
        return cold, warm


def forget_kept_answers() -> None:
    """Remove the answers and replies pgdl keeps across backends (the server runs as this OS user)."""
    import shutil
    from pgdl import persist, replies
    where = persist.directory()
    if where is not None:
        try:
            os.unlink(os.path.join(where, persist.FILE_NAME))
        except FileNotFoundError:
            pass
        shutil.rmtree(os.path.join(where, replies.DIRECTORY), ignore_errors=True)


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
    from pgdl import filestate
    from pgdl.engine.predict import predict_load
    from pgdl.server import Server
    import_s = time.perf_counter() - t0
    version_num = int(re.search(r"(\d+)(?:\.(\d+))?", pg_config("--version")).group(1)) * 10000
    server = Server(version_num=version_num, pkglibdir=pg_config("--pkglibdir"),
                    executable=os.path.join(pg_config("--bindir"), "postgres"), data_directory="/")
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    with filestate.one_call():
        results = [predict_load(path, server) for path in files]
    prof.disable()
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    with filestate.one_call():
        for path in files:
            predict_load(path, server)
    warm = time.perf_counter() - t0
    bad = [(p, r.error.message) for p, r in zip(files, results) if not r.will_load]
    print(f"\nprofile (plain Python process, {len(files)} modules): import pgdl {import_s * 1000:.0f} ms, "
          f"cold loop {cold:.3f} s under cProfile, warm loop {warm:.3f} s without; "
          f"{len(bad)} predicted not to load")
    for p, msg in bad:
        print(f"  {os.path.basename(p)}: {msg}")
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats(order).print_stats(top)
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
    from pgdl.elf import dynsym, open_elf

    pkglibdir = pg_config("--pkglibdir")
    postgres = os.path.join(pg_config("--bindir"), "postgres")
    files = modules(pkglibdir)
    n = args.runs
    print(f"machine: {machine()}")
    print(f"server:  {pg_config('--version')}, pkglibdir {pkglibdir}: {len(files)} .so files; "
          f"runs: {n} (median)")

    ldd, tree, tree1, audits, diags, each, upgrades, tools = [], [], [], [], [], [], [], []
    second = os.path.join(SECOND, "bin")
    with testing.postgresql.Postgresql() as pg:
        p = Pgdl(pg, pkglibdir)
        measures = [(audits, p.audit), (ldd, lambda: ldd_loop(files)), (diags, p.diagnose),
                    (tree, lambda: lddtree_loop(files)), (tree1, lambda: lddtree_once(files)),
                    (each, p.predict_each), (tools, lambda: tool_audit(pg_config("--bindir")))]
        if os.path.exists(os.path.join(second, "postgres")):
            measures.append((upgrades, lambda: p.upgrade_check(second)))
        # Interleaved, so that every tool sees the same machine; each measurement
        # starts after the same short idle, so none inherits another's heat.
        for _ in range(n):
            for results, measure in measures:
                time.sleep(IDLE_S)
                results.append(measure())

    def med(key, runs=audits):
        return median([r[key] for r in runs])

    ldd_s, tree_s = median([t for t, _u in ldd]), median(tree)
    ratio_first = median([a["cold_first"] / l[0] for a, l in zip(audits, ldd)])
    ratio_plpython = median([a["cold_plpython"] / l[0] for a, l in zip(audits, ldd)])
    ratio_unkept = median([a["cold_unkept"] / l[0] for a, l in zip(audits, ldd)])
    rss_growth = med("rss_warm") - med("rss_new")
    rss_growth_pgdl = med("rss_plpython_cold") - med("rss_plpython")
    print()
    print(f"ldd -r, one process per file ({len(files)} files)        {ldd_s:8.3f} s")
    print(f"lddtree (pax-utils), one process per file          {tree_s:8.3f} s   "
          f"(all files in one lddtree process: {median(tree1):.3f} s)")
    print(f"pgdl.audit() ({audits[0]['rows']} rows: every .so in pkglibdir, every extension's module, "
          "C functions, preloads):")
    print(f"  cold, a new backend, no answers kept    {med('cold_unkept'):8.3f} s   "
          f"ratio to ldd -r {ratio_unkept:5.2f} (a host's first audit; pgdl.persist)")
    print(f"  cold, first call of a new backend       {med('cold_first'):8.3f} s   "
          f"ratio to ldd -r {ratio_first:5.2f}, to lddtree {med('cold_first') / tree_s:5.2f} "
          "(answers kept by an earlier backend)")
    print(f"  cold, PL/Python already started         {med('cold_plpython'):8.3f} s   "
          f"ratio to ldd -r {ratio_plpython:5.2f}")
    print(f"  warm, second call in the same backend   {med('warm'):8.3f} s")
    print(f"  backend VmRSS: new {med('rss_new'):.1f} MiB, after cold call {med('rss_cold'):.1f} MiB, "
          f"after warm call {med('rss_warm'):.1f} MiB (growth {rss_growth:.1f} MiB; "
          f"PL/Python's own start {med('rss_plpython') - med('rss_new'):.1f} MiB, "
          f"pgdl after it {rss_growth_pgdl:.1f} MiB)")
    print("pgdl.diagnose('dblink'):")
    print(f"  cold, a new backend, nothing kept       {med('first_unkept', diags):8.3f} s (a host's first diagnose)")
    print(f"  cold, first call of a new backend       {med('first', diags):8.3f} s (its reply kept by an earlier backend)")
    print(f"  cold, PL/Python already started         {med('plpython', diags):8.3f} s")
    print(f"  cold caches, pgdl already imported      {med('imported', diags):8.3f} s")
    print(f"  warm                                    {med('warm', diags):8.3f} s")
    print(f"PL/Python's own start in a new backend (DO $$ pass $$) {med('plpython_start', diags):.3f} s; "
          f"then the import of pgdl (a first pgdl.resolve()) {med('import', diags):.3f} s:")
    print(f"  together, what the first call of any pgdl function in a new backend costs before its own work "
          f"{med('plpython_start', diags) + med('import', diags):.3f} s")
    print(f"pgdl.predict_load() per file, {len(files)} SQL calls in one backend: "
          f"cold {median([c for c, _w in each]):.3f} s, warm {median([w for _c, w in each]):.3f} s")
    if upgrades:
        print(f"pgdl.upgrade_check('{second}'), first call of a new backend: {median(upgrades):.3f} s "
              f"(cold audit: {med('cold_first'):.3f} s)")
    print(f"the shell tool: pgdl audit --bindir (a whole process) {median(tools):.3f} s, "
          f"ratio to ldd -r {median(tools) / ldd_s:.2f}")

    # ldd -r's undefined symbols: the ones the postgres executable provides are false alarms.
    exe = open_elf(postgres)
    undefined = sorted(set(ldd[0][1]))
    false_alarms = [(f, s) for f, s in undefined if dynsym.definition(exe, s) is not None]
    real = [(f, s) for f, s in undefined if dynsym.definition(exe, s) is None]
    files_flagged = {f for f, _s in undefined}
    print(f"ldd -r 'undefined symbol' reports (distinct file+symbol): {len(undefined)} in {len(files_flagged)} "
          f"files; false alarms (defined by {postgres}): {len(false_alarms)}; other: {len(real)}")
    for f, s in real:
        print(f"  not in postgres: {os.path.basename(f)}: {s}")
    pgdl_undefined = [r for r in audits[0]["cold_rows"] if "undefined symbol" in r.lower()]
    print(f"pgdl.audit() undefined-symbol problems: {len(pgdl_undefined)}")
    for r in pgdl_undefined:
        print(f"  {r}")
    same = all(a["same"] for a in audits)
    print(f"cached answers (warm, and kept across backends) identical to uncached ones (cold, none kept), "
          f"every run: {'yes' if same else 'NO'}")

    print("targets (issue #19):")
    for label, value, limit in (
            ("cold audit / ldd -r, first call of a new backend", ratio_first, COLD_RATIO),
            ("cold audit / ldd -r, PL/Python already started", ratio_plpython, COLD_RATIO_PLPYTHON),
            ("warm audit (s)", med("warm"), WARM_S),
            ("diagnose('dblink') cold, first call of a new backend (s)", med("first", diags), DIAGNOSE_S),
            ("backend RSS growth after an audit, from a new backend (MiB)", rss_growth, RSS_MIB)):
        print(f"  {'met   ' if value <= limit else 'NOT met'} {label}: {value:.3f} (target <= {limit})")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"(other work on this machine skews every figure)")
    if args.profile:
        profile(files, args.top)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
