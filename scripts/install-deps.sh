#!/usr/bin/env bash
# Install what pgdl needs to build, run and be tested on Debian/Ubuntu.
# Everything comes from Debian packages, for the system Python that PL/Python uses.
set -euo pipefail
PGVER=${PGVER:-15}
packages=(
  "postgresql-$PGVER" "postgresql-server-dev-$PGVER" "postgresql-plpython3-$PGVER" "postgresql-contrib"
  python3-pyelftools python3-pytest python3-testing.postgresql python3-psycopg2
  gcc make pgxnclient pax-utils
  # The pg_cron recipe test (tests/test_pg_cron.py).
  "postgresql-$PGVER-cron"
  # _PG_init() decoding (x86-64), and the preload-only modules its tests load.
  python3-capstone "postgresql-$PGVER-pgaudit" "postgresql-$PGVER-pglogical" "postgresql-$PGVER-pg-stat-kcache"
  # Test fixtures: 32-bit builds (gcc -m32) and an AArch64 cross-build (clang + lld).
  gcc-multilib clang lld
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "pgdl: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
