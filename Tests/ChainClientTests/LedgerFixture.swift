import Foundation
import GridTypes
@testable import ChainClient

/// A ledger in a temporary directory with blocks produced on demand, so tests are deterministic:
/// billing every 10 blocks, grace of 20 blocks.
final class LedgerFixture: @unchecked Sendable {
    let directory: String
    let ledger: LocalLedger
    let producer: BlockProducer

    static let parameters = LedgerParameters(blockTimeMilliseconds: 20, billingPeriodBlocks: 10, gracePeriodBlocks: 20,
                                             cuPricePerHour: 1_000_000, suPricePerHour: 500_000, ipPricePerHour: 250_000)

    init(parameters: LedgerParameters = LedgerFixture.parameters) throws {
        directory = NSTemporaryDirectory() + "ledger-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        ledger = try LocalLedger(path: directory + "/ledger.sqlite", parameters: parameters)
        producer = BlockProducer(ledger: ledger, name: "test")
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// Queues a call, produces the block that applies it, and returns its outcome.
    @discardableResult
    func apply(_ call: ChainCall, by signer: Ed25519KeyPair) async throws -> Inclusion {
        let id = try ledger.enqueue(call, signer: signer)
        try await producer.produceBlock()
        return try await ledger.awaitOutcome(transaction: id, call: call.name)
    }

    func fund(_ twin: UInt32, _ amount: UInt64) async throws {
        async let outcome = ledger.fund(twin: twin, amount: amount)
        try await Task.sleep(for: .milliseconds(5))
        try await producer.produceBlock()
        _ = try await outcome
    }

    /// Produces blocks until the head is `number`.
    func produce(until number: UInt64) async throws {
        while try await ledger.finalizedHead().number < number { try await producer.produceBlock() }
    }

    func head() async throws -> UInt64 { try await ledger.finalizedHead().number }

    /// A user twin, a farmer with a farm, and a node with capacity: the smallest grid.
    struct Grid {
        var user: Ed25519KeyPair
        var userTwin: UInt32
        var nodeKey: Ed25519KeyPair
        var nodeID: UInt32
        var farmID: UInt32
    }

    func makeGrid() async throws -> Grid {
        let user = try Ed25519KeyPair.generate(), farmer = try Ed25519KeyPair.generate(), nodeKey = try Ed25519KeyPair.generate()
        for key in [user, farmer, nodeKey] { try await apply(.createTwin, by: key) }
        let farm = try await apply(.createFarm(name: "farm_\(UInt32.random(in: 0...99999))"), by: farmer)
        guard case .farmStored(let farmID, _, _)? = farm.events.first else { throw ChainError.invalidInput("no FarmStored event") }
        let node = try await apply(.createNode(farmID: farmID, resources: Resources(hru: 1 << 40, sru: 1 << 40, cru: 8, mru: 32 << 30)), by: nodeKey)
        guard case .nodeStored(let stored)? = node.events.first else { throw ChainError.invalidInput("no NodeStored event") }
        let userTwin = try await ledger.twinID(account: user.publicKey) ?? 0
        return Grid(user: user, userTwin: userTwin, nodeKey: nodeKey, nodeID: stored.id, farmID: farmID)
    }

    static func hash(_ seed: Int) -> String {
        Hex.encode(Blake2b.hash(Array("deployment-\(seed)".utf8), outputLength: 16))
    }
}
