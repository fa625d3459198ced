import NIOCore
import Synchronization

/// The open connections of an operation, one per shard column, and why the others are not
/// usable. Columns that fail during the operation are marked dead so later blocks skip them.
final class ColumnLinks: Sendable {
    private struct State {
        var connections: [Int: ShardConnection] = [:]
        var dead: [Int: String] = [:]
    }

    private let state = Mutex(State())

    func connection(_ column: Int) -> ShardConnection? { state.withLock { $0.connections[column] } }

    var alive: [Int] { state.withLock { $0.connections.keys.sorted() } }
    var aliveCount: Int { state.withLock { $0.connections.count } }
    var deadReasons: [Int: String] { state.withLock { $0.dead } }

    func isAlive(_ column: Int) -> Bool { state.withLock { $0.connections[column] != nil } }

    func set(_ column: Int, _ connection: ShardConnection) {
        let previous = state.withLock { s -> ShardConnection? in
            let old = s.connections[column]
            s.connections[column] = connection
            s.dead[column] = nil
            return old
        }
        if let previous, previous !== connection { previous.close() }
    }

    /// Closes the column's connection and remembers why; the first reason wins.
    func markDead(_ column: Int, reason: String) {
        let connection = state.withLock { s -> ShardConnection? in
            if s.dead[column] == nil { s.dead[column] = reason }
            return s.connections.removeValue(forKey: column)
        }
        connection?.close()
    }

    func closeAll() {
        let all = state.withLock { s -> [ShardConnection] in
            defer { s.connections.removeAll() }
            return Array(s.connections.values)
        }
        for connection in all { connection.close() }
    }

    /// Links to every column of `manifest`, connected at once; failures are marked dead.
    static func connected(to manifest: FileManifest, settings: ConnectionSettings) async -> ColumnLinks {
        let links = ColumnLinks()
        await links.connect(Dictionary(uniqueKeysWithValues: manifest.columns.map { ($0.index, $0.endpoint) }), settings: settings)
        return links
    }

    /// Connects to every endpoint (column -> endpoint) at once; failures are marked dead.
    func connect(_ endpoints: [Int: ShardEndpoint], settings: ConnectionSettings) async {
        await withTaskGroup(of: (Int, Result<ShardConnection, any Error>).self) { group in
            for (column, endpoint) in endpoints {
                group.addTask {
                    do { return (column, .success(try await ShardConnection.open(endpoint, settings: settings))) } catch {
                        return (column, .failure(error))
                    }
                }
            }
            for await (column, result) in group {
                switch result {
                case .success(let connection): set(column, connection)
                case .failure(let error): markDead(column, reason: "\(error)")
                }
            }
        }
    }
}

/// Progress of a transfer, reported at most every 100 ms and once at the end.
final class ProgressTracker: Sendable {
    private let handler: ProgressHandler?
    private let operation: String
    private let total: UInt64
    private let started = DispatchTimeLike.now()
    private let done = Atomic<UInt64>(0)
    private let lastReport = Atomic<UInt64>(0)

    init(_ operation: String, total: UInt64, handler: ProgressHandler?) {
        self.operation = operation
        self.total = total
        self.handler = handler
    }

    var elapsedSeconds: Double { Double(DispatchTimeLike.now() - started) / 1e9 }

    func add(_ bytes: UInt64) {
        let now = done.wrappingAdd(bytes, ordering: .relaxed).newValue
        guard let handler else { return }
        let clock = DispatchTimeLike.now()
        let last = lastReport.load(ordering: .relaxed)
        if now >= total || clock - last >= 100_000_000 {
            lastReport.store(clock, ordering: .relaxed)
            handler(TransferProgress(operation: operation, bytesDone: min(now, total), bytesTotal: total, elapsedSeconds: elapsedSeconds))
        }
    }
}

/// A counter shared by the tasks of one operation.
final class SharedCounter: Sendable {
    private let value = Atomic<Int>(0)
    func add(_ n: Int = 1) { value.wrappingAdd(n, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}

/// Messages collected by the tasks of one operation.
final class SharedNotes: Sendable {
    private let notes: Mutex<[String]>
    init(_ initial: [String] = []) { notes = Mutex(initial) }
    func add(_ more: [String]) { notes.withLock { $0 += more } }
    var all: [String] { notes.withLock { $0 } }
}
