#!/usr/bin/env bash
# The registry in its image next to the same registry outside a container, in one run: each
# serves the example set's shell/hello (built once, as a pull does), then wrk asks for its
# manifest by tag and its largest layer for BENCH_SECONDS each. Prints requests/s and the CPU time
# the registry process used per 1000 requests of each kind, its RSS (now and peak), and the ratios.
# Needs the image (scripts/build-image.sh), wrk, podman; run as root after npm run build.
# BENCH_PODMAN_ARGS adds options to podman run (e.g. --security-opt seccomp=unconfined).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh
secs=${BENCH_SECONDS:-15}
image=${BENCH_IMAGE:-localhost/nixery-ts:latest}
work=$(mktemp -d)
conf="$work/containers.conf"
printf '[containers]\ndefault_ulimits = ["nofile=16384:16384", "nproc=8192:8192"]\n[engine]\nruntime = "runc"\n' > "$conf"
export CONTAINERS_CONF="$conf"
pids=() ctr=
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$ctr" ] && podman rm -f -v "$ctr" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
kb() { sed -n "s/^$2:\s*\([0-9]*\) kB/\1/p" "/proc/$1/status"; }

measure() { # name pid port
  local name=$1 pid=$2 port=$3 base="http://127.0.0.1:$3" t0 t1 m b
  for _ in $(seq 120); do curl -fs "$base/readyz" >/dev/null && break; sleep 1; done
  curl -fs -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$base/v2/shell/hello/manifests/latest"
  m=$(curl -fs -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$base/v2/shell/hello/manifests/latest")
  b=$(node -e 'const m=JSON.parse(process.argv[1]);console.log(m.layers.sort((a,b)=>b.size-a.size)[0].digest)' "$m")
  local rm rb t0 t1 t2 cm cb
  t0=$(ticks "$pid")
  rm=$(wrk -t1 -c8 -d"${secs}s" -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$base/v2/shell/hello/manifests/latest" | awk '/Requests\/sec/{print $2}')
  t1=$(ticks "$pid")
  rb=$(wrk -t1 -c8 -d"${secs}s" "$base/v2/shell/hello/blobs/$b" | awk '/Requests\/sec/{print $2}')
  t2=$(ticks "$pid")
  # CPU time of the registry's process per 1000 requests, for each kind of request apart.
  cm=$(node -e "console.log((($t1-$t0)/$(getconf CLK_TCK)*1e6/($rm*$secs)).toFixed(1))")
  cb=$(node -e "console.log((($t2-$t1)/$(getconf CLK_TCK)*1e6/($rb*$secs)).toFixed(1))")
  printf '%-8s manifests %8.0f req/s %6s ms CPU/1000  blob %7.0f req/s %6s ms CPU/1000  RSS %6d MB  peak %6d MB\n' \
    "$name" "$rm" "$cm" "$rb" "$cb" $(( $(kb "$pid" VmRSS) / 1024 )) $(( $(kb "$pid" VmHWM) / 1024 ))
  echo "$name $rm $rb $cm $cb $(kb "$pid" VmHWM)" >> "$work/results"
}

# Outside: the registry as npm start runs it.
port=$(free_port)
NIX_CONFIG='substituters =' NIXERY_PKGS_PATH="$PWD/examples/pkgs" STORAGE_PATH="$work/storage" NIXERY_LOG_LEVEL=warn \
  PORT=$port NIXERY_HOST=127.0.0.1 node dist/src/cli.js serve >/dev/null 2>&1 &
pids+=($!)
measure outside "$!" "$port"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()

# Inside: the image, read-only, as uid 65532, host network (no proxy in between).
port=$(free_port)
# shellcheck disable=SC2086
ctr=$(podman run -d ${BENCH_PODMAN_ARGS:-} --network host --read-only --tmpfs /tmp:rw,exec -v /nix -v /var/lib/nixery \
  -e PORT=$port -e NIXERY_HOST=127.0.0.1 -e NIXERY_LOG_LEVEL=warn -e NIXERY_PKGS_PATH=/app/examples/pkgs -e 'NIX_CONFIG=substituters =' "$image")
init=$(podman inspect --format '{{.State.Pid}}' "$ctr")
pid=$(cat "/proc/$init/task/$init/children" | awk '{print $1}') # tini's child: the registry
measure image "$pid" "$port"

node -e '
const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => l.split(" ").map(Number));
const [o, i] = rows;
const r = (k, n) => (i[k] / o[k]).toFixed(2);
console.log(`image/outside: manifests ${r(1)} req/s and ${r(3)} CPU per request, blob ${r(2)} req/s and ${r(4)} CPU per request, peak RSS ${r(5)}`);
' "$work/results"
