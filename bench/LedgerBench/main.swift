// Ledger and watcher throughput: 10,000 active contracts on one node, then blocks of 1,000 contract
// events processed by the watcher into the node's durable desired state (the real ContractBook).
// Target from issue 3: a 1,000-event block through the watcher in under 100 ms.
import ChainClient
import Foundation
import GridTypes
import Provisioner

func milliseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}

func hash(_ n: Int) -> String { Hex.encode(Blake2b.hash(Array("bench-\(n)".utf8), outputLength: 16)) }

let contractCount = Int(ProcessInfo.processInfo.environment["BENCH_CONTRACTS"] ?? "") ?? 10_000
let eventsPerBlock = Int(ProcessInfo.processInfo.environment["BENCH_EVENTS"] ?? "") ?? 1_000
let rounds = 5
let clock = ContinuousClock()
let dir = NSTemporaryDirectory() + "ledger-bench-\(UUID().uuidString)"
try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: dir) }

let ledger = try LocalLedger(path: dir + "/ledger.sqlite", parameters: LedgerParameters(blockTimeMilliseconds: 1000))
let producer = BlockProducer(ledger: ledger, name: "bench")

func apply(_ call: ChainCall, _ key: Ed25519KeyPair) async throws -> Inclusion {
    let id = try ledger.enqueue(call, signer: key)
    try await producer.produceBlock()
    return try await ledger.awaitOutcome(transaction: id, call: call.name)
}

// The smallest grid: a user, a farmer with a farm, a node.
let user = try Ed25519KeyPair.generate(), farmer = try Ed25519KeyPair.generate(), nodeKey = try Ed25519KeyPair.generate()
for key in [user, farmer, nodeKey] { _ = try await apply(.createTwin, key) }
_ = try await apply(.createFarm(name: "bench"), farmer)
_ = try await apply(.createNode(farmID: 1, resources: Resources(hru: 1 << 50, sru: 1 << 50, cru: 1024, mru: 1 << 45)), nodeKey)
let nodeID: UInt32 = 1

// 1. Many contract creations: an account may have 1,000 transactions queued, so queue 1,000 and
// produce the block that applies them, until all exist.
var queueTime = Duration.zero, applyTime = Duration.zero
var blocksForCreation = 0
var lastTx: Int64 = 0
var start = clock.now
for chunk in stride(from: 0, to: contractCount, by: 1000) {
    start = clock.now
    for n in chunk..<min(chunk + 1000, contractCount) {
        lastTx = try ledger.enqueue(.createNodeContract(nodeID: nodeID, deploymentHash: hash(n), deploymentData: [], publicIPs: 0), signer: user)
    }
    queueTime += clock.now - start
    start = clock.now
    try await producer.produceBlock()
    applyTime += clock.now - start
    blocksForCreation += 1
}
_ = try await ledger.awaitOutcome(transaction: lastTx, call: "create_node_contract")
let active = try await ledger.activeContracts(node: nodeID)
precondition(active.count == contractCount, "expected \(contractCount) active contracts, found \(active.count)")

// 2. The watcher's first full sync into a real ContractBook.
let book = try ContractBook(path: dir + "/contracts.sqlite")
let watcher = ContractWatcher(chain: ledger, sink: book, nodeID: nodeID, resyncEveryBlocks: 1_000_000)
var head = try await ledger.block(number: try await ledger.finalizedHead().number)!
start = clock.now
let initial = try await watcher.process(head, fullResync: true)
let fullSyncTime = clock.now - start
precondition(initial.count == contractCount)

// 3. Blocks with `eventsPerBlock` contract updates each: block production, then the watcher.
var produceTimes = [Double](), watchTimes = [Double]()
for round in 0..<rounds {
    for n in 0..<eventsPerBlock {
        let id = active[(round * eventsPerBlock + n) % active.count]
        _ = try ledger.enqueue(.updateNodeContract(contractID: id, deploymentHash: hash(1_000_000 + round * eventsPerBlock + n),
                                                   deploymentData: []), signer: user)
    }
    start = clock.now
    try await producer.produceBlock()
    produceTimes.append(milliseconds(clock.now - start))
    head = try await ledger.block(number: try await ledger.finalizedHead().number)!
    precondition(head.events.count == eventsPerBlock, "block has \(head.events.count) events")
    start = clock.now
    let changes = try await watcher.process(head)
    watchTimes.append(milliseconds(clock.now - start))
    precondition(changes.count == eventsPerBlock, "watcher saw \(changes.count) changes")
}

// 4. Steady state: empty blocks with all contracts active.
var quietTimes = [Double]()
for _ in 0..<rounds {
    try await producer.produceBlock()
    head = try await ledger.block(number: try await ledger.finalizedHead().number)!
    start = clock.now
    _ = try await watcher.process(head)
    quietTimes.append(milliseconds(clock.now - start))
}

let applyMs = milliseconds(applyTime)
print("ledger-bench: \(contractCount) active contracts on one node, blocks of \(eventsPerBlock) events, \(rounds) rounds")
print("  queue \(contractCount) signed transactions        \(String(format: "%8.1f", milliseconds(queueTime))) ms  (\(Int(Double(contractCount) / milliseconds(queueTime) * 1000)) tx/s)")
print("  apply them in \(blocksForCreation) block(s)                  \(String(format: "%8.1f", applyMs)) ms  (\(Int(Double(contractCount) / applyMs * 1000)) tx/s, signatures verified)")
print("  watcher full sync of \(contractCount) contracts      \(String(format: "%8.1f", milliseconds(fullSyncTime))) ms")
print("  produce a block of \(eventsPerBlock) updates (median)     \(String(format: "%8.1f", median(produceTimes))) ms")
print("  watcher: block of \(eventsPerBlock) events (median/max)  \(String(format: "%8.1f", median(watchTimes))) / \(String(format: "%.1f", watchTimes.max() ?? 0)) ms   target < 100 ms: \(watchTimes.max() ?? 0 < 100 ? "met" : "MISSED")")
print("  watcher: empty block, all active (median)   \(String(format: "%8.1f", median(quietTimes))) ms")

// Where a 1,000-event block's time goes: the chain reads and the durable write, alone.
let sample = Array(active.prefix(eventsPerBlock))
start = clock.now
_ = try await ledger.activeContracts(node: nodeID)
let listTime = milliseconds(clock.now - start)
start = clock.now
let fetched = try await ledger.contracts(ids: sample)
let readTime = milliseconds(clock.now - start)
start = clock.now
try await book.apply(fetched.map { .updated($0) }, processedBlock: 1_000_000)
let writeTime = milliseconds(clock.now - start)
print("  breakdown: list \(contractCount) ids \(String(format: "%.1f", listTime)) ms, read \(eventsPerBlock) contracts \(String(format: "%.1f", readTime)) ms, store \(eventsPerBlock) changes \(String(format: "%.1f", writeTime)) ms")
