import Foundation
import GridTypes
import Testing
@testable import StorageClient

#if canImport(Glibc)
import Glibc
#endif

/// `grid-twin shard ...` through the built binary, against shard servers in this process.
@Suite struct ShardCLITests {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static var binary: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        var dir = (exe as NSString).deletingLastPathComponent
        if dir.hasSuffix(".xctest") { dir = (dir as NSString).deletingLastPathComponent }
        return dir + "/grid-twin"
    }

    /// Runs grid-twin with a deadline; a child still running then is killed by its PID.
    static func run(_ arguments: [String], timeout: TimeInterval = 60) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let stdout = LockedBox(), stderr = LockedBox()
        let readers = DispatchGroup()
        for (pipe, box) in [(out, stdout), (err, stderr)] {
            readers.enter()
            DispatchQueue.global().async {
                box.set(pipe.fileHandleForReading.readDataToEndOfFile())
                readers.leave()
            }
        }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(5_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            Issue.record("grid-twin \(arguments.prefix(3)) did not finish within \(timeout) s")
        }
        process.waitUntilExit()
        _ = readers.wait(timeout: .now() + 10)
        return Result(status: process.terminationStatus, stdout: String(decoding: stdout.get(), as: UTF8.self),
                      stderr: String(decoding: stderr.get(), as: UTF8.self))
    }

    @Test func putListGetCheckRepairThroughTheBinary() async throws {
        try await withCluster(4) { cluster in
            let dir = try TempDir("cli")
            let keyPath = dir.path + "/twin.key", placement = dir.path + "/placement.json", metadata = dir.path + "/files"
            _ = try NodeIdentity.create(at: keyPath)
            let json = try JSONEncoder().encode(Array(cluster.endpoints.prefix(3)))
            _ = FileManager.default.createFile(atPath: placement, contents: json, attributes: [.posixPermissions: 0o600])
            let data = randomBytes(200_000, seed: 31)
            let input = dir.path + "/photo.raw"
            try Data(data).write(to: URL(fileURLWithPath: input))
            let common = ["--key", keyPath, "--metadata-dir", metadata]
            let passwords = cluster.endpoints.compactMap(\.password)
            func noSecrets(_ r: Result) {
                for p in passwords { #expect(!r.stdout.contains(p) && !r.stderr.contains(p), "a namespace password was printed") }
            }

            let put = try Self.run(["shard", "put", input, "--placement", placement, "-k", "2", "-m", "1", "--block-size", "64KiB", "--json"] + common)
            #expect(put.status == 0, "\(put.stderr)")
            noSecrets(put)
            let report = try JSONDecoder().decode(PutReport.self, from: Data(put.stdout.utf8))
            #expect(report.size == 200_000 && report.blocks == 4 && report.shardsWritten == 3)

            let list = try Self.run(["shard", "ls"] + common)
            #expect(list.status == 0 && list.stdout.contains(report.fileID) && list.stdout.contains("photo.raw") && list.stdout.contains("complete"))

            let output = dir.path + "/restored"
            let get = try Self.run(["shard", "get", report.fileID, "-o", output] + common)
            #expect(get.status == 0, "\(get.stderr)")
            #expect(Array(try Data(contentsOf: URL(fileURLWithPath: output))) == data)
            let again = try Self.run(["shard", "get", report.fileID, "-o", output] + common)
            #expect(again.status != 0 && again.stderr.contains("--force"))

            let healthy = try Self.run(["shard", "check", report.fileID] + common)
            #expect(healthy.status == 0 && healthy.stdout.contains("healthy"), "\(healthy.stdout) \(healthy.stderr)")

            try await cluster.stop(1)
            let degraded = try Self.run(["shard", "check", report.fileID, "--timeout", "3"] + common)
            #expect(degraded.status == 3 && degraded.stdout.contains("DEGRADED") && degraded.stdout.contains("node-2"), "\(degraded.stdout)")
            noSecrets(degraded)

            // Repair onto node-4, its password from a 0600 file.
            let passwordFile = dir.path + "/spare.pw"
            _ = FileManager.default.createFile(atPath: passwordFile, contents: Data((cluster.endpoints[3].password ?? "").utf8),
                                           attributes: [.posixPermissions: 0o600])
            let spare = "node-4@\(cluster.endpoints[3].address)/\(TestCluster.namespace)"
            let repair = try Self.run(["shard", "repair", report.fileID, "--spare", spare, "--spare-password-file", passwordFile, "--json",
                                       "--timeout", "3"] + common)
            #expect(repair.status == 0, "\(repair.stdout) \(repair.stderr)")
            noSecrets(repair)
            let repaired = try JSONDecoder().decode(RepairReport.self, from: Data(repair.stdout.utf8))
            #expect(repaired.moved.map(\.index) == [1] && repaired.after.healthy)
            let after = try Self.run(["shard", "check", report.fileID, "--json"] + common)
            #expect(after.status == 0)

            // Another machine with only the key: the metadata comes from a node.
            let elsewhere = ["--key", keyPath, "--metadata-dir", dir.path + "/empty"]
            let missing = try Self.run(["shard", "get", report.fileID, "-o", dir.path + "/r2"] + elsewhere)
            #expect(missing.status != 0 && missing.stderr.contains("--placement"), "\(missing.stderr)")
            let fromNodes = try Self.run(["shard", "get", report.fileID, "-o", dir.path + "/r2", "--placement", placement, "--timeout", "3"] + elsewhere)
            #expect(fromNodes.status == 0, "\(fromNodes.stderr)")
            #expect(Array(try Data(contentsOf: URL(fileURLWithPath: dir.path + "/r2"))) == data)

            // A wrong key is told apart from damage.
            let otherKey = dir.path + "/other.key"
            _ = try NodeIdentity.create(at: otherKey)
            let wrong = try Self.run(["shard", "get", report.fileID, "-o", dir.path + "/r3", "--key", otherKey, "--metadata-dir", metadata])
            #expect(wrong.status != 0 && wrong.stderr.contains("twin key"), "\(wrong.stderr)")

            let bad = try Self.run(["shard", "put", input, "--ns", "nonsense", "--block-size", "4MiB"] + common)
            #expect(bad.status != 0 && bad.stderr.contains("NODE@HOST:PORT/NAMESPACE"))
        }
    }
}

final class LockedBox: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ value: Data) { lock.lock(); data = value; lock.unlock() }
    func get() -> Data { lock.lock(); defer { lock.unlock() }; return data }
}
