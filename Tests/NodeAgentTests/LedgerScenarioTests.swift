import Foundation
import GridTypes
import Provisioner
import Testing

/// The embedded ledger shared by separate processes, as a farmer and a twin use it: `node-agent run`
/// produces blocks and registers the node; `grid-twin` (other processes) creates the farm, the twin,
/// funds it and makes contracts; the test reads what the agent stored.
@Suite(.serialized) struct LedgerScenarioTests {
    typealias CLI = CommandLineTests

    /// Runs grid-twin; `ledger` nil for the commands that talk to nodes only (`shard ...`).
    static func gridTwin(_ arguments: [String], ledger: String?) throws -> CLI.Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: (CLI.binary as NSString).deletingLastPathComponent + "/grid-twin")
        process.arguments = arguments + (ledger.map { ["--ledger", $0] } ?? [])
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return CLI.Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                          stderr: String(decoding: stderr, as: UTF8.self))
    }

    /// Polls `condition` every 50 ms for at most `seconds`.
    static func eventually(_ seconds: Double, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try await condition()
    }

    @Test func agentAndTwinsShareOneLedger() async throws {
        let dir = NSTemporaryDirectory() + "scenario-\(UUID().uuidString)"
        let ledger = dir + "/ledger.sqlite", config = dir + "/etc/config.toml", state = dir + "/state"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        #expect(try CLI.run(["init", "--config", config, "--state-dir", state, "--ledger", ledger, "--farm-id", "1"]).status == 0)
        // The shard server is not this test's subject, and its default port (9900) may be taken on a shared machine.
        try TestAgent.configure(config, dir: dir, [.blockMilliseconds(100), .shardServerAndNetworkOff,
                                                   .apiListen("127.0.0.1:\(try ShardServerDaemonTests.freePort())")])
        let (agent, _, agentErr) = try CLI.start(["run", "--config", config])
        defer { if agent.isRunning { kill(agent.processIdentifier, SIGKILL) } }

        // The agent creates the ledger and waits for its farm; a farmer creates it from another process.
        #expect(try await Self.eventually(10) { FileManager.default.fileExists(atPath: ledger) })
        let farmer = try Self.gridTwin(["twin", "create", "--key", dir + "/farmer.key"], ledger: ledger)
        #expect(farmer.status == 0, "\(farmer.stderr)")
        let farm = try Self.gridTwin(["farm", "create", "--name", "scenario", "--key", dir + "/farmer.key", "--json"], ledger: ledger)
        #expect(farm.stdout.contains("\"farm_id\" : \"1\""), "\(farm.stdout) \(farm.stderr)")
        #expect(try await Self.eventually(15) { FileManager.default.fileExists(atPath: state + "/node.json") }, "the agent did not register")
        let record = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: state + "/node.json"))) as? [String: Any]
        let nodeID = try #require(record?["nodeID"] as? Int)

        // A user: twin, funds, a contract on this node.
        let userKey = dir + "/user.key"
        #expect(try Self.gridTwin(["twin", "create", "--key", userKey], ledger: ledger).status == 0)
        let funded = try Self.gridTwin(["fund", "12.5", "--key", userKey], ledger: ledger)
        #expect(funded.stdout.contains("balance 12.5000000 TFT"), "\(funded.stdout) \(funded.stderr)")
        let created = try Self.gridTwin(["contract", "create", "--node", "\(nodeID)", "--hash", "4e4d2e444d250e2dae5dc5a755a9750f",
                                         "--key", userKey, "--json"], ledger: ledger)
        let contract = try JSONSerialization.jsonObject(with: Data(created.stdout.utf8)) as? [String: Any]
        let contractID = try #require(contract?["id"] as? Int, "\(created.stdout) \(created.stderr)")

        // The running agent's watcher puts it in the node's durable desired state.
        let book = try ContractBook(path: state + "/contracts.sqlite")
        #expect(try await Self.eventually(10) { try await book.entries().map(\.contract.id) == [UInt64(contractID)] })

        // Bad input is refused with the reason, and changes nothing.
        let bad = try Self.gridTwin(["contract", "create", "--node", "\(nodeID)", "--hash", "xyz", "--key", userKey], ledger: ledger)
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("32 lowercase hex characters"))
        let missingNode = try Self.gridTwin(["contract", "create", "--node", "999", "--hash", "3a062789bee1c2d5041a5b7f20613fde",
                                             "--key", userKey], ledger: ledger)
        #expect(missingNode.stderr.contains("SmartContractModule.NodeNotExists"))

        // Cancel: the agent drops it.
        #expect(try Self.gridTwin(["contract", "cancel", "--id", "\(contractID)", "--key", userKey], ledger: ledger).status == 0)
        #expect(try await Self.eventually(10) { try await book.entries().isEmpty })
        let events = try Self.gridTwin(["events", "--contract", "\(contractID)", "--json"], ledger: ledger)
        #expect(events.stdout.contains("contractCreated") && events.stdout.contains("nodeContractCanceled"))
        let ledgerView = try CLI.run(["ledger", "contracts", "--config", config])
        #expect(ledgerView.stdout.contains("Deleted(CanceledByUser)"), "\(ledgerView.stdout) \(ledgerView.stderr)")

        kill(agent.processIdentifier, SIGTERM)
        #expect(try await Self.eventually(10) { !agent.isRunning }, "agent did not stop on SIGTERM")
        agent.waitUntilExit()
        #expect(agent.terminationStatus == 0)
        let log = String(decoding: agentErr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(log.contains("farm 1 (node.farm_id) does not exist"), "the agent should say what it waits for")
        #expect(log.contains("msg=\"node registered\""))

        // With the agent gone, a standalone producer may take over; two at once are refused.
        let (producer, _, _) = try CLI.start(["ledger", "produce", "--config", config])
        defer { if producer.isRunning { kill(producer.processIdentifier, SIGKILL) } }
        #expect(try await Self.eventually(10) {
            (try CLI.run(["ledger", "blocks", "--last", "1", "--config", config])).stdout.contains("node-agent ledger produce")
        })
        let second = try CLI.run(["ledger", "produce", "--config", config])
        #expect(second.status != 0)
        #expect(second.stderr.contains("is already producing blocks"))
        kill(producer.processIdentifier, SIGTERM)
        #expect(try await Self.eventually(10) { !producer.isRunning })
    }
}
