#!/usr/bin/env bash
# Starts the registry on the bundled example package set (examples/pkgs), on port 8080 unless
# PORT says otherwise, keeping its storage in .nixery/storage. Installs what it needs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
# NIXERY_DEMO_BUILT=1: install-deps and the build have run already (the tests start it so).
[ -n "${NIXERY_DEMO_BUILT:-}" ] || bash scripts/install-deps.sh
source scripts/node-env.sh # Node >= 22 (a project-local Node 24 where the system has an older one)
[ -n "${NIXERY_DEMO_BUILT:-}" ] || npm run build
export NIX_CONFIG="${NIX_CONFIG:-substituters =}"
export NIXERY_PKGS_PATH="${NIXERY_PKGS_PATH:-$PWD/examples/pkgs}"
export STORAGE_PATH="${STORAGE_PATH:-$PWD/.nixery/storage}"
# exec: the registry replaces this shell, so SIGTERM from npm (or a supervisor) reaches it.
exec node dist/src/cli.js serve "$@"
