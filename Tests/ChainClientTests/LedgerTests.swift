import Foundation
import GridTypes
import Testing
@testable import ChainClient

@Suite struct LedgerTests {
    /// 4 GiB memory + 2 CPUs = 1 CU; 200 GiB SSD = 1 SU. At 1_000_000 + 500_000 units per hour and
    /// 6 billed seconds per block: 2_500 units per block.
    static let oneCUOneSU = Resources(hru: 0, sru: 200 << 30, cru: 2, mru: 4 << 30)

    @Test func costUnitsAndPricesMatchHandComputedValues() {
        #expect(CostUnits.cu(Self.oneCUOneSU) == 1)
        #expect(CostUnits.su(Self.oneCUOneSU) == 1)
        #expect(CostUnits.su(Resources(hru: 1200 << 30)) == 1)
        // cru-heavy: 8 CPUs, 2 GiB: min(max(0.5, 4), max(0.25, 8), max(1, 2)) = 2
        #expect(CostUnits.cu(Resources(cru: 8, mru: 2 << 30)) == 2)
        let p = LedgerFixture.parameters
        #expect(p.cost(used: Self.oneCUOneSU, publicIPs: 0, blocks: 600) == 1_500_000)
        #expect(p.cost(used: Self.oneCUOneSU, publicIPs: 0, blocks: 10) == 25_000)
        #expect(p.cost(used: Self.oneCUOneSU, publicIPs: 2, blocks: 600) == 2_000_000)
        #expect(p.cost(used: .zero, publicIPs: 0, blocks: 600) == 0)
        // Rounded down: 1 block of 1 SU of HDD (hru 1200 GiB) = 500_000 / 600 = 833.33 -> 833.
        #expect(p.cost(used: Resources(hru: 1200 << 30), publicIPs: 0, blocks: 1) == 833)
    }

    @Test func tftAmountsParseAndFormat() {
        #expect(TFT.parse("12.5") == 125_000_000)
        #expect(TFT.parse("0.0000001") == 1)
        #expect(TFT.parse("1.00000001") == nil)
        #expect(TFT.parse("-1") == nil)
        #expect(TFT.parse("99999999999999999999") == nil)
        #expect(TFT.format(125_000_000) == "12.5000000 TFT")
    }

    @Test func contractLifecycleCreateGraceResumeAndDeleteByFunds() async throws {
        let f = try LedgerFixture()
        let grid = try await f.makeGrid()
        try await f.fund(grid.userTwin, 50_000)

        let created = try await f.apply(.createNodeContract(nodeID: grid.nodeID, deploymentHash: LedgerFixture.hash(1),
                                                            deploymentData: [], publicIPs: 0), by: grid.user)
        guard case .contractCreated(let contract)? = created.events.first else { Issue.record("no ContractCreated"); return }
        #expect(contract.state == .created)
        #expect(try await f.ledger.activeContracts(node: grid.nodeID) == [contract.id])
        let createdBlock = created.blockNumber
        try await f.apply(.reportContractResources([ContractResources(contractID: contract.id, used: Self.oneCUOneSU)]), by: grid.nodeKey)

        // First billing block: pays for the blocks since creation at 2_500 units each.
        let firstBill = (createdBlock / 10 + 1) * 10
        try await f.produce(until: firstBill)
        let firstAmount = (firstBill - createdBlock) * 2_500
        #expect(firstAmount <= 50_000, "fixture assumption")
        #expect(try f.ledger.balance(twin: grid.userTwin) == 50_000 - firstAmount)
        let billed = try f.ledger.events(contract: contract.id).compactMap { record -> UInt64? in
            if case .contractBilled(_, let amount) = record.event { return amount }
            return nil
        }
        #expect(billed == [firstAmount])

        // Run out: the next period costs 25_000; whatever is left is not enough at some billing block.
        var graceBlock: UInt64?
        for _ in 0..<6 where graceBlock == nil {
            try await f.produce(until: try await f.head() + 10)
            if case .gracePeriod(let since)? = try await f.ledger.contract(id: contract.id)?.state { graceBlock = since }
        }
        let since = try #require(graceBlock)
        #expect(since % 10 == 0)
        #expect(try f.ledger.events(contract: contract.id).contains {
            $0.event == .contractGracePeriodStarted(contractID: contract.id, nodeID: grid.nodeID, twinID: grid.userTwin, blockNumber: since)
        })
        #expect(try await f.ledger.activeContracts(node: grid.nodeID) == [contract.id], "grace is still active")
        await #expect(throws: ChainError.self) {
            try await f.apply(.updateNodeContract(contractID: contract.id, deploymentHash: LedgerFixture.hash(9), deploymentData: []), by: grid.user)
        }

        // Top up: the next billing pays everything owed since the last bill and ends the grace period.
        let before = try #require(try f.ledger.balance(twin: grid.userTwin))
        let owedFrom = try #require(try f.ledger.contracts(twin: grid.userTwin).first?.billedUntilBlock)
        let fundBlock = try await f.head() + 1
        let nextBill = (fundBlock + 9) / 10 * 10  // the funding tx applies before billing in its own block
        let owed = (nextBill - owedFrom) * 2_500
        #expect(owed > before)
        let topUp = owed - before + 10_000  // leaves 10_000: less than one more period
        try await f.fund(grid.userTwin, topUp)
        try await f.produce(until: nextBill)
        #expect(try await f.ledger.contract(id: contract.id)?.state == .created)
        #expect(try f.ledger.balance(twin: grid.userTwin) == 10_000)
        #expect(try f.ledger.events(contract: contract.id).contains {
            $0.event == .contractGracePeriodEnded(contractID: contract.id, nodeID: grid.nodeID, twinID: grid.userTwin)
        })

        // Drain again and never top up: grace, then Deleted(OutOfFunds) after 20 blocks.
        var deletedAt: UInt64?
        for _ in 0..<60 where deletedAt == nil {
            try await f.producer.produceBlock()
            if case .deleted(let cause)? = try await f.ledger.contract(id: contract.id)?.state {
                #expect(cause == .outOfFunds)
                deletedAt = try await f.head()
            }
        }
        let deleted = try #require(deletedAt)
        let lastGrace = try f.ledger.events(contract: contract.id).compactMap { record -> UInt64? in
            if case .contractGracePeriodStarted(_, _, _, let block) = record.event { return block }
            return nil
        }.last ?? 0
        #expect(deleted == lastGrace + 20)
        #expect(try await f.ledger.activeContracts(node: grid.nodeID).isEmpty)
        #expect(try f.ledger.events(contract: contract.id).last?.event ==
            .nodeContractCanceled(contractID: contract.id, nodeID: grid.nodeID, twinID: grid.userTwin))
    }

    @Test func cancelByUserDeletesAndOnlyTheOwnerMayCancel() async throws {
        let f = try LedgerFixture()
        let grid = try await f.makeGrid()
        let stranger = try Ed25519KeyPair.generate()
        try await f.apply(.createTwin, by: stranger)
        let created = try await f.apply(.createNodeContract(nodeID: grid.nodeID, deploymentHash: LedgerFixture.hash(2),
                                                            deploymentData: Array("meta".utf8), publicIPs: 0), by: grid.user)
        let id = try #require(created.events.first?.contractID)
        await #expect(throws: ChainError.rejected(call: "SmartContractModule.cancel_contract", module: "SmartContractModule",
                                                  error: "TwinNotAuthorizedToCancelContract", detail: "contract \(id) belongs to twin \(grid.userTwin)")) {
            try await f.apply(.cancelContract(contractID: id), by: stranger)
        }
        let canceled = try await f.apply(.cancelContract(contractID: id), by: grid.user)
        #expect(canceled.events.contains(.nodeContractCanceled(contractID: id, nodeID: grid.nodeID, twinID: grid.userTwin)))
        #expect(try await f.ledger.contract(id: id)?.state == .deleted(.canceledByUser))
        await #expect(throws: ChainError.self) { try await f.apply(.cancelContract(contractID: id), by: grid.user) }
    }

    @Test func badCallsAreRejectedWithTheChainsErrorAndChangeNothing() async throws {
        let f = try LedgerFixture()
        let grid = try await f.makeGrid()
        func rejection(_ call: ChainCall, by key: Ed25519KeyPair) async -> String? {
            do {
                try await f.apply(call, by: key)
                return nil
            } catch {
                if case .rejected(_, let module, let name, _) = error as? ChainError { return "\(module).\(name)" }
                return "unexpected \(error)"
            }
        }
        #expect(await rejection(.createNodeContract(nodeID: 999, deploymentHash: LedgerFixture.hash(3), deploymentData: [], publicIPs: 0), by: grid.user)
            == "SmartContractModule.NodeNotExists")
        #expect(await rejection(.createNodeContract(nodeID: grid.nodeID, deploymentHash: "not-a-hash", deploymentData: [], publicIPs: 0), by: grid.user)
            == "SmartContractModule.InvalidContractHash")
        #expect(await rejection(.createNodeContract(nodeID: grid.nodeID, deploymentHash: LedgerFixture.hash(3),
                                                    deploymentData: [UInt8](repeating: 1, count: 513), publicIPs: 0), by: grid.user)
            == "SmartContractModule.DeploymentDataTooLong")
        #expect(await rejection(.createTwin, by: grid.user) == "TfgridModule.TwinWithSameAccountIdExists")
        let nobody = try Ed25519KeyPair.generate()
        #expect(await rejection(.createNodeContract(nodeID: grid.nodeID, deploymentHash: LedgerFixture.hash(3), deploymentData: [], publicIPs: 0), by: nobody)
            == "TfgridModule.TwinNotExists")
        #expect(await rejection(.createNode(farmID: 4242, resources: .zero), by: grid.user) == "TfgridModule.FarmNotExists")
        #expect(await rejection(.reportUptime(uptime: 10, timestampHint: 1_000), by: grid.nodeKey) == "TfgridModule.InvalidTimestampHint")
        #expect(await rejection(.reportUptime(uptime: 10, timestampHint: UInt64(Date().timeIntervalSince1970)), by: grid.user) == "TfgridModule.NodeNotExists")
        #expect(try await f.ledger.activeContracts(node: grid.nodeID).isEmpty)

        // A contract of another node cannot be reported by this one.
        let id = try #require(try await f.apply(.createNodeContract(nodeID: grid.nodeID, deploymentHash: LedgerFixture.hash(4),
                                                                    deploymentData: [], publicIPs: 0), by: grid.user).events.first?.contractID)
        #expect(await rejection(.reportContractResources([ContractResources(contractID: id, used: .zero)]), by: grid.user) == "TfgridModule.NodeNotExists")
        let uptime = try await f.apply(.reportUptime(uptime: 3600, timestampHint: UInt64(Date().timeIntervalSince1970)), by: grid.nodeKey)
        #expect(uptime.events.first?.name == "TfgridModule.NodeUptimeReported")
        #expect(try f.ledger.uptimeReports(node: grid.nodeID).first?.uptime == 3600)
    }

    @Test func balanceOverflowIsRefusedAndTheBalanceKept() async throws {
        let f = try LedgerFixture()
        let grid = try await f.makeGrid()
        try await f.fund(grid.userTwin, UInt64(Int64.max) - 5)
        await #expect(throws: ChainError.self) { try await f.fund(grid.userTwin, 10) }
        #expect(try f.ledger.balance(twin: grid.userTwin) == UInt64(Int64.max) - 5)
        await #expect(throws: ChainError.self) { try await f.ledger.fund(twin: grid.userTwin, amount: 0) }
    }

    @Test func aForgedSignatureIsRejected() async throws {
        let f = try LedgerFixture()
        let key = try Ed25519KeyPair.generate()
        let id = try f.ledger.enqueue(.createTwin, signer: key)
        // Someone with write access to the file swaps the signer for another key: the signature no longer verifies.
        let other = try Ed25519KeyPair.generate()
        try f.ledger.write("tamper") { db in
            try db.execute(sql: "UPDATE transactions SET signer = ? WHERE id = ?", arguments: [Data(other.publicKey.bytes), id])
        }
        try await f.producer.produceBlock()
        await #expect(throws: ChainError.rejected(call: "create_twin", module: "System", error: "BadSignature",
                                                  detail: "the signature does not verify with the signer's key")) {
            try await f.ledger.awaitOutcome(transaction: id, call: "create_twin")
        }
        #expect(try await f.ledger.twinID(account: other.publicKey) == nil)
    }

    @Test func onlyOneProducerHoldsTheLease() async throws {
        let f = try LedgerFixture()
        // A second process opening the same file: its own connection pool and producer.
        let second = try LocalLedger(path: f.ledger.path)
        #expect(second.genesisHash == f.ledger.genesisHash)
        #expect(second.parameters == LedgerFixture.parameters)
        let rival = BlockProducer(ledger: second, name: "rival")
        #expect(try await f.producer.produceBlock() != nil)
        #expect(try await rival.produceBlock() == nil)
        #expect(try rival.currentHolder() == f.producer.holder)
        let before = try await f.head()
        // The holder leaves: the rival takes over and continues the same chain.
        await f.producer.releaseLease()
        #expect(try await rival.produceBlock()?.number == before + 1)
        #expect(try await f.producer.produceBlock() == nil)
        let blocks = try second.recentBlocks(limit: 2)
        #expect(blocks.map(\.producer) == [rival.holder, f.producer.holder])
    }

    @Test func refusesNewerSchemasCorruptFilesAndForeignDatabases() throws {
        let dir = NSTemporaryDirectory() + "ledger-bad-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        let newer = dir + "/newer.sqlite"
        _ = try LocalLedger(path: newer)
        let handle = try LocalLedger(path: newer)
        try handle.write("bump") { db in try db.execute(sql: "PRAGMA user_version = 99") }
        #expect(throws: ChainError.ledgerSchemaTooNew(path: newer, found: 99, supported: 1)) { try LocalLedger(path: newer) }

        let garbage = dir + "/garbage.sqlite"
        try Data(repeating: 0x5a, count: 8192).write(to: URL(fileURLWithPath: garbage))
        #expect { try LocalLedger(path: garbage) } throws: { error in
            if case .ledgerCorrupt = error as? ChainError { return true }
            return false
        }

        let foreign = dir + "/foreign.sqlite"
        let other = try LocalLedger(path: dir + "/seed.sqlite")
        try other.write("make foreign") { db in
            try db.execute(sql: "ATTACH DATABASE ? AS f", arguments: [foreign])
            try db.execute(sql: "CREATE TABLE f.notes(text TEXT)")
        }
        #expect { try LocalLedger(path: foreign) } throws: { error in
            if case .ledgerCorrupt(_, let detail) = error as? ChainError { return detail.contains("unrelated tables") }
            return false
        }
    }

    @Test func aLockedLedgerGivesAClearErrorAndNoPartialWrite() async throws {
        let f = try LedgerFixture()
        let impatient = try LocalLedger(path: f.ledger.path, busyTimeoutSeconds: 0.2)
        let key = try Ed25519KeyPair.generate()
        // Another connection holds the write lock longer than the busy timeout.
        let holder = try LocalLedger(path: f.ledger.path)
        let release = AsyncStream<Void>.makeStream()
        let held = AsyncStream<Void>.makeStream()
        let lockTask = Task {
            try await holder.pool.writeWithoutTransaction { db in
                try db.execute(sql: "BEGIN IMMEDIATE")
                held.continuation.yield()
                let semaphore = DispatchSemaphore(value: 0)
                Task { for await _ in release.stream { break }; semaphore.signal() }
                semaphore.wait()
                try db.execute(sql: "COMMIT")
            }
        }
        // Wait until the lock is really held (a fixed sleep lost the race when tests run in parallel on 2 cores).
        for await _ in held.stream { break }
        #expect(throws: ChainError.ledgerLocked(path: f.ledger.path)) { try impatient.enqueue(.createTwin, signer: key) }
        release.continuation.yield()
        release.continuation.finish()
        try await lockTask.value
        #expect(try impatient.pendingTransactionCount() == 0)
    }
}
