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
    /// Farmer operations (admin socket, metrics, systemd): told of each step of start-up and shutdown.
    var runtime: AgentRuntime? = nil

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
        await runtime?.started()
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
        await runtime?.chainOpened(chain, name: chainName)
        let book = try ContractBook(path: config.node.stateDir + "/contracts.sqlite")
        logger.info("node-agent started", metadata: [
            "version": .string(NodeAgentCommand.version),
            "node_key": .string(identity.publicKey.hex),
            "address": .string(identity.ss58Address),
            "state_dir": .string(config.node.stateDir),
            "chain": .string(chainName),
        ])
        let measurement = ReporterSetup.scanner(config).scan()
        let capacity = NodeCapacity(measurement: measurement, policy: ReporterSetup.settings(config).policy, used: .zero)
        let registration = NodeRegistration(
            chain: chain, chainName: chainName, identity: identity,
            farmID: config.node.farmID, configuredNodeID: config.node.nodeID,
            capacity: measurement.total,
            stateDir: config.node.stateDir, logger: logger)
        let logger = self.logger
        let producerToRun = producer
        let runtime = self.runtime

        await GracefulShutdown.drainThenCancel(runtime: runtime, limit: OperationsSetup.inFlightLimit) {
            await withTaskGroup(of: Void.self) { group in
                if let producerToRun {
                    group.addTask { await producerToRun.run() }
                }
                group.addTask {
                    guard let record = try? await registration.registerRetrying() else { return }
                    await runtime?.registered(record)
                    let watcher = ContractWatcher(chain: chain, sink: await runtime?.contractSink(book) ?? book, nodeID: record.nodeID,
                                                  logger: Logger(label: "chain.watcher"))
                    await runtime?.watching(watcher)
                    logger.info("watching contracts", metadata: ["node_id": "\(record.nodeID)"])
                    let provisioning: ProvisionerSetup.Running
                    await runtime?.restoring()
                    do {
                        provisioning = try await ProvisionerSetup.start(config: config, identity: identity, chain: chain, book: book,
                                                                        nodeID: record.nodeID, capacity: capacity,
                                                                        shardServer: shardServer, logger: logger)
                    } catch {
                        logger.critical("the provisioner cannot start", metadata: ["error": "\(error)"])
                        await runtime?.provisionerFailed(error)
                        async let reporting: Void = ReporterSetup.run(config: config, chain: chain, chainName: chainName, nodeID: record.nodeID,
                                                                      identity: identity, reservations: EmptyReservations(), logger: logger) { reporter in
                            await runtime?.updateSources { OperationsSetup.plugIn(reporter: reporter, into: &$0) }
                        }
                        await watcher.run()
                        await reporting
                        return
                    }
                    let provisioner = provisioning.provisioner
                    await runtime?.provisionerStarted(provisioner)
                    if let network = provisioning.network {
                        await runtime?.updateSources { $0.traffic = { await network.contractTraffic(maxAge: .seconds(2)) } }
                    }
                    await withTaskGroup(of: Void.self) { inner in
                        inner.addTask { await watcher.run() }
                        inner.addTask { await provisioner.run() }
                        inner.addTask {
                            await runtime?.apiStarted()
                            await provisioning.serveAPI()
                            await runtime?.apiStopped()
                        }
                        inner.addTask {
                            // Used capacity has one source: the provisioner's admitted reservations.
                            await ReporterSetup.run(config: config, chain: chain, chainName: chainName, nodeID: record.nodeID,
                                                    identity: identity, reservations: provisioner, network: provisioning.network,
                                                    logger: logger) { reporter in
                                await provisioner.onReservationsChanged { await reporter.reservationsChanged() }
                                await provisioner.setAdmissionBlocker(OperationsSetup.admissionBlocker(reporter))
                                await runtime?.updateSources { OperationsSetup.plugIn(reporter: reporter, into: &$0) }
                            }
                        }
                        await inner.waitForAll()
                    }
                    if let network = provisioning.network {
                        if await network.releaseIfUnused() {
                            logger.info("no container networks: removed the agent's nft tables", metadata: ["table": .string(config.network.table)])
                        } else {
                            // The containers run on; if the machine is going down, their traffic
                            // since the last report is on record for the next start.
                            await network.saveCountersForStop()
                        }
                    }
                }
                await group.waitForAll()
            }
        }
        if let client = chain as? TFChainClient { await client.stop() }
        await runtime?.stopped()
        logger.info("node-agent stopping")
    }
}
