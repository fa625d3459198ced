import ArgumentParser
import Foundation

/// Where the farmer commands find the running agent: `--socket`, else `admin.socket` from the config.
struct AdminOptions: ParsableArguments {
    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: "The agent's admin socket (overrides admin.socket).")
    var socket: String?

    func client() throws -> AdminClient {
        if let socket { return AdminClient(socketPath: socket) }
        let (config, _) = try global.loadConfig(required: false)
        return AdminClient(socketPath: config.admin.socket)
    }
}

/// Exit codes of the farmer commands, for scripts.
enum FarmerExit {
    static let notReady: Int32 = 1
    /// Like `systemctl status` for an inactive unit.
    static let notRunning: Int32 = 3
    static let permissionDenied: Int32 = 4

    /// Prints a connection error the way a farmer needs it and exits with its code.
    static func fail(_ error: any Error) -> ExitCode {
        FileHandle.standardError.write(Data("node-agent: \(error)\n".utf8))
        switch error as? NodeAgentError {
        case .agentNotRunning?: return ExitCode(notRunning)
        case .adminPermission?: return ExitCode(permissionDenied)
        default: return ExitCode.failure
        }
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the node, its capacity and its work at a glance.",
        discussion: """
            Asks the running agent over its admin socket. Exit status: 0 Ready, 1 not Ready, \
            3 the agent is not running, 4 permission denied (run as root).
            """
    )

    @OptionGroup var admin: AdminOptions

    @Flag(name: .long, help: "Print the status as JSON.")
    var json = false

    @Flag(name: .long, help: "Refresh until interrupted.")
    var watch = false

    @Option(name: .long, help: "Seconds between refreshes with --watch.")
    var interval: Double = 2

    func validate() throws {
        guard interval >= 0.2, interval <= 3600 else { throw ValidationError("--interval must be 0.2 to 3600 seconds") }
    }

    func run() async throws {
        let client = try admin.client()
        let renderer = StatusRenderer.forTerminal()
        guard watch else {
            let report: StatusReport
            do { report = try client.decode(StatusReport.self, try await client.get("/v1/status")) } catch { throw FarmerExit.fail(error) }
            print(try text(report, renderer: renderer), terminator: "")
            if !report.ready { throw ExitCode(FarmerExit.notReady) }
            return
        }
        while true {
            var screen = "\u{1B}[H\u{1B}[2J"
            do {
                let report = try client.decode(StatusReport.self, try await client.get("/v1/status"))
                screen += try text(report, renderer: renderer)
            } catch {
                screen += "node-agent: \(error)\n"
            }
            screen += "\n(refreshing every \(interval) s; Ctrl-C to stop)\n"
            FileHandle.standardOutput.write(Data(screen.utf8))
            try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
        }
    }

    func text(_ report: StatusReport, renderer: StatusRenderer) throws -> String {
        if json { return String(decoding: try AdminJSON.encoder(pretty: true).encode(report), as: UTF8.self) + "\n" }
        return renderer.render(report, now: Date())
    }
}

struct WorkloadsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workloads",
        abstract: "List the workloads on this node with their state, reservation and usage."
    )

    @OptionGroup var admin: AdminOptions

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    func run() async throws {
        let client = try admin.client()
        let entries: [WorkloadEntry]
        do { entries = try client.decode([WorkloadEntry].self, try await client.get("/v1/workloads")) } catch { throw FarmerExit.fail(error) }
        if json {
            print(String(decoding: try AdminJSON.encoder(pretty: true).encode(entries), as: UTF8.self))
        } else {
            print(StatusRenderer.forTerminal().renderWorkloads(entries, now: Date()), terminator: "")
        }
    }
}

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "What the agent did and why: its lifecycle, contract changes from the chain, workload results.",
        discussion: "Oldest first, in UTC."
    )

    @OptionGroup var admin: AdminOptions

    @Option(name: .long, help: "How many of the newest events (1 to 1000).")
    var limit: Int = 50

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    func validate() throws {
        guard (1...1000).contains(limit) else { throw ValidationError("--limit must be 1 to 1000") }
    }

    func run() async throws {
        let client = try admin.client()
        let events: [AgentEvent]
        do { events = try client.decode([AgentEvent].self, try await client.get("/v1/events?limit=\(limit)")) } catch { throw FarmerExit.fail(error) }
        if json {
            print(String(decoding: try AdminJSON.encoder(pretty: true).encode(events), as: UTF8.self))
        } else {
            print(StatusRenderer.forTerminal().renderEvents(events), terminator: "")
        }
    }
}

struct DrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain",
        abstract: "Stop taking new deployments; running ones keep running.",
        discussion: "Kept across restarts until `node-agent undrain`. Twins get 503 (draining) for new deployments."
    )

    @OptionGroup var admin: AdminOptions

    func run() async throws { try await DrainCommand.set(true, admin: admin) }

    static func set(_ on: Bool, admin: AdminOptions) async throws {
        let client = try admin.client()
        let reply: [String: Bool]
        do { reply = try client.decode([String: Bool].self, try await client.post(on ? "/v1/drain" : "/v1/undrain")) } catch { throw FarmerExit.fail(error) }
        print(reply["draining"] == true ? "draining: running deployments stay, new deployments are refused (undo with `node-agent undrain`)"
                                        : "accepting new deployments")
    }
}

struct UndrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "undrain", abstract: "Take new deployments again after `node-agent drain`.")

    @OptionGroup var admin: AdminOptions

    func run() async throws { try await DrainCommand.set(false, admin: admin) }
}
