"""The SQL functions in a real server: lookup, privileges, odd input."""

from __future__ import annotations

import os

import pytest

from modules import GOOD_MODULE


def resolve_rows(cluster, name, setup=()):
    return cluster.query("SELECT step, rule, candidate, file_exists, regular_file, chosen FROM pgdl.resolve(%s)",
                         (name,), setup=setup)


def mapped_paths(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    with open(f"/proc/{pid}/maps") as f:
        return {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}


def test_resolve_stock_module(cluster):
    rows = resolve_rows(cluster, "dblink")
    pkglibdir = cluster.query("SELECT setting FROM pgdl._server_config() WHERE name = 'PKGLIBDIR'")[0][0]
    assert rows[-1][2:] == (f"{pkglibdir}/dblink.so", True, True, True)
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))


def test_resolve_follows_session_path_and_server_agrees(cluster, build, tmp_path):
    """The chosen candidate is the file the backend then maps on LOAD."""
    first = tmp_path / "first"
    second = tmp_path / "second"
    first.mkdir()
    second.mkdir()
    for d in (first, second):
        os.chmod(d, 0o755)
    built = build("pathmod", GOOD_MODULE)
    (second / "pathmod.so").write_bytes(built.read_bytes())
    (first / "pathmod").mkdir()          # a directory named like the module: skipped
    setup = (f"SET dynamic_library_path = '{first}:{second}:$libdir'",)
    rows = resolve_rows(cluster, "pathmod", setup)
    chosen = [r for r in rows if r[5]]
    assert len(chosen) == 1 and chosen[0][2] == f"{second}/pathmod.so"
    assert rows[0][2:] == (f"{first}/pathmod", True, False, False)
    conn = cluster.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(setup[0])
            cur.execute("LOAD 'pathmod'")
        assert chosen[0][2] in mapped_paths(conn)
    finally:
        conn.close()


@pytest.mark.parametrize("setting, message", [
    ("$libdir::/x", 'zero-length component in parameter "dynamic_library_path"'),
    ("relative:$libdir", 'component in parameter "dynamic_library_path" is not an absolute path'),
    ("$libdirx", "invalid macro name in dynamic library path: $libdirx"),
])
def test_lookup_errors_match_server(cluster, setting, message):
    setup = (f"SET dynamic_library_path = '{setting}'",)
    ours = cluster.error_of("SELECT * FROM pgdl.resolve('nosuchmodule')", setup=setup)
    theirs = cluster.error_of("LOAD 'nosuchmodule'", setup=setup)
    if cluster.query("SELECT current_setting('server_version_num')::int")[0][0] >= 180000:
        message = message.replace("in dynamic library path", "in path")     # dfmgr.c 18: substitute_path_macro
    assert (ours.sqlstate, ours.message) == (theirs.sqlstate, theirs.message) == ("42602", message)


def test_invalid_macro_in_name_matches_server(cluster):
    ours = cluster.error_of("SELECT * FROM pgdl.resolve('$libdirx/foo')")
    theirs = cluster.error_of("LOAD '$libdirx/foo'")
    assert (ours.sqlstate, ours.message) == (theirs.sqlstate, theirs.message)


def test_not_found_passes_name_as_given(cluster):
    rows = resolve_rows(cluster, "no_such_module_here")
    assert rows[-1][1:] == ("not found: passed to the loader as given", "no_such_module_here", False, False, True)


@pytest.mark.parametrize("name", ["", "a\nb", "../../../etc/passwd", "x" * 100_000, "/dev/zero", "/proc/self/maps"])
def test_odd_names_answered_cleanly(cluster, name):
    error = cluster.error_of("SELECT * FROM pgdl.check_magic(%s)", (name,))
    assert error is None
    rows = cluster.query("SELECT DISTINCT message FROM pgdl.check_magic(%s)", (name,))
    assert len(rows) == 1
    resolve_error = cluster.error_of("SELECT * FROM pgdl.resolve(%s)", (name,))
    load_error = cluster.error_of("LOAD %s", (name,)) if name not in ("/dev/zero",) else None
    if resolve_error is not None:    # only when the server's own lookup fails too
        assert load_error is not None and resolve_error.message == load_error.message


# Every public function's NULL (and diagnose's blank target) is refused by the
# domain cast in its own body: the CONTEXT names only the function called.
NULL_CALLS = {"resolve": "pgdl.resolve(NULL)", "check_magic": "pgdl.check_magic(NULL)",
              "predict_load": "pgdl.predict_load(NULL)", "predict_load_0_4": "pgdl.predict_load_0_4(NULL)",
              "dependencies": "pgdl.dependencies(NULL)", "dependencies_0_4": "pgdl.dependencies_0_4(NULL)",
              "tree": "pgdl.tree(NULL)", "diagnose": "pgdl.diagnose(NULL)", "diagnose_0_4": "pgdl.diagnose_0_4(NULL)",
              "explain": "pgdl.explain(NULL)", "upgrade_check": "pgdl.upgrade_check(NULL)"}
DOMAIN_OF = {"diagnose": "target", "diagnose_0_4": "target", "explain": "target", "upgrade_check": "bindir"}


@pytest.mark.parametrize("user", [None, "pgdl_reader"])
@pytest.mark.parametrize("function", sorted(NULL_CALLS))
def test_null_is_a_clear_error_in_the_functions_own_frame(cluster, roles, function, user):
    call = NULL_CALLS[function]
    error = cluster.error_of(f"SELECT * FROM {call}", user=user)
    domain = DOMAIN_OF.get(function, "library")
    assert (error.sqlstate, error.message) == ("23502", f"domain pgdl.{domain} does not allow null values")
    assert cluster.context_of(f"SELECT * FROM {call}", user=user) == f'SQL function "{function}" statement 1'


@pytest.fixture(scope="module")
def roles(cluster):
    cluster.query("CREATE ROLE pgdl_nobody LOGIN")
    cluster.query("CREATE ROLE pgdl_reader LOGIN IN ROLE pg_read_server_files")
    yield
    cluster.query("DROP ROLE pgdl_nobody")
    cluster.query("DROP ROLE pgdl_reader")


@pytest.mark.parametrize("call", ["pgdl.resolve('dblink')", "pgdl.check_magic('dblink')"])
def test_ordinary_role_is_refused(cluster, roles, call):
    error = cluster.error_of(f"SELECT * FROM {call}", user="pgdl_nobody")
    assert error.sqlstate == "42501"
    assert error.message.startswith("permission denied for function")


@pytest.mark.parametrize("call", ["pgdl.resolve('dblink')", "pgdl.check_magic('dblink')"])
def test_pg_read_server_files_member_is_allowed(cluster, roles, call):
    assert cluster.query(f"SELECT count(*) FROM {call}", user="pgdl_reader")[0][0] > 0


def test_each_result_shape_is_declared_once(cluster):
    """Every SQL function's columns are its Python view's record fields, through one SQL type."""
    from pgdl.views.audit import AuditRow
    from pgdl.views.check_magic import MagicCheck
    from pgdl.glibc.linkmap import Dependency as DependencyRow
    from pgdl.views.diagnose_library import Finding
    from pgdl.views.predict_load import LoadPrediction
    from pgdl.postgres.lookup import Candidate as Step
    from pgdl.views.report import ReportLine
    shapes = {"resolution_step": Step, "load_prediction": LoadPrediction, "dependency": DependencyRow,
              "magic_check": MagicCheck, "finding": Finding, "audit_row": AuditRow, "report_line": ReportLine}
    functions = {"resolve": "resolution_step", "predict_load": "load_prediction", "dependencies": "dependency",
                 "check_magic": "magic_check", "diagnose": "finding", "audit": "audit_row"}
    for type_name, record in shapes.items():
        attributes = [r[0] for r in cluster.query(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum",
            (f"pgdl.{type_name}",))]
        assert tuple(attributes) == record._fields, type_name
    for function, type_name in functions.items():
        columns = cluster.query("""
            SELECT coalesce(array_agg(a.name ORDER BY a.n), '{}')
              FROM pg_proc p, unnest(p.proargnames, p.proargmodes) WITH ORDINALITY AS a(name, mode, n)
             WHERE p.oid = %s::regproc AND a.mode = 't'""", (f"pgdl.{function}",))[0][0]
        type_columns = cluster.query("""
            SELECT pg_catalog.format_type(p.prorettype, NULL) FROM pg_proc p WHERE p.oid = %s::regproc""",
                                     (f"pgdl.{function}",))[0][0]
        assert tuple(columns) == shapes[type_name]._fields or type_columns == f"pgdl.{type_name}", function



@pytest.mark.parametrize("function", ["diagnose", "explain", "diagnose_0_4"])
@pytest.mark.parametrize("target", ["", "  ", "\t\n\r\f\v "])
def test_diagnose_wants_a_target(cluster, function, target):
    sql = f"SELECT * FROM pgdl.{function}(%s)"
    error = cluster.error_of(sql, (target,))
    assert (error.sqlstate, error.message) == (
        "23514", 'value for domain pgdl.target violates check constraint '
                 '"target must name an extension, a library or a C function"')
    assert cluster.context_of(sql, (target,)) == f'SQL function "{function}" statement 1'


def test_only_ascii_white_space_is_blank(cluster):
    """A no-break space (or a v) is a name to look for, for the domain and the package alike."""
    for target in ("\u00a0", "v"):
        rows = cluster.query("SELECT topic, status FROM pgdl.diagnose(%s) LIMIT 1", (target,))
        assert rows == [("verdict", "error")], target
