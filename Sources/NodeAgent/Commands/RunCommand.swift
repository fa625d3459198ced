import ArgumentParser
import Foundation
import GridTypes
import Logging
import ServiceLifecycle
import ShardServer

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the agent in the foreground (what the systemd unit starts).",
        discussion: "Stops gracefully on SIGTERM or SIGINT."
    )

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let (config, _) = try global.loadConfig(required: true)
        AgentLogHandler.bootstrap(format: config.log.format, level: config.log.level.swiftLogLevel)
        let logger = Logger(label: "node-agent")

        let identity = try NodeIdentity.load(from: config.node.stateDir + "/" + NodeIdentity.fileName)
        let lock = try StateDirectoryLock(stateDir: config.node.stateDir)
        var shardServer: ShardServer?
        var services: [any Service] = []
        if config.shardServer.enabled {
            // After the lock: two agents on one state directory never race to create the password.
            let (password, created) = try ShardServerSetup.loadOrCreatePassword(stateDir: config.node.stateDir)
            if created {
                // Where it is, never what it is.
                logger.notice("generated the shard server's admin password", metadata: [
                    "file": .string(ShardServerSetup.passwordPath(stateDir: config.node.stateDir))])
            }
            let serverConfig = try ShardServerSetup.serverConfig(from: config, adminPassword: password)
            let server = ShardServer(logger: Logger(label: "shard-server"))
            shardServer = server
            services.append(ShardServerService(config: serverConfig, logger: Logger(label: "shard-server"), server: server))
        }
        // Farmer operations first and the daemon last: the group stops them in reverse, so intake
        // stops and in-flight work finishes before the shard server flushes and the admin socket closes.
        let runtime = AgentRuntime(config: config, identity: identity, shardServer: shardServer,
                                   sources: OperationsSetup.sources(config), logger: logger)
        services.insert(contentsOf: try OperationsSetup.services(runtime: runtime, config: config, logger: logger), at: 0)
        services.append(AgentDaemon(config: config, identity: identity, logger: logger, shardServer: shardServer, runtime: runtime))
        var groupConfiguration = ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        )
        groupConfiguration.maximumGracefulShutdownDuration = OperationsSetup.gracefulShutdownLimit
        groupConfiguration.maximumCancellationDuration = OperationsSetup.cancellationLimit
        let group = ServiceGroup(configuration: groupConfiguration)
        try await group.run()
        withExtendedLifetime(lock) {}
        logger.info("node-agent stopped")
    }
}
