#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds, runs node's test runner over dist/test:
# unit and in-process HTTP tests (npm run test:unit runs only those), Nix and end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/node-env.sh # Node >= 22 (a project-local Node 24 where the system has an older one)
export NIX_CONFIG="${NIX_CONFIG:-substituters =}"
rm -rf dist && npm run build
# Only *.test.js files are tests; helpers next to them are not.
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
node --test --test-concurrency=2 "$@" "${files[@]}"
