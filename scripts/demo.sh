#!/usr/bin/env bash
# Sets up this machine, builds the agent, and runs its main job on the embedded ledger in a scratch
# directory: an agent registers its node, a farmer and a user act through grid-twin, the user deploys
# storage workloads that the agent verifies and provisions, and cancels them again.
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

step "a user creates a twin and funds it"
"$bin/grid-twin" twin create --key "$work/user.key"
"$bin/grid-twin" fund 10 --key "$work/user.key"
export GRID_TWIN_KEY="$work/user.key" GRID_NODE_API="http://127.0.0.1:2021"

step "the user writes a deployment: a 1 GiB shard namespace and a 64 MiB volume"
cat > "$work/storage.json" <<'JSON'
{"version": 0, "twin_id": 0, "metadata": "", "description": "demo storage", "expiration": 0,
 "signature_requirement": {"requests": [{"twin_id": 0, "required": true, "weight": 1}], "weight_required": 1,
                           "signatures": [], "signature_style": ""},
 "workloads": [
   {"version": 0, "name": "shards", "type": "zdb", "data": {"size": 1073741824, "mode": "user", "password": "demo-secret", "public": false}},
   {"version": 0, "name": "data", "type": "volume", "data": {"size": 67108864}}]}
JSON
"$bin/grid-twin" deployment hash "$work/storage.json"

step "grid-twin deploy: contract on chain, signature, sealed delivery to node $node_id, wait for the workloads"
"$bin/grid-twin" deploy "$work/storage.json" --node "$node_id" --out "$work/storage.signed.json"
contract=$(sed -n 's/.*"contract_id" : \([0-9]*\).*/\1/p' "$work/storage.signed.json")
echo "the namespace answers on the node's shard server with the deployment's password:"
printf 'SELECT wl-%s-shards demo-secret\nSET greeting "hello from contract %s"\nGET greeting\n' "$contract" "$contract" | redis-cli -p 9900 | sed 's/^/  /'
echo "the volume is an ext4 filesystem in an image of exactly 64 MiB (df shows what ext4 leaves usable):"
df -h "$work/state/volumes/wl-$contract-data" | sed 's/^/  /'

step "a deployment that breaks the rules is refused with the reason"
sed 's/"name": "data"/"name": "bad-name"/; s/demo storage/demo bad/' "$work/storage.json" > "$work/bad.json"
"$bin/grid-twin" deploy "$work/bad.json" --node "$node_id" 2>&1 | head -n 1 || true

step "the user cancels the contract: the node removes every workload and frees the capacity"
"$bin/grid-twin" contract cancel --id "$contract"
wait_for 20 sh -c "! mountpoint -q '$work/state/volumes/wl-$contract-data'" || { echo "demo: the volume was not removed"; exit 1; }
"$bin/grid-twin" deployment changes "$contract"
"$bin/grid-twin" events --last 6

step "stop the agent (SIGTERM)"
kill -TERM "$agent"
wait "$agent"
agent=""
echo "agent log:"
sed 's/^/  /' "$work/agent.log"
step "done. Everything is in $work"
