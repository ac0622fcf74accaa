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
cp -r python tests scripts pytest.ini extension sql META.json "$work"/
[ -d bench ] && cp -r bench "$work"/
chown -R "$user" "$work"
chmod 755 "$work"
cd "$work"
runuser -u "$user" -- env HOME="$(getent passwd "$user" | cut -d: -f6)" "${noexec_env[@]}" "$@"
