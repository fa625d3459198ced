import GridTypes

/// One entry of System.Events, decoded through the registry.
public struct DecodedEvent: Sendable, Equatable {
    /// The extrinsic index for ApplyExtrinsic, nil for Initialization/Finalization.
    public var extrinsicIndex: UInt32?
    public var pallet: String
    public var name: String
    public var fields: SCALEValue

    /// "Pallet.Event".
    public var qualifiedName: String { pallet + "." + name }
}

/// Turns registry-decoded values into the grid's types and the grid's calls into call arguments.
/// Field names are TFChain's (tfchain.md); a value that lacks one is a decode error naming it.
enum TFChainMapping {
    static func field(_ value: SCALEValue, _ name: String, _ type: String) throws(ChainError) -> SCALEValue {
        guard let field = value[field: name] else {
            throw .decode(type: type, position: 0, detail: "field \(name) is missing in \(String(value.description.prefix(200)))")
        }
        return field
    }

    static func uint(_ value: SCALEValue, _ name: String, _ type: String) throws(ChainError) -> UInt64 {
        guard let v = try field(value, name, type).uint else {
            throw .decode(type: type, position: 0, detail: "field \(name) is not an unsigned integer")
        }
        return v
    }

    static func u32(_ value: SCALEValue, _ name: String, _ type: String) throws(ChainError) -> UInt32 {
        let v = try uint(value, name, type)
        guard let narrow = UInt32(exactly: v) else { throw .decode(type: type, position: 0, detail: "field \(name) = \(v) exceeds u32") }
        return narrow
    }

    static func resources(_ value: SCALEValue) throws(ChainError) -> Resources {
        Resources(hru: try uint(value, "hru", "Resources"), sru: try uint(value, "sru", "Resources"),
                  cru: try uint(value, "cru", "Resources"), mru: try uint(value, "mru", "Resources"))
    }

    static func contractState(_ value: SCALEValue) throws(ChainError) -> ContractState {
        switch value.variantName {
        case "Created": return .created
        case "GracePeriod":
            guard let block = value[position: 0]?.uint else { throw .decode(type: "ContractState", position: 0, detail: "GracePeriod without a block number") }
            return .gracePeriod(since: block)
        case "Deleted":
            switch value[position: 0]?.variantName {
            case "CanceledByUser": return .deleted(.canceledByUser)
            case "OutOfFunds": return .deleted(.outOfFunds)
            case "CanceledByCollective": return .deleted(.canceledByCollective)
            case let other: throw .decode(type: "Cause", position: 0, detail: "unknown cause \(other ?? "(none)")")
            }
        case let other: throw .decode(type: "ContractState", position: 0, detail: "unknown state \(other ?? "(not a variant)")")
        }
    }

    /// A Contract value; nil for name and rent contracts, which hold no deployment on a node.
    static func contract(_ value: SCALEValue) throws(ChainError) -> Contract? {
        let data = try field(value, "contract_type", "Contract")
        guard data.variantName == "NodeContract", let node = data[position: 0] else { return nil }
        let hashBytes = try field(node, "deployment_hash", "NodeContract").bytes ?? []
        return Contract(
            id: try uint(value, "contract_id", "Contract"),
            version: try u32(value, "version", "Contract"),
            state: try contractState(try field(value, "state", "Contract")),
            twinID: try u32(value, "twin_id", "Contract"),
            node: NodeContract(
                nodeID: try u32(node, "node_id", "NodeContract"),
                // HexHash holds ASCII hex characters (tfchain.md), not raw bytes.
                deploymentHash: String(decoding: hashBytes, as: UTF8.self),
                deploymentData: try field(node, "deployment_data", "NodeContract").bytes ?? [],
                publicIPs: try u32(node, "public_ips", "NodeContract")))
    }

    static func twin(_ value: SCALEValue) throws(ChainError) -> Twin {
        guard let account = try field(value, "account_id", "Twin").bytes, let key = try? Ed25519PublicKey(bytes: account) else {
            throw .decode(type: "Twin", position: 0, detail: "account_id is not 32 bytes")
        }
        return Twin(id: try u32(value, "id", "Twin"), publicKey: key)
    }

    static func node(_ value: SCALEValue) throws(ChainError) -> Node {
        Node(id: try u32(value, "id", "Node"), farmID: try u32(value, "farm_id", "Node"),
             twinID: try u32(value, "twin_id", "Node"), resources: try resources(try field(value, "resources", "Node")))
    }

    /// The grid's view of an event; events the agent has no use for stay `.other` by name, so
    /// a new event in any pallet never breaks a block.
    static func chainEvent(_ event: DecodedEvent) -> ChainEvent {
        let v = event.fields
        func pos(_ i: Int) -> SCALEValue? { v[position: i] }
        do {
            switch (event.pallet, event.name) {
            case ("SmartContractModule", "ContractCreated"):
                if let first = pos(0), let c = try contract(first) { return .contractCreated(c) }
            case ("SmartContractModule", "ContractUpdated"):
                if let first = pos(0), let c = try contract(first) { return .contractUpdated(c) }
            case ("SmartContractModule", "NodeContractCanceled"):
                return .nodeContractCanceled(contractID: try uint(v, "contract_id", event.qualifiedName),
                                             nodeID: try u32(v, "node_id", event.qualifiedName), twinID: try u32(v, "twin_id", event.qualifiedName))
            case ("SmartContractModule", "ContractGracePeriodStarted"):
                return .contractGracePeriodStarted(contractID: try uint(v, "contract_id", event.qualifiedName),
                                                   nodeID: try u32(v, "node_id", event.qualifiedName), twinID: try u32(v, "twin_id", event.qualifiedName),
                                                   blockNumber: try uint(v, "block_number", event.qualifiedName))
            case ("SmartContractModule", "ContractGracePeriodEnded"):
                return .contractGracePeriodEnded(contractID: try uint(v, "contract_id", event.qualifiedName),
                                                 nodeID: try u32(v, "node_id", event.qualifiedName), twinID: try u32(v, "twin_id", event.qualifiedName))
            case ("SmartContractModule", "UpdatedUsedResources"):
                if let first = pos(0) {
                    return .updatedUsedResources(ContractResources(contractID: try uint(first, "contract_id", event.qualifiedName),
                                                                   used: try resources(try field(first, "used", event.qualifiedName))))
                }
            case ("SmartContractModule", "NruConsumptionReportReceived"):
                if let first = pos(0) {
                    return .nruConsumptionReportReceived(NruConsumption(
                        contractID: try uint(first, "contract_id", event.qualifiedName), timestamp: try uint(first, "timestamp", event.qualifiedName),
                        window: try uint(first, "window", event.qualifiedName), nru: try uint(first, "nru", event.qualifiedName)))
                }
            case ("TfgridModule", "NodeUptimeReported"):
                if let node = pos(0)?.uint, let timestamp = pos(1)?.uint, let uptime = pos(2)?.uint, let id = UInt32(exactly: node) {
                    return .nodeUptimeReported(nodeID: id, timestamp: timestamp, uptime: uptime)
                }
            case ("TfgridModule", "TwinStored"):
                if let first = pos(0) { return .twinStored(try twin(first)) }
            case ("TfgridModule", "NodeStored"):
                if let first = pos(0) { return .nodeStored(try node(first)) }
            default: break
            }
        } catch {
            // A known event whose layout changed in a runtime upgrade: keep it by name rather than
            // lose the block; the level-triggered watcher re-reads the contracts anyway.
        }
        return .other(pallet: event.pallet, name: event.name)
    }

    /// The pallet, call and arguments of a grid call on TFChain.
    static func call(_ call: ChainCall) throws(ChainError) -> (pallet: String, name: String, arguments: [String: SCALEValue]) {
        func hash(_ text: String) throws(ChainError) -> SCALEValue {
            let ascii = Array(text.utf8)
            guard ascii.count == 32 else {
                throw .invalidInput("deployment hash must be the 32 hex characters of an MD5 hash, got \(ascii.count) bytes: \(text)")
            }
            return .bytes(ascii)
        }
        func data(_ bytes: [UInt8]) throws(ChainError) -> SCALEValue {
            guard bytes.count <= NodeContract.maxDeploymentData else {
                throw .invalidInput("deployment data of \(bytes.count) bytes exceeds TFChain's \(NodeContract.maxDeploymentData)")
            }
            return .bytes(bytes)
        }
        func res(_ r: Resources) -> SCALEValue {
            .record(["hru": .uint(r.hru), "sru": .uint(r.sru), "cru": .uint(r.cru), "mru": .uint(r.mru)])
        }
        switch call {
        case .reportUptime(let uptime, let hint):
            return ("TfgridModule", "report_uptime_v2", ["uptime": .uint(uptime), "timestamp_hint": .uint(hint)])
        case .reportContractResources(let list):
            return ("SmartContractModule", "report_contract_resources", ["contract_resources": .sequence(list.map {
                .record(["contract_id": .uint($0.contractID), "used": res($0.used)])
            })])
        case .addNruReports(let list):
            return ("SmartContractModule", "add_nru_reports", ["reports": .sequence(list.map {
                .record(["contract_id": .uint($0.contractID), "timestamp": .uint($0.timestamp), "window": .uint($0.window), "nru": .uint($0.nru)])
            })])
        case .createNodeContract(let nodeID, let deploymentHash, let deploymentData, let publicIPs):
            return ("SmartContractModule", "create_node_contract", [
                "node_id": .uint(UInt64(nodeID)), "deployment_hash": try hash(deploymentHash),
                "deployment_data": try data(deploymentData), "public_ips": .uint(UInt64(publicIPs)), "solution_provider_id": .none,
            ])
        case .updateNodeContract(let contractID, let deploymentHash, let deploymentData):
            return ("SmartContractModule", "update_node_contract", [
                "contract_id": .uint(contractID), "deployment_hash": try hash(deploymentHash), "deployment_data": try data(deploymentData),
            ])
        case .cancelContract(let contractID):
            return ("SmartContractModule", "cancel_contract", ["contract_id": .uint(contractID)])
        case .createTwin, .createFarm, .createNode, .updateNode:
            // On TFChain the farmer registers twins, farms and nodes with the grid's own tools
            // (terms and conditions, location, interfaces); the agent must never do it itself.
            throw .invalidInput("\(call.name) is not sent by the node agent on TFChain: register the farm and node with the grid's tools, then set node.node_id")
        }
    }
}
