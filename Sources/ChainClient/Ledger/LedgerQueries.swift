import Foundation
import GRDB
import GridTypes

/// Read-only views of the ledger for the command lines (`grid-twin`, `node-agent ledger`).
extension LocalLedger {
    public struct NodeSummary: Codable, Equatable, Sendable {
        public var node: Node
        /// Sum of what the node reported its active contracts use.
        public var used: Resources
        public var activeContracts: Int
        public var uptime: UInt64?
        public var free: Resources {
            Resources(hru: node.resources.hru - min(node.resources.hru, used.hru), sru: node.resources.sru - min(node.resources.sru, used.sru),
                      cru: node.resources.cru - min(node.resources.cru, used.cru), mru: node.resources.mru - min(node.resources.mru, used.mru))
        }
    }

    public struct ContractSummary: Codable, Equatable, Sendable {
        public var contract: Contract
        public var used: Resources
        public var createdBlock: UInt64
        public var billedUntilBlock: UInt64
        public var totalBilled: UInt64
    }

    public struct BlockSummary: Codable, Equatable, Sendable {
        public var header: BlockHeader
        public var producer: String
        public var eventCount: Int
    }

    public struct EventRecord: Codable, Equatable, Sendable {
        public var block: UInt64
        public var index: Int
        public var event: ChainEvent
    }

    public struct UptimeRecord: Codable, Equatable, Sendable {
        public var nodeID: UInt32
        public var block: UInt64
        public var timestamp: UInt64
        public var uptime: UInt64
    }

    public func balance(twin: UInt32) throws(ChainError) -> UInt64? {
        try read("read balance") { db in
            try Int64.fetchOne(db, sql: "SELECT balance FROM twins WHERE id = ?", arguments: [Int64(twin)]).map { UInt64($0) }
        }
    }

    public func nodes() throws(ChainError) -> [NodeSummary] {
        try read("list nodes") { db in
            try Row.fetchAll(db, sql: """
                SELECT n.*, COALESCE(SUM(c.used_hru), 0) AS u_hru, COALESCE(SUM(c.used_sru), 0) AS u_sru,
                       COALESCE(SUM(c.used_cru), 0) AS u_cru, COALESCE(SUM(c.used_mru), 0) AS u_mru, COUNT(c.id) AS active
                FROM nodes n LEFT JOIN contracts c ON c.node_id = n.id AND c.state != 1
                GROUP BY n.id ORDER BY n.id
                """).map { row in
                NodeSummary(node: LedgerRows.node(row),
                            used: Resources(hru: UInt64(row["u_hru"] as Int64), sru: UInt64(row["u_sru"] as Int64),
                                            cru: UInt64(row["u_cru"] as Int64), mru: UInt64(row["u_mru"] as Int64)),
                            activeContracts: row["active"], uptime: (row["uptime"] as Int64?).map { UInt64($0) })
            }
        }
    }

    /// Contracts filtered by twin and/or node, newest first; deleted ones only when asked.
    public func contracts(twin: UInt32? = nil, node: UInt32? = nil, includeDeleted: Bool = false,
                          limit: Int = 1000) throws(ChainError) -> [ContractSummary] {
        try read("list contracts") { db in
            var conditions = [String]()
            var arguments = StatementArguments()
            if let twin { conditions.append("twin_id = ?"); arguments += [Int64(twin)] }
            if let node { conditions.append("node_id = ?"); arguments += [Int64(node)] }
            if !includeDeleted { conditions.append("state != 1") }
            let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
            arguments += [limit]
            return try Row.fetchAll(db, sql: """
                SELECT c.*, (SELECT COALESCE(SUM(amount), 0) FROM bills b WHERE b.contract_id = c.id) AS billed
                FROM contracts c \(filter) ORDER BY id DESC LIMIT ?
                """, arguments: arguments).map { row in
                ContractSummary(contract: LedgerRows.contract(row), used: LedgerRows.used(row),
                                createdBlock: UInt64(row["created_block"] as Int64), billedUntilBlock: UInt64(row["billed_until"] as Int64),
                                totalBilled: UInt64(row["billed"] as Int64))
            }
        }
    }

    public func recentBlocks(limit: Int) throws(ChainError) -> [BlockSummary] {
        try read("list blocks") { db in
            try Row.fetchAll(db, sql: """
                SELECT b.*, (SELECT COUNT(*) FROM events e WHERE e.block = b.number) AS event_count
                FROM blocks b ORDER BY number DESC LIMIT ?
                """, arguments: [limit]).map { row in
                BlockSummary(header: LedgerRows.header(row), producer: row["producer"], eventCount: row["event_count"])
            }
        }
    }

    /// Newest events, optionally only those of one contract or node; returned oldest first.
    public func events(contract: UInt64? = nil, node: UInt32? = nil, limit: Int = 50) throws(ChainError) -> [EventRecord] {
        try read("list events") { db in
            var conditions = [String]()
            var arguments = StatementArguments()
            if let contract { conditions.append("contract_id = ?"); arguments += [Int64(contract)] }
            if let node { conditions.append("node_id = ?"); arguments += [Int64(node)] }
            let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
            arguments += [limit]
            let rows = try Row.fetchAll(db, sql: "SELECT block, idx, body FROM events \(filter) ORDER BY block DESC, idx DESC LIMIT ?",
                                        arguments: arguments)
            return rows.reversed().map { row in
                let body: String = row["body"]
                let event = (try? LedgerRows.decoder.decode(ChainEvent.self, from: Data(body.utf8))) ?? .other(pallet: "Unknown", name: "Undecodable")
                return EventRecord(block: UInt64(row["block"] as Int64), index: row["idx"], event: event)
            }
        }
    }

    public func uptimeReports(node: UInt32? = nil, limit: Int = 50) throws(ChainError) -> [UptimeRecord] {
        try read("list uptime reports") { db in
            let filter = node == nil ? "" : "WHERE node_id = ?"
            var arguments = StatementArguments()
            if let node { arguments += [Int64(node)] }
            arguments += [limit]
            return try Row.fetchAll(db, sql: "SELECT * FROM uptime_reports \(filter) ORDER BY block DESC LIMIT ?", arguments: arguments).map { row in
                UptimeRecord(nodeID: UInt32(row["node_id"] as Int64), block: UInt64(row["block"] as Int64),
                             timestamp: UInt64(row["timestamp"] as Int64), uptime: UInt64(row["uptime"] as Int64))
            }
        }
    }

    /// Counts for `node-agent ledger`: pending transactions and the lease holder's name.
    public func pendingTransactionCount() throws(ChainError) -> Int {
        try read("count pending") { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM transactions WHERE status = 'pending'") ?? 0 }
    }
}
