import Foundation
import GridTypes
import Logging
import Testing
@testable import ChainClient

/// The Python TFChain node (tfchain_double/tfchain_double.py) on loopback. Started per test and
/// killed by its PID when the test ends; it also exits on its own when our end of its stdin
/// closes or after --lifetime seconds, so a crashed test leaves nothing behind.
final class TFChainDouble: @unchecked Sendable {
    let process = Process()
    let stdin = Pipe()
    let stdout = Pipe()
    let ports: [Int]

    init(ports count: Int = 1, blockMilliseconds: Int = 150, keepBlocks: Int = 256) async throws {
        let script = Fixture.directory.appendingPathComponent("tfchain_double/tfchain_double.py").path
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, "--ports", Array(repeating: "0", count: count).joined(separator: ","),
                             "--block-ms", "\(blockMilliseconds)", "--keep-blocks", "\(keepBlocks)", "--lifetime", "240"]
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        let handle = stdout.fileHandleForReading
        // Reading blocks, so it happens off the cooperative pool, raced against a deadline.
        let line: String? = try await withThrowingTaskGroup(of: String?.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    Thread.detachNewThread {
                        var text = ""
                        while !text.contains("\n") {
                            let chunk = handle.availableData
                            if chunk.isEmpty { break }
                            text += String(decoding: chunk, as: UTF8.self)
                        }
                        continuation.resume(returning: text)
                    }
                }
            }
            group.addTask {
                try await Task.sleep(for: .seconds(90))
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
        guard let line, line.hasPrefix("READY") else {
            kill(process.processIdentifier, SIGKILL)
            throw ChainError.unavailable("the TFChain test double did not start (is python3 with scalecodec, websockets, PyNaCl, xxhash installed? scripts/setup.sh installs them): \(line ?? "timeout")")
        }
        ports = line.split(separator: "\n")[0].split(separator: " ").dropFirst().compactMap { Int($0) }
    }

    func url(_ i: Int = 0) -> String { "ws://127.0.0.1:\(ports[i])" }

    func stop() {
        let pid = process.processIdentifier
        if process.isRunning { kill(pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning, Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        try? stdin.fileHandleForWriting.close()
    }

    deinit { stop() }
}

/// A control connection to the double (the test_* methods).
struct DoubleControl {
    let rpc: JSONRPCClient

    init(url: String) async throws {
        rpc = JSONRPCClient(configuration: RPCConfiguration(urls: [url], requestTimeout: .seconds(20)))
        try await rpc.start()
    }

    @discardableResult
    func call(_ method: String, _ params: [JSONValue] = []) async throws -> JSONValue {
        try await rpc.request(method, params)
    }

    func registerNode(_ key: Ed25519KeyPair, farm: UInt32 = 1) async throws -> (twin: UInt32, node: UInt32) {
        let reply = try await call("test_registerNode", [.string(key.publicKey.hex), .number(Double(farm))])
        return (UInt32(try #require(reply["twin_id"]?.uint64)), UInt32(try #require(reply["node_id"]?.uint64)))
    }
}

/// Polls until `condition` holds, failing after `timeout`.
func eventually(_ what: String, timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    Issue.record("timed out waiting for \(what)")
    throw ChainError.timeout(operation: what, seconds: JSONRPCClient.seconds(timeout))
}

/// Runs `body` and stops the clients whether it passed or threw, so no reconnect loop outlives its test.
func withClients(_ chain: TFChainClient, _ control: DoubleControl, _ body: () async throws -> Void) async throws {
    do { try await body() } catch {
        await chain.stop()
        await control.rpc.stop()
        throw error
    }
    await chain.stop()
    await control.rpc.stop()
}

@Suite(.serialized, .timeLimit(.minutes(3))) struct TFChainDoubleTests {
    static let hash1 = "0123456789abcdef0123456789abcdef"
    static let hash2 = "fedcba9876543210fedcba9876543210"

    func client(_ urls: [String], stall: Duration = .seconds(60)) -> TFChainClient {
        TFChainClient(configuration: RPCConfiguration(urls: urls, requestTimeout: .seconds(20), stallTimeout: stall,
                                                      initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(500)),
                      inclusionTimeout: .seconds(30))
    }

    @Test func watcherFollowsContractsOverTFChain() async throws {
        let double = try await TFChainDouble()
        defer { double.stop() }
        let control = try await DoubleControl(url: double.url())
        let nodeKey = try Ed25519KeyPair.generate()
        let (twinID, nodeID) = try await control.registerNode(nodeKey)
        let chain = client([double.url()])
        try await chain.start()
        try await withClients(chain, control) {

            // Registration shows from the next block on.
            try await eventually("registration visible") { try await chain.twinID(account: nodeKey.publicKey) == twinID }
            #expect(try await chain.nodeID(twin: twinID) == nodeID)
            #expect(try await chain.twin(id: twinID)?.publicKey == nodeKey.publicKey)
            #expect(try await chain.node(id: nodeID)?.twinID == twinID)
            #expect(try await chain.farmExists(id: 1))
            #expect(try await chain.farmExists(id: 77) == false)
            #expect(try await chain.nodeID(twin: 999) == nil)
            #expect(try await chain.contract(id: 4242) == nil)

            let sink = MemorySink()
            let watcher = ContractWatcher(chain: chain, sink: sink, nodeID: nodeID, resyncEveryBlocks: 1000)
            let running = Task { await watcher.run() }
            defer { running.cancel() }

            let contractID = try #require(try await control.call("test_createContract", [.number(Double(nodeID)), .number(Double(twinID)), .string(Self.hash1)]).uint64)
            try await eventually("contract created") { await sink.contracts[contractID] != nil }
            #expect(try await chain.activeContracts(node: nodeID) == [contractID])
            #expect(try await chain.contracts(ids: [contractID, 999]).map(\.id) == [contractID])

            try await control.call("test_gracePeriod", [.number(Double(contractID))])
            try await eventually("grace period started") {
                if case .gracePeriod? = await sink.contracts[contractID]?.state { return true } else { return false }
            }
            try await control.call("test_endGracePeriod", [.number(Double(contractID))])
            try await eventually("grace period ended") { await sink.contracts[contractID]?.state == .created }
            try await control.call("test_cancel", [.number(Double(contractID))])
            try await eventually("contract canceled") { await sink.contracts[contractID] == nil }

            let kinds = await sink.log.map { ChainChangeSummary($0).kind }
            #expect(kinds == ["created", "grace-started", "grace-ended", "canceled"])
        }
    }

    @Test func signedCallsAreVerifiedByTheIndependentLibrary() async throws {
        let double = try await TFChainDouble()
        defer { double.stop() }
        let control = try await DoubleControl(url: double.url())
        let nodeKey = try Ed25519KeyPair.generate()
        let (_, nodeID) = try await control.registerNode(nodeKey)
        let userKey = try Ed25519KeyPair.generate()
        let userTwin = UInt32(try #require(try await control.call("test_registerTwin", [.string(userKey.publicKey.hex)]).uint64))
        let chain = client([double.url()])
        try await chain.start()
        try await withClients(chain, control) {

            let now = UInt64(Date().timeIntervalSince1970)
            let uptime = try await chain.submit(.reportUptime(uptime: 3600, timestampHint: now), signer: nodeKey)
            #expect(uptime.events.contains { if case .nodeUptimeReported(nodeID, _, 3600) = $0 { return true } else { return false } })

            // Two at once: the local nonce tracking gives them consecutive nonces.
            async let resources = chain.submit(.reportContractResources([ContractResources(contractID: 1, used: Resources(hru: 1, sru: 2, cru: 3, mru: 4))]), signer: nodeKey)
            async let nru = chain.submit(.addNruReports([NruConsumption(contractID: 1, timestamp: now, window: 3600, nru: 12345)]), signer: nodeKey)
            let (r, n) = try await (resources, nru)
            #expect(r.events.contains(.updatedUsedResources(ContractResources(contractID: 1, used: Resources(hru: 1, sru: 2, cru: 3, mru: 4)))))
            #expect(n.events.contains(.nruConsumptionReportReceived(NruConsumption(contractID: 1, timestamp: now, window: 3600, nru: 12345))))

            // A report the runtime refuses: ExtrinsicFailed decoded to the pallet's error name.
            do {
                _ = try await chain.submit(.reportUptime(uptime: 1, timestampHint: now - 3600), signer: nodeKey)
                Issue.record("a stale timestamp hint was accepted")
            } catch let error as ChainError {
                guard case .rejected(let call, let module, let name, _) = error else { Issue.record("not a rejection: \(error)"); throw error }
                #expect(call == "TfgridModule.report_uptime_v2" && module == "TfgridModule" && name == "InvalidTimestampHint")
            }

            // The twin's side: create, update and cancel a node contract.
            let created = try await chain.submit(.createNodeContract(nodeID: nodeID, deploymentHash: Self.hash1, deploymentData: Array("{}".utf8), publicIPs: 0), signer: userKey)
            let contract = try #require(created.events.compactMap { if case .contractCreated(let c) = $0 { return c } else { return nil } }.first)
            #expect(contract.twinID == userTwin && contract.node.nodeID == nodeID && contract.node.deploymentHash == Self.hash1)
            let updated = try await chain.submit(.updateNodeContract(contractID: contract.id, deploymentHash: Self.hash2, deploymentData: []), signer: userKey)
            #expect(updated.events.contains { if case .contractUpdated(let c) = $0 { return c.node.deploymentHash == Self.hash2 } else { return false } })
            let canceled = try await chain.submit(.cancelContract(contractID: contract.id), signer: userKey)
            #expect(canceled.events.contains(.nodeContractCanceled(contractID: contract.id, nodeID: nodeID, twinID: userTwin)))
            // Registration is the farmer's job on TFChain: nothing is sent.
            await #expect(throws: ChainError.self) { try await chain.submit(.createTwin, signer: nodeKey) }

            // What the double decoded with scalecodec and verified with PyNaCl.
            let submitted = try #require(try await control.call("test_submitted").array)
            #expect(submitted.count == 7)
            for item in submitted {
                #expect(item["signature_ok"] == .bool(true), "\(item)")
                #expect(item["call_bytes_match"] == .bool(true), "\(item)")
                #expect(item["tip"]?.uint64 == 0)
            }
            #expect(submitted.compactMap { $0["function"]?.string }.sorted() == [
                "add_nru_reports", "cancel_contract", "create_node_contract", "report_contract_resources",
                "report_uptime_v2", "report_uptime_v2", "update_node_contract",
            ])
            let nodeNonces = submitted.filter { $0["signer"]?.string == "0x" + nodeKey.publicKey.hex }.compactMap { $0["nonce"]?.uint64 }
            #expect(nodeNonces.sorted() == [0, 1, 2, 3])
        }
    }

    /// A dropped connection is re-established and the head subscription made again: the block
    /// stream goes on without a gap. Old state is pruned: such a block reads as nil.
    @Test func reconnectsAndResubscribesAfterADrop() async throws {
        let double = try await TFChainDouble(blockMilliseconds: 100, keepBlocks: 10)
        defer { double.stop() }
        let control = try await DoubleControl(url: double.url())
        let chain = client([double.url()])
        try await chain.start()
        try await withClients(chain, control) {
            let head = try await chain.finalizedHead()
            var numbers = [UInt64]()
            var dropped = false
            for try await block in chain.finalizedBlocks(after: head.number) {
                numbers.append(block.header.number)
                #expect(block.events.contains { $0.name == "TFTPriceModule.PriceStored" })
                if numbers.count == 5, !dropped {
                    try await control.call("test_dropConnections")
                    dropped = true
                }
                if numbers.count >= 25 { break }
            }
            #expect(numbers == Array((head.number + 1)...(head.number + 25)))
            #expect(await chain.rpc.connectionCount >= 2)
            #expect(try await chain.block(number: 1) == nil)   // pruned: older than 10 blocks
            #expect(try await chain.block(number: 1_000_000) == nil)   // not produced yet
        }
    }

    @Test func failsOverToTheNextURL() async throws {
        let double = try await TFChainDouble(ports: 2, blockMilliseconds: 100)
        defer { double.stop() }
        let control = try await DoubleControl(url: double.url(1))
        // Port 1 on loopback refuses connections: the client must move on to the double.
        let chain = client(["ws://127.0.0.1:1", double.url(0), double.url(1)])
        try await chain.start()
        try await withClients(chain, control) {
            #expect(await chain.rpc.currentURL == double.url(0))
            let head = try await chain.finalizedHead()
            var numbers = [UInt64]()
            for try await block in chain.finalizedBlocks(after: head.number) {
                numbers.append(block.header.number)
                if numbers.count == 3 { try await control.call("test_closePort", [.number(Double(double.ports[0]))]) }
                if numbers.count >= 15 { break }
            }
            #expect(numbers == Array((head.number + 1)...(head.number + 15)))
            #expect(await chain.rpc.currentURL == double.url(1))
        }
    }

    /// Heads stop but the socket stays open: after the stall timeout the connection is replaced.
    /// A runtime upgrade (new spec_version) makes the client load the metadata again.
    @Test func stallIsDetectedAndRuntimeUpgradeReloadsMetadata() async throws {
        let double = try await TFChainDouble(blockMilliseconds: 100)
        defer { double.stop() }
        let control = try await DoubleControl(url: double.url())
        let chain = client([double.url()], stall: .seconds(1))
        try await chain.start()
        try await withClients(chain, control) {
            #expect(await chain.metadataLoads == 1)
            let head = try await chain.finalizedHead()
            var numbers = [UInt64]()
            for try await block in chain.finalizedBlocks(after: head.number) {
                numbers.append(block.header.number)
                if numbers.count == 3 {
                    try await control.call("test_pauseHeads", [.number(2.5)])
                    try await control.call("test_upgradeRuntime")
                }
                if numbers.count >= 40 { break }
            }
            #expect(numbers == Array((head.number + 1)...(head.number + 40)))
            #expect(await chain.rpc.connectionCount >= 2)
            #expect(await chain.metadataLoads == 2)
            #expect(await chain.specVersion == 147)
        }
    }
}
