import Foundation
import GridTypes

/// What the tests that run their own `node-agent run` share: a workspace made with `node-agent
/// init`, and the mounts such an agent leaves under it.
enum TestAgent {
    /// `node-agent init` (farm 1, embedded ledger at `ledger`), then 100 ms blocks, the shard server
    /// and the twin API on free loopback ports, and the admin socket, metrics port and container
    /// network names of this agent alone (`FarmerOperationsTests.isolateOperations`).
    static func initialize(dir: String, config: String, state: String, ledger: String, apiPort: Int,
                           metricsPort: Int? = nil) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let result = try CommandLineTests.run(["init", "--config", config, "--state-dir", state, "--ledger", ledger, "--farm-id", "1"])
        guard result.status == 0 else {
            throw NSError(domain: "TestAgent", code: 1, userInfo: [NSLocalizedDescriptionKey: "node-agent init failed: \(result.stderr)"])
        }
        var text = try String(contentsOfFile: config, encoding: .utf8)
        text = text.replacingOccurrences(of: "block_time_ms = 6000", with: "block_time_ms = 100")
        text = text.replacingOccurrences(of: "listen = \"0.0.0.0:9900\"", with: "listen = \"127.0.0.1:\(try ShardServerDaemonTests.freePort())\"")
        text = text.replacingOccurrences(of: "api_listen = \"127.0.0.1:2021\"", with: "api_listen = \"127.0.0.1:\(apiPort)\"")
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        try FarmerOperationsTests.isolateOperations(config: config, dir: dir, metricsPort: metricsPort)
    }

    /// Mount points whose path starts with `prefix`, from /proc/self/mountinfo.
    static func mountPoints(under prefix: String) -> [String] {
        guard let mounts = KernelFile.read("/proc/self/mountinfo") else { return [] }
        return mounts.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 && fields[4].hasPrefix(prefix) ? String(fields[4]) : nil
        }
    }

    /// The names of the volumes mounted in `state`/volumes.
    static func mountedVolumes(state: String) -> Set<String> {
        Set(mountPoints(under: state + "/volumes/").map { ($0 as NSString).lastPathComponent })
    }

    /// Deletes the nft tables named in `config` ([network] table): an agent stopped with SIGKILL
    /// leaves them, and every leftover table's hooks slow all later traffic on the host.
    static func removeNetworkTables(config: String) {
        guard let name = stringSetting("table", in: config), name.hasPrefix("node_agent_t") else { return }
        for family in ["inet", "bridge"] {
            _ = try? GridHarness.run("/usr/sbin/nft", ["delete", "table", family, name], allowFailure: true)
        }
    }

    /// The first `key = "value"` line's value in a config file (the keys tests rewrite are unique).
    static func stringSetting(_ key: String, in config: String) -> String? {
        guard let text = try? String(contentsOfFile: config, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(key + " = \"") {
            return String(line.dropFirst(key.count + 4).prefix { $0 != "\"" })
        }
        return nil
    }

    /// Detaches every mount under `prefix`: a test's mounts must not outlive it, also when it failed.
    static func unmountAll(under prefix: String) {
        for mountPoint in mountPoints(under: prefix) {
            _ = try? GridHarness.run("/usr/bin/umount", ["-l", mountPoint], allowFailure: true)
        }
    }
}
