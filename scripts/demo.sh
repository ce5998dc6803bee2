#!/usr/bin/env bash
# Starts the registry on the bundled example package set (examples/pkgs), on port 8080 unless
# PORT says otherwise, keeping its storage in .nixery/storage. Installs what it needs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npm run build
export NIX_CONFIG="${NIX_CONFIG:-substituters =}"
export NIXERY_PKGS_PATH="${NIXERY_PKGS_PATH:-$PWD/examples/pkgs}"
export STORAGE_PATH="${STORAGE_PATH:-$PWD/.nixery/storage}"
exec node dist/src/cli.js serve "$@"
