import ChainClient
import Foundation
import GridTypes
import Logging

/// Verified deployments in, isolated workloads out. Requests are checked against the chain and
/// admitted against capacity here, recorded durably, and then one reconciler owns every start and
/// stop: desired state (the store plus the chain watcher's contract book) against what runs.
/// Deployments reconcile concurrently, each one's steps in order.
public actor Provisioner {
    public struct Configuration: Sendable {
        public var nodeID: UInt32
        /// The node's total capacity and what of it deployments may reserve (total minus the system
        /// reserve), before the overcommit ratio.
        public var total: Resources
        public var allocatable: Resources
        /// 1.0: no overcommit. Applies to cru only; memory and disk are never overcommitted.
        public var overcommitRatio: Double
        /// How often chain state changes are looked for, and how often everything is re-checked.
        public var pollInterval: Duration
        public var fullReconcileInterval: Duration
        /// What deployments may ask of the node's network (published ports, ranges, interfaces).
        public var network: NetworkPolicy

        public init(nodeID: UInt32, total: Resources, allocatable: Resources, overcommitRatio: Double = 1.0,
                    pollInterval: Duration = .seconds(1), fullReconcileInterval: Duration = .seconds(15),
                    network: NetworkPolicy = NetworkPolicy()) {
            self.network = network
            self.nodeID = nodeID
            self.total = total
            self.allocatable = allocatable
            self.overcommitRatio = overcommitRatio
            self.pollInterval = pollInterval
            self.fullReconcileInterval = fullReconcileInterval
        }
    }

    public struct Statistics: Codable, Equatable, Sendable {
        public var total: Resources
        public var allocatable: Resources
        public var used: Resources
        public var free: Resources
        public var deployments: Int
        public var workloads: Int
    }

    let configuration: Configuration
    public let store: DeploymentStore
    let book: ContractBook
    let chain: any GridChain
    let managers: [WorkloadType: any WorkloadManager]
    let uniqueManagers: [any WorkloadManager]
    let logger: Logger

    var draining = false
    var admissionBusy = false
    var admissionWaiters: [CheckedContinuation<Void, Never>] = []
    var inFlight: [UInt64: Task<Void, Never>] = [:]
    var rerun: Set<UInt64> = []
    /// Workload revisions whose last failure cannot heal by retrying (a digest mismatch, a shrink).
    var permanentFailures: Set<String> = []
    var lastSeenStatus: [UInt64: ContractBook.Status] = [:]
    var reservationObservers: [@Sendable () async -> Void] = []
    /// Why new deployments are refused right now (node conditions); nil or empty: admit.
    var admissionBlocker: (@Sendable () async -> String?)?

    public init(configuration: Configuration, store: DeploymentStore, book: ContractBook, chain: any GridChain,
                managers: [any WorkloadManager], logger: Logger = Logger(label: "provisioner")) {
        self.configuration = configuration
        self.store = store
        self.book = book
        self.chain = chain
        var byType = [WorkloadType: any WorkloadManager]()
        for manager in managers { for type in manager.types { byType[type] = manager } }
        self.managers = byType
        self.uniqueManagers = managers.filter { !$0.types.isEmpty }
        self.logger = logger
    }

    /// Called after every change of reservations (the reporter sends contract resources).
    public func onReservationsChanged(_ observer: @escaping @Sendable () async -> Void) {
        reservationObservers.append(observer)
    }

    public func setDraining(_ value: Bool) { draining = value }

    /// The node's conditions gate admission: `blocker` answers why new deployments must wait (memory,
    /// disk or PID pressure, the chain unreachable), or nil to admit. Updates of running deployments
    /// are not gated: they may be what relieves the pressure.
    public func setAdmissionBlocker(_ blocker: @escaping @Sendable () async -> String?) { admissionBlocker = blocker }
    public var isDraining: Bool { draining }

    // MARK: Twin requests

    /// A new deployment: rules, contract, signatures, capacity; then recorded and reconciled.
    @discardableResult
    public func deploy(_ deployment: Deployment, caller: UInt32) async throws(ProvisionerError) -> String {
        guard !draining else { throw .draining }
        if let blocker = admissionBlocker, let reason = await blocker(), !reason.isEmpty { throw .nodeUnderPressure(reason) }
        try checkCaller(caller, deployment)
        do { try DeploymentRules.validate(deployment) } catch { throw ProvisionerError(error) }
        let hash = try await verifyAgainstChain(deployment)
        await acquireAdmission()
        defer { releaseAdmission() }
        if let existing = try await store.deployment(contractID: deployment.contractID) {
            throw .conflict("contract \(deployment.contractID) already has a deployment (version \(existing.deployment.version))"
                            + (existing.removing ? " that is being removed" : "; send an update with version \(existing.deployment.version + 1)"))
        }
        let placed = try await admit(deployment, replacing: nil)
        try await store.save(deployment, hash: hash, reservations: placed)
        logger.info("deployment accepted", metadata: ["contract": "\(deployment.contractID)", "twin": "\(deployment.twinID)",
                                                      "workloads": "\(deployment.workloads.count)"])
        await reservationsChanged()
        schedule(deployment.contractID)
        return hash
    }

    /// An update: version old+1, a contract updated to the new hash, no type changes.
    @discardableResult
    public func update(_ deployment: Deployment, caller: UInt32) async throws(ProvisionerError) -> String {
        try checkCaller(caller, deployment)
        await acquireAdmission()
        defer { releaseAdmission() }
        guard let existing = try await store.deployment(contractID: deployment.contractID), !existing.removing else {
            throw .notFound("no deployment for contract \(deployment.contractID) on this node; deploy it first")
        }
        guard existing.deployment.twinID == caller else { throw .forbidden("contract \(deployment.contractID) belongs to another twin") }
        do { try DeploymentRules.validateUpdate(from: existing.deployment, to: deployment) } catch { throw ProvisionerError(error) }
        let hash = try await verifyAgainstChain(deployment)
        let placed = try await admit(deployment, replacing: deployment.contractID)
        try await store.save(deployment, hash: hash, reservations: placed)
        logger.info("deployment updated", metadata: ["contract": "\(deployment.contractID)", "version": "\(deployment.version)"])
        await reservationsChanged()
        schedule(deployment.contractID)
        return hash
    }

    /// The caller's deployment with each workload's current result.
    public func get(contractID: UInt64, caller: UInt32?) async throws(ProvisionerError) -> Deployment {
        guard let stored = try await store.deployment(contractID: contractID) else {
            throw .notFound("no deployment for contract \(contractID) on this node")
        }
        if let caller, caller != stored.deployment.twinID { throw .forbidden("contract \(contractID) belongs to another twin") }
        return try await withResults(stored.deployment)
    }

    public func list(caller: UInt32?) async throws(ProvisionerError) -> [Deployment] {
        var out = [Deployment]()
        for stored in try await store.deployments(twinID: caller) { out.append(try await withResults(stored.deployment)) }
        return out
    }

    public func changes(contractID: UInt64, caller: UInt32?) async throws(ProvisionerError) -> [DeploymentStore.Change] {
        guard let owner = try await store.owner(contractID: contractID) else {
            throw .notFound("no deployment for contract \(contractID) was ever on this node")
        }
        if let caller, caller != owner { throw .forbidden("contract \(contractID) belongs to another twin") }
        return try await store.changes(contractID: contractID)
    }

    public func statistics() async throws(ProvisionerError) -> Statistics {
        let used = try await store.reserved()
        let limit = capacityLimit()
        func minus(_ a: UInt64, _ b: UInt64) -> UInt64 { a > b ? a - b : 0 }
        return Statistics(total: configuration.total, allocatable: limit, used: used,
                          free: Resources(hru: minus(limit.hru, used.hru), sru: minus(limit.sru, used.sru),
                                          cru: minus(limit.cru, used.cru), mru: minus(limit.mru, used.mru)),
                          deployments: try await store.deployments().count, workloads: try await store.workloads().count)
    }

    func withResults(_ deployment: Deployment) async throws(ProvisionerError) -> Deployment {
        var out = deployment
        let rows = try await store.workloads(contractID: deployment.contractID)
        let results = Dictionary(rows.map { ($0.workload.name, $0.result) }, uniquingKeysWith: { a, _ in a })
        for i in out.workloads.indices {
            out.workloads[i].result = results[out.workloads[i].name]
            // Secrets stay on the node: the twin knows its own passwords.
            if case .zdb(var z) = out.workloads[i].data, !z.password.isEmpty {
                z.password = "********"
                out.workloads[i].data = .zdb(z)
            }
        }
        return out
    }

    func checkCaller(_ caller: UInt32, _ deployment: Deployment) throws(ProvisionerError) {
        guard caller == deployment.twinID else {
            throw .forbidden("twin \(caller) sent a deployment of twin \(deployment.twinID); the deployment's own twin must send it")
        }
    }

    // MARK: Verification and admission

    /// The contract exists, is a node contract for this node, belongs to the twin, is Created and
    /// carries the hash; the signatures satisfy the multisig rule with keys from chain.
    func verifyAgainstChain(_ deployment: Deployment) async throws(ProvisionerError) -> String {
        let hash = DeploymentChallenge.hash(deployment)
        let id = deployment.contractID
        guard id != 0 else { throw .invalidDeployment(field: "contract_id", reason: "0; create the node contract first and put its id here") }
        let contract: Contract?
        do { contract = try await chain.contract(id: id) } catch { throw .chainUnavailable("reading contract \(id): \(error)") }
        guard let contract else { throw .contract(id: id, reason: "does not exist on chain") }
        switch contract.state {
        case .created: break
        case .gracePeriod: throw .contract(id: id, reason: "is in its grace period; top up twin \(contract.twinID)'s balance first")
        case .deleted(let cause): throw .contract(id: id, reason: "is deleted (\(cause.name))")
        }
        guard contract.node.nodeID == configuration.nodeID else {
            throw .contract(id: id, reason: "is for node \(contract.node.nodeID); this is node \(configuration.nodeID)")
        }
        guard contract.twinID == deployment.twinID else {
            throw .contract(id: id, reason: "belongs to twin \(contract.twinID), but the deployment names twin \(deployment.twinID)")
        }
        guard contract.node.deploymentHash.lowercased() == hash else {
            throw .contract(id: id, reason: "carries deployment hash \(contract.node.deploymentHash), but this deployment hashes to \(hash); "
                            + "check with `grid-twin deployment hash FILE` and update the contract or the deployment")
        }
        var keys = [UInt32: Ed25519PublicKey]()
        for signature in deployment.signatureRequirement.signatures where keys[signature.twinID] == nil {
            let twin: Twin?
            do { twin = try await chain.twin(id: signature.twinID) } catch {
                throw .chainUnavailable("reading twin \(signature.twinID): \(error)")
            }
            if let twin { keys[twin.id] = twin.publicKey }
        }
        do { _ = try MultisigVerifier.verify(deployment, keys: keys) } catch { throw ProvisionerError(error) }
        return hash
    }

    /// CPUs are time-shared and may be promised `overcommitRatio` times; memory and disk cannot be
    /// taken back without killing a workload, so they never are (the capacity policy's rule).
    func capacityLimit() -> Resources {
        let ratio = max(1.0, configuration.overcommitRatio)
        let a = configuration.allocatable
        return Resources(hru: a.hru, sru: a.sru, cru: UInt64(Double(a.cru) * ratio), mru: a.mru)
    }

    /// Refuses a deployment that does not fit whole. Callers hold the admission lock.
    ///
    /// Disk space comes from the workload's own disk type (zdb: HDD, the others: SSD) and, when the
    /// node has none of that type left, from the other type: a single-disk node can still host both.
    /// The reservation records where the bytes went, so used and reported numbers stay true.
    func admit(_ deployment: Deployment, replacing contractID: UInt64?) async throws(ProvisionerError) -> [String: Resources] {
        if !NetworkRules.networked(deployment).isEmpty {
            let neighbours = try await store.deployments().map(\.deployment).filter { $0.contractID != deployment.contractID }
            do { try NetworkRules.admit(deployment, others: neighbours, policy: configuration.network) } catch { throw ProvisionerError(error) }
        }
        let others = try await store.reserved(excluding: contractID)
        let limit = capacityLimit()
        var needed = Resources.zero
        var placed = [String: Resources]()
        let overflow = Resources(hru: .max, sru: .max, cru: .max, mru: .max)
        for w in deployment.workloads {
            var r = w.reservation
            let freeHDD = limit.hru > others.hru + needed.hru ? limit.hru - others.hru - needed.hru : 0
            let freeSSD = limit.sru > others.sru + needed.sru ? limit.sru - others.sru - needed.sru : 0
            if r.hru > freeHDD, r.sru == 0, r.hru <= freeSSD {
                r = Resources(hru: 0, sru: r.hru, cru: r.cru, mru: r.mru)
            } else if r.sru > freeSSD, r.hru == 0, r.sru <= freeHDD {
                r = Resources(hru: r.sru, sru: 0, cru: r.cru, mru: r.mru)
            }
            placed[w.name] = r
            needed = needed.adding(r) ?? overflow
        }
        let checks: [(String, UInt64, UInt64, UInt64)] = [
            ("cru (CPUs)", needed.cru, others.cru, limit.cru), ("mru (memory bytes)", needed.mru, others.mru, limit.mru),
            ("sru (SSD bytes)", needed.sru, others.sru, limit.sru), ("hru (HDD bytes)", needed.hru, others.hru, limit.hru),
        ]
        for (resource, want, used, allocatable) in checks {
            let free = allocatable > used ? allocatable - used : 0
            if want > free { throw .insufficientCapacity(resource: resource, requested: want, free: free, allocatable: allocatable) }
        }
        return placed
    }

    /// Admission and the save that records it run one at a time: the actor alone would let two
    /// requests interleave at their awaits and both take the last free capacity.
    func acquireAdmission() async {
        if admissionBusy {
            await withCheckedContinuation { admissionWaiters.append($0) }
        } else {
            admissionBusy = true
        }
    }

    func releaseAdmission() {
        if admissionWaiters.isEmpty { admissionBusy = false } else { admissionWaiters.removeFirst().resume() }
    }

    func reservationsChanged() async {
        for observer in reservationObservers { await observer() }
    }

    // MARK: Reconciliation

    /// Start-up: removes what the provisioner made but no longer has on record (a crash between an
    /// action and its bookkeeping), then brings every recorded deployment to its desired state.
    public func start() async {
        let rows = (try? await store.workloads()) ?? []
        let known = Set(rows.map { WorkloadID(contractID: $0.contractID, name: $0.workload.name) })
        for manager in uniqueManagers.sorted(by: { Self.removalOrder($0.types[0]) < Self.removalOrder($1.types[0]) }) {
            let type = manager.types[0]
            do {
                for id in try await manager.existing() where !known.contains(id) {
                    logger.notice("removing orphaned workload", metadata: ["workload": "\(id)", "type": "\(type.rawValue)"])
                    do { try await manager.remove(id, type: type) } catch {
                        logger.error("cannot remove orphaned workload", metadata: ["workload": "\(id)", "error": "\(error)"])
                    }
                }
            } catch {
                logger.error("cannot list workloads", metadata: ["type": "\(type.rawValue)", "error": "\(error)"])
            }
        }
        await reconcileAll()
    }

    /// Polls the contract book for chain-side changes and re-checks everything periodically, until
    /// the task is cancelled.
    public func run() async {
        var sinceFull = Duration.zero
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.pollInterval)
            sinceFull += configuration.pollInterval
            if sinceFull >= configuration.fullReconcileInterval {
                sinceFull = .zero
                await reconcileAll()
            } else {
                await reconcileChainChanges()
            }
        }
        for task in inFlight.values { await task.value }
    }

    func reconcileAll() async {
        for stored in (try? await store.deployments()) ?? [] { schedule(stored.deployment.contractID) }
    }

    func reconcileChainChanges() async {
        for stored in (try? await store.deployments()) ?? [] {
            let id = stored.deployment.contractID
            guard let status = try? await book.status(of: id) else { continue }
            if lastSeenStatus[id] != status || stored.removing {
                schedule(id)
            }
        }
    }

    /// Waits until no reconciliation is running or queued (tests and graceful shutdown).
    public func settle() async {
        while let (_, task) = inFlight.first { await task.value }
    }

    func schedule(_ contractID: UInt64) {
        if inFlight[contractID] != nil {
            rerun.insert(contractID)
            return
        }
        inFlight[contractID] = Task { await self.reconcileLoop(contractID) }
    }

    func reconcileLoop(_ contractID: UInt64) async {
        repeat {
            rerun.remove(contractID)
            await reconcile(contractID)
        } while rerun.contains(contractID)
        inFlight[contractID] = nil
    }

    static func installOrder(_ type: WorkloadType) -> Int {
        switch type {
        case .volume, .zmount: return 0
        case .zdb: return 1
        default: return 2
        }
    }

    static func removalOrder(_ type: WorkloadType) -> Int { 2 - installOrder(type) }

    /// One deployment's pass: removals first (containers before the disks they mount), then each
    /// desired workload converged in order (disks, namespaces, containers).
    func reconcile(_ contractID: UInt64) async {
        do {
            guard var stored = try await store.deployment(contractID: contractID) else { return }
            let status = try await book.status(of: contractID)
            lastSeenStatus[contractID] = status
            if case .canceled(let cause) = status, !stored.removing {
                try await store.markRemoving(contractID: contractID, reason: "contract canceled on chain (\(cause?.name ?? "unknown cause"))")
                stored.removing = true
                logger.info("contract canceled: removing deployment", metadata: ["contract": "\(contractID)"])
            }
            var paused = false
            if case .active(let contract) = status, case .gracePeriod = contract.state { paused = true }
            let rows = try await store.workloads(contractID: contractID)
            let type: (DeploymentStore.WorkloadRow) -> WorkloadType = { WorkloadType(rawValue: $0.workload.type) ?? .zmachine }

            var removedAny = false
            for row in rows.filter({ !$0.desired }).sorted(by: { Self.removalOrder(type($0)) < Self.removalOrder(type($1)) }) {
                let id = WorkloadID(contractID: contractID, name: row.workload.name)
                guard let manager = managers[type(row)] else { continue }
                do {
                    try await manager.remove(id, type: type(row))
                    try await store.workloadRemoved(contractID: contractID, name: row.workload.name)
                    removedAny = true
                } catch {
                    logger.error("cannot remove workload", metadata: ["workload": "\(id)", "error": "\(error)"])
                    try await store.setResult(contractID: contractID, name: row.workload.name, state: .error,
                                              message: "removal failed, will retry: \(error)", data: nil)
                }
            }
            if stored.removing {
                try await store.finishRemoval(contractID: contractID)
                if try await store.deployment(contractID: contractID) == nil {
                    lastSeenStatus[contractID] = nil
                    logger.info("deployment removed", metadata: ["contract": "\(contractID)"])
                }
                if removedAny { await reservationsChanged() }
                return
            }
            if removedAny { await reservationsChanged() }

            var context = DeploymentContext(contractID: contractID, twinID: stored.deployment.twinID)
            for row in rows.filter(\.desired).sorted(by: { Self.installOrder(type($0)) < Self.installOrder(type($1)) }) {
                let id = WorkloadID(contractID: contractID, name: row.workload.name)
                guard let manager = managers[type(row)] else {
                    try await store.setResult(contractID: contractID, name: row.workload.name, state: .error,
                                              message: "no manager for type \(row.workload.type) on this node", data: nil)
                    continue
                }
                let revision = "\(id)@\(row.workload.version):" + Hex.encode(Blake2b.hash(Array(DeploymentChallenge.dataText(row.workload.data).utf8), outputLength: 16))
                if permanentFailures.contains(revision) { continue }
                do {
                    let data = try await manager.apply(row.workload, id: id, context: context, paused: paused)
                    if let path = manager.diskPath(id) { context.diskPaths[row.workload.name] = path }
                    try await store.setResult(contractID: contractID, name: row.workload.name, state: paused ? .paused : .ok,
                                              message: paused ? "paused: the contract is in its grace period" : "", data: data)
                } catch {
                    if error.isPermanent { permanentFailures.insert(revision) }
                    logger.warning("workload failed", metadata: ["workload": "\(id)", "error": "\(error)"])
                    try await store.setResult(contractID: contractID, name: row.workload.name, state: .error, message: "\(error)", data: nil)
                }
            }
        } catch {
            logger.error("reconcile failed", metadata: ["contract": "\(contractID)", "error": "\(error)"])
        }
    }

    /// Active contracts for this node whose twin has not sent the deployment yet, oldest first.
    /// `deployed`: the contracts with a deployment, when the caller has read them already.
    public func contractsAwaitingDeployment(deployed: Set<UInt64>? = nil) async throws -> [(contractID: UInt64, seenAtBlock: UInt64)] {
        let deployedIDs: Set<UInt64>
        if let deployed { deployedIDs = deployed } else { deployedIDs = Set(try await store.deploymentFlags().keys) }
        return try await book.activeContractsSeen().filter { !deployedIDs.contains($0.contractID) }
    }
}

extension Provisioner: ReservationSource {
    public func reservedCapacity() async -> Resources {
        (try? await store.reserved()) ?? .zero
    }

    public func contractReservations() async -> [ContractResources] {
        (try? await store.reservations()) ?? []
    }
}
