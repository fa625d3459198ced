import CapacityReporter
import ChainClient
import GridTypes
import Logging
import Provisioner
import ServiceLifecycle
import ShardServer

/// The agent's main service: the chain (and, on the embedded ledger, block production), node
/// registration, and the contract watcher feeding the provisioner's desired state. Runs until a
/// graceful shutdown cancels it.
struct AgentDaemon: Service {
    let config: AgentConfig
    let identity: NodeIdentity
    let logger: Logger
    var shardServer: ShardServer? = nil

    static func openLedger(_ config: AgentConfig) throws -> LocalLedger {
        guard config.chain.backend == .local else {
            throw NodeAgentError.backendNotAvailable("the embedded ledger is used only with chain.backend = \"local\"")
        }
        return try LocalLedger(path: config.chain.ledgerPath, parameters: LedgerParameters(
            blockTimeMilliseconds: config.chain.blockTimeMilliseconds,
            billingPeriodBlocks: UInt64(config.chain.billingPeriodBlocks),
            gracePeriodBlocks: UInt64(config.chain.gracePeriodBlocks)))
    }

    /// TFChain over JSON-RPC: connects in the background and loads the runtime metadata.
    static func openTFChain(_ config: AgentConfig) async throws -> TFChainClient {
        let client = TFChainClient(configuration: RPCConfiguration(
            urls: config.chain.urls, stallTimeout: .seconds(config.chain.stallTimeoutSeconds)),
            logger: Logger(label: "chain.tfchain"))
        try await client.start()
        return client
    }

    func run() async throws {
        let chain: any GridChain
        let chainName: String
        var producer: BlockProducer?
        switch config.chain.backend {
        case .local:
            let ledger = try Self.openLedger(config)
            chain = ledger
            chainName = "local:" + Hex.encode(ledger.genesisHash)
            if config.chain.produceBlocks { producer = BlockProducer(ledger: ledger, name: "node-agent \(identity.ss58Address.prefix(8))") }
        case .tfchain:
            let client = try await Self.openTFChain(config)
            chain = client
            chainName = "tfchain:" + Hex.encode(try await client.genesisHash())
        }
        let book = try ContractBook(path: config.node.stateDir + "/contracts.sqlite")
        logger.info("node-agent started", metadata: [
            "version": .string(NodeAgentCommand.version),
            "node_key": .string(identity.publicKey.hex),
            "address": .string(identity.ss58Address),
            "state_dir": .string(config.node.stateDir),
            "chain": .string(chainName),
        ])
        let registration = NodeRegistration(
            chain: chain, chainName: chainName, identity: identity,
            farmID: config.node.farmID, configuredNodeID: config.node.nodeID,
            capacity: ReporterSetup.scanner(config).scan().total,
            stateDir: config.node.stateDir, logger: logger)
        let logger = self.logger
        let producerToRun = producer

        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                if let producerToRun {
                    group.addTask { await producerToRun.run() }
                }
                group.addTask {
                    guard let record = try? await registration.registerRetrying() else { return }
                    let watcher = ContractWatcher(chain: chain, sink: book, nodeID: record.nodeID,
                                                  logger: Logger(label: "chain.watcher"))
                    logger.info("watching contracts", metadata: ["node_id": "\(record.nodeID)"])
                    let provisioning: ProvisionerSetup.Running
                    do {
                        provisioning = try await ProvisionerSetup.start(config: config, identity: identity, chain: chain, book: book,
                                                                        nodeID: record.nodeID, shardServer: shardServer, logger: logger)
                    } catch {
                        logger.critical("the provisioner cannot start", metadata: ["error": "\(error)"])
                        // Uptime is still earned: the reporter runs with nothing reserved.
                        async let reporting: Void = ReporterSetup.run(config: config, chain: chain, chainName: chainName, nodeID: record.nodeID,
                                                                      identity: identity, provisioner: nil, logger: logger)
                        await watcher.run()
                        await reporting
                        return
                    }
                    await withTaskGroup(of: Void.self) { inner in
                        inner.addTask { await watcher.run() }
                        inner.addTask { await provisioning.provisioner.run() }
                        inner.addTask { await provisioning.serveAPI() }
                        inner.addTask {
                            await ReporterSetup.run(config: config, chain: chain, chainName: chainName, nodeID: record.nodeID,
                                                    identity: identity, provisioner: provisioning.provisioner, logger: logger)
                        }
                        await inner.waitForAll()
                    }
                }
                await group.waitForAll()
            }
        }
        if let client = chain as? TFChainClient { await client.stop() }
        logger.info("node-agent stopping")
    }
}
