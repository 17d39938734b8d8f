#!/usr/bin/env bash
# The README's test command: installs what the tests need on a fresh Debian machine (the
# Debian test peers, then the npm packages), then runs the whole suite (build, lint, tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-peers.sh
npm ci
npm test
