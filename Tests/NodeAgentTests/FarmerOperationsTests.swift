import ChainClient
import Foundation
import GridTypes
@testable import NodeAgent
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The farmer's commands against a running `node-agent run` (embedded ledger, free ports, the admin
/// socket and a notify socket in a temp directory) with real zdb and volume deployments made through
/// the twin API: status and --json, workloads, events, logs, drain, metrics scraped and parsed,
/// systemd's notify protocol end to end, and a graceful restart under load that keeps every workload.
@Suite(.serialized) struct FarmerOperationsTests {
    typealias CLI = CommandLineTests
    typealias Scenario = LedgerScenarioTests
    typealias Crash = ProvisionerCrashTests

    final class AgentNode: @unchecked Sendable {
        let dir: String
        let config: String
        let state: String
        let ledgerPath: String
        let socket: String
        let notifyPath: String
        let apiPort: Int
        let metricsPort: Int
        var agent: Process?
        var starts = 0

        init(watchdogMicroseconds: Int = 1_500_000) throws {
            dir = NSTemporaryDirectory() + "ops-\(UUID().uuidString.prefix(12))"
            config = dir + "/etc/config.toml"
            state = dir + "/state"
            ledgerPath = dir + "/ledger.sqlite"
            socket = dir + "/run/admin.sock"  // where TestAgent.configure puts it
            notifyPath = dir + "/notify.sock"
            apiPort = try ShardServerDaemonTests.freePort()
            metricsPort = try ShardServerDaemonTests.freePort()
            self.watchdogMicroseconds = watchdogMicroseconds
            try TestAgent.initialize(dir: dir, config: config, state: state, ledger: ledgerPath, apiPort: apiPort, metricsPort: metricsPort)
        }

        let watchdogMicroseconds: Int

        func start() throws {
            let log = dir + "/agent-\(starts).log"
            starts += 1
            FileManager.default.createFile(atPath: log, contents: nil)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: CLI.binary)
            process.arguments = ["run", "--config", config]
            var environment = ProcessInfo.processInfo.environment
            environment["NOTIFY_SOCKET"] = notifyPath
            environment["WATCHDOG_USEC"] = "\(watchdogMicroseconds)"
            environment.removeValue(forKey: "WATCHDOG_PID")
            process.environment = environment
            process.standardOutput = FileHandle(forWritingAtPath: log)
            process.standardError = FileHandle(forWritingAtPath: log)
            try process.run()
            agent = process
        }

        func log() -> String {
            (0..<starts).map { (try? String(contentsOfFile: dir + "/agent-\($0).log", encoding: .utf8)) ?? "" }.joined(separator: "\n---\n")
        }

        func cli(_ arguments: [String]) throws -> CLI.Result {
            try CLI.run(arguments + ["--config", config])
        }

        func kill9() {
            guard let agent, agent.isRunning else { return }
            kill(agent.processIdentifier, SIGKILL)
            agent.waitUntilExit()
        }

        func cleanUp() {
            kill9()
            // Containers outlive their agent by design; a test's must not outlive the test.
            GridHarness.removeContainers(stateDir: state)
            // Volumes and the containers' root filesystems alike.
            TestAgent.unmountAll(under: dir)
            TestAgent.removeNetworkTables(config: config)
            try? FileManager.default.removeItem(atPath: dir)
        }

        func mountedVolumes() -> Set<String> { TestAgent.mountedVolumes(state: state) }
    }

    /// Collects what the agent tells systemd, on a background thread.
    final class NotifyCollector: @unchecked Sendable {
        let socket: OperationsTests.NotifySocket
        private let lock = NSLock()
        private var received = [String]()
        private var running = true
        private var thread: Thread?

        init(path: String) throws {
            socket = try OperationsTests.NotifySocket(path)
            let thread = Thread { [weak self] in
                while let self, self.isRunning {
                    if let message = self.socket.receive() { self.append(message) }
                }
            }
            self.thread = thread
            thread.start()
        }

        var isRunning: Bool { lock.withLock { running } }
        func append(_ message: String) { lock.withLock { received.append(message) } }
        var messages: [String] { lock.withLock { received } }
        func stop() { lock.withLock { running = false } }
    }

    struct Grid {
        let node: AgentNode
        let ledger: LocalLedger
        let user: NodeIdentity
        let twin: Crash.Twin
        let nodeID: UInt32

        /// Farm, twin and funds on the node's ledger, and the node registered.
        static func make(_ node: AgentNode) async throws -> Grid {
            #expect(try await Scenario.eventually(15) { FileManager.default.fileExists(atPath: node.ledgerPath) })
            for arguments in [["twin", "create", "--key", node.dir + "/farmer.key"], ["farm", "create", "--name", "ops", "--key", node.dir + "/farmer.key"],
                              ["twin", "create", "--key", node.dir + "/user.key"], ["fund", "1000", "--key", node.dir + "/user.key"]] {
                let result = try Scenario.gridTwin(arguments, ledger: node.ledgerPath)
                #expect(result.status == 0, "grid-twin \(arguments): \(result.stderr)")
            }
            let ledger = try LocalLedger(path: node.ledgerPath)
            let user = try NodeIdentity.load(from: node.dir + "/user.key")
            let twinID = try #require(try await ledger.twinID(account: user.publicKey))
            #expect(try await Scenario.eventually(30) { FileManager.default.fileExists(atPath: node.state + "/node.json") }, "node did not register")
            let nodeKey = try NodeIdentity.load(from: node.state + "/" + NodeIdentity.fileName).publicKey
            let nodeTwin = try #require(try await ledger.twinID(account: nodeKey))
            let nodeID = try #require(try await ledger.nodeID(twin: nodeTwin))
            return Grid(node: node, ledger: ledger, user: user, twin: Crash.Twin(keys: user.keyPair, id: twinID, apiPort: node.apiPort), nodeID: nodeID)
        }

        /// A new contract and its deployment sent to the node: the API's status and the deployment.
        func deploy(tag: Int) async throws -> (Int, Deployment) {
            try await deploy(Crash.deployment(twin: twin.id, version: 0, tag: tag))
        }

        /// A container (busybox, running `command`) with a volume, as a new contract (`tag` keeps
        /// the deployment's hash, and so its contract, unique).
        func deployContainer(tag: Int, image: (url: String, digest: String), command: String) async throws -> (Int, Deployment) {
            var deployment = ContainerWorkloadTests.deployment(twin: twin.id, image: image, command: command)
            deployment.description = "web \(tag)"
            return try await deploy(deployment)
        }

        func deploy(_ deployment: Deployment) async throws -> (Int, Deployment) {
            var d = deployment
            let created = try await ledger.submit(.createNodeContract(nodeID: nodeID, deploymentHash: DeploymentChallenge.hash(d), deploymentData: [],
                                                                      publicIPs: 0), signer: user.keyPair)
            guard case .contractCreated(let contract)? = created.events.first else { throw POSIXError(.EIO) }
            d.contractID = contract.id
            DeploymentChallenge.sign(&d, twinID: twin.id, keyPair: user.keyPair)
            let (status, _) = try await twin.call("POST", "/api/v1/deployments", body: Array(try JSONEncoder().encode(d)))
            return (status, d)
        }

        /// The PID of each container workload of these deployments, from the API's results.
        func containerPIDs(_ ids: Set<UInt64>) async throws -> [UInt64: Int] {
            var pids = [UInt64: Int]()
            for id in ids {
                let (status, data) = try await twin.call("GET", "/api/v1/deployments/\(id)")
                guard status == 200 else { continue }
                let deployment = try JSONDecoder().decode(Deployment.self, from: data)
                pids[id] = deployment.workloads.first(where: { $0.type == WorkloadType.container.rawValue })?.result?.data?["pid"]?.uint64.map { Int($0) }
            }
            return pids
        }

        func allOK(_ ids: Set<UInt64>) async throws -> Bool {
            let (status, data) = try await twin.call("GET", "/api/v1/deployments")
            guard status == 200 else { return false }
            let deployments = try JSONDecoder().decode([Deployment].self, from: data)
            let byID = Dictionary(deployments.map { ($0.contractID, $0) }, uniquingKeysWith: { a, _ in a })
            return ids.allSatisfy { id in byID[id]?.workloads.allSatisfy { $0.result?.state == .ok } == true }
        }
    }

    static func status(_ node: AgentNode) throws -> (Int32, StatusReport?) {
        let result = try node.cli(["status", "--json"])
        return (result.status, try? AdminJSON.decoder().decode(StatusReport.self, from: Data(result.stdout.utf8)))
    }

    static func scrape(port: Int) async throws -> [String: Double] {
        let (data, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/metrics")!)
        #expect((response as? HTTPURLResponse)?.statusCode == 200)
        return try OperationsTests.parseExposition(String(decoding: data, as: UTF8.self))
    }

    @Test func farmerCommandsAgainstARunningAgent() async throws {
        let node = try AgentNode()
        defer { node.cleanUp() }

        // Before the agent runs: say so, and how to start it.
        let down = try node.cli(["status"])
        #expect(down.status == 3)
        #expect(down.stderr.contains("not running") && down.stderr.contains("systemctl start node-agent") && down.stderr.contains("node-agent run"),
                "\(down.stderr)")

        let notify = try NotifyCollector(path: node.notifyPath)
        defer { notify.stop() }
        try node.start()
        // Up but waiting for its farm: not Ready, exit 1, and the reason.
        #expect(try await Scenario.eventually(30) { try Self.status(node).1?.phase == "registering" }, "\(node.log().suffix(2000))")
        let waiting = try node.cli(["status"])
        #expect(waiting.status == 1)
        #expect(waiting.stdout.contains("NOT READY (registering)") && waiting.stdout.contains("registering the node on the chain (farm 1)"),
                "\(waiting.stdout)")
        #expect(!notify.messages.contains { $0.hasPrefix("READY=1") })
        let grid = try await Grid.make(node)
        #expect(try await Scenario.eventually(30) { notify.messages.contains { $0.hasPrefix("READY=1") } }, "no READY=1: \(notify.messages)")
        let ready = try #require(notify.messages.first { $0.hasPrefix("READY=1") })
        #expect(ready.contains("STATUS=running: 0 deployment(s)") && ready.contains("MAINPID=\(node.agent?.processIdentifier ?? 0)"), "\(ready)")
        #expect(notify.messages.contains { $0.hasPrefix("STATUS=registering") }, "\(notify.messages)")

        var deployed = [Deployment]()
        for tag in 0..<3 {
            let (status, d) = try await grid.deploy(tag: tag)
            #expect(status == 202)
            deployed.append(d)
        }
        let ids = Set(deployed.map(\.contractID))
        #expect(try await Scenario.eventually(60) { try await grid.allOK(ids) }, "deployments did not converge: \(node.log().suffix(3000))")

        // The socket is root's only.
        var info = stat()
        #expect(stat(node.socket, &info) == 0 && info.st_mode & S_IFMT == S_IFSOCK && info.st_mode & 0o777 == 0o600)

        // status --json: the numbers the agent enforces.
        let (code, parsed) = try Self.status(node)
        let report = try #require(parsed)
        #expect(code == 0 && report.ready, "\(report.notReadyReasons)")
        #expect(report.node.nodeID == grid.nodeID && report.node.farmID == 1)
        #expect(report.node.pid == node.agent?.processIdentifier)
        #expect((report.node.chain.finalizedBlock ?? 0) > 0 && (report.node.chain.processedBlock ?? 0) > 0)
        #expect(report.work.deployments == ["ok": 3])
        #expect(report.work.awaitingDeployment == .init(contracts: 0))
        let workloadCount = deployed.map(\.workloads.count).reduce(0, +)
        #expect(report.work.workloads == ["ok": workloadCount])
        let reserved = deployed.flatMap(\.workloads).reduce(UInt64(0)) { $0 + $1.reservation.hru + $1.reservation.sru }
        let capacity = try #require(report.capacity)
        #expect(capacity.used.hru + capacity.used.sru == reserved)
        #expect(capacity.total.cru > 0 && capacity.allocatable.mru > 0)
        // Every zdb workload's namespace, and the shard server's own "default" namespace.
        let zdbCount = deployed.flatMap(\.workloads).filter { $0.type == "zdb" }.count
        #expect(report.work.shardNamespaces == zdbCount + 1)
        // The reporter's conditions and outbox: every condition is there and none is bad (the node is Ready).
        let conditions = try #require(report.node.conditions, "the reporter's conditions are not wired into status")
        #expect(Set(conditions.map(\.type)) == ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure", "ChainReachable",
                                                 "ReportsDelivering", "ClockConsistent"])
        #expect(conditions.allSatisfy { !$0.bad }, "\(conditions)")
        #expect(report.work.reports != nil)

        // The text: three blocks, Ready.
        let text = try node.cli(["status"])
        #expect(text.status == 0)
        for needle in ["node-agent: Ready", "NODE", "CAPACITY", "WORK", "node        \(grid.nodeID)", "deployments 3    3 ok",
                       "workloads   \(workloadCount)", "conditions  Ready=", "MemoryPressure=False", "reports     "] {
            #expect(text.stdout.contains(needle), "missing \(needle) in:\n\(text.stdout)")
        }

        // --watch refreshes until interrupted.
        let (watcher, watchOut, _) = try CLI.start(["status", "--watch", "--interval", "0.5", "--config", node.config])
        try await Task.sleep(for: .seconds(2))
        kill(watcher.processIdentifier, SIGINT)
        watcher.waitUntilExit()
        let screens = String(decoding: watchOut.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(screens.components(separatedBy: "node-agent: Ready").count >= 3, "\(screens.prefix(500))")
        #expect(screens.contains("\u{1B}[H\u{1B}[2J"))

        // workloads --json.
        let listed = try node.cli(["workloads", "--json"])
        #expect(listed.status == 0)
        let entries = try AdminJSON.decoder().decode([WorkloadEntry].self, from: Data(listed.stdout.utf8))
        #expect(entries.count == workloadCount && entries.allSatisfy { $0.state == "ok" && $0.twinID == grid.twin.id })
        #expect(Set(entries.map(\.contractID)) == ids)
        #expect(try node.cli(["workloads"]).stdout.contains("CONTRACT"))

        // Metrics, scraped and parsed.
        let series = try await Self.scrape(port: node.metricsPort)
        #expect(series["node_agent_ready"] == 1)
        #expect(series["node_agent_deployments{state=\"ok\"}"] == 3)
        #expect(series["node_agent_workloads{type=\"zdb\",state=\"ok\"}"] == Double(zdbCount))
        let usedDisk = (series["node_agent_capacity_disk_bytes{disk=\"ssd\",kind=\"used\"}"] ?? -1)
            + (series["node_agent_capacity_disk_bytes{disk=\"hdd\",kind=\"used\"}"] ?? -1)
        #expect(usedDisk == Double(reserved))
        #expect((series["node_agent_chain_finalized_block"] ?? 0) > 0)
        #expect(series["node_agent_chain_lag_blocks"] != nil)
        #expect(series["node_agent_shard_namespaces"] == Double(report.work.shardNamespaces ?? 0))
        #expect(series["node_agent_shard_commands_total"] != nil)

        // drain: running deployments stay, new ones are refused; undrain takes them again.
        let drained = try node.cli(["drain"])
        #expect(drained.status == 0 && drained.stdout.contains("draining"), "\(drained.stderr)")
        #expect(try Self.status(node).1?.node.draining == true)
        #expect(FileManager.default.fileExists(atPath: node.state + "/draining"))
        let (refused, abandoned) = try await grid.deploy(tag: 100)
        #expect(refused == 503)
        #expect(try await Self.scrape(port: node.metricsPort)["node_agent_draining"] == 1)
        // Its contract exists but its deployment never came: status and metrics say so.
        #expect(try await Scenario.eventually(30) { try Self.status(node).1?.work.awaitingDeployment?.contracts == 1 })
        let awaiting = try #require(try Self.status(node).1?.work.awaitingDeployment)
        #expect(awaiting.oldestContractID == abandoned.contractID && awaiting.oldestWaitingBlocks != nil, "\(awaiting)")
        #expect(try node.cli(["status"]).stdout.contains("contracts   1 waiting for their deployment (oldest: contract \(abandoned.contractID), "))
        #expect(try await Self.scrape(port: node.metricsPort)["node_agent_contracts_awaiting_deployment"] == 1)
        #expect(try node.cli(["undrain"]).status == 0)
        let (again, extra) = try await grid.deploy(tag: 101)
        #expect(again == 202)

        // events: lifecycle, chain, provisioner, drain.
        let eventsResult = try node.cli(["events", "--json", "--limit", "500"])
        let events = try AdminJSON.decoder().decode([AgentEvent].self, from: Data(eventsResult.stdout.utf8))
        #expect(events.contains { $0.source == .agent && $0.message.hasPrefix("ready: 0 deployment(s) restored") })
        #expect(events.contains { $0.source == .agent && $0.message.hasPrefix("draining") })
        #expect(events.contains { $0.source == .agent && $0.message.hasPrefix("undrained") })
        for d in deployed {
            #expect(events.contains { $0.source == .chain && $0.contractID == d.contractID && $0.message.contains("contract created") })
            #expect(events.contains { $0.source == .provisioner && $0.contractID == d.contractID && $0.workload == "disk" && $0.message.contains("ok") })
        }
        #expect(events.map(\.time) == events.map(\.time).sorted())
        #expect(try node.cli(["events"]).stdout.contains("contract created on chain"))

        // logs: only containers write them; unknown workloads are named.
        let noLogs = try node.cli(["logs", "\(deployed[0].contractID)/disk"])
        #expect(noLogs.status == 1 && noLogs.stderr.contains("only container workloads write logs"), "\(noLogs.stderr)")
        let unknown = try node.cli(["logs", "\(deployed[0].contractID)/nope"])
        #expect(unknown.status == 1 && unknown.stderr.contains("no workload"), "\(unknown.stderr)")
        #expect(try node.cli(["logs", "not-a-target"]).status != 0)

        // Watchdog pings while healthy.
        #expect(try await Scenario.eventually(10) { notify.messages.filter { $0 == "WATCHDOG=1" }.count >= 2 }, "\(notify.messages)")

        // SIGTERM: STOPPING=1, a clean exit, the socket gone; then "not running".
        #expect(try await Scenario.eventually(60) { try await grid.allOK([extra.contractID]) })
        let agent = try #require(node.agent)
        kill(agent.processIdentifier, SIGTERM)
        #expect(try await Scenario.eventually(40) { !agent.isRunning }, "the agent did not stop")
        #expect(agent.terminationStatus == 0, "\(node.log().suffix(3000))")
        #expect(notify.messages.contains { $0.hasPrefix("STOPPING=1") }, "\(notify.messages)")
        #expect(!FileManager.default.fileExists(atPath: node.socket))
        #expect(try node.cli(["status"]).status == 3)
    }

    @Test func gracefulRestartUnderLoadKeepsEveryWorkload() async throws {
        let node = try AgentNode()
        defer { node.cleanUp() }
        try node.start()
        let grid = try await Grid.make(node)
        #expect(try await Scenario.eventually(30) { try Self.status(node).0 == 0 }, "not Ready: \(node.log().suffix(2000))")

        var accepted = Set<UInt64>()
        for tag in 0..<4 {
            let (status, d) = try await grid.deploy(tag: tag)
            #expect(status == 202)
            accepted.insert(d.contractID)
        }
        // Two containers as well: the restart must leave their processes alone and adopt them again.
        let image = try ContainerWorkloadTests.busyboxImage(in: node.dir)
        var containers = Set<UInt64>()
        for tag in 0..<2 {
            let (status, d) = try await grid.deployContainer(tag: tag, image: image, command: "exec sleep 100000")
            #expect(status == 202)
            containers.insert(d.contractID)
        }
        #expect(try await Scenario.eventually(60) { try await grid.allOK(accepted.union(containers)) })
        let pidsBefore = try await grid.containerPIDs(containers)
        #expect(pidsBefore.count == 2 && pidsBefore.values.allSatisfy { kill(pid_t($0), 0) == 0 }, "\(pidsBefore)")
        // What the workloads hold before the restart: a file in each volume, each image's inode.
        var inodes = [String: UInt64]()
        for id in accepted {
            let volume = node.state + "/volumes/wl-\(id)-disk"
            try "kept \(id)".write(toFile: volume + "/marker", atomically: false, encoding: .utf8)
            var info = stat()
            #expect(stat(volume + ".img", &info) == 0)
            inodes[volume] = UInt64(info.st_ino)
        }
        let namespacesBefore = Set(try FileManager.default.contentsOfDirectory(atPath: node.state + "/shards").filter { $0.hasPrefix("wl-") })

        // Load: deployments and status queries keep coming while the agent is told to stop.
        let load = Task { () -> Set<UInt64> in
            var ok = Set<UInt64>()
            for tag in 1000..<1100 {
                if Task.isCancelled { break }
                if let (status, d) = try? await grid.deploy(tag: tag), status == 202 { ok.insert(d.contractID) }
                _ = try? node.cli(["status", "--json"])
            }
            return ok
        }
        try await Task.sleep(for: .seconds(2))
        let agent = try #require(node.agent)
        kill(agent.processIdentifier, SIGTERM)
        #expect(try await Scenario.eventually(40) { !agent.isRunning }, "the agent did not stop")
        #expect(agent.terminationStatus == 0, "\(node.log().suffix(3000))")
        try await Task.sleep(for: .milliseconds(500))
        load.cancel()
        accepted.formUnion(await load.value)

        // Down: the workloads are still there, the containers' processes included.
        #expect(Set(accepted.map { "wl-\($0)-disk" }).isSubset(of: node.mountedVolumes()))
        #expect(pidsBefore.values.allSatisfy { kill(pid_t($0), 0) == 0 }, "a container died with its agent")

        try node.start()
        #expect(try await Scenario.eventually(60) { try Self.status(node).0 == 0 },
                "not Ready after restart: \((try? node.cli(["status"]))?.stdout ?? "no status")\n\(node.log().suffix(2000))")
        let restored = try await Scenario.eventually(60) { try await grid.allOK(accepted.union(containers)) }
        let (_, listing) = try await grid.twin.call("GET", "/api/v1/deployments")
        let states = (try? JSONDecoder().decode([Deployment].self, from: listing))?.map { d in
            "\(d.contractID): " + d.workloads.map { "\($0.name)=\($0.result?.state.rawValue ?? "none") \($0.result?.message ?? "")" }.joined(separator: ", ")
        } ?? []
        #expect(restored, "accepted deployments not ok after restart: \(states)\n\(node.log().suffix(3000))")
        // Re-adopted, not restarted: the same processes.
        #expect(try await grid.containerPIDs(containers) == pidsBefore)
        for (volume, inode) in inodes {
            var info = stat()
            #expect(stat(volume + ".img", &info) == 0 && UInt64(info.st_ino) == inode, "\(volume) was recreated")
            #expect((try? String(contentsOfFile: volume + "/marker", encoding: .utf8))?.hasPrefix("kept") == true, "\(volume) lost its data")
        }
        let namespacesAfter = Set(try FileManager.default.contentsOfDirectory(atPath: node.state + "/shards").filter { $0.hasPrefix("wl-") })
        #expect(namespacesBefore.isSubset(of: namespacesAfter))
        let events = try AdminJSON.decoder().decode([AgentEvent].self, from: Data(try node.cli(["events", "--json", "--limit", "1000"]).stdout.utf8))
        #expect(events.contains { $0.message.hasPrefix("stopping") })
        #expect(events.contains { $0.message.hasPrefix("stopped after") })
        #expect(events.contains { $0.message.hasPrefix("ready: \(accepted.count + containers.count) deployment(s) restored") },
                "\(events.suffix(10).map(\.message))")
        if let second = node.agent {
            kill(second.processIdentifier, SIGTERM)
            _ = try await Scenario.eventually(40) { !second.isRunning }
        }
    }

    @Test func installAndUninstallIntoATempRootAreIdempotent() throws {
        let root = NSTemporaryDirectory() + "install-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let first = try CLI.run(["install", "--root", root, "--farm-id", "3"])
        #expect(first.status == 0, "\(first.stderr)")
        for path in ["/usr/local/bin/node-agent", "/etc/systemd/system/node-agent.service", "/etc/node-agent/config.toml",
                     "/var/lib/node-agent/identity.key"] {
            #expect(first.stdout.contains("created   \(root)\(path)"), "\(first.stdout)")
        }
        var info = stat()
        #expect(stat(root + "/var/lib/node-agent", &info) == 0 && info.st_mode & 0o777 == 0o700)
        #expect(stat(root + "/usr/local/bin/node-agent", &info) == 0 && info.st_mode & 0o777 == 0o755)
        #expect(stat(root + "/var/lib/node-agent/identity.key", &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(FileManager.default.contents(atPath: root + "/usr/local/bin/node-agent") == FileManager.default.contents(atPath: CLI.binary))
        #expect(try String(contentsOfFile: root + "/etc/node-agent/config.toml", encoding: .utf8).contains("farm_id = 3"))
        let unit = try String(contentsOfFile: root + "/etc/systemd/system/node-agent.service", encoding: .utf8)
        #expect(unit.contains("Type=notify") && unit.contains("KillMode=process") && unit.contains("Delegate=yes"))
        let key = FileManager.default.contents(atPath: root + "/var/lib/node-agent/identity.key")

        let second = try CLI.run(["install", "--root", root])
        #expect(second.status == 0)
        #expect(!second.stdout.contains("created") && !second.stdout.contains("updated"), "\(second.stdout)")
        #expect(second.stdout.contains("unchanged \(root)/usr/local/bin/node-agent"))
        #expect(second.stdout.contains("kept      \(root)/var/lib/node-agent/identity.key"))
        #expect(FileManager.default.contents(atPath: root + "/var/lib/node-agent/identity.key") == key)

        // A changed unit is put back.
        try "[Unit]\n".write(toFile: root + "/etc/systemd/system/node-agent.service", atomically: false, encoding: .utf8)
        #expect(try CLI.run(["install", "--root", root]).stdout.contains("updated   \(root)/etc/systemd/system/node-agent.service"))

        let removed = try CLI.run(["uninstall", "--root", root])
        #expect(removed.status == 0)
        #expect(removed.stdout.contains("removed   \(root)/etc/systemd/system/node-agent.service"))
        #expect(removed.stdout.contains("removed   \(root)/usr/local/bin/node-agent"))
        #expect(!FileManager.default.fileExists(atPath: root + "/usr/local/bin/node-agent"))
        #expect(FileManager.default.contents(atPath: root + "/var/lib/node-agent/identity.key") == key)
        let again = try CLI.run(["uninstall", "--root", root])
        #expect(again.status == 0 && again.stdout.contains("absent    \(root)/usr/local/bin/node-agent"), "\(again.stdout)")
        #expect(!again.stdout.contains("removed"))
    }

    static var repositoryRoot: String {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }

    @Test func repositoryUnitIsTheInstalledUnit() throws {
        let file = try String(contentsOfFile: Self.repositoryRoot + "/systemd/node-agent.service", encoding: .utf8)
        #expect(file == SystemdUnit.text)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze"),
                   "systemd-analyze is not installed (apt-get install systemd); the unit was not verified"))
    func systemdAnalyzeVerifiesTheUnit() throws {
        let root = NSTemporaryDirectory() + "verify-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(try CLI.run(["install", "--root", root]).status == 0)
        // verify checks that ExecStart's program exists: point it at the installed copy under the root.
        let installed = try String(contentsOfFile: root + "/etc/systemd/system/node-agent.service", encoding: .utf8)
        let unitDirectory = root + "/verify"
        try FileManager.default.createDirectory(atPath: unitDirectory, withIntermediateDirectories: true)
        try installed.replacingOccurrences(of: "ExecStart=/usr/local/bin/node-agent", with: "ExecStart=\(root)/usr/local/bin/node-agent")
            .write(toFile: unitDirectory + "/node-agent.service", atomically: false, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/systemd-analyze")
        process.arguments = ["verify", "--man=no", unitDirectory + "/node-agent.service"]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = err
        try process.run()
        let output = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "systemd-analyze verify: \(output)")
        // Warnings about the unit itself (unknown keys, bad values) fail the test too.
        let ours = output.split(separator: "\n").filter { $0.contains("node-agent.service") }
        #expect(ours.isEmpty, "\(ours)")
    }
}
