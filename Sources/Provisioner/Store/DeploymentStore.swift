import Foundation
import GRDB
import GridTypes

/// Durable provisioner state (SQLite): verified deployments, each workload's desired presence and
/// last result, and a history of every change. Written before the action it describes, so a
/// restart knows what was promised and what was under way. Holds namespace passwords: mode 0600.
public final class DeploymentStore: Sendable {
    public let path: String
    let pool: DatabasePool

    public struct WorkloadRow: Equatable, Sendable {
        public var contractID: UInt64
        public var workload: Workload
        /// false: the workload is being removed (an update dropped it, or the contract ended).
        public var desired: Bool
        public var result: WorkloadResult
        public var reservation: Resources
    }

    public struct StoredDeployment: Equatable, Sendable {
        public var deployment: Deployment
        public var hash: String
        /// The contract ended or the deployment is being removed.
        public var removing: Bool
        public var created: Int64
        public var updated: Int64
    }

    public struct Change: Codable, Equatable, Sendable {
        public var time: Int64
        public var deploymentVersion: UInt32
        public var name: String
        public var type: String
        public var workloadVersion: UInt32
        public var state: String
        public var message: String

        enum CodingKeys: String, CodingKey {
            case time, name, type, state, message
            case deploymentVersion = "deployment_version", workloadVersion = "workload_version"
        }
    }

    public init(path: String) throws(ProvisionerError) {
        self.path = path
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        do {
            let existed = FileManager.default.fileExists(atPath: path)
            pool = try DatabasePool(path: path, configuration: configuration)
            if !existed { for suffix in ["", "-wal", "-shm"] { chmod(path + suffix, 0o600) } }
            var migrator = DatabaseMigrator()
            migrator.registerMigration("v1") { db in
                try db.execute(sql: """
                    CREATE TABLE deployments(contract_id INTEGER PRIMARY KEY, twin_id INTEGER NOT NULL, version INTEGER NOT NULL,
                        hash TEXT NOT NULL, body BLOB NOT NULL, removing INTEGER NOT NULL DEFAULT 0,
                        created INTEGER NOT NULL, updated INTEGER NOT NULL);
                    CREATE INDEX deployments_twin ON deployments(twin_id);
                    CREATE TABLE workloads(contract_id INTEGER NOT NULL, name TEXT NOT NULL, body BLOB NOT NULL,
                        desired INTEGER NOT NULL, state TEXT NOT NULL, message TEXT NOT NULL, result_data BLOB,
                        created INTEGER NOT NULL, hru INTEGER NOT NULL, sru INTEGER NOT NULL, cru INTEGER NOT NULL,
                        mru INTEGER NOT NULL, PRIMARY KEY(contract_id, name));
                    CREATE TABLE history(seq INTEGER PRIMARY KEY AUTOINCREMENT, contract_id INTEGER NOT NULL, twin_id INTEGER NOT NULL,
                        time INTEGER NOT NULL, deployment_version INTEGER NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
                        workload_version INTEGER NOT NULL, state TEXT NOT NULL, message TEXT NOT NULL);
                    CREATE INDEX history_contract ON history(contract_id, seq);
                    """)
            }
            try migrator.migrate(pool)
        } catch {
            throw .database(path: path, operation: "open", detail: "\(error)")
        }
    }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970) }

    static func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(value)
    }

    func write<T: Sendable>(_ operation: String, _ body: @Sendable @escaping (Database) throws -> T) async throws(ProvisionerError) -> T {
        do { return try await pool.write(body) } catch let error as ProvisionerError { throw error } catch {
            throw .database(path: path, operation: operation, detail: "\(error)")
        }
    }

    func read<T: Sendable>(_ operation: String, _ body: @Sendable @escaping (Database) throws -> T) async throws(ProvisionerError) -> T {
        do { return try await pool.read(body) } catch let error as ProvisionerError { throw error } catch {
            throw .database(path: path, operation: operation, detail: "\(error)")
        }
    }

    static func record(_ db: Database, contract: UInt64, twin: UInt32, deploymentVersion: UInt32, workload: Workload,
                       state: String, message: String) throws {
        try db.execute(sql: """
            INSERT INTO history(contract_id, twin_id, time, deployment_version, name, type, workload_version, state, message)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [Int64(contract), Int64(twin), now(), Int64(deploymentVersion), workload.name, workload.type,
                             Int64(workload.version), state, message])
    }

    /// Saves a newly accepted deployment (or an accepted update) and its workloads' desired state in
    /// one transaction. In an update, workloads that changed restart from `init`, unchanged ones keep
    /// their result, and dropped ones are marked for removal.
    /// `reservations` says, by workload name, what admission reserved (the disk type may differ from
    /// the workload's preferred one); missing names reserve `Workload.reservation`.
    public func save(_ deployment: Deployment, hash: String, reservations: [String: Resources] = [:]) async throws(ProvisionerError) {
        var stripped = deployment
        for i in stripped.workloads.indices { stripped.workloads[i].result = nil }
        let body = stripped
        try await write("save deployment \(deployment.contractID)") { db in
            let contract = Int64(body.contractID)
            let now = Self.now()
            let existing = try Row.fetchAll(db, sql: "SELECT name, body FROM workloads WHERE contract_id = ?", arguments: [contract])
            var previous = [String: Workload]()
            for row in existing {
                previous[row["name"]] = try JSONDecoder().decode(Workload.self, from: row["body"] as Data)
            }
            try db.execute(sql: """
                INSERT INTO deployments(contract_id, twin_id, version, hash, body, removing, created, updated) VALUES (?, ?, ?, ?, ?, 0, ?, ?)
                ON CONFLICT(contract_id) DO UPDATE SET version = excluded.version, hash = excluded.hash, body = excluded.body,
                    updated = excluded.updated
                """, arguments: [contract, Int64(body.twinID), Int64(body.version), hash, try Self.encode(body), now, now])
            for w in body.workloads {
                let r = reservations[w.name] ?? w.reservation
                if let before = previous[w.name], before == w {
                    try db.execute(sql: "UPDATE workloads SET desired = 1, hru = ?, sru = ?, cru = ?, mru = ? WHERE contract_id = ? AND name = ?",
                                   arguments: [Int64(r.hru), Int64(r.sru), Int64(r.cru), Int64(r.mru), contract, w.name])
                    continue
                }
                try db.execute(sql: """
                    INSERT INTO workloads(contract_id, name, body, desired, state, message, result_data, created, hru, sru, cru, mru)
                    VALUES (?, ?, ?, 1, 'init', '', NULL, ?, ?, ?, ?, ?)
                    ON CONFLICT(contract_id, name) DO UPDATE SET body = excluded.body, desired = 1, state = 'init', message = ''
                        , hru = excluded.hru, sru = excluded.sru, cru = excluded.cru, mru = excluded.mru
                    """, arguments: [contract, w.name, try Self.encode(w), now, Int64(r.hru), Int64(r.sru), Int64(r.cru), Int64(r.mru)])
                try Self.record(db, contract: body.contractID, twin: body.twinID, deploymentVersion: body.version, workload: w,
                                state: "init", message: previous[w.name] == nil ? "accepted" : "updated")
            }
            let kept = Set(body.workloads.map(\.name))
            for (name, w) in previous where !kept.contains(name) {
                try db.execute(sql: "UPDATE workloads SET desired = 0 WHERE contract_id = ? AND name = ?", arguments: [contract, name])
                try Self.record(db, contract: body.contractID, twin: body.twinID, deploymentVersion: body.version, workload: w,
                                state: "deleted", message: "removed by update to version \(body.version)")
            }
        }
    }

    /// Marks a whole deployment for removal (its contract ended). Capacity stays reserved until each
    /// workload is actually gone.
    public func markRemoving(contractID: UInt64, reason: String) async throws(ProvisionerError) {
        try await write("mark deployment \(contractID) for removal") { db in
            let contract = Int64(contractID)
            guard let row = try Row.fetchOne(db, sql: "SELECT twin_id, version, removing FROM deployments WHERE contract_id = ?",
                                             arguments: [contract]), (row["removing"] as Int64) == 0 else { return }
            try db.execute(sql: "UPDATE deployments SET removing = 1, updated = ? WHERE contract_id = ?", arguments: [Self.now(), contract])
            try db.execute(sql: "UPDATE workloads SET desired = 0 WHERE contract_id = ?", arguments: [contract])
            try db.execute(sql: """
                INSERT INTO history(contract_id, twin_id, time, deployment_version, name, type, workload_version, state, message)
                VALUES (?, ?, ?, ?, '', 'deployment', ?, 'deleted', ?)
                """, arguments: [contract, row["twin_id"] as Int64, Self.now(), row["version"] as Int64, row["version"] as Int64, reason])
        }
    }

    public func setResult(contractID: UInt64, name: String, state: WorkloadResult.State, message: String,
                          data: JSONValue?) async throws(ProvisionerError) {
        let dataBlob = try? data.map { try Self.encode($0) }
        try await write("record result of \(contractID)/\(name)") { db in
            let contract = Int64(contractID)
            guard let row = try Row.fetchOne(db, sql: "SELECT w.state, w.message, w.body, d.twin_id, d.version FROM workloads w JOIN deployments d USING(contract_id) WHERE contract_id = ? AND name = ?",
                                             arguments: [contract, name]) else { return }
            let changed = (row["state"] as String) != state.rawValue || (row["message"] as String) != message
            try db.execute(sql: "UPDATE workloads SET state = ?, message = ?, result_data = ? WHERE contract_id = ? AND name = ?",
                           arguments: [state.rawValue, message, dataBlob, contract, name])
            if changed {
                let workload = try JSONDecoder().decode(Workload.self, from: row["body"] as Data)
                try Self.record(db, contract: contractID, twin: UInt32(row["twin_id"] as Int64), deploymentVersion: UInt32(row["version"] as Int64),
                                workload: workload, state: state.rawValue, message: message)
            }
        }
    }

    /// A workload is gone from the node: its row (and reservation) goes; the history keeps it. The
    /// deployment row goes with its last workload when it is being removed.
    public func workloadRemoved(contractID: UInt64, name: String) async throws(ProvisionerError) {
        try await write("forget removed workload \(contractID)/\(name)") { db in
            let contract = Int64(contractID)
            guard let row = try Row.fetchOne(db, sql: "SELECT w.body, d.twin_id, d.version FROM workloads w JOIN deployments d USING(contract_id) WHERE contract_id = ? AND name = ?",
                                             arguments: [contract, name]) else { return }
            try db.execute(sql: "DELETE FROM workloads WHERE contract_id = ? AND name = ?", arguments: [contract, name])
            let workload = try JSONDecoder().decode(Workload.self, from: row["body"] as Data)
            try Self.record(db, contract: contractID, twin: UInt32(row["twin_id"] as Int64), deploymentVersion: UInt32(row["version"] as Int64),
                            workload: workload, state: "deleted", message: "removed from the node")
            try Self.dropFinishedDeployment(db, contract)
        }
    }

    /// Drops a removing deployment once none of its workloads remain.
    public func finishRemoval(contractID: UInt64) async throws(ProvisionerError) {
        try await write("finish removal of \(contractID)") { db in try Self.dropFinishedDeployment(db, Int64(contractID)) }
    }

    static func dropFinishedDeployment(_ db: Database, _ contract: Int64) throws {
        let left = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM workloads WHERE contract_id = ?", arguments: [contract]) ?? 0
        if left == 0 {
            try db.execute(sql: "DELETE FROM deployments WHERE contract_id = ? AND removing = 1", arguments: [contract])
        }
    }

    static func decodeDeployment(_ row: Row) throws -> StoredDeployment {
        StoredDeployment(deployment: try JSONDecoder().decode(Deployment.self, from: row["body"] as Data), hash: row["hash"],
                         removing: (row["removing"] as Int64) != 0, created: row["created"], updated: row["updated"])
    }

    static func decodeWorkload(_ row: Row) throws -> WorkloadRow {
        let workload = try JSONDecoder().decode(Workload.self, from: row["body"] as Data)
        let data: Data? = row["result_data"]
        let result = WorkloadResult(created: row["created"], state: WorkloadResult.State(rawValue: row["state"]) ?? .error,
                                    message: row["message"], data: try data.map { try JSONDecoder().decode(JSONValue.self, from: $0) })
        return WorkloadRow(contractID: UInt64(row["contract_id"] as Int64), workload: workload, desired: (row["desired"] as Int64) != 0,
                           result: result, reservation: Resources(hru: UInt64(row["hru"] as Int64), sru: UInt64(row["sru"] as Int64),
                                                                  cru: UInt64(row["cru"] as Int64), mru: UInt64(row["mru"] as Int64)))
    }

    public func deployment(contractID: UInt64) async throws(ProvisionerError) -> StoredDeployment? {
        try await read("read deployment \(contractID)") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM deployments WHERE contract_id = ?", arguments: [Int64(contractID)]).map(Self.decodeDeployment)
        }
    }

    public func deployments(twinID: UInt32? = nil) async throws(ProvisionerError) -> [StoredDeployment] {
        try await read("list deployments") { db in
            if let twinID {
                return try Row.fetchAll(db, sql: "SELECT * FROM deployments WHERE twin_id = ? ORDER BY contract_id", arguments: [Int64(twinID)])
                    .map(Self.decodeDeployment)
            }
            return try Row.fetchAll(db, sql: "SELECT * FROM deployments ORDER BY contract_id").map(Self.decodeDeployment)
        }
    }

    public func workloads(contractID: UInt64? = nil) async throws(ProvisionerError) -> [WorkloadRow] {
        try await read("list workloads") { db in
            if let contractID {
                return try Row.fetchAll(db, sql: "SELECT * FROM workloads WHERE contract_id = ? ORDER BY name", arguments: [Int64(contractID)])
                    .map(Self.decodeWorkload)
            }
            return try Row.fetchAll(db, sql: "SELECT * FROM workloads ORDER BY contract_id, name").map(Self.decodeWorkload)
        }
    }

    /// Sum of reservations of every workload still on the node (or being removed), optionally
    /// leaving one contract out (an update replaces that contract's reservation).
    public func reserved(excluding contractID: UInt64? = nil) async throws(ProvisionerError) -> Resources {
        try await read("sum reservations") { db in
            let row = try Row.fetchOne(db, sql: """
                SELECT COALESCE(SUM(hru),0) h, COALESCE(SUM(sru),0) s, COALESCE(SUM(cru),0) c, COALESCE(SUM(mru),0) m
                FROM workloads WHERE contract_id != ?
                """, arguments: [contractID.map { Int64($0) } ?? -1])
            return Resources(hru: UInt64(row?["h"] as Int64? ?? 0), sru: UInt64(row?["s"] as Int64? ?? 0),
                             cru: UInt64(row?["c"] as Int64? ?? 0), mru: UInt64(row?["m"] as Int64? ?? 0))
        }
    }

    public func reservations() async throws(ProvisionerError) -> [ContractResources] {
        try await read("per-contract reservations") { db in
            try Row.fetchAll(db, sql: """
                SELECT contract_id, SUM(hru) h, SUM(sru) s, SUM(cru) c, SUM(mru) m FROM workloads GROUP BY contract_id ORDER BY contract_id
                """).map { row in
                ContractResources(contractID: UInt64(row["contract_id"] as Int64),
                                  used: Resources(hru: UInt64(row["h"] as Int64), sru: UInt64(row["s"] as Int64),
                                                  cru: UInt64(row["c"] as Int64), mru: UInt64(row["m"] as Int64)))
            }
        }
    }

    public func changes(contractID: UInt64, limit: Int = 1000) async throws(ProvisionerError) -> [Change] {
        try await read("read changes of \(contractID)") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM history WHERE contract_id = ? ORDER BY seq LIMIT ?",
                             arguments: [Int64(contractID), limit]).map { row in
                Change(time: row["time"], deploymentVersion: UInt32(row["deployment_version"] as Int64), name: row["name"], type: row["type"],
                       workloadVersion: UInt32(row["workload_version"] as Int64), state: row["state"], message: row["message"])
            }
        }
    }

    /// Owner of a contract's deployment, also after it was removed (from the history).
    public func owner(contractID: UInt64) async throws(ProvisionerError) -> UInt32? {
        try await read("owner of \(contractID)") { db in
            try Int64.fetchOne(db, sql: "SELECT twin_id FROM history WHERE contract_id = ? LIMIT 1", arguments: [Int64(contractID)]).map { UInt32($0) }
        }
    }
}
