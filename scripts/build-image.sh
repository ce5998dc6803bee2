#!/usr/bin/env bash
# Builds the image of nixery-ts here, offline from anything but Debian's and npm's package
# repositories, as the Containerfile describes it for the world outside:
#   - a Debian 12 root filesystem made by mmdebstrap from this machine's apt sources (in place of
#     debian:bookworm-slim) with Nix, git, CA certificates, busybox (the example package set) and
#     libdeflate (the gzip addon's library);
#   - Node 24 from the npm registry's node-linux-<arch> package;
#   - the app: `npm ci --omit=dev` plus dist/ (run `npm run build` first; dist/native is the
#     gzip addon, built against this machine's Debian 12 libdeflate) and examples/pkgs.
# Writes an OCI archive (one layer, files sorted, times set to SOURCE_DATE_EPOCH, owners
# numeric, gzip without names or times) to .scratch/image/nixery-ts-<version>.oci.tar and loads it
# as localhost/nixery-ts:<version> and :latest into podman, and into docker when its daemon is up
# (DOCKER_HOST is honoured). Options: --no-load (only the archive), --if-changed (reuse the image
# podman has when it was built from the same inputs: what the tests do). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
load=1 if_changed=
for arg in "$@"; do
  case "$arg" in
    --no-load) load= ;;
    --if-changed) if_changed=1 ;;
    *) echo "usage: $0 [--no-load] [--if-changed]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "build-image: run as root (mmdebstrap, file owners)" >&2; exit 1; }
[ -f dist/src/cli.js ] || { echo "build-image: dist/ is missing: run npm run build first" >&2; exit 1; }
[ -f dist/native/nixery_deflate.node ] || { echo "build-image: dist/native/nixery_deflate.node is missing: apt-get install libdeflate-dev, then npm run build" >&2; exit 1; }
source scripts/node-env.sh

NODE_MAJOR=24
UID_GID=65532
PACKAGES=nix-bin,git,ca-certificates,busybox-static,tini,libdeflate0
version=$(node -p 'require("./package.json").version')
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
source_url=https://github.com/nixery-ts/nixery-ts
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
case "$(uname -m)" in x86_64) arch=amd64 narch=x64 ;; aarch64) arch=arm64 narch=arm64 ;; *) echo "build-image: unsupported $(uname -m)" >&2; exit 1 ;; esac
work=.scratch/image
mkdir -p "$work"
# One build at a time (tests running in parallel share the result).
exec 9>"$work/.lock"
flock 9
out="$work/nixery-ts-$version.oci.tar"

# The inputs' fingerprint: same inputs, same image (and no rebuild with --if-changed).
key=$( { cat scripts/build-image.sh package.json package-lock.json; echo "$PACKAGES $NODE_MAJOR $SOURCE_DATE_EPOCH $revision";
  find dist/src dist/assets dist/native examples/pkgs -type f -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-32)
if [ -n "$if_changed" ] && [ -f "$out" ] && [ "$(podman image inspect --format '{{index .Labels "dev.nixery-ts.build-key"}}' "localhost/nixery-ts:$version" 2>/dev/null)" = "$key" ]; then
  echo "build-image: localhost/nixery-ts:$version is up to date ($key)" >&2
  exit 0
fi

# 1. Debian's root filesystem, cached by its package list and the apt sources (apt's own cache
#    makes a rebuild download nothing). Bump ROOTFS_REV when the mmdebstrap call changes.
sources=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true)
ROOTFS_REV=1
base_key=$(printf '%s\n%s\n%s\n' "$PACKAGES" "$sources" "$ROOTFS_REV" | sha256sum | cut -c1-16)
base="$work/rootfs-$base_key.tar"
if [ ! -f "$base" ]; then
  echo "build-image: root filesystem (mmdebstrap, bookworm, $PACKAGES)" >&2
  mirrors=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -s "$f" ] && mirrors+=("$f")
  done
  aptopts=()
  for f in /etc/apt/apt.conf.d/*; do [ -f "$f" ] && aptopts+=(--aptopt="$f"); done
  rm -f "$base.new"
  # No docs, man pages or locales; no apt lists or caches in the result.
  mmdebstrap --quiet --variant=minbase --mode=root --format=tar --architectures="$arch" \
    --include="$PACKAGES" "${aptopts[@]}" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/cache/ldconfig/aux-cache "$1"/var/log/* "$1"/var/lib/dpkg/*-old "$1"/etc/*-' \
    --customize-hook=': > "$1"/etc/machine-id' \
    bookworm "$base.new" "${mirrors[@]}"
  mv "$base.new" "$base"
  find "$work" -maxdepth 1 -name 'rootfs-*.tar' ! -name "$(basename "$base")" -delete
fi

# 2. The tree of the image: the root filesystem plus Node and the app.
tree=$(mktemp -d "$PWD/$work/tree.XXXXXX")
trap 'rm -rf "$tree"' EXIT
root="$tree/rootfs"
mkdir "$root"
tar -xpf "$base" -C "$root" --numeric-owner
echo "build-image: Node $NODE_MAJOR (node-linux-$narch) and the app" >&2
npm install --prefix "$tree/node" --prefer-offline --no-audit --no-fund --no-save --loglevel=error "node-linux-$narch@$NODE_MAJOR" >/dev/null
install -m 0755 "$tree/node/node_modules/node-linux-$narch/bin/node" "$root/usr/local/bin/node"
app="$root/app"
mkdir -p "$app/dist" "$app/examples"
cp package.json package-lock.json "$app/"
(cd "$app" && PATH="$root/usr/local/bin:$PATH" npm ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null)
rm -rf "$app/node_modules/.package-lock.json"
cp -r dist/src dist/assets dist/native "$app/dist/"
find "$app/dist" -name '*.map' -delete
cp -r examples/pkgs "$app/examples/"
ln -s /app/dist/src/cli.js "$root/usr/local/bin/nixery"
chmod 0755 "$app/dist/src/cli.js"
# The user the registry runs as, and what it writes: /nix (single-user Nix, its store and state),
# /tmp and the storage. All three are volumes, so the root filesystem can be read-only.
echo "nixery:x:$UID_GID:$UID_GID:nixery-ts:/tmp:/usr/sbin/nologin" >> "$root/etc/passwd"
echo "nixery:x:$UID_GID:" >> "$root/etc/group"
echo "nixery:*:0:0:99999:7:::" >> "$root/etc/shadow"
mkdir -p "$root/nix/store" "$root/nix/var/nix" "$root/var/lib/nixery/storage" "$root/etc/nix"
chown -R "$UID_GID:$UID_GID" "$root/nix" "$root/var/lib/nixery"
chmod 1777 "$root/tmp"
# In a container Nix cannot make its build sandbox (no user namespaces under the restricted
# profile), and single-user Nix has no build users.
printf 'sandbox = false\nbuild-users-group =\n' > "$root/etc/nix/nix.conf"

# 3. One layer: sorted, every mtime SOURCE_DATE_EPOCH (a cached root filesystem made at another
#    time gives the same bytes), numeric owners, no atime/ctime, gzip without name or time.
layout="$tree/oci"
mkdir -p "$layout/blobs/sha256"
(cd "$root" && tar --sort=name --numeric-owner --format=posix \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  --mtime="@$SOURCE_DATE_EPOCH" -cf - .) > "$tree/layer.tar"
diff_id=$(sha256sum < "$tree/layer.tar" | cut -c1-64)
gzip -n -6 < "$tree/layer.tar" > "$tree/layer.tar.gz"
rm "$tree/layer.tar"
blob() { # file → digest, moved into the layout
  local d; d=$(sha256sum < "$1" | cut -c1-64); mv "$1" "$layout/blobs/sha256/$d"; echo "$d"
}
layer=$(blob "$tree/layer.tar.gz")
layer_size=$(stat -c %s "$layout/blobs/sha256/$layer")
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
export version revision source_url created diff_id key UID_GID
node - > "$tree/config.json" <<'JS'
const e = process.env;
const labels = {
  'org.opencontainers.image.title': 'nixery-ts',
  'org.opencontainers.image.description': 'A container registry that builds images on demand from Nix packages',
  'org.opencontainers.image.version': e.version,
  'org.opencontainers.image.revision': e.revision,
  'org.opencontainers.image.source': e.source_url,
  'org.opencontainers.image.licenses': 'Apache-2.0',
  'org.opencontainers.image.created': e.created,
  'dev.nixery-ts.build-key': e.key,
};
process.stdout.write(JSON.stringify({
  created: e.created,
  architecture: process.arch === 'x64' ? 'amd64' : process.arch,
  os: 'linux',
  config: {
    User: `${e.UID_GID}:${e.UID_GID}`,
    Env: [
      'PATH=/usr/local/bin:/usr/bin:/bin',
      'HOME=/tmp',
      'XDG_CACHE_HOME=/tmp/.cache',
      'NODE_ENV=production',
      'STORAGE_PATH=/var/lib/nixery/storage',
      'PORT=8080',
    ],
    // tini reaps Nix's children and passes SIGTERM on to the registry, which drains.
    Entrypoint: ['/usr/bin/tini', '--', 'nixery'],
    Cmd: ['serve'],
    WorkingDir: '/app',
    ExposedPorts: { '8080/tcp': {} },
    Volumes: { '/nix': {}, '/tmp': {}, '/var/lib/nixery': {} },
    StopSignal: 'SIGTERM',
    Labels: labels,
    // Docker's extension (podman keeps it in docker format): /healthz answers while the process does.
    Healthcheck: {
      Test: ['CMD', 'node', '-e', "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"],
      Interval: 30e9, Timeout: 5e9, StartPeriod: 10e9, Retries: 3,
    },
  },
  rootfs: { type: 'layers', diff_ids: [`sha256:${e.diff_id}`] },
  history: [{ created: e.created, created_by: 'scripts/build-image.sh' }],
}));
JS
config=$(blob "$tree/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}],"annotations":{"org.opencontainers.image.version":"%s","org.opencontainers.image.revision":"%s","org.opencontainers.image.source":"%s"}}' \
  "$config" "$(stat -c %s "$layout/blobs/sha256/$config")" "$layer" "$layer_size" "$version" "$revision" "$source_url" > "$tree/manifest.json"
manifest_size=$(stat -c %s "$tree/manifest.json")
manifest=$(blob "$tree/manifest.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest" "$manifest_size" "$version" > "$layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
find "$layout" -print0 | xargs -0 touch -h -d "@$SOURCE_DATE_EPOCH"
(cd "$layout" && tar --sort=name --numeric-owner --owner=0 --group=0 --format=posix \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -cf - .) > "$out.new"
mv "$out.new" "$out"
echo "build-image: $out: manifest sha256:$manifest ($((layer_size / 1024 / 1024)) MB compressed)" >&2

if [ -n "$load" ]; then
  for tag in "$version" latest; do
    skopeo copy --quiet "oci-archive:$out:$version" "containers-storage:localhost/nixery-ts:$tag"
  done
  # Earlier builds the new one untagged.
  podman image prune -f --filter label=dev.nixery-ts.build-key >/dev/null
  echo "build-image: loaded localhost/nixery-ts:$version and :latest into podman" >&2
  if command -v docker >/dev/null && docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    daemon=()
    [ -n "${DOCKER_HOST:-}" ] && daemon=(--dest-daemon-host "$DOCKER_HOST")
    for tag in "$version" latest; do
      skopeo copy --quiet "${daemon[@]}" "oci-archive:$out:$version" "docker-daemon:localhost/nixery-ts:$tag"
    done
    echo "build-image: loaded localhost/nixery-ts:$version and :latest into docker" >&2
  fi
fi
echo "sha256:$manifest"
