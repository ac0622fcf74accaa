#!/usr/bin/env bash
# Benchmark pgdl against `ldd -r` and pax-utils `lddtree` on this machine.
# As root: installs the dependencies (scripts/install-deps.sh, which includes
# pax-utils) and the extension (pgxn install ./), then runs bench/run.py as
# the unprivileged test user.  As another user: pgdl must already be installed.
# Usage: bash bench/run.sh [--runs N] [--profile]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
  bash scripts/install-deps.sh
  dpkg-query -W -f='${Status}' pax-utils 2>/dev/null | grep -q "install ok installed" || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends pax-utils >/dev/null
  }
  pgxn install ./ >/dev/null
fi
bash scripts/as-test-user.sh /usr/bin/python3 bench/run.py "$@"
