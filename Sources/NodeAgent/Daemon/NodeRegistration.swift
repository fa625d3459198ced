import ChainClient
import Foundation
import GridTypes
import Logging

/// What the node registered as, kept in `<state_dir>/node.json`. `chain` names the chain the id
/// belongs to (the ledger's genesis hash), so pointing the agent at another chain registers anew
/// instead of reusing a meaningless id.
struct NodeRecord: Codable, Equatable {
    var nodeID: UInt32
    var twinID: UInt32
    var farmID: UInt32
    var chain: String

    static let fileName = "node.json"

    static func load(stateDir: String) -> NodeRecord? {
        guard let data = FileManager.default.contents(atPath: stateDir + "/" + fileName) else { return nil }
        return try? JSONDecoder().decode(NodeRecord.self, from: data)
    }

    /// Written to a temporary file, synced, then renamed: never a half-written record.
    func save(stateDir: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(self)
        let path = stateDir + "/" + Self.fileName
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw NodeAgentError.io(operation: "create", path: temporary, errno: errno) }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == data.count, synced == 0 else { throw NodeAgentError.io(operation: "write", path: temporary, errno: errno) }
        guard rename(temporary, path) == 0 else { throw NodeAgentError.io(operation: "rename", path: path, errno: errno) }
    }
}

/// Registers the node on the chain if it is not: its twin (from the node key), then the node in
/// the configured farm with its capacity. Idempotent: every step first looks at what exists.
struct NodeRegistration {
    let chain: any GridChain
    let chainName: String
    let identity: NodeIdentity
    let farmID: UInt32
    let configuredNodeID: UInt32
    let capacity: Resources
    let stateDir: String
    let logger: Logger

    func register() async throws -> NodeRecord {
        if let record = NodeRecord.load(stateDir: stateDir), record.chain == chainName,
           let node = try await chain.node(id: record.nodeID), node.twinID == record.twinID,
           configuredNodeID == 0 || configuredNodeID == record.nodeID {
            return record
        }
        let twinID: UInt32
        if let existing = try await chain.twinID(account: identity.publicKey) {
            twinID = existing
        } else {
            logger.notice("creating the node's twin on the chain", metadata: ["account": .string(identity.ss58Address)])
            _ = try await chain.submit(.createTwin, signer: identity.keyPair)
            guard let created = try await chain.twinID(account: identity.publicKey) else {
                throw NodeAgentError.backendNotAvailable("the chain included create_twin but shows no twin for \(identity.ss58Address)")
            }
            twinID = created
        }

        var nodeID = try await chain.nodeID(twin: twinID)
        if configuredNodeID != 0, let nodeID, nodeID != configuredNodeID {
            throw NodeAgentError.nodeIDMismatch(configured: configuredNodeID, detail: "this node's key registered node \(nodeID)")
        }
        if nodeID == nil {
            if configuredNodeID != 0 {
                throw NodeAgentError.nodeIDMismatch(configured: configuredNodeID, detail: "this node's key (twin \(twinID)) has no node on the chain")
            }
            guard try await chain.farmExists(id: farmID) else { throw NodeAgentError.farmMissing(farmID: farmID) }
            logger.notice("registering the node", metadata: [
                "farm": "\(farmID)", "cru": "\(capacity.cru)", "mru": "\(capacity.mru)", "sru": "\(capacity.sru)", "hru": "\(capacity.hru)",
            ])
            let inclusion = try await chain.submit(.createNode(farmID: farmID, resources: capacity), signer: identity.keyPair)
            nodeID = inclusion.events.compactMap { event -> UInt32? in
                if case .nodeStored(let node) = event { return node.id }
                return nil
            }.first
        }
        guard let nodeID, let node = try await chain.node(id: nodeID) else {
            throw NodeAgentError.backendNotAvailable("the chain included create_node but shows no node for twin \(twinID)")
        }
        let record = NodeRecord(nodeID: nodeID, twinID: twinID, farmID: node.farmID, chain: chainName)
        try record.save(stateDir: stateDir)
        logger.notice("node registered", metadata: ["node_id": "\(nodeID)", "twin_id": "\(twinID)", "farm_id": "\(node.farmID)"])
        return record
    }

    /// Retries until registered or cancelled: a missing farm or a chain outage is logged with what to
    /// do, and the agent keeps trying (the farmer may create the farm while it waits).
    func registerRetrying() async throws -> NodeRecord {
        var delay = Duration.milliseconds(500)
        var lastMessage = ""
        while true {
            try Task.checkCancellation()
            do {
                return try await register()
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                let message = "\(error)"
                if message != lastMessage {
                    logger.error("node registration failed; retrying", metadata: ["error": .string(message)])
                    lastMessage = message
                }
                try await Task.sleep(for: delay)
                // Waiting for the farmer to create the farm is a cheap read: look every few seconds,
                // so the node registers soon after. Failures of the chain itself back off further.
                let waitingForFarm: Bool
                if case NodeAgentError.farmMissing = error { waitingForFarm = true } else { waitingForFarm = false }
                delay = min(delay * 2, waitingForFarm ? .seconds(3) : .seconds(30))
            }
        }
    }
}
