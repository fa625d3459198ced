#!/usr/bin/env bash
# Events and storage items decoded per second through the runtime-metadata decoder: ours (release
# build) against Python's scalecodec on the same bytes, in one run. Inputs are made by scalecodec
# from the real metadata fixture: one block of System.Events (contract, uptime, billing, balance and
# system events mixed) and one SmartContractModule.Contracts value.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${SECONDS_EACH:-2}"
META=Tests/ChainClientTests/Fixtures/chainMeta.json
inputs="$(mktemp)"
trap 'rm -f "$inputs"' EXIT
python3 bench/TFChainBench/scalecodec_bench.py "$META" "$inputs" "$SECONDS_EACH" > "$inputs.py"
swift build -c release --product tfchain-bench ${SCRATCH:+--scratch-path "$SCRATCH"} >/dev/null
bin="$(swift build -c release --show-bin-path ${SCRATCH:+--scratch-path "$SCRATCH"})/tfchain-bench"
"$bin" "$META" "$inputs" "$SECONDS_EACH" > "$inputs.swift"
cat "$inputs.py" "$inputs.swift"
python3 - "$inputs.py" "$inputs.swift" <<'PY'
import sys
vals = {}
for path in sys.argv[1:]:
    for line in open(path):
        k, v = line.split()
        vals[k] = float(v)
print("ratio_events %.1fx" % (vals["swift_events_per_s"] / vals["python_events_per_s"]))
print("ratio_storage_items %.1fx" % (vals["swift_storage_items_per_s"] / vals["python_storage_items_per_s"]))
PY
rm -f "$inputs.py" "$inputs.swift"
