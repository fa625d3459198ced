import Foundation
import ChainClient
import GridTypes
@testable import NodeAgent
import Testing

/// The whole grid on one machine, as its users meet it: three farm nodes in their own network
/// namespaces on one embedded ledger, twins deploying through `grid-twin`, faults on the way. Each
/// step asserts on what a user can observe (grid-twin output, the API, the shard protocol, the
/// ledger) and prints how long it took.
@Suite(.serialized) struct GridScenarioTests {
    final class Phases: @unchecked Sendable {
        let started = Date()
        var last = Date()
        func mark(_ name: String) {
            let now = Date()
            print(String(format: "[scenario %6.2fs] %@ (%.2fs)", now.timeIntervalSince(started), name, now.timeIntervalSince(last)))
            last = now
        }
    }

    static func storage(_ name: String, password: String, description: String) -> String {
        """
        {"version": 0, "twin_id": 0, "description": "\(description)", "metadata": "", "expiration": 0,
         "signature_requirement": {"requests": [{"twin_id": 0, "required": true, "weight": 1}], "weight_required": 1, "signatures": [], "signature_style": ""},
         "workloads": [{"version": 0, "name": "\(name)", "type": "zdb", "data": {"size": 67108864, "mode": "user", "password": "\(password)", "public": false}}]}
        """
    }

    /// One RESP conversation with a node's shard server: SELECT with the password, then commands.
    static func shard(_ address: String, _ namespace: String, _ password: String, _ commands: [[String]]) throws -> String {
        var lines = [["SELECT", namespace, password]] + commands
        lines.append(["QUIT"])
        let input = Pipe()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-cli")
        process.arguments = ["-h", address, "-p", "9900"]
        process.standardInput = input
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        input.fileHandleForWriting.write(Data(lines.map { $0.map { "\"\($0)\"" }.joined(separator: " ") }.joined(separator: "\n").utf8 + [10]))
        try input.fileHandleForWriting.close()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    /// An HTTP GET from the test's own network namespace (the host side of the grid's bridge).
    static func fetch(_ url: String) -> String? {
        // Python's urllib (busybox's static wget crashes resolving on glibc hosts).
        let script = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())"
        return try? GridHarness.run("/usr/bin/python3", ["-c", script, url])
    }

    /// The ledger's events as a user reads them (`grid-twin events --json`).
    static func events(_ grid: GridHarness, _ filter: [String]) throws -> [LocalLedger.EventRecord] {
        let result = try grid.gridTwin(["events", "--json", "--last", "10000"] + filter)
        return (try? JSONDecoder().decode([LocalLedger.EventRecord].self, from: Data(result.stdout.utf8))) ?? []
    }

    /// Every bill of a contract after its first one, checked against the cost-unit formula: the
    /// resources the node reported (latest before the bill) over the blocks since the previous bill.
    /// Returns the number of bills checked and the total charged.
    static func checkBilling(_ events: [LocalLedger.EventRecord], contract: UInt64) -> (checked: Int, charged: UInt64) {
        var used: Resources?
        var previousBill: UInt64?
        var checked = 0, charged: UInt64 = 0
        for record in events {
            switch record.event {
            case .updatedUsedResources(let resources) where resources.contractID == contract:
                used = resources.used
            case .contractBilled(let id, let amount) where id == contract:
                charged += amount
                if let previousBill, let used {
                    let expected = LedgerParameters().cost(used: used, publicIPs: 0, blocks: record.block - previousBill)
                    #expect(amount == expected, "contract \(contract): billed \(amount) at block \(record.block), formula says \(expected) for \(used)")
                    checked += 1
                }
                previousBill = record.block
            default: break
            }
        }
        return (checked, charged)
    }

    @Test func automaticContractFulfilmentEndToEnd() async throws {
        let phases = Phases()
        // A grace period long enough (60 s of 200 ms blocks) for the top-up to land before OutOfFunds.
        let grid = try GridHarness(nodeNames: ["a", "b", "c"], gracePeriodBlocks: 300)
        defer { grid.cleanUp() }
        for node in grid.nodes { try grid.start(node) }
        #expect(try await LedgerScenarioTests.eventually(15) { FileManager.default.fileExists(atPath: grid.ledger) })
        let farmerKey = grid.dir + "/farmer.key"
        #expect(try grid.gridTwin(["twin", "create", "--key", farmerKey]).status == 0)
        #expect(try grid.gridTwin(["farm", "create", "--name", "scenario", "--key", farmerKey]).status == 0)
        let registered = try await LedgerScenarioTests.eventually(30) { grid.nodes.allSatisfy { $0.nodeID() != nil } }
        if !registered {
            for node in grid.nodes where node.nodeID() == nil {
                let log = (try? String(contentsOfFile: node.logPath, encoding: .utf8)) ?? ""
                Issue.record("node \(node.name) did not register (agent running: \(node.process?.isRunning ?? false)); its log:\n\(log.suffix(3000))")
            }
        }
        guard registered else { return }
        phases.mark("three nodes registered on the ledger")

        // A user twin with funds.
        let user = grid.dir + "/user.key"
        #expect(try grid.gridTwin(["twin", "create", "--key", user]).status == 0)
        #expect(try grid.gridTwin(["fund", "100", "--key", user]).status == 0)

        // Namespaces on A, B and C, deployed as a user does.
        var contracts = [String: Int]()
        for node in grid.nodes {
            let file = grid.dir + "/ns-\(node.name).json", signed = grid.dir + "/ns-\(node.name).signed.json"
            try Self.storage("shards", password: "pw-\(node.name)", description: "shards on \(node.name)").write(toFile: file, atomically: true, encoding: .utf8)
            let deployed = try grid.gridTwin(["deploy", file, "--node", "\(node.nodeID() ?? 0)", "--api", node.api, "--key", user, "--out", signed])
            #expect(deployed.status == 0, "deploy to \(node.name): \(deployed.stdout) \(deployed.stderr)")
            #expect(deployed.stdout.contains("shards (zdb): ok"), "\(deployed.stdout)")
            let record = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: signed))) as? [String: Any]
            contracts[node.name] = record?["contract_id"] as? Int
        }
        phases.mark("zdb namespaces deployed on a, b and c (contract to running, through grid-twin)")

        for node in grid.nodes {
            let reply = try Self.shard(node.address, "wl-\(contracts[node.name] ?? 0)-shards", "pw-\(node.name)",
                                       [["SET", "piece", "shard of \(node.name)"], ["GET", "piece"]])
            #expect(reply.contains("shard of \(node.name)"), "\(node.name): \(reply)")
        }
        phases.mark("each namespace stores and serves a value over the 0-db protocol")

        // A file across the three namespaces: compressed, encrypted, k=2 data + m=1 parity shards.
        let placement = grid.dir + "/placement.json"
        let placementJSON = grid.nodes.map { node in
            "{\"node\": \"\(node.name)\", \"address\": \"\(node.address):9900\", \"namespace\": \"wl-\(contracts[node.name] ?? 0)-shards\", \"password\": \"pw-\(node.name)\"}"
        }.joined(separator: ", ")
        FileManager.default.createFile(atPath: placement, contents: Data("[\(placementJSON)]".utf8), attributes: [.posixPermissions: 0o600])
        let original = grid.dir + "/album.bin"
        // Half random (incompressible), half a repeating pattern (compressible).
        let random = try #require(FileHandle(forReadingAtPath: "/dev/urandom")?.readData(ofLength: 4 << 20))
        let fileBytes = [UInt8](random) + [UInt8]((0..<(4 << 20)).map { UInt8($0 % 251) })
        FileManager.default.createFile(atPath: original, contents: Data(fileBytes))
        let shardArgs = ["--key", user, "--metadata-dir", grid.dir + "/files", "--placement", placement]
        let put = try grid.gridTwinOffChain(["shard", "put", original, "-k", "2", "-m", "1", "--json"] + shardArgs)
        #expect(put.status == 0, "\(put.stdout) \(put.stderr)")
        let putReport = (try? JSONSerialization.jsonObject(with: Data(put.stdout.utf8))) as? [String: Any]
        let fileID = try #require(putReport?["fileID"] as? String, "\(put.stdout)")
        let putSeconds = putReport?["seconds"] as? Double ?? 0
        phases.mark(String(format: "8 MiB file stored across a, b, c with k=2 m=1 (put %.1f MiB/s)", 8 / max(putSeconds, 1e-6)))

        // A container with a volume on A, from a busybox image the test builds, digest-checked.
        let image = try ContainerWorkloadTests.busyboxImage(in: grid.dir)
        let web = grid.dir + "/web.json"
        try """
            {"version": 0, "twin_id": 0, "description": "web", "metadata": "", "expiration": 0,
             "signature_requirement": {"requests": [{"twin_id": 0, "required": true, "weight": 1}], "weight_required": 1, "signatures": [], "signature_style": ""},
             "workloads": [
               {"version": 0, "name": "data", "type": "volume", "data": {"size": 33554432}},
               {"version": 0, "name": "web", "type": "container", "data": {"image": "\(image.url)", "image_digest": "\(image.digest)",
                 "entrypoint": "/bin/sh", "args": ["-c", "echo served by a contract > /data/index.html; exec httpd -f -p 8000 -h /data"],
                 "env": {}, "compute_capacity": {"cpu": 1, "memory": 67108864}, "mounts": [{"name": "data", "mountpoint": "/data"}],
                 "root_size": 67108864,
                 "network": {"ports": [{"protocol": "tcp", "port": 8000, "public_port": 8080}], "egress": {"mode": "none"}}}}]}
            """.write(toFile: web, atomically: true, encoding: .utf8)
        let nodeA = grid.node("a")
        let container = try grid.gridTwin(["deploy", web, "--node", "\(nodeA.nodeID() ?? 0)", "--api", nodeA.api, "--key", user, "--out", web])
        #expect(container.status == 0 && container.stdout.contains("web (container): ok"), "\(container.stdout) \(container.stderr)")
        let webContract = (try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: web))) as? [String: Any])?["contract_id"] as? Int ?? 0
        let index = nodeA.state + "/volumes/wl-\(webContract)-data/index.html"
        #expect(try await LedgerScenarioTests.eventually(10) { (try? String(contentsOfFile: index, encoding: .utf8)) == "served by a contract\n" })
        phases.mark("a container with a volume runs on a (contract to running, through grid-twin)")
        let served = try await LedgerScenarioTests.eventually(10) { Self.fetch("http://\(nodeA.address):8080/") == "served by a contract\n" }
        if !served {
            let prefix = nodeA.networkPrefix() ?? "na"
            let fetched = (try? GridHarness.run("/usr/bin/python3", ["-c", "import urllib.request; urllib.request.urlopen('http://\(nodeA.address):8080/', timeout=3)"],
                                                allowFailure: true)) ?? ""
            let rules = (try? GridHarness.run("/usr/bin/nsenter", ["--net=/run/netns/\(nodeA.netns)", "/usr/sbin/nft", "list", "ruleset"], allowFailure: true)) ?? ""
            let links = (try? GridHarness.run("/usr/sbin/ip", ["-n", nodeA.netns, "-br", "addr"], allowFailure: true)) ?? ""
            let inside = (try? GridHarness.run("/usr/sbin/ip", ["-n", "\(prefix)-\(webContract)-web", "-br", "addr"], allowFailure: true)) ?? ""
            let logs = (try? String(contentsOfFile: nodeA.state + "/containers/wl-\(webContract)-web/logs/stderr.log", encoding: .utf8)) ?? ""
            Issue.record("the container's published port 8080 on node a does not serve its page:\n\(fetched)\nnode a:\n\(links)\ncontainer:\n\(inside)\nstderr:\n\(logs)\n\(rules)")
        }
        phases.mark("its published port serves the page from the volume to the outside")

        // A deliberate fault: the deployment changed after the contract was made.
        let tampered = grid.dir + "/ns-a.signed.json"
        var text = try String(contentsOfFile: tampered, encoding: .utf8)
        text = text.replacingOccurrences(of: "shards on a", with: "shards on a, edited")
        let tamperedFile = grid.dir + "/tampered.json"
        try text.write(toFile: tamperedFile, atomically: true, encoding: .utf8)
        let refused = try grid.gridTwin(["deployment", "send", tamperedFile, "--api", grid.node("a").api, "--key", user])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("hashes to"), "\(refused.stderr)")
        phases.mark("a tampered deployment is refused with the hash mismatch")

        // Multisig: a second twin's deployment needs a co-signer.
        let owner = grid.dir + "/owner.key", cosigner = grid.dir + "/cosigner.key"
        for key in [owner, cosigner] {
            #expect(try grid.gridTwin(["twin", "create", "--key", key]).status == 0)
            #expect(try grid.gridTwin(["fund", "50", "--key", key]).status == 0)
        }
        let shown = try grid.gridTwin(["twin", "show", "--key", cosigner, "--json"]).stdout
        let cosignerTwin = try #require((try JSONSerialization.jsonObject(with: Data(shown.utf8)) as? [String: Any])?["twinID"] as? Int, "\(shown)")
        let multisig = grid.dir + "/multisig.json"
        try """
            {"version": 0, "twin_id": 0, "description": "needs two", "metadata": "", "expiration": 0,
             "signature_requirement": {"requests": [{"twin_id": 0, "required": true, "weight": 1}, {"twin_id": \(cosignerTwin), "required": true, "weight": 1}],
                                       "weight_required": 2, "signatures": [], "signature_style": ""},
             "workloads": [{"version": 0, "name": "joint", "type": "zdb", "data": {"size": 16777216, "mode": "seq", "password": "joint", "public": false}}]}
            """.write(toFile: multisig, atomically: true, encoding: .utf8)
        let nodeB = grid.node("b")
        #expect(try grid.gridTwin(["deployment", "create", multisig, "--node", "\(nodeB.nodeID() ?? 0)", "--key", owner]).status == 0)
        let early = try grid.gridTwin(["deployment", "send", multisig, "--api", nodeB.api, "--key", owner])
        #expect(early.status != 0 && early.stderr.contains("required signer(s) \(cosignerTwin) have not signed"), "\(early.stderr)")
        #expect(try grid.gridTwin(["deployment", "sign", multisig, "--key", cosigner]).status == 0)
        let both = try grid.gridTwin(["deployment", "send", multisig, "--api", nodeB.api, "--key", owner])
        #expect(both.status == 0 && both.stdout.contains("joint (zdb): ok"), "\(both.stdout) \(both.stderr)")
        phases.mark("a multisig deployment is refused until both twins sign, then runs")

        // Node C's agent dies hard; A and B keep serving; C re-adopts its namespace when it is back.
        let nodeC = grid.node("c")
        grid.kill9(nodeC)
        let stillThere = try Self.shard(grid.node("a").address, "wl-\(contracts["a"] ?? 0)-shards", "pw-a", [["GET", "piece"]])
        #expect(stillThere.contains("shard of a"))
        let restored = grid.dir + "/album.restored"
        let started = Date()
        let get = try grid.gridTwinOffChain(["shard", "get", fileID, "-o", restored, "--timeout", "5"] + shardArgs)
        let getSeconds = Date().timeIntervalSince(started)
        #expect(get.status == 0, "\(get.stdout) \(get.stderr)")
        #expect(FileManager.default.contents(atPath: restored) == Data(fileBytes), "the file rebuilt without node c differs")
        phases.mark(String(format: "with node c down the file is rebuilt from a and b (get %.1f MiB/s, grid-twin start included)", 8 / max(getSeconds, 1e-6)))
        try grid.start(nodeC)
        let readopted = try await LedgerScenarioTests.eventually(30) {
            try Self.shard(nodeC.address, "wl-\(contracts["c"] ?? 0)-shards", "pw-c", [["GET", "piece"]]).contains("shard of c")
        }
        #expect(readopted, "node c did not serve its namespace again after a restart")
        let afterRestart = try grid.gridTwin(["deployment", "get", "\(contracts["c"] ?? 0)", "--api", nodeC.api, "--key", user])
        #expect(afterRestart.stdout.contains("shards (zdb): ok"), "\(afterRestart.stdout) \(afterRestart.stderr)")
        phases.mark("node c killed (SIGKILL) and restarted: its namespace and data are back")

        // A tenant whose balance runs low: the grace period pauses its container, a top-up resumes it.
        let tenant = grid.dir + "/tenant.key"
        #expect(try grid.gridTwin(["twin", "create", "--key", tenant]).status == 0)
        let worker = Resources(sru: 64 << 20, cru: 1, mru: 64 << 20)
        // About four billing periods of the worker's reservation.
        let allowance = LedgerParameters().cost(used: worker, publicIPs: 0, blocks: 40)
        let allowanceTFT = String(format: "%.7f", Double(allowance) / Double(TFT.unitsPerTFT))
        #expect(try grid.gridTwin(["fund", allowanceTFT, "--key", tenant]).status == 0)
        let workerFile = grid.dir + "/worker.json"
        try """
            {"version": 0, "twin_id": 0, "description": "worker", "metadata": "", "expiration": 0,
             "signature_requirement": {"requests": [{"twin_id": 0, "required": true, "weight": 1}], "weight_required": 1, "signatures": [], "signature_style": ""},
             "workloads": [{"version": 0, "name": "worker", "type": "container", "data": {"image": "\(image.url)", "image_digest": "\(image.digest)",
                 "entrypoint": "/bin/sh", "args": ["-c", "exec sleep 100000"], "env": {}, "compute_capacity": {"cpu": 1, "memory": 67108864},
                 "mounts": [], "root_size": 67108864}}]}
            """.write(toFile: workerFile, atomically: true, encoding: .utf8)
        let usedBefore = try #require(try nodeA.status()?.capacity?.used, "status --json of node a")
        let workerDeploy = try grid.gridTwin(["deploy", workerFile, "--node", "\(nodeA.nodeID() ?? 0)", "--api", nodeA.api, "--key", tenant, "--out", workerFile])
        #expect(workerDeploy.status == 0 && workerDeploy.stdout.contains("worker (container): ok"), "\(workerDeploy.stdout) \(workerDeploy.stderr)")
        let workerContract = (try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: workerFile))) as? [String: Any])?["contract_id"] as? Int ?? 0
        #expect(try nodeA.status()?.capacity?.used.cru == usedBefore.cru + 1)
        func workerState() throws -> String {
            try grid.gridTwin(["deployment", "get", "\(workerContract)", "--api", nodeA.api, "--key", tenant]).stdout
        }
        let paused = try await LedgerScenarioTests.eventually(45) { try workerState().contains("worker (container): paused") }
        let stateWhilePoor = try workerState()
        #expect(paused, "the out-of-funds tenant's container was not paused: \(stateWhilePoor)")
        let graceEvents = try Self.events(grid, ["--contract", "\(workerContract)"])
        #expect(graceEvents.contains { if case .contractGracePeriodStarted = $0.event { return true } else { return false } })
        #expect(try nodeA.status()?.work.deployments["paused"] == 1)
        phases.mark("the tenant's balance ran out: grace period on the ledger, its container paused")
        #expect(try grid.gridTwin(["fund", "5", "--key", tenant]).status == 0)
        let resumed = try await LedgerScenarioTests.eventually(45) { try workerState().contains("worker (container): ok") }
        let stateAfterTopUp = try workerState()
        #expect(resumed, "the topped-up tenant's container did not resume: \(stateAfterTopUp)")
        #expect(try Self.events(grid, ["--contract", "\(workerContract)"]).contains {
            if case .contractGracePeriodEnded = $0.event { return true } else { return false }
        })
        phases.mark("a top-up ended the grace period and the container runs again")

        // Cancelling contracts removes their workloads and frees the capacity.
        #expect(try grid.gridTwin(["contract", "cancel", "--id", "\(workerContract)", "--key", tenant]).status == 0)
        let workerGone = try await LedgerScenarioTests.eventually(20) {
            try nodeA.status()?.capacity?.used == usedBefore && !FileManager.default.fileExists(atPath: nodeA.state + "/runtime/wl-\(workerContract)-worker")
        }
        let capacityAfterCancel = try nodeA.status()?.capacity
        #expect(workerGone, "the canceled container still holds capacity or runtime state: \(String(describing: capacityAfterCancel))")
        // Billing: every bill matches the cost-unit formula, and the tenant paid exactly the sum of them.
        let workerEvents = try Self.events(grid, ["--contract", "\(workerContract)"])
        let workerBills = Self.checkBilling(workerEvents, contract: UInt64(workerContract))
        #expect(workerBills.checked >= 2, "too few bills to check: \(workerEvents.map(\.event.name))")
        let tenantView = try grid.gridTwin(["twin", "show", "--key", tenant, "--json"]).stdout
        let balance = (try JSONSerialization.jsonObject(with: Data(tenantView.utf8)) as? [String: Any])?["balanceUnits"] as? Int
        let funded = (TFT.parse(allowanceTFT) ?? 0) + 5 * TFT.unitsPerTFT
        #expect(balance.map(UInt64.init) == funded - workerBills.charged, "balance \(String(describing: balance)), funded \(funded), billed \(workerBills.charged)")
        phases.mark("the canceled container is gone, its capacity free; its \(workerBills.checked + 1) bills follow the cost-unit formula")

        let contractA = contracts["a"] ?? 0
        #expect(try grid.gridTwin(["contract", "cancel", "--id", "\(contractA)", "--key", user]).status == 0)
        let gone = try await LedgerScenarioTests.eventually(20) {
            try Self.shard(grid.node("a").address, "wl-\(contractA)-shards", "pw-a", []).contains("Namespace not found")
        }
        #expect(gone, "the canceled deployment's namespace is still served")
        let changes = try grid.gridTwin(["deployment", "changes", "\(contractA)", "--api", grid.node("a").api, "--key", user])
        #expect(changes.stdout.contains("contract canceled on chain"), "\(changes.stdout)")
        phases.mark("the canceled contract's namespace is gone")

        // Reports on the ledger from every node: uptime, and the used resources billing reads.
        for node in grid.nodes {
            let id = UInt32(node.nodeID() ?? 0)
            let events = try Self.events(grid, ["--node", "\(id)"])
            #expect(events.contains { if case .nodeUptimeReported(let reporter, _, _) = $0.event { return reporter == id } else { return false } },
                    "no uptime report from node \(node.name)")
            let contract = UInt64(contracts[node.name] ?? 0)
            let reported = try Self.events(grid, ["--contract", "\(contract)"]).compactMap {
                if case .updatedUsedResources(let r) = $0.event { return r.used } else { return nil }
            }
            #expect(reported.contains { $0.hru + $0.sru == 64 << 20 }, "node \(node.name) did not report its namespace's 64 MiB: \(reported)")
            // The farmer's view answers for every node (Ready itself depends on the host's load: a
            // pressure condition on a busy CI machine is the agent telling the truth).
            let status = try node.status()
            #expect(status?.node.nodeID == id, "node \(node.name): no status")
            if let status, !status.ready { print("[scenario] node \(node.name) not Ready: \(status.notReadyReasons)") }
        }
        let webBills = Self.checkBilling(try Self.events(grid, ["--contract", "\(webContract)"]), contract: UInt64(webContract))
        #expect(webBills.checked >= 1 && webBills.charged > 0)
        phases.mark("uptime and resource reports from a, b and c are on the ledger; the web container's bills follow the formula")

        for node in grid.nodes { await grid.stop(node) }
        phases.mark("agents stopped")
    }
}
