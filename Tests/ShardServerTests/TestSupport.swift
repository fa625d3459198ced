import Foundation
import Logging
import Testing
@testable import ShardServer

#if canImport(Glibc)
import Glibc
#endif

/// A temporary directory removed when the test is done with it.
final class TempDir {
    let path: String

    init(_ label: String = "shard") throws {
        path = NSTemporaryDirectory() + "shard-test-\(label)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var stdoutData: Data
}

enum TestProcess {
    /// Runs a program to completion with a deadline; on timeout the child (by its own PID) is
    /// killed and the test fails.
    static func run(_ executable: String, _ arguments: [String], stdin: Data? = nil,
                    timeout: TimeInterval = 30) throws -> ProcessResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        // Read both pipes on their own threads so a chatty child never blocks on a full pipe.
        let outData = LockedData(), errData = LockedData()
        let readers = DispatchGroup()
        for (pipe, sink) in [(out, outData), (err, errData)] {
            readers.enter()
            DispatchQueue.global().async {
                sink.set(pipe.fileHandleForReading.readDataToEndOfFile())
                readers.leave()
            }
        }
        if let stdin { input.fileHandleForWriting.write(stdin) }
        try? input.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(2_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            Issue.record("\(executable) \(arguments.prefix(4)) did not finish within \(timeout) s; killed")
        }
        _ = readers.wait(timeout: .now() + 10)
        let stdoutData = outData.get()
        return ProcessResult(status: process.terminationStatus,
                             stdout: String(decoding: stdoutData, as: UTF8.self),
                             stderr: String(decoding: errData.get(), as: UTF8.self), stdoutData: stdoutData)
    }
}

final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ value: Data) { lock.lock(); data = value; lock.unlock() }
    func get() -> Data { lock.lock(); defer { lock.unlock() }; return data }
}

/// redis-cli from Debian's redis-tools, in --no-raw mode so replies keep their types:
/// `"text"`, `(integer) 1`, `(nil)`, `(error) text`.
enum RedisCLI {
    static let path = "/usr/bin/redis-cli"

    static func run(port: Int, _ arguments: [String], stdin: Data? = nil, raw: Bool = false) throws -> String {
        var args = ["-h", "127.0.0.1", "-p", String(port)]
        args.append(raw ? "--raw" : "--no-raw")
        args += arguments
        let result = try TestProcess.run(path, args, stdin: stdin)
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Several commands over one connection (so SELECT and AUTH carry over), one reply per line
    /// group, as redis-cli prints them.
    static func session(port: Int, _ commands: [String]) throws -> [String] {
        let script = commands.joined(separator: "\n") + "\n"
        let output = try run(port: port, [], stdin: Data(script.utf8))
        return output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }
}

/// Python scripts using the `redis` package from Debian's python3-redis (system python: the
/// package is installed for /usr/bin/python3).
enum Python {
    static let path = "/usr/bin/python3"

    /// Runs `body` with `r` bound to a client on the port; the script's stdout is returned. A
    /// non-zero exit (an assertion or exception in the script) fails the test with its stderr.
    static func run(port: Int, _ body: String, timeout: TimeInterval = 60) throws -> String {
        let script = """
        import redis, sys, json, hashlib, os, socket, time
        r = redis.Redis(host='127.0.0.1', port=\(port), socket_timeout=20)
        r.response_callbacks.clear()  # raw replies: 0-db's differ from Redis's (SET answers the key)
        def err(f):
            try:
                f()
            except redis.ResponseError as e:
                return str(e)
            return None
        \(body)
        """
        let result = try TestProcess.run(path, ["-c", script], timeout: timeout)
        #expect(result.status == 0, "python failed: \(result.stderr)")
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A blocking TCP client for raw RESP bytes (malformed frames, pipelining, slow readers).
final class RawClient {
    let fd: Int32

    init(port: Int, receiveTimeout: Int = 5) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ShardServerError.io(operation: "socket", path: "", errno: errno) }
        var tv = timeval(tv_sec: receiveTimeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw ShardServerError.io(operation: "connect", path: "127.0.0.1:\(port)", errno: e)
        }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    func send(_ text: String) { send(Array(text.utf8)) }

    /// Reads until `count` bytes arrived, the peer closed, or the receive timeout.
    func receive(atLeast count: Int) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while out.count < count {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    /// Reads until the received text contains `marker` (or closed/timeout).
    func receive(until marker: String) -> String {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while !String(decoding: out, as: UTF8.self).contains(marker) {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// True when the server closed the connection (recv returns 0) within the timeout.
    func isClosedByPeer() -> Bool {
        var byte: UInt8 = 0
        while true {
            let n = recv(fd, &byte, 1, 0)
            if n == 0 { return true }
            if n < 0 { return false }
        }
    }
}

/// A server on 127.0.0.1 with an ephemeral port and a temporary data directory.
final class TestServer {
    let server: ShardServer
    let directory: TempDir
    let config: ShardServerConfig
    let port: Int

    static func start(directory: TempDir? = nil, _ configure: (inout ShardServerConfig) -> Void = { _ in }) async throws -> TestServer {
        let dir = try directory ?? TempDir()
        var config = ShardServerConfig(host: "127.0.0.1", port: 0, dataDirectory: dir.path + "/data",
                                       adminPassword: "admin-secret", fsync: .never, threads: 2)
        config.scrubBytesPerSecond = 0
        config.compactionDeadRatio = 0
        configure(&config)
        var logger = Logger(label: "shard-test")
        logger.logLevel = .critical
        let server = ShardServer(logger: logger)
        let port = try await server.start(config)
        return TestServer(server: server, directory: dir, config: config, port: port)
    }

    private init(server: ShardServer, directory: TempDir, config: ShardServerConfig, port: Int) {
        self.server = server
        self.directory = directory
        self.config = config
        self.port = port
    }

    /// Stops the server; stopping one already stopped (by `restarted`) is fine.
    func stop() async throws {
        do { try await server.stop() } catch ShardServerError.notRunning {}
    }

    /// Stops and starts again on the same data directory (a clean restart).
    func restarted(_ configure: (inout ShardServerConfig) -> Void = { _ in }) async throws -> TestServer {
        try await stop()
        let previous = config
        return try await TestServer.start(directory: directory) { config in
            config = previous
            config.port = 0
            configure(&config)
        }
    }

    var dataPath: String { config.dataDirectory }

    func cli(_ arguments: String...) throws -> String { try RedisCLI.run(port: port, arguments) }
}

/// Flips one byte of a file in place (a corrupt shard for the checksum paths).
func corruptByte(_ path: String, at offset: UInt64) throws {
    let handle = try #require(FileHandle(forUpdatingAtPath: path))
    defer { try? handle.close() }
    try handle.seek(toOffset: offset)
    let byte = try #require(try handle.read(upToCount: 1)?.first)
    try handle.seek(toOffset: offset)
    try handle.write(contentsOf: Data([byte ^ 0xFF]))
}

func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed &+ 0x9E37_79B9_7F4A_7C15
    var out = [UInt8](repeating: 0, count: count)
    for i in out.indices {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        out[i] = UInt8(truncatingIfNeeded: state >> 33)
    }
    return out
}

/// Runs `body` against a fresh server and stops it afterwards, also when the body throws.
func withServer(configure: (inout ShardServerConfig) -> Void = { _ in },
                _ body: (TestServer) async throws -> Void) async throws {
    let server = try await TestServer.start(configure)
    do {
        try await body(server)
    } catch {
        try? await server.stop()
        throw error
    }
    try await server.stop()
}
