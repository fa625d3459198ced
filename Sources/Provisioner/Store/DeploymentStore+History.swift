import Foundation
import GRDB

extension DeploymentStore {
    /// One row of the provisioner's history across all contracts: what happened to which workload, and why.
    public struct HistoryEntry: Codable, Equatable, Sendable {
        public var sequence: Int64
        public var contractID: UInt64
        public var twinID: UInt32
        /// Unix seconds.
        public var time: Int64
        public var name: String
        public var type: String
        public var state: String
        public var message: String
    }

    /// The newest `limit` history rows of every contract, oldest first (the farmer's `node-agent events`).
    public func recentHistory(limit: Int = 100) async throws(ProvisionerError) -> [HistoryEntry] {
        let bounded = max(1, min(limit, 10_000))
        return try await read("read recent history") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM (SELECT * FROM history ORDER BY seq DESC LIMIT ?) ORDER BY seq",
                             arguments: [bounded]).map { row in
                HistoryEntry(sequence: row["seq"], contractID: UInt64(row["contract_id"] as Int64), twinID: UInt32(row["twin_id"] as Int64),
                             time: row["time"], name: row["name"], type: row["type"], state: row["state"], message: row["message"])
            }
        }
    }
}
