import Foundation
import GRDB
import GridTypes

/// Row <-> type conversions for the ledger tables.
enum LedgerRows {
    static func contractState(_ row: Row) -> ContractState {
        let state: Int64 = row["state"]
        switch state {
        case 1: return .deleted(DeletionCause(rawValue: Int(row["cause"] as Int64? ?? 0)) ?? .canceledByUser)
        case 2: return .gracePeriod(since: UInt64(row["grace_since"] as Int64? ?? 0))
        default: return .created
        }
    }

    static func stateColumns(_ state: ContractState) -> (Int64, Int64?, Int64?) {
        switch state {
        case .created: return (0, nil, nil)
        case .deleted(let cause): return (1, Int64(cause.rawValue), nil)
        case .gracePeriod(let since): return (2, nil, Int64(since))
        }
    }

    static func contract(_ row: Row) -> Contract {
        let data: Data = row["deployment_data"]
        return Contract(
            id: UInt64(row["id"] as Int64), version: UInt32(row["version"] as Int64), state: contractState(row),
            twinID: UInt32(row["twin_id"] as Int64),
            node: NodeContract(nodeID: UInt32(row["node_id"] as Int64), deploymentHash: row["deployment_hash"],
                               deploymentData: [UInt8](data), publicIPs: UInt32(row["public_ips"] as Int64)))
    }

    static func contract(_ db: Database, id: UInt64) throws -> Contract? {
        guard id <= UInt64(Int64.max) else { return nil }
        return try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM contracts WHERE id = ?"), arguments: [Int64(id)]).map(contract)
    }

    /// Many contracts in few statements: one `IN (...)` query per 500 ids, in the order asked.
    static func contracts(_ db: Database, ids: [UInt64]) throws -> [Contract] {
        var byID = [UInt64: Contract]()
        let valid = ids.filter { $0 <= UInt64(Int64.max) }
        for start in stride(from: 0, to: valid.count, by: 500) {
            let chunk = valid[start..<min(start + 500, valid.count)]
            let placeholders = Array(repeating: "?", count: chunk.count).joined(separator: ",")
            let rows = try Row.fetchCursor(db, sql: "SELECT * FROM contracts WHERE id IN (\(placeholders))",
                                           arguments: StatementArguments(chunk.map { Int64($0) }))
            while let row = try rows.next() {
                let c = contract(row)
                byID[c.id] = c
            }
        }
        return ids.compactMap { byID[$0] }
    }

    static func used(_ row: Row) -> Resources {
        Resources(hru: UInt64(row["used_hru"] as Int64), sru: UInt64(row["used_sru"] as Int64),
                  cru: UInt64(row["used_cru"] as Int64), mru: UInt64(row["used_mru"] as Int64))
    }

    static func twin(_ row: Row) throws -> Twin {
        let account: Data = row["account"]
        return Twin(id: UInt32(row["id"] as Int64), publicKey: try Ed25519PublicKey(bytes: [UInt8](account)))
    }

    static func node(_ row: Row) -> Node {
        Node(id: UInt32(row["id"] as Int64), farmID: UInt32(row["farm_id"] as Int64), twinID: UInt32(row["twin_id"] as Int64),
             resources: Resources(hru: UInt64(row["hru"] as Int64), sru: UInt64(row["sru"] as Int64),
                                  cru: UInt64(row["cru"] as Int64), mru: UInt64(row["mru"] as Int64)))
    }

    static func header(_ row: Row) -> BlockHeader {
        let hash: Data = row["hash"]
        return BlockHeader(number: UInt64(row["number"] as Int64), hash: [UInt8](hash),
                           timestampMilliseconds: UInt64(row["timestamp_ms"] as Int64))
    }

    static func block(_ db: Database, number: UInt64) throws -> FinalizedBlock? {
        guard number <= UInt64(Int64.max),
              let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT number, hash, timestamp_ms FROM blocks WHERE number = ?"), arguments: [Int64(number)])
        else { return nil }
        let events = try events(db, sql: "SELECT body FROM events WHERE block = ? ORDER BY idx", arguments: [Int64(number)])
        return FinalizedBlock(header: header(row), events: events)
    }

    static let decoder = JSONDecoder()

    /// Decodes stored event bodies; a body this program cannot read becomes `.other` rather than an error,
    /// so a newer writer's events never break an older reader.
    static func events(_ db: Database, sql: String, arguments: StatementArguments) throws -> [ChainEvent] {
        try String.fetchAll(db.cachedStatement(sql: sql), arguments: arguments).map { body in
            (try? decoder.decode(ChainEvent.self, from: Data(body.utf8))) ?? .other(pallet: "Unknown", name: "Undecodable")
        }
    }
}
