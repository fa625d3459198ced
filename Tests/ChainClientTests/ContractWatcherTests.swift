import Foundation
import GridTypes
import Testing
@testable import ChainClient

/// A recording sink: what the provisioner would hold.
actor MemorySink: ContractSink {
    var contracts = [UInt64: KnownContract]()
    var lastBlock: UInt64?
    var log = [ContractChange]()

    func knownContracts() async throws -> [UInt64: KnownContract] { contracts }
    func lastProcessedBlock() async throws -> UInt64? { lastBlock }
    func apply(_ changes: [ContractChange], processedBlock: UInt64) async throws {
        for change in changes {
            switch change {
            case .canceled(let id, _): contracts[id] = nil
            case .created(let c), .updated(let c), .gracePeriodStarted(let c), .gracePeriodEnded(let c): contracts[c.id] = KnownContract(c)
            }
        }
        log += changes
        lastBlock = processedBlock
    }
}

/// A chain that stops answering on demand, to prove an outage never cancels anything.
final class FlakyChain: GridChain, @unchecked Sendable {
    let inner: LocalLedger
    var down = false
    init(_ inner: LocalLedger) { self.inner = inner }
    func check() throws(ChainError) { if down { throw .unavailable("test outage") } }
    func activeContracts(node: UInt32) async throws(ChainError) -> [UInt64] { try check(); return try await inner.activeContracts(node: node) }
    func contract(id: UInt64) async throws(ChainError) -> Contract? { try check(); return try await inner.contract(id: id) }
    func twin(id: UInt32) async throws(ChainError) -> Twin? { try await inner.twin(id: id) }
    func twinID(account: Ed25519PublicKey) async throws(ChainError) -> UInt32? { try await inner.twinID(account: account) }
    func node(id: UInt32) async throws(ChainError) -> Node? { try await inner.node(id: id) }
    func nodeID(twin: UInt32) async throws(ChainError) -> UInt32? { try await inner.nodeID(twin: twin) }
    func farmExists(id: UInt32) async throws(ChainError) -> Bool { try await inner.farmExists(id: id) }
    func finalizedHead() async throws(ChainError) -> BlockHeader { try check(); return try await inner.finalizedHead() }
    func block(number: UInt64) async throws(ChainError) -> FinalizedBlock? { try check(); return try await inner.block(number: number) }
    func finalizedBlocks(after: UInt64) -> AsyncThrowingStream<FinalizedBlock, any Error> { inner.finalizedBlocks(after: after) }
    func submit(_ call: ChainCall, signer: Ed25519KeyPair) async throws(ChainError) -> Inclusion { try await inner.submit(call, signer: signer) }
}

@Suite struct ContractWatcherTests {
    func createContract(_ f: LedgerFixture, _ grid: LedgerFixture.Grid, seed: Int) async throws -> UInt64 {
        let inclusion = try await f.apply(.createNodeContract(nodeID: grid.nodeID, deploymentHash: LedgerFixture.hash(seed),
                                                              deploymentData: [], publicIPs: 0), by: grid.user)
        return try #require(inclusion.events.first?.contractID)
    }

    func headBlock(_ f: LedgerFixture) async throws -> FinalizedBlock {
        try #require(try await f.ledger.block(number: try await f.head()))
    }

    @Test func followsCreationUpdateGraceAndCancellation() async throws {
        let f = try LedgerFixture()
        let grid = try await f.makeGrid()
        let sink = MemorySink()
        let watcher = ContractWatcher(chain: f.ledger, sink: sink, nodeID: grid.nodeID, resyncEveryBlocks: 1000)
        try await watcher.process(try await headBlock(f), fullResync: true)
        #expect(await sink.contracts.isEmpty)

        let id = try await createContract(f, grid, seed: 1)
        #expect(try await watcher.process(try await headBlock(f)).map(\.description) == ["created \(id)"])
        #expect(await sink.contracts[id]?.deploymentHash == LedgerFixture.hash(1))

        try await f.apply(.updateNodeContract(contractID: id, deploymentHash: LedgerFixture.hash(2), deploymentData: []), by: grid.user)
        #expect(try await watcher.process(try await headBlock(f)).map(\.description) == ["updated \(id)"])
        #expect(await sink.contracts[id]?.deploymentHash == LedgerFixture.hash(2))

        // No money and resources in use: the next billing block starts the grace period.
        try await f.apply(.reportContractResources([ContractResources(contractID: id, used: LedgerTests.oneCUOneSU)]), by: grid.nodeKey)
        try await f.produce(until: (try await f.head() / 10 + 1) * 10)
        #expect(try await watcher.process(try await headBlock(f)).map(\.description) == ["grace-started \(id)"])
        try await f.fund(grid.userTwin, 10_000_000)
        try await f.produce(until: (try await f.head() / 10 + 1) * 10)
        #expect(try await watcher.process(try await headBlock(f)).map(\.description) == ["grace-ended \(id)"])

        try await f.apply(.cancelContract(contractID: id), by: grid.user)
        #expect(try await watcher.process(try await headBlock(f)).map(\.description) == ["canceled \(id)"])
        #expect(await sink.contracts.isEmpty)
        #expect(await sink.log.last == .canceled(contractID: id, cause: .canceledByUser))
        #expect(await sink.lastBlock == (try await f.head()))
    }

    @Test func catchesUpAfterBeingDownForManyBlocks() async throws {
        let f = try LedgerFixture()
        let grid = try await f.makeGrid()
        let sink = MemorySink()
        let a = try await createContract(f, grid, seed: 10)
        let b = try await createContract(f, grid, seed: 11)
        try await ContractWatcher(chain: f.ledger, sink: sink, nodeID: grid.nodeID).process(try await headBlock(f), fullResync: true)
        #expect(Set(await sink.contracts.keys) == [a, b])

        // The agent is down while the chain moves on: one cancel, one update, two new, 50 empty blocks.
        try await f.apply(.cancelContract(contractID: a), by: grid.user)
        try await f.apply(.updateNodeContract(contractID: b, deploymentHash: LedgerFixture.hash(12), deploymentData: []), by: grid.user)
        let c = try await createContract(f, grid, seed: 13)
        let d = try await createContract(f, grid, seed: 14)
        try await f.produce(until: try await f.head() + 50)

        // A new watcher (after restart) with the same sink converges in one step.
        let restarted = ContractWatcher(chain: f.ledger, sink: sink, nodeID: grid.nodeID)
        let changes = try await restarted.process(try await headBlock(f), fullResync: true)
        #expect(Set(changes.map(\.description)) == ["canceled \(a)", "updated \(b)", "created \(c)", "created \(d)"])
        let chainView = try await f.ledger.activeContracts(node: grid.nodeID)
        #expect(Set(await sink.contracts.keys) == Set(chainView))
        #expect(await sink.contracts[b]?.deploymentHash == LedgerFixture.hash(12))
    }

    @Test func aMissedEventIsCaughtByTheListOrTheNextResync() async throws {
        let f = try LedgerFixture()
        let grid = try await f.makeGrid()
        let sink = MemorySink()
        let watcher = ContractWatcher(chain: f.ledger, sink: sink, nodeID: grid.nodeID, resyncEveryBlocks: 5)
        try await watcher.process(try await headBlock(f), fullResync: true)

        // Creation and cancellation need no event: the active list shows them.
        let id = try await createContract(f, grid, seed: 20)
        var block = try await headBlock(f)
        block.events = []
        #expect(try await watcher.process(block).map(\.description) == ["created \(id)"])

        // An update whose event was lost is invisible to the list; the periodic resync finds it.
        try await f.apply(.updateNodeContract(contractID: id, deploymentHash: LedgerFixture.hash(21), deploymentData: []), by: grid.user)
        var seen = [String]()
        for _ in 0..<6 {
            try await f.producer.produceBlock()
            block = try await headBlock(f)
            block.events = []
            seen += try await watcher.process(block).map(\.description)
        }
        #expect(seen == ["updated \(id)"])

        try await f.apply(.cancelContract(contractID: id), by: grid.user)
        block = try await headBlock(f)
        block.events = []
        #expect(try await watcher.process(block).map(\.description) == ["canceled \(id)"])
    }

    @Test func aChainOutageNeverCancelsAContract() async throws {
        let f = try LedgerFixture()
        let grid = try await f.makeGrid()
        let id = try await createContract(f, grid, seed: 30)
        let chain = FlakyChain(f.ledger)
        let sink = MemorySink()
        let watcher = ContractWatcher(chain: chain, sink: sink, nodeID: grid.nodeID)
        try await watcher.process(try await headBlock(f), fullResync: true)
        chain.down = true
        for _ in 0..<3 {
            try await f.producer.produceBlock()
            await #expect(throws: ChainError.unavailable("test outage")) { try await watcher.process(try await headBlock(f)) }
        }
        #expect(Set(await sink.contracts.keys) == [id])
        chain.down = false
        #expect(try await watcher.process(try await headBlock(f)).isEmpty)
        #expect(Set(await sink.contracts.keys) == [id])
    }

    @Test func runFollowsBlocksAsTheyAreProduced() async throws {
        let f = try LedgerFixture()
        let grid = try await f.makeGrid()
        let sink = MemorySink()
        let watcher = ContractWatcher(chain: f.ledger, sink: sink, nodeID: grid.nodeID)
        let producing = Task { await f.producer.run() }
        let watching = Task { await watcher.run() }
        defer { producing.cancel(); watching.cancel() }
        let inclusion = try await f.ledger.submit(.createNodeContract(nodeID: grid.nodeID, deploymentHash: LedgerFixture.hash(40),
                                                                      deploymentData: [], publicIPs: 0), signer: grid.user)
        let id = try #require(inclusion.events.first?.contractID)
        var found = false
        for _ in 0..<200 where !found {
            try await Task.sleep(for: .milliseconds(10))
            found = await sink.contracts[id] != nil
        }
        #expect(found, "the running watcher did not pick up contract \(id) within 2 s")
    }
}
