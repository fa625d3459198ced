import ServiceLifecycle

/// The agent's graceful shutdown (SIGTERM, `systemctl stop`), in order:
/// 1. intake stops: systemd hears STOPPING=1, new deployments are refused (503, draining), and the
///    twin API (a nested service group) stops accepting connections and finishes its requests;
/// 2. in-flight reconciliations finish (bounded by `limit`); the report outbox is flushed;
/// 3. the rest (chain watcher, provisioner loop, block producer) is cancelled.
/// Workloads are not stopped: they keep running and are re-adopted at the next start.
enum GracefulShutdown {
    static func drainThenCancel(runtime: AgentRuntime?, limit: Duration, _ body: @escaping @Sendable () async -> Void) async {
        // Task.init inherits task locals: the body still sees the service group's graceful shutdown.
        let work = Task { await body() }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await work.value
            } onGracefulShutdown: {
                Task {
                    await runtime?.beginShutdown(reason: "graceful shutdown requested")
                    await runtime?.finishInFlight(within: limit)
                    work.cancel()
                }
            }
        } onCancel: {
            work.cancel()
        }
    }
}
