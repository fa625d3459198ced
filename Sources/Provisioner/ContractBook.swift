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
                    CREATE TABLE desired_contracts(id INTEGER PRIMARY KEY, body TEXT NOT NULL,
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

    public func knownContracts() async throws -> [UInt64: KnownContract] {
        try await pool.read { db in
            var result = [UInt64: KnownContract]()
            for body in try String.fetchAll(db, sql: "SELECT body FROM desired_contracts") {
                let contract = try JSONDecoder().decode(Contract.self, from: Data(body.utf8))
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
        let encoder = JSONEncoder()
        let block = Int64(processedBlock)
        try await pool.write { db in
            for change in changes {
                switch change {
                case .created(let contract), .updated(let contract), .gracePeriodStarted(let contract), .gracePeriodEnded(let contract):
                    let body = String(decoding: try encoder.encode(contract), as: UTF8.self)
                    try db.execute(sql: """
                        INSERT INTO desired_contracts(id, body, seen_block, updated_block) VALUES (?, ?, ?, ?)
                        ON CONFLICT(id) DO UPDATE SET body = excluded.body, updated_block = excluded.updated_block
                        """, arguments: [Int64(contract.id), body, block, block])
                case .canceled(let id, let cause):
                    try db.execute(sql: "DELETE FROM desired_contracts WHERE id = ?", arguments: [Int64(id)])
                    try db.execute(sql: "INSERT OR REPLACE INTO canceled_contracts(id, cause, block) VALUES (?, ?, ?)",
                                   arguments: [Int64(id), cause?.rawValue, block])
                }
                try db.execute(sql: "INSERT INTO contract_history(block, contract_id, change) VALUES (?, ?, ?)",
                               arguments: [block, Int64(change.contractID), ChainChangeSummary(change).kind])
            }
            try db.execute(sql: "INSERT OR REPLACE INTO watcher_state(key, value) VALUES ('last_block', ?)", arguments: [block])
        }
    }

    /// Every contract the node should currently fulfil.
    public func entries() async throws -> [Entry] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM desired_contracts ORDER BY id").map { row in
                let body: String = row["body"]
                return Entry(contract: try JSONDecoder().decode(Contract.self, from: Data(body.utf8)),
                             seenAtBlock: UInt64(row["seen_block"] as Int64), updatedAtBlock: UInt64(row["updated_block"] as Int64))
            }
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
