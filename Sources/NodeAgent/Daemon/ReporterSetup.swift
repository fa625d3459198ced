import CapacityReporter
import ChainClient
import Foundation
import GridTypes
import Logging

/// Nothing reserved: used only when the provisioner cannot start, so uptime is still reported. Not
/// the ContractBook: a contract is not a reservation until its workloads are admitted.
struct EmptyReservations: ReservationSource {
    func reservedCapacity() async -> Resources { .zero }
    func contractReservations() async -> [ContractResources] { [] }
}

/// What `node-agent run` needs to run the capacity reporter: its settings from config.toml, the
/// report database in the state directory, and the service itself.
enum ReporterSetup {
    /// The directories whose filesystems make the node's SRU/HRU: the state directory and the
    /// shard server's data directories, each once.
    static func dataDirectories(_ config: AgentConfig) -> [String] {
        var seen = Set<String>()
        return ([config.node.stateDir] + config.shardServer.dataDirs).filter { seen.insert($0).inserted }
    }

    static func scanner(_ config: AgentConfig) -> CapacityScanner {
        CapacityScanner(dataDirectories: dataDirectories(config))
    }

    static func settings(_ config: AgentConfig) -> ReporterSettings {
        var settings = ReporterSettings()
        let reporter = config.reporter
        settings.uptimeInterval = .seconds(reporter.uptimeIntervalSeconds)
        settings.capacityScanInterval = .seconds(reporter.capacityScanIntervalSeconds)
        settings.networkReportInterval = .seconds(reporter.networkReportIntervalSeconds)
        settings.maxOpenReports = reporter.maxPendingReports
        settings.policy = CapacityPolicy(diskReserve: UInt64(reporter.reserveDiskGiB) << 30, cpuOvercommit: config.provisioner.overcommitRatio)
        settings.updatesNodeResources = config.chain.backend == .local
        if config.chain.backend == .local {
            // A report of unknown outcome settles within a few of the ledger's blocks.
            settings.settlePoll = .milliseconds(max(20, min(config.chain.blockTimeMilliseconds, 2000)))
        }
        return settings
    }

    static func storePath(_ config: AgentConfig) -> String {
        config.node.stateDir + "/" + ReportStore.fileName
    }

    /// The reporter for the registered node, on `<state_dir>/reports.sqlite`.
    /// `chainName` names the chain (as in node.json): reports written for another chain or node are never sent.
    static func makeReporter(config: AgentConfig, chain: any GridChain, chainName: String, nodeID: UInt32, identity: NodeIdentity,
                             reservations: any ReservationSource, network: (any NetworkCounterSource)? = nil) throws(CapacityReporterError) -> Reporter {
        let store = try ReportStore(path: storePath(config), signer: identity.keyPair)
        return Reporter(chain: chain, nodeID: nodeID, signer: identity.keyPair, store: store, reservations: reservations,
                        network: network, scanner: scanner(config), settings: settings(config), scope: "node \(nodeID) on \(chainName)",
                        logger: Logger(label: "reporter"))
    }

    /// Runs the reporter for the registered node until cancelled. A report database that cannot be
    /// opened is retried (with the error logged) rather than stopping the node's workloads.
    static func run(config: AgentConfig, chain: any GridChain, chainName: String, nodeID: UInt32, identity: NodeIdentity,
                    reservations: any ReservationSource, network: (any NetworkCounterSource)? = nil, logger: Logger,
                    onStart: @Sendable (Reporter) async -> Void = { _ in }) async {
        var delay = Duration.seconds(1)
        while !Task.isCancelled {
            do {
                let reporter = try makeReporter(config: config, chain: chain, chainName: chainName, nodeID: nodeID,
                                                identity: identity, reservations: reservations, network: network)
                logger.info("reporting capacity and uptime", metadata: [
                    "node_id": "\(nodeID)", "reports": .string(reporter.store.path),
                    "uptime_interval_s": "\(config.reporter.uptimeIntervalSeconds)"])
                await onStart(reporter)
                await reporter.run()
                return
            } catch {
                logger.error("cannot open the report database; uptime and usage are not reported until it opens",
                             metadata: ["error": .string(error.description)])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(60))
            }
        }
    }
}
