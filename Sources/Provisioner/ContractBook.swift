import ChainClient
import Foundation
import GRDB
import GridTypes

/// The node's durable record of the contracts it must fulfil (desired state), fed by the chain
/// watcher. Each block's changes and the block number commit in one transaction, so after a crash
/// the watcher resumes exactly where the book says. The provisioner reconciles workloads from it.
public final class ContractBook: ContractSink, Sendable {
    public let path: String
    let pool: DatabasePool

    public struct Entry: Codable, Equatable, Sendable {
        public var contract: Contract
        /// Block at which this node first saw the contract: how long it has waited for a deployment.
        public var seenAtBlock: UInt64
        public var updatedAtBlock: UInt64
    }

    public init(path: String) throws(ProvisionerError) {
        self.path = path
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            var migrator = DatabaseMigrator()
            migrator.registerMigration("v1") { db in
                try db.execute(sql: """
                    CREATE TABLE desired_contracts(id INTEGER PRIMARY KEY, twin_id INTEGER NOT NULL, node_id INTEGER NOT NULL,
                        version INTEGER NOT NULL, state INTEGER NOT NULL, cause INTEGER, grace_since INTEGER,
                        deployment_hash TEXT NOT NULL, deployment_data BLOB NOT NULL, public_ips INTEGER NOT NULL,
                        seen_block INTEGER NOT NULL, updated_block INTEGER NOT NULL);
                    CREATE TABLE canceled_contracts(id INTEGER PRIMARY KEY, cause INTEGER, block INTEGER NOT NULL);
                    CREATE TABLE watcher_state(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                    CREATE TABLE contract_history(seq INTEGER PRIMARY KEY AUTOINCREMENT, block INTEGER NOT NULL,
                        contract_id INTEGER NOT NULL, change TEXT NOT NULL);
                    """)
            }
            try migrator.migrate(pool)
        } catch {
            throw .database(path: path, operation: "open", detail: "\(error)")
        }
    }

    static func contract(_ row: Row) -> Contract {
        let state: ContractState
        switch row["state"] as Int64 {
        case 2: state = .gracePeriod(since: UInt64(row["grace_since"] as Int64? ?? 0))
        case 1: state = .deleted(DeletionCause(rawValue: Int(row["cause"] as Int64? ?? 0)) ?? .canceledByUser)
        default: state = .created
        }
        let data: Data = row["deployment_data"]
        return Contract(id: UInt64(row["id"] as Int64), version: UInt32(row["version"] as Int64), state: state,
                        twinID: UInt32(row["twin_id"] as Int64),
                        node: NodeContract(nodeID: UInt32(row["node_id"] as Int64), deploymentHash: row["deployment_hash"],
                                           deploymentData: [UInt8](data), publicIPs: UInt32(row["public_ips"] as Int64)))
    }

    public func knownContracts() async throws -> [UInt64: KnownContract] {
        try await pool.read { db in
            var result = [UInt64: KnownContract]()
            let rows = try Row.fetchCursor(db, sql: "SELECT * FROM desired_contracts")
            while let row = try rows.next() {
                let contract = Self.contract(row)
                result[contract.id] = KnownContract(contract)
            }
            return result
        }
    }

    public func lastProcessedBlock() async throws -> UInt64? {
        try await pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT value FROM watcher_state WHERE key = 'last_block'").map { UInt64($0) }
        }
    }

    public func apply(_ changes: [ContractChange], processedBlock: UInt64) async throws {
        let block = Int64(processedBlock)
        try await pool.write { db in
            let upsert = try db.cachedStatement(sql: """
                INSERT INTO desired_contracts(id, twin_id, node_id, version, state, cause, grace_since, deployment_hash,
                    deployment_data, public_ips, seen_block, updated_block) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET state = excluded.state, grace_since = excluded.grace_since,
                    deployment_hash = excluded.deployment_hash, deployment_data = excluded.deployment_data,
                    public_ips = excluded.public_ips, updated_block = excluded.updated_block
                """)
            let remove = try db.cachedStatement(sql: "DELETE FROM desired_contracts WHERE id = ?")
            let tombstone = try db.cachedStatement(sql: "INSERT OR REPLACE INTO canceled_contracts(id, cause, block) VALUES (?, ?, ?)")
            let history = try db.cachedStatement(sql: "INSERT INTO contract_history(block, contract_id, change) VALUES (?, ?, ?)")
            for change in changes {
                switch change {
                case .created(let c), .updated(let c), .gracePeriodStarted(let c), .gracePeriodEnded(let c):
                    var graceSince: Int64?
                    if case .gracePeriod(let since) = c.state { graceSince = Int64(since) }
                    let stateCode: Int64 = graceSince == nil ? 0 : 2
                    try upsert.execute(arguments: [Int64(c.id), Int64(c.twinID), Int64(c.node.nodeID), Int64(c.version), stateCode,
                                                   graceSince, c.node.deploymentHash, Data(c.node.deploymentData),
                                                   Int64(c.node.publicIPs), block, block])
                case .canceled(let id, let cause):
                    try remove.execute(arguments: [Int64(id)])
                    try tombstone.execute(arguments: [Int64(id), cause?.rawValue, block])
                }
                try history.execute(arguments: [block, Int64(change.contractID), ChainChangeSummary(change).kind])
            }
            try db.execute(sql: "INSERT OR REPLACE INTO watcher_state(key, value) VALUES ('last_block', ?)", arguments: [block])
        }
    }

    /// Every contract the node should currently fulfil.
    public func entries() async throws -> [Entry] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM desired_contracts ORDER BY id").map { row in
                Entry(contract: Self.contract(row), seenAtBlock: UInt64(row["seen_block"] as Int64),
                      updatedAtBlock: UInt64(row["updated_block"] as Int64))
            }
        }
    }

    /// Id and first-seen block of every contract not deleted, without the deployment data (for
    /// status, which asks on every call).
    public func activeContractsSeen() async throws -> [(contractID: UInt64, seenAtBlock: UInt64)] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT id, seen_block FROM desired_contracts WHERE state != 1 ORDER BY seen_block, id").map { row in
                (UInt64(row["id"] as Int64), UInt64(row["seen_block"] as Int64))
            }
        }
    }

    /// What the chain last said about one contract, as the watcher recorded it.
    public enum Status: Equatable, Sendable {
        case active(Contract)
        case canceled(DeletionCause?)
        /// Not seen yet (the watcher may lag behind a contract just made).
        case unknown
    }

    public func status(of contractID: UInt64) async throws(ProvisionerError) -> Status {
        do {
            return try await pool.read { db in
                if let row = try Row.fetchOne(db, sql: "SELECT * FROM desired_contracts WHERE id = ?", arguments: [Int64(contractID)]) {
                    return .active(Self.contract(row))
                }
                if let row = try Row.fetchOne(db, sql: "SELECT cause FROM canceled_contracts WHERE id = ?", arguments: [Int64(contractID)]) {
                    return .canceled((row["cause"] as Int64?).flatMap { DeletionCause(rawValue: Int($0)) })
                }
                return .unknown
            }
        } catch {
            throw .database(path: path, operation: "read contract \(contractID)", detail: "\(error)")
        }
    }

    /// Change history, newest last: (block, contract, change).
    public func history(limit: Int = 100) async throws -> [(block: UInt64, contract: UInt64, change: String)] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM (SELECT * FROM contract_history ORDER BY seq DESC LIMIT ?) ORDER BY seq",
                             arguments: [limit]).map { row in
                (UInt64(row["block"] as Int64), UInt64(row["contract_id"] as Int64), row["change"] as String)
            }
        }
    }
}
