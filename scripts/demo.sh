#!/usr/bin/env bash
# Sets up this machine, builds the agent and runs it on the embedded ledger in a scratch directory.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (sudo scripts/demo.sh): the agent creates namespaces and cgroups" >&2; exit 1; }
scripts/setup.sh
echo "demo: building (a first build takes a few minutes)"
swift build -c release --product node-agent 2>&1 | tail -n 1
bin="$(swift build -c release --show-bin-path)/node-agent"
work="${DEMO_DIR:-/tmp/node-agent-demo}"
rm -rf "$work"
mkdir -p "$work"
config="$work/etc/config.toml"

echo; echo "== node-agent init: the node's identity and a default config"
"$bin" init --config "$config" --state-dir "$work/state"
sed -i "s|^ledger_path = .*|ledger_path = \"$work/ledger.sqlite\"|" "$config"

echo; echo "== node-agent doctor: can this host run workloads?"
"$bin" doctor --config "$config" || echo "demo: doctor found a problem above; the agent would refuse work here"

echo; echo "== node-agent run: start, then stop with SIGTERM after ${DEMO_SECONDS:-3} s"
"$bin" run --config "$config" --log-level info &
agent=$!
sleep "${DEMO_SECONDS:-3}"
kill -TERM "$agent"
wait "$agent"
echo "demo: agent stopped cleanly (exit $?). State is in $work."
