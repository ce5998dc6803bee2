#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds, runs node's test runner over dist/test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export NIX_CONFIG="${NIX_CONFIG:-substituters =}"
npx tsc -p .
node --test --test-concurrency=2 dist/test/
