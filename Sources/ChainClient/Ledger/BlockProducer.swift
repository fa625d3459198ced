import Foundation
import GRDB
import GridTypes
import Logging

/// Writes the ledger's blocks. Several agents may share one ledger file; exactly one of them
/// produces at a time, by holding a lease stored in the file and renewed every block. When the
/// holder dies, another takes over once the lease expires.
public actor BlockProducer {
    public let ledger: LocalLedger
    /// Identifies this producer in the lease and in each block it writes.
    public nonisolated let holder: String
    let logger: Logger
    public private(set) var isLeader = false

    /// A lease outlives a few missed blocks, so a briefly slow producer is not replaced.
    var leaseMilliseconds: Int64 { Int64(max(ledger.parameters.blockTimeMilliseconds * 5, 1000)) }

    public init(ledger: LocalLedger, name: String, logger: Logger = Logger(label: "ledger.producer")) {
        self.ledger = ledger
        self.holder = "\(name) pid=\(getpid()) id=\(UUID().uuidString.prefix(8))"
        self.logger = logger
    }

    /// Takes the lease if it is free, expired or ours. Returns whether we hold it now.
    func acquireLease(now: Int64 = LocalLedger.nowMilliseconds()) throws(ChainError) -> Bool {
        let me = holder
        let lease = leaseMilliseconds
        let won = try ledger.write("take producer lease") { db -> Bool in
            let current = try String.fetchOne(db, sql: "SELECT value FROM ledger_meta WHERE key = 'producer'")
            let expires = Int64(try String.fetchOne(db, sql: "SELECT value FROM ledger_meta WHERE key = 'producer_expires_ms'") ?? "0") ?? 0
            if let current, current != me, expires > now { return false }
            try db.execute(sql: "INSERT OR REPLACE INTO ledger_meta(key, value) VALUES ('producer', ?), ('producer_expires_ms', ?)",
                           arguments: [me, String(now + lease)])
            return true
        }
        if won != isLeader {
            logger.notice(won ? "producing blocks for the ledger" : "another process produces the ledger's blocks",
                          metadata: ["ledger": .string(ledger.path), "holder": .string(me)])
        }
        isLeader = won
        return won
    }

    /// The current lease holder, if the lease is live.
    public nonisolated func currentHolder() throws(ChainError) -> String? {
        let now = LocalLedger.nowMilliseconds()
        return try ledger.read("read producer lease") { db in
            let current = try String.fetchOne(db, sql: "SELECT value FROM ledger_meta WHERE key = 'producer'")
            let expires = Int64(try String.fetchOne(db, sql: "SELECT value FROM ledger_meta WHERE key = 'producer_expires_ms'") ?? "0") ?? 0
            return expires > now ? current : nil
        }
    }

    /// Gives the lease up at shutdown so another producer takes over at once.
    public func releaseLease() {
        let me = holder
        _ = try? ledger.write("release producer lease") { db in
            try db.execute(sql: "DELETE FROM ledger_meta WHERE key IN ('producer', 'producer_expires_ms') AND ? = (SELECT value FROM ledger_meta WHERE key = 'producer')",
                           arguments: [me])
        }
        isLeader = false
    }

    /// Writes the next block, if this producer holds the lease. Returns the new block's header.
    @discardableResult
    public func produceBlock() throws(ChainError) -> BlockHeader? {
        guard try acquireLease() else { return nil }
        let parameters = ledger.parameters
        let genesis = ledger.genesisHash
        let me = holder
        return try ledger.write("produce block") { db -> BlockHeader? in
            // The lease is re-checked inside the block's own transaction: no two writers ever race.
            guard try String.fetchOne(db, sql: "SELECT value FROM ledger_meta WHERE key = 'producer'") == me else { return nil }
            guard let parent = try Row.fetchOne(db, sql: "SELECT number, hash, timestamp_ms FROM blocks ORDER BY number DESC LIMIT 1") else {
                throw ChainError.ledgerCorrupt(path: self.ledger.path, detail: "no genesis block")
            }
            let parentHeader = LedgerRows.header(parent)
            let number = parentHeader.number + 1
            let timestamp = max(LocalLedger.nowMilliseconds(), Int64(parentHeader.timestampMilliseconds) + 1)
            var machine = LedgerStateMachine(parameters: parameters, genesis: genesis, block: number, timestampMilliseconds: timestamp)
            try machine.applyPending(db)
            try machine.bill(db)

            let encoder = JSONEncoder()
            var digestInput = parentHeader.hash
            withUnsafeBytes(of: number.littleEndian) { digestInput += $0 }
            withUnsafeBytes(of: timestamp.littleEndian) { digestInput += $0 }
            for (index, entry) in machine.events.enumerated() {
                let body = try encoder.encode(entry.event)
                digestInput += Blake2b.hash256([UInt8](body))
                try db.execute(sql: "INSERT INTO events(block, idx, name, contract_id, node_id, tx_id, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                               arguments: [Int64(number), index, entry.event.name, entry.event.contractID.map { Int64($0) },
                                           entry.event.nodeID.map { Int64($0) }, entry.tx, String(decoding: body, as: UTF8.self)])
            }
            let hash = Blake2b.hash256(digestInput)
            try db.execute(sql: "INSERT INTO blocks(number, hash, parent, timestamp_ms, producer) VALUES (?, ?, ?, ?, ?)",
                           arguments: [Int64(number), Data(hash), Data(parentHeader.hash), timestamp, me])
            return BlockHeader(number: number, hash: hash, timestampMilliseconds: UInt64(timestamp))
        }
    }

    /// Produces a block every block time until cancelled, standing by while another process holds
    /// the lease. Errors are logged and retried: a busy file must not stop the chain.
    public func run() async {
        let interval = Duration.milliseconds(ledger.parameters.blockTimeMilliseconds)
        let clock = ContinuousClock()
        var next = clock.now
        while !Task.isCancelled {
            do {
                if let header = try produceBlock(), header.number % 100 == 0 {
                    logger.debug("block produced", metadata: ["number": .stringConvertible(header.number)])
                }
            } catch {
                logger.warning("block production failed; retrying next block", metadata: ["error": .string(error.description)])
            }
            next = next.advanced(by: interval)
            if next < clock.now { next = clock.now }
            try? await Task.sleep(until: next, clock: clock)
        }
        releaseLease()
    }
}
