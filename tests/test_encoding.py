"""No answer lost to text that is not valid UTF-8.

Names in files are bytes.  pgdl shows them as the server shows them: decoded
in the database's encoding, each byte that does not decode as \\xNN, so that
every function returns its rows in UTF8, SQL_ASCII and LATIN1 databases.
In LATIN1 every byte decodes, and the message equals the real server's.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from modules import GOOD_MODULE

ENCODINGS = ("UTF8", "SQL_ASCII", "LATIN1")
BAD = b"\xff\xfe"


def patched(path, old: bytes, new: bytes):
    data = path.read_bytes()
    assert data.count(old) == 1 and len(old) == len(new)
    path.write_bytes(data.replace(old, new))


@pytest.fixture(scope="module")
def databases(cluster):
    names = {e: f"pgdl_enc_{e.lower()}" for e in ENCODINGS}
    for encoding, db in names.items():
        cluster.query(f"CREATE DATABASE {db} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        conn = cluster.connect(database=db)
        conn.cursor().execute("CREATE EXTENSION pgdl CASCADE")
        conn.close()
    yield names
    for db in names.values():
        cluster.query(f"DROP DATABASE {db}")


@pytest.fixture(scope="module")
def modules(tmp_path_factory, server_include):
    """A module that needs a library whose name has invalid bytes, and one that
    needs a symbol whose name has them; copies whose own file names have them."""
    d = tmp_path_factory.mktemp("enc")
    os.chmod(d, 0o755)

    def gcc(out, source, *flags):
        (d / "src.c").write_text(source)
        subprocess.run(["gcc", "-shared", "-fPIC", "-s", "-I", server_include, "-o", str(d / out), str(d / "src.c"),
                        *flags], check=True)

    gcc("libpgdlenc_aa.so", "int pgdl_enc_dep(void) { return 1; }")
    gcc("needs_lib.so", GOOD_MODULE + "int pgdl_enc_dep(void);\nint use(void) { return pgdl_enc_dep(); }\n",
        f"-L{d}", "-lpgdlenc_aa")
    patched(d / "needs_lib.so", b"libpgdlenc_aa.so", b"libpgdlenc_" + BAD + b".so")
    os.unlink(d / "libpgdlenc_aa.so")
    gcc("needs_sym.so", GOOD_MODULE + "extern int pgdl_enc_aa_sym;\nint use(void) { return pgdl_enc_aa_sym; }\n")
    patched(d / "needs_sym.so", b"pgdl_enc_aa_sym", b"pgdl_enc_" + BAD + b"_sym")
    for name in ("needs_lib", "needs_sym"):
        os.link(d / f"{name}.so", os.path.join(os.fsencode(d), name.encode() + b"_\xe9.so"))
    return d


def rows_in(cluster, db, sql, params=(), setup=()):
    conn = cluster.connect(database=db)
    try:
        with conn.cursor() as cur:
            for s in setup:
                cur.execute(s)
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def shown(encoding: str, raw: bytes) -> str:
    """What pgdl returns for these bytes in a database of this encoding."""
    return raw.decode("latin-1") if encoding == "LATIN1" else raw.decode("utf-8", "backslashreplace")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_function_answers_with_escaped_bytes(cluster, databases, modules, encoding):
    db = databases[encoding]
    lib, sym = str(modules / "needs_lib.so"), str(modules / "needs_sym.so")
    bad_lib = shown(encoding, b"libpgdlenc_" + BAD + b".so")
    bad_sym = shown(encoding, b"pgdl_enc_" + BAD + b"_sym")

    [(will_load, _state, message, _d, _h)] = rows_in(cluster, db, "SELECT * FROM pgdl.predict_load(%s)", (lib,))
    assert not will_load and f"{bad_lib}: cannot open shared object file" in message
    deps = rows_in(cluster, db, "SELECT needed, found_via, status FROM pgdl.dependencies(%s)", (lib,))
    assert (bad_lib, "not found", "error") in deps
    assert any(d[0] == bad_lib for d in rows_in(cluster, db, "SELECT subject FROM pgdl.diagnose(%s)", (lib,)))
    assert rows_in(cluster, db, "SELECT count(*) FROM pgdl.check_magic(%s)", (lib,))[0][0] > 1

    [(will_load, _state, message, _d, _h)] = rows_in(cluster, db, "SELECT * FROM pgdl.predict_load(%s)", (sym,))
    assert not will_load and message.endswith(f"undefined symbol: {bad_sym}")
    assert (bad_sym, "error") in rows_in(cluster, db, "SELECT subject, status FROM pgdl.diagnose(%s)", (sym,))


@pytest.mark.parametrize("name", ["needs_lib", "needs_sym"])
def test_latin1_database_says_what_the_server_says(cluster, databases, modules, name):
    """In LATIN1 every byte is a character: LOAD of a file whose name has 0xE9
    ('é' in LATIN1) fails with text pgdl predicts exactly."""
    db = databases["LATIN1"]
    path = f"{modules}/{name}_\u00e9.so"
    [predicted] = rows_in(cluster, db, "SELECT * FROM pgdl.predict_load(%s)", (path,))
    conn = cluster.connect(database=db)
    try:
        with pytest.raises(Exception) as exc:
            conn.cursor().execute("LOAD %s", (path,))
        diag = exc.value.diag
        real = (False, diag.sqlstate, diag.message_primary, diag.message_detail, diag.message_hint)
    finally:
        conn.close()
    assert predicted == real
    assert "\u00ff\u00fe" in predicted[2]


def test_latin1_names_in_settings_and_audit(cluster, databases):
    db = databases["LATIN1"]
    rows = rows_in(cluster, db, "SELECT subject, status, message FROM pgdl.audit('this session') "
                                "WHERE kind = 'local_preload_libraries'",
                   setup=("SET local_preload_libraries = 'caf\u00e9_\u00ff'",))
    assert [r[:2] for r in rows] == [("caf\u00e9_\u00ff", "error")]
    assert "$libdir/plugins/caf\u00e9_\u00ff" in rows[0][2]


def test_sql_ascii_names_need_not_be_utf8(cluster, databases, modules):
    """In a SQL_ASCII database a name may hold any bytes, and LOAD uses them as
    they are: pgdl predicts the same (the message shown with \\xNN escapes)."""
    from conftest import pg_config
    db = databases["SQL_ASCII"]
    raw_path = os.fsencode(modules) + b"/needs_lib_\xe9.so"
    conn = cluster.connect(database=db)
    try:
        conn.set_client_encoding("SQL_ASCII")
        with conn.cursor() as cur:
            cur.execute(b"SELECT * FROM pgdl.predict_load('" + raw_path + b"')")
            [(will_load, sqlstate, message, detail, hint)] = cur.fetchall()
    finally:
        conn.close()
    params = cluster.dsn
    env = dict(os.environ, PGHOST=params["host"], PGPORT=str(params["port"]), PGUSER=params["user"],
               PGCLIENTENCODING="SQL_ASCII")
    real = subprocess.run([os.path.join(pg_config("--bindir"), "psql"), "-X", "-d", db, "-v", "VERBOSITY=verbose",
                           "-c", b"LOAD '" + raw_path + b"'"], env=env, capture_output=True).stderr
    line = [x for x in real.splitlines() if x.startswith(b"ERROR:")][0]
    real_state, real_message = line[len(b"ERROR:"):].strip().split(b": ", 1)
    assert (will_load, sqlstate, detail, hint) == (False, real_state.decode(), None, None)
    assert message == real_message.decode("utf-8", "backslashreplace")
    assert "needs_lib_\\xe9.so" in message
