"""dlopen() stages beyond the search (issue #14), glibc 2.36: each case built
at test time, asked of pgdl for a new session, and compared with the real
LOAD in a fresh backend (verdict, SQLSTATE, message, detail, hint)."""

from __future__ import annotations

import subprocess

import pytest

from modules import GOOD_MODULE

MATH_MODULE = GOOD_MODULE + r"""
#include <math.h>
double pgdl_cos(double x);
double pgdl_cos(double x) { return cos(x); }
"""


def tls_module(size: int, model: str = "initial-exec") -> str:
    return GOOD_MODULE + f"""
__thread char pgdl_tls[{size}] __attribute__((tls_model("{model}")));
char *pgdl_tls_at(int i);
char *pgdl_tls_at(int i) {{ return &pgdl_tls[i]; }}
"""


def predicted(cluster, path) -> tuple:
    return cluster.query("SELECT * FROM pgdl.predict_load(%s, context => 'new session')", (str(path),))[0]


def real(cluster, path) -> tuple:
    error = cluster.error_of("LOAD %s", (str(path),))
    return (True, None, None, None, None) if error is None else \
        (False, error.sqlstate, error.message, error.detail, error.hint)


def assert_matches(cluster, path, loads: bool):
    actual = real(cluster, path)
    assert actual[0] is loads, actual
    assert predicted(cluster, path) == actual


def test_missing_filter_is_fatal(cluster, build):
    built = build("filter", MATH_MODULE, "-lm", "-Wl,-F,libpgdl_no_such_filtee.so.1")
    assert_matches(cluster, built, loads=False)


def test_missing_auxiliary_filter_is_skipped(cluster, build):
    built = build("auxiliary", MATH_MODULE, "-lm", "-Wl,-f,libpgdl_no_such_filtee.so.1")
    assert_matches(cluster, built, loads=True)
    rows = cluster.query("SELECT needed, status FROM pgdl.dependencies(%s)", (str(built),))
    assert ("libpgdl_no_such_filtee.so.1", "warning") in rows


def test_debug_only_file_has_no_dynamic_section(cluster, build, tmp_path):
    built = build("debugonly_src", MATH_MODULE, "-lm")
    debug = tmp_path / "debugonly.so"
    subprocess.run(["objcopy", "--only-keep-debug", str(built), str(debug)], check=True)
    assert_matches(cluster, debug, loads=False)
    assert "object file has no dynamic section" in predicted(cluster, debug)[2]
