import ArgumentParser
import Foundation
import GridTypes

/// `grid-twin verify-reports FILE --node-key KEY`: checks a node's exported report log with nothing
/// but the node's public key (no chain, no node): signatures, hash links, sequence, receipts, the
/// uptime rule and the export head. Exit status 1 when anything fails.
struct VerifyReportsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-reports",
        abstract: "Verify a node's signed reports (from `node-agent report export`) against its public key.")

    @Argument(help: "The exported file.") var file: String
    @Option(name: .long, help: "The node's ed25519 public key: 64 hex digits or its SS58 address.") var nodeKey: String
    @Flag(name: .long, help: "Print JSON.") var json = false

    static let maxFileBytes = 1 << 30

    func run() throws {
        let key: Ed25519PublicKey
        if let hex = try? Ed25519PublicKey(hex: nodeKey) {
            key = hex
        } else if let bytes = try? SS58.decode(nodeKey), let decoded = try? Ed25519PublicKey(bytes: bytes) {
            key = decoded
        } else {
            throw ValidationError("--node-key \(nodeKey) is neither 64 hex digits nor an SS58 address")
        }
        var info = stat()
        guard stat(file, &info) == 0 else { throw GridTwinFailure("cannot read \(file): \(String(cString: strerror(errno)))") }
        guard info.st_size <= Self.maxFileBytes else { throw GridTwinFailure("\(file) is \(info.st_size) bytes; at most 1 GiB is checked") }
        guard let data = FileManager.default.contents(atPath: file) else { throw GridTwinFailure("cannot read \(file)") }
        let result = SignedReportLog.verify([UInt8](data), nodeKey: key)
        if json {
            let view = VerificationView(valid: result.isValid, statements: result.statements, countsByKind: result.countsByKind,
                                        nodeIDs: result.nodeIDs.sorted(), firstTime: result.firstTime, lastTime: result.lastTime,
                                        deliveredReports: result.deliveredReports, pendingReports: result.pendingReports,
                                        problems: result.problems)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(view), as: UTF8.self))
        } else {
            print(result.description)
        }
        if !result.isValid { throw ExitCode(1) }
    }
}

struct VerificationView: Codable {
    var valid: Bool
    var statements: Int
    var countsByKind: [String: Int]
    var nodeIDs: [UInt32]
    var firstTime: UInt64?
    var lastTime: UInt64?
    var deliveredReports: Int
    var pendingReports: [UInt64]
    var problems: [String]
}
