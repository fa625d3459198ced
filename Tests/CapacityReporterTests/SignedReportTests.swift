import Foundation
import GridTypes
import Testing
@testable import CapacityReporter

/// The signed statement log: what `node-agent report export` writes and `grid-twin verify-reports`
/// checks.
@Suite struct SignedReportTests {
    let key: Ed25519KeyPair
    let directory: String
    let store: ReportStore

    init() throws {
        key = try Ed25519KeyPair.generate()
        directory = try temporaryDirectory("signed-reports")
        store = try ReportStore(path: directory + "/reports.sqlite", signer: key)
    }

    func stamp(_ time: UInt64, since: UInt64 = 100) -> ReportStore.Stamp {
        ReportStore.Stamp(nodeID: 7, time: time, bootID: "boot-1", sinceBoot: since)
    }

    /// A small log: attestation, uptime, resources, NRU, with receipts, and one rebuilt uptime report.
    func writeLog() throws -> String {
        try store.attest(CapacityAttestation(total: Resources(hru: 1, sru: 2, cru: 3, mru: 4), reserve: Resources(mru: 1),
                                             disks: [.init(device: "sda1", kind: "ssd", bytes: 2)], gpus: [],
                                             machineID: "4d2862672346e6e646a15344c14da5a1", productUUID: nil), stamp: stamp(1000))
        try store.enqueue([.uptime(UptimeClaim(uptime: 100, timestampHint: 1000, bootUptime: 100))], stamp: stamp(1000))
        try store.enqueue([.contractResources([ContractResources(contractID: 5, used: Resources(cru: 1, mru: 1 << 30))])], stamp: stamp(1001))
        try store.enqueue([.nru([NruConsumption(contractID: 5, timestamp: 1002, window: 3600, nru: 12345)])], stamp: stamp(1002))
        var entries = try store.entries()
        try store.resolve(entries[0], outcome: .delivered, block: 10, stamp: stamp(1003))
        try store.resolve(entries[1], outcome: .delivered, block: 11, stamp: stamp(1003))
        entries[2].lastError = "SmartContractModule.ContractNotExists"
        try store.enqueue([.nru([NruConsumption(contractID: 5, timestamp: 1002, window: 3600, nru: 12345)])], stamp: stamp(1004),
                          replacing: entries[2])
        try store.enqueue([.uptime(UptimeClaim(uptime: 2500, timestampHint: 3400, bootUptime: 2500))], stamp: stamp(3400))
        return try ReportStore.export(statements: try store.signedStatements(), signer: key, stamp: stamp(4000))
    }

    @Test func anExportVerifiesWithTheNodesKeyAndSaysWhatItHolds() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let text = try writeLog()
        let result = SignedReportLog.verify(Array(text.utf8), nodeKey: key.publicKey)
        #expect(result.isValid, "\(result.problems)")
        #expect(result.statements == 9)
        #expect(result.countsByKind == ["capacity": 1, "uptime": 2, "contract_resources": 1, "nru": 2, "receipt": 3])
        #expect(result.deliveredReports == 2)
        // The rebuilt NRU report and the last uptime report wait in the outbox.
        #expect(result.pendingReports.count == 2)
        #expect(result.nodeIDs == [7])
        let other = try Ed25519KeyPair.generate()
        #expect(!SignedReportLog.verify(Array(text.utf8), nodeKey: other.publicKey).isValid)
    }

    @Test func everyOneByteChangeIsDetected() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // A short log (each variant is verified whole): an attestation, a report and its receipt.
        try store.attest(CapacityAttestation(total: Resources(cru: 3, mru: 4), reserve: Resources(mru: 1), disks: [], gpus: [],
                                             machineID: nil, productUUID: nil), stamp: stamp(1000))
        try store.enqueue([.uptime(UptimeClaim(uptime: 100, timestampHint: 1000, bootUptime: 100))], stamp: stamp(1000))
        try store.resolve(try #require(try store.entries().first), outcome: .delivered, block: 10, stamp: stamp(1003))
        let original = Array(try ReportStore.export(statements: try store.signedStatements(), signer: key, stamp: stamp(4000)).utf8)
        var undetected = [Int]()
        for offset in original.indices {
            var changed = original
            changed[offset] ^= 0x01
            if SignedReportLog.verify(changed, nodeKey: key.publicKey).isValid { undetected.append(offset) }
        }
        #expect(undetected.isEmpty, "changes at offsets \(undetected) went unnoticed")
    }

    @Test func aRemovedReorderedOrCutStatementIsDetected() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let lines = try writeLog().split(separator: "\n").map(String.init)
        func verify(_ lines: [String]) -> SignedReportLog.Verification {
            SignedReportLog.verify(Array((lines.joined(separator: "\n") + "\n").utf8), nodeKey: key.publicKey)
        }
        #expect(verify(lines).isValid)
        // Each statement removed in turn (the header is line 0, the head the last line).
        for index in 1..<lines.count {
            var shorter = lines
            shorter.remove(at: index)
            let result = verify(shorter)
            #expect(!result.isValid, "removing line \(index + 1) went unnoticed")
        }
        let missing = { () -> SignedReportLog.Verification in var l = lines; l.remove(at: 3); return verify(l) }()
        #expect(missing.problems.contains { $0.contains("statements are missing") })
        var swapped = lines
        swapped.swapAt(2, 3)
        #expect(!verify(swapped).isValid)
        #expect(verify(Array(lines.dropLast())).problems.contains { $0.contains("no export head") })
        // A file cut in the middle of its last line.
        let truncatedText = SignedReportLog.verify(Array((lines.joined(separator: "\n")).utf8), nodeKey: key.publicKey)
        #expect(truncatedText.problems.contains { $0.contains("newline") })
    }

    @Test func aSignedClaimOfUptimeFasterThanWallTimeIsFlagged() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // The store signs whatever it is given; the verifier checks the claims themselves.
        try store.enqueue([.uptime(UptimeClaim(uptime: 100, timestampHint: 1000, bootUptime: 100))], stamp: stamp(1000))
        try store.enqueue([.uptime(UptimeClaim(uptime: 2600, timestampHint: 3000, bootUptime: 2600))], stamp: stamp(3000))
        let text = try ReportStore.export(statements: try store.signedStatements(), signer: key, stamp: stamp(4000))
        let result = SignedReportLog.verify(Array(text.utf8), nodeKey: key.publicKey)
        #expect(result.problems.count == 1)
        #expect(result.problems.first?.contains("grows faster than wall time") == true)
    }

    @Test func statementsSurviveReopeningAndTheLogIsAppendOnly() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        _ = try writeLog()
        let before = try store.signedStatements()
        let reopened = try ReportStore(path: directory + "/reports.sqlite", signer: key)
        try reopened.enqueue([.uptime(UptimeClaim(uptime: 5000, timestampHint: 6000, bootUptime: 5000))], stamp: stamp(6000))
        let after = try reopened.signedStatements()
        #expect(Array(after.prefix(before.count)) == before)
        #expect(SignedReportLog.decode(after.last?.body ?? [])?.prev == Hex.encode(before.last?.hash ?? []))
        let readOnly = try ReportStore(path: directory + "/reports.sqlite", signer: nil, readOnly: true)
        #expect(try readOnly.signedStatements() == after)
        #expect(throws: CapacityReporterError.self) {
            try readOnly.enqueue([.uptime(UptimeClaim(uptime: 1, timestampHint: 1, bootUptime: 1))], stamp: stamp(1))
        }
    }
}
