import ArgumentParser
import CapacityReporter
import Foundation
import GridTypes

/// `node-agent report`: the node's signed report log and its outbox, read from
/// `<state_dir>/reports.sqlite` (works while the agent runs; changes nothing).
struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Export the node's signed reports, or show what waits for the chain.",
        subcommands: [Export.self, Status.self]
    )

    static func openStore(_ config: AgentConfig) throws -> ReportStore {
        let path = ReporterSetup.storePath(config)
        guard FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("no report database at \(path); `node-agent run` creates it once the node is registered")
        }
        return try ReportStore(path: path, signer: nil, readOnly: true)
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write every signed report statement, capacity attestation and receipt, with a signed head.",
            discussion: "Anyone with the node's public key checks the file with `grid-twin verify-reports FILE --node-key KEY`.")
        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "Write to this file instead of standard output.") var out: String?

        func run() async throws {
            let (config, _) = try global.loadConfig(required: false)
            let store = try ReportCommand.openStore(config)
            let identity = try NodeIdentity.load(from: config.node.stateDir + "/" + NodeIdentity.fileName)
            let nodeID = config.node.nodeID != 0 ? config.node.nodeID : (NodeRecord.load(stateDir: config.node.stateDir)?.nodeID ?? 0)
            let clock = SystemReporterClock()
            let text = try ReportStore.export(statements: try store.signedStatements(), signer: identity.keyPair,
                                              stamp: .init(nodeID: nodeID, time: clock.wallSeconds(), bootID: clock.bootID,
                                                           sinceBoot: clock.secondsSinceBoot()))
            guard let out else {
                print(text, terminator: "")
                return
            }
            try Self.writeAtomically(Array(text.utf8), to: out)
            FileHandle.standardError.write(Data("wrote \(out); verify with: grid-twin verify-reports \(out) --node-key \(identity.publicKey.hex)\n".utf8))
        }

        /// A temporary file, synced, renamed over the target: never half a file.
        static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
            let temporary = path + ".tmp-\(getpid())"
            let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
            guard fd >= 0 else { throw NodeAgentError.io(operation: "create", path: temporary, errno: errno) }
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    let code = errno
                    close(fd)
                    unlink(temporary)
                    throw NodeAgentError.io(operation: "write", path: temporary, errno: code)
                }
                offset += n
            }
            let synced = fsync(fd)
            let syncErrno = errno
            close(fd)
            guard synced == 0 else { unlink(temporary); throw NodeAgentError.io(operation: "fsync", path: temporary, errno: syncErrno) }
            guard rename(temporary, path) == 0 else {
                let code = errno
                unlink(temporary)
                throw NodeAgentError.io(operation: "rename", path: path, errno: code)
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Reports waiting for the chain, the last delivered and the last refused.")
        @OptionGroup var global: GlobalOptions
        @Flag(name: .long, help: "Print JSON.") var json = false

        func run() async throws {
            let (config, _) = try global.loadConfig(required: false)
            let status = try ReportCommand.openStore(config).status()
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(status), as: UTF8.self))
                return
            }
            let now = SystemReporterClock().wallSeconds()
            var lines = ["\(status.pendingCount) report(s) pending" + (status.oldestPendingAge(now: now).map { ", the oldest for \($0) s" } ?? "")]
            if let last = status.lastDelivered {
                lines.append("last delivered: statement \(last.statementSeq) (\(last.kind)) in block \(last.block), \(now > last.deliveredAt ? now - last.deliveredAt : 0) s ago")
            } else {
                lines.append("nothing delivered yet")
            }
            if let rejected = status.lastRejected {
                lines.append("last refused: statement \(rejected.statementSeq) (\(rejected.kind)): \(rejected.error)")
            }
            lines.append("\(status.deliveredCount) delivered, \(status.rejectedCount) refused, \(status.statementCount) signed statements")
            print(lines.joined(separator: "\n"))
        }
    }
}
