"""Hostile and odd input: every entry point answers at once, cleanly, and
never runs the code under diagnosis."""

from __future__ import annotations

import glob
import os
import socket
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import fuzz  # noqa: E402

ENTRY_POINTS = [
    "SELECT count(*) FROM pgdl.resolve(%s)",
    "SELECT count(*) FROM pgdl.check_magic(%s)",
    "SELECT count(*) FROM pgdl.predict_load(%s)",
    "SELECT count(*) FROM pgdl.dependencies(%s)",
    "SELECT count(*) FROM pgdl.diagnose(%s)",
    "SELECT count(*) FROM pgdl.explain(%s)",
    "SELECT count(*) FROM pgdl.tree(%s)",
]


def assert_clean(cluster, name, budget=10.0):
    for sql in ENTRY_POINTS:
        start = time.monotonic()
        error = cluster.error_of(sql, (name,))
        assert time.monotonic() - start < budget, f"{sql} took too long on {name!r}"
        if error is not None:
            # A clean SQL error: a SQLSTATE and a message, no traceback, no pgdl bug.
            assert error.sqlstate and error.message
            assert "Traceback" not in (error.message + (error.detail or ""))
            assert not error.message.startswith("pgdl.") or "failed" not in error.message, error.message


def test_fifo(cluster, tmp_path):
    fifo = tmp_path / "fifo.so"
    os.mkfifo(fifo)
    os.chmod(tmp_path, 0o755)
    assert_clean(cluster, str(fifo))


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom", "/dev/null", "/proc/self/mem", "/proc/self/maps",
                                  "/", "/etc"])
def test_devices_proc_and_directories(cluster, path):
    assert_clean(cluster, path)


def test_socket(cluster, tmp_path):
    os.chmod(tmp_path, 0o755)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.so"))
    try:
        assert_clean(cluster, str(tmp_path / "sock.so"))
    finally:
        sock.close()


def test_symlink_loop(cluster, tmp_path):
    os.chmod(tmp_path, 0o755)
    (tmp_path / "a.so").symlink_to(tmp_path / "b.so")
    (tmp_path / "b.so").symlink_to(tmp_path / "a.so")
    assert_clean(cluster, str(tmp_path / "a.so"))


def test_huge_sparse_file(cluster, tmp_path):
    os.chmod(tmp_path, 0o755)
    huge = tmp_path / "huge.so"
    with open(huge, "wb") as f:
        f.truncate(8 << 30)           # 8 GiB, sparse: must not be read whole
    assert_clean(cluster, str(huge))


@pytest.mark.parametrize("name", ["", "x" * 100_000, "a\nb", "../../../../etc/passwd", "$libdir/../../../etc/passwd"])
def test_odd_names(cluster, name):
    assert_clean(cluster, name)


def test_null_arguments(cluster):
    for sql in ENTRY_POINTS:
        error = cluster.error_of(sql, (None,))
        assert error.sqlstate == "23502" and error.message.endswith("does not allow null values"), sql


def test_code_under_diagnosis_never_runs(cluster, build, tmp_path):
    marker = tmp_path / "constructor_ran"
    os.chmod(tmp_path, 0o777)
    source = f"""
#include "postgres.h"
#include "fmgr.h"
#include <stdio.h>
PG_MODULE_MAGIC;
__attribute__((constructor)) static void boom(void) {{ FILE *f = fopen("{marker}", "w"); if (f) fclose(f); }}
void _PG_init(void) {{ FILE *f = fopen("{marker}", "w"); if (f) fclose(f); }}
"""
    path = build("constructor", source)
    for sql in ENTRY_POINTS:
        cluster.query(sql, (str(path),))
    cluster.query("SELECT count(*) FROM pgdl.predict_load(%s, 'boom')", (str(path),))
    assert not marker.exists(), "pgdl ran the code of the library under diagnosis"
    cluster.query("LOAD %s", (str(path),))          # the control: a real LOAD does run it
    assert marker.exists()


def test_fuzzed_modules_core():
    """A fixed-seed subset of scripts/fuzz.py: no exception escapes, each case fast."""
    server = fuzz.default_server()
    sources = sorted(glob.glob(os.path.join(server.pkglibdir, "*.so")))[:10]
    counts = fuzz.run(80, 7, sources, server)
    assert not [k for k in counts if k.startswith(("CRASH", "TOO SLOW"))], counts


def test_fuzzed_module_in_backend(cluster, build, tmp_path):
    """Mutants through SQL: rows or clean errors, and the backend survives."""
    import random
    rng = random.Random(11)
    os.chmod(tmp_path, 0o755)
    good = build("fuzz_src", "#include \"postgres.h\"\n#include \"fmgr.h\"\nPG_MODULE_MAGIC;\nint f(void){return 1;}\n")
    original = good.read_bytes()
    target = tmp_path / "mutant.so"
    for _ in range(25):
        target.write_bytes(fuzz.mutate(original, rng))
        assert_clean(cluster, str(target))
    assert cluster.query("SELECT 1") == [(1,)]


def test_unreadable_version_requirements(cluster, build, tmp_path):
    """A VERNEED chain pointing outside the file.  Version tables are read
    on first use, while binding: the prediction says pgdl cannot read them."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
    from pgdl.elf import DT_VERNEED, open_elf

    path = build("bad_verneed", "#include \"postgres.h\"\n#include \"fmgr.h\"\n#include <string.h>\n"
                 "PG_MODULE_MAGIC;\nsize_t f(const char *s){return strlen(s);}\n")
    obj = open_elf(str(path))
    at = obj.vaddr_to_offset(obj.dynamic_value(DT_VERNEED))
    data = bytearray(path.read_bytes())
    data[at + 8:at + 12] = (0x7FFFFFF0).to_bytes(4, "little")      # vn_aux: far past the end
    path.write_bytes(bytes(data))
    assert_clean(cluster, str(path))
    rows = cluster.query("SELECT will_load, message FROM pgdl.predict_load(%s)", (str(path),))
    assert rows[0][0] is False
    assert "pgdl cannot read its version requirements" in rows[0][1], rows
