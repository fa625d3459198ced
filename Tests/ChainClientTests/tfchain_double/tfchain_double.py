#!/usr/bin/env python3
"""A TFChain node for the test suite, built on independent libraries.

Storage values and events are encoded by scalecodec (PyPI) from the real metadata fixture; storage
keys are hashed with the xxhash and hashlib modules; extrinsics are decoded by scalecodec and their
ed25519 signatures checked with PyNaCl. The Swift client is judged against these bytes, never
against its own encoder.

It serves JSON-RPC 2.0 over WebSocket on one or more loopback ports (the same chain on each, so a
client can fail over between them), produces a finalized block every --block-ms, and keeps the
state of the last --keep-blocks blocks (older state answers "State already discarded", as a pruning
node does). Methods named test_* drive it from the tests: create contracts, grace periods,
cancellations, drop connections, stall heads, close a port, upgrade the runtime, list what was
submitted. It prints "READY <port> <port> ..." once listening, and exits when stdin closes or on
SIGTERM, so a test that dies does not leave it running.
"""
import argparse
import asyncio
import hashlib
import json
import os
import signal
import sys
import time

import nacl.exceptions
import nacl.signing
import websockets
import xxhash
from scalecodec.base import ScaleBytes
from scalecodec.utils.ss58 import ss58_decode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chainmeta  # noqa: E402


def twox(data, n):
    return b"".join(xxhash.xxh64(data, seed=i).intdigest().to_bytes(8, "little") for i in range(n // 8))


def blake2_128_concat(data):
    return hashlib.blake2b(data, digest_size=16).digest() + data


def u32(v):
    return v.to_bytes(4, "little")


def u64(v):
    return v.to_bytes(8, "little")


class Chain:
    def __init__(self, spec_version, tx_version, keep_blocks):
        self.rc, self.md, self.meta_hex = chainmeta.load()
        self.spec_version = spec_version
        self.tx_version = tx_version
        self.keep_blocks = keep_blocks
        self.storage = {}          # key hex -> value bytes (the state being built for the next block)
        self.blocks = []           # dicts: number, hash, parent, extrinsics, spec, state (dict), timestamp
        self.nonces = {}           # account bytes -> next nonce
        self.pending = []          # extrinsics waiting for the next block: (hex, decoded, watcher)
        self.pending_events = []   # (phase, event dict) from test_* calls
        self.submitted = []        # what the tests can inspect
        self.next_contract = 1
        self.next_twin = 1
        self.next_node = 1
        self.pallets = {p["name"].value: p for p in self.md[1][1]["pallets"]}
        self.genesis = self.make_block([], [])["hash"]

    # -- metadata helpers ------------------------------------------------------------------
    def entry(self, pallet, item):
        for e in self.pallets[pallet]["storage"]["entries"]:
            if e["name"].value == item:
                return self.pallets[pallet]["storage"]["prefix"].value, e["type"].value
        raise KeyError(f"{pallet}.{item}")

    def key(self, pallet, item, *keys):
        prefix, kind = self.entry(pallet, item)
        k = twox(prefix.encode(), 16) + twox(item.encode(), 16)
        if "Map" in kind:
            hashers = kind["Map"]["hashers"]
            assert len(hashers) == len(keys)
            for hasher, raw in zip(hashers, keys):
                assert hasher == "Blake2_128Concat", hasher
                k += blake2_128_concat(raw)
        return "0x" + k.hex()

    def value_type(self, pallet, item):
        _, kind = self.entry(pallet, item)
        return kind["Plain"] if "Plain" in kind else kind["Map"]["value"]

    def encode(self, type_id, value):
        return bytes(chainmeta.encode(self.rc, self.md, f"scale_info::{type_id}", value))

    def put(self, pallet, item, keys, value):
        self.storage[self.key(pallet, item, *keys)] = self.encode(self.value_type(pallet, item), value)

    def get(self, pallet, item, keys):
        raw = self.storage.get(self.key(pallet, item, *keys))
        if raw is None:
            return None
        return chainmeta.decode(self.rc, self.md, f"scale_info::{self.value_type(pallet, item)}", raw)

    def error_index(self, pallet, name):
        ty = self.pallets[pallet]["error"].value["ty"]
        for v in self.md.portable_registry.value["types"][ty]["type"]["def"]["variant"]["variants"]:
            if v["name"] == name:
                return v["index"]
        raise KeyError(name)

    # -- grid state ------------------------------------------------------------------------
    def register_twin(self, account):
        existing = self.get("TfgridModule", "TwinIdByAccountID", [account])
        if existing is not None:
            return existing
        tid = self.next_twin
        self.next_twin += 1
        self.put("TfgridModule", "Twins", [u32(tid)],
                 {"id": tid, "account_id": "0x" + account.hex(), "relay": None, "entities": [], "pk": None})
        self.put("TfgridModule", "TwinIdByAccountID", [account], tid)
        return tid

    def register_node(self, account, farm_id):
        tid = self.register_twin(account)
        nid = self.next_node
        self.next_node += 1
        self.put("TfgridModule", "Farms", [u32(farm_id)], {
            "version": 4, "id": farm_id, "name": "farm", "twin_id": tid, "pricing_policy_id": 1,
            "certification": "NotCertified", "public_ips": [[]], "dedicated_farm": False, "farming_policy_limits": None})
        self.put("TfgridModule", "Nodes", [u32(nid)], {
            "version": 6, "id": nid, "farm_id": farm_id, "twin_id": tid,
            "resources": {"hru": 4 << 40, "sru": 1 << 40, "cru": 8, "mru": 32 << 30},
            "location": {"city": "Gent", "country": "Belgium", "latitude": "51.05", "longitude": "3.72"},
            "public_config": None, "created": int(time.time()), "farming_policy_id": 1, "interfaces": [],
            "certification": "Diy", "secure_boot": False, "virtualized": False, "serial_number": None,
            "connection_price": 80})
        self.put("TfgridModule", "NodeIdByTwinID", [u32(tid)], nid)
        return tid, nid

    def contract_value(self, cid, node_id, twin_id, deployment_hash, data=b"", public_ips=0, state="Created"):
        return {"version": 4, "state": state, "contract_id": cid, "twin_id": twin_id,
                "contract_type": {"NodeContract": {"node_id": node_id, "deployment_hash": "0x" + deployment_hash.encode().hex(),
                                                   "deployment_data": "0x" + data.hex(), "public_ips": public_ips,
                                                   "public_ips_list": [[]]}},
                "solution_provider_id": None}

    def active(self, node_id):
        return list(self.get("SmartContractModule", "ActiveNodeContracts", [u32(node_id)]) or [])

    def set_active(self, node_id, ids):
        self.put("SmartContractModule", "ActiveNodeContracts", [u32(node_id)], ids)

    def create_contract(self, node_id, twin_id, deployment_hash, data=b"", public_ips=0, phase=None):
        cid = self.next_contract
        self.next_contract += 1
        value = self.contract_value(cid, node_id, twin_id, deployment_hash, data, public_ips)
        self.put("SmartContractModule", "Contracts", [u64(cid)], value)
        self.set_active(node_id, self.active(node_id) + [cid])
        self.pending_events.append((phase, {"SmartContractModule": {"ContractCreated": value}}))
        return cid

    def contract(self, cid):
        return self.get("SmartContractModule", "Contracts", [u64(cid)])

    def set_state(self, cid, state, event, phase=None):
        c = self.contract(cid)
        if c is None:
            raise ValueError(f"no contract {cid}")
        nc = c["contract_type"]["NodeContract"]
        value = self.contract_value(cid, nc["node_id"], c["twin_id"], bytes.fromhex(nc["deployment_hash"][2:]).decode(),
                                    bytes.fromhex(nc["deployment_data"][2:]) if nc["deployment_data"] else b"",
                                    nc["public_ips"], state)
        self.put("SmartContractModule", "Contracts", [u64(cid)], value)
        ids = {"contract_id": cid, "node_id": nc["node_id"], "twin_id": c["twin_id"]}
        if event == "grace":
            self.pending_events.append((phase, {"SmartContractModule": {"ContractGracePeriodStarted": dict(ids, block_number=state["GracePeriod"])}}))
        elif event == "graceEnded":
            self.pending_events.append((phase, {"SmartContractModule": {"ContractGracePeriodEnded": ids}}))
        elif event == "canceled":
            self.set_active(nc["node_id"], [i for i in self.active(nc["node_id"]) if i != cid])
            self.pending_events.append((phase, {"SmartContractModule": {"NodeContractCanceled": ids}}))

    # -- blocks ----------------------------------------------------------------------------
    def make_block(self, extrinsic_hexes, records):
        number = len(self.blocks)
        parent = self.blocks[-1]["hash"] if self.blocks else "0x" + "00" * 32
        now_ms = int(time.time() * 1000)
        self.put("Timestamp", "Now", [], now_ms)
        self.put("System", "Events", [], records)
        digest = hashlib.blake2b(u64(number) + bytes.fromhex(parent[2:]) + json.dumps(extrinsic_hexes).encode(), digest_size=32)
        block = {"number": number, "hash": "0x" + digest.hexdigest(), "parent": parent, "extrinsics": extrinsic_hexes,
                 "spec": self.spec_version, "state": dict(self.storage), "timestamp": now_ms}
        self.blocks.append(block)
        return block

    def by_hash(self, h):
        for b in reversed(self.blocks):
            if b["hash"] == h:
                return b
        return None

    def header(self, b):
        return {"parentHash": b["parent"], "number": hex(b["number"]), "stateRoot": "0x" + "00" * 32,
                "extrinsicsRoot": "0x" + "00" * 32, "digest": {"logs": []}}

    def state_at(self, h):
        if h is None:
            return self.blocks[-1]["state"]
        b = self.by_hash(h)
        if b is None:
            raise RpcError(4003, f"Unknown block {h}")
        if b["number"] < len(self.blocks) - self.keep_blocks:
            raise RpcError(4003, f"State already discarded for {h}")
        return b["state"]

    # -- extrinsics ------------------------------------------------------------------------
    def decode_extrinsic(self, xt_hex):
        obj = self.rc.create_scale_object("Extrinsic", data=ScaleBytes(xt_hex), metadata=self.md)
        return obj.decode()

    def check_extrinsic(self, xt_hex):
        """Decodes with scalecodec, rebuilds the signing payload with scalecodec's encoders and
        verifies the signature with PyNaCl. Returns (decoded, signer bytes, call bytes)."""
        try:
            d = self.decode_extrinsic(xt_hex)
        except Exception as e:  # noqa: BLE001 - anything scalecodec cannot read is invalid
            raise RpcError(1002, f"Verification Error: cannot decode extrinsic: {e}")
        address = d["address"]
        signer = bytes.fromhex(address[2:] if isinstance(address, str) and address.startswith("0x") else ss58_decode(address))
        sig = d["signature"]
        sig_hex = sig["Ed25519"] if isinstance(sig, dict) else sig
        call = {"call_module": d["call"]["call_module"], "call_function": d["call"]["call_function"],
                "call_args": {a["name"]: a["value"] for a in d["call"]["call_args"]}}
        call_bytes = bytes(self.rc.create_scale_object("Call", metadata=self.md).encode(call).data)
        raw = bytes.fromhex(xt_hex[2:])
        era = bytes(self.rc.create_scale_object("Era").encode("00").data)
        nonce = d["nonce"]
        tip = d.get("tip", 0) or 0
        payload = (call_bytes + era + bytes(self.rc.create_scale_object("Compact<u32>").encode(nonce).data)
                   + bytes(self.rc.create_scale_object("Compact<Balance>").encode(tip).data)
                   + u32(self.spec_version) + u32(self.tx_version)
                   + bytes.fromhex(self.genesis[2:]) + bytes.fromhex(self.genesis[2:]))
        if len(payload) > 256:
            payload = hashlib.blake2b(payload, digest_size=32).digest()
        try:
            nacl.signing.VerifyKey(signer).verify(payload, bytes.fromhex(sig_hex[2:]))
            signature_ok = True
        except nacl.exceptions.BadSignatureError:
            signature_ok = False
        return {"decoded": d, "signer": signer, "call": call, "call_bytes_match": raw.endswith(call_bytes),
                "signature_ok": signature_ok, "nonce": nonce, "tip": tip, "era": d.get("era")}

    def submit(self, xt_hex, watcher=None):
        info = self.check_extrinsic(xt_hex)
        record = {"module": info["call"]["call_module"], "function": info["call"]["call_function"],
                  "args": info["call"]["call_args"], "signature_ok": info["signature_ok"],
                  "call_bytes_match": info["call_bytes_match"], "nonce": info["nonce"], "tip": info["tip"],
                  "era": str(info["era"]), "signer": "0x" + info["signer"].hex()}
        self.submitted.append(record)
        if not info["signature_ok"]:
            raise RpcError(1010, "Invalid Transaction: Transaction has a bad signature")
        expected = self.nonces.get(info["signer"], 0)
        if info["nonce"] < expected:
            raise RpcError(1010, "Invalid Transaction: Transaction is outdated")
        if info["nonce"] > expected + len([p for p in self.pending if p[1]["signer"] == info["signer"]]):
            raise RpcError(1010, "Invalid Transaction: Transaction will be valid in the future")
        self.pending.append((xt_hex, info, watcher))
        return "0x" + hashlib.blake2b(bytes.fromhex(xt_hex[2:]), digest_size=32).hexdigest()

    def apply(self, info):
        """Runs a call; returns (events, error) where error is (pallet, error name) or None."""
        module, fn, args = info["call"]["call_module"], info["call"]["call_function"], info["call"]["call_args"]
        signer = info["signer"]
        tid = self.get("TfgridModule", "TwinIdByAccountID", [signer])
        if module == "TfgridModule" and fn == "report_uptime_v2":
            nid = self.get("TfgridModule", "NodeIdByTwinID", [u32(tid)]) if tid else None
            if not nid:
                return [], ("TfgridModule", "NodeNotExists")
            if abs(args["timestamp_hint"] - int(time.time())) > 60:
                return [], ("TfgridModule", "InvalidTimestampHint")
            return [{"TfgridModule": {"NodeUptimeReported": (nid, int(time.time()), args["uptime"])}}], None
        if module == "SmartContractModule" and fn == "report_contract_resources":
            return [{"SmartContractModule": {"UpdatedUsedResources": r}} for r in args["contract_resources"]], None
        if module == "SmartContractModule" and fn == "add_nru_reports":
            return [{"SmartContractModule": {"NruConsumptionReportReceived": r}} for r in args["reports"]], None
        if module == "SmartContractModule" and fn == "create_node_contract":
            if tid is None:
                return [], ("SmartContractModule", "TwinNotExists")
            if self.get("TfgridModule", "Nodes", [u32(args["node_id"])]) is None:
                return [], ("SmartContractModule", "NodeNotExists")
            h = bytes.fromhex(args["deployment_hash"][2:]).decode()
            data = bytes.fromhex(args["deployment_data"][2:]) if args["deployment_data"] else b""
            before = len(self.pending_events)
            self.create_contract(args["node_id"], tid, h, data, args["public_ips"])
            return [self.pending_events.pop(before)[1]], None
        if module == "SmartContractModule" and fn == "update_node_contract":
            c = self.contract(args["contract_id"])
            if c is None or c["twin_id"] != tid:
                return [], ("SmartContractModule", "ContractNotExists" if c is None else "TwinNotAuthorizedToUpdateContract")
            nc = c["contract_type"]["NodeContract"]
            data = bytes.fromhex(args["deployment_data"][2:]) if args["deployment_data"] else b""
            value = self.contract_value(c["contract_id"], nc["node_id"], tid, bytes.fromhex(args["deployment_hash"][2:]).decode(), data, nc["public_ips"])
            value["state"] = c["state"]
            self.put("SmartContractModule", "Contracts", [u64(c["contract_id"])], value)
            return [{"SmartContractModule": {"ContractUpdated": value}}], None
        if module == "SmartContractModule" and fn == "cancel_contract":
            c = self.contract(args["contract_id"])
            if c is None or c["twin_id"] != tid:
                return [], ("SmartContractModule", "ContractNotExists" if c is None else "TwinNotAuthorizedToCancelContract")
            before = len(self.pending_events)
            self.set_state(args["contract_id"], {"Deleted": "CanceledByUser"}, "canceled")
            return [self.pending_events.pop(before)[1]], None
        return [], ("SmartContractModule", "MethodIsDeprecated")

    def produce(self):
        weight = {"ref_time": 1000, "proof_size": 0}
        records = [{"phase": "Initialization", "event": {"TFTPriceModule": {"PriceStored": 42}}, "topics": []}]
        hexes = []
        watchers = []
        for index, (xt_hex, info, watcher) in enumerate(self.pending):
            hexes.append(xt_hex)
            watchers.append(watcher)
            self.nonces[info["signer"]] = info["nonce"] + 1
            events, error = self.apply(info)
            phase = {"ApplyExtrinsic": index}
            for e in events:
                records.append({"phase": phase, "event": e, "topics": []})
            if error:
                err = {"Module": {"index": self.pallets[error[0]]["index"].value,
                                  "error": "0x" + bytes([self.error_index(*error), 0, 0, 0]).hex()}}
                records.append({"phase": phase, "event": {"System": {"ExtrinsicFailed": {
                    "dispatch_error": err, "dispatch_info": {"weight": weight, "class": "Normal", "pays_fee": "Yes"}}}}, "topics": []})
            else:
                records.append({"phase": phase, "event": {"System": {"ExtrinsicSuccess": {
                    "dispatch_info": {"weight": weight, "class": "Normal", "pays_fee": "Yes"}}}}, "topics": []})
        for phase, event in self.pending_events:
            records.append({"phase": phase or "Finalization", "event": event, "topics": []})
        records.append({"phase": "Finalization", "event": {"Balances": {"Deposit": {"who": "0x" + "22" * 32, "amount": 1}}}, "topics": []})
        self.pending = []
        self.pending_events = []
        block = self.make_block(hexes, records)
        return block, watchers


class RpcError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class Server:
    def __init__(self, chain, block_ms):
        self.chain = chain
        self.block_ms = block_ms
        self.connections = {}      # websocket -> port
        self.head_subs = {}        # websocket -> set of subscription ids
        self.next_sub = 1
        self.heads_paused_until = 0.0
        self.servers = {}          # port -> server
        self.connection_count = 0

    async def send(self, ws, obj):
        try:
            await ws.send(json.dumps(obj))
        except websockets.ConnectionClosed:
            pass

    async def notify(self, ws, method, sub, result):
        await self.send(ws, {"jsonrpc": "2.0", "method": method, "params": {"subscription": sub, "result": result}})

    async def produce_loop(self):
        while True:
            await asyncio.sleep(self.block_ms / 1000)
            block, watchers = self.chain.produce()
            for watcher in watchers:
                if watcher:
                    ws, sub = watcher
                    await self.notify(ws, "author_extrinsicUpdate", sub, {"inBlock": block["hash"]})
                    await self.notify(ws, "author_extrinsicUpdate", sub, {"finalized": block["hash"]})
            if time.time() < self.heads_paused_until:
                continue
            header = self.chain.header(block)
            for ws, subs in list(self.head_subs.items()):
                for sub in subs:
                    await self.notify(ws, "chain_finalizedHead", sub, header)

    async def handle(self, ws, path=None):
        port = ws.local_address[1]
        self.connections[ws] = port
        self.connection_count += 1
        try:
            async for text in ws:
                try:
                    msg = json.loads(text)
                except ValueError:
                    await self.send(ws, {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}})
                    continue
                reply = {"jsonrpc": "2.0", "id": msg.get("id")}
                try:
                    reply["result"] = await self.dispatch(ws, msg.get("method"), msg.get("params") or [], msg.get("id"))
                except RpcError as e:
                    reply["error"] = {"code": e.code, "message": e.message}
                except Exception as e:  # noqa: BLE001 - report, never crash the double
                    reply["error"] = {"code": -32603, "message": f"{type(e).__name__}: {e}"}
                if reply.get("result", 0) is not _NO_REPLY:
                    await self.send(ws, reply)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.connections.pop(ws, None)
            self.head_subs.pop(ws, None)

    async def dispatch(self, ws, method, params, req_id=None):
        c = self.chain
        if method == "state_getMetadata":
            return c.meta_hex
        if method == "state_getRuntimeVersion":
            spec = c.spec_version
            if params and params[0]:
                b = c.by_hash(params[0])
                if b is None:
                    raise RpcError(4003, f"Unknown block {params[0]}")
                spec = b["spec"]
            return {"specName": "substrate-threefold", "implName": "substrate-threefold", "authoringVersion": 1,
                    "specVersion": spec, "implVersion": 0, "apis": [], "transactionVersion": c.tx_version, "stateVersion": 0}
        if method == "chain_getBlockHash":
            n = params[0] if params else None
            if n is None:
                return c.blocks[-1]["hash"]
            n = int(n, 16) if isinstance(n, str) else n
            return c.blocks[n]["hash"] if 0 <= n < len(c.blocks) else None
        if method == "chain_getFinalizedHead":
            return c.blocks[-1]["hash"]
        if method == "chain_getHeader":
            b = c.by_hash(params[0]) if params and params[0] else c.blocks[-1]
            return c.header(b) if b else None
        if method == "chain_getBlock":
            b = c.by_hash(params[0]) if params and params[0] else c.blocks[-1]
            return {"block": {"header": c.header(b), "extrinsics": b["extrinsics"]}, "justifications": None} if b else None
        if method == "state_getStorage":
            state = c.state_at(params[1] if len(params) > 1 else None)
            raw = state.get(params[0].lower())
            return None if raw is None else "0x" + raw.hex()
        if method == "state_queryStorageAt":
            at = params[1] if len(params) > 1 else None
            state = c.state_at(at)
            changes = [[k, None if state.get(k.lower()) is None else "0x" + state[k.lower()].hex()] for k in params[0]]
            return [{"block": at or c.blocks[-1]["hash"], "changes": changes}]
        if method == "state_queryStorage":
            raise RpcError(-32601, "Method not found (public nodes refuse range queries)")
        if method == "system_accountNextIndex":
            account = bytes.fromhex(ss58_decode(params[0]))
            return c.nonces.get(account, 0) + len([p for p in c.pending if p[1]["signer"] == account])
        if method == "chain_subscribeFinalizedHeads":
            sub = self.new_sub()
            self.head_subs.setdefault(ws, set()).add(sub)
            await self.send(ws, {"jsonrpc": "2.0", "id": req_id, "result": sub})
            await self.notify(ws, "chain_finalizedHead", sub, c.header(c.blocks[-1]))
            return _NO_REPLY
        if method == "chain_unsubscribeFinalizedHeads":
            self.head_subs.get(ws, set()).discard(params[0])
            return True
        if method == "author_submitExtrinsic":
            return c.submit(params[0])
        if method == "author_submitAndWatchExtrinsic":
            sub = self.new_sub()
            c.submit(params[0], (ws, sub))
            await self.send(ws, {"jsonrpc": "2.0", "id": req_id, "result": sub})
            await self.notify(ws, "author_extrinsicUpdate", sub, "ready")
            return _NO_REPLY
        if method == "author_unwatchExtrinsic":
            return True
        # -- test controls --
        if method == "test_registerNode":
            tid, nid = c.register_node(bytes.fromhex(params[0]), params[1])
            return {"twin_id": tid, "node_id": nid}
        if method == "test_registerTwin":
            return c.register_twin(bytes.fromhex(params[0]))
        if method == "test_createContract":
            node_id, twin_id, h = params[0], params[1], params[2]
            return c.create_contract(node_id, twin_id, h)
        if method == "test_gracePeriod":
            c.set_state(params[0], {"GracePeriod": len(c.blocks)}, "grace")
            return True
        if method == "test_endGracePeriod":
            c.set_state(params[0], "Created", "graceEnded")
            return True
        if method == "test_cancel":
            c.set_state(params[0], {"Deleted": params[1] if len(params) > 1 else "CanceledByUser"}, "canceled")
            return True
        if method == "test_dropConnections":
            for other in list(self.connections):
                if other is not ws:
                    await other.close()
            return True
        if method == "test_closePort":
            port = params[0]
            server = self.servers.pop(port, None)
            if server:
                server.close()
            for other, p in list(self.connections.items()):
                if p == port and other is not ws:
                    await other.close()
            return True
        if method == "test_pauseHeads":
            self.heads_paused_until = time.time() + params[0]
            return True
        if method == "test_upgradeRuntime":
            c.spec_version += 1
            return c.spec_version
        if method == "test_submitted":
            return c.submitted
        if method == "test_status":
            return {"connections": len(self.connections), "connection_count": self.connection_count,
                    "best": len(c.blocks) - 1, "spec_version": c.spec_version}
        raise RpcError(-32601, f"Method not found: {method}")

    def new_sub(self):
        sub = f"sub{self.next_sub}"
        self.next_sub += 1
        return sub


_NO_REPLY = object()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", default="0")
    parser.add_argument("--block-ms", type=int, default=200)
    parser.add_argument("--keep-blocks", type=int, default=256)
    parser.add_argument("--spec-version", type=int, default=146)
    parser.add_argument("--tx-version", type=int, default=2)
    parser.add_argument("--lifetime", type=float, default=300.0, help="exit after this many seconds whatever happens")
    args = parser.parse_args()

    chain = Chain(args.spec_version, args.tx_version, args.keep_blocks)
    server = Server(chain, args.block_ms)

    ports = []
    for p in args.ports.split(","):
        srv = await websockets.serve(server_handler(server), "127.0.0.1", int(p), max_size=16 << 20)
        port = srv.sockets[0].getsockname()[1]
        server.servers[port] = srv
        ports.append(port)
    print("READY " + " ".join(str(p) for p in ports), flush=True)

    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    # stdin closing means the test that started us is gone.
    loop.add_reader(sys.stdin.fileno(), lambda: (sys.stdin.buffer.read1(4096) or (stop.done() or stop.set_result(None))))
    producer = asyncio.create_task(server.produce_loop())
    try:
        await asyncio.wait_for(stop, timeout=args.lifetime)
    except asyncio.TimeoutError:
        pass
    producer.cancel()


def server_handler(server):
    async def handler(ws, path=None):
        await server.handle(ws)
    return handler


if __name__ == "__main__":
    asyncio.run(main())
