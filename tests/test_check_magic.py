"""check_magic() against the real server: build a module broken one way, ask
pgdl, then LOAD it in a fresh session and compare the server's own error."""

from __future__ import annotations

import subprocess

import pytest

from conftest import ServerError
from modules import GOOD_MODULE, HAND_MAGIC, LONGER_MAGIC, NO_MAGIC_MODULE, OLD_LAYOUT_MAGIC


def verdict(cluster, name):
    rows = cluster.query("SELECT DISTINCT verdict, sqlstate, message, detail, hint "
                         "FROM pgdl.check_magic(%s)", (name,))
    assert len(rows) == 1
    outcome, *error = rows[0]
    return outcome, ServerError(*error)


def fields(cluster, name):
    return {r[0]: r[1:] for r in cluster.query(
        "SELECT field, library_value, server_value, matches FROM pgdl.check_magic(%s)", (name,))}


def assert_prediction_matches_load(cluster, path):
    outcome, predicted = verdict(cluster, str(path))
    actual = cluster.error_of("LOAD %s", (str(path),))
    assert actual is not None, "the server loaded a module pgdl rejected"
    assert outcome == "rejected"
    assert predicted == actual
    return predicted


MISMATCHES = {
    "version": (["-DM_VERSION=1400"], "version mismatch", "Server is version 15, library is version 14."),
    "old_style_version": (["-DM_VERSION=906"], "version mismatch", "Server is version 15, library is version 9.6."),
    "func_max_args": (["-DM_FUNC_MAX_ARGS=200"], "magic block mismatch",
                      "Server has FUNC_MAX_ARGS = 100, library has 200."),
    "index_max_keys": (["-DM_INDEX_MAX_KEYS=64"], "magic block mismatch",
                       "Server has INDEX_MAX_KEYS = 32, library has 64."),
    "namedatalen": (["-DM_NAMEDATALEN=128"], "magic block mismatch", "Server has NAMEDATALEN = 64, library has 128."),
    "float8byval": (["-DM_FLOAT8BYVAL=0"], "magic block mismatch",
                    "Server has FLOAT8PASSBYVAL = true, library has false."),
    "several": (["-DM_FUNC_MAX_ARGS=200", "-DM_NAMEDATALEN=128"], "magic block mismatch",
                "Server has FUNC_MAX_ARGS = 100, library has 200.\nServer has NAMEDATALEN = 64, library has 128."),
    "abi": (['-DM_ABI="Postgres Pro"'], "ABI mismatch", 'Server has ABI "PostgreSQL", library has "Postgres Pro".'),
}


@pytest.fixture(scope="module")
def server_major(cluster):
    return int(cluster.query("SHOW server_version_num")[0][0]) // 10000


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_mismatch_predicted_exactly(cluster, build, server_major, case):
    flags, message, detail = MISMATCHES[case]
    if case == "abi" and server_major < 15:
        pytest.skip("the magic block has an ABI field from PostgreSQL 15 on")
    path = build(f"magic_{case}", HAND_MAGIC, *flags)
    predicted = assert_prediction_matches_load(cluster, path)
    if server_major == 15:
        # Independent of pgdl: the wording we expect from dfmgr.c on PG 15.
        assert predicted.message == f'incompatible library "{path}": {message}'
        assert predicted.detail == detail


def test_mismatch_fields_reported(cluster, build):
    path = build("magic_fields", HAND_MAGIC, "-DM_INDEX_MAX_KEYS=64")
    f = fields(cluster, str(path))
    assert f["INDEX_MAX_KEYS"] == ("64", "32", False)
    assert f["FUNC_MAX_ARGS"] == ("100", "100", True)
    assert f["major version"][2] is True


def test_missing_magic_block(cluster, build):
    path = build("nomagic", NO_MAGIC_MODULE)
    predicted = assert_prediction_matches_load(cluster, path)
    assert predicted.message == f'incompatible library "{path}": missing magic block'
    assert predicted.hint == "Extension libraries are required to use the PG_MODULE_MAGIC macro."
    assert fields(cluster, str(path))["magic block"] == ("missing", "present", False)


def test_old_layout(cluster, build):
    path = build("magic_pg12", OLD_LAYOUT_MAGIC)
    predicted = assert_prediction_matches_load(cluster, path)
    assert predicted.detail.endswith("library is version 12.")
    f = fields(cluster, str(path))
    assert f["struct length"][0] == "28"
    assert f["FLOAT4PASSBYVAL"][0] == "true"


def test_longer_struct_same_fields(cluster, build):
    path = build("magic_longer", LONGER_MAGIC)
    predicted = assert_prediction_matches_load(cluster, path)
    assert predicted.detail == "Magic block has unexpected length or padding difference."


@pytest.mark.parametrize("flags", [["-O0"], ["-O2"], ["-O2", "-s"], ["-O0", "-fcf-protection=full"]])
def test_good_module_accepted_and_loads(cluster, build, flags):
    path = build("good", GOOD_MODULE, *flags)
    outcome, predicted = verdict(cluster, str(path))
    assert (outcome, predicted) == ("accepted", ServerError(None, None, None, None))
    assert cluster.error_of("LOAD %s", (str(path),)) is None


def test_stripped_library_is_read(cluster, build):
    path = build("stripped", HAND_MAGIC, "-DM_NAMEDATALEN=32", "-s")
    symtab = subprocess.run(["readelf", "-S", str(path)], capture_output=True, text=True).stdout
    assert ".symtab" not in symtab
    assert_prediction_matches_load(cluster, path)


def test_every_stock_module_accepted(cluster):
    rows = cluster.query("""
        SELECT m.name, (SELECT DISTINCT verdict FROM pgdl.check_magic('$libdir/' || m.name))
          FROM (SELECT regexp_replace(f, '\\.so$', '') AS name
                  FROM pg_ls_dir((SELECT setting FROM pgdl._server_config() WHERE name = 'PKGLIBDIR')) AS f
                 WHERE f LIKE '%%.so') m""")
    assert len(rows) > 20
    judged = {name: outcome for name, outcome in rows}
    # Every module PostgreSQL ships carries a matching magic block.
    assert set(judged.values()) == {"accepted"}, judged


def test_not_elf_file(cluster, tmp_path):
    path = tmp_path / "text.so"
    path.write_text("this is not a shared object\n" * 10)
    outcome, predicted = verdict(cluster, str(path))
    actual = cluster.error_of("LOAD %s", (str(path),))
    assert actual.message == f'could not load library "{path}": {path}: invalid ELF header'
    assert outcome == "rejected" and predicted == actual


def test_load_of_missing_file(cluster, tmp_path):
    path = tmp_path / "nothing_here"
    outcome, predicted = verdict(cluster, str(path))
    assert predicted == cluster.error_of("LOAD %s", (str(path),))
    assert predicted.message == f'could not access file "{path}": No such file or directory'
