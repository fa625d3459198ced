import ChainClient
import Foundation
import GRDB
import GridTypes

/// What a report says, before it is a statement and an outbox row.
public enum ReportContent: Equatable, Sendable {
    case uptime(UptimeClaim)
    case contractResources([ContractResources])
    case nru([NruConsumption])
    case nodeResources(nodeID: UInt32, Resources)

    public var kind: ReportStatement.Kind {
        switch self {
        case .uptime: return .uptime
        case .contractResources: return .contractResources
        case .nru: return .nru
        case .nodeResources: return .nodeResources
        }
    }

    public var call: ChainCall {
        switch self {
        case .uptime(let claim): return .reportUptime(uptime: claim.uptime, timestampHint: claim.timestampHint)
        case .contractResources(let reports): return .reportContractResources(reports)
        case .nru(let reports): return .addNruReports(reports)
        case .nodeResources(let nodeID, let resources): return .updateNode(nodeID: nodeID, resources: resources)
        }
    }

    func fill(_ statement: inout ReportStatement) {
        switch self {
        case .uptime(let claim): statement.uptime = claim
        case .contractResources(let reports): statement.contractResources = reports
        case .nru(let reports): statement.nru = reports
        case .nodeResources(_, let resources): statement.nodeResources = resources
        }
    }

    init?(_ statement: ReportStatement) {
        switch statement.kind {
        case .uptime: guard let claim = statement.uptime else { return nil }; self = .uptime(claim)
        case .contractResources: guard let r = statement.contractResources else { return nil }; self = .contractResources(r)
        case .nru: guard let r = statement.nru else { return nil }; self = .nru(r)
        case .nodeResources: guard let r = statement.nodeResources else { return nil }; self = .nodeResources(nodeID: statement.nodeID, r)
        default: return nil
        }
    }
}

/// One report in the outbox.
public struct OutboxEntry: Equatable, Sendable {
    public enum Status: String, Codable, Sendable {
        /// Not sent yet, or known not to be on the chain.
        case pending
        /// Handed to the chain; whether it was included is not known yet (a crash, a timeout).
        case inflight
        case delivered
        case rejected
        case superseded
        case rebuilt

        public var isOpen: Bool { self == .pending || self == .inflight }
    }

    /// The send order.
    public var id: Int64
    public var statementSeq: UInt64
    public var content: ReportContent
    public var status: Status
    public var attempts: Int
    /// The finalized head when the report was last handed to the chain: inclusion is looked for after it.
    public var submittedHead: UInt64?
    public var createdSeconds: UInt64
    public var bootID: String
    public var builtSinceBoot: UInt64
    public var lastError: String?
    public var block: UInt64?

    public var kind: ReportStatement.Kind { content.kind }
}

/// Outbox totals for status: what was last delivered, how much waits and for how long.
public struct OutboxStatus: Codable, Equatable, Sendable {
    public struct Delivered: Codable, Equatable, Sendable {
        public var statementSeq: UInt64
        public var kind: String
        public var block: UInt64
        public var deliveredAt: UInt64
    }

    public struct Rejected: Codable, Equatable, Sendable {
        public var statementSeq: UInt64
        public var kind: String
        public var error: String
        public var at: UInt64
    }

    public var pendingCount: Int
    /// Wall-clock Unix seconds when the oldest pending report was written.
    public var oldestPendingSince: UInt64?
    public var lastDelivered: Delivered?
    public var lastRejected: Rejected?
    public var deliveredCount: Int
    public var rejectedCount: Int
    public var statementCount: Int

    public func oldestPendingAge(now: UInt64) -> UInt64? {
        oldestPendingSince.map { now > $0 ? now - $0 : 0 }
    }
}

/// `<state_dir>/reports.sqlite`: the signed statement log and the outbox. Every report is a
/// signed statement and an outbox row, committed (synchronous=FULL) before it is handed to the
/// chain; each outcome is a receipt statement committed with the row's new status, so the log and
/// the outbox never disagree, whatever moment the process dies.
public final class ReportStore: Sendable {
    public let path: String
    let pool: DatabasePool
    let signer: Ed25519KeyPair?

    public static let fileName = "reports.sqlite"
    static let schemaVersion = 1

    /// Opens (creating) the store; `signer` is the node key, needed to append.
    public init(path: String, signer: Ed25519KeyPair?, readOnly: Bool = false) throws(CapacityReporterError) {
        self.path = path
        self.signer = signer
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.readonly = readOnly
        configuration.label = "reports"
        configuration.prepareDatabase { db in
            if !db.configuration.readonly { try db.execute(sql: "PRAGMA synchronous = FULL") }
        }
        if readOnly, access(path, R_OK) != 0 {
            throw .io(operation: "open report database", path: path, errno: errno)
        }
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
        } catch {
            throw Self.translate(error, path: path, operation: "open")
        }
        if !readOnly { try migrate() } else { try checkVersion() }
    }

    private func migrate() throws(CapacityReporterError) {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE statements(seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, body BLOB NOT NULL,
                    signature BLOB NOT NULL, hash BLOB NOT NULL);
                CREATE TABLE outbox(id INTEGER PRIMARY KEY AUTOINCREMENT,
                    statement_seq INTEGER NOT NULL UNIQUE REFERENCES statements(seq),
                    kind TEXT NOT NULL, call TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                    submitted_head INTEGER, created_s INTEGER NOT NULL, boot_id TEXT NOT NULL, built_since_boot INTEGER NOT NULL,
                    last_error TEXT, resolved_s INTEGER, block INTEGER, receipt_seq INTEGER);
                CREATE INDEX outbox_open ON outbox(id) WHERE status IN ('pending', 'inflight');
                CREATE TABLE reporter_state(key TEXT PRIMARY KEY, value TEXT NOT NULL);
                """)
            try db.execute(sql: "PRAGMA user_version = \(Self.schemaVersion)")
        }
        do {
            try checkVersion()
            try migrator.migrate(pool)
        } catch let error as CapacityReporterError {
            throw error
        } catch {
            throw Self.translate(error, path: path, operation: "create tables")
        }
    }

    private func checkVersion() throws(CapacityReporterError) {
        let version = try read("read schema version") { db in try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0 }
        if version > Self.schemaVersion { throw .schemaTooNew(path: path, found: version, supported: Self.schemaVersion) }
    }

    static func translate(_ error: any Error, path: String, operation: String) -> CapacityReporterError {
        if let own = error as? CapacityReporterError { return own }
        if let db = error as? DatabaseError {
            switch db.resultCode {
            case .SQLITE_FULL: return .database(path: path, operation: operation, detail: "disk full")
            case .SQLITE_CANTOPEN: return .database(path: path, operation: operation, detail: "cannot open the file (missing directory or permissions?)")
            default: return .database(path: path, operation: operation, detail: db.message ?? "\(db.resultCode)")
            }
        }
        return .database(path: path, operation: operation, detail: "\(error)")
    }

    func read<T: Sendable>(_ operation: String, _ body: @Sendable (Database) throws -> T) throws(CapacityReporterError) -> T {
        do { return try pool.read(body) } catch { throw Self.translate(error, path: path, operation: operation) }
    }

    func write<T: Sendable>(_ operation: String, _ body: @Sendable (Database) throws -> T) throws(CapacityReporterError) -> T {
        do { return try pool.write(body) } catch { throw Self.translate(error, path: path, operation: operation) }
    }

    // MARK: statements

    /// Who is writing, and when, for every statement of one transaction.
    public struct Stamp: Sendable {
        public var nodeID: UInt32
        public var time: UInt64
        public var bootID: String
        public var sinceBoot: UInt64

        public init(nodeID: UInt32, time: UInt64, bootID: String, sinceBoot: UInt64) {
            self.nodeID = nodeID
            self.time = time
            self.bootID = bootID
            self.sinceBoot = sinceBoot
        }
    }

    /// Appends a signed statement inside the caller's transaction.
    static func appendStatement(_ db: Database, signer: Ed25519KeyPair, kind: ReportStatement.Kind, stamp: Stamp,
                                fill: (inout ReportStatement) -> Void) throws -> UInt64 {
        var seq: UInt64 = 1
        var prev = ReportStatement.genesisPrev
        if let last = try Row.fetchOne(db.cachedStatement(sql: "SELECT seq, hash FROM statements ORDER BY seq DESC LIMIT 1")) {
            seq = UInt64(last["seq"] as Int64) + 1
            prev = Hex.encode([UInt8](last["hash"] as Data))
        }
        var statement = ReportStatement(seq: seq, prev: prev, kind: kind, nodeID: stamp.nodeID, time: stamp.time, bootID: stamp.bootID)
        fill(&statement)
        let signed = try SignedReportLog.sign(statement, with: signer)
        try db.cachedStatement(sql: "INSERT INTO statements(seq, kind, body, signature, hash) VALUES (?, ?, ?, ?, ?)")
            .execute(arguments: [Int64(seq), kind.rawValue, Data(signed.body), Data(signed.signature), Data(signed.hash)])
        return seq
    }

    private func requireSigner() throws(CapacityReporterError) -> Ed25519KeyPair {
        guard let signer else { throw .signing("the report database was opened without the node key") }
        return signer
    }

    /// Writes reports (statements and outbox rows) and state changes in one transaction; returns
    /// the outbox ids in order.
    @discardableResult
    public func enqueue(_ contents: [ReportContent], stamp: Stamp, replacing: OutboxEntry? = nil,
                        state: [String: String] = [:]) throws(CapacityReporterError) -> [Int64] {
        let signer = try requireSigner()
        var calls = [String]()
        for content in contents {
            do { calls.append(String(decoding: try JSONEncoder().encode(content.call), as: UTF8.self)) } catch {
                throw .invalidInput("cannot encode \(content.call.name): \(error)")
            }
        }
        let encodedCalls = calls
        return try write("write \(contents.map(\.kind.rawValue).joined(separator: ", ")) report") { db in
            var ids = [Int64]()
            var firstSeq: UInt64?
            for (content, call) in zip(contents, encodedCalls) {
                let seq = try Self.appendStatement(db, signer: signer, kind: content.kind, stamp: stamp) { statement in
                    content.fill(&statement)
                    statement.replaces = replacing?.statementSeq
                }
                if firstSeq == nil { firstSeq = seq }
                try db.execute(sql: """
                    INSERT INTO outbox(statement_seq, kind, call, status, created_s, boot_id, built_since_boot)
                    VALUES (?, ?, ?, 'pending', ?, ?, ?)
                    """, arguments: [Int64(seq), content.kind.rawValue, call, Int64(clamping: stamp.time), stamp.bootID,
                                     Int64(clamping: stamp.sinceBoot)])
                ids.append(db.lastInsertedRowID)
            }
            if let replacing {
                try Self.resolve(db, signer: signer, entry: replacing, outcome: contents.isEmpty ? .rejected : .rebuilt,
                                 block: nil, by: firstSeq, detail: replacing.lastError, stamp: stamp)
            }
            for (key, value) in state {
                try db.execute(sql: "INSERT OR REPLACE INTO reporter_state(key, value) VALUES (?, ?)", arguments: [key, value])
            }
            return ids
        }
    }

    /// A capacity attestation: a statement with no outbox row.
    @discardableResult
    public func attest(_ attestation: CapacityAttestation, stamp: Stamp, state: [String: String] = [:]) throws(CapacityReporterError) -> UInt64 {
        let signer = try requireSigner()
        return try write("write capacity attestation") { db in
            let seq = try Self.appendStatement(db, signer: signer, kind: .capacity, stamp: stamp) { $0.capacity = attestation }
            for (key, value) in state {
                try db.execute(sql: "INSERT OR REPLACE INTO reporter_state(key, value) VALUES (?, ?)", arguments: [key, value])
            }
            return seq
        }
    }

    // MARK: outbox

    static func entry(_ row: Row) throws -> OutboxEntry {
        let seq = UInt64(row["statement_seq"] as Int64)
        guard let bodyData = row["body"] as Data?, let statement = SignedReportLog.decode([UInt8](bodyData)),
              let content = ReportContent(statement) else {
            throw CapacityReporterError.invalidInput("outbox row \(row["id"] as Int64) names statement \(seq), which is missing or not a report")
        }
        return OutboxEntry(id: row["id"], statementSeq: seq, content: content,
                           status: OutboxEntry.Status(rawValue: row["status"]) ?? .pending, attempts: row["attempts"],
                           submittedHead: (row["submitted_head"] as Int64?).map { UInt64($0) },
                           createdSeconds: UInt64(max(0, row["created_s"] as Int64)), bootID: row["boot_id"],
                           builtSinceBoot: UInt64(max(0, row["built_since_boot"] as Int64)), lastError: row["last_error"],
                           block: (row["block"] as Int64?).map { UInt64($0) })
    }

    static let entryColumns = "o.*, s.body AS body"

    /// The first report not yet resolved, in send order.
    public func nextOpen() throws(CapacityReporterError) -> OutboxEntry? {
        try read("read the outbox") { db in
            try Row.fetchOne(db, sql: """
                SELECT \(Self.entryColumns) FROM outbox o JOIN statements s ON s.seq = o.statement_seq
                WHERE o.status IN ('pending', 'inflight') ORDER BY o.id LIMIT 1
                """).map(Self.entry)
        }
    }

    /// Open reports of one kind after `id`, in send order.
    public func openEntries(kind: ReportStatement.Kind, after id: Int64) throws(CapacityReporterError) -> [OutboxEntry] {
        try read("read the outbox") { db in
            try Row.fetchAll(db, sql: """
                SELECT \(Self.entryColumns) FROM outbox o JOIN statements s ON s.seq = o.statement_seq
                WHERE o.status IN ('pending', 'inflight') AND o.kind = ? AND o.id > ? ORDER BY o.id LIMIT 1000
                """, arguments: [kind.rawValue, id]).map(Self.entry)
        }
    }

    /// Every report, in send order (tests, export tools).
    public func entries(limit: Int = 100_000) throws(CapacityReporterError) -> [OutboxEntry] {
        try read("read the outbox") { db in
            try Row.fetchAll(db, sql: """
                SELECT \(Self.entryColumns) FROM outbox o JOIN statements s ON s.seq = o.statement_seq ORDER BY o.id LIMIT ?
                """, arguments: [limit]).map(Self.entry)
        }
    }

    public func openCount() throws(CapacityReporterError) -> Int {
        try read("count the outbox") { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox WHERE status IN ('pending', 'inflight')") ?? 0
        }
    }

    /// Recorded before the call goes to the chain: after a crash, the report is looked for on the
    /// chain from `head` on before it is sent again.
    public func markInflight(_ id: Int64, head: UInt64) throws(CapacityReporterError) {
        try write("mark a report in flight") { db in
            try db.execute(sql: "UPDATE outbox SET status = 'inflight', submitted_head = ?, attempts = attempts + 1 WHERE id = ?",
                           arguments: [Int64(clamping: head), id])
        }
    }

    /// A failed attempt: `pending` when the report is known not to be on the chain, `inflight`
    /// when it may be.
    public func recordFailure(_ id: Int64, error: String, stillInflight: Bool) throws(CapacityReporterError) {
        try write("record a failed report") { db in
            try db.execute(sql: "UPDATE outbox SET status = ?, last_error = ? WHERE id = ?",
                           arguments: [stillInflight ? "inflight" : "pending", String(error.prefix(1000)), id])
        }
    }

    /// Settles a report and signs a receipt for it, in one transaction.
    public func resolve(_ entry: OutboxEntry, outcome: DeliveryReceipt.Outcome, block: UInt64? = nil, by: UInt64? = nil,
                        detail: String? = nil, stamp: Stamp) throws(CapacityReporterError) {
        let signer = try requireSigner()
        try write("record a report's outcome") { db in
            try Self.resolve(db, signer: signer, entry: entry, outcome: outcome, block: block, by: by, detail: detail, stamp: stamp)
        }
    }

    static func resolve(_ db: Database, signer: Ed25519KeyPair, entry: OutboxEntry, outcome: DeliveryReceipt.Outcome,
                        block: UInt64?, by: UInt64?, detail: String?, stamp: Stamp) throws {
        let receipt = DeliveryReceipt(of: entry.statementSeq, outcome: outcome, block: block, by: by, detail: detail.map { String($0.prefix(500)) })
        let seq = try appendStatement(db, signer: signer, kind: .receipt, stamp: stamp) { $0.receipt = receipt }
        try db.execute(sql: """
            UPDATE outbox SET status = ?, block = ?, resolved_s = ?, receipt_seq = ?, last_error = COALESCE(?, last_error) WHERE id = ?
            """, arguments: [outcome.rawValue, block.map { Int64(clamping: $0) }, Int64(clamping: stamp.time), Int64(seq),
                             outcome == .delivered ? nil : detail, entry.id])
    }

    public func status() throws(CapacityReporterError) -> OutboxStatus {
        try read("read outbox status") { db in
            let open = try Row.fetchOne(db, sql: "SELECT count(*) AS n, min(created_s) AS oldest FROM outbox WHERE status IN ('pending', 'inflight')")
            let delivered = try Row.fetchOne(db, sql: """
                SELECT statement_seq, kind, block, resolved_s FROM outbox WHERE status = 'delivered' ORDER BY resolved_s DESC, id DESC LIMIT 1
                """)
            let rejected = try Row.fetchOne(db, sql: """
                SELECT statement_seq, kind, last_error, resolved_s FROM outbox WHERE status = 'rejected' ORDER BY resolved_s DESC, id DESC LIMIT 1
                """)
            return OutboxStatus(
                pendingCount: open?["n"] ?? 0,
                oldestPendingSince: (open?["oldest"] as Int64?).map { UInt64(max(0, $0)) },
                lastDelivered: delivered.map { Delivered(statementSeq: UInt64($0["statement_seq"] as Int64), kind: $0["kind"],
                                                         block: UInt64($0["block"] as Int64), deliveredAt: UInt64(max(0, $0["resolved_s"] as Int64))) },
                lastRejected: rejected.map { Rejected(statementSeq: UInt64($0["statement_seq"] as Int64), kind: $0["kind"],
                                                      error: $0["last_error"] ?? "", at: UInt64(max(0, $0["resolved_s"] as Int64))) },
                deliveredCount: try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox WHERE status = 'delivered'") ?? 0,
                rejectedCount: try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox WHERE status = 'rejected'") ?? 0,
                statementCount: try Int.fetchOne(db, sql: "SELECT count(*) FROM statements") ?? 0)
        }
    }

    // MARK: state and export

    public func state(_ key: String) throws(CapacityReporterError) -> String? {
        try read("read reporter state") { db in
            try String.fetchOne(db, sql: "SELECT value FROM reporter_state WHERE key = ?", arguments: [key])
        }
    }

    public func setState(_ values: [String: String]) throws(CapacityReporterError) {
        try write("write reporter state") { db in
            for (key, value) in values {
                try db.execute(sql: "INSERT OR REPLACE INTO reporter_state(key, value) VALUES (?, ?)", arguments: [key, value])
            }
        }
    }

    /// Every statement, in order, as signed.
    public func signedStatements() throws(CapacityReporterError) -> [SignedStatement] {
        try read("read the statement log") { db in
            try Row.fetchAll(db, sql: "SELECT body, signature FROM statements ORDER BY seq").map { row in
                SignedStatement(body: [UInt8](row["body"] as Data), signature: [UInt8](row["signature"] as Data))
            }
        }
    }

    /// The export file: the log, then a head statement signed now that commits to its last
    /// statement (not stored: exporting changes nothing).
    public static func export(statements: [SignedStatement], signer: Ed25519KeyPair, stamp: Stamp) throws(CapacityReporterError) -> String {
        let lastSeq = statements.last.flatMap { SignedReportLog.decode($0.body)?.seq } ?? UInt64(statements.count)
        var head = ReportStatement(seq: lastSeq + 1, prev: statements.last.map { Hex.encode($0.hash) } ?? ReportStatement.genesisPrev,
                                   kind: .exportHead, nodeID: stamp.nodeID, time: stamp.time, bootID: stamp.bootID)
        head.exportedCount = UInt64(statements.count)
        do {
            return SignedReportLog.render(statements + [try SignedReportLog.sign(head, with: signer)])
        } catch {
            throw .signing(error.description)
        }
    }
}

typealias Delivered = OutboxStatus.Delivered
typealias Rejected = OutboxStatus.Rejected
