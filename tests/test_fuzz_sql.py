"""A fixed-seed part of scripts/fuzz_sql.py: damaged real libraries through
every SQL function in a real backend, and every answer clean."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import fuzz_sql  # noqa: E402


def test_structure_aware_fuzzing_through_sql(cluster):
    counts = fuzz_sql.run(cluster.connect, cases=120, seed=11, nsources=24)
    assert counts["calls"] == 120 * len(fuzz_sql.CALLS)
    assert {k: counts[k] for k in ("traceback", "crashed", "slow", "lost")} == \
        {"traceback": 0, "crashed": 0, "slow": 0, "lost": 0}, counts
    assert sum(v for k, v in counts.items() if k.startswith("kind ") and k != "kind none") >= 100
