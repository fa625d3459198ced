#!/usr/bin/env python3
"""Prints the byte-level vectors in TFChainVectorTests.swift, made with scalecodec, xxhash,
hashlib and PyNaCl from the fixture metadata (run it to check or regenerate them)."""
import hashlib
import os
import sys

import nacl.signing
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chainmeta  # noqa: E402
from tfchain_double import Chain, u32, u64  # noqa: E402

chain = Chain(146, 2, 16)
rc, md = chain.rc, chain.md
print("twox128(System)", chain.key("System", "Number")[2:34])
print("System.Events", chain.key("System", "Events"))
print("System.Account prefix", chain.key("System", "Account", b"\x00" * 32)[:66])
print("Contracts(7)", chain.key("SmartContractModule", "Contracts", u64(7)))
print("ActiveNodeContracts(1)", chain.key("SmartContractModule", "ActiveNodeContracts", u32(1)))
print("Twins(2)", chain.key("TfgridModule", "Twins", u32(2)))
contract = chain.contract_value(7, 1, 3, "a" * 32, b"hello", 1, {"GracePeriod": 99})
print("Contract", chain.encode(105, contract).hex())
records = [
    {"phase": "Initialization", "event": {"TFTPriceModule": {"PriceStored": 42}}, "topics": []},
    {"phase": {"ApplyExtrinsic": 1}, "event": {"SmartContractModule": {"ContractCreated": contract}}, "topics": []},
    {"phase": {"ApplyExtrinsic": 1}, "event": {"SmartContractModule": {"NodeContractCanceled": {"contract_id": 7, "node_id": 1, "twin_id": 3}}}, "topics": []},
    {"phase": {"ApplyExtrinsic": 2}, "event": {"TfgridModule": {"NodeUptimeReported": (1, 1700000000, 3600)}}, "topics": []},
    {"phase": {"ApplyExtrinsic": 2}, "event": {"System": {"ExtrinsicFailed": {"dispatch_error": {"Module": {"index": 25, "error": "0x" + bytes([chain.error_index("TfgridModule", "InvalidTimestampHint"), 0, 0, 0]).hex()}},
                                                                                "dispatch_info": {"weight": {"ref_time": 1, "proof_size": 2}, "class": "Normal", "pays_fee": "Yes"}}}}, "topics": ["0x" + "33" * 32]},
    {"phase": "Finalization", "event": {"Balances": {"Deposit": {"who": "0x" + "22" * 32, "amount": 5}}}, "topics": []},
]
print("Events", chain.encode(18, records).hex())
print("InvalidTimestampHint index", chain.error_index("TfgridModule", "InvalidTimestampHint"))

# A signed report_uptime_v2, built with scalecodec and signed with PyNaCl.
seed = bytes(range(1, 33))
key = nacl.signing.SigningKey(seed)
pub = bytes(key.verify_key)
genesis = bytes([0xAA] * 32)
call = {"call_module": "TfgridModule", "call_function": "report_uptime_v2", "call_args": {"uptime": 3600, "timestamp_hint": 1700000000}}
call_bytes = bytes(rc.create_scale_object("Call", metadata=md).encode(call).data)
print("call", call_bytes.hex())
nonce = 5
payload = (call_bytes + b"\x00" + bytes(rc.create_scale_object("Compact<u32>").encode(nonce).data)
           + bytes(rc.create_scale_object("Compact<Balance>").encode(0).data) + u32(146) + u32(2) + genesis + genesis)
if len(payload) > 256:
    payload = hashlib.blake2b(payload, digest_size=32).digest()
sig = key.sign(payload).signature
xt = rc.create_scale_object("Extrinsic", metadata=md)
data = xt.encode({"account_id": "0x" + pub.hex(), "signature_version": 0, "signature": "0x" + sig.hex(),
                  "call_function": "report_uptime_v2", "call_module": "TfgridModule",
                  "call_args": {"uptime": 3600, "timestamp_hint": 1700000000}, "era": "00", "nonce": nonce, "tip": 0})
print("pubkey", pub.hex())
print("extrinsic", data.to_hex())
