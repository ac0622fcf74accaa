"""Mutate real modules and feed them to every pgdl entry point.

Each case must end in a result or a clean, expected error (never another
exception) within a time bound.  `python3 scripts/fuzz.py --cases 10000`
prints the counts; tests/test_hostile.py runs a fixed-seed subset.
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from pgdl.views.check_magic import check_magic  # noqa: E402
from pgdl.views.diagnose_library import diagnose_library  # noqa: E402
from pgdl.glibc.ldso import load_tree  # noqa: E402
from pgdl.engine.predict import predict_load  # noqa: E402
from pgdl.server import Server  # noqa: E402

TIME_LIMIT = 10.0    # seconds per case: a bound against hangs, not a performance target


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    kind = rng.randrange(7)
    if kind == 0:                                   # bit flips
        for _ in range(rng.randint(1, 16)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif kind == 1:                                 # truncation
        del buf[rng.randrange(len(buf)):]
    elif kind == 2:                                 # lying header counts and offsets
        off = rng.choice([32, 40, 48, 52, 54, 56, 58, 60, 62])   # phoff, shoff, sizes, counts
        width = 8 if off in (32, 40) else 2
        value = rng.choice([0, 1, 0xFFFF, 0x7FFF, len(buf), len(buf) * 2, rng.getrandbits(width * 8)])
        buf[off:off + width] = (value & ((1 << (width * 8)) - 1)).to_bytes(width, "little")
    elif kind == 3:                                 # random words somewhere in the first pages
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(0, max(1, min(len(buf) - 8, 16384)))
            buf[i:i + 8] = rng.getrandbits(64).to_bytes(8, "little")
    elif kind == 4:                                 # corrupt dynamic section entries
        _corrupt_dynamic(buf, rng)
    elif kind == 5:                                 # a header glued to random bytes
        buf = buf[:64] + bytearray(rng.getrandbits(8) for _ in range(rng.randint(0, 4096)))
    else:                                           # swap two regions
        a, b = sorted(rng.randrange(len(buf)) for _ in range(2))
        n = min(256, len(buf) - b)
        buf[a:a + n], buf[b:b + n] = buf[b:b + n], buf[a:a + n]
    return bytes(buf)


def _corrupt_dynamic(buf: bytearray, rng: random.Random) -> None:
    """Point DT_* values (DT_NEEDED string offsets, DT_STRSZ, table addresses) at absurd places."""
    try:
        phoff, = struct.unpack_from("<Q", buf, 32)
        phnum, = struct.unpack_from("<H", buf, 56)
        for i in range(phnum):
            p_type, _f, p_offset, _v, _pa, p_filesz = struct.unpack_from("<IIQQQQ", buf, phoff + 56 * i)
            if p_type == 2:
                for j in range(p_filesz // 16):
                    if rng.random() < 0.3:
                        at = p_offset + 16 * j + 8
                        buf[at:at + 8] = rng.choice([0, 1, 2 ** 63, rng.getrandbits(32), 2 ** 64 - 1]).to_bytes(8, "little")
                return
    except struct.error:
        return


def run(cases: int, seed: int, sources: list[str], server: Server, verbose: bool = False) -> dict[str, int]:
    rng = random.Random(seed)
    originals = [open(p, "rb").read() for p in sources]
    counts: dict[str, int] = {}
    slowest = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        target = os.path.join(tmp, "fuzzed.so")
        for n in range(cases):
            with open(target, "wb") as f:
                f.write(mutate(rng.choice(originals), rng))
            start = time.monotonic()
            try:
                # Every core entry point behind a SQL function.
                check_magic(target, server)
                load_tree(target, server)
                diagnose_library(target, server)
                outcome = "loads" if predict_load(target, server).will_load else "rejected"
            except Exception as exc:   # the point of the exercise: nothing may escape
                outcome = f"CRASH {type(exc).__name__}: {exc}"
                if verbose:
                    print(n, outcome)
            elapsed = time.monotonic() - start
            slowest = max(slowest, elapsed)
            if elapsed > TIME_LIMIT:
                outcome = "TOO SLOW"
            counts[outcome.split(":")[0]] = counts.get(outcome.split(":")[0], 0) + 1
    counts["slowest_ms"] = int(slowest * 1000)
    return counts


def default_server() -> Server:
    import subprocess
    pkglibdir = subprocess.run(["pg_config", "--pkglibdir"], capture_output=True, text=True).stdout.strip()
    bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
    return Server(version_num=150000, pkglibdir=pkglibdir, executable=os.path.join(bindir, "postgres"),
                  data_directory="/")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    server = default_server()
    sources = sorted(glob.glob(os.path.join(server.pkglibdir, "*.so")))[:20]
    counts = run(args.cases, args.seed, sources, server, verbose=True)
    for key in sorted(counts):
        print(f"{key}: {counts[key]}")
    return 1 if any(k.startswith(("CRASH", "TOO SLOW")) for k in counts) else 0


if __name__ == "__main__":
    sys.exit(main())
