import Foundation
import GRDB
import GridTypes

/// The embedded ledger: a SQLite file (WAL) with TFChain's contract model, shared by every process
/// on the machine that opens the same path. Any process reads and submits transactions; only the
/// process holding the producer lease writes blocks (`BlockProducer`), applying pending
/// transactions in order in the next block.
public final class LocalLedger: GridChain, Sendable {
    public let path: String
    public let parameters: LedgerParameters
    let pool: DatabasePool
    /// Random per ledger file: bound into every signature so a transaction cannot be replayed on
    /// another ledger.
    public let genesisHash: [UInt8]

    public static let busyTimeoutSeconds: Double = 10
    static let maxPendingPerSubmitter = 1000

    /// Opens (creating when missing) the ledger at `path`. `parameters` only apply to a new file;
    /// an existing file keeps the rules it was created with.
    public init(path: String, parameters: LedgerParameters = LedgerParameters(),
                busyTimeoutSeconds: Double = LocalLedger.busyTimeoutSeconds) throws(ChainError) {
        self.path = path
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            do { try NodeIdentity.makeDirectory(directory) } catch {
                throw .io(operation: "create directory", path: directory, errno: EACCES)
            }
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(busyTimeoutSeconds)
        configuration.label = "ledger"
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
        } catch {
            throw Self.translate(error, path: path, operation: "open")
        }
        let (stored, genesis) = try Self.prepare(pool: pool, path: path, parameters: parameters)
        self.parameters = stored
        self.genesisHash = genesis
    }

    /// Creates the schema and genesis on a new file; checks version and integrity on an old one.
    private static func prepare(pool: DatabasePool, path: String,
                                parameters: LedgerParameters) throws(ChainError) -> (LedgerParameters, [UInt8]) {
        do {
            return try pool.write { db in
                let version = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
                if version > LedgerSchema.version {
                    throw ChainError.ledgerSchemaTooNew(path: path, found: version, supported: LedgerSchema.version)
                }
                if version == 0 {
                    guard try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master") == 0 else {
                        throw ChainError.ledgerCorrupt(path: path, detail: "an SQLite file with unrelated tables and no ledger schema version")
                    }
                    try LedgerSchema.create(db)
                    var genesis = [UInt8](repeating: 0, count: 32)
                    for i in genesis.indices { genesis[i] = UInt8.random(in: 0...255) }
                    let encodedParameters = String(decoding: try JSONEncoder().encode(parameters), as: UTF8.self)
                    try db.execute(sql: "INSERT INTO ledger_meta(key, value) VALUES ('genesis', ?), ('parameters', ?)",
                                   arguments: [Hex.encode(genesis), encodedParameters])
                    try db.execute(sql: "INSERT INTO blocks(number, hash, parent, timestamp_ms, producer) VALUES (0, ?, ?, ?, 'genesis')",
                                   arguments: [Data(genesis), Data(count: 32), Int64(Date().timeIntervalSince1970 * 1000)])
                    return (parameters, genesis)
                }
                guard let genesisHex = try String.fetchOne(db, sql: "SELECT value FROM ledger_meta WHERE key = 'genesis'"),
                      let genesis = try? Hex.decode(genesisHex), genesis.count == 32,
                      let parametersText = try String.fetchOne(db, sql: "SELECT value FROM ledger_meta WHERE key = 'parameters'"),
                      let stored = try? JSONDecoder().decode(LedgerParameters.self, from: Data(parametersText.utf8)) else {
                    throw ChainError.ledgerCorrupt(path: path, detail: "missing or unreadable genesis/parameters")
                }
                return (stored, genesis)
            }
        } catch {
            throw translate(error, path: path, operation: "open")
        }
    }

    /// Maps GRDB/SQLite errors to messages a farmer can act on.
    static func translate(_ error: any Error, path: String, operation: String) -> ChainError {
        if let chain = error as? ChainError { return chain }
        if let db = error as? DatabaseError {
            switch db.resultCode {
            case .SQLITE_BUSY, .SQLITE_LOCKED: return .ledgerLocked(path: path)
            case .SQLITE_CORRUPT, .SQLITE_NOTADB: return .ledgerCorrupt(path: path, detail: db.message ?? "not a database")
            case .SQLITE_CANTOPEN: return .database(path: path, operation: operation, detail: "cannot open the file (missing directory or permissions?)")
            case .SQLITE_FULL: return .database(path: path, operation: operation, detail: "disk full")
            default: return .database(path: path, operation: operation, detail: db.message ?? "\(db.resultCode)")
            }
        }
        return .database(path: path, operation: operation, detail: "\(error)")
    }

    func read<T: Sendable>(_ operation: String, _ body: @Sendable (Database) throws -> T) throws(ChainError) -> T {
        do { return try pool.read(body) } catch { throw Self.translate(error, path: path, operation: operation) }
    }

    func write<T: Sendable>(_ operation: String, _ body: @Sendable (Database) throws -> T) throws(ChainError) -> T {
        do { return try pool.write(body) } catch { throw Self.translate(error, path: path, operation: operation) }
    }

    // MARK: GridChain reads

    public func activeContracts(node: UInt32) async throws(ChainError) -> [UInt64] {
        try read("list active contracts") { db in
            try Int64.fetchAll(db, sql: "SELECT id FROM contracts WHERE node_id = ? AND state != 1 ORDER BY id",
                               arguments: [Int64(node)]).map { UInt64($0) }
        }
    }

    public func contract(id: UInt64) async throws(ChainError) -> Contract? {
        try read("read contract") { db in try LedgerRows.contract(db, id: id) }
    }

    public func contracts(ids: [UInt64]) async throws(ChainError) -> [Contract] {
        try read("read contracts") { db in try LedgerRows.contracts(db, ids: ids) }
    }

    public func twin(id: UInt32) async throws(ChainError) -> Twin? {
        try read("read twin") { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT id, account FROM twins WHERE id = ?", arguments: [Int64(id)]) else { return nil }
            return try LedgerRows.twin(row)
        }
    }

    public func twinID(account: Ed25519PublicKey) async throws(ChainError) -> UInt32? {
        try read("find twin") { db in
            try Int64.fetchOne(db, sql: "SELECT id FROM twins WHERE account = ?", arguments: [Data(account.bytes)]).map { UInt32($0) }
        }
    }

    public func node(id: UInt32) async throws(ChainError) -> Node? {
        try read("read node") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM nodes WHERE id = ?", arguments: [Int64(id)]).map(LedgerRows.node)
        }
    }

    public func nodeID(twin: UInt32) async throws(ChainError) -> UInt32? {
        try read("find node") { db in
            try Int64.fetchOne(db, sql: "SELECT id FROM nodes WHERE twin_id = ?", arguments: [Int64(twin)]).map { UInt32($0) }
        }
    }

    public func farmExists(id: UInt32) async throws(ChainError) -> Bool {
        try read("read farm") { db in
            try Int64.fetchOne(db, sql: "SELECT id FROM farms WHERE id = ?", arguments: [Int64(id)]) != nil
        }
    }

    public func finalizedHead() async throws(ChainError) -> BlockHeader {
        try read("read head") { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT number, hash, timestamp_ms FROM blocks ORDER BY number DESC LIMIT 1") else {
                throw ChainError.ledgerCorrupt(path: self.path, detail: "no genesis block")
            }
            return LedgerRows.header(row)
        }
    }

    public func block(number: UInt64) async throws(ChainError) -> FinalizedBlock? {
        try read("read block") { db in try LedgerRows.block(db, number: number) }
    }

    /// Blocks after `after`, polled from the file: other processes' commits show up at the next read.
    public func finalizedBlocks(after: UInt64) -> AsyncThrowingStream<FinalizedBlock, any Error> {
        let pollInterval = Duration.milliseconds(max(5, min(parameters.blockTimeMilliseconds / 4, 250)))
        return AsyncThrowingStream { continuation in
            let task = Task {
                var next = after + 1
                while !Task.isCancelled {
                    do {
                        let from = next
                        let blocks = try self.read("follow blocks") { db in
                            let numbers = try Int64.fetchAll(db, sql: "SELECT number FROM blocks WHERE number >= ? ORDER BY number LIMIT 100",
                                                             arguments: [Int64(from)])
                            return try numbers.compactMap { try LedgerRows.block(db, number: UInt64($0)) }
                        }
                        for block in blocks {
                            continuation.yield(block)
                            next = block.header.number + 1
                        }
                        if blocks.count == 100 { continue }
                    } catch {
                        continuation.finish(throwing: error)
                        return
                    }
                    try? await Task.sleep(for: pollInterval)
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    // MARK: Submitting

    /// Queues a signed call; the producer applies it in the next block. Waits for the outcome.
    public func submit(_ call: ChainCall, signer: Ed25519KeyPair) async throws(ChainError) -> Inclusion {
        let id = try enqueue(call, signer: signer)
        return try await awaitOutcome(transaction: id, call: call.name)
    }

    /// Credits a twin from the local faucet (local ledger only: writing the file is the authority).
    public func fund(twin: UInt32, amount: UInt64) async throws(ChainError) -> Inclusion {
        guard amount > 0, amount <= UInt64(Int64.max) else { throw .invalidInput("amount must be between 1 unit and \(Int64.max) units") }
        let payload = LedgerTransaction.faucetPayload(twin: twin, amount: amount)
        let id = try write("queue faucet transfer") { db in
            try db.execute(sql: "INSERT INTO transactions(call_name, payload, submitted_ms) VALUES ('Balances.faucet', ?, ?)",
                           arguments: [Data(payload), Self.nowMilliseconds()])
            return db.lastInsertedRowID
        }
        return try await awaitOutcome(transaction: id, call: "Balances.faucet")
    }

    /// Signs and queues a call without waiting (batch submitters use this with `awaitOutcome`). The nonce is the account's next one counting its queued
    /// transactions, chosen inside the write lock so concurrent submitters never collide.
    public func enqueue(_ call: ChainCall, signer: Ed25519KeyPair) throws(ChainError) -> Int64 {
        let callJSON: Data
        do { callJSON = try JSONEncoder().encode(call) } catch { throw .invalidInput("cannot encode \(call.name): \(error)") }
        let genesis = genesisHash
        return try write("queue \(call.name)") { db in
            let account = Data(signer.publicKey.bytes)
            let stored = try Int64.fetchOne(db, sql: "SELECT nonce FROM accounts WHERE account = ?", arguments: [account]) ?? 0
            let queued = try Int64.fetchOne(db, sql: "SELECT count(*) FROM transactions WHERE signer = ? AND status = 'pending'",
                                            arguments: [account]) ?? 0
            guard queued < Self.maxPendingPerSubmitter else {
                throw ChainError.rejected(call: call.name, module: "System", error: "TooManyPending",
                                          detail: "\(queued) transactions of this account wait for a block; is a block producer running?")
            }
            let nonce = UInt64(stored + queued)
            let payload = LedgerTransaction.signingPayload(genesis: genesis, nonce: nonce, callJSON: [UInt8](callJSON))
            let signature = signer.sign(payload)
            try db.execute(sql: """
                INSERT INTO transactions(signer, nonce, call_name, payload, signature, submitted_ms) VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [account, Int64(nonce), call.name, Data(payload), Data(signature), Self.nowMilliseconds()])
            return db.lastInsertedRowID
        }
    }

    public func awaitOutcome(transaction id: Int64, call: String) async throws(ChainError) -> Inclusion {
        // Generous: a producer on a loaded machine (or one just taking over the lease) can be late by
        // tens of seconds, and giving up early reports a failure for a call that still lands.
        let timeoutSeconds = Double(parameters.blockTimeMilliseconds) * 10 / 1000 + 45
        let deadline = ContinuousClock.now + .milliseconds(Int(timeoutSeconds * 1000))
        let poll = Duration.milliseconds(max(2, min(parameters.blockTimeMilliseconds / 5, 200)))
        while ContinuousClock.now < deadline {
            let outcome = try read("read transaction outcome") { db -> Result<Inclusion, ChainError>? in
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM transactions WHERE id = ?", arguments: [id]) else {
                    return .failure(.ledgerCorrupt(path: self.path, detail: "queued transaction \(id) vanished"))
                }
                let status: String = row["status"]
                if status == "pending" { return nil }
                if status == "failed" {
                    return .failure(.rejected(call: call, module: row["error_module"] ?? "?", error: row["error_name"] ?? "?",
                                              detail: row["error_detail"] ?? ""))
                }
                let block: Int64 = row["block"]
                let events = try LedgerRows.events(db, sql: "SELECT body FROM events WHERE tx_id = ? ORDER BY block, idx", arguments: [id])
                return .success(Inclusion(blockNumber: UInt64(block), events: events))
            }
            switch outcome {
            case .success(let inclusion)?: return inclusion
            case .failure(let error)?: throw error
            case nil:
                do { try await Task.sleep(for: poll) } catch { throw .cancelled(operation: "waiting for \(call)") }
            }
        }
        throw .timeout(operation: "waiting for \(call) to be included in a block", seconds: timeoutSeconds)
    }

    static func nowMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
