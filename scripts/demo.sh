#!/usr/bin/env bash
# Sets up this machine, builds the agent, and runs its main job on the embedded ledger in a scratch
# directory: an agent registers its node, a farmer and a user act through grid-twin, the agent picks
# up the user's contract from the chain, and drops it when it is cancelled.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (sudo scripts/demo.sh): the agent creates namespaces and cgroups" >&2; exit 1; }
scripts/setup.sh
echo "demo: building (a first build takes a few minutes)"
swift build --product node-agent 2>&1 | tail -n 1
swift build --product grid-twin 2>&1 | tail -n 1
bin="$(swift build --show-bin-path)"
work="${DEMO_DIR:-/tmp/node-agent-demo}"
rm -rf "$work"
mkdir -p "$work"
config="$work/etc/config.toml"
export GRID_LEDGER="$work/ledger.sqlite"
agent=""
cleanup() { [ -n "$agent" ] && kill -TERM "$agent" 2>/dev/null && wait "$agent" 2>/dev/null; true; }
trap cleanup EXIT

t0=$(date +%s%N)
step() { echo; echo "== [$(( ($(date +%s%N) - t0) / 1000000 )) ms] $*"; }
# Waits up to $1 seconds for the command in the remaining arguments to succeed.
wait_for() { local limit=$1; shift; for _ in $(seq $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

step "node-agent init: the node's identity and a config using a ledger in $work"
"$bin/node-agent" init --config "$config" --state-dir "$work/state" --ledger "$GRID_LEDGER" --farm-id 1
sed -i 's/^block_time_ms = .*/block_time_ms = 500/' "$config"

step "node-agent doctor: can this host run workloads?"
"$bin/node-agent" doctor --config "$config" || echo "demo: doctor found a problem above; the agent would refuse work here"

step "node-agent run: starts producing the ledger's blocks and waits for its farm (log: $work/agent.log)"
"$bin/node-agent" run --config "$config" > "$work/agent.log" 2>&1 &
agent=$!
wait_for 10 test -f "$GRID_LEDGER" || { echo "demo: the agent did not create the ledger"; cat "$work/agent.log"; exit 1; }

step "a farmer creates a twin and farm 1 with grid-twin"
"$bin/grid-twin" twin create --key "$work/farmer.key"
"$bin/grid-twin" farm create --name demo_farm --key "$work/farmer.key"
wait_for 20 test -f "$work/state/node.json" || { echo "demo: the node did not register"; cat "$work/agent.log"; exit 1; }
node_id=$(sed -n 's/.*"nodeID" : \([0-9]*\).*/\1/p' "$work/state/node.json")
echo "the agent registered node $node_id:"
"$bin/grid-twin" nodes

step "a user creates a twin, funds it, and reserves a deployment on node $node_id"
"$bin/grid-twin" twin create --key "$work/user.key"
"$bin/grid-twin" fund 10 --key "$work/user.key"
created_at=$(date +%s%N)
"$bin/grid-twin" contract create --node "$node_id" --hash 4e4d2e444d250e2dae5dc5a755a9750f --key "$work/user.key"
wait_for 20 grep -q 'msg="contracts changed"' "$work/agent.log" || { echo "demo: the agent did not see the contract"; exit 1; }
echo "the agent's watcher took the contract into its desired state $(( ($(date +%s%N) - created_at) / 1000000 )) ms after the call"
echo "(deploying its workloads arrives with the provisioner)"
"$bin/node-agent" ledger contracts --config "$config"

step "the user cancels the contract"
"$bin/grid-twin" contract cancel --id 1 --key "$work/user.key"
wait_for 20 sh -c "[ \$(grep -c 'msg=\"contracts changed\"' '$work/agent.log') -ge 2 ]" || { echo "demo: the agent did not see the cancellation"; exit 1; }
"$bin/grid-twin" events --last 8

step "stop the agent (SIGTERM)"
kill -TERM "$agent"
wait "$agent"
agent=""
echo "agent log:"
sed 's/^/  /' "$work/agent.log"
step "done. Everything is in $work"
