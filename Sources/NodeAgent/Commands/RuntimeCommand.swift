import ArgumentParser
import ContainerRuntime
import Dispatch
import Foundation
import GridTypes

/// `node-agent runtime`: the container runtime on the OCI runtime command line, so tools written
/// for runc/crun can drive it. stdio passes through to the container untouched.
struct RuntimeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runtime",
        abstract: "The OCI container runtime: create, start, state, kill, delete, run, list.",
        subcommands: [Create.self, Start.self, State.self, Kill.self, Delete.self, Run.self, List.self, RuntimeImageCommand.self]
    )

    struct Options: ParsableArguments {
        @Option(name: .long, help: "Directory holding the containers' state.")
        var root: String = OCIRuntime.defaultStateRoot

        var runtime: OCIRuntime { OCIRuntime(stateRoot: root) }
    }

    /// Prints the error the way OCI tools expect (one line on stderr) and exits non-zero.
    static func failing<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as ContainerRuntimeError {
            FileHandle.standardError.write(Data("node-agent runtime: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    static func printJSON<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a container from a bundle; its process waits for `start`.")
        @OptionGroup var options: Options
        @Option(name: .shortAndLong, help: "The bundle directory (config.json and the rootfs).") var bundle: String = "."
        @Option(name: .long, help: "Write the container init's pid here.") var pidFile: String?
        @Option(name: .long, help: "Not supported (process.terminal must be false).") var consoleSocket: String?
        @Argument(help: "Container id.") var id: String

        func run() throws {
            if consoleSocket != nil {
                FileHandle.standardError.write(Data("node-agent runtime: --console-socket is not supported: set process.terminal to false\n".utf8))
                throw ExitCode(1)
            }
            let bundlePath = absolute(bundle)
            try failing { try options.runtime.create(id: id, bundle: bundlePath, spec: loadSpec(bundlePath), options: .init(pidFile: pidFile.map(absolute))) }
        }
    }

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the created container's process.")
        @OptionGroup var options: Options
        @Argument(help: "Container id.") var id: String
        func run() throws { try failing { try options.runtime.start(id: id) } }
    }

    struct State: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the container's OCI state as JSON.")
        @OptionGroup var options: Options
        @Argument(help: "Container id.") var id: String
        func run() throws {
            let state = try failing { try options.runtime.state(id: id) }
            try printJSON(state)
        }
    }

    struct Kill: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send a signal (default SIGTERM) to the container's process.")
        @OptionGroup var options: Options
        @Flag(name: .shortAndLong, help: "Signal every process in the container.") var all = false
        @Argument(help: "Container id.") var id: String
        @Argument(help: "Signal name or number: TERM, SIGKILL, 9, ...") var signal: String = "SIGTERM"

        func run() throws {
            guard let number = Signals.parse(signal) else {
                FileHandle.standardError.write(Data("node-agent runtime: unknown signal \(signal); use a name like TERM or KILL, or a number\n".utf8))
                throw ExitCode(1)
            }
            try failing { try options.runtime.kill(id: id, signal: number, all: all) }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a stopped container (--force: kill it first).")
        @OptionGroup var options: Options
        @Flag(name: .shortAndLong, help: "Kill the container if it is still running.") var force = false
        @Argument(help: "Container id.") var id: String
        func run() throws { try failing { try options.runtime.delete(id: id, force: force) } }
    }

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create, start and wait for a container, then delete it; exits with the container's exit code.")
        @OptionGroup var options: Options
        @Option(name: .shortAndLong, help: "The bundle directory.") var bundle: String = "."
        @Option(name: .long, help: "Write the container init's pid here.") var pidFile: String?
        @Flag(name: .shortAndLong, help: "Start it and return at once, leaving it running.") var detach = false
        @Flag(name: .long, help: "Keep the stopped container (for `state`) instead of deleting it.") var keep = false
        @Argument(help: "Container id.") var id: String

        func run() throws {
            let runtime = options.runtime
            let bundlePath = absolute(bundle)
            let state = try failing { try runtime.create(id: id, bundle: bundlePath, spec: loadSpec(bundlePath), options: .init(pidFile: pidFile.map(absolute))) }
            do throws(ContainerRuntimeError) {
                try runtime.start(id: id)
            } catch {
                try? runtime.delete(id: id, force: true)
                FileHandle.standardError.write(Data("node-agent runtime: \(error)\n".utf8))
                throw ExitCode(1)
            }
            if detach { return }
            // Signals sent to the runtime are meant for the container.
            var sources = [DispatchSourceSignal]()
            if let pid = state.pid {
                for sig in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2] {
                    signal(sig, SIG_IGN)
                    let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                    source.setEventHandler { _ = Glibc.kill(pid, sig) }
                    source.resume()
                    sources.append(source)
                }
            }
            let exit = try failing { try runtime.wait(id: id) }
            sources.forEach { $0.cancel() }
            if !keep { try failing { try runtime.delete(id: id, force: true) } }
            if let exit, exit.oomKilled {
                FileHandle.standardError.write(Data("node-agent runtime: container \(id) was killed for going past its memory limit\n".utf8))
            }
            throw ExitCode(exit?.code ?? 1)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the containers and their states.")
        @OptionGroup var options: Options
        @Flag(name: .long, help: "Print JSON.") var json = false

        func run() throws {
            let runtime = options.runtime
            let states = runtime.list().compactMap { try? runtime.state(id: $0) }
            if json { return try printJSON(states) }
            var table = TextTable(["ID", "PID", "STATUS", "BUNDLE", "CREATED (UTC)"])
            for s in states {
                table.add([s.id, s.pid.map(String.init) ?? "-", s.status.rawValue, s.bundle, ISO8601DateFormatter().string(from: s.created)])
            }
            print(table.render())
        }
    }
}

/// The bundle's spec, with the parser's warnings on stderr.
private func loadSpec(_ bundle: String) throws(ContainerRuntimeError) -> ContainerSpec {
    let spec = try SpecParser.load(bundle: bundle)
    for warning in spec.process.warnings { FileHandle.standardError.write(Data("node-agent runtime: warning: \(warning)\n".utf8)) }
    return spec
}

private func absolute(_ path: String) -> String {
    path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
}

/// Signal names as `kill` and the OCI tools write them.
enum Signals {
    static let names: [String: Int32] = [
        "HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "ILL": SIGILL, "TRAP": SIGTRAP, "ABRT": SIGABRT, "BUS": SIGBUS,
        "FPE": SIGFPE, "KILL": SIGKILL, "USR1": SIGUSR1, "SEGV": SIGSEGV, "USR2": SIGUSR2, "PIPE": SIGPIPE, "ALRM": SIGALRM,
        "TERM": SIGTERM, "STKFLT": SIGSTKFLT, "CHLD": SIGCHLD, "CONT": SIGCONT, "STOP": SIGSTOP, "TSTP": SIGTSTP,
        "TTIN": SIGTTIN, "TTOU": SIGTTOU, "URG": SIGURG, "XCPU": SIGXCPU, "XFSZ": SIGXFSZ, "VTALRM": SIGVTALRM,
        "PROF": SIGPROF, "WINCH": SIGWINCH, "IO": SIGIO, "PWR": SIGPWR, "SYS": SIGSYS,
    ]

    static func parse(_ text: String) -> Int32? {
        if let number = Int32(text) { return (1...64).contains(number) ? number : nil }
        var name = text.uppercased()
        if name.hasPrefix("SIG") { name.removeFirst(3) }
        return names[name]
    }
}
