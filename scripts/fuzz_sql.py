"""Structure-aware fuzzing of pgdl through its SQL functions, in a real backend.

Unlike scripts/fuzz.py (random bytes, the core called directly), this one
knows where an ELF file keeps what the loader reads, and damages exactly
that: dynamic entries, version chains (VERNEED, VERDEF), hash tables (GNU and
SysV), program headers and string tables of real libraries, plus splices of
two ELF files.  Each damaged file is handed to predict_load(), dependencies(),
check_magic() and diagnose() in one backend, and every answer is checked:

  traceback   a Python traceback or exception class name in any text
  crashed     the backend died (pgdl never loads what it reads: always pgdl's fault)
  slow        a call that took over SLOW seconds
  lost        a call that raised instead of answering (or an internal error row)

    python3 scripts/fuzz_sql.py --cases 3000 --seed 1

starts a throwaway server (testing.postgresql; as an unprivileged user:
scripts/as-test-user.sh does it from root) and prints the counts, the slowest
call and the backend's peak memory (VmHWM).  --dsn uses a running server
where pgdl is installed.  tests/test_fuzz_sql.py runs a fixed-seed part.
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import re
import struct
import sys
import tempfile
import time

from elftools.elf.elffile import ELFFile

SLOW = 2.0
CALLS = (
    "SELECT * FROM pgdl.predict_load(%s)",
    "SELECT * FROM pgdl.dependencies(%s)",
    "SELECT * FROM pgdl.check_magic(%s)",
    "SELECT * FROM pgdl.diagnose(%s)",
    "SELECT * FROM pgdl.explain(%s)",
    "SELECT * FROM pgdl.tree(%s)",
)
# Python's exception classes and pgdl's own: a name of one in an answer is a
# leaked exception (a library's symbol such as XtAppError is not).
_EXCEPTIONS = sorted({name for name, value in vars(__import__("builtins")).items()
                      if isinstance(value, type) and issubclass(value, BaseException)}
                     | {"ElfError", "LdCacheError", "UserError", "PgErrorRaised", "LoadFailure", "MagicNotFound",
                        "Interrupted", "SPIError", "NoneType"})
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|\b(?:%s)\b" % "|".join(_EXCEPTIONS))

# Dynamic tags worth swapping in: the ones ld.so and pgdl act on.
TAGS = [1, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 27, 28, 29, 30,
        0x6ffffef5, 0x6ffffff0, 0x6ffffffc, 0x6ffffffd, 0x6ffffffe, 0x6fffffff, 0x6ffffffb, 0x6ffffff9, 36, 37]


def interesting(rng: random.Random, near: int, size: int) -> int:
    return rng.choice([0, 1, 2, 3, 4, 7, 8, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2 ** 63, 2 ** 64 - 1,
                       size, size - 1, size + 1, size * 2, near + 1, near - 1, near + 4096, near // 2,
                       rng.getrandbits(16), rng.getrandbits(32)]) % (2 ** 64)


class Layout:
    """Where one 64-bit little-endian ELF file keeps what the loader reads."""

    def __init__(self, path: str, data: bytes):
        self.path, self.data = path, data
        with open(path, "rb") as f:
            elf = ELFFile(f)
            self.phoff, self.phnum = elf["e_phoff"], elf["e_phnum"]
            self.sections = {s.name: (s["sh_offset"], s["sh_size"]) for s in elf.iter_sections()
                             if s["sh_type"] != "SHT_NOBITS"}

    def section(self, name: str):
        return self.sections.get(name)


def _u(buf, fmt, at):
    return struct.unpack_from(fmt, buf, at)


def _p(buf, fmt, at, *values):
    if 0 <= at and at + struct.calcsize(fmt) <= len(buf):
        struct.pack_into(fmt, buf, at, *(v % (2 ** (8 * struct.calcsize(c))) for v, c in zip(values, fmt[1:])))


def mutate_dynamic(buf: bytearray, lay: Layout, rng: random.Random) -> str:
    sec = lay.section(".dynamic")
    if not sec:
        return "none"
    off, size = sec
    n = size // 16
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(n)
        tag, val = _u(buf, "<QQ", off + 16 * i)
        how = rng.randrange(4)
        if how == 0:
            _p(buf, "<Q", off + 16 * i, rng.choice(TAGS))
        elif how == 1:
            _p(buf, "<Q", off + 16 * i + 8, interesting(rng, val, len(buf)))
        elif how == 2:                              # an entry copied over another (repeated tags)
            j = rng.randrange(n)
            buf[off + 16 * j:off + 16 * j + 16] = buf[off + 16 * i:off + 16 * i + 16]
        else:                                       # the terminator gone
            for k in range(n):
                if _u(buf, "<Q", off + 16 * k)[0] == 0:
                    _p(buf, "<QQ", off + 16 * k, rng.choice(TAGS), interesting(rng, 0, len(buf)))
                    break
    return "dynamic"


def mutate_versions(buf: bytearray, lay: Layout, rng: random.Random) -> str:
    name = rng.choice([s for s in (".gnu.version_r", ".gnu.version_d") if lay.section(s)] or [None])
    if name is None:
        return "none"
    off, size = lay.section(name)
    if name == ".gnu.version_r":                   # Verneed 16 bytes, Vernaux 16 bytes
        fields = [(0, "<H"), (2, "<H"), (4, "<I"), (8, "<I"), (12, "<I")]
        aux = [(4, "<H"), (6, "<H"), (8, "<I"), (12, "<I")]
    else:                                          # Verdef 20 bytes, Verdaux 8 bytes
        fields = [(0, "<H"), (2, "<H"), (4, "<H"), (6, "<H"), (12, "<I"), (16, "<I")]
        aux = [(0, "<I"), (4, "<I")]
    for _ in range(rng.randint(1, 3)):
        at = off + rng.randrange(0, max(1, size - 20), 4)
        rel, fmt = rng.choice(fields + aux)
        old = _u(buf, fmt, at + rel)[0] if at + rel + 4 <= len(buf) else 0
        _p(buf, fmt, at + rel, rng.choice([0, 1, 2, old + 16, old - 16, old * 2, 0xFFFF, 0xFFFFFFFF,
                                            -old, rng.getrandbits(16)]))
    return "versions"


def mutate_hash(buf: bytearray, lay: Layout, rng: random.Random) -> str:
    if lay.section(".gnu.hash") and (not lay.section(".hash") or rng.random() < 0.7):
        off, size = lay.section(".gnu.hash")
        nbuckets, symoffset, bloom_size, _shift = _u(buf, "<IIII", off)
        how = rng.randrange(6)
        if how == 0:
            _p(buf, "<I", off + 4 * rng.randrange(4), rng.choice([0, 1, 3, 0xFFFF, 0x7FFFFFFF, rng.getrandbits(32)]))
        elif how == 1:                              # bloom words
            for _ in range(rng.randint(1, 8)):
                _p(buf, "<Q", off + 16 + 8 * rng.randrange(max(1, bloom_size)), rng.getrandbits(64))
        elif how == 2:                              # buckets
            at = off + 16 + 8 * bloom_size
            for _ in range(rng.randint(1, 8)):
                _p(buf, "<I", at + 4 * rng.randrange(max(1, nbuckets)), rng.choice([0, symoffset, 2 ** 32 - 1,
                                                                                    rng.getrandbits(16)]))
        elif how == 3:                              # every chain end bit cleared
            at = off + 16 + 8 * bloom_size + 4 * nbuckets
            for k in range((off + size - at) // 4):
                _p(buf, "<I", at + 4 * k, _u(buf, "<I", at + 4 * k)[0] & ~1)
        elif how == 4:                              # chain values
            at = off + 16 + 8 * bloom_size + 4 * nbuckets
            for _ in range(rng.randint(1, 16)):
                _p(buf, "<I", at + 4 * rng.randrange(max(1, (off + size - at) // 4)), rng.getrandbits(32))
        else:                                       # the table shortened or shifted
            _p(buf, "<I", off, max(1, nbuckets // rng.choice([2, 3, 7])))
        return "gnu hash"
    if lay.section(".hash"):
        off, size = lay.section(".hash")
        nbucket, nchain = _u(buf, "<II", off)
        if rng.random() < 0.3:
            _p(buf, "<I", off + 4 * rng.randrange(2), rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, rng.getrandbits(32)]))
        else:                                       # cycles and long chains
            for _ in range(rng.randint(1, 32)):
                _p(buf, "<I", off + 8 + 4 * rng.randrange(max(1, nbucket + nchain)), rng.randrange(max(1, nchain + 2)))
        return "sysv hash"
    return "none"


def mutate_phdrs(buf: bytearray, lay: Layout, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 2)):
        at = lay.phoff + 56 * rng.randrange(max(1, lay.phnum))
        p_type, p_flags, p_offset, p_vaddr, _pa, p_filesz, p_memsz, p_align = _u(buf, "<IIQQQQQQ", at)
        how = rng.randrange(7)
        if how == 0:
            _p(buf, "<I", at, rng.choice([0, 1, 2, 3, 4, 6, 7, 0x6474e550, 0x6474e551, 0x6474e552, 0x6474e553]))
        elif how == 1:
            _p(buf, "<I", at + 4, rng.choice([0, 1, 2, 4, 5, 6, 7]))
        elif how == 2:
            _p(buf, "<Q", at + 8, interesting(rng, p_offset, len(buf)))
        elif how == 3:
            _p(buf, "<Q", at + 16, interesting(rng, p_vaddr, len(buf)))
        elif how == 4:
            _p(buf, "<Q", at + 32, interesting(rng, p_filesz, len(buf)))
        elif how == 5:
            _p(buf, "<Q", at + 40, interesting(rng, p_memsz, len(buf)))
        else:
            _p(buf, "<Q", at + 48, rng.choice([0, 1, 3, 4096, 2 ** 21, 2 ** 63]))
    return "program headers"


def mutate_strings(buf: bytearray, lay: Layout, rng: random.Random) -> str:
    sec = lay.section(".dynstr")
    if not sec:
        return "none"
    off, size = sec
    how = rng.randrange(3)
    if how == 0:                                    # invalid UTF-8 in names
        for _ in range(rng.randint(1, 8)):
            buf[off + rng.randrange(size)] = rng.choice([0x80, 0xC3, 0xE2, 0xED, 0xF4, 0xFE, 0xFF])
    elif how == 1:                                  # NULs removed from a stretch
        start = off + rng.randrange(size)
        for k in range(start, min(off + size, start + rng.randint(16, 65536))):
            if buf[k] == 0:
                buf[k] = 0x41
    else:                                           # a few bytes changed
        for _ in range(rng.randint(1, 8)):
            buf[off + rng.randrange(size)] = rng.randrange(1, 256)
    return "strings"


def splice(a: bytes, b: bytes, rng: random.Random) -> bytes:
    how = rng.randrange(3)
    if how == 0:                                    # A's headers, B's body
        cut = rng.choice([64, 64 + 56 * 4, 4096])
        return a[:cut] + b[cut:]
    if how == 1:                                    # a page of B over A
        at = rng.randrange(0, max(1, len(a) - 4096), 4096)
        return a[:at] + b[at:at + 4096] + a[at + 4096:]
    half = rng.randrange(len(a))                    # halves
    return a[:half] + b[half:]


MUTATIONS = (mutate_dynamic, mutate_versions, mutate_hash, mutate_phdrs, mutate_strings)


def make_case(layouts: list[Layout], rng: random.Random) -> tuple[bytes, str]:
    lay = rng.choice(layouts)
    if rng.random() < 0.1:
        other = rng.choice(layouts)
        return splice(lay.data, other.data, rng), "splice"
    buf = bytearray(lay.data)
    kind = rng.choice(MUTATIONS)(buf, lay, rng)
    return bytes(buf), kind


def sources(count: int, rng: random.Random) -> list[str]:
    """Real libraries of moderate size, and PostgreSQL modules (so that magic and entry points are reached)."""
    import subprocess
    pkglibdir = subprocess.run(["pg_config", "--pkglibdir"], capture_output=True, text=True).stdout.strip()
    libs = [p for p in glob.glob("/usr/lib/x86_64-linux-gnu/*.so*") if os.path.isfile(p)
            and not os.path.islink(p) and 8192 < os.path.getsize(p) < 4 << 20]
    modules = sorted(glob.glob(os.path.join(pkglibdir, "*.so")))
    picked = rng.sample(sorted(libs), min(len(libs), count // 2)) + rng.sample(modules, min(len(modules), count // 2))
    out = []
    for path in picked:
        with open(path, "rb") as f:
            if f.read(5) == b"\x7fELF\x02":
                out.append(path)
    return out


class Counts(dict):
    def add(self, key, n=1):
        self[key] = self.get(key, 0) + n


def peak_memory_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(connect, cases: int, seed: int, nsources: int = 40, verbose: bool = False) -> Counts:
    import psycopg2
    rng = random.Random(seed)
    layouts = []
    for path in sources(nsources, rng):
        try:
            layouts.append(Layout(path, open(path, "rb").read()))
        except Exception:                          # a file pyelftools cannot lay out: not a source
            continue
    counts = Counts(traceback=0, crashed=0, slow=0, lost=0, calls=0, slowest_ms=0, peak_kib=0)
    conn = connect()
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        for n in range(cases):
            data, kind = make_case(layouts, rng)
            counts.add(f"kind {kind}")
            target = os.path.join(tmp, f"case{n % 16}.so")    # a new file each time (rename: no stale mapping)
            with open(target + ".new", "wb") as f:
                f.write(data)
            os.rename(target + ".new", target)
            for sql in CALLS:
                counts.add("calls")
                start = time.monotonic()
                try:
                    with conn.cursor() as cur:
                        cur.execute(sql, (target,))
                        texts = [v for row in cur.fetchall() for v in row if isinstance(v, str)]
                    lost = False
                except psycopg2.OperationalError as exc:
                    if conn.closed or "server closed" in str(exc):
                        counts.add("crashed")
                        if verbose:
                            print(n, kind, sql, "CRASH", exc)
                        conn = connect()
                        continue
                    raise
                except psycopg2.Error as exc:
                    diag = exc.diag
                    texts = [t for t in (diag.message_primary, diag.message_detail, diag.message_hint) if t]
                    lost = True
                    if verbose:
                        print(n, kind, sql, "LOST", diag.sqlstate, diag.message_primary)
                elapsed = time.monotonic() - start
                counts["slowest_ms"] = max(counts["slowest_ms"], int(elapsed * 1000))
                if elapsed > SLOW:
                    counts.add("slow")
                    if verbose:
                        print(n, kind, sql, f"SLOW {elapsed:.1f} s")
                if lost or any("internal error" in t for t in texts):
                    counts.add("lost")
                if any(TRACEBACK.search(t) for t in texts):
                    counts.add("traceback")
                    if verbose:
                        print(n, kind, sql, "TRACEBACK", [t for t in texts if TRACEBACK.search(t)][:1])
            if n % 50 == 49 or n == cases - 1:
                counts["peak_kib"] = max(counts["peak_kib"], peak_memory_kib(conn.get_backend_pid()))
    conn.close()
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sources", type=int, default=40, help="real libraries and modules to damage")
    parser.add_argument("--dsn", help="a running server with pgdl installed (default: start one)")
    args = parser.parse_args()
    import psycopg2

    def connector(dsn):
        def connect():
            conn = psycopg2.connect(dsn)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SET statement_timeout = '60s'")
            return conn
        return connect

    started = time.monotonic()
    if args.dsn:
        counts = run(connector(args.dsn), args.cases, args.seed, args.sources, verbose=True)
    else:
        import testing.postgresql
        with testing.postgresql.Postgresql() as pg:
            connect = connector(pg.url())
            conn = connect()
            conn.cursor().execute("CREATE EXTENSION pgdl CASCADE")
            conn.close()
            counts = run(connect, args.cases, args.seed, args.sources, verbose=True)
    print(f"cases: {args.cases} (seed {args.seed}) in {time.monotonic() - started:.0f} s")
    for key in sorted(counts):
        print(f"{key}: {counts[key]}")
    print(f"peak backend memory: {counts['peak_kib'] / 1024:.1f} MiB")
    bad = counts["traceback"] + counts["crashed"] + counts["slow"] + counts["lost"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
