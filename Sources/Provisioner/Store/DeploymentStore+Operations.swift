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

extension DeploymentStore {
    /// A workload's state without its body: what status pages and metrics count.
    public struct WorkloadSummary: Equatable, Sendable {
        public var contractID: UInt64
        public var name: String
        public var type: String
        /// false: being removed.
        public var desired: Bool
        public var state: String
        public var message: String
        /// The deployment is being removed (its contract ended).
        public var removing: Bool

        public init(contractID: UInt64, name: String, type: String, desired: Bool, state: String, message: String, removing: Bool) {
            self.contractID = contractID
            self.name = name
            self.type = type
            self.desired = desired
            self.state = state
            self.message = message
            self.removing = removing
        }
    }

    private struct TypeOnly: Decodable { var type: String }

    /// Every workload's state, cheaply: no deployment bodies are decoded, and of each workload body
    /// only its type.
    public func summary() async throws(ProvisionerError) -> [WorkloadSummary] {
        try await read("summarize workloads") { db in
            let decoder = JSONDecoder()
            return try Row.fetchAll(db, sql: """
                SELECT w.contract_id, w.name, w.body, w.desired, w.state, w.message, d.removing
                FROM workloads w JOIN deployments d USING(contract_id) ORDER BY w.contract_id, w.name
                """).map { row in
                let type = (try? decoder.decode(TypeOnly.self, from: row["body"] as Data))?.type ?? "unknown"
                return WorkloadSummary(contractID: UInt64(row["contract_id"] as Int64), name: row["name"], type: type,
                                       desired: (row["desired"] as Int64) != 0, state: row["state"], message: row["message"],
                                       removing: (row["removing"] as Int64) != 0)
            }
        }
    }

    /// Contract id -> removing, for every deployment (one with no workload left included).
    public func deploymentFlags() async throws(ProvisionerError) -> [UInt64: Bool] {
        try await read("list deployment flags") { db in
            var out = [UInt64: Bool]()
            for row in try Row.fetchAll(db, sql: "SELECT contract_id, removing FROM deployments") {
                out[UInt64(row["contract_id"] as Int64)] = (row["removing"] as Int64) != 0
            }
            return out
        }
    }
}
