#!/usr/bin/env bash
# Installs the Debian 12 packages the agent builds and runs with. Idempotent and non-interactive.
set -euo pipefail
# systemd: its systemd-analyze verifies the unit file in the tests.
packages=(pkg-config libsodium-dev libseccomp-dev libcap-dev libzstd-dev libarchive-dev libsqlite3-dev libxxhash-dev libisal-dev redis-tools redis-server python3-redis python3-pip busybox-static runc systemd iproute2 nftables iperf3 python3)
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
# The TFChain test double and benchmark judge our SCALE codec with independent Python libraries.
python3 -c "import scalecodec, websockets, nacl, xxhash" 2>/dev/null || {
  echo "setup: installing the TFChain test double's Python libraries"
  # Debian 12's python3 is externally managed (PEP 668); these go to /usr/local, apart from apt's.
  python3 -m pip install --quiet --break-system-packages "scalecodec==1.2.11" "websockets>=12,<14" "PyNaCl>=1.5" "xxhash>=3" 2>/dev/null ||
    python3 -m pip install --quiet "scalecodec==1.2.11" "websockets>=12,<14" "PyNaCl>=1.5" "xxhash>=3"
}
command -v swift >/dev/null || { echo "setup: a Swift 6 toolchain must be on PATH (https://www.swift.org/install/linux/debian/12/)" >&2; exit 1; }
