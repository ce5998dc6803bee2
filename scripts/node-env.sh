# Sourced by the project's scripts (test, start, the CLI wrapper): makes `node` a Node >= 22.
# A `node` on PATH that is >= 22 is used as it is. Otherwise Node 24 comes from the npm registry's
# node-linux-<arch> package (the binary ships inside the package) into .node/ in the project, and
# .node/bin is put first on PATH for this shell and its children only: the system's node is left
# alone. NIXERY_NODE_MAJOR picks another major to install (default 24).
# shellcheck shell=bash
nixery_node_env() {
  local root min=22 major="${NIXERY_NODE_MAJOR:-24}" have arch dir
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  dir="$root/.node"
  # Already ours (a nested script sources this again).
  [ "$(command -v node)" = "$dir/bin/node" ] && return 0
  have=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$have" -ge "$min" ] 2>/dev/null && [ -z "${NIXERY_NODE_FORCE_LOCAL:-}" ]; then return 0; fi
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64) arch=arm64 ;;
    *) echo "node-env: no node-linux package for $(uname -m); install Node >= $min yourself" >&2; return 1 ;;
  esac
  if ! "$dir/bin/node" -e "process.exit(+process.versions.node.split('.')[0] === $major ? 0 : 1)" 2>/dev/null; then
    command -v npm >/dev/null || { echo "node-env: Node >= $min is needed and npm is missing to fetch it" >&2; return 1; }
    mkdir -p "$dir"
    # Two scripts starting at once install once.
    (
      flock 9
      if ! "$dir/bin/node" -e "process.exit(+process.versions.node.split('.')[0] === $major ? 0 : 1)" 2>/dev/null; then
        echo "node-env: node $have is older than $min: installing node-linux-$arch@$major into $dir" >&2
        npm install --prefix "$dir" --prefer-offline --no-audit --no-fund --no-save --loglevel=error "node-linux-$arch@$major" >&2 &&
          mkdir -p "$dir/bin" && ln -sfn "../node_modules/node-linux-$arch/bin/node" "$dir/bin/node"
      fi
    ) 9>"$dir/.lock" || return 1
  fi
  export PATH="$dir/bin:$PATH"
}
nixery_node_env || { [ "${BASH_SOURCE[0]}" != "$0" ] && return 1 || exit 1; }
unset -f nixery_node_env
