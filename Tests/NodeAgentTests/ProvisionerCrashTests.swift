import ChainClient
import Foundation
import GridTypes
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Crash safety of the provisioner as a farmer meets it: `node-agent run` is killed with SIGKILL at
/// random points while deployments are installed, updated and removed, restarted, and must converge
/// every time: the twin API shows exactly the live deployments with every workload ok, and the node
/// holds exactly their volumes (mounts and images) and namespaces, with capacity to match.
@Suite(.serialized) struct ProvisionerCrashTests {
    typealias CLI = CommandLineTests
    typealias Scenario = LedgerScenarioTests

    final class Node: @unchecked Sendable {
        let dir: String
        let config: String
        let state: String
        let ledgerPath: String
        let apiPort: Int
        var agent: Process?
        var starts = 0

        init() throws {
            dir = NSTemporaryDirectory() + "crash-\(UUID().uuidString)"
            config = dir + "/etc/config.toml"
            state = dir + "/state"
            ledgerPath = dir + "/ledger.sqlite"
            apiPort = try ShardServerDaemonTests.freePort()
            try TestAgent.initialize(dir: dir, config: config, state: state, ledger: ledgerPath, apiPort: apiPort)
        }

        func start() throws {
            let log = dir + "/agent-\(starts).log"
            starts += 1
            FileManager.default.createFile(atPath: log, contents: nil)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: CLI.binary)
            process.arguments = ["run", "--config", config]
            process.standardOutput = FileHandle(forWritingAtPath: log)
            process.standardError = FileHandle(forWritingAtPath: log)
            try process.run()
            agent = process
        }

        func kill9() {
            guard let agent, agent.isRunning else { return }
            kill(agent.processIdentifier, SIGKILL)
            agent.waitUntilExit()
        }

        func stop() async {
            guard let agent, agent.isRunning else { return }
            kill(agent.processIdentifier, SIGTERM)
            _ = try? await Scenario.eventually(15) { !agent.isRunning }
            if agent.isRunning { kill9() }
        }

        /// Volume mounts left by a failed run must not outlive the test.
        func cleanUp() {
            kill9()
            GridHarness.removeContainers(stateDir: state)
            TestAgent.unmountAll(under: dir)
            TestAgent.removeNetworkTables(config: config)
            try? FileManager.default.removeItem(atPath: dir)
        }

        func mountedVolumes() -> Set<String> { TestAgent.mountedVolumes(state: state) }

        func volumeImages() -> Set<String> {
            Set(((try? FileManager.default.contentsOfDirectory(atPath: state + "/volumes")) ?? []).filter { $0.hasSuffix(".img") || $0.hasSuffix(".tmp") })
        }

        func namespaces() -> Set<String> {
            Set(((try? FileManager.default.contentsOfDirectory(atPath: state + "/shards")) ?? []).filter { $0.hasPrefix("wl-") })
        }
    }

    struct Twin {
        let keys: Ed25519KeyPair
        let id: UInt32
        let apiPort: Int

        func call(_ method: String, _ path: String, body: [UInt8] = []) async throws -> (Int, Data) {
            var request = URLRequest(url: URL(string: "http://127.0.0.1:\(apiPort)\(path)")!, timeoutInterval: 10)
            request.httpMethod = method
            for (name, value) in TwinRequestSignature.headers(method: method, path: path, body: body, twinID: id, keyPair: keys) {
                request.setValue(value, forHTTPHeaderField: name)
            }
            if !body.isEmpty { request.httpBody = Data(body) }
            let (data, response) = try await URLSession.shared.data(for: request)
            return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
        }
    }

    static func deployment(twin: UInt32, version: UInt32, tag: Int) -> Deployment {
        var workloads = [Workload(version: version, name: "disk", data: .volume(DiskData(size: UInt64(16 + 16 * Int(version)) << 20))),
                         Workload(name: "ns", data: .zdb(ZdbData(size: 1 << 20, password: "pw\(tag)")))]
        if version % 2 == 1 { workloads.append(Workload(version: version, name: "extra\(version)", data: .zdb(ZdbData(size: 1 << 20)))) }
        return Deployment(version: version, twinID: twin, description: "crash trial \(tag)",
                          signatureRequirement: SignatureRequirement(requests: [SignatureRequest(twinID: twin, required: true, weight: 1)], weightRequired: 1),
                          workloads: workloads)
    }

    @Test func killedAtRandomPointsTheAgentConverges() async throws {
        let node = try Node()
        defer { node.cleanUp() }
        try node.start()
        defer { node.kill9() }
        #expect(try await Scenario.eventually(10) { FileManager.default.fileExists(atPath: node.ledgerPath) })
        #expect(try Scenario.gridTwin(["twin", "create", "--key", node.dir + "/farmer.key"], ledger: node.ledgerPath).status == 0)
        #expect(try Scenario.gridTwin(["farm", "create", "--name", "crash", "--key", node.dir + "/farmer.key"], ledger: node.ledgerPath).status == 0)
        #expect(try Scenario.gridTwin(["twin", "create", "--key", node.dir + "/user.key"], ledger: node.ledgerPath).status == 0)
        #expect(try Scenario.gridTwin(["fund", "1000", "--key", node.dir + "/user.key"], ledger: node.ledgerPath).status == 0)
        let ledger = try LocalLedger(path: node.ledgerPath)
        let user = try NodeIdentity.load(from: node.dir + "/user.key")
        let twinID = try #require(try await ledger.twinID(account: user.publicKey))
        let twin = Twin(keys: user.keyPair, id: twinID, apiPort: node.apiPort)
        #expect(try await Scenario.eventually(20) { FileManager.default.fileExists(atPath: node.state + "/node.json") }, "node did not register")
        let nodeKey = try NodeIdentity.load(from: node.state + "/" + NodeIdentity.fileName).publicKey
        let nodeTwin = try #require(try await ledger.twinID(account: nodeKey))
        let nodeID = try #require(try await ledger.nodeID(twin: nodeTwin))

        func apiUp() async -> Bool { ((try? await twin.call("GET", "/api/v1/deployments"))?.0 ?? 0) == 200 }
        #expect(try await Scenario.eventually(20) { await apiUp() }, "the twin API did not come up")

        var live = [UInt64: Deployment]()  // what should run: accepted and not canceled
        var generator = SystemRandomNumberGenerator()
        let trials = 30
        for trial in 0..<trials {
            let choice = live.isEmpty ? 0 : Int.random(in: 0..<3, using: &generator)
            switch choice {
            case 0:
                var d = Self.deployment(twin: twinID, version: 0, tag: trial)
                let created = try await ledger.submit(.createNodeContract(nodeID: nodeID, deploymentHash: DeploymentChallenge.hash(d),
                                                                          deploymentData: [], publicIPs: 0), signer: user.keyPair)
                guard case .contractCreated(let contract)? = created.events.first else { Issue.record("no contract: \(created.events)"); return }
                d.contractID = contract.id
                DeploymentChallenge.sign(&d, twinID: twinID, keyPair: user.keyPair)
                let (status, data) = try await twin.call("POST", "/api/v1/deployments", body: Array(try JSONEncoder().encode(d)))
                #expect(status == 202, "trial \(trial) deploy: \(String(decoding: data, as: UTF8.self))")
                live[d.contractID] = d
            case 1:
                let id = try #require(live.keys.randomElement(using: &generator))
                var d = try #require(live[id])
                d = Self.deployment(twin: twinID, version: d.version + 1, tag: Int(d.description.split(separator: " ").last.flatMap { Int($0) } ?? 0))
                d.contractID = id
                _ = try await ledger.submit(.updateNodeContract(contractID: id, deploymentHash: DeploymentChallenge.hash(d), deploymentData: []),
                                            signer: user.keyPair)
                DeploymentChallenge.sign(&d, twinID: twinID, keyPair: user.keyPair)
                let (status, data) = try await twin.call("PUT", "/api/v1/deployments/\(id)", body: Array(try JSONEncoder().encode(d)))
                #expect(status == 202, "trial \(trial) update: \(String(decoding: data, as: UTF8.self))")
                live[id] = d
            default:
                let id = try #require(live.keys.randomElement(using: &generator))
                _ = try await ledger.submit(.cancelContract(contractID: id), signer: user.keyPair)
                live[id] = nil
            }
            // The kill lands anywhere in the work that follows: mkfs, mounts, namespace creation,
            // result bookkeeping, removal.
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...400, using: &generator)))
            node.kill9()
            try node.start()
            let converged = try await Scenario.eventually(30) {
                guard await apiUp() else { return false }
                let (status, data) = try await twin.call("GET", "/api/v1/deployments")
                guard status == 200 else { return false }
                let deployments = try JSONDecoder().decode([Deployment].self, from: data)
                guard Set(deployments.map(\.contractID)) == Set(live.keys) else { return false }
                for d in deployments {
                    guard d.version == live[d.contractID]?.version,
                          d.workloads.allSatisfy({ $0.result?.state == .ok }) else { return false }
                }
                let volumes = Set(live.keys.map { "wl-\($0)-disk" })
                let namespaces = Set(live.values.flatMap { d in d.workloads.filter { $0.type == "zdb" }.map { "wl-\(d.contractID)-\($0.name)" } })
                return node.mountedVolumes() == volumes && node.volumeImages() == Set(volumes.map { $0 + ".img" })
                    && node.namespaces() == namespaces
            }
            if !converged {
                let (_, data) = try await twin.call("GET", "/api/v1/deployments")
                Issue.record("""
                    trial \(trial) (operation \(choice)) did not converge: live \(live.keys.sorted()), API \(String(decoding: data, as: UTF8.self).prefix(2000)),
                    mounts \(node.mountedVolumes().sorted()), images \(node.volumeImages().sorted()), namespaces \(node.namespaces().sorted())
                    """)
                return
            }
            // Capacity: exactly the live deployments' reservations.
            let (_, statsData) = try await twin.call("GET", "/api/v1/node/statistics")
            let stats = try JSONDecoder().decode([String: JSONValue].self, from: statsData)
            let expected = live.values.flatMap(\.workloads).reduce(UInt64(0)) { $0 + $1.reservation.hru + $1.reservation.sru }
            let used = (stats["used"]?["hru"]?.uint64 ?? 0) + (stats["used"]?["sru"]?.uint64 ?? 0)
            #expect(used == expected, "trial \(trial): reserved \(used) bytes of disk, expected \(expected)")
        }
        await node.stop()
    }
}
