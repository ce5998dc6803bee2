#!/usr/bin/env bash
# Starts the registry on the bundled example package set (examples/pkgs), on port 8080 unless
# PORT says otherwise, keeping its storage in .nixery/storage. Installs what it needs as root.
# Layering uses popularity data for the package set (`nixery popcount`, counted once per content
# of the set and cached in .nixery/), so images share their popular layers and the explorer shows it.
set -euo pipefail
cd "$(dirname "$0")/.."
# NIXERY_DEMO_BUILT=1: install-deps and the build have run already (the tests start it so).
[ -n "${NIXERY_DEMO_BUILT:-}" ] || bash scripts/install-deps.sh
source scripts/node-env.sh # Node >= 22 (a project-local Node 24 where the system has an older one)
[ -n "${NIXERY_DEMO_BUILT:-}" ] || npm run build
export NIX_CONFIG="${NIX_CONFIG:-substituters =}"
export NIXERY_PKGS_PATH="${NIXERY_PKGS_PATH:-$PWD/examples/pkgs}"
export STORAGE_PATH="${STORAGE_PATH:-$PWD/.nixery/storage}"
if [ -z "${NIX_POPULARITY_URL:-}" ]; then
  # Keyed by the set's files: a changed set is counted again, a restart reuses the count.
  key=$(cd "$NIXERY_PKGS_PATH" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
  popularity="$PWD/.nixery/popularity-$key.json"
  if [ ! -s "$popularity" ]; then
    mkdir -p .nixery
    echo "nixery demo: counting package popularity for layering (once; cached in $popularity)" >&2
    if node dist/src/cli.js popcount --output "$popularity.tmp"; then
      mv "$popularity.tmp" "$popularity"
    else
      rm -f "$popularity.tmp"
      echo "nixery demo: popcount failed; serving without popularity data" >&2
    fi
  fi
  if [ -s "$popularity" ]; then export NIX_POPULARITY_URL="$popularity"; fi
fi
# exec: the registry replaces this shell, so SIGTERM from npm (or a supervisor) reaches it.
exec node dist/src/cli.js serve "$@"
