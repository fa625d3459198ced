import CapacityReporter
import ChainClient
import GridTypes
import Logging
import Provisioner
import ServiceLifecycle

/// The agent's main service: the chain (and, on the embedded ledger, block production), node
/// registration, and the contract watcher feeding the provisioner's desired state. Runs until a
/// graceful shutdown cancels it.
struct AgentDaemon: Service {
    let config: AgentConfig
    let identity: NodeIdentity
    let logger: Logger

    static func openLedger(_ config: AgentConfig) throws -> LocalLedger {
        guard config.chain.backend == .local else {
            throw NodeAgentError.backendNotAvailable(
                "chain.backend = \"tfchain\" is not available in this build yet (it lands with the TFChain backend); use backend = \"local\"")
        }
        return try LocalLedger(path: config.chain.ledgerPath, parameters: LedgerParameters(
            blockTimeMilliseconds: config.chain.blockTimeMilliseconds,
            billingPeriodBlocks: UInt64(config.chain.billingPeriodBlocks),
            gracePeriodBlocks: UInt64(config.chain.gracePeriodBlocks)))
    }

    func run() async throws {
        let ledger = try Self.openLedger(config)
        let book = try ContractBook(path: config.node.stateDir + "/contracts.sqlite")
        logger.info("node-agent started", metadata: [
            "version": .string(NodeAgentCommand.version),
            "node_key": .string(identity.publicKey.hex),
            "address": .string(identity.ss58Address),
            "state_dir": .string(config.node.stateDir),
            "chain": .string("local \(ledger.path)"),
        ])
        let registration = NodeRegistration(
            chain: ledger, chainName: "local:" + Hex.encode(ledger.genesisHash), identity: identity,
            farmID: config.node.farmID, configuredNodeID: config.node.nodeID,
            capacity: HostCapacity.measure(dataPaths: [config.node.stateDir] + config.shardServer.dataDirs),
            stateDir: config.node.stateDir, logger: logger)
        let producer = config.chain.produceBlocks ? BlockProducer(ledger: ledger, name: "node-agent \(identity.ss58Address.prefix(8))") : nil
        let logger = self.logger

        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                if let producer {
                    group.addTask { await producer.run() }
                }
                group.addTask {
                    guard let record = try? await registration.registerRetrying() else { return }
                    let watcher = ContractWatcher(chain: ledger, sink: book, nodeID: record.nodeID,
                                                  logger: Logger(label: "chain.watcher"))
                    logger.info("watching contracts", metadata: ["node_id": "\(record.nodeID)"])
                    await watcher.run()
                }
                await group.waitForAll()
            }
        }
        logger.info("node-agent stopping")
    }
}
