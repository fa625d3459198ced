import ChainClient
import Foundation
import GridTypes
import Testing

/// A container workload through the whole agent: a digest-checked busybox image, a volume mounted
/// into the container, limits from the reservation; re-adopted (same process) after the agent is
/// SIGKILLed; gone without leftovers when the contract is canceled. A wrong image digest fails the
/// workload with both digests named.
@Suite(.serialized) struct ContainerWorkloadTests {
    typealias Node = ProvisionerCrashTests.Node
    typealias Scenario = LedgerScenarioTests

    /// A busybox rootfs as a tar, and its BLAKE2b-256.
    static func busyboxImage(in dir: String) throws -> (url: String, digest: String) {
        let rootfs = dir + "/image-rootfs"
        let fm = FileManager.default
        for sub in ["bin", "data", "tmp", "proc", "sys", "dev", "etc"] {
            try fm.createDirectory(atPath: rootfs + "/" + sub, withIntermediateDirectories: true)
        }
        try fm.copyItem(atPath: "/bin/busybox", toPath: rootfs + "/bin/busybox")
        for applet in ["sh", "sleep", "echo", "cat", "ls", "httpd", "wget"] { try fm.createSymbolicLink(atPath: rootfs + "/bin/" + applet, withDestinationPath: "busybox") }
        let tar = dir + "/busybox.tar"
        _ = try GridHarness.run("/usr/bin/tar", ["-C", rootfs, "-cf", tar, "."])
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: tar)))
        return ("file://" + tar, Hex.encode(Blake2b.hash256(bytes)))
    }

    static func deployment(twin: UInt32, image: (url: String, digest: String), command: String) -> Deployment {
        Deployment(twinID: twin, description: "web",
                   signatureRequirement: SignatureRequirement(requests: [SignatureRequest(twinID: twin, required: true, weight: 1)], weightRequired: 1),
                   workloads: [
                    Workload(name: "data", data: .volume(DiskData(size: 32 << 20))),
                    Workload(name: "web", data: .container(ContainerData(
                        image: image.url, imageDigest: image.digest, entrypoint: "/bin/sh", args: ["-c", command],
                        env: ["GREETING": "hello from a contract"], compute: .init(cpu: 1, memory: 64 << 20),
                        mounts: [.init(name: "data", mountpoint: "/data")], rootSize: 64 << 20))),
                   ])
    }

    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/bin/busybox")))
    func containerRunsIsReadoptedPausedAndRemoved() async throws {
        let node = try Node()
        defer { node.cleanUp() }
        try node.start()
        defer { node.kill9() }
        #expect(try await Scenario.eventually(10) { FileManager.default.fileExists(atPath: node.ledgerPath) })
        #expect(try Scenario.gridTwin(["twin", "create", "--key", node.dir + "/farmer.key"], ledger: node.ledgerPath).status == 0)
        #expect(try Scenario.gridTwin(["farm", "create", "--name", "containers", "--key", node.dir + "/farmer.key"], ledger: node.ledgerPath).status == 0)
        #expect(try Scenario.gridTwin(["twin", "create", "--key", node.dir + "/user.key"], ledger: node.ledgerPath).status == 0)
        #expect(try Scenario.gridTwin(["fund", "100", "--key", node.dir + "/user.key"], ledger: node.ledgerPath).status == 0)
        let ledger = try LocalLedger(path: node.ledgerPath)
        let user = try NodeIdentity.load(from: node.dir + "/user.key")
        let twinID = try #require(try await ledger.twinID(account: user.publicKey))
        let twin = ProvisionerCrashTests.Twin(keys: user.keyPair, id: twinID, apiPort: node.apiPort)
        #expect(try await Scenario.eventually(20) { FileManager.default.fileExists(atPath: node.state + "/node.json") })
        let nodeKey = try NodeIdentity.load(from: node.state + "/" + NodeIdentity.fileName).publicKey
        let nodeTwin = try #require(try await ledger.twinID(account: nodeKey))
        let nodeID = try #require(try await ledger.nodeID(twin: nodeTwin))
        #expect(try await Scenario.eventually(20) { ((try? await twin.call("GET", "/api/v1/deployments"))?.0 ?? 0) == 200 })

        let image = try Self.busyboxImage(in: node.dir)
        // A wrong digest is refused at the workload, naming both digests; nothing keeps running.
        var bad = Self.deployment(twin: twinID, image: (image.url, String(repeating: "0", count: 64)), command: "sleep 1000")
        bad.description = "wrong digest"
        _ = try await ledger.submit(.createNodeContract(nodeID: nodeID, deploymentHash: DeploymentChallenge.hash(bad), deploymentData: [], publicIPs: 0),
                                    signer: user.keyPair)
        bad.contractID = try #require(try await ledger.activeContracts(node: nodeID).max())
        DeploymentChallenge.sign(&bad, twinID: twinID, keyPair: user.keyPair)
        #expect(try await twin.call("POST", "/api/v1/deployments", body: Array(try JSONEncoder().encode(bad))).0 == 202)

        var d = Self.deployment(twin: twinID, image: image, command: "echo \"$GREETING\" > /data/hello; exec sleep 100000")
        let created = try await ledger.submit(.createNodeContract(nodeID: nodeID, deploymentHash: DeploymentChallenge.hash(d), deploymentData: [], publicIPs: 0),
                                              signer: user.keyPair)
        guard case .contractCreated(let contract)? = created.events.first else { Issue.record("no contract"); return }
        d.contractID = contract.id
        DeploymentChallenge.sign(&d, twinID: twinID, keyPair: user.keyPair)
        let (status, reply) = try await twin.call("POST", "/api/v1/deployments", body: Array(try JSONEncoder().encode(d)))
        #expect(status == 202, "\(String(decoding: reply, as: UTF8.self))")

        func current(_ id: UInt64) async throws -> Deployment? {
            let (code, data) = try await twin.call("GET", "/api/v1/deployments/\(id)")
            return code == 200 ? try JSONDecoder().decode(Deployment.self, from: data) : nil
        }
        func pid(_ deployment: Deployment?) -> Int? {
            deployment?.workloads.first { $0.name == "web" }?.result?.data?["pid"]?.uint64.map { Int($0) }
        }
        let running = try await Scenario.eventually(60) { try await current(d.contractID)?.workloads.allSatisfy { $0.result?.state == .ok } ?? false }
        let snapshot = try await current(d.contractID)
        #expect(running, "container deployment did not become ok: \(String(describing: snapshot?.workloads.map { ($0.name, $0.result) }))")
        guard running, let firstPid = pid(snapshot) else { return }
        let helloPath = node.state + "/volumes/wl-\(d.contractID)-data/hello"
        #expect(try await Scenario.eventually(10) { (try? String(contentsOfFile: helloPath, encoding: .utf8)) == "hello from a contract\n" },
                "the container did not write into its volume")
        #expect(kill(pid_t(firstPid), 0) == 0)

        let badResult = try await current(bad.contractID)?.workloads.first { $0.name == "web" }?.result
        #expect(badResult?.state == .error && badResult?.message.contains("digest") == true, "\(String(describing: badResult))")

        // The agent dies hard and comes back: the same container process is adopted, not restarted.
        node.kill9()
        #expect(kill(pid_t(firstPid), 0) == 0, "the container died with the agent")
        try node.start()
        #expect(try await Scenario.eventually(30) { pid(try? await current(d.contractID)) == firstPid })

        // Cancellation: the container, its root and its volume go away.
        _ = try await ledger.submit(.cancelContract(contractID: d.contractID), signer: user.keyPair)
        #expect(try await Scenario.eventually(30) { try await current(d.contractID) == nil })
        #expect(try await Scenario.eventually(10) { kill(pid_t(firstPid), 0) != 0 }, "the container process outlived its contract")
        #expect(!FileManager.default.fileExists(atPath: node.state + "/containers/wl-\(d.contractID)-web"))
        #expect(node.mountedVolumes().filter { $0.contains("wl-\(d.contractID)-") }.isEmpty)
        await node.stop()
    }
}
