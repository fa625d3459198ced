import Foundation
import GridTypes

/// What other parts of the agent contribute to status, metrics and shutdown, as closures, so they
/// plug in without this code knowing their types: the capacity reporter (node conditions, report
/// outbox, capacity arithmetic), the container runtime (per-container usage). A nil source shows
/// "n/a" in status and leaves its metrics out.
struct StatusSources: Sendable {
    /// Node conditions (Ready, MemoryPressure, DiskPressure, ...). A condition marked `bad` makes the
    /// node not Ready.
    var conditions: (@Sendable () async -> [StatusReport.Condition])?
    /// The report outbox: last delivered, pending.
    var reports: (@Sendable () async -> StatusReport.Reports)?
    /// Capacity as the reporter computes it; nil falls back to the provisioner's statistics.
    var capacity: (@Sendable () async -> StatusReport.Capacity?)?
    /// Per-container cgroup usage.
    var containers: (@Sendable () async -> [ContainerUsage])?
    /// Bytes each contract's containers moved (kernel counters of container networking).
    var traffic: (@Sendable () async -> [ContractTraffic])?
    /// Called once on graceful shutdown, after intake stopped and in-flight work finished: flush the
    /// outbox, and send a final uptime report when `systemStopping` (the machine is going down).
    var onShutdown: (@Sendable (_ systemStopping: Bool) async -> Void)?

    init(conditions: (@Sendable () async -> [StatusReport.Condition])? = nil,
         reports: (@Sendable () async -> StatusReport.Reports)? = nil,
         capacity: (@Sendable () async -> StatusReport.Capacity?)? = nil,
         containers: (@Sendable () async -> [ContainerUsage])? = nil,
         onShutdown: (@Sendable (_ systemStopping: Bool) async -> Void)? = nil) {
        self.conditions = conditions
        self.reports = reports
        self.capacity = capacity
        self.containers = containers
        self.onShutdown = onShutdown
    }
}
