#!/usr/bin/env bash
# Benchmark pgdl against `ldd -r` and pax-utils `lddtree` on this machine.
# As root: installs the dependencies (scripts/install-deps.sh, which includes
# pax-utils) and the extension (pgxn install ./), then runs bench/run.py as
# the unprivileged test user.  As another user: pgdl must already be installed.
# Then bench/scaling.py: pgdl, `ldd -r` and libtree over 10 to 200 modules.
# Usage: bash bench/run.sh [--runs N] [--profile]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
  bash scripts/install-deps.sh
  # The other tools measured, and a host like the ones DBAs run: Debian's common
  # extension packages, some with dependency closures of a hundred libraries
  # (GDAL, PROJ, GEOS); a package a release lacks is skipped.
  pgver=$(pg_config --version | sed 's/^PostgreSQL \([0-9]*\).*/\1/')
  wanted=()
  for p in pax-utils libtree "postgresql-$pgver-postgis-3" "postgresql-$pgver-pgrouting" "postgresql-$pgver-ogr-fdw" \
           "postgresql-$pgver-repack" "postgresql-$pgver-pgaudit" "postgresql-$pgver-rum" "postgresql-$pgver-pllua" \
           "postgresql-$pgver-orafce"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
    apt-cache show "$p" >/dev/null 2>&1 && wanted+=("$p") || echo "bench: $p is not in this release; skipped"
  done
  if [ ${#wanted[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null
  fi
  pgxn install ./ >/dev/null
fi
bash scripts/as-test-user.sh /usr/bin/python3 bench/run.py "$@"
# How the cost grows with the number of modules and their closures (issue #19).
bash scripts/as-test-user.sh /usr/bin/python3 bench/scaling.py
