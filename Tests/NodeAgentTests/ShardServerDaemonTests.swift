import Foundation
import Testing
@testable import NodeAgent

#if canImport(Glibc)
import Glibc
#endif

/// `node-agent run` starts the shard server from config.toml: the test talks RESP to it over
/// loopback with the admin password the agent generated, then stops the agent by its PID.
@Suite(.serialized) struct ShardServerDaemonTests {
    typealias CLI = CommandLineTests

    /// A loopback port that was free a moment ago (the kernel picks it).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RESPClient.Failure("socket: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw RESPClient.Failure("bind: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    @Test func runServesShardsWithTheGeneratedAdminPasswordAndStopsOnSIGTERM() async throws {
        let dir = NSTemporaryDirectory() + "shard-daemon-\(UUID().uuidString)"
        let config = dir + "/etc/config.toml", state = dir + "/state"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try CLI.run(["init", "--config", config, "--state-dir", state, "--ledger", dir + "/ledger.sqlite"]).status == 0)
        let port = try Self.freePort()
        #expect(try String(contentsOfFile: config, encoding: .utf8).contains("data_dirs = [\"\(state)/shards\"]"))
        try TestAgent.configure(config, dir: dir, [.shardServerPort(port)])

        let (agent, _, agentErr) = try CLI.start(["run", "--config", config])
        let pid = agent.processIdentifier
        defer { if agent.isRunning { kill(pid, SIGKILL) } }

        let passwordFile = state + "/shard-admin.password"
        let client = try await RESPClient.connect(port: port, within: 20)
        #expect(try client.call(["PING"]) == .simple("PONG"))
        var info = stat()
        #expect(stat(passwordFile, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        let password = try #require(try String(contentsOfFile: passwordFile, encoding: .utf8)
            .split(separator: "\n").first.map(String.init))
        #expect(password.utf8.count == 48)

        #expect(try client.call(["NSNEW", "files"]) == .error("Permission denied"))
        #expect(try client.call(["AUTH", "wrong"]) == .error("Access denied"))
        #expect(try client.call(["AUTH", password]) == .simple("OK"))
        #expect(try client.call(["NSNEW", "files"]) == .simple("OK"))
        #expect(try client.call(["SELECT", "files"]) == .simple("OK"))
        let shard = (0..<5000).map { _ in UInt8.random(in: 0...255) }
        #expect(try client.call([Array("SET".utf8), Array("shard-1".utf8), shard]) == .bulk(Array("shard-1".utf8)))
        #expect(try client.call(["GET", "shard-1"]) == .bulk(shard))
        #expect(FileManager.default.fileExists(atPath: state + "/shards/files/settings.json"))

        kill(pid, SIGTERM)
        for _ in 0..<200 where agent.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!agent.isRunning, "agent did not stop within 10 s of SIGTERM")
        agent.waitUntilExit()
        #expect(agent.terminationStatus == 0)
        let log = String(decoding: agentErr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(log.contains("msg=\"shard server listening\""))
        #expect(log.contains("msg=\"shard server stopped\""))
        #expect(log.contains("generated the shard server's admin password"))
        #expect(!log.contains(password), "the admin password appeared in the log")

        // A second start keeps the password and the data.
        let (again, _, _) = try CLI.start(["run", "--config", config])
        let againPID = again.processIdentifier
        defer { if again.isRunning { kill(againPID, SIGKILL) } }
        let second = try await RESPClient.connect(port: port, within: 20)
        #expect(try second.call(["AUTH", password]) == .simple("OK"))
        #expect(try second.call(["SELECT", "files"]) == .simple("OK"))
        #expect(try second.call(["GET", "shard-1"]) == .bulk(shard))
        kill(againPID, SIGTERM)
        for _ in 0..<200 where again.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!again.isRunning)
    }
}

/// A minimal blocking RESP2 client for the tests: one request, one reply, bounded lengths.
final class RESPClient {
    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    enum Reply: Equatable {
        case simple(String)
        case error(String)
        case integer(Int)
        case bulk([UInt8])
        case null
    }

    private let fd: Int32
    private var buffer: [UInt8] = []

    private init(fd: Int32) { self.fd = fd }
    deinit { close(fd) }

    /// Connects, retrying every 100 ms until `seconds` have passed (the agent is starting).
    static func connect(port: Int, within seconds: Double) async throws -> RESPClient {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw Failure("socket: errno \(errno)") }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if rc == 0 { return RESPClient(fd: fd) }
            close(fd)
            guard Date() < deadline else { throw Failure("nothing listens on 127.0.0.1:\(port) after \(seconds) s") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    func call(_ words: [String]) throws -> Reply { try call(words.map { Array($0.utf8) }) }

    func call(_ parts: [[UInt8]]) throws -> Reply {
        var out = Array("*\(parts.count)\r\n".utf8)
        for part in parts { out += Array("$\(part.count)\r\n".utf8) + part + Array("\r\n".utf8) }
        var sent = 0
        while sent < out.count {
            let n = out[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure("send failed: errno \(errno)") }
            sent += n
        }
        let line = try readLine()
        guard let type = line.first else { throw Failure("empty reply line") }
        let rest = String(decoding: line.dropFirst(), as: UTF8.self)
        switch type {
        case UInt8(ascii: "+"): return .simple(rest)
        case UInt8(ascii: "-"): return .error(rest)
        case UInt8(ascii: ":"): return .integer(Int(rest) ?? 0)
        case UInt8(ascii: "$"):
            guard let length = Int(rest), length <= 16 << 20 else { throw Failure("bad bulk length \(rest)") }
            if length < 0 { return .null }
            try fill(length + 2)
            let value = Array(buffer[0..<length])
            buffer.removeFirst(length + 2)
            return .bulk(value)
        default:
            throw Failure("unexpected reply type \(type)")
        }
    }

    private func fill(_ count: Int) throws {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while buffer.count < count {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw Failure("connection closed or timed out (errno \(errno))") }
            buffer += chunk[0..<n]
        }
    }

    private func readLine() throws -> [UInt8] {
        var scanned = 0
        while true {
            if let cr = buffer[scanned...].firstIndex(of: UInt8(ascii: "\r")), cr + 1 < buffer.count {
                let line = Array(buffer[0..<cr])
                buffer.removeFirst(cr + 2)
                return line
            }
            guard buffer.count < 4096 else { throw Failure("reply line longer than 4096 bytes") }
            scanned = max(0, buffer.count - 1)
            try fill(buffer.count + 1)
        }
    }
}

/// The admin password file: generated once (0600), reused, and refused when others may read it.
@Suite struct ShardAdminPasswordTests {
    @Test func generatedOnceThenReusedAndRefusedWhenReadableByOthers() throws {
        let dir = NSTemporaryDirectory() + "shard-password-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = ShardServerSetup.passwordPath(stateDir: dir)

        let first = try ShardServerSetup.loadOrCreatePassword(stateDir: dir)
        #expect(first.created)
        #expect(first.password.utf8.count == 2 * ShardServerSetup.passwordBytes)
        #expect(first.password.allSatisfy { $0.isHexDigit })
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
        let second = try ShardServerSetup.loadOrCreatePassword(stateDir: dir)
        #expect(second == (first.password, false))

        #expect(chmod(path, 0o644) == 0)
        #expect {
            _ = try ShardServerSetup.loadOrCreatePassword(stateDir: dir)
        } throws: { error in
            guard case NodeAgentError.secretFile(let where_, let problem) = error else { return false }
            // The message says what is wrong and where, never the secret.
            return where_ == path && problem.contains("group or others may read it") && !"\(error)".contains(first.password)
        }

        #expect(chmod(path, 0o600) == 0)
        try "".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(throws: NodeAgentError.self) { _ = try ShardServerSetup.loadOrCreatePassword(stateDir: dir) }
    }
}
