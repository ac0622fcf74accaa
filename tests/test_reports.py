"""Answers to be read where DBAs read them: pgdl.explain() and pgdl.tree() in
psql and the shell tool, diagnose()'s rows (the verdict first, one line a
value), and the recorded audits as postgres_exporter metrics read from its
HTTP endpoint."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from modules import HAND_MAGIC

WIDTH = 100
MODULE = r"""
#include "postgres.h"
#include "fmgr.h"
PG_MODULE_MAGIC;
extern int pgdl_tree_dep(void);
PG_FUNCTION_INFO_V1(tree_fn);
Datum tree_fn(PG_FUNCTION_ARGS) { PG_RETURN_INT32(pgdl_tree_dep()); }
"""
SONAME = "libpgdltree.so.1"
EXPORTER = shutil.which("prometheus-postgres-exporter")
QUERIES = Path(__file__).resolve().parent.parent / "docs" / "postgres_exporter.yml"


def lines(cluster, sql, params=()) -> list[str]:
    return [r[0] for r in cluster.query(sql, params)]


def squeezed(text: str) -> str:
    """Text without whitespace: wrapping moves line breaks, never other characters."""
    return "".join(text.split())


def library(directory: Path, machine: int | None = None) -> Path:
    """libpgdltree.so.1 in directory; machine: an e_machine to claim instead of the host's."""
    directory.mkdir(exist_ok=True)
    os.chmod(directory, 0o755)
    (directory / "dep.c").write_text("int pgdl_tree_dep(void) { return 7; }\n")
    out = directory / SONAME
    subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{SONAME}", "-o", str(out), str(directory / "dep.c")],
                   check=True, capture_output=True)
    if machine is not None:
        data = bytearray(out.read_bytes())
        data[18:20] = machine.to_bytes(2, "little")
        out.write_bytes(bytes(data))
    return out


# -- explain() and diagnose()'s rows ---------------------------------------------------

def test_explain_puts_the_verdict_and_the_server_error_first(cluster, build):
    mod = build("explain_magic", HAND_MAGIC, "-DM_VERSION=1400")
    real = cluster.error_of("LOAD %s", (str(mod),))
    assert real is not None and real.detail
    report = lines(cluster, "SELECT * FROM pgdl.explain(%s)", (str(mod),))
    assert all(len(line) <= WIDTH for line in report), report
    assert report[0].startswith("ERROR: ")
    verdict = report[:report.index("")]
    assert any(line.startswith("  ERROR:  ") for line in verdict)
    assert any(line.startswith("  DETAIL:  ") for line in verdict)
    assert squeezed(f"ERROR: {real.message} DETAIL: {real.detail}") in squeezed(" ".join(verdict))
    story = report[report.index("") + 1:]
    assert any(line.startswith("error   magic") for line in story), story


def test_diagnose_rows_start_with_the_verdict_on_one_line(cluster, build):
    mod = build("diagnose_magic", HAND_MAGIC, "-DM_VERSION=1400")
    real = cluster.error_of("LOAD %s", (str(mod),))
    rows = cluster.query("SELECT topic, status, subject, message, hint FROM pgdl.diagnose(%s)", (str(mod),))
    assert rows[0][:2] == ("verdict", "error")
    assert f"ERROR:  {real.message} DETAIL:  {real.detail}" in rows[0][3]
    assert not any("\n" in (value or "") for row in rows for value in row), rows
    assert [r[0] for r in rows].count("verdict") == 1


def test_explain_of_an_extension_that_loads(cluster):
    report = lines(cluster, "SELECT * FROM pgdl.explain('dblink')")
    assert report[0] == "OK: CREATE EXTENSION dblink will load its libraries"
    assert all(len(line) <= WIDTH for line in report)
    assert cluster.query("SELECT count(*) FROM pgdl.explain('dblink', context => 'this session')")[0][0] > 3


# -- tree() ----------------------------------------------------------------------------

def test_tree_says_why_each_path_was_chosen_and_what_was_rejected(cluster, build, tmp_path):
    """DT_RPATH lists a copy built for another machine first: glibc skips it and
    takes the next directory's."""
    good = library(tmp_path / "good")
    bad = library(tmp_path / "bad", machine=183)          # EM_AARCH64 on x86-64, EM_X86_64 elsewhere
    if os.uname().machine == "aarch64":
        bad = library(tmp_path / "bad", machine=62)
    mod = build("tree_mod", MODULE, str(good), f"-Wl,-rpath,{bad.parent}:{good.parent}", "-Wl,--disable-new-dtags")
    assert cluster.error_of("LOAD %s", (str(mod),)) is None          # the real loader agrees: it loads
    report = lines(cluster, "SELECT * FROM pgdl.tree(%s)", (str(mod),))
    assert all(len(line) <= WIDTH for line in report), report
    assert report[0] == str(mod)
    text = squeezed(" ".join(report))
    chosen = squeezed(f"{SONAME} => {good} [RPATH of tree_mod.so]")
    rejected = squeezed(f"rejected: {bad}: wrong machine, skipped")
    assert chosen in text and text.index(chosen) < text.index(rejected), report
    assert text.endswith(squeezed(f"=> LOAD '{mod}' will load"))
    via = dict(cluster.query("SELECT needed, found_via FROM pgdl.dependencies(%s)", (str(mod),)))
    assert via[SONAME] == f"RPATH of {mod}"


def test_tree_of_a_module_whose_dependency_is_gone(cluster, build, tmp_path):
    dep = library(tmp_path / "gone")
    mod = build("tree_gone", MODULE, str(dep), f"-Wl,-rpath,{dep.parent}")
    dep.unlink()
    real = cluster.error_of("LOAD %s", (str(mod),))
    report = lines(cluster, "SELECT * FROM pgdl.tree(%s)", (str(mod),))
    assert any(line.endswith(f"{SONAME} => not found") for line in report), report
    tail = report[next(i for i, line in enumerate(report) if line.startswith("=> LOAD fails: ")):]
    assert squeezed(" ".join(tail)) == squeezed(f"=> LOAD fails: {real.message}")


def test_shell_tool_explain_and_tree(build, tmp_path):
    mod = build("tool_magic", HAND_MAGIC, "-DM_VERSION=1400")
    for command, status in (("explain", 1), ("tree", 1)):
        done = subprocess.run([sys.executable, "-m", "pgdl", command, str(mod)], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent.parent / "python")
        assert done.returncode == status, done.stderr
        assert all(len(line) <= 80 for line in done.stdout.splitlines()), done.stdout
    assert "ERROR: " in done.stdout or "LOAD fails: " in done.stdout
    ok = subprocess.run([sys.executable, "-m", "pgdl", "explain", "dblink"], capture_output=True, text=True,
                        cwd=Path(__file__).resolve().parent.parent / "python")
    assert ok.returncode == 0 and "OK: CREATE EXTENSION dblink will load its libraries" in ok.stdout


@pytest.mark.parametrize("command", ["explain", "diagnose"])
def test_shell_tool_refuses_a_blank_target_as_sql_does(command):
    done = subprocess.run([sys.executable, "-m", "pgdl", command, "dblink", " \t"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent / "python")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "pgdl: target must name an extension, a library or a C function\n"


# -- monitoring --------------------------------------------------------------------------

@contextlib.contextmanager
def database(cluster, name):
    cluster.query(f"DROP DATABASE IF EXISTS {name}")
    cluster.query(f"CREATE DATABASE {name}")
    try:
        cluster.query("CREATE EXTENSION pgdl CASCADE", database=name)
        yield name
    finally:
        cluster.query(f"DROP DATABASE {name} WITH (FORCE)" if _major(cluster) >= 13 else f"DROP DATABASE {name}")


def _major(cluster) -> int:
    return int(cluster.query("SHOW server_version_num")[0][0]) // 10000


def test_audit_metrics_follow_the_latest_recorded_audit(cluster):
    with database(cluster, "pgdl_metrics") as db:
        empty = cluster.query("SELECT runs, run_id, errors, warnings, stale, age_seconds FROM pgdl.audit_metrics",
                              database=db)
        assert empty == [(0, None, None, None, 0, None)]
        for _ in range(2):
            run = cluster.query("SELECT pgdl.record_audit()", database=db)[0][0]
        got = cluster.query("SELECT runs, run_id, errors, warnings, stale, age_seconds FROM pgdl.audit_metrics",
                            database=db)[0]
        expected = cluster.query(
            "SELECT r.errors, r.warnings, (SELECT count(*) FROM pgdl.audit_finding f WHERE f.run_id = r.run_id "
            "AND f.kind = 'stale' AND f.status <> 'ok') FROM pgdl.audit_run r WHERE r.run_id = %s",
            (run,), database=db)[0]
        assert got[:2] == (2, run) and got[2:5] == expected and 0 <= got[5] < 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url: str, deadline: float) -> dict[str, float]:
    """The pgdl_* samples of a Prometheus text page, once the exporter serves them."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as page:
                text = page.read().decode()
            samples = {}
            for line in text.splitlines():
                if line.startswith("pgdl_"):
                    name, value = line.rsplit(" ", 1)
                    samples[name.split("{")[0]] = float(value)
            if "pgdl_audit_runs" in samples:
                return samples
        except OSError:
            pass
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.3)


@pytest.mark.skipif(EXPORTER is None, reason="prometheus-postgres-exporter is not installed")
def test_postgres_exporter_serves_the_audit_metrics(cluster):
    """The real exporter, with docs/postgres_exporter.yml, connected as a pg_monitor member."""
    cluster.query("DROP ROLE IF EXISTS pgdl_exporter")
    cluster.query("CREATE ROLE pgdl_exporter LOGIN IN ROLE pg_monitor")
    try:
        with database(cluster, "pgdl_exported") as db:
            cluster.query("SELECT pgdl.record_audit()", database=db)
            view = cluster.query("SELECT runs, errors, warnings, stale, age_seconds FROM pgdl.audit_metrics",
                                 database=db)[0]
            port, dsn = free_port(), cluster.dsn
            environ = {**os.environ, "DATA_SOURCE_NAME":
                       f"postgresql://pgdl_exporter@{dsn['host']}:{dsn['port']}/{db}?sslmode=disable"}
            exporter = subprocess.Popen([EXPORTER, f"--web.listen-address=127.0.0.1:{port}",
                                         f"--extend.query-path={QUERIES}", "--disable-default-metrics",
                                         "--disable-settings-metrics"],
                                        env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                samples = scrape(f"http://127.0.0.1:{port}/metrics", time.monotonic() + 30)
            finally:
                exporter.terminate()
                _, log = exporter.communicate(timeout=10)
            assert samples, log
            assert samples["pgdl_audit_runs"] == view[0] == 1
            assert (samples["pgdl_audit_errors"], samples["pgdl_audit_warnings"], samples["pgdl_audit_stale"]) \
                == tuple(float(v) for v in view[1:4])
            assert view[4] <= samples["pgdl_audit_age_seconds"] < view[4] + 60
    finally:
        cluster.query("DROP ROLE pgdl_exporter")


def test_explain_shows_a_long_run_of_one_finding_in_short(cluster, build):
    """A module missing many symbols: explain() shows the first few and how many more."""
    source = "".join(f"extern int pgdl_gone_{i}(void);\n" for i in range(20))
    source += "int pgdl_uses(void) { return " + " + ".join(f"pgdl_gone_{i}()" for i in range(20)) + "; }\n"
    mod = build("explain_many", source)
    rows = cluster.query("SELECT count(*) FROM pgdl.diagnose(%s) WHERE topic = 'symbols'", (str(mod),))[0][0]
    report = lines(cluster, "SELECT * FROM pgdl.explain(%s)", (str(mod),))
    shown = [line for line in report if line.startswith("error   symbols")]
    assert rows == 20 and len(shown) == 3, report
    assert any(line.strip() == "... and 17 more like these (pgdl.diagnose() lists them all)" for line in report)
