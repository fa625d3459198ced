#!/usr/bin/env bash
# Farmer operations cost (issue 10): `node-agent status` round trip over the admin socket and the
# agent's RSS, idle and with 100 zdb deployments, next to the socket's trivial /v1/ping and the idle
# agent's RSS measured in the same run. Needs root (the agent mounts and serves as it does in production).
#
#   bench/status-bench.sh                 # release build into .build-bench, then the run
#   DEPLOYMENTS=200 bench/status-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="${SCRATCH:-.build-bench}"
swift build -c release --scratch-path "$scratch" --product node-agent >&2
swift build -c release --scratch-path "$scratch" --product grid-twin >&2
swift build -c release --scratch-path "$scratch" --product status-bench >&2
bin="$(swift build -c release --scratch-path "$scratch" --show-bin-path)"
"$bin/status-bench" "$bin/node-agent" "${DEPLOYMENTS:-100}"
