#!/usr/bin/env bash
# Installs the Debian 12 packages the agent builds and runs with. Idempotent and non-interactive.
set -euo pipefail
packages=(pkg-config libsodium-dev libseccomp-dev libcap-dev libzstd-dev libsqlite3-dev redis-tools redis-server python3-redis busybox-static runc)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v swift >/dev/null || { echo "setup: a Swift 6 toolchain must be on PATH (https://www.swift.org/install/linux/debian/12/)" >&2; exit 1; }
