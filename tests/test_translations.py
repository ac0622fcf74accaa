"""The server's error text in its own language: with lc_messages set, pgdl
predicts what the real LOAD prints -- PostgreSQL's words from its catalog,
dlerror()'s and strerror()'s from glibc's -- character for character, in two
Debian locales; in a language PostgreSQL has no catalog for, its words stay
English and glibc's are translated still; in a database whose LC_CTYPE is C,
glibc's text is printed in ASCII."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import ServerError, pg_config
from modules import HAND_MAGIC

MAJOR = int(pg_config("--version").split()[1].split(".")[0])
LOCALEDIR = pg_config("--localedir")
LOCALES = {line.strip().lower().replace("utf-8", "utf8")
           for line in subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout.splitlines()}


def have(locale: str, catalog: str | None) -> bool:
    return locale.lower().replace("utf-8", "utf8") in LOCALES and (
        catalog is None or os.path.exists(f"{LOCALEDIR}/{catalog}/LC_MESSAGES/postgres-{MAJOR}.mo"))


TRANSLATED = [pytest.param(lang, marks=pytest.mark.skipif(not have(lang, lang[:2]), reason=f"no {lang} locale "
                                                         "or PostgreSQL catalog for it"))
              for lang in ("de_DE.UTF-8", "fr_FR.UTF-8")]
UNTRANSLATED = "nl_NL.UTF-8"           # glibc has a Dutch catalog, PostgreSQL's Debian packages none
DEPENDENT = r"""
#include "postgres.h"
#include "fmgr.h"
PG_MODULE_MAGIC;
extern int pgdl_translated_dep(void);
PG_FUNCTION_INFO_V1(tr_fn);
Datum tr_fn(PG_FUNCTION_ARGS) { PG_RETURN_INT32(pgdl_translated_dep()); }
"""
NO_MAGIC = "int pgdl_no_magic(void) { return 1; }\n"


@pytest.fixture(scope="module")
def databases(cluster):
    """A UTF8 database whose LC_CTYPE is C.UTF-8, and one whose LC_CTYPE is C."""
    made = {"pgdl_lang_utf8": "C.UTF-8", "pgdl_lang_ascii": "C"}
    for name, ctype in made.items():
        cluster.query(f"DROP DATABASE IF EXISTS {name}")
        cluster.query(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_CTYPE '{ctype}' "
                      f"LC_COLLATE '{ctype}'")
        cluster.query("CREATE EXTENSION pgdl CASCADE", database=name)
    yield list(made)
    for name in made:
        cluster.query(f"DROP DATABASE {name}")


@pytest.fixture(scope="module")
def cases(tmp_path_factory, server_include):
    """Libraries that fail each way, built against the server's headers."""
    root = tmp_path_factory.mktemp("lang")
    os.chmod(root, 0o755)

    def gcc(out, source, *flags):
        (root / f"{out}.c").write_text(source)
        subprocess.run(["gcc", "-shared", "-fPIC", "-I", server_include, "-o", str(root / out),
                        str(root / f"{out}.c"), *flags], check=True, capture_output=True)
        return root / out

    dep = gcc("libpgdltr.so.1", "int pgdl_translated_dep(void) { return 1; }\n", "-Wl,-soname,libpgdltr.so.1")
    needs = gcc("needs_gone.so", DEPENDENT, str(dep))
    dep.unlink()
    old = (root / "old")
    old.mkdir()
    os.chmod(old, 0o755)
    (old / "s.c").write_text("int pgdl_other(void) { return 1; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libpgdltr.so.1", "-o", str(old / "libpgdltr.so.1"),
                    str(old / "s.c")], check=True, capture_output=True)
    undefined = gcc("undefined_sym.so", DEPENDENT, str(old / "libpgdltr.so.1"), f"-Wl,-rpath,{old}")
    return {
        "missing file": str(root / "no_such_module.so"),
        "missing dependency": str(needs),
        "undefined symbol": str(undefined),
        "version mismatch": str(gcc("old_major.so", HAND_MAGIC, "-DM_VERSION=1400")),
        "missing magic block": str(gcc("no_magic.so", NO_MAGIC)),
    }


def predicted(cluster, db, path, lang, context="this session") -> ServerError:
    row = cluster.query("SELECT sqlstate, message, detail, hint FROM pgdl.predict_load(%s, context => %s)",
                        (path, context), setup=(f"SET lc_messages = '{lang}'",), database=db)[0]
    return ServerError(*row)


def real(cluster, db, path, lang) -> ServerError:
    error = cluster.error_of("LOAD %s", (path,), setup=(f"SET lc_messages = '{lang}'",), database=db)
    assert error is not None
    return error


@pytest.mark.parametrize("lang", TRANSLATED)
@pytest.mark.parametrize("case", ["missing file", "missing dependency", "undefined symbol", "version mismatch",
                                  "missing magic block"])
def test_prediction_is_worded_as_the_server_words_it(cluster, databases, cases, lang, case):
    path = cases[case]
    actual = real(cluster, databases[0], path, lang)
    english = real(cluster, databases[0], path, "C")
    assert actual.message != english.message                      # the server did translate it
    assert predicted(cluster, databases[0], path, lang) == actual


@pytest.mark.parametrize("lang", TRANSLATED)
def test_ascii_ctype_prints_glibcs_part_in_ascii(cluster, databases, cases, lang):
    path = cases["missing dependency"]
    actual = real(cluster, databases[1], path, lang)
    assert predicted(cluster, databases[1], path, lang) == actual


@pytest.mark.parametrize("lang", TRANSLATED)
def test_a_new_session_takes_the_databases_lc_messages(cluster, databases, cases, lang):
    db, path = databases[0], cases["version mismatch"]
    cluster.query(f"ALTER DATABASE {db} SET lc_messages = '{lang}'")
    try:
        actual = cluster.error_of("LOAD %s", (path,), database=db)          # a fresh session, no SET
        row = cluster.query("SELECT sqlstate, message, detail, hint FROM pgdl.predict_load(%s, "
                            "context => 'new session')", (path,), setup=("SET lc_messages = 'C'",), database=db)[0]
        assert ServerError(*row) == actual
        assert actual.message != real(cluster, db, path, "C").message
    finally:
        cluster.query(f"ALTER DATABASE {db} RESET lc_messages")


@pytest.mark.parametrize("lang", TRANSLATED)
def test_diagnose_and_explain_give_the_servers_words(cluster, databases, cases, lang):
    db, path = databases[0], cases["missing dependency"]
    actual = real(cluster, db, path, lang)
    setup = (f"SET lc_messages = '{lang}'",)
    rows = cluster.query("SELECT topic, status, message FROM pgdl.diagnose(%s, context => 'this session')",
                         (path,), setup=setup, database=db)
    assert rows[0][0] == "verdict" and actual.message in rows[0][2]
    language = [r for r in rows if r[0] == "language"]
    assert language and language[0][1] == "ok" and f"postgres-{MAJOR}.mo" in language[0][2]
    lines = [r[0] for r in cluster.query("SELECT * FROM pgdl.explain(%s, context => 'this session')", (path,),
                                         setup=setup, database=db)]
    assert "".join(actual.message.split()) in "".join(" ".join(lines[:4]).split())


@pytest.mark.skipif(not have(UNTRANSLATED, None) or have(UNTRANSLATED, "nl"),
                    reason="needs the nl_NL.UTF-8 locale and no Dutch PostgreSQL catalog")
def test_a_language_postgresql_has_no_catalog_for(cluster, databases, cases):
    db, path = databases[0], cases["missing dependency"]
    actual = real(cluster, db, path, UNTRANSLATED)
    assert actual.message.startswith('could not load library "')    # PostgreSQL's words stay English ...
    assert predicted(cluster, db, path, UNTRANSLATED) == actual      # ... glibc's are Dutch, if it has them
    rows = cluster.query("SELECT status, message FROM pgdl.diagnose(%s, context => 'this session') "
                         "WHERE topic = 'language'", (path,), setup=(f"SET lc_messages = '{UNTRANSLATED}'",),
                         database=db)
    assert rows and f"no postgres-{MAJOR}.mo for it" in rows[0][1] and rows[0][0] == "warning"
