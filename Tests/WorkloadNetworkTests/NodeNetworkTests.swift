import Foundation
import GridTypes
import Testing
@testable import WorkloadNetwork

/// Container networks on a node in its own namespace (NetworkLab): the "containers" are the named
/// namespaces the network makes; traffic is real TCP between them, the node and an outside host.
@Suite(.serialized, .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/nft")
                             && FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")))
struct NodeNetworkTests {
    @Test func oneDeploymentTalksTwoDeploymentsAreIsolated() async throws {
        let lab = try NetworkLab()
        defer { lab.cleanUp() }
        try await lab.network.start()
        let a1 = try await lab.network.attach(contractID: 7, name: "a1", network: ContainerNetwork())
        let a2 = try await lab.network.attach(contractID: 7, name: "a2", network: ContainerNetwork())
        let b1 = try await lab.network.attach(contractID: 8, name: "b1", network: ContainerNetwork())
        #expect(a1.gateway == a2.gateway && a1.address != a2.address)
        #expect(b1.gateway != a1.gateway, "two deployments got one subnet")
        #expect(a1.resolvConf == "nameserver 192.0.2.53\n")
        let nsA1 = await lab.network.namespaceName(7, "a1"), nsA2 = await lab.network.namespaceName(7, "a2")
        let nsB1 = await lab.network.namespaceName(8, "b1")

        let server = try NetworkLab.Server(namespace: nsA2, port: 7000, greeting: "from-a2")
        defer { server.stop() }
        #expect(NetworkLab.client(namespace: nsA1, host: a2.address, port: 7000, bytes: 1000) == "from-a2")
        #expect(server.finish() == 1000)

        let guarded = try NetworkLab.Server(namespace: nsA2, port: 7001, greeting: "leak", timeout: 5)
        defer { guarded.stop() }
        #expect(NetworkLab.client(namespace: nsB1, host: a2.address, port: 7001) == nil, "another deployment reached a2")
        #expect(NetworkLab.client(namespace: lab.outsideNS, host: a2.address, port: 7001) == nil, "the outside reached a private address")
        // Idempotent: attaching again changes nothing and keeps the address.
        let again = try await lab.network.attach(contractID: 7, name: "a2", network: ContainerNetwork())
        #expect(again == a2)
    }

    @Test func publishedPortIsReachableFromOutsideAndGoesWithTheDeployment() async throws {
        let lab = try NetworkLab()
        defer { lab.cleanUp() }
        try await lab.network.start()
        let web = ContainerNetwork(ports: [.init(protocol: .tcp, port: 80, publicPort: 8080)], egress: .init(mode: .none))
        _ = try await lab.network.attach(contractID: 11, name: "web", network: web)
        let ns = await lab.network.namespaceName(11, "web")
        let server = try NetworkLab.Server(namespace: ns, port: 80, greeting: "published")
        defer { server.stop() }
        #expect(NetworkLab.client(namespace: lab.outsideNS, host: lab.nodeAddress, port: 8080, bytes: 5000) == "published")
        #expect(server.finish() == 5000)

        try await lab.network.detach(contractID: 11, name: "web")
        #expect(!(try lab.ruleset()).contains("8080"), "the DNAT rule outlived its deployment")
    }

    @Test func egressPolicyIsEnforced() async throws {
        let lab = try NetworkLab()
        defer { lab.cleanUp() }
        try await lab.network.start()
        _ = try await lab.network.attach(contractID: 21, name: "open", network: ContainerNetwork(egress: .init(mode: .all)))
        _ = try await lab.network.attach(contractID: 21, name: "closed", network: ContainerNetwork(egress: .init(mode: .none)))
        _ = try await lab.network.attach(contractID: 21, name: "listed",
                                         network: ContainerNetwork(egress: .init(mode: .allow, allow: ["\(lab.internetHost)/32:9000"])))
        func reach(_ name: String, _ port: Int) async throws -> Bool {
            let server = try NetworkLab.Server(namespace: lab.outsideNS, port: port, greeting: "out-\(port)", timeout: 5)
            defer { server.stop() }
            return NetworkLab.client(namespace: await lab.network.namespaceName(21, name), host: lab.internetHost, port: port) == "out-\(port)"
        }
        #expect(try await reach("open", 9000))
        #expect(try await reach("closed", 9000) == false, "egress none let a connection out")
        #expect(try await reach("listed", 9000))
        #expect(try await reach("listed", 9001) == false, "a port off the allow-list got out")
    }

    @Test func countersMatchBytesSent() async throws {
        let lab = try NetworkLab()
        defer { lab.cleanUp() }
        try await lab.network.start()
        let a = try await lab.network.attach(contractID: 31, name: "a", network: ContainerNetwork())
        _ = try await lab.network.attach(contractID: 31, name: "b", network: ContainerNetwork())
        let nsA = await lab.network.namespaceName(31, "a"), nsB = await lab.network.namespaceName(31, "b")
        let publicBytes = 4 << 20, privateBytes = 2 << 20
        let outside = try NetworkLab.Server(namespace: lab.outsideNS, port: 9100, greeting: "ok")
        defer { outside.stop() }
        #expect(NetworkLab.client(namespace: nsB, host: lab.internetHost, port: 9100, bytes: publicBytes) == "ok")
        #expect(outside.finish() == publicBytes)
        let inside = try NetworkLab.Server(namespace: nsA, port: 9200, greeting: "ok")
        defer { inside.stop() }
        #expect(NetworkLab.client(namespace: nsB, host: a.address, port: 9200, bytes: privateBytes) == "ok")
        #expect(inside.finish() == privateBytes)

        let traffic = try #require(await lab.network.contractTraffic().first { $0.contractID == 31 })
        // IP and TCP headers add a few percent; ACKs flow the other way.
        #expect(traffic.publicOut >= UInt64(publicBytes) && traffic.publicOut <= UInt64(Double(publicBytes) * 1.1), "\(traffic)")
        #expect(traffic.publicIn < UInt64(publicBytes) / 10, "\(traffic)")
        #expect(traffic.privateBytes >= UInt64(privateBytes) && traffic.privateBytes <= UInt64(Double(privateBytes) * 1.15), "\(traffic)")

        // Status and metrics may share a reading for a while; the reporter's reads are fresh.
        let again = try NetworkLab.Server(namespace: lab.outsideNS, port: 9101, greeting: "ok")
        defer { again.stop() }
        #expect(NetworkLab.client(namespace: nsB, host: lab.internetHost, port: 9101, bytes: publicBytes) == "ok")
        #expect(again.finish() == publicBytes)
        let shared = try #require(await lab.network.contractTraffic(maxAge: .seconds(600)).first { $0.contractID == 31 })
        #expect(shared.publicOut == traffic.publicOut)
        let fresh = try #require(await lab.network.contractTraffic().first { $0.contractID == 31 })
        #expect(fresh.publicOut >= traffic.publicOut + UInt64(publicBytes), "\(fresh)")
    }

    @Test func nothingIsLeftAfterRemovalOrARestart() async throws {
        let lab = try NetworkLab()
        defer { lab.cleanUp() }
        try await lab.network.start()
        let published = ContainerNetwork(ports: [.init(protocol: .udp, port: 53, publicPort: 5353)])
        _ = try await lab.network.attach(contractID: 41, name: "x", network: published)
        _ = try await lab.network.attach(contractID: 41, name: "y", network: ContainerNetwork())
        _ = try await lab.network.attach(contractID: 42, name: "z", network: ContainerNetwork(ipRange: "172.20.0.0/24"))
        #expect(try lab.ownLinks().count == 5)
        #expect(lab.containerNamespaces().count == 3)
        for (c, n) in [(UInt64(41), "x"), (41, "y"), (42, "z")] { try await lab.network.detach(contractID: c, name: n) }
        try expectClean(lab)

        // A crash: the agent dies with networks up; the restarted agent finds them on record and
        // the provisioner removes those it no longer wants (here: all).
        _ = try await lab.network.attach(contractID: 43, name: "x", network: published)
        _ = try await lab.network.attach(contractID: 44, name: "y", network: ContainerNetwork())
        let restarted = try lab.makeNetwork()
        try await restarted.start()
        let recorded = await restarted.attached().map { "\($0.contractID)/\($0.name)" }.sorted()
        #expect(recorded == ["43/x", "44/y"])
        for entry in await restarted.attached() { try await restarted.detach(contractID: entry.contractID, name: entry.name) }
        try expectClean(lab)

        // A crash between making kernel objects and keeping their record: swept at start.
        _ = try await lab.network.attach(contractID: 45, name: "x", network: published)
        try FileManager.default.removeItem(atPath: lab.dir + "/network/45.json")
        try await lab.makeNetwork().start()
        try expectClean(lab)
    }

    /// Sends `bytes` from container `name` of contract `c` to a server outside the node.
    func sendOut(_ lab: NetworkLab, _ network: NodeNetwork, _ c: UInt64, _ name: String, bytes: Int, port: Int) async throws {
        let server = try NetworkLab.Server(namespace: lab.outsideNS, port: port, greeting: "ok")
        defer { server.stop() }
        #expect(NetworkLab.client(namespace: await network.namespaceName(c, name), host: lab.internetHost, port: port, bytes: bytes) == "ok")
        #expect(server.finish() == bytes)
    }

    func publicOut(_ network: NodeNetwork, _ c: UInt64) async -> UInt64 {
        await network.contractTraffic().first { $0.contractID == c }?.publicOut ?? 0
    }

    @Test func countersSurviveRebootsAndNeverGoDown() async throws {
        let lab = try NetworkLab()
        defer { lab.cleanUp() }
        try await lab.network.start()
        _ = try await lab.network.attach(contractID: 61, name: "a", network: ContainerNetwork())
        let first = 3 << 20, second = 2 << 20
        try await sendOut(lab, lab.network, 61, "a", bytes: first, port: 9300)
        let beforeStop = await publicOut(lab.network, 61)
        #expect(beforeStop >= UInt64(first))
        await lab.network.saveCountersForStop()

        // Before the container is back, and after: the counters go on from where they stopped.
        let (rebooted, afterReboot) = try await rebootAndSend(lab, expecting: beforeStop, bytes: second, port: 9301)

        // A clean restart without a reboot: the kernel kept counting, nothing is added twice.
        await rebooted.saveCountersForStop()
        let restarted = try lab.makeNetwork()
        try await restarted.start()
        #expect(await publicOut(restarted, 61) == afterReboot)

        // A power loss after a report: what was sent since is lost, but nothing is counted twice
        // and the totals never go down (the reporter would bill a lower total again in full).
        let reported = await publicOut(restarted, 61)
        try await sendOut(lab, restarted, 61, "a", bytes: second, port: 9302)
        let (network, total) = try await rebootAndSend(lab, expecting: reported, bytes: second, port: 9303)

        // Its last container goes and comes back (a deployment update): the count goes on, and
        // is on the record, so a restart of the agent keeps it too.
        try await network.detach(contractID: 61, name: "a")
        #expect(await publicOut(network, 61) == total)
        _ = try await network.attach(contractID: 61, name: "a", network: ContainerNetwork())
        #expect(await publicOut(network, 61) == total)
        let again = try lab.makeNetwork()
        try await again.start()
        #expect(await publicOut(again, 61) == total)
    }

    /// A deployment's network is gone, but its last bytes are not billed yet: they stay on disk
    /// through agent restarts (including one in the middle of the teardown or of the network being
    /// made again), are never counted twice, and are forgotten once the reporter has them.
    @Test func removedNetworksKeepTheirBytesUntilReported() async throws {
        let lab = try NetworkLab()
        defer { lab.cleanUp() }
        try await lab.network.start()
        _ = try await lab.network.attach(contractID: 71, name: "a", network: ContainerNetwork())
        try await sendOut(lab, lab.network, 71, "a", bytes: 1 << 20, port: 9310)
        let total = await publicOut(lab.network, 71)
        #expect(total >= 1 << 20)
        let state = lab.dir + "/network"
        let recordFile = state + "/71.json", retiredFile = state + "/retired.counters"
        let recordBeforeTeardown = try Data(contentsOf: URL(fileURLWithPath: recordFile))
        try await lab.network.detach(contractID: 71, name: "a")
        #expect(!FileManager.default.fileExists(atPath: recordFile))
        #expect(try FileManager.default.attributesOfItem(atPath: retiredFile)[.posixPermissions] as? Int == 0o600)

        // The agent restarts before the next report: the bytes are still there.
        var network = try lab.makeNetwork()
        try await network.start()
        #expect(await publicOut(network, 71) == total)

        // It had stopped after keeping the bytes but before removing the record: the record goes,
        // the bytes are not counted twice.
        try recordBeforeTeardown.write(to: URL(fileURLWithPath: recordFile))
        network = try lab.makeNetwork()
        try await network.start()
        #expect(await publicOut(network, 71) == total)
        #expect(await network.attached().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: recordFile))

        // Made again, it counts on; a stop before the retired file forgot the bytes changes nothing.
        let retiredBeforeAttach = try Data(contentsOf: URL(fileURLWithPath: retiredFile))
        _ = try await network.attach(contractID: 71, name: "a", network: ContainerNetwork())
        #expect(!FileManager.default.fileExists(atPath: retiredFile))
        try retiredBeforeAttach.write(to: URL(fileURLWithPath: retiredFile))
        network = try lab.makeNetwork()
        try await network.start()
        #expect(await publicOut(network, 71) == total)
        #expect(!FileManager.default.fileExists(atPath: retiredFile))
        try await network.detach(contractID: 71, name: "a")

        // It had stopped after deleting the rules but before keeping the bytes: the record has
        // the final reading, and the next teardown retires it.
        _ = try await network.attach(contractID: 71, name: "a", network: ContainerNetwork())
        #expect(await publicOut(network, 71) == total)   // a reading kept on the record
        let recordWithFinalReading = try Data(contentsOf: URL(fileURLWithPath: recordFile))
        try await network.detach(contractID: 71, name: "a")
        try FileManager.default.removeItem(atPath: retiredFile)
        try recordWithFinalReading.write(to: URL(fileURLWithPath: recordFile))
        network = try lab.makeNetwork()
        try await network.start()
        #expect(await publicOut(network, 71) == total)
        try await network.detach(contractID: 71, name: "a")
        #expect(await publicOut(network, 71) == total && FileManager.default.fileExists(atPath: retiredFile))

        // Reported: a count below the total keeps the bytes; the total marks them billed (left
        // out of readings); a report without them forgets them, for good.
        let bytes = try await network.publicTrafficBytes()
        #expect(bytes[71] == total + ((await network.contractTraffic().first { $0.contractID == 71 })?.publicIn ?? 0))
        await network.countersReported([71: (bytes[71] ?? 0) - 1])
        #expect(await publicOut(network, 71) == total)
        await network.countersReported(bytes)
        #expect(await network.contractTraffic().isEmpty)
        #expect(try await network.publicTrafficBytes().isEmpty)
        await network.countersReported([:])
        #expect(!FileManager.default.fileExists(atPath: retiredFile))
        network = try lab.makeNetwork()
        try await network.start()
        #expect(await network.contractTraffic().isEmpty)
    }

    /// A retired-counters file that cannot be read is moved aside with a warning: networking (and
    /// with it every deployment) still starts.
    @Test func anUnreadableRetiredFileDoesNotStopNetworking() async throws {
        let lab = try NetworkLab()
        defer { lab.cleanUp() }
        let state = lab.dir + "/network"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        try Data("not json".utf8).write(to: URL(fileURLWithPath: state + "/retired.counters"))
        let network = try lab.makeNetwork()
        try await network.start()
        let warnings = await network.startupWarnings
        #expect(warnings.count == 1 && warnings[0].contains("retired network counters unreadable"), "\(warnings)")
        let files = try FileManager.default.contentsOfDirectory(atPath: state)
        #expect(!files.contains("retired.counters") && files.contains { $0.hasPrefix("retired.counters.bad-") }, "\(files)")
    }

    /// Billed, but the reporter still holds the old total when the network is made again: it
    /// counts on from that total, so the next report bills only the new bytes.
    @Test func aNetworkMadeAgainAfterItsBytesWereBilledCountsOnFromThem() async throws {
        let lab = try NetworkLab()
        defer { lab.cleanUp() }
        try await lab.network.start()
        _ = try await lab.network.attach(contractID: 72, name: "a", network: ContainerNetwork())
        try await sendOut(lab, lab.network, 72, "a", bytes: 1 << 20, port: 9320)
        try await lab.network.detach(contractID: 72, name: "a")
        let billed = try await lab.network.publicTrafficBytes()
        let total = try #require(billed[72])
        await lab.network.countersReported(billed)
        #expect(try await lab.network.publicTrafficBytes()[72] == nil)

        _ = try await lab.network.attach(contractID: 72, name: "a", network: ContainerNetwork())
        #expect(try await lab.network.publicTrafficBytes()[72] == total)
        try await sendOut(lab, lab.network, 72, "a", bytes: 1 << 20, port: 9321)
        let after = try #require(try await lab.network.publicTrafficBytes()[72])
        #expect(after >= total + (1 << 20) && after <= total + (1 << 20) + (1 << 17), "\(after) after \(total)")
    }

    /// Wipes the kernel's objects (a reboot), starts a new NodeNetwork on the same state, expects
    /// contract 61 to read `expected`, makes its container "a" again, sends `bytes` out through it
    /// and expects them counted on top. Returns the network and the new total.
    func rebootAndSend(_ lab: NetworkLab, expecting expected: UInt64, bytes: Int, port: Int) async throws -> (NodeNetwork, UInt64) {
        try wipeKernelObjects(lab)
        let network = try lab.makeNetwork()
        try await network.start()
        #expect(await publicOut(network, 61) == expected)
        _ = try await network.attach(contractID: 61, name: "a", network: ContainerNetwork())
        try await sendOut(lab, network, 61, "a", bytes: bytes, port: port)
        let total = await publicOut(network, 61)
        #expect(total >= expected + UInt64(bytes) && total <= expected + UInt64(Double(bytes) * 1.1), "\(total)")
        return (network, total)
    }

    /// What a reboot takes: container namespaces, interfaces and nft tables (not the state directory).
    func wipeKernelObjects(_ lab: NetworkLab) throws {
        for ns in lab.containerNamespaces() { _ = try NetworkLab.run(["/usr/sbin/ip", "netns", "delete", ns]) }
        for link in try lab.ownLinks() { _ = try NetworkLab.run(["/usr/sbin/ip", "-n", lab.nodeNS, "link", "delete", link], allowFailure: true) }
        for family in ["inet", "bridge"] {
            _ = try NetworkLab.run(["/usr/sbin/ip", "netns", "exec", lab.nodeNS, "/usr/sbin/nft", "delete", "table", family, "na_\(lab.id)"])
        }
    }

    @Test func aGracefulStopRemovesTheTablesOnlyWhenNoNetworkIsLeft() async throws {
        let lab = try NetworkLab()
        defer { lab.cleanUp() }
        try await lab.network.start()
        _ = try await lab.network.attach(contractID: 51, name: "x", network: ContainerNetwork())
        // A container still runs: its rules must outlive the agent.
        #expect(await lab.network.releaseIfUnused() == false)
        #expect(try lab.ruleset().contains("table inet na_\(lab.id)"))
        try await lab.network.detach(contractID: 51, name: "x")
        #expect(await lab.network.releaseIfUnused())
        let rules = try lab.ruleset()
        #expect(!rules.contains("na_\(lab.id)"), "tables left:\n\(rules)")
        // The next start makes them again.
        try await lab.makeNetwork().start()
        #expect(try lab.ruleset().contains("table bridge na_\(lab.id)"))
    }

    func expectClean(_ lab: NetworkLab) throws {
        let links = try lab.ownLinks()
        #expect(links.isEmpty, "interfaces left: \(links)")
        #expect(lab.containerNamespaces().isEmpty, "namespaces left: \(lab.containerNamespaces())")
        let rules = try lab.ruleset()
        #expect(!rules.contains("chain c4"), "chains left:\n\(rules)")
        #expect(!rules.contains("jump c4"), "map elements left:\n\(rules)")
        #expect(!rules.contains("5353"))
        #expect(!rules.contains("10.201.") && !rules.contains("172.20."), "subnets left:\n\(rules)")
    }
}
