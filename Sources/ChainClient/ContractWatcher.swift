import GridTypes
import Logging

/// A contract as the node last saw it: enough to tell what changed.
public struct KnownContract: Codable, Equatable, Sendable {
    public var id: UInt64
    public var state: ContractState
    public var deploymentHash: String

    public init(id: UInt64, state: ContractState, deploymentHash: String) {
        self.id = id
        self.state = state
        self.deploymentHash = deploymentHash
    }

    public init(_ contract: Contract) {
        self.init(id: contract.id, state: contract.state, deploymentHash: contract.node.deploymentHash)
    }
}

/// Desired-state changes the watcher hands to the provisioner.
public enum ContractChange: Equatable, Sendable {
    case created(Contract)
    case updated(Contract)
    case gracePeriodStarted(Contract)
    case gracePeriodEnded(Contract)
    case canceled(contractID: UInt64, cause: DeletionCause?)

    public var contractID: UInt64 {
        switch self {
        case .created(let c), .updated(let c), .gracePeriodStarted(let c), .gracePeriodEnded(let c): return c.id
        case .canceled(let id, _): return id
        }
    }
}

/// Where the watcher's changes go: the provisioner's durable desired state. `apply` must store the
/// changes and the block number in one transaction, so a crash never loses or repeats half a block.
public protocol ContractSink: Sendable {
    func knownContracts() async throws -> [UInt64: KnownContract]
    func lastProcessedBlock() async throws -> UInt64?
    func apply(_ changes: [ContractChange], processedBlock: UInt64) async throws
}

/// Level-triggered contract watching, like a Kubernetes informer: on start and on every finalized
/// block it lists the node's active contracts and diffs them against what the sink holds. Events
/// only say which contracts to look at first; the list is what makes the result correct after
/// missed events, restarts and outages. It never cancels a contract because the chain failed to
/// answer: a contract is only dropped when the chain says it is deleted or gone.
public actor ContractWatcher {
    let chain: any GridChain
    let sink: any ContractSink
    public let nodeID: UInt32
    let logger: Logger
    /// Re-reads every active contract every this many blocks, catching updates whose events were missed.
    let resyncEveryBlocks: UInt64

    private var known: [UInt64: KnownContract]?
    private var lastResync: UInt64 = 0
    public private(set) var lastProcessed: UInt64 = 0

    public init(chain: any GridChain, sink: any ContractSink, nodeID: UInt32, resyncEveryBlocks: UInt64 = 100,
                logger: Logger = Logger(label: "chain.watcher")) {
        self.chain = chain
        self.sink = sink
        self.nodeID = nodeID
        self.resyncEveryBlocks = max(1, resyncEveryBlocks)
        self.logger = logger
    }

    /// Processes one finalized block: returns the changes handed to the sink.
    @discardableResult
    public func process(_ block: FinalizedBlock, fullResync: Bool = false) async throws -> [ChainChangeSummary] {
        var known = try await loadKnown()
        let active = try await chain.activeContracts(node: nodeID)
        let activeSet = Set(active)
        var changes = [ContractChange]()

        let eventContracts = Set(block.events.compactMap { event -> UInt64? in
            guard let id = event.contractID else { return nil }
            return event.nodeID == nodeID || known[id] != nil ? id : nil
        })
        let resync = fullResync || block.header.number >= lastResync + resyncEveryBlocks
        var toRead = activeSet.subtracting(known.keys)                 // new
        toRead.formUnion(eventContracts.intersection(activeSet))       // touched by an event
        if resync { toRead.formUnion(activeSet) }

        for contract in try await chain.contracts(ids: toRead.sorted()) where contract.node.nodeID == nodeID {
            changes += Self.diff(old: known[contract.id], new: contract)
        }
        // Gone from the active list: confirm with the contract itself before cancelling.
        for id in Set(known.keys).subtracting(activeSet).sorted() {
            let contract = try await chain.contract(id: id)
            switch contract?.state {
            case nil: changes.append(.canceled(contractID: id, cause: nil))
            case .deleted(let cause)?: changes.append(.canceled(contractID: id, cause: cause))
            default: logger.warning("contract missing from the active list but not deleted; keeping it", metadata: ["contract": "\(id)"])
            }
        }

        try await sink.apply(changes, processedBlock: block.header.number)
        for change in changes {
            switch change {
            case .canceled(let id, _): known[id] = nil
            case .created(let c), .updated(let c), .gracePeriodStarted(let c), .gracePeriodEnded(let c): known[c.id] = KnownContract(c)
            }
        }
        self.known = known
        if resync { lastResync = block.header.number }
        lastProcessed = block.header.number
        if !changes.isEmpty {
            let shown = changes.prefix(10).map { ChainChangeSummary($0).description }.joined(separator: ", ")
            logger.info("contracts changed", metadata: [
                "block": "\(block.header.number)", "count": "\(changes.count)",
                "changes": .string(changes.count > 10 ? shown + ", ..." : shown),
            ])
        }
        return changes.map(ChainChangeSummary.init)
    }

    static func diff(old: KnownContract?, new: Contract) -> [ContractChange] {
        guard new.state.isActive else { return old == nil ? [] : [.canceled(contractID: new.id, cause: nil)] }
        guard let old else {
            if case .gracePeriod = new.state { return [.created(new), .gracePeriodStarted(new)] }
            return [.created(new)]
        }
        var changes = [ContractChange]()
        if old.deploymentHash != new.node.deploymentHash { changes.append(.updated(new)) }
        switch (old.state, new.state) {
        case (.created, .gracePeriod): changes.append(.gracePeriodStarted(new))
        case (.gracePeriod, .created): changes.append(.gracePeriodEnded(new))
        default: break
        }
        return changes
    }

    private func loadKnown() async throws -> [UInt64: KnownContract] {
        if let known { return known }
        let loaded = try await sink.knownContracts()
        known = loaded
        lastProcessed = try await sink.lastProcessedBlock() ?? 0
        return loaded
    }

    /// Catches up at the current head with a full resync, then follows finalized blocks until
    /// cancelled. Chain errors are logged and retried with backoff; nothing is cancelled for them.
    public func run() async {
        var backoff = Duration.milliseconds(250)
        while !Task.isCancelled {
            do {
                let head = try await chain.finalizedHead()
                let behind = head.number - min(head.number, (try await sink.lastProcessedBlock()) ?? 0)
                if let block = try await chain.block(number: head.number) {
                    try await process(block, fullResync: true)
                    logger.info("watcher caught up", metadata: ["block": "\(head.number)", "blocks_behind": "\(behind)",
                                                                "contracts": "\(known?.count ?? 0)"])
                }
                backoff = .milliseconds(250)
                for try await block in chain.finalizedBlocks(after: head.number) {
                    try await process(block)
                }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("chain watcher interrupted; retrying", metadata: ["error": "\(error)", "retry_in": "\(backoff)"])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(30))
            }
        }
    }
}

/// A one-line description of a change, for logs and command output.
public struct ChainChangeSummary: Equatable, Sendable, CustomStringConvertible {
    public var contractID: UInt64
    public var kind: String

    public init(_ change: ContractChange) {
        contractID = change.contractID
        switch change {
        case .created: kind = "created"
        case .updated: kind = "updated"
        case .gracePeriodStarted: kind = "grace-started"
        case .gracePeriodEnded: kind = "grace-ended"
        case .canceled: kind = "canceled"
        }
    }

    public var description: String { "\(kind) \(contractID)" }
}
