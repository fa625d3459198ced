import ChainClient
import Foundation
import Provisioner
import Testing

/// `node-agent run` with `chain.backend = "tfchain"` against the Python TFChain double
/// (Tests/ChainClientTests/tfchain_double) on loopback: the farmer registered the node beforehand;
/// the agent must find it, register nothing itself, and follow contracts into its desired state.
@Suite(.serialized, .timeLimit(.minutes(3))) struct TFChainScenarioTests {
    typealias CLI = CommandLineTests

    @Test func agentFollowsContractsOnTFChain() async throws {
        let dir = NSTemporaryDirectory() + "tfchain-scenario-\(UUID().uuidString)"
        let config = dir + "/etc/config.toml", state = dir + "/state"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        // The double, killed by its PID at the end.
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../ChainClientTests/tfchain_double/tfchain_double.py").standardized.path
        let double = Process()
        double.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        double.arguments = ["python3", script, "--ports", "0", "--block-ms", "150", "--lifetime", "170"]
        let stdin = Pipe(), stdout = Pipe()
        double.standardInput = stdin
        double.standardOutput = stdout
        try double.run()
        defer {
            // SIGTERM, then SIGKILL if it has not gone within 5 s: never an unbounded wait.
            let pid = double.processIdentifier
            if double.isRunning { kill(pid, SIGTERM) }
            let deadline = Date().addingTimeInterval(5)
            while double.isRunning, Date() < deadline { usleep(20_000) }
            if double.isRunning { kill(pid, SIGKILL) }
            try? stdin.fileHandleForWriting.close()
        }
        // The READY line comes within seconds; availableData blocks, so read it on its own thread.
        let ready: String = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var text = ""
                while !text.contains("\n") {
                    let chunk = stdout.fileHandleForReading.availableData
                    if chunk.isEmpty { break }
                    text += String(decoding: chunk, as: UTF8.self)
                }
                continuation.resume(returning: text)
            }
        }
        let port = try #require(ready.split(separator: "\n").first?.split(separator: " ").dropFirst().first.flatMap { Int($0) }, "double: \(ready)")
        let url = "ws://127.0.0.1:\(port)"
        let control = JSONRPCClient(configuration: RPCConfiguration(urls: [url], requestTimeout: .seconds(20)))
        try await control.start()

        let initialized = try CLI.run(["init", "--config", config, "--state-dir", state, "--farm-id", "1"])
        #expect(initialized.status == 0, "\(initialized.stderr)")
        let publicKey = try #require(initialized.stdout.split(separator: "\n").first { $0.contains("public key (hex): 0x") }?
            .components(separatedBy: "0x").last)
        let registered = try await control.request("test_registerNode", [.string(publicKey), .number(1)])
        let nodeID = try #require(registered["node_id"]?.uint64)
        let userTwin = try #require(try await control.request("test_registerTwin", [.string(String(repeating: "ab", count: 32))]).uint64)

        // The shard server is not this test's subject, and its default port (9900) may be taken on a shared machine.
        try TestAgent.configure(config, dir: dir, [.tfchain(url: url), .shardServerAndNetworkOff,
                                                   .apiListen("127.0.0.1:\(try ShardServerDaemonTests.freePort())")])
        let (agent, _, agentErr) = try CLI.start(["run", "--config", config])
        defer { if agent.isRunning { kill(agent.processIdentifier, SIGKILL) } }

        #expect(try await LedgerScenarioTests.eventually(30) { FileManager.default.fileExists(atPath: state + "/node.json") }, "the agent did not find its node")
        let record = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: state + "/node.json"))) as? [String: Any]
        #expect(record?["nodeID"] as? Int == Int(nodeID))
        #expect((record?["chain"] as? String)?.hasPrefix("tfchain:") == true)

        let hash = "4e4d2e444d250e2dae5dc5a755a9750f"
        let contractID = try #require(try await control.request("test_createContract", [.number(Double(nodeID)), .number(Double(userTwin)), .string(hash)]).uint64)
        let book = try ContractBook(path: state + "/contracts.sqlite")
        #expect(try await LedgerScenarioTests.eventually(20) { try await book.entries().map(\.contract.id) == [contractID] })
        _ = try await control.request("test_gracePeriod", [.number(Double(contractID))])
        #expect(try await LedgerScenarioTests.eventually(20) {
            if case .gracePeriod? = try await book.entries().first?.contract.state { return true } else { return false }
        })
        _ = try await control.request("test_cancel", [.number(Double(contractID))])
        #expect(try await LedgerScenarioTests.eventually(20) { try await book.entries().isEmpty })
        // The agent sent only its signed reports (uptime at start-up); registration is the farmer's.
        let submitted = try await control.request("test_submitted")
        let calls = submitted.array ?? []
        #expect(calls.contains { $0["function"]?.string == "report_uptime_v2" }, "\(submitted)")
        #expect(calls.allSatisfy { call in
            ["report_uptime_v2", "report_contract_resources"].contains(call["function"]?.string ?? "")
                && call["signature_ok"] == .bool(true) && call["call_bytes_match"] == .bool(true)
        }, "\(submitted)")

        kill(agent.processIdentifier, SIGTERM)
        #expect(try await LedgerScenarioTests.eventually(15) { !agent.isRunning }, "agent did not stop on SIGTERM")
        agent.waitUntilExit()
        #expect(agent.terminationStatus == 0)
        let log = String(decoding: agentErr.fileHandleForReading.availableData, as: UTF8.self)
        #expect(log.contains("watching contracts"), "\(log.suffix(2000))")
        await control.stop()
    }
}
