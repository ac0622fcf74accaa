#!/usr/bin/env bash
# Set everything up on a fresh Debian/Ubuntu machine and show pgdl at work:
# dependencies, build, install, a throwaway cluster, real diagnoses.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/demo.sh installs packages and the extension: run it as root (sudo)." >&2
  exit 1
fi
bash scripts/install-deps.sh
make install >/dev/null
bash scripts/as-test-user.sh /usr/bin/python3 scripts/demo.py
