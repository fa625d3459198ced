import ArgumentParser
import ChainClient
import Foundation
import GridTypes

@main
struct GridTwinCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grid-twin",
        abstract: "The twin's (user's) side of the grid: twins, funds, nodes and contracts.",
        version: "0.1.0",
        subcommands: [TwinCommand.self, FundCommand.self, FarmCommand.self, NodesCommand.self, ContractCommand.self,
                      ContractsCommand.self, EventsCommand.self, DeploymentCommand.self, DeployCommand.self,
                      ShardCommand.self, VerifyReportsCommand.self]
    )
}

/// Where the chain and the twin's key are; shared by every subcommand.
struct ChainOptions: ParsableArguments {
    @Option(name: .long, help: "Embedded ledger file (env GRID_LEDGER).")
    var ledger: String = ProcessInfo.processInfo.environment["GRID_LEDGER"] ?? "/var/lib/grid-ledger/ledger.sqlite"

    @Option(name: .long, help: "The twin's ed25519 key file (env GRID_TWIN_KEY).")
    var key: String = ProcessInfo.processInfo.environment["GRID_TWIN_KEY"]
        ?? (NSHomeDirectory() + "/.config/grid-twin/twin.key")

    @Flag(name: .long, help: "Print JSON instead of tables.")
    var json = false

    /// Opens an existing ledger; never creates one by accident.
    func openLedger() throws -> LocalLedger {
        guard FileManager.default.fileExists(atPath: ledger) else {
            throw GridTwinFailure("no ledger at \(ledger); start a node-agent with chain.backend = \"local\" (it creates the file) or pass --ledger")
        }
        return try LocalLedger(path: ledger)
    }

    func loadKey() throws -> NodeIdentity {
        do { return try NodeIdentity.load(from: key) } catch GridTypesError.keyFileMissing {
            throw GridTwinFailure("no twin key at \(key); create one with `grid-twin twin create` or pass --key")
        }
    }

    /// The caller's twin id, or a clear error when the key has no twin yet.
    func twinID(_ ledger: LocalLedger, _ identity: NodeIdentity) async throws -> UInt32 {
        guard let id = try await ledger.twinID(account: identity.publicKey) else {
            throw GridTwinFailure("the key \(key) has no twin on this ledger; run `grid-twin twin create`")
        }
        return id
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

extension ContractState {
    var shortName: String {
        switch self {
        case .created: return "Created"
        case .gracePeriod(let since): return "GracePeriod(since \(since))"
        case .deleted(let cause): return "Deleted(\(cause.name))"
        }
    }
}
