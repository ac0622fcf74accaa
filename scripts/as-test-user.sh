#!/usr/bin/env bash
# Run a command from a copy of this checkout as an unprivileged OS user:
# PostgreSQL refuses to run as root, and the server must see the files the
# tests build with the same eyes as the tests.
# Usage: scripts/as-test-user.sh COMMAND [ARG...]   (from the repository root)
set -euo pipefail
user=${PGDL_TEST_USER:-pgdl_test}
if [ "$(id -u)" != 0 ]; then
  exec "$@"
fi
id "$user" >/dev/null 2>&1 || useradd --system --create-home --shell /bin/bash "$user"
work=$(mktemp -d /tmp/pgdl-run.XXXXXX)
# A noexec file system, for the test of a module the loader cannot map there.
noexec="$work/noexec"
mkdir "$noexec"
trap 'umount "$noexec" 2>/dev/null || true; rm -rf "$work"' EXIT
noexec_env=()
if mount -t tmpfs -o "noexec,size=64m,mode=0755,uid=$(id -u "$user")" tmpfs "$noexec" 2>/dev/null; then
  noexec_env=(PGDL_NOEXEC_DIR="$noexec")
fi
# In a disposable root (scripts/matrix.sh's chroots), the tests may run ldconfig
# with one ld.so.conf.d file of their own, to prove the ld.so.cache hints.
ldconfig_env=()
if [ "${PGDL_DISPOSABLE_ROOT:-}" = 1 ] && command -v sudo >/dev/null; then
  ldconf=/etc/ld.so.conf.d/00-pgdl-test.conf
  : >"$ldconf"
  chown "$user" "$ldconf"
  echo "$user ALL=(root) NOPASSWD: $(command -v ldconfig)" >/etc/sudoers.d/pgdl-test
  chmod 440 /etc/sudoers.d/pgdl-test
  ldconfig_env=(PGDL_LDCONF="$ldconf" PGDL_LDCONFIG="sudo -n $(command -v ldconfig)")
  trap 'umount "$noexec" 2>/dev/null || true; rm -rf "$work" "$ldconf" /etc/sudoers.d/pgdl-test; ldconfig' EXIT
fi
cp -r python tests scripts docs pytest.ini extension sql META.json "$work"/
[ -d bench ] && cp -r bench "$work"/
chown -R "$user" "$work"
chmod 755 "$work"
cd "$work"
runuser -u "$user" -- env HOME="$(getent passwd "$user" | cut -d: -f6)" "${noexec_env[@]}" "${ldconfig_env[@]}" "$@"
