"""No way in: what a member of pg_read_server_files can and cannot do through pgdl.

Each test is run as real login roles against the real server.  The attacks
are the ones a member can mount from its own session: temporary objects
(pg_temp is searched first for types and relations unless listed), bad input
to the internal helpers, and the audit history.
"""

from __future__ import annotations

import re

import psycopg2
import pytest

MEMBER = "pgdl_member"
DELEGATE = "pgdl_pruner"

# Every entry point a member can call, and the helpers behind them.
CALLS = [
    "SELECT * FROM pgdl._server_config()",
    "SELECT * FROM pgdl._reset_config()",
    "SELECT * FROM pgdl.resolve('dblink')",
    "SELECT * FROM pgdl.check_magic('$libdir/dblink')",
    "SELECT * FROM pgdl.predict_load('dblink', 'dblink_connect')",
    "SELECT * FROM pgdl.dependencies('dblink')",
    "SELECT * FROM pgdl.diagnose('dblink')",
    "SELECT * FROM pgdl.diagnose('public.dblink_connect(pg_catalog.text)')",
    "SELECT * FROM pgdl.explain('dblink')",
    "SELECT * FROM pgdl.tree('dblink')",
    "SELECT count(*) FROM pgdl.audit()",
    "SELECT pgdl.record_audit()",
]

# evil() records who ran it and tries to make the session's role a superuser:
# it succeeds only if it runs with the extension owner's rights.
EVIL = """
CREATE FUNCTION pg_temp.evil(t pg_catalog.text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
  RAISE NOTICE 'evil ran as %', current_user;
  BEGIN
    EXECUTE 'ALTER ROLE ' || pg_catalog.quote_ident(session_user) || ' SUPERUSER';
  EXCEPTION WHEN insufficient_privilege THEN NULL;
  END;
  RETURN true;
END $f$"""

# Temporary types that shadow those the bodies use (domains whose CHECK calls
# evil(), reached through casts and declarations) ...
SHADOW_TYPES = ["text", "int4", "int8", "bool", "jsonb", "interval", "name", "timestamptz", "text[]"]
# ... and temporary views that shadow relations a body might read unqualified.
SHADOW_RELATIONS = ["pg_config", "pg_settings", "pg_proc", "pg_language", "pg_extension", "pg_depend",
                    "audit_run", "audit_finding", "pg_roles", "pg_control_init"]


@pytest.fixture(scope="module")
def roles(cluster):
    cluster.query("CREATE EXTENSION IF NOT EXISTS dblink")
    cluster.query(f"DROP ROLE IF EXISTS {MEMBER}")
    cluster.query(f"DROP ROLE IF EXISTS {DELEGATE}")
    cluster.query(f"CREATE ROLE {MEMBER} LOGIN IN ROLE pg_read_server_files")
    cluster.query(f"CREATE ROLE {DELEGATE} LOGIN")
    yield
    cluster.query(f"DROP OWNED BY {MEMBER}, {DELEGATE}")
    cluster.query(f"DROP ROLE {MEMBER}")
    cluster.query(f"DROP ROLE {DELEGATE}")


def is_superuser(cluster, role):
    return cluster.query("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,))[0][0]


def shadow_everything(cur):
    cur.execute(EVIL)
    for t in SHADOW_TYPES:
        if t.endswith("[]"):
            continue                   # an array type comes with its element type
        cur.execute(f"CREATE DOMAIN pg_temp.{t} AS pg_catalog.{t} CHECK (pg_temp.evil('x'))")
    for r in SHADOW_RELATIONS:
        cur.execute(f"CREATE TEMPORARY VIEW {r} AS SELECT 'x'::pg_catalog.text AS name, "
                    "'x'::pg_catalog.text AS setting WHERE pg_temp.evil('x')")


def test_the_reported_escalation_through_a_temporary_domain(cluster, roles):
    """The reproduction of the report, word for word: the role stays a non-superuser."""
    conn = cluster.connect(user=MEMBER)
    try:
        with conn.cursor() as cur:
            cur.execute("""
                CREATE FUNCTION pg_temp.evil(t pg_catalog.text) RETURNS boolean LANGUAGE plpgsql AS $f$
                BEGIN EXECUTE 'ALTER ROLE ' || session_user || ' SUPERUSER'; RETURN true; END $f$""")
            cur.execute("CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.evil(VALUE))")
            cur.execute("SELECT * FROM pgdl._server_config()")
            assert {row[0] for row in cur.fetchall()} >= {"PKGLIBDIR", "SHAREDIR", "dynamic_library_path"}
    finally:
        conn.close()
    assert is_superuser(cluster, MEMBER) is False


@pytest.mark.parametrize("call", CALLS)
def test_no_temporary_object_runs_with_the_owners_rights(cluster, roles, call):
    """Shadowing types (domains with a CHECK, reached through casts) and
    relations (views) in pg_temp, then every entry point, in a new session
    (the first call imports the package): nothing runs as the owner, and the
    call still answers."""
    conn = cluster.connect(user=MEMBER)
    try:
        with conn.cursor() as cur:
            shadow_everything(cur)
            del conn.notices[:]
            cur.execute(call)
            assert cur.fetchall()
        ran_as = [n for n in conn.notices if "evil ran as" in n]
    finally:
        conn.close()
    assert not [n for n in ran_as if MEMBER not in n], ran_as
    assert is_superuser(cluster, MEMBER) is False


@pytest.mark.parametrize("function, arguments", [
    ("nope", "[]"), (None, "[]"), ("diagnose", None), ("diagnose", "{}"), ("diagnose", "[]"),
    ("diagnose", "[1]"), ("diagnose", '["a", "b", "c"]'), ("predict_load", '[["x"]]'), ("audit", '["x"]'),
    ("resolve", '"dblink"'), ("resolve", '["zz"]'), ("predict_load", '["2f", "nothex"]'),
])
def test_internal_helper_answers_bad_input_with_a_clean_error(cluster, roles, function, arguments):
    error = cluster.error_of("SELECT pgdl._rows(pgdl._run(%s, %s::jsonb))", (function, arguments), user=MEMBER)
    assert error is not None and error.sqlstate in ("22004", "22023", "42883")
    text = " ".join(filter(None, (error.message, error.detail, error.hint)))
    assert not re.search(r"Traceback|\b\w*(Error|Exception)\b|\bNoneType\b", text), text


def test_helpers_and_functions_are_not_for_public(cluster, roles):
    granted = cluster.query("""
        SELECT p.oid::regprocedure::text, a.grantee::regrole::text
          FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
         WHERE p.pronamespace = 'pgdl'::regnamespace AND a.privilege_type = 'EXECUTE'
           AND a.grantee <> p.proowner""")
    assert granted and all(grantee not in ("-", "0", "PUBLIC") for _f, grantee in granted)
    assert {f for f, g in granted if g == "pg_read_server_files"} >= {"pgdl.diagnose(text,text,name)", "pgdl.audit(text,name)",
                                                                      "pgdl.record_audit()", "pgdl.explain(text,text,name)",
                                                                      "pgdl.tree(text,text,name)"}
    assert not [f for f, g in granted if f.startswith("pgdl.prune_audits")]
    definers = cluster.query("""
        SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc p
         WHERE p.pronamespace = 'pgdl'::regnamespace AND p.prosecdef""")
    assert {f for f, _c in definers} == {"pgdl._server_config()", "pgdl._reset_config()", "pgdl.record_audit()",
                                         "pgdl.prune_audits(interval)"}
    assert all(c == ["search_path=pg_catalog, pg_temp"] for _f, c in definers)


def test_members_record_history_but_cannot_delete_it(cluster, roles):
    own = cluster.query("SELECT pgdl.record_audit()")[0][0]
    theirs = cluster.query("SELECT pgdl.record_audit()", user=MEMBER)[0][0]
    assert cluster.query("SELECT run_by FROM pgdl.audit_run WHERE run_id = %s", (theirs,)) == [(MEMBER,)]
    for sql in ("SELECT pgdl.prune_audits('0')", "DELETE FROM pgdl.audit_run",
                "DELETE FROM pgdl.audit_finding", "UPDATE pgdl.audit_run SET errors = 0",
                "TRUNCATE pgdl.audit_run CASCADE"):
        error = cluster.error_of(sql, user=MEMBER)
        assert error is not None and error.sqlstate == "42501", sql
    assert cluster.query("SELECT count(*) FROM pgdl.audit_run WHERE run_id IN (%s, %s)", (own, theirs)) == [(2,)]


def test_a_recorded_run_describes_the_server_not_the_callers_session(cluster, roles):
    """A member's SET local_preload_libraries counts for its own audit(), not for the history."""
    conn = cluster.connect(user=MEMBER)
    try:
        with conn.cursor() as cur:
            cur.execute("SET local_preload_libraries = 'pgdl_no_such_plugin'")
            cur.execute("SELECT count(*) FROM pgdl.audit('this session') WHERE subject = 'pgdl_no_such_plugin'")
            assert cur.fetchall() == [(1,)]
            cur.execute("SELECT pgdl.record_audit()")
            run = cur.fetchone()[0]
            cur.execute("SHOW local_preload_libraries")
            assert cur.fetchall() == [("pgdl_no_such_plugin",)]          # the session keeps its SET
    finally:
        conn.close()
    recorded = cluster.query("SELECT count(*), count(*) FILTER (WHERE subject = 'pgdl_no_such_plugin') "
                             "FROM pgdl.audit_finding WHERE run_id = %s", (run,))
    assert recorded[0][0] > 10 and recorded[0][1] == 0


def test_the_owner_prunes_and_may_delegate_pruning(cluster, roles):
    first = cluster.query("SELECT pgdl.record_audit()")[0][0]
    cluster.query("SELECT pgdl.record_audit()")
    error = cluster.error_of("SELECT pgdl.prune_audits('0')", user=DELEGATE)
    assert error is not None and error.sqlstate == "42501"
    cluster.query(f"GRANT USAGE ON SCHEMA pgdl TO {DELEGATE}")
    cluster.query(f"GRANT EXECUTE ON FUNCTION pgdl.prune_audits(interval) TO {DELEGATE}")
    try:
        assert cluster.query("SELECT pgdl.prune_audits('0')", user=DELEGATE)[0][0] >= 1
    finally:
        cluster.query(f"REVOKE EXECUTE ON FUNCTION pgdl.prune_audits(interval) FROM {DELEGATE}")
    assert cluster.query("SELECT count(*) FROM pgdl.audit_run WHERE run_id <= %s", (first,)) == [(0,)]
    assert cluster.query("SELECT count(*) FROM pgdl.audit_run") == [(1,)]     # the latest stays
    assert cluster.query("SELECT pgdl.prune_audits('0')") == [(0,)]


def test_a_plain_role_can_call_nothing(cluster, roles):
    for call in CALLS:
        error = cluster.error_of(call, user=DELEGATE)
        assert error is not None and error.sqlstate == "42501", call


def test_member_cannot_run_python_of_its_own(cluster, roles):
    """plpython3u is untrusted: a member cannot put code in GD for pgdl to run."""
    with pytest.raises(psycopg2.Error) as exc:
        cluster.query("CREATE FUNCTION pg_temp.p() RETURNS int LANGUAGE plpython3u AS 'return 1'", user=MEMBER)
    assert exc.value.pgcode == "42501"
