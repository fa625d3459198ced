import Foundation
import GridTypes
@testable import NodeAgent

/// Several farm nodes on one machine: one embedded ledger, one agent per node, each in its own
/// network namespace with a veth pair to a bridge the harness creates (private 10.x.y.0/24
/// addresses), each with its own state directory, shard server and twin API. Cleans up its
/// processes (by PID), namespaces, links and mounts, also when a test fails.
final class GridHarness: @unchecked Sendable {
    struct HarnessError: Error, CustomStringConvertible {
        var description: String
    }

    final class AgentNode: @unchecked Sendable {
        let name: String
        let netns: String
        let address: String
        let dir: String
        var process: Process?
        var starts = 0

        init(name: String, netns: String, address: String, dir: String) {
            self.name = name
            self.netns = netns
            self.address = address
            self.dir = dir
        }

        var config: String { dir + "/config.toml" }
        var state: String { dir + "/state" }
        var api: String { "http://\(address):2021" }
        var isRunning: Bool { process?.isRunning ?? false }
        var logPath: String { dir + "/agent-\(max(0, starts - 1)).log" }

        /// `node-agent status --json` through the agent's admin socket, as the farmer reads it.
        func status() throws -> StatusReport? {
            let result = try CommandLineTests.run(["status", "--json", "--config", config])
            return try? AdminJSON.decoder().decode(StatusReport.self, from: Data(result.stdout.utf8))
        }

        /// The prefix of the agent's container network names (unique per test agent).
        func networkPrefix() -> String? { TestAgent.stringSetting("prefix", in: config) }

        func nodeID() -> Int? {
            guard let data = FileManager.default.contents(atPath: state + "/node.json"),
                  let record = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
            return record["nodeID"] as? Int
        }
    }

    let id: String
    let dir: String
    let ledger: String
    let bridge: String
    let subnet: String
    var nodes: [AgentNode] = []
    private var links: [String] = []
    private var namespaces: [String] = []

    static func run(_ tool: String, _ arguments: [String], allowFailure: Bool = false) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        if process.terminationStatus != 0 && !allowFailure {
            throw HarnessError(description: "\(tool) \(arguments.joined(separator: " ")) failed: \(text)")
        }
        return text
    }

    static func ip(_ arguments: String...) throws { _ = try run("/usr/sbin/ip", arguments) }

    init(nodeNames: [String], blockMilliseconds: Int = 200, billingPeriodBlocks: Int = 10, gracePeriodBlocks: Int = 50) throws {
        id = String(UUID().uuidString.prefix(6)).lowercased()
        dir = NSTemporaryDirectory() + "grid-\(id)"
        ledger = dir + "/ledger.sqlite"
        bridge = "gbr\(id)"
        subnet = "10.\(Int.random(in: 64...127)).\(Int.random(in: 1...254))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        do {
            try Self.ip("link", "add", bridge, "type", "bridge")
            links.append(bridge)
            try Self.ip("addr", "add", "\(subnet).1/24", "dev", bridge)
            try Self.ip("link", "set", bridge, "up")
            for (index, name) in nodeNames.enumerated() {
                let netns = "g\(id)\(name)"
                let hostSide = "gv\(id)\(index)"
                let address = "\(subnet).\(11 + index)"
                try Self.ip("netns", "add", netns)
                namespaces.append(netns)
                try Self.ip("link", "add", hostSide, "type", "veth", "peer", "name", "eth0", "netns", netns)
                links.append(hostSide)
                try Self.ip("link", "set", hostSide, "master", bridge, "up")
                try Self.ip("-n", netns, "addr", "add", "\(address)/24", "dev", "eth0")
                try Self.ip("-n", netns, "link", "set", "eth0", "up")
                try Self.ip("-n", netns, "link", "set", "lo", "up")
                let node = AgentNode(name: name, netns: netns, address: address, dir: dir + "/\(name)")
                try FileManager.default.createDirectory(atPath: node.dir, withIntermediateDirectories: true)
                let initResult = try CommandLineTests.run(["init", "--config", node.config, "--state-dir", node.state, "--ledger", ledger, "--farm-id", "1"])
                guard initResult.status == 0 else { throw HarnessError(description: "init \(name): \(initResult.stderr)") }
                try TestAgent.configure(node.config, dir: node.dir, [.blockMilliseconds(blockMilliseconds), .billingPeriodBlocks(billingPeriodBlocks),
                                                                     .gracePeriodBlocks(gracePeriodBlocks), .apiListen("0.0.0.0:2021")])
                nodes.append(node)
            }
        } catch {
            cleanUp()
            throw error
        }
    }

    func node(_ name: String) -> AgentNode {
        guard let node = nodes.first(where: { $0.name == name }) else { preconditionFailure("no node \(name)") }
        return node
    }

    /// Starts the node's agent inside its network namespace; nsenter execs, so the PID is the agent's.
    func start(_ node: AgentNode) throws {
        node.starts += 1
        FileManager.default.createFile(atPath: node.logPath, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        process.arguments = ["--net=/run/netns/\(node.netns)", CommandLineTests.binary, "run", "--config", node.config]
        process.standardOutput = FileHandle(forWritingAtPath: node.logPath)
        process.standardError = FileHandle(forWritingAtPath: node.logPath)
        try process.run()
        node.process = process
    }

    func kill9(_ node: AgentNode) {
        guard let process = node.process, process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func stop(_ node: AgentNode) async {
        guard let process = node.process, process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(15)
        while process.isRunning, Date() < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        if process.isRunning { kill9(node) }
    }

    func gridTwin(_ arguments: [String]) throws -> CommandLineTests.Result {
        try LedgerScenarioTests.gridTwin(arguments, ledger: ledger)
    }

    /// grid-twin commands that talk to nodes only (`shard ...`), without the ledger option.
    func gridTwinOffChain(_ arguments: [String]) throws -> CommandLineTests.Result {
        try LedgerScenarioTests.gridTwin(arguments, ledger: nil)
    }

    /// Containers outlive their agent by design; a test's must not outlive the test.
    static func removeContainers(stateDir: String) {
        let root = stateDir + "/runtime"
        for id in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
            _ = try? run(CommandLineTests.binary, ["runtime", "delete", "--force", "--root", root, id], allowFailure: true)
        }
    }

    func cleanUp() {
        for node in nodes { kill9(node) }
        for node in nodes { Self.removeContainers(stateDir: node.state) }
        TestAgent.unmountAll(under: dir)
        // Containers' network namespaces are /run/netns entries, outside the nodes' namespaces.
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
        for prefix in nodes.compactMap({ $0.networkPrefix() }) {
            for entry in entries where entry.hasPrefix(prefix + "-") {
                _ = try? Self.run("/usr/sbin/ip", ["netns", "del", entry], allowFailure: true)
            }
        }
        for netns in namespaces { _ = try? Self.run("/usr/sbin/ip", ["netns", "del", netns], allowFailure: true) }
        for link in links.reversed() { _ = try? Self.run("/usr/sbin/ip", ["link", "del", link], allowFailure: true) }
        try? FileManager.default.removeItem(atPath: dir)
    }

    deinit { cleanUp() }
}
