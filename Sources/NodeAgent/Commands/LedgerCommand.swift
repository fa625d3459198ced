import ArgumentParser
import ChainClient
import Foundation
import GridTypes
import Logging

/// `node-agent ledger`: the embedded ledger as the farmer sees it.
struct LedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "Inspect the embedded ledger (chain.backend = local), or produce its blocks standalone.",
        subcommands: [Blocks.self, Contracts.self, Reports.self, Produce.self]
    )

    struct Options: ParsableArguments {
        @OptionGroup var global: GlobalOptions
        @Flag(name: .long, help: "Print JSON.") var json = false

        func open() throws -> (AgentConfig, LocalLedger) {
            let (config, _) = try global.loadConfig(required: false)
            guard FileManager.default.fileExists(atPath: config.chain.ledgerPath) else {
                throw ValidationError("no ledger at \(config.chain.ledgerPath) (chain.ledger_path); `node-agent run` creates it")
            }
            return (config, try AgentDaemon.openLedger(config))
        }

        func nodeID(_ config: AgentConfig) throws -> UInt32 {
            if config.node.nodeID != 0 { return config.node.nodeID }
            guard let record = NodeRecord.load(stateDir: config.node.stateDir) else { throw NodeAgentError.notRegistered(stateDir: config.node.stateDir) }
            return record.nodeID
        }

        func emit<T: Encodable>(_ value: T, text: () -> String) throws {
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(value), as: UTF8.self))
            } else {
                print(text())
            }
        }
    }

    struct Blocks: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The newest blocks: number, time, events, producer.")
        @OptionGroup var options: Options
        @Option(name: .long, help: "How many.") var last: Int = 10

        func run() async throws {
            let (_, ledger) = try options.open()
            let blocks = try ledger.recentBlocks(limit: max(1, min(last, 10_000)))
            let pending = try ledger.pendingTransactionCount()
            let holder = try BlockProducer(ledger: ledger, name: "reader").currentHolder()
            try options.emit(blocks) {
                var table = TextTable(["BLOCK", "TIME (UTC)", "EVENTS", "HASH", "PRODUCER"])
                for b in blocks {
                    let date = Date(timeIntervalSince1970: Double(b.header.timestampMilliseconds) / 1000)
                    table.add(["\(b.header.number)", ISO8601DateFormatter().string(from: date), "\(b.eventCount)",
                               String(Hex.encode(b.header.hash).prefix(16)), b.producer])
                }
                return table.render() + "\n\(pending) transaction(s) pending; producer: \(holder ?? "none (no process holds the lease)")"
            }
        }
    }

    struct Contracts: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Contracts on this node, in every state.")
        @OptionGroup var options: Options

        func run() async throws {
            let (config, ledger) = try options.open()
            let node = try options.nodeID(config)
            let list = try ledger.contracts(node: node, includeDeleted: true)
            try options.emit(list) {
                var table = TextTable(["ID", "TWIN", "STATE", "HASH", "CREATED", "BILLED"])
                for s in list {
                    table.add(["\(s.contract.id)", "\(s.contract.twinID)", "\(s.contract.state)", s.contract.node.deploymentHash,
                               "\(s.createdBlock)", TFT.format(s.totalBilled)])
                }
                return list.isEmpty ? "no contracts on node \(node)" : table.render()
            }
        }
    }

    struct Reports: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "This node's uptime reports as the ledger recorded them.")
        @OptionGroup var options: Options
        @Option(name: .long, help: "How many.") var last: Int = 20

        func run() async throws {
            let (config, ledger) = try options.open()
            let node = try options.nodeID(config)
            let reports = try ledger.uptimeReports(node: node, limit: max(1, min(last, 10_000)))
            try options.emit(reports) {
                var table = TextTable(["BLOCK", "TIMESTAMP", "UPTIME (s)"])
                for r in reports { table.add(["\(r.block)", "\(r.timestamp)", "\(r.uptime)"]) }
                return reports.isEmpty ? "no uptime reports from node \(node) yet" : table.render()
            }
        }
    }

    struct Produce: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Produce the ledger's blocks in the foreground, without an agent (for twins-only setups and tests).",
            discussion: "Refuses to start while another process produces blocks for the same file.")
        @OptionGroup var options: Options

        func run() async throws {
            let (config, _) = try options.global.loadConfig(required: false)
            AgentLogHandler.bootstrap(format: config.log.format, level: config.log.level.swiftLogLevel)
            let ledger = try AgentDaemon.openLedger(config)
            let producer = BlockProducer(ledger: ledger, name: "node-agent ledger produce")
            if let holder = try producer.currentHolder() {
                throw ChainError.producerAlreadyRunning(path: ledger.path, holder: holder)
            }
            let task = Task { await producer.run() }
            let signals = [SIGINT, SIGTERM].map { signalNumber -> DispatchSourceSignal in
                signal(signalNumber, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signalNumber)
                source.setEventHandler { task.cancel() }
                source.resume()
                return source
            }
            await task.value
            withExtendedLifetime(signals) {}
        }
    }
}
