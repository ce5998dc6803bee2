#!/usr/bin/env bash
# The fast tests: unit tests and in-process HTTP tests (registry and API on the stand-in Nix
# stage), with no Nix, no daemons and no browser. Builds first, then runs every test file outside
# the directories that need Nix or the machine (test/nix, test/e2e, and those in NIX_DIRS below),
# with `nix*` absent from PATH and a guard (test/helpers/no-nix.ts) that fails the run if any test
# tries to start Nix. `npm test` still runs everything.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh # Node >= 22 (a project-local Node 24 where the system has an older one)

# Directories whose tests run Nix (test/nix, test/registry-nix: the registry over real Nix,
# test/builder: the real pipeline), or daemons and clients (test/e2e). npm test runs them.
NIX_DIRS=(dist/test/nix dist/test/e2e dist/test/registry-nix dist/test/builder dist/test/deploy)

if [ "${NIXERY_TEST_NO_BUILD:-}" != 1 ]; then
  build_start=$(date +%s.%N)
  rm -rf dist && npm run build --silent
  build_end=$(date +%s.%N)
fi

# A PATH without Nix: a directory of links to every program on PATH whose name does not start
# with `nix` (Debian's nix-bin puts nix-store in /usr/bin, next to everything else).
nopath=$(mktemp -d /tmp/nixery-no-nix-path.XXXXXX)
log=$(mktemp /tmp/nixery-no-nix-log.XXXXXX)
trap 'rm -rf "$nopath" "$log"' EXIT
IFS=: read -r -a dirs <<<"$PATH"
for dir in "${dirs[@]}"; do
  # Earlier PATH entries win: ln refuses names that are linked already.
  [ -d "$dir" ] && find "$dir" -maxdepth 1 \( -type f -o -type l \) ! -name 'nix*' -exec ln -s -t "$nopath" {} + 2>/dev/null || true
done
if PATH="$nopath" command -v nix-store >/dev/null; then echo "test:unit: nix-store is still on the PATH" >&2; exit 1; fi

files=()
while IFS= read -r f; do
  skip=
  for d in "${NIX_DIRS[@]}"; do [[ $f == "$d"/* ]] && skip=1; done
  [ -z "$skip" ] && files+=("$f")
done < <(
  # The longest files (the object stores against their emulators) start first, so that they do
  # not run alone at the end.
  find dist/test/storage -name '*.test.js' | sort
  find dist/test -name '*.test.js' ! -path 'dist/test/storage/*' | sort
)

start=$(date +%s.%N)
status=0
env PATH="$nopath" NIXERY_NO_NIX_LOG="$log" NODE_OPTIONS="${NODE_OPTIONS:-} --import=$PWD/dist/test/helpers/no-nix.js" \
  node --test --test-concurrency="${TEST_CONCURRENCY:-2}" "$@" "${files[@]}" || status=$?
end=$(date +%s.%N)

if [ -s "$log" ]; then
  echo "test:unit: these tests tried to start Nix (they belong under test/nix, test/e2e or ${NIX_DIRS[*]}):" >&2
  sort -u "$log" >&2
  status=1
fi
echo "test:unit: ${#files[@]} test files in $(echo "$end - $start" | bc) s${build_start:+ (build: $(echo "$build_end - $build_start" | bc) s)}" >&2
exit $status
