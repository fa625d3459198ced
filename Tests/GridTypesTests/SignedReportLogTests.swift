import Testing
@testable import GridTypes

/// The report log format on its own: statements signed and linked by hand, checked by the verifier.
@Suite struct SignedReportLogTests {
    func chain(_ key: Ed25519KeyPair, count: Int) throws -> [SignedStatement] {
        var signed = [SignedStatement]()
        var prev = ReportStatement.genesisPrev
        for seq in 1...UInt64(count) {
            var statement = ReportStatement(seq: seq, prev: prev, kind: .uptime, nodeID: 3, time: 1000 + seq * 2400, bootID: "b")
            statement.uptime = UptimeClaim(uptime: seq * 2400, timestampHint: 1000 + seq * 2400, bootUptime: seq * 2400)
            let one = try SignedReportLog.sign(statement, with: key)
            prev = Hex.encode(one.hash)
            signed.append(one)
        }
        var head = ReportStatement(seq: UInt64(count) + 1, prev: prev, kind: .exportHead, nodeID: 3, time: 99_999, bootID: "b")
        head.exportedCount = UInt64(count)
        signed.append(try SignedReportLog.sign(head, with: key))
        return signed
    }

    @Test func aLinkedSignedLogVerifiesAndABrokenOneDoesNot() throws {
        let key = try Ed25519KeyPair.generate()
        let statements = try chain(key, count: 4)
        let good = SignedReportLog.verify(Array(SignedReportLog.render(statements).utf8), nodeKey: key.publicKey)
        #expect(good.isValid, "\(good.problems)")
        #expect(good.statements == 4 && good.pendingReports == [1, 2, 3, 4])

        var missing = statements
        missing.remove(at: 1)
        #expect(!SignedReportLog.verify(Array(SignedReportLog.render(missing).utf8), nodeKey: key.publicKey).isValid)
        let stranger = try Ed25519KeyPair.generate()
        let foreign = SignedReportLog.verify(Array(SignedReportLog.render(statements).utf8), nodeKey: stranger.publicKey)
        #expect(foreign.problems.count >= 4)
        // A signature made without the context prefix (as if over another message type) is refused.
        let bare = SignedStatement(body: statements[0].body, signature: key.sign(statements[0].body))
        #expect(!SignedReportLog.verify(Array(SignedReportLog.render([bare] + statements.dropFirst()).utf8), nodeKey: key.publicKey).isValid)
    }
}
