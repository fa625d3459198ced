#!/usr/bin/env bash
# The capacity reporter's costs, in one run (release build):
#  1. one capacity scan and one usage reading on this host, beside the scan interval they run in;
#  2. `node-agent run` idle with the reporter on a fresh embedded ledger (it produces the blocks,
#     registers, watches contracts, runs the provisioner and its API with no deployments, reports;
#     the shard server off), CPU and RSS over IDLE_SECONDS from /proc/<pid>/stat
#     and /proc/<pid>/status, beside `node-agent ledger produce` (same binary, same ledger, block
#     production only) measured the same way: the ratio is what the agent adds.
# Needs root (the agent's state directory, like production). BLOCK_MS sets the ledger's block time.
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE_SECONDS="${IDLE_SECONDS:-60}"
BLOCK_MS="${BLOCK_MS:-6000}"
SCAN_INTERVAL_S="${SCAN_INTERVAL_S:-300}"
swift build -c release --product node-agent ${SCRATCH:+--scratch-path "$SCRATCH"} >/dev/null
swift build -c release --product grid-twin ${SCRATCH:+--scratch-path "$SCRATCH"} >/dev/null
swift build -c release --product capacity-bench ${SCRATCH:+--scratch-path "$SCRATCH"} >/dev/null
bin="$(swift build -c release --show-bin-path ${SCRATCH:+--scratch-path "$SCRATCH"})"

work="$(mktemp -d)"
agent=""
cleanup() { [ -n "$agent" ] && kill "$agent" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

scan="$("$bin/capacity-bench" "$work" /var/lib)"
echo "$scan"
scan_us="$(awk '/^capacity_scan_us/ {print $2}' <<<"$scan")"
usage_us="$(awk '/^usage_read_us/ {print $2}' <<<"$scan")"
awk -v s="$scan_us" -v u="$usage_us" -v i="$SCAN_INTERVAL_S" \
    'BEGIN { printf "scan_cycle_share_of_interval %.6f%% (scan + usage every %d s)\n", (s + u) / (i * 1e6) * 100, i }'

config="$work/etc/config.toml"
"$bin/node-agent" init --config "$config" --state-dir "$work/state" --ledger "$work/ledger.sqlite" --farm-id 1 >/dev/null
api_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
sed -i -e "s/block_time_ms = 6000/block_time_ms = $BLOCK_MS/" -e 's/^enabled = true/enabled = false/' \
    -e "s/api_listen = \"127.0.0.1:2021\"/api_listen = \"127.0.0.1:$api_port\"/" "$config"

# ticks (utime + stime) and VmRSS in KiB of a process
sample() { awk '{ print $14 + $15 }' "/proc/$1/stat"; awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
measure() {  # pid label
    local before after ticks rss
    before=($(sample "$1")); sleep "$IDLE_SECONDS"; after=($(sample "$1"))
    ticks=$((after[0] - before[0])); rss=${after[1]}
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v s="$IDLE_SECONDS" -v r="$rss" -v l="$2" \
        'BEGIN { printf "%s_cpu_percent %.3f\n%s_rss_mib %.1f\n", l, t / hz / s * 100, l, r / 1024 }'
}

"$bin/node-agent" run --config "$config" >"$work/agent.log" 2>&1 &
agent=$!
for _ in $(seq 1 100); do [ -f "$work/ledger.sqlite" ] && break; sleep 0.1; done
"$bin/grid-twin" twin create --key "$work/farmer.key" --ledger "$work/ledger.sqlite" >/dev/null
"$bin/grid-twin" farm create --name bench --key "$work/farmer.key" --ledger "$work/ledger.sqlite" >/dev/null
for _ in $(seq 1 600); do grep -q "reporting capacity and uptime" "$work/agent.log" && break; sleep 0.1; done
grep -q "reporting capacity and uptime" "$work/agent.log" || { echo "the agent did not start reporting:"; cat "$work/agent.log"; exit 1; }
sleep 2
agent_figures="$(measure "$agent" agent_with_reporter)"
echo "$agent_figures"
"$bin/node-agent" report status --config "$config" | sed 's/^/  /'
kill "$agent"; wait "$agent" || true; agent=""

"$bin/node-agent" ledger produce --config "$config" >"$work/produce.log" 2>&1 &
agent=$!
sleep 3
base_figures="$(measure "$agent" ledger_produce_only)"
echo "$base_figures"
kill "$agent"; wait "$agent" || true; agent=""

awk '{ v[$1] = $2 } END {
    printf "ratio_cpu %.2fx  ratio_rss %.2fx  (agent with reporter / block production alone)\n",
        v["agent_with_reporter_cpu_percent"] / (v["ledger_produce_only_cpu_percent"] > 0 ? v["ledger_produce_only_cpu_percent"] : 0.001),
        v["agent_with_reporter_rss_mib"] / v["ledger_produce_only_rss_mib"] }' <<<"$agent_figures
$base_figures"
