import CapacityReporter
import ContainerRuntime
import Foundation
import GridTypes
import Logging
import Provisioner
import ServiceLifecycle
import ShardServer

/// What `node-agent run` adds for the farmer: the shared runtime state, the admin socket, the
/// metrics endpoint and the systemd notifications, as services of its group.
enum OperationsSetup {
    /// How long a graceful shutdown may take before the group cancels what is left, and how long
    /// the daemon waits for in-flight work within it: both inside the unit's TimeoutStopSec=30.
    static let gracefulShutdownLimit = Duration.seconds(25)
    static let inFlightLimit = Duration.seconds(15)
    static let cancellationLimit = Duration.seconds(3)

    /// Container usage from the provisioner's runtime state; the reporter's parts are plugged in
    /// when it starts (`plugIn(reporter:)`), until then status shows them as n/a.
    static func sources(_ config: AgentConfig) -> StatusSources {
        StatusSources(containers: ContainerUsageProbe(stateRoot: config.node.stateDir + "/runtime").usage)
    }

    /// The capacity reporter's conditions and outbox for status and metrics, and its last work on a
    /// graceful stop: an uptime report when the machine is going down, then the outbox flushed as
    /// far as the stop deadline allows (what is left is sent at the next start).
    static func plugIn(reporter: Reporter, into sources: inout StatusSources) {
        sources.conditions = {
            await reporter.conditions.all().map { condition in
                StatusReport.Condition(type: condition.type.rawValue, status: condition.status.rawValue, reason: condition.reason,
                                       message: condition.message, bad: condition.isBad)
            }
        }
        sources.reports = {
            guard let status = await reporter.outboxStatus() else { return StatusReport.Reports(pending: 0) }
            return StatusReport.Reports(lastDeliveredAt: status.lastDelivered.map { Int64($0.deliveredAt) },
                                        lastDeliveredKind: status.lastDelivered?.kind, pending: status.pendingCount,
                                        oldestPendingAt: status.oldestPendingSince.map { Int64($0) })
        }
        sources.onShutdown = { systemStopping in
            if systemStopping { await reporter.reportUptime() }
            _ = await reporter.drain(deadline: .now + .seconds(5))
        }
    }

    /// Admission asks the reporter's conditions: a bad pressure or chain condition refuses new deployments.
    static func admissionBlocker(_ reporter: Reporter) -> @Sendable () async -> String? {
        {
            let blockers = await reporter.conditions.admissionBlockers()
            guard !blockers.isEmpty else { return nil }
            return blockers.map { "\($0.type.rawValue)=\($0.status.rawValue): \($0.message)" }.joined(separator: "; ")
        }
    }

    /// The services to run before the daemon, in the order the group starts them (it stops them in
    /// reverse: the daemon first, systemd's notifier last).
    static func services(runtime: AgentRuntime, config: AgentConfig, logger: Logger) throws(NodeAgentError) -> [any Service] {
        guard let (host, port) = ShardServerCommand.parseListen(config.admin.metricsListen) else {
            throw .config(file: "(config)", key: "admin.metrics_listen", message: "value \"\(config.admin.metricsListen)\" is not HOST:PORT")
        }
        return [
            SystemdService(runtime: runtime, notifier: runtime.notifier, logger: logger),
            AdminService(runtime: runtime, socketPath: config.admin.socket, logger: Logger(label: "node-agent.admin")),
            MetricsService(runtime: runtime, host: host, port: port, logger: Logger(label: "node-agent.metrics")),
        ]
    }
}

/// Per-container usage from the runtime's records and cgroups, for the provisioner's containers
/// (`wl-<contract>-<name>`) only.
struct ContainerUsageProbe: Sendable {
    let stateRoot: String

    @Sendable func usage() async -> [ContainerUsage] {
        let runtime = OCIRuntime(stateRoot: stateRoot)
        return runtime.list().filter { WorkloadID(nodeName: $0) != nil }.compactMap { id in
            guard let stats = try? runtime.stats(id: id) else { return nil }
            return ContainerUsage(id: id, cpuSeconds: stats.cpuUsageMicroseconds.map { Double($0) / 1_000_000 },
                                  memoryBytes: stats.memoryCurrent, memoryLimitBytes: stats.memoryLimit, pids: stats.pidsCurrent)
        }
    }
}
