"""scripts/demo.sh's headline case stays true: the seed's situation (an old
libpq first on the server's LD_LIBRARY_PATH), pgdl's explanation, its fix
applied, and the real CREATE EXTENSION dblink then working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import pg_config

DEMO = Path(__file__).resolve().parent.parent / "scripts" / "demo.py"


@pytest.mark.skipif(not os.path.exists(os.path.join(pg_config("--pkglibdir"), "dblink.so")),
                    reason="contrib's dblink is not installed")
def test_the_demo_shows_the_seed_case_end_to_end():
    done = subprocess.run([sys.executable, str(DEMO)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)
    out = done.stdout
    assert done.returncode == 0, out
    before, _, after = out.partition("pgdl's fix applied")
    assert after, out
    assert "undefined symbol: PQconnectionUsedPassword" in before.split("What pgdl says")[0]
    explained = before.split("What pgdl says")[1]
    assert "ERROR: CREATE EXTENSION dblink" in explained and "fix: The server's LD_LIBRARY_PATH finds" in explained
    assert "libpq.so.5 =>" in explained and "[LD_LIBRARY_PATH]" in explained
    assert "OK: CREATE EXTENSION dblink will load its libraries" in after
    assert "CREATE EXTENSION\n" in after and "ERROR" not in after
