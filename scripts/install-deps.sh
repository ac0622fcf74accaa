#!/usr/bin/env bash
# Install what pgdl needs to build, run and be tested on Debian/Ubuntu.
# Everything comes from Debian packages, for the system Python that PL/Python uses.
set -euo pipefail
# The PostgreSQL major each Debian release ships (scripts/matrix.sh runs this in each).
. /etc/os-release
case "${VERSION_CODENAME:-}" in
  bullseye) default=13 ;; bookworm) default=15 ;; trixie) default=17 ;; *) default=18 ;;
esac
[ "${ID:-}" = debian ] || default=15
PGVER=${PGVER:-$default}
packages=(
  "postgresql-$PGVER" "postgresql-server-dev-$PGVER" "postgresql-plpython3-$PGVER" "postgresql-contrib"
  python3-pyelftools python3-pytest python3-testing.postgresql python3-psycopg2
  gcc make pgxnclient pax-utils
  # The pg_cron recipe test (tests/test_pg_cron.py).
  "postgresql-$PGVER-cron"
  # _PG_init() decoding (x86-64), and the preload-only modules its tests load.
  python3-capstone "postgresql-$PGVER-pgaudit" "postgresql-$PGVER-pglogical" "postgresql-$PGVER-pg-stat-kcache"
  # Test fixtures: 32-bit builds (gcc -m32), an AArch64 cross-build (clang + lld), a musl loader.
  gcc-multilib clang lld musl
)
# What a release may lack: the tests that use them skip there.
optional=("postgresql-$PGVER-cron" "postgresql-$PGVER-pgaudit" "postgresql-$PGVER-pglogical"
          "postgresql-$PGVER-pg-stat-kcache" pgxnclient gcc-multilib clang lld musl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  wanted=()
  for p in "${missing[@]}"; do
    if [[ " ${optional[*]} " == *" $p "* ]] && ! apt-cache show "$p" >/dev/null 2>&1; then
      echo "pgdl: $p is not in this release; the tests that need it will skip"
    else
      wanted+=("$p")
    fi
  done
  echo "pgdl: installing ${wanted[*]}"
  apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null
fi
