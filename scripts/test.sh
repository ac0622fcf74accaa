#!/usr/bin/env bash
# Run every pgdl test against a real, throwaway PostgreSQL server.
# As root (CI, a fresh machine): installs the dependencies and the extension,
# then runs the tests as an unprivileged user.  As another user: the
# extension must already be installed (sudo make install).
# Says how long each part took.
set -euo pipefail
cd "$(dirname "$0")/.."
part() {   # part NAME COMMAND...: run it, then say how long it took
  local name=$1 start=$SECONDS
  shift
  "$@"
  echo "pgdl: $name took $((SECONDS - start)) s"
}
if [ "$(id -u)" = 0 ]; then
  part "installing the dependencies" bash scripts/install-deps.sh
  # Install the way PGXN users do (it runs the PGXS `make install`).
  part "installing the extension" sh -c 'pgxn install ./ >/dev/null'
fi
# pytest's closing line says how long the tests took (and stays the last line).
bash scripts/as-test-user.sh /usr/bin/python3 -m pytest -p no:cacheprovider "$@"
