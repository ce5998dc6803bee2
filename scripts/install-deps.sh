#!/usr/bin/env bash
# Installs what the registry and its tests need on Debian 12: Nix (single-user, from Debian),
# busybox-static (the example package set's programs), Debian's static busybox and bash for arm64
# (the set's aarch64-linux programs), QEMU user emulation (to run arm64 images in the tests), the
# real registry clients the end-to-end tests pull with, and Chromium for the explorer's browser
# test, mmdebstrap for scripts/build-image.sh, and libdeflate with a C compiler, make and python3
# for the gzip addon (native/, built by `npm run build`), and pigz for `npm run bench:pack`, and
# Ceph's S3 gateway with one monitor and one OSD (test/helpers/rgw.ts: a real S3 server that honours
# conditional writes, for the s3 backend's tests). Run as root; as another user it only says what is missing. Running it again changes nothing that is already in place.
set -euo pipefail
pkgs=(nix-bin busybox-static containerd runc skopeo umoci docker-registry podman nginx wrk git xz-utils apache2-utils docker.io openssl qemu-user-static binfmt-support chromium mmdebstrap util-linux libdeflate-dev gcc g++ make python3 pigz zstd)
# Without their recommends (ceph-mgr, ceph-mds, ceph-fuse and 50 Python packages the tests never
# start): 61 packages, 68 MB to download, 254 MB installed.
ceph_pkgs=(radosgw ceph-mon ceph-osd)
missing_of() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}
mapfile -t missing < <(missing_of "${pkgs[@]}")
mapfile -t missing_ceph < <(missing_of "${ceph_pkgs[@]}")
if [ ${#missing[@]} -gt 0 ] || [ ${#missing_ceph[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    [ ${#missing[@]} -eq 0 ] || echo "missing Debian packages: ${missing[*]} (run as root: apt-get install -y ${missing[*]})" >&2
    [ ${#missing_ceph[@]} -eq 0 ] || echo "missing Debian packages: ${missing_ceph[*]} (run as root: apt-get install -y --no-install-recommends ${missing_ceph[*]})" >&2
    exit 1
  fi
  echo "installing: ${missing[*]} ${missing_ceph[*]}" >&2
  apt-get update -qq
  [ ${#missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # No cluster is configured, so no Ceph daemon runs: the tests start their own, in a temp dir.
  [ ${#missing_ceph[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_ceph[@]}" >/dev/null
fi
# The example set's arm64 programs: Debian's arm64 packages, unpacked (not installed) under
# ARM64_ROOT, the default `arm64Root` of examples/pkgs/default.nix. A package is fetched again only
# when Debian has another version of it.
ARM64_ROOT=/var/lib/nixery-ts/arm64
arm64_pkgs=(busybox-static bash-static)
arm64_version() { apt-cache show --no-all-versions "$1:arm64" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1; }
arm64_stale() {
  local p
  for p in "${arm64_pkgs[@]}"; do
    [ -f "$ARM64_ROOT/$p/.version" ] || return 0
    [ "$(id -u)" -ne 0 ] && continue # cannot refresh anyway: what is there will do
    [ "$(cat "$ARM64_ROOT/$p/.version")" = "$(arm64_version "$p")" ] || return 0
  done
  return 1
}
if arm64_stale; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian's arm64 ${arm64_pkgs[*]} under $ARM64_ROOT (run scripts/install-deps.sh as root)" >&2
    exit 1
  fi
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -qq
  fi
  # Package lists fetched before arm64 was added have no arm64 entries.
  [ -n "$(arm64_version busybox-static)" ] || apt-get update -qq
  download=$(mktemp -d)
  trap 'rm -rf "$download"' EXIT
  # apt fetches as the _apt user when it can write the directory.
  chown _apt "$download" 2>/dev/null || true
  for p in "${arm64_pkgs[@]}"; do
    version=$(arm64_version "$p")
    [ -n "$version" ] || { echo "Debian has no $p for arm64 in the package lists" >&2; exit 1; }
    [ "$(cat "$ARM64_ROOT/$p/.version" 2>/dev/null)" = "$version" ] && continue
    echo "unpacking $p $version (arm64) into $ARM64_ROOT/$p" >&2
    (cd "$download" && apt-get download -qq "$p:arm64=$version")
    rm -rf "$ARM64_ROOT/$p.new" && mkdir -p "$ARM64_ROOT/$p.new"
    dpkg-deb -x "$download/${p}_"*"_arm64.deb" "$ARM64_ROOT/$p.new"
    echo "$version" > "$ARM64_ROOT/$p.new/.version"
    rm -rf "$ARM64_ROOT/$p" && mv "$ARM64_ROOT/$p.new" "$ARM64_ROOT/$p"
  done
fi
# Nix from Debian runs single-user as root here; there is no binary cache to reach.
mkdir -p /nix/var/nix/profiles /nix/var/nix/gcroots 2>/dev/null || true
# Node >= 22 for npm ci and everything after (scripts/node-env.sh: Node 24 into .node/ if older).
source "$(dirname "$0")/node-env.sh"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund >/dev/null
fi
