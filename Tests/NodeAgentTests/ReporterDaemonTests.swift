@testable import NodeAgent
import CapacityReporter
import ChainClient
import Foundation
import GridTypes
import Testing

/// `node-agent run` killed with SIGKILL while a report is on its way to the chain, again and again:
/// the blocks are produced by this test, so it decides exactly when a report is in flight.
@Suite(.serialized) struct ReporterDaemonTests {
    typealias CLI = CommandLineTests

    /// Runs blocks on demand for the agent's ledger file.
    final class Blocks: @unchecked Sendable {
        let producer: BlockProducer
        private let lock = NSLock()
        private var automatic = false
        private var task: Task<Void, Never>?

        init(_ ledger: LocalLedger) { producer = BlockProducer(ledger: ledger, name: "test blocks") }

        var running: Bool {
            get { lock.withLock { automatic } }
            set { lock.withLock { automatic = newValue } }
        }

        func start() {
            task = Task { [producer] in
                while !Task.isCancelled {
                    if self.running { _ = try? await producer.produceBlock() }
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }
        }

        func one() async throws { _ = try await producer.produceBlock() }

        func stop() async {
            task?.cancel()
            await task?.value
            await producer.releaseLease()
        }
    }

    static func startAgent(config: String, log: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLI.binary)
        process.arguments = ["run", "--config", config]
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    /// Queues a call and waits for its block, longer than `LocalLedger.submit` does (the whole suite
    /// runs in parallel on two cores; this process's block task may wait for a thread).
    static func submit(_ ledger: LocalLedger, _ call: ChainCall, signer: Ed25519KeyPair) async throws -> Inclusion {
        let id = try ledger.enqueue(call, signer: signer)
        for attempt in 1...6 {
            do { return try await ledger.awaitOutcome(transaction: id, call: call.name) } catch {
                guard case .timeout = error, attempt < 6 else { throw error }
            }
        }
        throw ChainError.timeout(operation: call.name, seconds: 60)
    }

    static func kill9(_ process: Process) {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    @Test func theOutboxSurvivesSIGKILLInTheMiddleOfSending() async throws {
        let dir = NSTemporaryDirectory() + "reporter-kill-\(UUID().uuidString)"
        let ledgerPath = dir + "/ledger.sqlite", config = dir + "/etc/config.toml", state = dir + "/state", log = dir + "/agent.log"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try CLI.run(["init", "--config", config, "--state-dir", state, "--ledger", ledgerPath, "--farm-id", "1"]).status == 0)
        // Its own ports, admin socket and network names (networking is off, and an agent with
        // networking off removes whatever carries its names).
        try TestAgent.configure(config, dir: dir, [.blockMilliseconds(50), .noBlockProduction, .shardServerAndNetworkOff,
                                                   .apiListen("127.0.0.1:\(try ShardServerDaemonTests.freePort())")])
        let identity = try NodeIdentity.load(from: state + "/" + NodeIdentity.fileName)

        let ledger = try LocalLedger(path: ledgerPath, parameters: LedgerParameters(blockTimeMilliseconds: 50))
        let blocks = Blocks(ledger)
        blocks.start()
        blocks.running = true
        let farmer = try Ed25519KeyPair.generate()
        _ = try await Self.submit(ledger, .createTwin, signer: farmer)
        _ = try await Self.submit(ledger, .createFarm(name: "kill-test"), signer: farmer)

        // Start 0: registers and delivers its first reports; then killed while idle.
        var agent = try Self.startAgent(config: config, log: log)
        let reports = state + "/" + ReportStore.fileName
        func entries() -> [OutboxEntry] {
            guard FileManager.default.fileExists(atPath: reports),
                  let store = try? ReportStore(path: reports, signer: nil, readOnly: true) else { return [] }
            return (try? store.entries()) ?? []
        }
        #expect(try await LedgerScenarioTests.eventually(90) { entries().contains { $0.status == .delivered } },
                "the agent did not deliver its first report: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        blocks.running = false
        Self.kill9(agent)

        // Starts 1-4: each is killed with its start-up uptime report handed to the ledger but not
        // yet in a block. After even kills a block is made while the agent is dead (the report lands
        // then); after odd ones the report lands only after the restart.
        var killedInFlight = 0
        for cycle in 1...4 {
            let before = entries().map(\.id).max() ?? 0
            agent = try Self.startAgent(config: config, log: log)
            var inFlight = false
            let deadline = Date().addingTimeInterval(90)
            while Date() < deadline, agent.isRunning {
                // The ledger first: a transaction it holds was marked in flight before it was queued.
                let pending = try ledger.pendingTransactionCount()
                let newest = entries().filter { $0.id > before && $0.kind == .uptime }.last
                if pending > 0, newest?.status == .inflight {
                    inFlight = true
                    break
                }
                if pending > 0 { try await blocks.one() }   // let an older report land first
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(inFlight, "start \(cycle): no report went in flight")
            Self.kill9(agent)
            if inFlight { killedInFlight += 1 }
            if cycle % 2 == 0 { try await blocks.one() }
        }
        #expect(killedInFlight == 4)

        // The last start, with blocks: everything is delivered.
        blocks.running = true
        agent = try Self.startAgent(config: config, log: log)
        defer { if agent.isRunning { Self.kill9(agent) } }
        #expect(try await LedgerScenarioTests.eventually(90) {
            let all = entries()
            return all.count >= 6 && all.allSatisfy { !$0.status.isOpen }
        }, "\(entries().map { "\($0.id) \($0.status)" })")
        kill(agent.processIdentifier, SIGTERM)
        agent.waitUntilExit()
        #expect(agent.terminationStatus == 0)
        await blocks.stop()

        let all = entries()
        #expect(all.filter { $0.kind == .uptime }.count >= 6, "one start-up uptime report per start")
        #expect(all.allSatisfy { $0.status == .delivered || ($0.kind == .uptime && ($0.status == .superseded || $0.status == .rebuilt)) })
        // The chain holds each delivered uptime report exactly once, in the outbox's order.
        let record = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: state + "/node.json"))) as? [String: Any]
        let nodeID = try #require(record?["nodeID"] as? Int)
        let onChain = try ledger.uptimeReports(node: UInt32(nodeID), limit: 1000).sorted { $0.block < $1.block }
            .map { "\($0.timestamp)/\($0.uptime)" }
        let delivered = all.filter { $0.status == .delivered }.compactMap { entry -> String? in
            if case .uptime(let claim) = entry.content { return "\(claim.timestampHint)/\(claim.uptime)" }
            return nil
        }
        #expect(onChain == delivered)
        // Reports that landed while the agent was dead were found, not sent again.
        let store = try ReportStore(path: reports, signer: nil, readOnly: true)
        let found = try store.signedStatements().compactMap { SignedReportLog.decode($0.body)?.receipt }
            .filter { $0.detail?.contains("found on the chain after an interrupted submission") == true }
        #expect(found.count >= 2)

        // The signed log, exported by the agent's command and checked by the twin's.
        let exported = dir + "/reports.txt"
        let export = try CLI.run(["report", "export", "--config", config, "--out", exported])
        #expect(export.status == 0, "\(export.stderr)")
        let verify = try LedgerScenarioTests.gridTwin(["verify-reports", exported, "--node-key", identity.publicKey.hex], ledger: nil)
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
        #expect(verify.stdout.contains("OK: every signature verifies"))
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: exported)))
        bytes[bytes.count / 2] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: exported))
        let tampered = try LedgerScenarioTests.gridTwin(["verify-reports", exported, "--node-key", identity.publicKey.hex], ledger: nil)
        #expect(tampered.status == 1)
        #expect(tampered.stdout.contains("FAILED"))
        let status = try CLI.run(["report", "status", "--config", config])
        #expect(status.stdout.contains("0 report(s) pending"), "\(status.stdout) \(status.stderr)")
    }
}

/// The provisioner's reservations reach the chain through the reporter: a deployment accepted by
/// the twin API becomes the contract's used resources on the ledger and a signed statement.
@Suite(.serialized) struct ReporterProvisionerTests {
    typealias Scenario = LedgerScenarioTests

    @Test func anAdmittedDeploymentsReservationIsReportedForItsContract() async throws {
        let node = try ProvisionerCrashTests.Node()
        defer { node.cleanUp() }
        try node.start()
        defer { node.kill9() }
        #expect(try await Scenario.eventually(60) { FileManager.default.fileExists(atPath: node.ledgerPath) })
        #expect(try Scenario.gridTwin(["twin", "create", "--key", node.dir + "/farmer.key"], ledger: node.ledgerPath).status == 0)
        #expect(try Scenario.gridTwin(["farm", "create", "--name", "reports", "--key", node.dir + "/farmer.key"], ledger: node.ledgerPath).status == 0)
        #expect(try Scenario.gridTwin(["twin", "create", "--key", node.dir + "/user.key"], ledger: node.ledgerPath).status == 0)
        let ledger = try LocalLedger(path: node.ledgerPath)
        let user = try NodeIdentity.load(from: node.dir + "/user.key")
        let twinID = try #require(try await ledger.twinID(account: user.publicKey))
        let twin = ProvisionerCrashTests.Twin(keys: user.keyPair, id: twinID, apiPort: node.apiPort)
        #expect(try await Scenario.eventually(60) { FileManager.default.fileExists(atPath: node.state + "/node.json") })
        let nodeKey = try NodeIdentity.load(from: node.state + "/" + NodeIdentity.fileName).publicKey
        let nodeTwin = try #require(try await ledger.twinID(account: nodeKey))
        let nodeID = try #require(try await ledger.nodeID(twin: nodeTwin))
        #expect(try await Scenario.eventually(60) { ((try? await twin.call("GET", "/api/v1/deployments"))?.0 ?? 0) == 200 })

        var deployment = ProvisionerCrashTests.deployment(twin: twinID, version: 0, tag: 1)
        let created = try await ledger.submit(.createNodeContract(nodeID: nodeID, deploymentHash: DeploymentChallenge.hash(deployment),
                                                                  deploymentData: [], publicIPs: 0), signer: user.keyPair)
        guard case .contractCreated(let contract)? = created.events.first else { Issue.record("no contract"); return }
        deployment.contractID = contract.id
        DeploymentChallenge.sign(&deployment, twinID: twinID, keyPair: user.keyPair)
        let (status, reply) = try await twin.call("POST", "/api/v1/deployments", body: Array(try JSONEncoder().encode(deployment)))
        #expect(status == 202, "\(String(decoding: reply, as: UTF8.self))")

        // 16 MiB of volume and 1 MiB of zdb, on whichever disk type admission placed them.
        let reserved: UInt64 = 17 << 20
        #expect(try await Scenario.eventually(60) {
            guard let used = try ledger.contracts(node: nodeID).first(where: { $0.contract.id == contract.id })?.used else { return false }
            return used.sru + used.hru == reserved && used.cru == 0
        }, "the contract's used resources never reached the ledger")
        let store = try ReportStore(path: node.state + "/" + ReportStore.fileName, signer: nil, readOnly: true)
        let reported = try store.signedStatements().compactMap { SignedReportLog.decode($0.body)?.contractResources }.flatMap { $0 }
        #expect(reported.contains { $0.contractID == contract.id && $0.used.sru + $0.used.hru == reserved })
    }
}

@Suite struct ReporterConfigTests {
    @Test func theReporterKeysAreReadAndChecked() throws {
        let parser = ConfigParser(file: "test.toml")
        let config = try parser.parse("[reporter]\nreserve_disk_gib = 50\nmax_pending_reports = 500\n[provisioner]\novercommit_ratio = 2.5\n")
        #expect(config.reporter.reserveDiskGiB == 50)
        #expect(config.reporter.maxPendingReports == 500)
        let settings = ReporterSetup.settings(config)
        #expect(settings.policy.diskReserve == 50 << 30)
        #expect(settings.policy.cpuOvercommit == 2.5)
        #expect(settings.maxOpenReports == 500)
        #expect(settings.updatesNodeResources, "the embedded ledger keeps the registered capacity current")
        #expect(throws: NodeAgentError.self) { try parser.parse("[reporter]\nmax_pending_reports = 5\n") }
        #expect(throws: NodeAgentError.self) { try parser.parse("[reporter]\nreserve_disk_gib = -1\n") }
        var config2 = AgentConfig()
        config2.node.stateDir = "/srv/state"
        config2.shardServer.dataDirs = ["/srv/state", "/disk2/shards"]
        #expect(ReporterSetup.dataDirectories(config2) == ["/srv/state", "/disk2/shards"])
    }
}
