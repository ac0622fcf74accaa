#!/usr/bin/env bash
# Compare pgdl with the real server on other Debian releases: each one a
# chroot (debootstrap, cached), with that release's PostgreSQL and glibc,
# pgdl installed in it as a user would (make install), and the tests that
# compare pgdl's predictions with real LOADs run there.
#
# Usage (as root): scripts/matrix.sh [RELEASE...]    default: bullseye bookworm trixie sid
#   PGDL_MATRIX_CACHE   where the chroots are kept (default /var/cache/pgdl-matrix)
#   PGDL_MATRIX_TESTS   the pytest arguments (default: the real-server comparisons below)
# Says how long each part took; exits non-zero if any release fails.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "pgdl: scripts/matrix.sh builds chroots: run it as root" >&2; exit 2; }
releases=("$@")
[ ${#releases[@]} -gt 0 ] || releases=(bullseye bookworm trixie sid)
cache=${PGDL_MATRIX_CACHE:-/var/cache/pgdl-matrix}
tests=${PGDL_MATRIX_TESTS:-tests/test_loader_stages.py tests/test_predict_load.py tests/test_seed_case.py tests/test_check_magic.py tests/test_contexts.py tests/test_diagnose.py tests/test_audit.py tests/test_platform.py tests/test_upgrade.py tests/test_remedies.py tests/test_extensions.py tests/test_reports.py tests/test_translations.py tests/test_persist.py}

# The Debian archive this machine's apt already uses.
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || { echo "pgdl: no Debian archive in this machine's apt sources" >&2; exit 2; }
command -v debootstrap >/dev/null || { apt-get update -qq; apt-get install -y -qq debootstrap >/dev/null; }

part() {   # part NAME COMMAND...: run it, say how long it took, return its status
  local name=$1 start=$SECONDS status=0
  shift
  "$@" || status=$?
  echo "pgdl: $name took $((SECONDS - start)) s"
  return $status
}

mounted=()
cleanup() {
  local m
  for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done
}
trap cleanup EXIT

base() {   # base RELEASE ROOT: a minimal system, made once
  local release=$1 root=$2
  [ -f "$root/.pgdl-base" ] && return 0
  rm -rf "$root"
  mkdir -p "$root"
  debootstrap --variant=minbase "$release" "$root" "$mirror" >"$cache/$release.debootstrap.log" 2>&1 ||
    { tail -20 "$cache/$release.debootstrap.log" >&2; return 1; }
  # sid's archive index can be older than its Valid-Until stamp.
  [ "$release" = sid ] && echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99pgdl"
  touch "$root/.pgdl-base"
}

run_in() {   # run_in ROOT COMMAND: as root inside the chroot, in a copy of this checkout
  local root=$1
  shift
  for d in proc sys dev dev/pts; do
    mountpoint -q "$root/$d" || { mount --bind "/$d" "$root/$d"; mounted=("$root/$d" "${mounted[@]}"); }
  done
  cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 PGDL_DISPOSABLE_ROOT=1 \
    ${PGDL_NOEXEC_DIR:+PGDL_NOEXEC_DIR=$PGDL_NOEXEC_DIR} bash -c "$*"
}

root_agrees() {   # root_agrees ROOT: the shell tool outside the root (--root) says what it says inside
  local root=$1 bindir inside outside
  bindir=$(cd "$root" && ls -d usr/lib/postgresql/*/bin | tail -1)
  inside=$(run_in "$root" "/root/pgdl/scripts/pgdl audit --bindir /$bindir --format json" || true)
  outside=$(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
            /usr/bin/python3 scripts/pgdl audit --root "$root" --bindir "/$bindir" --format json || true)
  /usr/bin/python3 - "$inside" "$outside" <<'PY'
import json, sys
inside, outside = (json.loads(text)["results"] for text in sys.argv[1:])
if inside != outside:
    differ = [(a, b) for a, b in zip(inside, outside) if a != b][:5]
    sys.exit(f"pgdl --root disagrees with pgdl inside the root: {len(inside)} vs {len(outside)} rows; {differ}")
print(f"pgdl: --root and inside agree on {len(inside)} audit rows")
PY
}

failed=()
for release in "${releases[@]}"; do
  root="$cache/$release"
  mkdir -p "$cache"
  echo "pgdl: === $release ==="
  if ! part "$release: the chroot" base "$release" "$root"; then failed+=("$release"); continue; fi
  rm -rf "$root/root/pgdl"
  mkdir -p "$root/root/pgdl"
  tar --exclude=.git -cf - . | tar -C "$root/root/pgdl" -xf -
  if ! part "$release: installing the dependencies and pgdl" run_in "$root" \
      'cd /root/pgdl && bash scripts/install-deps.sh && { command -v sudo >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo >/dev/null; } && make install PG_CONFIG="$(ls /usr/lib/postgresql/*/bin/pg_config | tail -1)" >/dev/null'; then
    failed+=("$release"); continue
  fi
  run_in "$root" 'echo "pgdl: $(. /etc/os-release; echo "$PRETTY_NAME"), $(ldd --version | head -1), PostgreSQL $(ls /usr/lib/postgresql)"'
  # shellcheck disable=SC2086
  if ! part "$release: the tests" run_in "$root" \
      "cd /root/pgdl && bash scripts/as-test-user.sh /usr/bin/python3 -m pytest -p no:cacheprovider -q $tests"; then
    failed+=("$release")
  fi
  if ! part "$release: the shell tool with --root" root_agrees "$root"; then
    failed+=("$release")
  fi
done
cleanup
mounted=()
if [ ${#failed[@]} -gt 0 ]; then
  echo "pgdl: the matrix failed on: ${failed[*]}"
  exit 1
fi
echo "pgdl: the matrix passed on: ${releases[*]}"
