import ChainClient
import Foundation
import GridTypes
@testable import Provisioner

/// An in-memory chain holding only what the provisioner reads: contracts and twins.
final class InMemoryChain: GridChain, @unchecked Sendable {
    private let lock = NSLock()
    private var contractsByID: [UInt64: Contract] = [:]
    private var twinsByID: [UInt32: Twin] = [:]
    var unreachable = false

    func put(_ contract: Contract) { lock.withLock { contractsByID[contract.id] = contract } }
    func put(_ twin: Twin) { lock.withLock { twinsByID[twin.id] = twin } }
    func setUnreachable(_ value: Bool) { lock.withLock { unreachable = value } }

    func activeContracts(node: UInt32) async throws(ChainError) -> [UInt64] {
        lock.withLock { contractsByID.values.filter { $0.node.nodeID == node && $0.state.isActive }.map(\.id) }
    }
    func contract(id: UInt64) async throws(ChainError) -> Contract? {
        let (down, value) = lock.withLock { (unreachable, contractsByID[id]) }
        if down { throw ChainError.invalidInput("test chain is down") }
        return value
    }
    func twin(id: UInt32) async throws(ChainError) -> Twin? { lock.withLock { twinsByID[id] } }
    func twinID(account: Ed25519PublicKey) async throws(ChainError) -> UInt32? {
        lock.withLock { twinsByID.values.first { $0.publicKey == account }?.id }
    }
    func node(id: UInt32) async throws(ChainError) -> Node? { nil }
    func nodeID(twin: UInt32) async throws(ChainError) -> UInt32? { nil }
    func farmExists(id: UInt32) async throws(ChainError) -> Bool { false }
    func finalizedHead() async throws(ChainError) -> BlockHeader { BlockHeader(number: 1, hash: [], timestampMilliseconds: 0) }
    func block(number: UInt64) async throws(ChainError) -> FinalizedBlock? { nil }
    func finalizedBlocks(after: UInt64) -> AsyncThrowingStream<FinalizedBlock, any Error> { AsyncThrowingStream { $0.finish() } }
    func submit(_ call: ChainCall, signer: Ed25519KeyPair) async throws(ChainError) -> Inclusion {
        throw ChainError.invalidInput("the in-memory chain takes no calls")
    }
}

/// A workload manager that records calls and keeps "what exists" in memory, like a node would.
final class RecordingManager: WorkloadManager, @unchecked Sendable {
    let types: [WorkloadType]
    private let lock = NSLock()
    private(set) var present: [WorkloadID: Bool] = [:]  // id -> paused
    private(set) var calls: [String] = []
    var failing: [String: ProvisionerError] = [:]

    init(types: [WorkloadType]) { self.types = types }

    func setFailure(_ name: String, _ error: ProvisionerError?) { lock.withLock { failing[name] = error } }
    var snapshot: [WorkloadID: Bool] { lock.withLock { present } }
    var log: [String] { lock.withLock { calls } }
    func plant(_ id: WorkloadID) { lock.withLock { present[id] = false } }

    func apply(_ workload: Workload, id: WorkloadID, context: DeploymentContext, paused: Bool) async throws(ProvisionerError) -> JSONValue? {
        let failure: ProvisionerError? = lock.withLock {
            calls.append("apply \(id) paused=\(paused)")
            return failing[workload.name]
        }
        if let failure { throw failure }
        lock.withLock { present[id] = paused }
        return .object(["id": .string(id.nodeName)])
    }

    func remove(_ id: WorkloadID, type: WorkloadType) async throws(ProvisionerError) {
        lock.withLock {
            calls.append("remove \(id)")
            present[id] = nil
        }
    }

    func existing() async throws(ProvisionerError) -> [WorkloadID] { lock.withLock { Array(present.keys) } }
    func diskPath(_ id: WorkloadID) -> String? { lock.withLock { present[id] != nil } && types.contains(.volume) ? "/tmp/\(id.nodeName)" : nil }
}

/// A provisioner on node 3 over an in-memory chain, a real contract book and store in a temp dir.
final class ProvisionerHarness: @unchecked Sendable {
    static let nodeID: UInt32 = 3
    let directory: String
    let chain = InMemoryChain()
    let book: ContractBook
    let store: DeploymentStore
    let disks = RecordingManager(types: [.volume, .zmount])
    let zdbs = RecordingManager(types: [.zdb])
    let containers = RecordingManager(types: [.container])
    var provisioner: Provisioner
    let owner: Ed25519KeyPair
    let ownerTwin: UInt32 = 17
    var nextContract: UInt64 = 100
    var block: UInt64 = 1

    init(allocatable: Resources = Resources(hru: 100 << 30, sru: 100 << 30, cru: 8, mru: 16 << 30)) throws {
        directory = NSTemporaryDirectory() + "provisioner-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        book = try ContractBook(path: directory + "/contracts.sqlite")
        store = try DeploymentStore(path: directory + "/deployments.sqlite")
        owner = try Ed25519KeyPair.generate()
        chain.put(Twin(id: ownerTwin, publicKey: owner.publicKey))
        provisioner = Self.make(store: store, book: book, chain: chain, managers: [disks, zdbs, containers], allocatable: allocatable)
    }

    static func make(store: DeploymentStore, book: ContractBook, chain: any GridChain, managers: [any WorkloadManager],
                     allocatable: Resources) -> Provisioner {
        Provisioner(configuration: .init(nodeID: nodeID, total: allocatable, allocatable: allocatable, pollInterval: .milliseconds(20),
                                         fullReconcileInterval: .milliseconds(200)),
                    store: store, book: book, chain: chain, managers: managers)
    }

    /// A new provisioner on the same state, as after an agent restart.
    func restart(allocatable: Resources = Resources(hru: 100 << 30, sru: 100 << 30, cru: 8, mru: 16 << 30)) throws {
        provisioner = Self.make(store: try DeploymentStore(path: store.path), book: book, chain: chain,
                                managers: [disks, zdbs, containers], allocatable: allocatable)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    static func deployment(twin: UInt32 = 17, workloads: [Workload]) -> Deployment {
        Deployment(twinID: twin, signatureRequirement: SignatureRequirement(requests: [SignatureRequest(twinID: twin, required: true, weight: 1)],
                                                                            weightRequired: 1),
                   workloads: workloads)
    }

    static let storage: [Workload] = [
        Workload(name: "ns1", data: .zdb(ZdbData(size: 1 << 30, mode: .seq, password: "s3cret"))),
        Workload(name: "data", data: .volume(DiskData(size: 2 << 30))),
    ]

    /// Creates the node contract for `d` on chain (and in the book, as the watcher would), sets the
    /// id, and signs as the owner.
    func contracted(_ d: Deployment, state: ContractState = .created, node: UInt32 = nodeID, sign: Bool = true) async throws -> Deployment {
        var d = d
        nextContract += 1
        d.contractID = nextContract
        let contract = Contract(id: d.contractID, state: state, twinID: d.twinID,
                                node: NodeContract(nodeID: node, deploymentHash: DeploymentChallenge.hash(d)))
        chain.put(contract)
        try await bookApply(.created(contract))
        if sign { DeploymentChallenge.sign(&d, twinID: d.twinID, keyPair: owner) }
        return d
    }

    func bookApply(_ change: ContractChange) async throws {
        block += 1
        try await book.apply([change], processedBlock: block)
    }

    /// Points the contract at the new deployment's hash, as `update_node_contract` would.
    func recontract(_ d: inout Deployment) async throws {
        let contract = Contract(id: d.contractID, state: .created, twinID: d.twinID,
                                node: NodeContract(nodeID: Self.nodeID, deploymentHash: DeploymentChallenge.hash(d)))
        chain.put(contract)
        try await bookApply(.updated(contract))
        d.signatureRequirement.signatures = []
        DeploymentChallenge.sign(&d, twinID: d.twinID, keyPair: owner)
    }

    func results(_ contract: UInt64) async throws -> [String: WorkloadResult.State] {
        let d = try await provisioner.get(contractID: contract, caller: nil)
        return Dictionary(uniqueKeysWithValues: d.workloads.map { ($0.name, $0.result?.state ?? .initializing) })
    }
}

/// Polls `condition` until true or the deadline passes.
func waitUntil(seconds: Double = 10, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

func fixture(_ name: String) throws -> Deployment {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)")
    return try JSONDecoder().decode(Deployment.self, from: Data(contentsOf: url))
}
