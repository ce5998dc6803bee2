#!/usr/bin/env bash
# Installs what the registry and its tests need on Debian 12: Nix (single-user, from Debian),
# busybox-static (the example package set's programs), the real registry clients the end-to-end
# tests pull with, and Chromium for the explorer's browser test. Run as root; as another user it
# only says what is missing.
set -euo pipefail
pkgs=(nix-bin busybox-static containerd runc skopeo umoci docker-registry podman nginx wrk git xz-utils apache2-utils docker.io openssl chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root: apt-get install -y ${missing[*]})" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Nix from Debian runs single-user as root here; there is no binary cache to reach.
mkdir -p /nix/var/nix/profiles /nix/var/nix/gcroots 2>/dev/null || true
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund >/dev/null
fi
