import ChainClient
import Foundation
import GridTypes
import Testing
@testable import CapacityReporter

/// The outbox against a real embedded ledger (its own block producer in this process), behind a
/// chain wrapper that goes down or loses replies on demand.
@Suite(.serialized) struct OutboxTests {
    func reporter(_ world: LedgerWorld, _ chain: any GridChain, store: ReportStore, reservations: TestReservations = TestReservations(),
                  counters: TestCounters? = nil, settings: ReporterSettings = fastSettings(),
                  clock: any ReporterClock = SystemReporterClock()) -> Reporter {
        Reporter(chain: chain, nodeID: world.nodeID, signer: world.node, store: store, reservations: reservations, network: counters,
                 scanner: CapacityScanner(root: Fixtures.root("vm-2cpu-virtio"), dataDirectories: ["/var/lib/node-agent"]),
                 settings: settings, clock: clock)
    }

    func openStore(_ world: LedgerWorld) throws -> ReportStore {
        try ReportStore(path: world.directory + "/reports.sqlite", signer: world.node)
    }

    /// The chain events the delivered reports must have caused, in send order.
    func expectedEvents(_ entries: [OutboxEntry], nodeID: UInt32) -> [ChainEvent] {
        entries.filter { $0.status == .delivered }.flatMap { entry -> [ChainEvent] in
            switch entry.content {
            case .uptime(let claim): return [.nodeUptimeReported(nodeID: nodeID, timestamp: claim.timestampHint, uptime: claim.uptime)]
            case .contractResources(let reports): return reports.map { .updatedUsedResources($0) }
            case .nru(let reports): return reports.map { .nruConsumptionReportReceived($0) }
            case .nodeResources: return []
            }
        }
    }

    func drained(_ reporter: Reporter, seconds: Double = 90) async -> Bool {
        await reporter.drain(deadline: .now + .seconds(seconds))
    }

    func verifyExport(_ store: ReportStore, _ world: LedgerWorld) throws -> SignedReportLog.Verification {
        let text = try ReportStore.export(statements: try store.signedStatements(), signer: world.node,
                                          stamp: .init(nodeID: world.nodeID, time: 0, bootID: "export", sinceBoot: 0))
        return SignedReportLog.verify(Array(text.utf8), nodeKey: world.node.publicKey)
    }

    /// A graceful drain runs while the run loop still sends: each report reaches the chain once.
    @Test func concurrentSendersHandEachReportToTheChainOnce() async throws {
        let world = try await LedgerWorld(contracts: 1)
        let chain = FlakyChain(world.ledger)
        let store = try openStore(world)
        let reporter = reporter(world, chain, store: store)
        chain.mode = .down
        for _ in 0..<4 { await reporter.reportUptime() }
        chain.mode = .up
        let running = Task { await reporter.run() }
        async let first = drained(reporter)
        async let second = drained(reporter)
        let (a, b) = await (first, second)
        running.cancel()
        await running.value
        // The run loop may have been stopped mid-send: settle that report (found on the chain, not sent again).
        let settled = await drained(reporter)
        #expect(a && b && settled)
        let entries = try store.entries()
        let delivered = entries.filter { $0.status == .delivered }
        #expect(delivered.count >= 4)
        #expect(chain.submitCount == delivered.count, "\(chain.submitCount) submissions for \(delivered.count) delivered reports")
        #expect(try await world.reportEvents() == expectedEvents(entries, nodeID: world.nodeID))
        await world.stop()
    }

    @Test func aChainOutageOfSeveralReportPeriodsIsDeliveredInOrderAfterwards() async throws {
        let world = try await LedgerWorld(contracts: 2)
        let chain = FlakyChain(world.ledger)
        let store = try openStore(world)
        let (c1, c2) = (world.contracts[0], world.contracts[1])
        let reservations = TestReservations([ContractResources(contractID: c1, used: Resources(sru: 10 << 30, cru: 1, mru: 1 << 30))])
        let counters = TestCounters()
        var settings = fastSettings()
        settings.uptimeStaleSeconds = 1
        let reporter = reporter(world, chain, store: store, reservations: reservations, counters: counters, settings: settings)
        let running = Task { await reporter.run() }

        #expect(await eventually(30) { (try? store.status().deliveredCount) ?? 0 >= 2 }, "start-up reports were not delivered")
        await counters.add(c1, 500)

        // Down for several uptime periods: reports keep being written, in order, and wait.
        chain.mode = .down
        for round in UInt64(1)...3 {
            await counters.add(c1, 1000 * round)
            await counters.add(c2, 7)
            await reservations.set([ContractResources(contractID: c1, used: Resources(sru: 10 << 30, cru: round + 1, mru: 1 << 30)),
                                    ContractResources(contractID: c2, used: Resources(cru: round, mru: round << 30))])
            await reporter.reservationsChanged()
            // A network window is whole seconds: wait for one with these bytes in the outbox.
            #expect(await eventually(30) {
                (try? store.entries().filter { $0.status.isOpen && $0.kind == .nru }.count) ?? 0 >= Int(round)
            })
        }
        #expect(await eventually(30) { (try? store.entries().filter { $0.status.isOpen && $0.kind == .uptime }.count) ?? 0 >= 6 },
                "uptime reports written during the outage")
        #expect(await reporter.conditions.condition(.chainReachable).status == .isFalse)
        #expect(await eventually(30) { await reporter.conditions.condition(.reportsDelivering).reason == "ReportsDelayed" })
        let waiting = try store.entries().filter { $0.status.isOpen }
        #expect(waiting.filter { $0.kind == .contractResources }.count == 3)

        chain.mode = .up
        let lastWritten = try #require(waiting.last?.id)
        #expect(await eventually(90) { (try? store.entries().filter { $0.id <= lastWritten && $0.status.isOpen }.isEmpty) ?? false })
        running.cancel()
        await running.value
        // Network windows are whole seconds: the last bytes are reported once a second has passed.
        try await Task.sleep(for: .milliseconds(1100))
        await reporter.reportNetwork()
        #expect(await drained(reporter))

        let entries = try store.entries()
        #expect(entries.allSatisfy { !$0.status.isOpen })
        // In order: delivered reports went into non-decreasing blocks, and the chain saw exactly
        // their effects, once each, in the outbox's order.
        let blocks = entries.compactMap(\.block)
        #expect(blocks == blocks.sorted())
        #expect(try await world.reportEvents() == expectedEvents(entries, nodeID: world.nodeID))
        // Nothing refused; the only undelivered reports are stale uptime reports, superseded or rebuilt.
        let undelivered = entries.filter { $0.status != .delivered }
        #expect(undelivered.allSatisfy { $0.kind == .uptime && ($0.status == .superseded || $0.status == .rebuilt) })
        #expect(!undelivered.isEmpty, "an outage of several periods leaves stale uptime reports")
        #expect(entries.filter { $0.kind == .contractResources }.allSatisfy { $0.status == .delivered })
        // Every byte counted reached the chain, in reports after the baseline.
        let nruBytes = entries.filter { $0.status == .delivered }.reduce(UInt64(0)) { sum, entry in
            if case .nru(let reports) = entry.content { return sum + reports.reduce(0) { $0 + $1.nru } }
            return sum
        }
        let counted = try await counters.publicTrafficBytes().values.reduce(0, +)
        #expect(nruBytes == counted)
        let uptimeHints = entries.filter { $0.status == .delivered }.compactMap { entry -> UInt64? in
            if case .uptime(let claim) = entry.content { return claim.timestampHint }
            return nil
        }
        #expect(uptimeHints == uptimeHints.sorted())
        #expect(await reporter.conditions.condition(.chainReachable).status == .isTrue)
        #expect(await reporter.conditions.condition(.reportsDelivering).status == .isTrue)
        let verification = try verifyExport(store, world)
        #expect(verification.isValid, "\(verification.problems)")
        #expect(verification.pendingReports.isEmpty)
        await world.stop()
    }

    @Test func aSubmissionWhoseReplyIsLostIsFoundOnTheChainNotSentTwice() async throws {
        let world = try await LedgerWorld(contracts: 0)
        let chain = FlakyChain(world.ledger)
        let store = try openStore(world)
        let reporter = reporter(world, chain, store: store)
        await reporter.reportUptime()
        chain.mode = .loseReplies
        #expect(await reporter.sendNext() == .retry)
        #expect(try store.entries().first?.status == .inflight)
        chain.mode = .up
        #expect(await drained(reporter))
        let entries = try store.entries()
        #expect(entries.map(\.status) == [.delivered])
        #expect(chain.submitCount == 1, "sent once; found on the chain afterwards")
        #expect(try await world.reportEvents() == expectedEvents(entries, nodeID: world.nodeID))
        await world.stop()
    }

    @Test func aSubmissionLostOnTheWayIsSentAgainOnce() async throws {
        let world = try await LedgerWorld(contracts: 0)
        let chain = FlakyChain(world.ledger)
        let store = try openStore(world)
        let reporter = reporter(world, chain, store: store)
        await reporter.reportUptime()
        chain.mode = .dropSubmissions
        #expect(await reporter.sendNext() == .retry)
        chain.mode = .up
        #expect(await drained(reporter))
        let entries = try store.entries()
        #expect(entries.map(\.status) == [.delivered])
        #expect(chain.submitCount == 2)
        #expect(try await world.reportEvents() == expectedEvents(entries, nodeID: world.nodeID))
        #expect(try await world.reportEvents().count == 1)
        await world.stop()
    }

    @Test func anUptimeReportRefusedForItsHintIsRebuiltFreshNotResent() async throws {
        let world = try await LedgerWorld(contracts: 0)
        let chain = FlakyChain(world.ledger)
        let store = try openStore(world)
        // The node's wall clock is five minutes behind the chain's.
        let reporter = reporter(world, chain, store: store, clock: OffsetClock(offset: -300))
        await reporter.reportUptime()
        #expect(await drained(reporter))
        let entries = try store.entries()
        #expect(entries.map(\.status) == [.rebuilt, .delivered])
        guard case .uptime(let refused) = entries[0].content, case .uptime(let fresh) = entries[1].content else {
            Issue.record("expected two uptime reports")
            return
        }
        #expect(entries[0].lastError?.contains("InvalidTimestampHint") == true)
        let now = SystemReporterClock().wallSeconds()
        #expect(refused.timestampHint + 300 >= now - 5)
        // The fresh report's hint follows the chain's time, and the chain accepted it.
        #expect(fresh.timestampHint + 5 >= now && fresh.timestampHint <= now + 5)
        #expect(chain.submitCount == 2)
        #expect(try await world.reportEvents() == expectedEvents(entries, nodeID: world.nodeID))
        let clock = await reporter.conditions.condition(.clockConsistent)
        #expect(clock.status == .isFalse && clock.reason == "TimestampHintRejected")
        let statements = try store.signedStatements().compactMap { SignedReportLog.decode($0.body) }
        #expect(statements.first { $0.seq == entries[1].statementSeq }?.replaces == entries[0].statementSeq)
        #expect(try verifyExport(store, world).isValid)
        await world.stop()
    }

    @Test func aReportNamingAContractThatIsGoneIsRebuiltWithoutIt() async throws {
        let world = try await LedgerWorld(contracts: 2)
        let chain = FlakyChain(world.ledger)
        let store = try openStore(world)
        let (c1, c2) = (world.contracts[0], world.contracts[1])
        let reservations = TestReservations([ContractResources(contractID: c1, used: Resources(cru: 1)),
                                             ContractResources(contractID: c2, used: Resources(cru: 2))])
        let reporter = reporter(world, chain, store: store, reservations: reservations)
        chain.mode = .down
        await reporter.reportContractResources(force: true)
        _ = try await LedgerWorld.submit(world.ledger, .cancelContract(contractID: c2), signer: world.user)
        chain.mode = .up
        #expect(await drained(reporter))
        let entries = try store.entries()
        #expect(entries.map(\.status) == [.rebuilt, .delivered])
        #expect(entries[0].lastError?.contains("contracts no longer active: \(c2)") == true)
        #expect(entries[1].content == .contractResources([ContractResources(contractID: c1, used: Resources(cru: 1))]))
        #expect(try await world.reportEvents() == [.updatedUsedResources(ContractResources(contractID: c1, used: Resources(cru: 1)))])
        await world.stop()
    }

    @Test func aFullOutboxHoldsBackUptimeAndNetworkReportsAndLosesNothing() async throws {
        let world = try await LedgerWorld(contracts: 1)
        let chain = FlakyChain(world.ledger)
        let store = try openStore(world)
        let counters = TestCounters()
        var settings = fastSettings()
        settings.maxOpenReports = 3
        let reporter = reporter(world, chain, store: store, counters: counters, settings: settings)
        await reporter.reportNetwork()   // the baseline
        chain.mode = .down
        for _ in 0..<5 { await reporter.reportUptime() }
        #expect(try store.openCount() == 3)
        let full = await reporter.conditions.condition(.reportsDelivering)
        #expect(full.status == .isFalse && full.reason == "OutboxFull")
        await counters.add(world.contracts[0], 4096)
        try await Task.sleep(for: .milliseconds(1100))   // network windows are whole seconds
        await reporter.reportNetwork()
        #expect(try store.openCount() == 3, "held back: the counters were not consumed")
        // Only counters the reporter keeps are told to the source (which may then forget them).
        #expect(await counters.reported == [[:]])

        chain.mode = .up
        #expect(await drained(reporter))
        await reporter.reportNetwork()
        #expect(await drained(reporter))
        let entries = try store.entries()
        let delivered = entries.filter { $0.status == .delivered }
        #expect(delivered.contains { $0.content.kind == .nru })
        let nru = delivered.compactMap { entry -> [NruConsumption]? in
            if case .nru(let reports) = entry.content { return reports }
            return nil
        }.flatMap { $0 }
        #expect(nru.map(\.nru) == [4096])
        #expect(await counters.reported == [[:], [world.contracts[0]: 4096]])
        #expect(await reporter.conditions.condition(.reportsDelivering).status == .isTrue)
        #expect(try await world.reportEvents() == expectedEvents(entries, nodeID: world.nodeID))
        await world.stop()
    }

    @Test func reportsWrittenBeforeARestartAreDeliveredAfterIt() async throws {
        let world = try await LedgerWorld(contracts: 1)
        let chain = FlakyChain(world.ledger)
        let reservations = TestReservations([ContractResources(contractID: world.contracts[0], used: Resources(cru: 3, mru: 2 << 30))])
        chain.mode = .down
        do {
            let first = reporter(world, chain, store: try openStore(world), reservations: reservations)
            await first.reportUptime()
            await first.reportContractResources(force: true)
            #expect(await first.sendNext() == .retry)
        }
        chain.mode = .up
        let store = try openStore(world)
        let second = reporter(world, chain, store: store, reservations: reservations)
        #expect(await drained(second))
        let entries = try store.entries()
        #expect(entries.map(\.status) == [.delivered, .delivered])
        #expect(try await world.reportEvents() == expectedEvents(entries, nodeID: world.nodeID))
        #expect(try await world.reportEvents().count == 2)
        await world.stop()
    }

    @Test func reportsWrittenForAnotherChainAreNeverSentHere() async throws {
        let world = try await LedgerWorld(contracts: 0)
        let chain = FlakyChain(world.ledger)
        chain.mode = .down
        let first = Reporter(chain: chain, nodeID: world.nodeID, signer: world.node, store: try openStore(world),
                             reservations: TestReservations(), scanner: CapacityScanner(root: Fixtures.root("vm-2cpu-virtio"), dataDirectories: ["/"]),
                             settings: fastSettings(), scope: "node \(world.nodeID) on local:old")
        await first.retireForeignReports()
        await first.reportUptime()
        chain.mode = .up
        let store = try openStore(world)
        let second = Reporter(chain: chain, nodeID: world.nodeID, signer: world.node, store: store,
                              reservations: TestReservations(), scanner: CapacityScanner(root: Fixtures.root("vm-2cpu-virtio"), dataDirectories: ["/"]),
                              settings: fastSettings(), scope: "node \(world.nodeID) on local:new")
        await second.retireForeignReports()
        #expect(await drained(second))
        let entries = try store.entries()
        #expect(entries.map(\.status) == [.rejected])
        #expect(entries.first?.lastError?.contains("written for node \(world.nodeID) on local:old") == true)
        #expect(chain.submitCount == 0)
        #expect(try await world.reportEvents().isEmpty)
        await world.stop()
    }

    /// The recorded VM's filesystem, until `unmount()`: then /data is found on the root filesystem.
    final class UnmountingProbe: FilesystemProbe, @unchecked Sendable {
        let recorded = RecordedFilesystemProbe(root: Fixtures.root("vm-2cpu-virtio"))
        private let lock = NSLock()
        private var mounted = true
        func unmount() { lock.withLock { mounted = false } }

        func filesystem(containing path: String) -> Result<FilesystemInfo, FilesystemProbeFailure> {
            recorded.filesystem(containing: path).map { info in
                guard lock.withLock({ mounted }), path.hasPrefix("/data") else { return info }
                var disk = info
                disk.device = DeviceNumber(major: 254, minor: 16)
                disk.mountPoint = "/data"
                return disk
            }
        }
    }

    @Test func aDiskThatDisappearsUnderADataDirectoryIsDiskPressure() async throws {
        let world = try await LedgerWorld(contracts: 0)
        let probe = UnmountingProbe()
        let reporter = Reporter(chain: world.ledger, nodeID: world.nodeID, signer: world.node, store: try openStore(world),
                                reservations: TestReservations(),
                                scanner: CapacityScanner(root: Fixtures.root("vm-2cpu-virtio"), dataDirectories: ["/var/lib/node-agent", "/data/shards"],
                                                         probe: probe),
                                settings: fastSettings())
        await reporter.scanCapacity()
        #expect(await reporter.currentMeasurement()?.disks.count == 2)
        #expect(await reporter.conditions.condition(.diskPressure).status == .isFalse)
        probe.unmount()
        await reporter.scanCapacity()
        #expect(await reporter.currentMeasurement()?.disks.count == 1)
        let pressure = await reporter.conditions.condition(.diskPressure)
        #expect(pressure.status == .isTrue && pressure.message.contains("/data/shards"), "\(pressure)")
        #expect(await reporter.conditions.condition(.ready).status != .isTrue)
        // The smaller capacity is attested again.
        let attestations = try openStore(world).signedStatements().compactMap { SignedReportLog.decode($0.body)?.capacity }
        #expect(attestations.count == 2)
        #expect(attestations[1].total.hru + attestations[1].total.sru < attestations[0].total.hru + attestations[0].total.sru)
        await world.stop()
    }

    @Test func aCapacityChangeIsAttestedAndRegistered() async throws {
        let world = try await LedgerWorld(contracts: 0)
        let store = try openStore(world)
        var settings = fastSettings()
        settings.updatesNodeResources = true
        let reporter = reporter(world, world.ledger, store: store, settings: settings)
        await reporter.scanCapacity()
        await reporter.scanCapacity()   // unchanged: nothing new
        #expect(await drained(reporter))
        let node = try await world.ledger.node(id: world.nodeID)
        let measured = await reporter.currentMeasurement()?.total
        #expect(node?.resources == measured)
        let kinds = try store.signedStatements().compactMap { SignedReportLog.decode($0.body)?.kind }
        #expect(kinds == [.capacity, .nodeResources, .receipt])
        let capacity = await reporter.capacity()
        #expect(capacity?.total == measured)
        #expect(capacity?.used == .zero)
        await world.stop()
    }
}
