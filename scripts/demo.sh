#!/usr/bin/env bash
# Sets up this machine, builds the agent, and runs a short version of the grid scenario on the
# embedded ledger: three farm nodes, each an agent in its own network namespace; a user deploys
# shard namespaces on all three and a web container on one, stores a file across them (k=2, m=1),
# survives a node killed with SIGKILL, and cancels; the ledger shows the nodes' reports and the bills.
# Each step prints how long it took. Everything it creates is removed on exit (DEMO_KEEP=1 keeps
# the files in $DEMO_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (sudo scripts/demo.sh): the agents create namespaces and cgroups" >&2; exit 1; }
scripts/setup.sh
echo "demo: building (a first build takes a few minutes)"
swift build --product node-agent 2>&1 | tail -n 1
swift build --product grid-twin 2>&1 | tail -n 1
bin="$(swift build --show-bin-path)"
work="${DEMO_DIR:-/tmp/node-agent-demo}"
nodes=(a b c)
bridge=demo-br0
net=10.77.0
export GRID_LEDGER="$work/ledger.sqlite"

declare -A pid
cleanup() {
    set +e
    for n in "${nodes[@]}"; do
        [ -n "${pid[$n]:-}" ] && kill -KILL "${pid[$n]}" 2>/dev/null && wait "${pid[$n]}" 2>/dev/null
        # Containers outlive their agent by design; the demo's must not outlive the demo.
        for id in $(ls "$work/$n/state/runtime" 2>/dev/null); do
            "$bin/node-agent" runtime delete --force --root "$work/$n/state/runtime" "$id" >/dev/null 2>&1
        done
        for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^d$n-"); do ip netns del "$ns"; done
        ip netns del "demo-$n" 2>/dev/null
    done
    grep " $work/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
    ip link del "$bridge" 2>/dev/null
    [ "${DEMO_KEEP:-0}" = 1 ] || rm -rf "$work"
    true
}
trap cleanup EXIT
cleanup
mkdir -p "$work"

t0=$(date +%s%N); tstep=$t0
step() {
    local now; now=$(date +%s%N)
    echo; echo "== [$(( (now - t0) / 1000000 )) ms, previous step $(( (now - tstep) / 1000000 )) ms] $*"
    tstep=$now
}
# Waits up to $1 seconds for the command in the remaining arguments to succeed.
wait_for() { local limit=$1; shift; for _ in $(seq $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
node_id() { sed -n 's/.*"nodeID" : \([0-9]*\).*/\1/p' "$work/$1/state/node.json"; }
address() { case $1 in a) echo "$net.11";; b) echo "$net.12";; c) echo "$net.13";; esac; }
# nsenter, not `ip netns exec`: that one also mounts a fresh /sys, without the cgroup hierarchy
# the agent puts containers in.
start_agent() {
    nsenter --net="/run/netns/demo-$1" "$bin/node-agent" run --config "$work/$1/config.toml" >> "$work/$1/agent.log" 2>&1 &
    pid[$1]=$!
}
fail() { echo "demo: $*" >&2; for n in "${nodes[@]}"; do echo "--- node $n log (tail)"; tail -n 20 "$work/$n/agent.log" 2>/dev/null; done; exit 1; }

step "three farm nodes: network namespaces demo-a/b/c on bridge $bridge ($net.0/24), one agent each"
ip link add "$bridge" type bridge
ip addr add "$net.1/24" dev "$bridge"
ip link set "$bridge" up
for n in "${nodes[@]}"; do
    ip netns add "demo-$n"
    ip link add "demo-$n-h" type veth peer name eth0 netns "demo-$n"
    ip link set "demo-$n-h" master "$bridge" up
    ip -n "demo-$n" addr add "$(address "$n")/24" dev eth0
    ip -n "demo-$n" link set eth0 up
    ip -n "demo-$n" link set lo up
    ip -n "demo-$n" route add default via "$net.1"
    mkdir -p "$work/$n"
    "$bin/node-agent" init --config "$work/$n/config.toml" --state-dir "$work/$n/state" --ledger "$GRID_LEDGER" --farm-id 1 >/dev/null
    # Half-second blocks and a bill every 10 blocks, so the ledger shows work within the demo; the
    # twin API on the node's address; admin socket and network names of its own per agent.
    sed -i -e 's/^block_time_ms = .*/block_time_ms = 500/' -e 's/^billing_period_blocks = .*/billing_period_blocks = 10/' \
        -e 's/^api_listen = .*/api_listen = "0.0.0.0:2021"/' -e "s|^socket = .*|socket = \"$work/$n/admin.sock\"|" \
        -e "s/^prefix = .*/prefix = \"d$n\"/" -e "s/^table = .*/table = \"node_agent_demo_$n\"/" "$work/$n/config.toml"
    start_agent "$n"
    echo "node $n: $(address "$n"), state in $work/$n/state, log $work/$n/agent.log"
done
wait_for 15 test -f "$GRID_LEDGER" || fail "the agents did not create the ledger"

step "a farmer creates a twin and farm 1 with grid-twin; the agents register their nodes"
"$bin/grid-twin" twin create --key "$work/farmer.key"
"$bin/grid-twin" farm create --name demo_farm --key "$work/farmer.key"
for n in "${nodes[@]}"; do wait_for 30 test -f "$work/$n/state/node.json" || fail "node $n did not register"; done
"$bin/grid-twin" nodes

step "a user creates a twin and funds it"
"$bin/grid-twin" twin create --key "$work/user.key"
"$bin/grid-twin" fund 100 --key "$work/user.key"
export GRID_TWIN_KEY="$work/user.key"

placement="["
for n in "${nodes[@]}"; do
    step "grid-twin deploy: a 256 MiB shard namespace on node $n (contract, signature, sealed delivery, wait until it runs)"
    cat > "$work/ns-$n.json" <<JSON
{"version": 0, "twin_id": 0, "metadata": "", "description": "shards on $n", "expiration": 0,
 "signature_requirement": {"requests": [{"twin_id": 0, "required": true, "weight": 1}], "weight_required": 1, "signatures": [], "signature_style": ""},
 "workloads": [{"version": 0, "name": "shards", "type": "zdb", "data": {"size": 268435456, "mode": "user", "password": "secret-$n", "public": false}}]}
JSON
    "$bin/grid-twin" deploy "$work/ns-$n.json" --node "$(node_id "$n")" --api "http://$(address "$n"):2021" --out "$work/ns-$n.signed.json"
    contract=$(sed -n 's/.*"contract_id" : \([0-9]*\).*/\1/p' "$work/ns-$n.signed.json")
    placement+="{\"node\": \"$n\", \"address\": \"$(address "$n"):9900\", \"namespace\": \"wl-$contract-shards\", \"password\": \"secret-$n\"},"
done
printf '%s]\n' "${placement%,}" > "$work/placement.json"
chmod 600 "$work/placement.json"

step "grid-twin shard put: a 32 MiB file compressed, encrypted and erasure-coded across a, b and c (k=2, m=1)"
head -c 16M /dev/urandom > "$work/file.bin"
yes "a compressible line of the user's file" | head -c 16M >> "$work/file.bin"
shard=(--metadata-dir "$work/files" --placement "$work/placement.json")
"$bin/grid-twin" shard put "$work/file.bin" -k 2 -m 1 "${shard[@]}" | tee "$work/put.txt"
file_id=$(sed -n 's/^stored .* as \([0-9a-f]*\)$/\1/p' "$work/put.txt")

step "grid-twin deploy: a web container on node a (busybox image built here, digest-checked) with a volume and port 8080 published"
mkdir -p "$work/image/bin" "$work/image/data" "$work/image/tmp" "$work/image/proc" "$work/image/dev" "$work/image/sys" "$work/image/etc"
cp /bin/busybox "$work/image/bin/busybox"
for applet in sh httpd sleep echo; do ln -sf busybox "$work/image/bin/$applet"; done
tar -C "$work/image" -cf "$work/web-image.tar" .
digest=$(b2sum -l 256 "$work/web-image.tar" | cut -d' ' -f1)
cat > "$work/web.json" <<JSON
{"version": 0, "twin_id": 0, "metadata": "", "description": "web", "expiration": 0,
 "signature_requirement": {"requests": [{"twin_id": 0, "required": true, "weight": 1}], "weight_required": 1, "signatures": [], "signature_style": ""},
 "workloads": [
   {"version": 0, "name": "site", "type": "volume", "data": {"size": 33554432}},
   {"version": 0, "name": "web", "type": "container", "data": {"image": "file://$work/web-image.tar", "image_digest": "$digest",
     "entrypoint": "/bin/sh", "args": ["-c", "echo 'hello from a container fulfilling a contract' > /site/index.html; exec httpd -f -p 8000 -h /site"],
     "env": {}, "compute_capacity": {"cpu": 1, "memory": 67108864}, "mounts": [{"name": "site", "mountpoint": "/site"}], "root_size": 67108864,
     "network": {"ports": [{"protocol": "tcp", "port": 8000, "public_port": 8080}], "egress": {"mode": "none"}}}}]}
JSON
"$bin/grid-twin" deploy "$work/web.json" --node "$(node_id a)" --api "http://$(address a):2021" --out "$work/web.signed.json"
web_contract=$(sed -n 's/.*"contract_id" : \([0-9]*\).*/\1/p' "$work/web.signed.json")
fetch() { python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())' "$1"; }
wait_for 10 fetch "http://$(address a):8080/" || fail "the published port does not answer"
echo "GET http://$(address a):8080/ -> $(fetch "http://$(address a):8080/")"

step "a deployment changed after its contract was made is refused with the reason"
sed 's/shards on a/shards on a, edited/' "$work/ns-a.signed.json" > "$work/tampered.json"
"$bin/grid-twin" deployment send "$work/tampered.json" --api "http://$(address a):2021" 2>&1 | head -n 1 || true

step "node c's agent is killed (SIGKILL): the file comes back from a and b alone"
kill -KILL "${pid[c]}"; wait "${pid[c]}" 2>/dev/null || true
"$bin/grid-twin" shard get "$file_id" -o "$work/file.restored" --timeout 5 "${shard[@]}"
cmp "$work/file.bin" "$work/file.restored" && echo "the restored file is identical to the original"

step "node c restarts and re-adopts its namespace"
start_agent c
wait_for 30 sh -c "printf 'PING\n' | redis-cli -h $(address c) -p 9900 | grep -q PONG" || fail "node c's shard server did not come back"
"$bin/grid-twin" shard check "$file_id" "${shard[@]}" || true

step "billing: every 10 blocks the ledger charges each contract for the resources its node reported"
wait_for 20 sh -c "'$bin/grid-twin' events --contract $web_contract --last 100 | grep -q ContractBilled" || echo "demo: no bill for the web container yet"
"$bin/grid-twin" events --contract "$web_contract" --last 100

step "node-agent status on node a (what the farmer sees)"
"$bin/node-agent" status --config "$work/a/config.toml" || true

step "the user cancels every contract: the nodes remove every workload and free the capacity"
for f in "$work"/ns-?.signed.json "$work/web.signed.json"; do
    "$bin/grid-twin" contract cancel --id "$(sed -n 's/.*"contract_id" : \([0-9]*\).*/\1/p' "$f")"
done
wait_for 30 sh -c "[ -z \"\$(ls '$work/a/state/runtime' 2>/dev/null)\" ]" || fail "the container was not removed"
fetch "http://$(address a):8080/" >/dev/null 2>&1 && fail "the canceled container still answers" || echo "port 8080 on node a is closed again"
"$bin/grid-twin" deployment changes "$web_contract" --api "http://$(address a):2021"

step "the ledger: uptime reports from the three nodes, used resources and the bills they produced"
events=$("$bin/grid-twin" events --last 1000)
echo "$events" | grep NodeUptimeReported || true
echo "$events" | grep -E "UpdatedUsedResources|NodeContractCanceled" | tail -n 8 || true
echo "$events" | grep ContractBilled || true
"$bin/grid-twin" twin show

step "stop the agents (SIGTERM); workloads would keep running, these were canceled"
for n in "${nodes[@]}"; do kill -TERM "${pid[$n]}"; done
for n in "${nodes[@]}"; do wait "${pid[$n]}" 2>/dev/null || true; pid[$n]=""; done
step "done"
