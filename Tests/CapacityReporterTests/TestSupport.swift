import ChainClient
import Foundation
import GridTypes
import Testing
@testable import CapacityReporter

/// Fixture trees recorded (or written in the recorded layout) under Fixtures/.
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

    static func root(_ name: String) -> String { directory + "/" + name }
}

/// Polls `condition` every 20 ms until it holds or `seconds` pass.
func eventually(_ seconds: Double, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

func temporaryDirectory(_ label: String) throws -> String {
    let path = NSTemporaryDirectory() + "\(label)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A real embedded ledger with a block producer in this process, a farm, this node registered,
/// and a user with contracts on the node.
final class LedgerWorld: Sendable {
    let directory: String
    let ledger: LocalLedger
    let producer: BlockProducer
    let producing: Task<Void, Never>
    let node: Ed25519KeyPair
    let user: Ed25519KeyPair
    let nodeID: UInt32
    let contracts: [UInt64]

    init(contracts count: Int = 2, blockMilliseconds: Int = 20) async throws {
        directory = try temporaryDirectory("reporter-ledger")
        ledger = try LocalLedger(path: directory + "/ledger.sqlite", parameters: LedgerParameters(blockTimeMilliseconds: blockMilliseconds))
        producer = BlockProducer(ledger: ledger, name: "test")
        let producer = self.producer
        producing = Task { await producer.run() }
        let farmer = try Ed25519KeyPair.generate()
        node = try Ed25519KeyPair.generate()
        user = try Ed25519KeyPair.generate()
        _ = try await Self.submit(ledger, .createTwin, signer: farmer)
        _ = try await Self.submit(ledger, .createFarm(name: "farm-\(UUID().uuidString.prefix(8))"), signer: farmer)
        _ = try await Self.submit(ledger, .createTwin, signer: node)
        let farmID: UInt32 = 1
        let created = try await Self.submit(ledger, .createNode(farmID: farmID, resources: Resources(hru: 1, sru: 1, cru: 1, mru: 1)), signer: node)
        nodeID = created.events.compactMap { event -> UInt32? in
            if case .nodeStored(let node) = event { return node.id }
            return nil
        }.first ?? 0
        _ = try await Self.submit(ledger, .createTwin, signer: user)
        var ids = [UInt64]()
        for index in 0..<count {
            let hash = String(Hex.encode(Blake2b.hash256(Array("contract \(index) \(UUID())".utf8))).prefix(32))
            let inclusion = try await Self.submit(ledger, .createNodeContract(nodeID: nodeID, deploymentHash: hash, deploymentData: [], publicIPs: 0),
                                                  signer: user)
            ids += inclusion.events.compactMap { $0.contractID }
        }
        contracts = ids
    }

    /// Queues a call and waits for its block, longer than `LocalLedger.submit` does: when the whole
    /// test suite runs in parallel on two cores, the producer task may not run for seconds.
    static func submit(_ ledger: LocalLedger, _ call: ChainCall, signer: Ed25519KeyPair) async throws -> Inclusion {
        let id = try ledger.enqueue(call, signer: signer)
        for attempt in 1...6 {
            do { return try await ledger.awaitOutcome(transaction: id, call: call.name) } catch {
                guard case .timeout = error, attempt < 6 else { throw error }
            }
        }
        throw ChainError.timeout(operation: call.name, seconds: 60)
    }

    func stop() async {
        producing.cancel()
        await producing.value
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Every event of this node's reports on the chain, in block order.
    func reportEvents() async throws -> [ChainEvent] {
        let head = try await ledger.finalizedHead().number
        var events = [ChainEvent]()
        for number in 1...max(1, head) {
            guard let block = try await ledger.block(number: number) else { continue }
            for event in block.events {
                switch event {
                case .nodeUptimeReported(let node, _, _) where node == nodeID: events.append(event)
                case .updatedUsedResources, .nruConsumptionReportReceived: events.append(event)
                default: break
                }
            }
        }
        return events
    }
}

/// A chain that can be taken down, or made to lose the reply to a submission, around a real ledger.
final class FlakyChain: GridChain, @unchecked Sendable {
    enum Mode: Sendable {
        case up
        /// Every call fails: the chain is unreachable.
        case down
        /// A submission reaches the ledger but the reply is lost (a timeout after sending).
        case loseReplies
        /// A submission is lost before reaching the ledger (the connection dropped).
        case dropSubmissions
    }

    let inner: LocalLedger
    private let lock = NSLock()
    private var currentMode = Mode.up
    private var submissions = 0

    init(_ inner: LocalLedger) { self.inner = inner }

    var mode: Mode {
        get { lock.withLock { currentMode } }
        set { lock.withLock { currentMode = newValue } }
    }

    var submitCount: Int { lock.withLock { submissions } }

    private func check(_ operation: String) throws(ChainError) {
        if case .down = mode { throw .unavailable("test: the chain is down (\(operation))") }
    }

    func activeContracts(node: UInt32) async throws(ChainError) -> [UInt64] { try check("activeContracts"); return try await inner.activeContracts(node: node) }
    func contract(id: UInt64) async throws(ChainError) -> Contract? { try check("contract"); return try await inner.contract(id: id) }
    func twin(id: UInt32) async throws(ChainError) -> Twin? { try check("twin"); return try await inner.twin(id: id) }
    func twinID(account: Ed25519PublicKey) async throws(ChainError) -> UInt32? { try check("twinID"); return try await inner.twinID(account: account) }
    func node(id: UInt32) async throws(ChainError) -> Node? { try check("node"); return try await inner.node(id: id) }
    func nodeID(twin: UInt32) async throws(ChainError) -> UInt32? { try check("nodeID"); return try await inner.nodeID(twin: twin) }
    func farmExists(id: UInt32) async throws(ChainError) -> Bool { try check("farmExists"); return try await inner.farmExists(id: id) }
    func finalizedHead() async throws(ChainError) -> BlockHeader { try check("finalizedHead"); return try await inner.finalizedHead() }
    func block(number: UInt64) async throws(ChainError) -> FinalizedBlock? { try check("block"); return try await inner.block(number: number) }
    func finalizedBlocks(after: UInt64) -> AsyncThrowingStream<FinalizedBlock, any Error> { inner.finalizedBlocks(after: after) }

    func submit(_ call: ChainCall, signer: Ed25519KeyPair) async throws(ChainError) -> Inclusion {
        try check("submit")
        lock.withLock { submissions += 1 }
        switch mode {
        case .loseReplies:
            _ = try inner.enqueue(call, signer: signer)
            throw .timeout(operation: "test: the reply to \(call.name) was lost", seconds: 0)
        case .dropSubmissions:
            throw .unavailable("test: the connection dropped while sending \(call.name)")
        default:
            return try await inner.submit(call, signer: signer)
        }
    }
}

actor TestReservations: ReservationSource {
    var contracts: [ContractResources]

    init(_ contracts: [ContractResources] = []) { self.contracts = contracts }

    func set(_ contracts: [ContractResources]) { self.contracts = contracts }

    func reservedCapacity() async -> Resources {
        contracts.reduce(Resources.zero) { $0.adding($1.used) ?? $0 }
    }

    func contractReservations() async -> [ContractResources] { contracts }
}

actor TestCounters: NetworkCounterSource {
    var counters: [UInt64: UInt64] = [:]

    func add(_ contract: UInt64, _ bytes: UInt64) { counters[contract, default: 0] += bytes }

    func publicTrafficBytes() async throws -> [UInt64: UInt64] { counters }

    /// What the reporter said it took up, in order.
    var reported: [[UInt64: UInt64]] = []

    func countersReported(_ counters: [UInt64: UInt64]) async { reported.append(counters) }
}

/// The wall clock moved by `offset` seconds; boot time and id real.
struct OffsetClock: ReporterClock {
    let offset: Int64
    let system = SystemReporterClock()
    var bootID: String { system.bootID }
    func wallSeconds() -> UInt64 { UInt64(Int64(system.wallSeconds()) + offset) }
    func secondsSinceBoot() -> UInt64 { system.secondsSinceBoot() }
}

/// Settings for tests: short periods, quick retries.
func fastSettings() -> ReporterSettings {
    var settings = ReporterSettings()
    settings.uptimeInterval = .milliseconds(300)
    settings.capacityScanInterval = .seconds(5)
    settings.networkReportInterval = .milliseconds(400)
    settings.retryInitial = .milliseconds(30)
    settings.retryMaximum = .milliseconds(200)
    settings.idleCheck = .milliseconds(200)
    settings.settlePoll = .milliseconds(20)
    settings.deliveryLagSeconds = 1
    settings.updatesNodeResources = false
    return settings
}
