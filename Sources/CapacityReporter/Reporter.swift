import ChainClient
import Foundation
import GridTypes
import Logging

/// The node's reporter: measures capacity and keeps the conditions, writes uptime, contract
/// resource and network reports to the durable outbox, and delivers them to the chain in order.
///
/// Delivery: a report is marked in flight (with the chain's head) before it is handed to the
/// chain; included without ExtrinsicFailed, it is delivered. When the outcome is unknown (a crash,
/// a timeout, the chain gone), the report is looked for in the blocks after that head before it is
/// sent again, so a report is neither lost nor, once included, sent twice. A stale uptime report
/// is rebuilt fresh (or superseded by a newer one), never resent with its old hint.
public actor Reporter {
    public nonisolated let conditions: NodeConditions
    public nonisolated let store: ReportStore
    let chain: any GridChain
    let nodeID: UInt32
    let signer: Ed25519KeyPair
    let reservations: any ReservationSource
    let network: (any NetworkCounterSource)?
    let scanner: CapacityScanner
    let settings: ReporterSettings
    let clock: any ReporterClock
    let logger: Logger
    /// What the reports are for, e.g. "node 5 on local:<genesis>": reports written for another
    /// scope (the node registered anew, another chain) are never sent here.
    let scope: String?

    private(set) var measurement: CapacityMeasurement?
    private(set) var usage: ActualUsage?
    /// Each data directory's filesystem at the first scan: a directory found elsewhere later sits on
    /// the disk below a mount point that went away.
    var firstDevices: [String: String] = [:]
    var lastMoved: [String] = []
    var limiter: UptimeLimiter
    /// After the chain refused a hint, hints follow the chain's time instead of the wall clock.
    var hintsFromChainTime = false
    var resourcesWaiting = false
    var outboxFull = false
    var lastRejection: String?
    var lastDeliveredBlock: UInt64 = 0
    var lastSendError: String?
    private var wakeUp: CheckedContinuation<Void, Never>?
    private var sending = false
    private var sendWaiters: [CheckedContinuation<Void, Never>] = []
    private var kicked = false

    public enum Keys {
        static let limiter = "uptime_limiter"
        static let contractResources = "last_contract_resources"
        static let nruCounters = "nru_counters"
        static let nruTime = "nru_last_time"
        static let attestation = "last_attestation"
        static let nodeResources = "last_node_resources"
        static let scope = "scope"
    }

    public init(chain: any GridChain, nodeID: UInt32, signer: Ed25519KeyPair, store: ReportStore,
                reservations: any ReservationSource, network: (any NetworkCounterSource)? = nil,
                scanner: CapacityScanner, settings: ReporterSettings = ReporterSettings(),
                clock: any ReporterClock = SystemReporterClock(), conditions: NodeConditions = NodeConditions(),
                scope: String? = nil, logger: Logger = Logger(label: "reporter")) {
        self.scope = scope
        self.chain = chain
        self.nodeID = nodeID
        self.signer = signer
        self.store = store
        self.reservations = reservations
        self.network = network
        self.scanner = scanner
        self.settings = settings
        self.clock = clock
        self.conditions = conditions
        self.logger = logger
        var limiter = UptimeLimiter(bootID: clock.bootID, epoch: nil)
        if let saved = try? store.state(Keys.limiter) {
            let parts = saved.split(separator: " ")
            if parts.count == 2, let epoch = Int64(parts[1]) { limiter = UptimeLimiter(bootID: String(parts[0]), epoch: epoch) }
        }
        self.limiter = limiter
    }

    // MARK: running

    /// Start-up reports, then the periodic work and the sender, until cancelled.
    public func run() async {
        await startUp()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.sendLoop() }
            group.addTask { await self.every(self.settings.uptimeInterval) { await $0.reportUptime() } }
            group.addTask { await self.every(self.settings.capacityScanInterval) { await $0.scanCapacity() } }
            if network != nil {
                group.addTask { await self.every(self.settings.networkReportInterval) { await $0.reportNetwork() } }
            }
            await group.waitForAll()
        }
    }

    /// What is done once at start: measure and attest, update the registered capacity, send an
    /// uptime report and the contracts' resources, and take the network counters' baseline.
    public func startUp() async {
        await retireForeignReports()
        await scanCapacity()
        await reportUptime()
        await reportContractResources(force: true)
        if network != nil { await reportNetwork() }
    }

    nonisolated func every(_ interval: Duration, _ work: @Sendable (Reporter) async -> Void) async {
        let clock = ContinuousClock()
        var next = clock.now.advanced(by: interval)
        while !Task.isCancelled {
            do { try await Task.sleep(until: next, clock: clock) } catch { return }
            await work(self)
            next = next.advanced(by: interval)
            if next < clock.now { next = clock.now.advanced(by: interval) }
        }
    }

    /// Open reports written for another scope (another chain, or the node registered anew) are
    /// settled as refused, with the reason, instead of being sent as this node's.
    func retireForeignReports() async {
        guard let scope else { return }
        do {
            if let previous = try store.state(Keys.scope), previous != scope {
                var retired = 0
                while let entry = try store.nextOpen() {
                    try store.resolve(entry, outcome: .rejected, detail: "written for \(previous); the node now reports for \(scope)",
                                      stamp: stamp())
                    retired += 1
                }
                logger.warning("reports written for another chain or registration were not sent", metadata: [
                    "count": "\(retired)", "was": .string(previous), "now": .string(scope)])
                // The remembered state belonged to the old registration too.
                try store.setState([Keys.contractResources: "", Keys.nodeResources: "", Keys.nruTime: "", Keys.nruCounters: "{}"])
            }
            try store.setState([Keys.scope: scope])
        } catch {
            await outboxUnwritable(error)
        }
    }

    /// The provisioner calls this after every deploy, update and removal.
    public func reservationsChanged() async {
        await reportContractResources(force: false)
    }

    // MARK: reading

    /// Total, reserve, allocatable, used (from the reservations) and free, as admission counts them.
    public func capacity() async -> NodeCapacity? {
        guard let measurement else { return nil }
        return NodeCapacity(measurement: measurement, policy: settings.policy, used: await reservations.reservedCapacity())
    }

    public func currentMeasurement() -> CapacityMeasurement? { measurement }
    public func actualUsage() -> ActualUsage? { usage }

    public func outboxStatus() -> OutboxStatus? {
        try? store.status()
    }

    func stamp() -> ReportStore.Stamp {
        ReportStore.Stamp(nodeID: nodeID, time: clock.wallSeconds(), bootID: clock.bootID, sinceBoot: clock.secondsSinceBoot())
    }

    // MARK: capacity and conditions

    public func scanCapacity() async {
        let scanned = scanner.scan()
        var moved = [String]()
        for disk in scanned.disks {
            for path in disk.paths {
                guard let first = firstDevices[path] else { firstDevices[path] = disk.deviceNumber; continue }
                if first != disk.deviceNumber { moved.append(path) }
            }
        }
        if !moved.isEmpty, moved != lastMoved {
            logger.warning("data directories are no longer on the filesystem they were on at start (a disk unmounted or gone?)",
                           metadata: ["paths": .string(moved.joined(separator: ","))])
        }
        lastMoved = moved
        for warning in scanned.warnings where measurement?.warnings.contains(warning) != true {
            logger.warning("capacity scan: \(warning)")
        }
        measurement = scanned
        let reading = ActualUsage.read(files: scanner.files, disks: scanned.disks, probe: scanner.probe)
        usage = reading
        await conditions.set(.memoryPressure, PressureRules.memory(reading, settings.pressure))
        await conditions.set(.diskPressure, PressureRules.disk(reading, unreadable: scanned.unreadableDirectories + moved, settings.pressure))
        await conditions.set(.pidPressure, PressureRules.pids(reading, settings.pressure))

        let attestation = scanned.attestation(reserve: settings.policy.reserve(for: scanned))
        let key = Self.json(attestation) + " " + clock.bootID
        if (try? store.state(Keys.attestation)) != key {
            do {
                try store.attest(attestation, stamp: stamp(), state: [Keys.attestation: key])
                logger.info("capacity attested", metadata: ["cru": "\(scanned.total.cru)", "mru": "\(scanned.total.mru)",
                                                            "sru": "\(scanned.total.sru)", "hru": "\(scanned.total.hru)"])
            } catch {
                await outboxUnwritable(error)
            }
        }
        await updateNodeResources(scanned.total)
    }

    /// Keeps the chain's registered capacity equal to the measured totals (embedded ledger).
    func updateNodeResources(_ total: Resources) async {
        guard settings.updatesNodeResources, total.cru > 0, total.mru > 0 else { return }
        let key = Self.json(total)
        if let last = try? store.state(Keys.nodeResources) {
            if last == key { return }
        } else if let node = try? await chain.node(id: nodeID), node.resources == total {
            try? store.setState([Keys.nodeResources: key])
            return
        }
        _ = await write([.nodeResources(nodeID: nodeID, total)], state: [Keys.nodeResources: key], force: true)
    }

    // MARK: building reports

    /// Writes reports unless the outbox is full (then returns false). `force` writes anyway (reports
    /// that cannot wait for a later, cumulative one).
    func write(_ contents: [ReportContent], state: [String: String], force: Bool = false) async -> Bool {
        do {
            let open = try store.openCount()
            if open + contents.count > settings.maxOpenReports && !force {
                if !outboxFull { logger.error("the report outbox is full; holding back new reports until the chain takes the queued ones",
                                              metadata: ["open": "\(open)", "limit": "\(settings.maxOpenReports)"]) }
                outboxFull = true
                await refreshDeliveryCondition()
                return false
            }
            outboxFull = false
            if !contents.isEmpty || !state.isEmpty { try store.enqueue(contents, stamp: stamp(), state: state) }
            kick()
            return true
        } catch {
            await outboxUnwritable(error)
            return false
        }
    }

    func outboxUnwritable(_ error: CapacityReporterError) async {
        logger.error("cannot write the report database", metadata: ["error": .string(error.description)])
        await conditions.set(.reportsDelivering, ConditionValue(.isFalse, reason: "OutboxUnwritable", message: error.description))
    }

    /// The uptime claim for a report built now.
    func uptimeClaim() async -> UptimeLimiter.Claim {
        let now = clock.wallAndBootSeconds()
        var hint = now.wall
        if hintsFromChainTime, let head = try? await chain.finalizedHead() {
            hint = head.timestampMilliseconds / 1000
        }
        let claim = limiter.claim(bootUptime: now.sinceBoot, hint: hint, bootID: clock.bootID)
        if claim.cappedBy > 0 {
            await conditions.set(.clockConsistent, ConditionValue(.isFalse, reason: "ClockJumpedBack", message:
                "the wall clock is \(claim.cappedBy) s behind where CLOCK_BOOTTIME puts it: uptime reports are lowered by that much "
                + "until the next boot so they never grow faster than wall time; keep the clock synchronized (NTP)"))
        } else if !hintsFromChainTime {
            await conditions.set(.clockConsistent, ConditionValue(.isTrue, reason: "ClockConsistent",
                                                                  message: "wall clock and CLOCK_BOOTTIME agree"))
        }
        return claim
    }

    var limiterState: [String: String] {
        [Keys.limiter: "\(limiter.bootID) \(limiter.epoch ?? 0)"]
    }

    public func reportUptime() async {
        if outboxFull, (try? store.openCount()) ?? 0 >= settings.maxOpenReports {
            // Uptime is cumulative: the next report after the queue drains covers this one.
            logger.warning("uptime report held back: the outbox is full")
            return
        }
        let claim = await uptimeClaim()
        let content = ReportContent.uptime(UptimeClaim(uptime: claim.uptime, timestampHint: claim.hint, bootUptime: claim.bootUptime))
        _ = await write([content], state: limiterState)
    }

    /// The contracts' reserved resources, when they changed since the last report (or `force`).
    public func reportContractResources(force: Bool) async {
        let snapshot = await reservations.contractReservations().sorted { $0.contractID < $1.contractID }
        let key = Self.json(snapshot)
        if !force, !resourcesWaiting, (try? store.state(Keys.contractResources)) == key { return }
        let chunks = stride(from: 0, to: snapshot.count, by: settings.maxContractsPerReport).map {
            ReportContent.contractResources(Array(snapshot[$0..<min($0 + settings.maxContractsPerReport, snapshot.count)]))
        }
        // Billing follows these numbers: they are written even into a full outbox.
        resourcesWaiting = !(await write(chunks, state: [Keys.contractResources: key], force: true))
    }

    /// Network bytes per contract since the last report, from the counters' differences.
    public func reportNetwork() async {
        guard let network else { return }
        let counters: [UInt64: UInt64]
        do { counters = try await network.publicTrafficBytes() } catch {
            logger.warning("network counters unavailable; the next report covers this period", metadata: ["error": "\(error)"])
            return
        }
        let now = clock.wallSeconds()
        let previous: [UInt64: UInt64] = (try? store.state(Keys.nruCounters)).flatMap { Self.decode($0) } ?? [:]
        let saved = (try? store.state(Keys.nruTime)).flatMap { UInt64($0) }
        let state = [Keys.nruCounters: Self.json(counters), Keys.nruTime: String(now)]
        guard let last = saved else {
            if await write([], state: state, force: true) { await network.countersReported(counters) }   // the baseline
            return
        }
        guard now > last else {
            // Within the same second there is nothing to report; before it, the clock went back.
            if now < last { logger.warning("the wall clock is before the last network report; waiting for it to pass", metadata: ["last": "\(last)", "now": "\(now)"]) }
            return
        }
        var reports = [NruConsumption]()
        for (contract, value) in counters.sorted(by: { $0.key < $1.key }) {
            let before = previous[contract] ?? 0
            let bytes = value >= before ? value - before : value   // a lower value: the counter restarted
            if bytes > 0 { reports.append(NruConsumption(contractID: contract, timestamp: now, window: now - last, nru: bytes)) }
        }
        let chunks = stride(from: 0, to: reports.count, by: settings.maxContractsPerReport).map {
            ReportContent.nru(Array(reports[$0..<min($0 + settings.maxContractsPerReport, reports.count)]))
        }
        // Held back when full: the counters were not consumed, so the next window includes these bytes.
        if await write(chunks, state: state) { await network.countersReported(counters) }
    }

    // MARK: sending

    enum Step: Equatable {
        case idle, progress, retry, settle, stop
    }

    func sendLoop() async {
        var backoff = settings.retryInitial
        while !Task.isCancelled {
            let step = await sendNext()
            await refreshDeliveryCondition()
            switch step {
            case .stop: return
            case .progress:
                backoff = settings.retryInitial
                if resourcesWaiting { await reportContractResources(force: true) }
            case .idle: await waitForWork(settings.idleCheck)
            case .settle: await waitForWork(settings.settlePoll, wakeOnNewReport: false)
            case .retry:
                await waitForWork(backoff, wakeOnNewReport: false)
                backoff = min(backoff * 2, settings.retryMaximum)
            }
        }
    }

    /// Sends every open report in order until none is left or one cannot be sent now; for tests
    /// and a graceful drain. Returns whether the outbox is empty.
    public func drain(deadline: ContinuousClock.Instant) async -> Bool {
        var backoff = settings.retryInitial
        while ContinuousClock.now < deadline, !Task.isCancelled {
            switch await sendNext() {
            case .idle: await refreshDeliveryCondition(); return true
            case .stop: return false
            case .progress: backoff = settings.retryInitial
            case .settle: try? await Task.sleep(for: settings.settlePoll)
            case .retry:
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, settings.retryMaximum)
            }
        }
        await refreshDeliveryCondition()
        return false
    }

    func kick() {
        kicked = true
        wakeUp?.resume()
        wakeUp = nil
    }

    /// Sleeps for `duration` or until a new report arrives (or the task is cancelled).
    func waitForWork(_ duration: Duration, wakeOnNewReport: Bool = true) async {
        if !wakeOnNewReport {
            try? await Task.sleep(for: duration)
            return
        }
        if kicked { kicked = false; return }
        let timer = Task { [weak self] in
            try? await Task.sleep(for: duration)
            await self?.kick()
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if kicked || Task.isCancelled { continuation.resume() } else { wakeUp = continuation }
            }
        } onCancel: {
            Task { await self.kick() }
        }
        kicked = false
        timer.cancel()
    }

    /// One step of delivery for the first open report.
    /// One report at a time: the run loop and a graceful drain may both send, and two sends
    /// interleaving at their awaits would hand the same report to the chain twice.
    func sendNext() async -> Step {
        while sending { await withCheckedContinuation { sendWaiters.append($0) } }
        sending = true
        defer {
            sending = false
            if !sendWaiters.isEmpty { sendWaiters.removeFirst().resume() }
        }
        return await sendOne()
    }

    private func sendOne() async -> Step {
        let next: OutboxEntry?
        do { next = try store.nextOpen() } catch {
            await outboxUnwritable(error)
            return .retry
        }
        guard let entry = next else { return .idle }
        if entry.status == .inflight { return await reconcile(entry) }

        let head: BlockHeader
        do { head = try await chain.finalizedHead() } catch {
            await chainUnreachable(error)
            return .retry
        }
        await chainReachable()
        if hintsFromChainTime {
            let chainSeconds = Int64(clamping: head.timestampMilliseconds / 1000)
            if abs(Int64(clamping: clock.wallSeconds()) - chainSeconds) < 30 {
                hintsFromChainTime = false   // the clock agrees with the chain again
            }
        }
        if entry.kind == .uptime, isStale(entry) {
            return await refreshUptime(entry, reason: "the report waited \(age(entry)) s; its timestamp hint would be refused")
        }
        do { try store.markInflight(entry.id, head: max(head.number, lastDeliveredBlock)) } catch {
            await outboxUnwritable(error)
            return .retry
        }
        do {
            let inclusion = try await chain.submit(entry.content.call, signer: signer)
            await chainReachable()
            return await settle(entry, outcome: .delivered, block: inclusion.blockNumber)
        } catch {
            return await submitFailed(entry, error)
        }
    }

    func isStale(_ entry: OutboxEntry) -> Bool {
        entry.bootID != clock.bootID || age(entry) > settings.uptimeStaleSeconds
    }

    func age(_ entry: OutboxEntry) -> UInt64 {
        let now = clock.secondsSinceBoot()
        return entry.bootID != clock.bootID ? UInt64.max : (now > entry.builtSinceBoot ? now - entry.builtSinceBoot : 0)
    }

    func settle(_ entry: OutboxEntry, outcome: DeliveryReceipt.Outcome, block: UInt64? = nil, by: UInt64? = nil,
                detail: String? = nil) async -> Step {
        do {
            try store.resolve(entry, outcome: outcome, block: block, by: by, detail: detail, stamp: stamp())
        } catch {
            await outboxUnwritable(error)
            return .retry
        }
        switch outcome {
        case .delivered:
            lastRejection = nil
            lastSendError = nil
            if let block { lastDeliveredBlock = max(lastDeliveredBlock, block) }
            logger.debug("report delivered", metadata: ["kind": .string(entry.kind.rawValue), "seq": "\(entry.statementSeq)",
                                                        "block": "\(block ?? 0)"])
        case .rejected:
            lastRejection = "report \(entry.statementSeq) (\(entry.kind.rawValue)) was refused: \(detail ?? "")"
            logger.error("the chain refused a report; it is kept, signed, with the reason", metadata: [
                "kind": .string(entry.kind.rawValue), "seq": "\(entry.statementSeq)", "error": .string(detail ?? "")])
        case .superseded, .rebuilt:
            logger.info("report \(outcome.rawValue)", metadata: ["kind": .string(entry.kind.rawValue), "seq": "\(entry.statementSeq)",
                                                                  "detail": .string(detail ?? "")])
        }
        return .progress
    }

    /// A stale uptime report: superseded by a newer open one, or rebuilt fresh.
    func refreshUptime(_ entry: OutboxEntry, reason: String) async -> Step {
        do {
            if let newer = try store.openEntries(kind: .uptime, after: entry.id).first {
                return await settle(entry, outcome: .superseded, by: newer.statementSeq, detail: reason)
            }
            let claim = await uptimeClaim()
            var old = entry
            old.lastError = reason
            try store.enqueue([.uptime(UptimeClaim(uptime: claim.uptime, timestampHint: claim.hint, bootUptime: claim.bootUptime))],
                              stamp: stamp(), replacing: old, state: limiterState)
            logger.info("uptime report rebuilt fresh", metadata: ["seq": "\(entry.statementSeq)", "reason": .string(reason)])
            return .progress
        } catch {
            await outboxUnwritable(error)
            return .retry
        }
    }

    func submitFailed(_ entry: OutboxEntry, _ error: ChainError) async -> Step {
        lastSendError = error.description
        switch error {
        case .rejected(_, let module, let name, let detail):
            let reason = "\(module).\(name)" + (detail.isEmpty ? "" : ": \(detail)")
            if module == "TransactionPool" || (module == "System" && ["TooManyPending", "Stale", "Future"].contains(name)) {
                // Refused before inclusion: not on the chain, safe to send again.
                return notOnChain(entry, reason)
            }
            if entry.kind == .uptime, name == "InvalidTimestampHint" {
                hintsFromChainTime = true
                await conditions.set(.clockConsistent, ConditionValue(.isFalse, reason: "TimestampHintRejected", message:
                    "the chain refused an uptime report's timestamp hint (the wall clock is over 60 s off the chain's time?); "
                    + "hints now follow the chain's time; check the clock (NTP)"))
                return await refreshUptime(entry, reason: "the chain refused it: \(reason)")
            }
            if entry.kind == .contractResources || entry.kind == .nru,
               ["ContractNotExists", "NodeNotAuthorizedToComputeReport"].contains(name) {
                return await keepActiveContracts(entry, reason: reason)
            }
            return await settle(entry, outcome: .rejected, detail: reason)
        case .invalidInput(let detail), .metadata(let detail):
            // The call cannot be made on this chain at all; sending again cannot help.
            return await settle(entry, outcome: .rejected, detail: detail)
        case .cancelled:
            return .stop
        default:
            // Unavailable, timed out, or a reply we could not read: the call may be on the chain.
            await chainUnreachable(error)
            do { try store.recordFailure(entry.id, error: error.description, stillInflight: true) } catch {
                await outboxUnwritable(error)
            }
            return .retry
        }
    }

    func notOnChain(_ entry: OutboxEntry, _ reason: String) -> Step {
        do { try store.recordFailure(entry.id, error: reason, stillInflight: false) } catch {
            logger.error("cannot write the report database", metadata: ["error": .string(error.description)])
        }
        return .retry
    }

    /// A contract report refused because a contract is gone: the report is rebuilt with the
    /// contracts still active on the chain (dropped ones named in the receipt).
    func keepActiveContracts(_ entry: OutboxEntry, reason: String) async -> Step {
        let active: Set<UInt64>
        do { active = Set(try await chain.activeContracts(node: nodeID)) } catch {
            await chainUnreachable(error)
            return notOnChain(entry, reason)
        }
        var kept: ReportContent?
        var dropped = [UInt64]()
        switch entry.content {
        case .contractResources(let reports):
            let keep = reports.filter { active.contains($0.contractID) }
            dropped = reports.filter { !active.contains($0.contractID) }.map(\.contractID)
            if !keep.isEmpty { kept = .contractResources(keep) }
        case .nru(let reports):
            let keep = reports.filter { active.contains($0.contractID) }
            dropped = reports.filter { !active.contains($0.contractID) }.map(\.contractID)
            if !keep.isEmpty { kept = .nru(keep) }
        default: break
        }
        guard !dropped.isEmpty else { return await settle(entry, outcome: .rejected, detail: reason) }
        var old = entry
        old.lastError = "\(reason); contracts no longer active: \(dropped.map(String.init).joined(separator: ", "))"
        do {
            try store.enqueue(kept.map { [$0] } ?? [], stamp: stamp(), replacing: old)
        } catch {
            await outboxUnwritable(error)
            return .retry
        }
        return .progress
    }

    /// A report handed to the chain whose outcome is unknown: look for it in the blocks after the
    /// submission; once the chain has moved on without it, it is sent again.
    func reconcile(_ entry: OutboxEntry) async -> Step {
        guard let submitted = entry.submittedHead else { return notOnChain(entry, "no submission recorded") }
        let head: BlockHeader
        do { head = try await chain.finalizedHead() } catch {
            await chainUnreachable(error)
            return .retry
        }
        await chainReachable()
        let last = min(head.number, submitted + settings.inclusionWindowBlocks)
        var missingBlocks = 0
        if last > submitted {
            for number in (submitted + 1)...last {
                let block: FinalizedBlock?
                do { block = try await chain.block(number: number) } catch {
                    await chainUnreachable(error)
                    return .retry
                }
                guard let block else { missingBlocks += 1; continue }
                if Self.includes(block.events, entry.content, nodeID: nodeID) {
                    return await settle(entry, outcome: .delivered, block: number,
                                        detail: "found on the chain after an interrupted submission")
                }
            }
        }
        if head.number < submitted + settings.settleBlocks { return .settle }
        let reason = "not found in blocks \(submitted + 1)...\(last)" + (missingBlocks > 0 ? " (\(missingBlocks) pruned)" : "")
            + "; sending again" + (entry.lastError.map { " (last error: \($0))" } ?? "")
        logger.info("a report handed to the chain before an interruption is not on it; sending it again",
                    metadata: ["seq": "\(entry.statementSeq)", "kind": .string(entry.kind.rawValue)])
        _ = notOnChain(entry, reason)
        return .progress
    }

    /// Whether `events` hold the effect of `content` from this node.
    static func includes(_ events: [ChainEvent], _ content: ReportContent, nodeID: UInt32) -> Bool {
        switch content {
        case .uptime(let claim):
            // TFChain's event carries the block's time, not the hint; the chain accepts only hints
            // within 60 s of it, and an uptime in seconds is this report's alone.
            return events.contains { event in
                guard case .nodeUptimeReported(let node, let timestamp, let uptime) = event else { return false }
                let gap = timestamp > claim.timestampHint ? timestamp - claim.timestampHint : claim.timestampHint - timestamp
                return node == nodeID && uptime == claim.uptime && gap <= 60
            }
        case .contractResources(let reports):
            return !reports.isEmpty && reports.allSatisfy { events.contains(.updatedUsedResources($0)) }
        case .nru(let reports):
            return !reports.isEmpty && reports.allSatisfy { events.contains(.nruConsumptionReportReceived($0)) }
        case .nodeResources(let id, let resources):
            return events.contains { event in
                if case .nodeStored(let node) = event { return node.id == id && node.resources == resources }
                return false
            }
        }
    }

    // MARK: conditions

    func chainReachable() async {
        await conditions.set(.chainReachable, ConditionValue(.isTrue, reason: "ChainResponding", message: "the chain answered"))
    }

    func chainUnreachable(_ error: ChainError) async {
        await conditions.set(.chainReachable, ConditionValue(.isFalse, reason: "ChainUnavailable", message: error.description))
    }

    func refreshDeliveryCondition() async {
        guard let status = try? store.status() else { return }
        let now = clock.wallSeconds()
        let age = status.oldestPendingAge(now: now) ?? 0
        if outboxFull, status.pendingCount < settings.maxOpenReports { outboxFull = false }
        let value: ConditionValue
        if outboxFull {
            value = ConditionValue(.isFalse, reason: "OutboxFull", message:
                "\(status.pendingCount) reports wait, the most the outbox holds; new uptime and network reports are held back "
                + "(nothing is lost: uptime is cumulative and the network counters keep counting) until the chain takes the queued ones")
        } else if let lastRejection {
            value = ConditionValue(.isFalse, reason: "ReportRejected", message: lastRejection)
        } else if status.pendingCount > 0, age > settings.deliveryLagSeconds {
            value = ConditionValue(.isFalse, reason: "ReportsDelayed", message:
                "\(status.pendingCount) report(s) pending, the oldest for \(age) s" + (lastSendError.map { "; last error: \($0)" } ?? ""))
        } else {
            let last = status.lastDelivered.map { "; last delivered: \($0.kind) in block \($0.block)" } ?? ""
            value = ConditionValue(.isTrue, reason: "ReportsDelivered", message: "\(status.pendingCount) report(s) pending" + last)
        }
        await conditions.set(.reportsDelivering, value)
    }

    // MARK: helpers

    static func json<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    static func decode<T: Decodable>(_ text: String) -> T? {
        try? JSONDecoder().decode(T.self, from: Data(text.utf8))
    }
}
