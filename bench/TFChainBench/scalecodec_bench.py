#!/usr/bin/env python3
"""The Python side of bench/tfchain-bench.sh: makes the inputs with scalecodec and times
scalecodec decoding them. Usage: scalecodec_bench.py METADATA_JSON INPUTS_OUT SECONDS"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "Tests", "ChainClientTests", "tfchain_double"))
from tfchain_double import Chain  # noqa: E402
import chainmeta  # noqa: E402

seconds = float(sys.argv[3])
chain = Chain(146, 2, 16)
contract = chain.contract_value(7, 1, 3, "a" * 32, b'{"version":1}', 1, {"GracePeriod": 99})
weight = {"ref_time": 1000, "proof_size": 0}
records = [{"phase": "Initialization", "event": {"TFTPriceModule": {"PriceStored": 42}}, "topics": []}]
for i in range(10):
    phase = {"ApplyExtrinsic": i + 1}
    records += [
        {"phase": phase, "event": {"SmartContractModule": {"ContractCreated": contract}}, "topics": []},
        {"phase": phase, "event": {"SmartContractModule": {"UpdatedUsedResources": {"contract_id": i, "used": {"hru": 1, "sru": 2, "cru": 3, "mru": 4}}}}, "topics": []},
        {"phase": phase, "event": {"TfgridModule": {"NodeUptimeReported": (1, 1700000000, 3600)}}, "topics": []},
        {"phase": phase, "event": {"Balances": {"Deposit": {"who": "0x" + "22" * 32, "amount": 5}}}, "topics": []},
        {"phase": phase, "event": {"System": {"ExtrinsicSuccess": {"dispatch_info": {"weight": weight, "class": "Normal", "pays_fee": "Yes"}}}}, "topics": []},
    ]
events = chain.encode(18, records)
contract_bytes = chain.encode(105, contract)
with open(sys.argv[2], "w") as f:
    f.write("events 0x%s\ncontract 0x%s\n" % (events.hex(), contract_bytes.hex()))


def measure(body):
    items = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        items += body()
    return items / (time.perf_counter() - start)


def decode_events():
    return len(chainmeta.decode(chain.rc, chain.md, "scale_info::18", events))


def decode_contract():
    chainmeta.decode(chain.rc, chain.md, "scale_info::105", contract_bytes)
    return 1


print("python_events_per_s %d" % measure(decode_events))
print("python_storage_items_per_s %d" % measure(decode_contract))
