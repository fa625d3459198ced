import Foundation
import GridTypes
import Hummingbird
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import ShardServer

/// What one scrape shows, read from the running agent at scrape time.
struct MetricsSnapshot: Sendable {
    var status: StatusReport
    var workloadsByTypeAndState: [String: [String: Int]]
    var shard: ShardFigures?
    var containers: [ContainerUsage]
    var traffic: [ContractTraffic] = []
}

/// The shard server's counters as metrics show them.
struct ShardFigures: Equatable, Sendable {
    var connectionsCurrent: Int
    var connectionsTotal: UInt64
    var connectionsRefused: UInt64
    var commands: UInt64
    var commandsFailed: UInt64
    var gets: UInt64
    var sets: UInt64
    var bytesWritten: UInt64
    var bytesRead: UInt64
    var corruptFound: UInt64
    var namespaces: Int
    var storedBytes: UInt64
    var diskBytes: UInt64
    var valueCacheBytes: Int = 0
    var valueCacheHits: UInt64 = 0
    var valueCacheMisses: UInt64 = 0
}

extension ShardFigures {
    init(_ s: ShardServerStatistics) {
        self.init(connectionsCurrent: s.connectionsCurrent, connectionsTotal: s.connectionsTotal, connectionsRefused: s.connectionsRefused,
                  commands: s.commands, commandsFailed: s.commandsFailed, gets: s.gets, sets: s.sets, bytesWritten: s.bytesWritten,
                  bytesRead: s.bytesRead, corruptFound: s.corruptFound, namespaces: s.namespaces.count,
                  storedBytes: s.namespaces.reduce(0) { $0 + $1.dataSize }, diskBytes: s.namespaces.reduce(0) { $0 + $1.diskSize },
                  valueCacheBytes: s.valueCacheBytes, valueCacheHits: s.valueCacheHits, valueCacheMisses: s.valueCacheMisses)
    }
}

extension AgentRuntime {
    func metricsSnapshot() async -> MetricsSnapshot {
        let status = await status()
        var byType = [String: [String: Int]]()
        for row in (try? await provisioner?.store.summary()) ?? [] {
            byType[row.type, default: [:]][row.desired ? row.state : "removing", default: 0] += 1
        }
        return MetricsSnapshot(status: status, workloadsByTypeAndState: byType, shard: (try? shardServer?.statistics()).map(ShardFigures.init),
                               containers: await sources.containers?() ?? [], traffic: await sources.traffic?() ?? [])
    }
}

/// The Prometheus text exposition of a snapshot (swift-prometheus). A new registry per scrape: every
/// value is read fresh, and a container or state that went away leaves no stale series behind.
enum MetricsExporter {
    static let namespace = "node_agent"
    static let deploymentStates = ["ok", "deploying", "paused", "error", "removing"]

    static func exposition(_ snapshot: MetricsSnapshot) -> [UInt8] {
        let registry = PrometheusCollectorRegistry()
        func gauge(_ subsystem: String?, _ name: String, unit: String = "", _ help: String, _ labels: [(String, String)] = [], _ value: Double) {
            registry.makeGauge(descriptor: MetricNameDescriptor(namespace: namespace, subsystem: subsystem, metricName: name, unitName: unit,
                                                                 helpText: help), labels: labels).set(value)
        }
        func counter(_ subsystem: String?, _ name: String, unit: String = "total", _ help: String, _ labels: [(String, String)] = [], _ value: Double) {
            registry.makeCounter(descriptor: MetricNameDescriptor(namespace: namespace, subsystem: subsystem, metricName: name, unitName: unit,
                                                                   helpText: help), labels: labels).increment(by: max(0, value))
        }
        let status = snapshot.status
        let node = status.node
        gauge(nil, "build", unit: "info", "The agent's version and node identity (always 1).",
              [("version", node.version), ("node_id", node.nodeID.map { "\($0)" } ?? ""), ("farm_id", "\(node.farmID)")], 1)
        gauge(nil, "ready", "1 when the node is Ready (started, restored, no bad condition).", [], status.ready ? 1 : 0)
        gauge(nil, "draining", "1 when the node takes no new deployments (node-agent drain).", [], node.draining ? 1 : 0)
        gauge(nil, "uptime", unit: "seconds", "Seconds since the agent started.", [], Double(node.uptimeSeconds))

        if let capacity = status.capacity {
            let kinds: [(String, Resources)] = [("total", capacity.total), ("allocatable", capacity.allocatable), ("used", capacity.used),
                                                ("free", capacity.free)]
            for (kind, r) in kinds {
                gauge("capacity", "cpus", "CPUs: total, allocatable (after reserve and overcommit), reserved by deployments, free.",
                      [("kind", kind)], Double(r.cru))
                gauge("capacity", "memory", unit: "bytes", "Memory: total, allocatable, reserved by deployments, free.", [("kind", kind)], Double(r.mru))
                gauge("capacity", "disk", unit: "bytes", "Disk by type (ssd, hdd): total, allocatable, reserved by deployments, free.",
                      [("disk", "ssd"), ("kind", kind)], Double(r.sru))
                gauge("capacity", "disk", unit: "bytes", "Disk by type (ssd, hdd): total, allocatable, reserved by deployments, free.",
                      [("disk", "hdd"), ("kind", kind)], Double(r.hru))
            }
        }
        for condition in node.conditions ?? [] {
            gauge(nil, "condition", "Node conditions: 1 for the condition's current status.",
                  [("condition", condition.type), ("status", condition.status)], 1)
        }

        let chain = node.chain
        if let finalized = chain.finalizedBlock {
            gauge("chain", "finalized_block", "Number of the newest finalized block.", [], Double(finalized))
        }
        if let processed = chain.processedBlock {
            gauge("chain", "processed_block", "Newest block the contract watcher processed.", [], Double(processed))
        }
        if let lag = chain.lagBlocks {
            gauge("chain", "lag", unit: "blocks", "Finalized blocks the contract watcher has not processed yet.", [], Double(lag))
        }
        if let age = chain.finalizedAgeSeconds {
            gauge("chain", "finalized_age", unit: "seconds", "Age of the newest finalized block.", [], Double(age))
        }

        for state in Set(deploymentStates).union(status.work.deployments.keys).sorted() {
            gauge(nil, "deployments", "Deployments on the node by state.", [("state", state)], Double(status.work.deployments[state] ?? 0))
        }
        if let awaiting = status.work.awaitingDeployment {
            gauge("contracts", "awaiting_deployment", "Active contracts for this node whose deployment has not arrived.", [], Double(awaiting.contracts))
            gauge("contracts", "awaiting_deployment_oldest", unit: "seconds", "How long the oldest contract without a deployment has waited (0: none).",
                  [], Double(awaiting.oldestWaitingSeconds ?? 0))
        }
        for (type, states) in snapshot.workloadsByTypeAndState.sorted(by: { $0.key < $1.key }) {
            for (state, count) in states.sorted(by: { $0.key < $1.key }) {
                gauge(nil, "workloads", "Workloads on the node by type and result state.", [("type", type), ("state", state)], Double(count))
            }
        }
        if let reports = status.work.reports {
            gauge("reports", "pending", "Reports in the outbox not yet included by the chain.", [], Double(reports.pending))
            if let last = reports.lastDeliveredAt {
                gauge("reports", "last_delivered", unit: "timestamp_seconds", "When the chain last included a report.", [], Double(last))
            }
        }

        for traffic in snapshot.traffic.sorted(by: { $0.contractID < $1.contractID }) {
            let help = "Bytes a contract's containers moved: public in and out (billed as NRU), private between its own containers."
            for (kind, value) in [("public_in", traffic.publicIn), ("public_out", traffic.publicOut), ("private", traffic.privateBytes)] {
                counter("contract", "traffic", unit: "bytes_total", help, [("contract", "\(traffic.contractID)"), ("kind", kind)], Double(value))
            }
        }

        if let shard = snapshot.shard {
            gauge("shard", "connections", "Open client connections to the shard server.", [], Double(shard.connectionsCurrent))
            counter("shard", "connections", "Client connections accepted.", [], Double(shard.connectionsTotal))
            counter("shard", "connections_refused", "Client connections refused (max_clients).", [], Double(shard.connectionsRefused))
            counter("shard", "commands", "Commands executed.", [], Double(shard.commands))
            counter("shard", "commands_failed", "Commands answered with an error.", [], Double(shard.commandsFailed))
            counter("shard", "gets", "GET commands.", [], Double(shard.gets))
            counter("shard", "sets", "SET commands.", [], Double(shard.sets))
            counter("shard", "written_bytes", "Payload bytes stored by SET.", [], Double(shard.bytesWritten))
            counter("shard", "read_bytes", "Payload bytes served by GET.", [], Double(shard.bytesRead))
            counter("shard", "corrupt_entries_found", "Corrupt entries found by reads, checks and the scrub.", [], Double(shard.corruptFound))
            gauge("shard", "namespaces", "Namespaces on the shard server.", [], Double(shard.namespaces))
            gauge("shard", "stored", unit: "bytes", "Live payload bytes in all namespaces.", [], Double(shard.storedBytes))
            gauge("shard", "disk", unit: "bytes", "Bytes of segment files, live or not.", [], Double(shard.diskBytes))
            gauge("shard", "value_cache", unit: "bytes", "Bytes of verified small GET replies held in memory.", [], Double(shard.valueCacheBytes))
            counter("shard", "value_cache_hits", "GETs answered from the value cache.", [], Double(shard.valueCacheHits))
            counter("shard", "value_cache_misses", "GETs of cacheable size read from disk.", [], Double(shard.valueCacheMisses))
        }

        for container in snapshot.containers.sorted(by: { $0.id < $1.id }) {
            let labels = [("container", container.id)]
            if let cpu = container.cpuSeconds {
                counter("container", "cpu", unit: "seconds_total", "CPU time used by the container's cgroup.", labels, cpu)
            }
            if let memory = container.memoryBytes {
                gauge("container", "memory", unit: "bytes", "Memory used by the container's cgroup.", labels, Double(memory))
            }
            if let limit = container.memoryLimitBytes {
                gauge("container", "memory_limit", unit: "bytes", "Memory limit of the container's cgroup.", labels, Double(limit))
            }
            if let pids = container.pids {
                gauge("container", "pids", "Tasks in the container's cgroup.", labels, Double(pids))
            }
        }
        return registry.emitToBuffer()
    }
}

/// `GET /metrics` on `admin.metrics_listen` (loopback by default). A port that cannot be bound is
/// logged and retried, never fatal.
struct MetricsService: Service {
    let runtime: AgentRuntime
    let host: String
    let port: Int
    let logger: Logger
    var onListening: @Sendable (Int) async -> Void = { _ in }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        let runtime = self.runtime
        router.get("/metrics") { _, _ in
            let body = MetricsExporter.exposition(await runtime.metricsSnapshot())
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
        }
        return router
    }

    func run() async throws {
        var delay = Duration.seconds(1)
        var lastError = ""
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let logger = self.logger, host = self.host, port = self.port, onListening = self.onListening
                let app = Application(router: router(), configuration: .init(address: .hostname(host, port: port), serverName: "node-agent-metrics"),
                                      onServerRunning: { channel in
                                          let bound = channel.localAddress?.port ?? port
                                          logger.info("metrics listening", metadata: ["address": "\(host):\(bound)", "path": "/metrics"])
                                          await onListening(bound)
                                      }, logger: Logger(label: "node-agent.metrics.http"))
                try await app.run()
                return
            } catch {
                let message = "\(error)"
                if message != lastError {
                    logger.error("the metrics endpoint cannot serve; retrying", metadata: ["address": "\(host):\(port)", "error": .string(message)])
                    lastError = message
                }
                try? await gracefulShutdownOrSleep(delay)
                delay = min(delay * 2, .seconds(30))
            }
        }
    }
}
