import ChainClient
import Foundation
import GridTypes
import Logging
import Provisioner
import ShardServer

/// The running agent as the farmer sees it: what is up, what it is doing, and the handles the admin
/// socket, the metrics endpoint and systemd need. `AgentDaemon` reports each step of start-up and
/// shutdown here; every farmer command reads the same numbers the agent enforces (the provisioner's
/// store, the chain watcher, the shard server).
actor AgentRuntime {
    enum Phase: String, Sendable {
        case starting, registering, restoring, running, degraded, stopping
    }

    static let drainFileName = "draining"

    let config: AgentConfig
    let identity: NodeIdentity
    let startedAt: Date
    let journal: EventJournal
    /// Plugged in at start or later (the reporter exists only once the node is registered).
    private(set) var sources: StatusSources
    let notifier: SystemdNotifier?
    let shardServer: ShardServer?
    let logger: Logger

    private(set) var phase: Phase = .starting
    private var degradedReason: String?
    private(set) var chain: (any GridChain)?
    private(set) var chainName: String?
    private(set) var record: NodeRecord?
    private(set) var watcher: ContractWatcher?
    private(set) var provisioner: Provisioner?
    /// The farmer's `node-agent drain`, kept in `<state_dir>/draining` across restarts.
    private(set) var draining: Bool
    private var restoreStarted: ContinuousClock.Instant?
    private var apiRunning = false

    init(config: AgentConfig, identity: NodeIdentity, shardServer: ShardServer?, sources: StatusSources = StatusSources(),
         notifier: SystemdNotifier? = SystemdNotifier(), journal: EventJournal? = nil, logger: Logger = Logger(label: "node-agent")) {
        self.config = config
        self.identity = identity
        self.shardServer = shardServer
        self.sources = sources
        self.notifier = notifier
        self.journal = journal ?? EventJournal(stateDir: config.node.stateDir)
        self.logger = logger
        startedAt = Date()
        draining = FileManager.default.fileExists(atPath: config.node.stateDir + "/" + Self.drainFileName)
    }

    var drainFile: String { config.node.stateDir + "/" + Self.drainFileName }

    /// Adds or replaces sources once their owners exist, e.g. the capacity reporter after registration:
    /// `await runtime?.updateSources { $0.conditions = { ... } }`.
    func updateSources(_ change: (inout StatusSources) -> Void) { change(&sources) }

    // MARK: Start-up and shutdown, as AgentDaemon goes through them

    func started() async {
        await journal.record(.agent, "agent started: version \(NodeAgentCommand.version), pid \(getpid())"
                             + (draining ? "; still draining (node-agent undrain to take deployments again)" : ""))
        notifier?.status("starting: opening the chain (\(config.chain.backend.rawValue))")
    }

    func chainOpened(_ chain: any GridChain, name: String) {
        self.chain = chain
        chainName = name
        phase = .registering
        notifier?.status("registering the node on \(name.prefix(24)) (farm \(config.node.farmID))")
    }

    func registered(_ record: NodeRecord) async {
        self.record = record
        await journal.record(.agent, "registered as node \(record.nodeID) (twin \(record.twinID), farm \(record.farmID))")
    }

    func watching(_ watcher: ContractWatcher) { self.watcher = watcher }

    /// The contract watcher's sink, recording what it sees in the event journal.
    func contractSink(_ book: ContractBook) -> any ContractSink { RecordingContractSink(book: book, journal: journal) }

    func restoring() {
        phase = .restoring
        restoreStarted = .now
        notifier?.status("restoring deployments (start-up reconciliation)")
    }

    /// Start-up reconciliation is done: the node is Ready for systemd (READY=1).
    func provisionerStarted(_ provisioner: Provisioner) async {
        self.provisioner = provisioner
        if draining { await provisioner.setDraining(true) }
        guard phase != .stopping else { return }
        phase = .running
        let elapsed = restoreStarted.map { ContinuousClock.now - $0 } ?? .zero
        let deployments = (try? await provisioner.store.deploymentFlags().count) ?? 0
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let message = String(format: "ready: %d deployment(s) restored in %.1f s", deployments, seconds)
        await journal.record(.agent, message)
        logger.notice("node-agent ready", metadata: ["deployments": "\(deployments)", "restore_s": .string(String(format: "%.2f", seconds))])
        notifier?.ready(status: await statusLine())
    }

    /// The provisioner could not start: the agent keeps watching the chain but takes no deployments.
    /// systemd still hears READY=1 (a restart would not help; the status line says why).
    func provisionerFailed(_ error: any Error) async {
        phase = .degraded
        degradedReason = "the provisioner cannot start: \(error)"
        await journal.record(.agent, level: "error", "the provisioner cannot start: \(error)")
        notifier?.ready(status: "degraded: the provisioner cannot start: \(error)")
    }

    /// First step of a graceful shutdown (SIGTERM): systemd hears STOPPING=1 and new deployments are
    /// refused. The drain flag file is left alone: a stop is not the farmer's drain.
    func beginShutdown(reason: String) async {
        guard phase != .stopping else { return }
        phase = .stopping
        notifier?.stopping(status: "stopping: finishing in-flight work")
        await provisioner?.setDraining(true)
        await journal.record(.agent, "stopping (\(reason)): intake closed, finishing in-flight work")
    }

    /// The twin API runs (between these calls); a graceful shutdown waits for it to finish its requests.
    func apiStarted() { apiRunning = true }
    func apiStopped() { apiRunning = false }

    /// Waits (at most `limit`) for the twin API to finish its requests and for in-flight
    /// reconciliations, then lets the other parts flush.
    func finishInFlight(within limit: Duration) async {
        let started = ContinuousClock.now
        while apiRunning, ContinuousClock.now - started < limit {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if let provisioner {
            let settled = await withDeadline(max(limit - (ContinuousClock.now - started), .milliseconds(100))) { await provisioner.settle(); return true } ?? false
            if !settled { logger.warning("in-flight work did not finish before the stop deadline; it resumes at the next start") }
        }
        if let onShutdown = sources.onShutdown {
            let remaining = limit - (ContinuousClock.now - started)
            let systemStopping = SystemState.isShuttingDown()
            _ = await withDeadline(max(remaining, .seconds(1))) { await onShutdown(systemStopping); return true }
        }
    }

    func stopped() async {
        let uptime = Int64(Date().timeIntervalSince(startedAt))
        await journal.record(.agent, "stopped after \(StatusRenderer.duration(uptime)) of uptime; workloads keep running")
    }

    /// One line for systemd's STATUS=.
    func statusLine() async -> String {
        switch phase {
        case .running:
            guard let provisioner else { return "running" }
            let deployments = (try? await provisioner.store.deploymentFlags().count) ?? 0
            let workloads = (try? await provisioner.store.summary().count) ?? 0
            return "running: \(deployments) deployment(s), \(workloads) workload(s)"
                + (draining ? ", draining (no new deployments)" : ", accepting deployments")
        case .degraded: return "degraded: " + (degradedReason ?? "unknown")
        case .starting: return "starting"
        case .registering: return "registering the node on the chain (farm \(config.node.farmID))"
        case .restoring: return "restoring deployments"
        case .stopping: return "stopping: finishing in-flight work"
        }
    }

    // MARK: Farmer commands

    /// `node-agent drain` / `undrain`: stop (or resume) taking new deployments; running ones stay.
    /// Durable first (the flag file), then applied.
    func setDraining(_ on: Bool, by who: String) async throws -> Bool {
        if on {
            let fd = open(drainFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else { throw NodeAgentError.io(operation: "create", path: drainFile, errno: errno) }
            let text = Array("drained at \(Int64(Date().timeIntervalSince1970)) by \(who)\n".utf8)
            _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            fsync(fd)
            close(fd)
        } else if unlink(drainFile) != 0 && errno != ENOENT {
            throw NodeAgentError.io(operation: "remove", path: drainFile, errno: errno)
        }
        let changed = draining != on
        draining = on
        if phase != .stopping { await provisioner?.setDraining(on) }
        if changed {
            await journal.record(.agent, on ? "draining (by \(who)): running deployments stay, new ones are refused"
                                             : "undrained (by \(who)): taking new deployments again")
            notifier?.status(await statusLine())
        }
        return draining
    }

    func events(limit: Int) async -> [AgentEvent] {
        let bounded = max(1, min(limit, 1000))
        var merged = await journal.events(limit: bounded)
        if let provisioner, let history = try? await provisioner.store.recentHistory(limit: bounded) {
            merged += history.map { entry in
                AgentEvent(time: entry.time, source: .provisioner, level: entry.state == "error" ? "error" : "info",
                           contractID: entry.contractID, workload: entry.name.isEmpty ? nil : entry.name,
                           message: Self.describe(entry))
            }
        }
        // Stable: within a second, the journal's order and then the history's.
        let ordered = merged.enumerated().sorted { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }.map(\.element)
        return Array(ordered.suffix(bounded))
    }

    static func describe(_ entry: DeploymentStore.HistoryEntry) -> String {
        let subject = entry.name.isEmpty ? "deployment" : "\(entry.type) \(entry.name)"
        switch entry.state {
        case "init": return "\(subject): \(entry.message.isEmpty ? "accepted" : entry.message) (twin \(entry.twinID))"
        case "ok": return "\(subject): ok" + (entry.message.isEmpty ? "" : " (\(entry.message))")
        case "deleted": return "\(subject): deleted: \(entry.message)"
        default: return "\(subject): \(entry.state)" + (entry.message.isEmpty ? "" : ": \(entry.message)")
        }
    }

    func workloads() async throws -> [WorkloadEntry] {
        guard let provisioner else { return [] }
        let deployments = try await provisioner.store.deployments()
        let twins = Dictionary(deployments.map { ($0.deployment.contractID, ($0.deployment.twinID, $0.removing)) }, uniquingKeysWith: { a, _ in a })
        let usage = Dictionary((await sources.containers?() ?? []).map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        return try await provisioner.store.workloads().map { row in
            let id = WorkloadID(contractID: row.contractID, name: row.workload.name)
            return WorkloadEntry(contractID: row.contractID, twinID: twins[row.contractID]?.0 ?? 0, name: row.workload.name, type: row.workload.type,
                                 version: row.workload.version, state: row.desired ? row.result.state.rawValue : "removing",
                                 message: row.result.message, created: row.result.created, reservation: row.reservation,
                                 removing: twins[row.contractID]?.1 ?? false, usage: usage[id.nodeName])
        }
    }

    /// Where a container workload's stdout.log and stderr.log are: `<state_dir>/containers/<id>/logs`.
    func logDirectory(contractID: UInt64, workload name: String) async throws(NodeAgentError) -> String {
        guard let provisioner else { throw .adminAPI(status: 503, message: "the provisioner is not running yet (\(phase.rawValue))") }
        let rows: [DeploymentStore.WorkloadRow]
        do { rows = try await provisioner.store.workloads(contractID: contractID) } catch { throw .adminAPI(status: 500, message: "\(error)") }
        guard let row = rows.first(where: { $0.workload.name == name }) else {
            throw .adminAPI(status: 404, message: "no workload \(contractID)/\(name) on this node; see `node-agent workloads`")
        }
        let type = WorkloadType(rawValue: row.workload.type)
        guard type == .container || type == .zmachine || type == .zmachineLight else {
            throw .adminAPI(status: 400, message: "workload \(contractID)/\(name) is a \(row.workload.type); only container workloads write logs")
        }
        return config.node.stateDir + "/containers/" + WorkloadID(contractID: contractID, name: name).nodeName + "/logs"
    }

    /// Healthy enough for a watchdog ping: the provisioner's actor and its store answer.
    func healthCheck() async -> Bool {
        guard let provisioner else { return true }
        _ = await provisioner.isDraining
        return (try? await provisioner.store.reserved()) != nil
    }

    var isStopping: Bool { phase == .stopping }

    // MARK: Status

    func status() async -> StatusReport {
        let now = Date()
        var chainStatus = StatusReport.Chain(backend: config.chain.backend.rawValue, name: chainName)
        if let chain {
            if let head = await withDeadline(.seconds(2), { try? await chain.finalizedHead() }) {
                chainStatus.finalizedBlock = head.number
                if head.timestampMilliseconds > 0 {
                    chainStatus.finalizedAgeSeconds = max(0, Int64(now.timeIntervalSince1970) - Int64(head.timestampMilliseconds / 1000))
                }
            }
        }
        if let watcher {
            let processed = await watcher.lastProcessed
            if processed > 0 { chainStatus.processedBlock = processed }
        }
        if let head = chainStatus.finalizedBlock, let processed = chainStatus.processedBlock {
            chainStatus.lagBlocks = head > processed ? head - processed : 0
        }
        let conditions = await sources.conditions?()
        let node = StatusReport.Node(
            nodeID: record?.nodeID, farmID: record?.farmID ?? config.node.farmID, twinID: record?.twinID,
            address: identity.ss58Address, version: NodeAgentCommand.version, pid: getpid(),
            startedAt: Int64(startedAt.timeIntervalSince1970), uptimeSeconds: Int64(now.timeIntervalSince(startedAt)),
            chain: chainStatus, conditions: conditions, draining: draining)

        var capacity = await sources.capacity?() ?? nil
        if capacity == nil, let provisioner, let c = try? await provisioner.capacitySummary() {
            capacity = StatusReport.Capacity(total: c.total, allocatable: c.allocatable, used: c.used, free: c.free)
        }

        var work = StatusReport.Work(deployments: [:], workloads: [:], recentErrors: [])
        if let provisioner, let flags = try? await provisioner.store.deploymentFlags(), let rows = try? await provisioner.store.summary() {
            let byContract = Dictionary(grouping: rows, by: \.contractID)
            for (contract, removing) in flags {
                work.deployments[Self.deploymentState(removing: removing, workloads: byContract[contract] ?? []), default: 0] += 1
            }
            for row in rows { work.workloads[row.desired ? row.state : "removing", default: 0] += 1 }
            if let waiting = try? await provisioner.contractsAwaitingDeployment(deployed: Set(flags.keys)) {
                var awaiting = StatusReport.AwaitingDeployment(contracts: waiting.count)
                if let oldest = waiting.first {
                    awaiting.oldestContractID = oldest.contractID
                    if let head = chainStatus.processedBlock ?? chainStatus.finalizedBlock {
                        let blocks = head > oldest.seenAtBlock ? head - oldest.seenAtBlock : 0
                        awaiting.oldestWaitingBlocks = blocks
                        awaiting.oldestWaitingSeconds = Int64(clamping: blocks) * Int64(config.chain.blockTimeMilliseconds) / 1000
                    }
                }
                work.awaitingDeployment = awaiting
            }
            let failing = rows.filter { $0.desired && $0.state == WorkloadResult.State.error.rawValue }
            if !failing.isEmpty {
                let history = (try? await provisioner.store.recentHistory(limit: 500)) ?? []
                for row in failing {
                    let when = history.last { $0.contractID == row.contractID && $0.name == row.name && $0.state == "error" }?.time
                    work.recentErrors.append(.init(time: when ?? Int64(now.timeIntervalSince1970), subject: "\(row.contractID)/\(row.name)",
                                                   message: row.message))
                }
            }
        }
        let dayAgo = Int64(now.timeIntervalSince1970) - 86_400
        for event in await journal.events(limit: 200) where event.level == "error" && event.time >= dayAgo {
            work.recentErrors.append(.init(time: event.time, subject: event.source.rawValue, message: event.message))
        }
        work.recentErrors = Array(work.recentErrors.sorted { $0.time < $1.time }.suffix(5))
        if let shardServer, let stats = try? shardServer.statistics() {
            work.shardNamespaces = stats.namespaces.count
            work.shardBytesStored = stats.namespaces.reduce(0) { $0 + $1.dataSize }
        }
        work.reports = await sources.reports?()
        if let traffic = await sources.traffic?() {
            work.traffic = StatusReport.Traffic(contracts: traffic.count, publicBytes: traffic.reduce(0) { $0 &+ $1.publicBytes },
                                                privateBytes: traffic.reduce(0) { $0 &+ $1.privateBytes })
        }

        var reasons = [String]()
        switch phase {
        case .running: break
        case .starting: reasons.append("starting up")
        case .registering: reasons.append("registering the node on the chain (farm \(config.node.farmID)); see `journalctl -u node-agent`")
        case .restoring: reasons.append("restoring deployments after start")
        case .degraded: reasons.append(degradedReason ?? "degraded")
        case .stopping: reasons.append("stopping")
        }
        for condition in conditions ?? [] where condition.bad {
            reasons.append("\(condition.type)=\(condition.status): \(condition.message)")
        }
        return StatusReport(phase: phase.rawValue, notReadyReasons: reasons, ready: reasons.isEmpty, node: node, capacity: capacity, work: work)
    }

    /// A deployment's one-word state from its workloads.
    static func deploymentState(removing: Bool, workloads: [DeploymentStore.WorkloadSummary]) -> String {
        if removing { return "removing" }
        let states = Set(workloads.filter(\.desired).map(\.state))
        if states.contains(WorkloadResult.State.error.rawValue) { return "error" }
        if states.contains(WorkloadResult.State.paused.rawValue) { return "paused" }
        if states.contains(WorkloadResult.State.initializing.rawValue) { return "deploying" }
        return "ok"
    }
}

/// Whether the machine itself is going down (poweroff, reboot): systemd says "stopping".
enum SystemState {
    static func isShuttingDown() -> Bool {
        guard FileManager.default.fileExists(atPath: "/run/systemd/system"),
              FileManager.default.isExecutableFile(atPath: "/usr/bin/systemctl") else { return false }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/systemctl")
        process.arguments = ["is-system-running"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "stopping"
    }
}
