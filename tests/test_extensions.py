"""Extensions as CREATE EXTENSION finds them, against the real command:
extension_control_path (PostgreSQL 18+), a control file's relative
`directory`, Debian-style alias control files, and ALTER EXTENSION UPDATE's
path.  From 18 a test can give the server control files of its own (a SET
of extension_control_path); before 18 they would have to go into the
installation's share directory, which the tests do not touch."""

from __future__ import annotations

import os

import pytest

MODULE = r"""
#include "postgres.h"
#include "fmgr.h"
PG_MODULE_MAGIC;
PG_FUNCTION_INFO_V1(ecp_one);
Datum ecp_one(PG_FUNCTION_ARGS) { PG_RETURN_INT32(1); }
PG_FUNCTION_INFO_V1(ecp_two);
Datum ecp_two(PG_FUNCTION_ARGS) { PG_RETURN_INT32(2); }
"""
ONE = "CREATE FUNCTION ecp_one() RETURNS int AS 'MODULE_PATHNAME', 'ecp_one' LANGUAGE C;\n"
TWO = "CREATE FUNCTION ecp_two() RETURNS int AS 'MODULE_PATHNAME', 'ecp_two' LANGUAGE C;\n"


@pytest.fixture
def place(cluster, tmp_path, build):
    """A directory for extension_control_path (its extension/ holds the control files)."""
    if cluster.query("SELECT current_setting('server_version_num')::int")[0][0] < 180000:
        pytest.skip("extension_control_path is PostgreSQL 18's")
    (tmp_path / "extension").mkdir()
    for d in (tmp_path, tmp_path / "extension"):
        os.chmod(d, 0o755)
    module = build("ecp_mod", MODULE)
    return tmp_path, module


def control(where, name, module, **extra):
    lines = [f"default_version = '{extra.pop('version', '1.0')}'", f"module_pathname = '{module}'",
             "relocatable = true"] + [f"{k} = '{v}'" for k, v in extra.items()]
    (where / "extension" / f"{name}.control").write_text("\n".join(lines) + "\n")


def setting(where) -> tuple[str, ...]:
    return (f"SET extension_control_path = '{where}:$system'",)


# A SET of extension_control_path is this session's: pgdl is asked about this session.
HERE = "context => 'this session'"


def verdict(cluster, name, setup):
    rows = cluster.query(f"SELECT topic, status, message FROM pgdl.diagnose(%s, {HERE})", (name,), setup=setup)
    return rows[0]


def created(cluster, name, setup):
    """The real CREATE EXTENSION's error (None: it works), rolled back."""
    return cluster.error_of(f'BEGIN; CREATE EXTENSION "{name}"; ROLLBACK', setup=setup)


def test_found_through_extension_control_path(cluster, place):
    where, module = place
    control(where, "pgdl_ecp", module)
    (where / "extension" / "pgdl_ecp--1.0.sql").write_text(ONE)
    assert created(cluster, "pgdl_ecp", setting(where)) is None
    assert verdict(cluster, "pgdl_ecp", setting(where))[:2] == ("verdict", "ok")
    # Without the setting the server does not see it, nor does pgdl.
    real = created(cluster, "pgdl_ecp", ())
    assert real.message == 'extension "pgdl_ecp" is not available'
    rows = cluster.query("SELECT kind, subject FROM pgdl.audit() WHERE kind = 'extension'")
    assert ("extension", "pgdl_ecp") not in rows
    rows = cluster.query(f"SELECT kind, subject, status FROM pgdl.audit({HERE}) WHERE kind = 'extension'",
                         setup=setting(where))
    assert ("extension", "pgdl_ecp", "ok") in rows


def test_relative_directory_is_taken_from_the_control_files_base(cluster, place):
    where, module = place
    (where / "scripts").mkdir()
    os.chmod(where / "scripts", 0o755)
    control(where, "pgdl_ecp_dir", module, directory="scripts")
    (where / "scripts" / "pgdl_ecp_dir--1.0.sql").write_text(ONE)
    assert created(cluster, "pgdl_ecp_dir", setting(where)) is None
    assert verdict(cluster, "pgdl_ecp_dir", setting(where))[:2] == ("verdict", "ok")


def test_relative_entry_is_the_servers_error(cluster, place):
    where, module = place
    setup = ("SET extension_control_path = 'relative/dir:$system'",)
    real = created(cluster, "pgdl_ecp_nowhere", setup)
    assert real.message == 'component in parameter "extension_control_path" is not an absolute path'
    rows = cluster.query(f"SELECT topic, status, message FROM pgdl.diagnose('pgdl_ecp_nowhere', {HERE})",
                         setup=setup)
    assert rows[0][:2] == ("verdict", "error") and f"SQLSTATE {real.sqlstate}: ERROR:  {real.message}" in rows[0][2]


def test_alias_control_file(cluster, place):
    where, module = place
    control(where, "pgdl_ecp_alias", module)
    control(where, "pgdl_ecp_alias-3", module)
    (where / "extension" / "pgdl_ecp_alias--1.0.sql").write_text(ONE)
    real = created(cluster, "pgdl_ecp_alias-3", setting(where))
    assert real.message == 'extension "pgdl_ecp_alias-3" has no installation script nor update path for version "1.0"'
    rows = cluster.query(f"SELECT subject, status, message FROM pgdl.audit({HERE}) WHERE kind = 'extension'",
                         setup=setting(where))
    row = [r for r in rows if r[0] == "pgdl_ecp_alias-3"][0]
    assert row[1] == "ok" and row[2].endswith(f"fails: {real.message}")
    assert created(cluster, "pgdl_ecp_alias", setting(where)) is None


def test_update_path_of_a_stock_extension(cluster):
    """hstore created at an old version: pgdl names the update scripts, and the real
    ALTER EXTENSION UPDATE then works."""
    old = "1.4"
    cluster.query("DROP DATABASE IF EXISTS pgdl_update")
    cluster.query("CREATE DATABASE pgdl_update")
    try:
        conn = cluster.connect(database="pgdl_update")
        cur = conn.cursor()
        cur.execute("CREATE EXTENSION pgdl CASCADE")
        cur.execute(f"CREATE EXTENSION hstore VERSION '{old}'")
        cur.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'hstore'")
        default = cur.fetchone()[0]
        cur.execute("SELECT status, message FROM pgdl.audit() WHERE kind = 'update' AND subject = 'hstore'")
        status, message = cur.fetchone()
        assert status == "ok" and message.startswith(f"ALTER EXTENSION hstore UPDATE (from {old} to {default})")
        assert f"hstore--{old}--" in message
        cur.execute("SELECT topic, status FROM pgdl.diagnose('hstore')")
        rows = cur.fetchall()
        assert ("update", "ok") in rows and rows[0] == ("verdict", "ok")
        cur.execute("ALTER EXTENSION hstore UPDATE")
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'hstore'")
        assert cur.fetchone()[0] == default
        conn.close()
    finally:
        cluster.query("DROP DATABASE pgdl_update")


def test_update_script_declares_a_function_the_library_lacks(cluster, place):
    """pgvector's case: an update script creates a C function the installed .so does
    not have (a half-upgraded package); CREATE EXTENSION at the old version works."""
    where, module = place
    control(where, "pgdl_ecp_up", module, version="1.1")
    (where / "extension" / "pgdl_ecp_up--1.0.sql").write_text(ONE)
    (where / "extension" / "pgdl_ecp_up--1.0--1.1.sql").write_text(
        "CREATE FUNCTION ecp_three() RETURNS int AS 'MODULE_PATHNAME', 'ecp_three' LANGUAGE C;\n")
    setup = setting(where) + ("DROP EXTENSION IF EXISTS pgdl_ecp_up", "CREATE EXTENSION pgdl_ecp_up VERSION '1.0'")
    try:
        real = cluster.error_of("ALTER EXTENSION pgdl_ecp_up UPDATE", setup=setup)
        assert real.message == f'could not find function "ecp_three" in file "{module}"'
        rows = cluster.query(f"SELECT topic, status, message FROM pgdl.diagnose('pgdl_ecp_up', {HERE})", setup=setup)
        update = [r for r in rows if r[0] == "update"][0]
        assert update[1] == "error" and update[2].endswith(f"fails where ecp_three() is created: {real.message}")
        assert rows[0][:2] == ("verdict", "error") and real.message in rows[0][2]
        audit = cluster.query(f"SELECT status, message FROM pgdl.audit({HERE}) WHERE kind = 'update'", setup=setup)
        assert ("error", update[2]) in audit
    finally:
        cluster.query("DROP EXTENSION IF EXISTS pgdl_ecp_up")


# -- the rules themselves, without a server ------------------------------------------

def test_update_path_is_the_servers():
    from pgdl.postgres.extensions import _update_path
    assert _update_path(["1.0", "1.0--1.1", "1.1--1.2", "1.0--1.2"], "1.0", "1.2") == ["1.2"]    # shortest
    assert _update_path(["1.0--1.1", "1.1--1.2"], "1.0", "1.2") == ["1.1", "1.2"]
    assert _update_path(["a--b", "a--c", "b--d", "c--d"], "a", "d") == ["b", "d"]   # a tie: strcmp's first
    assert _update_path(["1.0--1.1"], "1.0", "1.2") is None
    assert _update_path(["1.0--1.1", "1.1--1.0"], "1.0", "2.0") is None           # a cycle ends


@pytest.mark.parametrize("text, types", [
    ("text", ("text",)),
    ("connname text, connstr text", ("text", "text")),
    ("IN x int4 DEFAULT 3", ("integer",)),
    ("double precision, OUT y int", ("double precision",)),
    ("varchar(10)[]", ("character varying[]",)),
    ("anyelement, VARIADIC args text[]", ("anyelement", "text[]")),
    ("ts timestamptz", ("timestamp with time zone",)),
    ("", ()),
])
def test_argument_types_as_regprocedure_writes_them(text, types):
    from pgdl.postgres.extensions import argument_types
    assert argument_types(text) == types


def test_secondary_control_file_names_the_library(cluster, place):
    """name--version.control beside the scripts overrides the primary file's
    module_pathname for that version (extension.c read_extension_aux_control_file)."""
    where, module = place
    missing = where / "pgdl_no_such_module.so"
    for name, primary, secondary in (("pgdl_ecp_aux_ok", missing, module), ("pgdl_ecp_aux_bad", module, missing)):
        control(where, name, primary)
        (where / "extension" / f"{name}--1.0.sql").write_text(ONE)
        (where / "extension" / f"{name}--1.0.control").write_text(f"module_pathname = '{secondary}'\n")
        real = created(cluster, name, setting(where))
        rows = cluster.query(f"SELECT topic, status, message FROM pgdl.diagnose(%s, {HERE})", (name,),
                             setup=setting(where))
        if secondary == module:
            assert real is None and rows[0][:2] == ("verdict", "ok"), rows
        else:
            assert real.message == f'could not access file "{missing}": No such file or directory'
            assert rows[0][:2] == ("verdict", "error") and real.message in rows[0][2], rows


def test_secondary_control_file_may_not_set_the_directory(cluster, place):
    where, module = place
    control(where, "pgdl_ecp_aux_dir", module)
    (where / "extension" / "pgdl_ecp_aux_dir--1.0.sql").write_text(ONE)
    (where / "extension" / "pgdl_ecp_aux_dir--1.0.control").write_text("directory = 'elsewhere'\n")
    real = created(cluster, "pgdl_ecp_aux_dir", setting(where))
    rows = cluster.query(f"SELECT topic, status, message FROM pgdl.diagnose('pgdl_ecp_aux_dir', {HERE})",
                         setup=setting(where))
    assert ("extension", "error", real.message) in rows, (real, rows)
