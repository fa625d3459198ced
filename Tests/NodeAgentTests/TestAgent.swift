import Foundation
import GridTypes
import Synchronization

/// What the tests that run their own `node-agent run` share: a workspace made with `node-agent
/// init`, and the mounts such an agent leaves under it.
enum TestAgent {
    /// `node-agent init` (farm 1, embedded ledger at `ledger`), then 100 ms blocks, the shard server
    /// and the twin API on free loopback ports, and the admin socket, metrics port and container
    /// network names of this agent alone (`configure`).
    static func initialize(dir: String, config: String, state: String, ledger: String, apiPort: Int,
                           metricsPort: Int? = nil) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let result = try CommandLineTests.run(["init", "--config", config, "--state-dir", state, "--ledger", ledger, "--farm-id", "1"])
        guard result.status == 0 else {
            throw NSError(domain: "TestAgent", code: 1, userInfo: [NSLocalizedDescriptionKey: "node-agent init failed: \(result.stderr)"])
        }
        try configure(config, dir: dir, [.blockMilliseconds(100), .shardServerPort(try ShardServerDaemonTests.freePort()), .apiListen("127.0.0.1:\(apiPort)")],
                      metricsPort: metricsPort)
    }

    /// A change to the config `node-agent init` writes, as the replacement of one of its lines.
    enum ConfigEdit {
        case blockMilliseconds(Int)
        case billingPeriodBlocks(Int)
        case gracePeriodBlocks(Int)
        /// This agent does not produce the ledger's blocks (the test does).
        case noBlockProduction
        case shardServerPort(Int)
        case apiListen(String)
        /// Shard server and container networking off: not the test's subject.
        case shardServerAndNetworkOff
        case tfchain(url: String)
        /// Agents of parallel suites must never share /run/node-agent/admin.sock or 127.0.0.1:9101.
        case adminSocket(String)
        case metricsPort(Int)
        /// Container networking under names no other agent of the test run uses: each agent sweeps
        /// interfaces, /run/netns entries and nft tables with its prefix that it has no record of,
        /// so agents sharing a prefix (even in different network namespaces: /run/netns is one
        /// directory) would remove each other's networks.
        case networkNames(prefix: String)

        var replacements: [(String, String)] {
            switch self {
            case .blockMilliseconds(let ms): return [("block_time_ms = 6000", "block_time_ms = \(ms)")]
            case .billingPeriodBlocks(let n): return [("billing_period_blocks = 600", "billing_period_blocks = \(n)")]
            case .gracePeriodBlocks(let n): return [("grace_period_blocks = 201600", "grace_period_blocks = \(n)")]
            case .noBlockProduction: return [("produce_blocks = true", "produce_blocks = false")]
            case .shardServerPort(let port): return [("listen = \"0.0.0.0:9900\"", "listen = \"127.0.0.1:\(port)\"")]
            case .apiListen(let address): return [("api_listen = \"127.0.0.1:2021\"", "api_listen = \"\(address)\"")]
            case .shardServerAndNetworkOff: return [("\nenabled = true\n", "\nenabled = false\n")]
            case .tfchain(let url):
                return [("backend = \"local\"", "backend = \"tfchain\""), ("urls = [\"wss://tfchain.grid.tf/ws\"]", "urls = [\"\(url)\"]")]
            case .adminSocket(let path): return [("socket = \"/run/node-agent/admin.sock\"", "socket = \"\(path)\"")]
            case .metricsPort(let port): return [("metrics_listen = \"127.0.0.1:9101\"", "metrics_listen = \"127.0.0.1:\(port)\"")]
            case .networkNames(let prefix):
                return [("prefix = \"na\"", "prefix = \"\(prefix)\""), ("table = \"node_agent\"", "table = \"node_agent_\(prefix)\"")]
            }
        }
    }

    /// Applies `edits` to the config at `config` (each must find its line: a config whose format
    /// changed fails here, not as a test agent quietly on default ports), then gives the agent its
    /// own admin socket, metrics port and network names.
    static func configure(_ config: String, dir: String, _ edits: [ConfigEdit], metricsPort: Int? = nil) throws {
        let isolation: [ConfigEdit] = [.adminSocket(dir + "/run/admin.sock"), .metricsPort(try metricsPort ?? ShardServerDaemonTests.freePort()),
                                       .networkNames(prefix: nextNetworkPrefix())]
        var text = try String(contentsOfFile: config, encoding: .utf8)
        for edit in edits + isolation {
            for (line, replacement) in edit.replacements {
                guard text.contains(line) else {
                    throw NSError(domain: "TestAgent", code: 2, userInfo: [NSLocalizedDescriptionKey: "\(config) has no '\(line)' to change"])
                }
                text = text.replacingOccurrences(of: line, with: replacement)
            }
        }
        try text.write(toFile: config, atomically: true, encoding: .utf8)
    }

    /// "t" and 3 base-36 digits, different for every agent of this test process (random ones could
    /// collide; agents sharing a prefix sweep each other's networks).
    static func nextNetworkPrefix() -> String {
        let n = prefixCounter.withLock { value -> Int in
            value += 1
            return value
        }
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        var digits = (prefixBase + n) % (36 * 36 * 36)
        var out = ""
        for _ in 0..<3 {
            out = String(alphabet[digits % 36]) + out
            digits /= 36
        }
        return "t" + out
    }

    private static let prefixBase = Int.random(in: 0..<(36 * 36 * 36))
    private static let prefixCounter = Mutex(0)

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
