import ArgumentParser
import Foundation
import NIOCore

struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Print a container workload's output.",
        discussion: """
            The workload's stdout goes to stdout and its stderr to stderr. Without --follow, the last \
            --tail lines of stdout are printed, then those of stderr.
            """
    )

    @OptionGroup var admin: AdminOptions

    @Argument(help: "CONTRACT/WORKLOAD, e.g. 42/web (see `node-agent workloads`).")
    var target: String

    @Flag(name: [.short, .long], help: "Keep printing new output until interrupted.")
    var follow = false

    @Option(name: .long, help: "How many of the last lines to print first (0 to 100000).")
    var tail: Int = 100

    @Option(name: .long, help: "stdout, stderr or all.")
    var stream: String = "all"

    func validate() throws {
        guard parsedTarget != nil else { throw ValidationError("\(target) is not CONTRACT/WORKLOAD (e.g. 42/web)") }
        guard (0...LogReader.maxTailLines).contains(tail) else { throw ValidationError("--tail must be 0 to \(LogReader.maxTailLines)") }
        guard LogReader.Selection(rawValue: stream) != nil else { throw ValidationError("--stream must be stdout, stderr or all") }
    }

    var parsedTarget: (UInt64, String)? {
        let parts = target.split(separator: "/", maxSplits: 1)
        guard parts.count == 2, let contract = UInt64(parts[0]), !parts[1].isEmpty, parts[1].utf8.count <= 64,
              parts[1].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." }) else { return nil }
        return (contract, String(parts[1]))
    }

    func run() async throws {
        guard let (contract, workload) = parsedTarget else { throw ExitCode.validationFailure }
        let client = try admin.client()
        let uri = "/v1/logs/\(contract)/\(workload)?tail=\(tail)&stream=\(stream)" + (follow ? "&follow=1" : "")
        var pending = [UInt8]()
        var errorBody = [UInt8]()
        var status = 0
        do {
            status = try await client.exchange(.GET, uri, deadline: follow ? nil : .seconds(30)) { chunk in
                pending += chunk.readableBytesView
                guard pending.count <= 1 << 20 || pending.contains(UInt8(ascii: "\n")) else {
                    throw NodeAgentError.adminAPI(status: 502, message: "a log line longer than 1 MiB")
                }
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = Array(pending[..<newline])
                    pending.removeSubrange(...newline)
                    if line.isEmpty { continue }  // heartbeat
                    if let entry = try? AdminJSON.decoder().decode(LogReader.Line.self, from: Data(line)) {
                        let out = entry.stream == "stderr" ? FileHandle.standardError : FileHandle.standardOutput
                        out.write(Data((entry.line + "\n").utf8))
                    } else {
                        errorBody += line
                    }
                }
            }
        } catch {
            throw FarmerExit.fail(error)
        }
        errorBody += pending
        if !(200..<300).contains(status) {
            do { try AdminClient.check(AdminClient.Reply(status: status, body: errorBody)) } catch { throw FarmerExit.fail(error) }
        }
    }
}
