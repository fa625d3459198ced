import Foundation
import GridTypes
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

    @Test func automaticContractFulfilmentEndToEnd() async throws {
        let phases = Phases()
        let grid = try GridHarness(nodeNames: ["a", "b", "c"])
        defer { grid.cleanUp() }
        for node in grid.nodes { try grid.start(node) }
        #expect(try await LedgerScenarioTests.eventually(15) { FileManager.default.fileExists(atPath: grid.ledger) })
        let farmerKey = grid.dir + "/farmer.key"
        #expect(try grid.gridTwin(["twin", "create", "--key", farmerKey]).status == 0)
        #expect(try grid.gridTwin(["farm", "create", "--name", "scenario", "--key", farmerKey]).status == 0)
        let registered = try await LedgerScenarioTests.eventually(30) { grid.nodes.allSatisfy { $0.nodeID() != nil } }
        #expect(registered, "not every node registered: \(grid.nodes.map { ($0.name, $0.nodeID() ?? -1) })")
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
                 "entrypoint": "/bin/sh", "args": ["-c", "echo served by a contract > /data/index.html; exec sleep 100000"],
                 "env": {}, "compute_capacity": {"cpu": 1, "memory": 67108864}, "mounts": [{"name": "data", "mountpoint": "/data"}],
                 "root_size": 67108864}}]}
            """.write(toFile: web, atomically: true, encoding: .utf8)
        let nodeA = grid.node("a")
        let container = try grid.gridTwin(["deploy", web, "--node", "\(nodeA.nodeID() ?? 0)", "--api", nodeA.api, "--key", user, "--out", web])
        #expect(container.status == 0 && container.stdout.contains("web (container): ok"), "\(container.stdout) \(container.stderr)")
        let webContract = (try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: web))) as? [String: Any])?["contract_id"] as? Int ?? 0
        let index = nodeA.state + "/volumes/wl-\(webContract)-data/index.html"
        #expect(try await LedgerScenarioTests.eventually(10) { (try? String(contentsOfFile: index, encoding: .utf8)) == "served by a contract\n" })
        phases.mark("a container with a volume runs on a (contract to running, through grid-twin)")

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

        // Cancelling the contract removes the workload and frees the capacity.
        let contractA = contracts["a"] ?? 0
        #expect(try grid.gridTwin(["contract", "cancel", "--id", "\(contractA)", "--key", user]).status == 0)
        let gone = try await LedgerScenarioTests.eventually(20) {
            try Self.shard(grid.node("a").address, "wl-\(contractA)-shards", "pw-a", []).contains("Namespace not found")
        }
        #expect(gone, "the canceled deployment's namespace is still served")
        let changes = try grid.gridTwin(["deployment", "changes", "\(contractA)", "--api", grid.node("a").api, "--key", user])
        #expect(changes.stdout.contains("contract canceled on chain"), "\(changes.stdout)")
        phases.mark("the canceled contract's namespace is gone")

        for node in grid.nodes { await grid.stop(node) }
        phases.mark("agents stopped")
    }
}
