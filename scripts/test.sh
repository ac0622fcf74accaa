#!/usr/bin/env bash
# Run every pgdl test against a real, throwaway PostgreSQL server.
# As root (CI, a fresh machine): installs the dependencies and the extension,
# then runs the tests as an unprivileged user.  As another user: the
# extension must already be installed (sudo make install).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
  bash scripts/install-deps.sh
  # Install the way PGXN users do (it runs the PGXS `make install`).
  pgxn install ./ >/dev/null
fi
bash scripts/as-test-user.sh /usr/bin/python3 -m pytest -p no:cacheprovider "$@"
