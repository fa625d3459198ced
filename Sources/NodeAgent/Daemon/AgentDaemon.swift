import GridTypes
import Logging
import ServiceLifecycle

/// The agent's main service: starts the node's subsystems and keeps them running until a
/// graceful shutdown. Subsystems join here as their modules land.
struct AgentDaemon: Service {
    let config: AgentConfig
    let identity: NodeIdentity
    let logger: Logger

    func run() async throws {
        logger.info("node-agent started", metadata: [
            "version": .string(NodeAgentCommand.version),
            "node_key": .string(identity.publicKey.hex),
            "address": .string(identity.ss58Address),
            "state_dir": .string(config.node.stateDir),
            "chain": .string(config.chain.backend.rawValue),
        ])
        // Nothing else runs yet; wait for SIGTERM/SIGINT, which ServiceGroup turns into this returning.
        try? await gracefulShutdown()
        logger.info("node-agent stopping")
    }
}
