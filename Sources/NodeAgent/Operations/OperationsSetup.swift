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

    /// Container usage from the provisioner's runtime state. The capacity reporter's conditions and
    /// outbox (ReporterHandle) are not plugged in yet: status shows them as n/a.
    static func sources(_ config: AgentConfig) -> StatusSources {
        StatusSources(containers: ContainerUsageProbe(stateRoot: config.node.stateDir + "/runtime").usage)
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
