import Foundation
import GridTypes
import Testing

/// Drives the built `node-agent` binary the way a farmer does.
@Suite(.serialized) struct CommandLineTests {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static var binary: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        var dir = (exe as NSString).deletingLastPathComponent
        // The test binary may sit inside a .xctest bundle directory on some toolchains.
        if dir.hasSuffix(".xctest") { dir = (dir as NSString).deletingLastPathComponent }
        return dir + "/node-agent"
    }

    static func start(_ arguments: [String]) throws -> (Process, Pipe, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        return (process, out, err)
    }

    static func run(_ arguments: [String]) throws -> Result {
        let (process, out, err) = try start(arguments)
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
    }

    func workspace() throws -> (dir: String, config: String, state: String) {
        let dir = NSTemporaryDirectory() + "cli-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return (dir, dir + "/etc/config.toml", dir + "/state")
    }

    @Test func versionPrints() throws {
        let result = try Self.run(["--version"])
        #expect(result.status == 0)
        #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".").count == 3)
    }

    @Test func initCreatesKeyAndConfigAndRefusesASecondTime() throws {
        let ws = try workspace()
        defer { try? FileManager.default.removeItem(atPath: ws.dir) }
        let first = try Self.run(["init", "--config", ws.config, "--state-dir", ws.state, "--json"])
        #expect(first.status == 0, "\(first.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [String: String] ?? [:]
        let publicHex = try #require(object["public_key"])
        let address = try #require(object["ss58_address"])
        #expect(try SS58.decode(address) == Hex.decode(publicHex))
        #expect(try NodeIdentity.load(from: ws.state + "/identity.key").publicKey.hex == publicHex)
        var info = stat()
        stat(ws.state + "/identity.key", &info)
        #expect(info.st_mode & 0o777 == 0o600)
        // The written config names the chosen state dir and parses.
        #expect(try String(contentsOfFile: ws.config, encoding: .utf8).contains("state_dir = \"\(ws.state)\""))

        let second = try Self.run(["init", "--config", ws.config, "--state-dir", ws.state])
        #expect(second.status != 0)
        #expect(second.stderr.contains("already exists; refusing to overwrite"))
        #expect(try NodeIdentity.load(from: ws.state + "/identity.key").publicKey.hex == publicHex)
    }

    @Test func doctorJSONReportsEveryCheck() throws {
        let ws = try workspace()
        defer { try? FileManager.default.removeItem(atPath: ws.dir) }
        let result = try Self.run(["doctor", "--json", "--config", ws.config, "--state-dir", ws.state])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let checks = try #require(object["checks"] as? [[String: Any]])
        #expect(checks.count == 16)
        let passed = try #require(object["passed"] as? Bool)
        #expect(result.status == (passed ? 0 : 1))
        if geteuid() == 0 {
            #expect(passed, "doctor fails on this host: \(result.stdout)")
        }
    }

    @Test func badConfigIsRefusedWithTheKeyNamed() throws {
        let ws = try workspace()
        defer { try? FileManager.default.removeItem(atPath: ws.dir) }
        try FileManager.default.createDirectory(atPath: ws.dir + "/etc", withIntermediateDirectories: true)
        try "[chain]\nbackend = \"eth\"\n".write(toFile: ws.config, atomically: true, encoding: .utf8)
        let result = try Self.run(["doctor", "--config", ws.config])
        #expect(result.status != 0)
        #expect(result.stderr.contains("chain.backend: value \"eth\" is not allowed: expected one of: local, tfchain"))
        let missing = try Self.run(["run", "--config", ws.dir + "/nope.toml"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("run `node-agent init`"))
    }

    @Test func runStartsHoldsTheStateLockAndStopsOnSIGTERM() async throws {
        let ws = try workspace()
        defer { try? FileManager.default.removeItem(atPath: ws.dir) }
        #expect(try Self.run(["init", "--config", ws.config, "--state-dir", ws.state, "--ledger", ws.dir + "/ledger.sqlite"]).status == 0)
        // The shard server starts with the agent: on a free loopback port, not the default 9900
        // another process on a shared machine may hold (a bind failure stops the agent).
        try TestAgent.configure(ws.config, dir: ws.dir, [.shardServerPort(try ShardServerDaemonTests.freePort())])
        // The agent logs to a file, so the test can watch it without blocking on a pipe.
        let logPath = ws.dir + "/agent.log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let agent = Process()
        agent.executableURL = URL(fileURLWithPath: Self.binary)
        agent.arguments = ["run", "--config", ws.config]
        agent.standardOutput = FileHandle.nullDevice
        agent.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try agent.run()
        defer { if agent.isRunning { kill(agent.processIdentifier, SIGKILL) } }
        func log() -> String { String(decoding: FileManager.default.contents(atPath: logPath) ?? Data(), as: UTF8.self) }

        // Wait (bounded) until the agent has started and so holds its lock; a second agent must then
        // be refused. (Starting the second earlier races the first for the lock on a loaded machine.)
        for _ in 0..<200 where !log().contains("node-agent started") { try await Task.sleep(for: .milliseconds(50)) }
        #expect(log().contains("node-agent started"), "agent did not start within 10 s: \(log())")
        let second = Process()
        second.executableURL = URL(fileURLWithPath: Self.binary)
        second.arguments = ["run", "--config", ws.config]
        let secondErr = Pipe()
        second.standardOutput = FileHandle.nullDevice
        second.standardError = secondErr
        try second.run()
        // Bounded: a second agent that wrongly started is killed instead of hanging the suite.
        for _ in 0..<200 where second.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        if second.isRunning { kill(second.processIdentifier, SIGKILL) }
        second.waitUntilExit()
        let secondLog = String(decoding: secondErr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let refused: Result? = secondLog.contains("already running") ? Result(status: second.terminationStatus, stdout: "", stderr: secondLog) : nil
        #expect(refused?.status == 1)
        #expect(agent.isRunning)

        kill(agent.processIdentifier, SIGTERM)
        for _ in 0..<100 where agent.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!agent.isRunning, "agent did not stop within 5 s of SIGTERM")
        if agent.isRunning { kill(agent.processIdentifier, SIGKILL) }
        agent.waitUntilExit()
        #expect(agent.terminationStatus == 0)
        let finalLog = log()
        #expect(finalLog.contains("msg=\"node-agent started\""))
        #expect(finalLog.contains("msg=\"node-agent stopped\""))
        #expect(!finalLog.contains(try String(contentsOfFile: ws.state + "/identity.key", encoding: .utf8)
            .split(separator: "\n").first { $0.hasPrefix("seed=") }.map { String($0.dropFirst(5)) } ?? "no-seed"))
    }
}
