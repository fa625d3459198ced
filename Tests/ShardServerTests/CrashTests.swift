import Foundation
import Testing
@testable import ShardServer

#if canImport(Glibc)
import Glibc
#endif

/// A child process with its output collected, killed by its own PID.
final class ChildProcess {
    let process = Process()
    private let output = LockedData()
    private let outPipe = Pipe()
    private let reader = DispatchGroup()

    init(_ executable: String, _ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = outPipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        reader.enter()
        let handle = outPipe.fileHandleForReading
        let sink = output
        DispatchQueue.global().async { [reader] in
            var collected = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                collected.append(chunk)
                sink.set(collected)
            }
            reader.leave()
        }
    }

    var stdout: String { String(decoding: output.get(), as: UTF8.self) }

    /// Waits (bounded) until stdout contains `marker`.
    func waitFor(_ marker: String, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if stdout.contains(marker) { return true }
            if !process.isRunning { return stdout.contains(marker) }
            usleep(10_000)
        }
        return false
    }

    func sigkill() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Waits for a normal exit; kills the child if it overruns.
    func wait(timeout: TimeInterval) -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            Issue.record("child \(process.processIdentifier) did not exit within \(timeout) s; killed")
            sigkill()
        }
        _ = reader.wait(timeout: .now() + 5)
        return stdout
    }

    deinit { sigkill() }
}

/// SIGKILL of a standalone server (`node-agent shard-server`, fsync=always) in the middle of
/// writes: after a restart every acknowledged write is there and nothing wrong is served.
@Suite(.serialized) struct CrashTests {
    static var binary: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        var dir = (exe as NSString).deletingLastPathComponent
        if dir.hasSuffix(".xctest") { dir = (dir as NSString).deletingLastPathComponent }
        return dir + "/node-agent"
    }

    private func startServer(data: String, fsync: String) throws -> (ChildProcess, Int) {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "built node-agent not found at \(Self.binary)")
        let child = try ChildProcess(Self.binary, ["shard-server", "--listen", "127.0.0.1:0", "--data", data,
                                                   "--fsync", fsync, "--log-level", "error"])
        try #require(child.waitFor("\n", timeout: 30), "shard-server did not start: \(child.stdout)")
        let line = child.stdout.split(separator: "\n").first { $0.hasPrefix("shard-server listening on ") } ?? ""
        let port = try #require(Int(line.split(separator: ":").last ?? ""), "no port in \(child.stdout)")
        return (child, port)
    }

    /// The value every writer stores under a key: derived from the key, so the reader can check
    /// any key it finds, acknowledged or not.
    static let pythonValue = """
    def value_for(key):
        seed = hashlib.sha256(key.encode()).digest()
        size = 1 + int.from_bytes(seed[:3], 'little') % 150000
        return (seed * (size // 32 + 1))[:size]
    """

    @Test func everyAcknowledgedWriteSurvivesSigkillUnderFsyncAlways() async throws {
        let dir = try TempDir("crash")
        let data = dir.path + "/data"
        var (server, port) = try startServer(data: data, fsync: "always")

        // Four writer threads, each printing the keys the server acknowledged, until the server dies.
        let writerScript = """
        import redis, sys, threading, hashlib, time
        \(Self.pythonValue)
        acked = []
        lock = threading.Lock()
        def writer(t):
            r = redis.Redis(host='127.0.0.1', port=\(port), socket_timeout=10)
            r.response_callbacks.clear()
            deadline = time.time() + 30
            i = 0
            while time.time() < deadline:
                key = 't%d-%d' % (t, i)
                try:
                    reply = r.execute_command('SET', key, value_for(key))
                except Exception:
                    return
                assert reply == key.encode(), reply
                with lock:
                    acked.append(key)
                    if len(acked) == 200:
                        print('READY', flush=True)
                i += 1
        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for th in threads: th.start()
        for th in threads: th.join()
        print('ACKED ' + ' '.join(acked), flush=True)
        """
        let writer = try ChildProcess("/usr/bin/python3", ["-c", writerScript])
        #expect(writer.waitFor("READY", timeout: 60), "writers made no progress: \(writer.stdout)")
        try await Task.sleep(for: .milliseconds(200))
        server.sigkill()  // mid-write: the writers are still going
        let writerOut = writer.wait(timeout: 60)
        let ackedLine = writerOut.split(separator: "\n").first { $0.hasPrefix("ACKED ") } ?? ""
        let acked = ackedLine.split(separator: " ").dropFirst().map(String.init)
        #expect(acked.count >= 200)

        (server, port) = try startServer(data: data, fsync: "always")
        defer { server.sigkill() }
        let keyFile = dir.path + "/acked.txt"
        try acked.joined(separator: "\n").write(toFile: keyFile, atomically: true, encoding: .utf8)
        let verify = try TestProcess.run("/usr/bin/python3", ["-c", """
        import redis, hashlib, json
        \(Self.pythonValue)
        r = redis.Redis(host='127.0.0.1', port=\(port), socket_timeout=20)
        r.response_callbacks.clear()
        acked = [k for k in open('\(keyFile)').read().split('\\n') if k]
        missing = [k for k in acked if r.execute_command('GET', k) != value_for(k)]
        # Every key present, acknowledged or not, must hold exactly its value.
        wrong, seen, cursor = [], 0, None
        for _ in range(100000):
            try:
                reply = r.execute_command('SCAN', cursor) if cursor else r.execute_command('SCAN')
            except redis.ResponseError:
                break
            cursor = reply[0]
            for key, size, ts in reply[1]:
                seen += 1
                if r.execute_command('GET', key) != value_for(key.decode()):
                    wrong.append(key.decode())
        print(json.dumps({'acked': len(acked), 'missing': missing[:5], 'nmissing': len(missing), 'seen': seen, 'wrong': wrong[:5]}))
        """], timeout: 120)
        #expect(verify.status == 0, "\(verify.stderr)")
        let res = try #require(try JSONSerialization.jsonObject(with: verify.stdoutData) as? [String: Any])
        #expect(res["nmissing"] as? Int == 0, "acknowledged writes lost: \(res["missing"] ?? "")")
        #expect((res["wrong"] as? [String])?.isEmpty == true, "wrong bytes served for \(res["wrong"] ?? "")")
        #expect((res["seen"] as? Int ?? 0) >= acked.count)
    }
}
