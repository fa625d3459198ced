import Logging
import ServiceLifecycle

/// The agent's side of systemd's Type=notify contract while it runs: STATUS= refreshed every
/// `statusInterval`, and WATCHDOG=1 only while the main loop is healthy (the provisioner's actor
/// and its store answer within half the watchdog interval), so a hung agent is restarted.
/// READY=1 and STOPPING=1 come from `AgentRuntime` at the moments they describe. It is the first
/// service of the group, so it is told to stop last and keeps pinging while the others finish.
struct SystemdService: Service {
    let runtime: AgentRuntime
    let notifier: SystemdNotifier?
    var statusInterval: Duration = .seconds(30)
    let logger: Logger

    func run() async throws {
        guard let notifier else {
            // Not under systemd: nothing to tell; stay until shutdown (a service returning early would stop the group).
            try? await gracefulShutdown()
            return
        }
        let watchdog = notifier.watchdogInterval
        // Three pings per interval: one may be late without a restart.
        let tick = min(statusInterval, watchdog.map { $0 / 3 } ?? statusInterval)
        var sinceStatus = Duration.zero
        var unhealthySince: ContinuousClock.Instant?
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if let watchdog {
                let runtime = self.runtime
                let healthy = await withDeadline(watchdog / 2) { await runtime.healthCheck() } ?? false
                if healthy {
                    notifier.watchdog()
                    unhealthySince = nil
                } else if unhealthySince == nil {
                    unhealthySince = .now
                    logger.critical("the agent's main loop does not answer; withholding watchdog pings so systemd restarts it")
                }
            }
            sinceStatus += tick
            if sinceStatus >= statusInterval {
                sinceStatus = .zero
                if await !runtime.isStopping { notifier.status(await runtime.statusLine()) }
            }
            try? await gracefulShutdownOrSleep(tick)
        }
    }
}
