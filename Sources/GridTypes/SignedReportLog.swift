import Foundation

/// A statement as signed: its exact JSON bytes and the node's ed25519 signature over them. The
/// bytes are kept verbatim (never re-encoded), so verification needs no canonical JSON.
public struct SignedStatement: Equatable, Sendable {
    public let body: [UInt8]
    public let signature: [UInt8]

    public init(body: [UInt8], signature: [UInt8]) {
        self.body = body
        self.signature = signature
    }

    /// What the next statement's `prev` names.
    public var hash: [UInt8] { Blake2b.hash256(body) }

    /// One line of an export file (without the newline): 128 hex digits, a space, the JSON.
    public var line: String { Hex.encode(signature) + " " + String(decoding: body, as: UTF8.self) }
}

/// The node's report log as a file anyone can check with the node's public key:
///
///     node-agent signed reports v1
///     <signature hex> <statement JSON>
///     ...
///     <signature hex> <export_head statement JSON>
///
/// Statement n+1 names the BLAKE2b-256 hash of statement n's JSON bytes; the export head names the
/// last one. A changed byte breaks a signature or a hash link; a removed statement breaks a link or
/// the sequence; a removed tail breaks the head.
public enum SignedReportLog {
    public static let header = "node-agent signed reports v1"
    /// Prefixed to every signed message: the node key also signs chain extrinsics, and a statement
    /// signature must never be usable as one (or the other way round).
    public static let signingContext = Array("node-agent signed report v1\n".utf8)
    /// Longest statement line accepted (the largest report holds 100 contracts).
    public static let maxLineBytes = 256 * 1024
    public static let maxReportedErrors = 50

    public static func sign(_ statement: ReportStatement, with keyPair: Ed25519KeyPair) throws(GridTypesError) -> SignedStatement {
        let body = try encode(statement)
        return SignedStatement(body: body, signature: keyPair.sign(signingContext + body))
    }

    /// Sorted keys, no whitespace, slashes unescaped: one line of ASCII-safe JSON.
    public static func encode(_ statement: ReportStatement) throws(GridTypesError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do { return [UInt8](try encoder.encode(statement)) } catch {
            throw .encoding(context: "report statement \(statement.seq)", detail: "\(error)")
        }
    }

    public static func decode(_ body: [UInt8]) -> ReportStatement? {
        try? JSONDecoder().decode(ReportStatement.self, from: Data(body))
    }

    /// The whole export file's text.
    public static func render(_ statements: [SignedStatement]) -> String {
        var text = header + "\n"
        for statement in statements { text += statement.line + "\n" }
        return text
    }

    /// What a verification found. `problems` empty means every check passed.
    public struct Verification: Sendable, CustomStringConvertible {
        public var statements = 0
        public var countsByKind: [String: Int] = [:]
        public var nodeIDs: Set<UInt32> = []
        public var firstTime: UInt64?
        public var lastTime: UInt64?
        /// Reports with no receipt at export time (still in the node's outbox).
        public var pendingReports: [UInt64] = []
        public var deliveredReports = 0
        public var problems: [String] = []
        public var isValid: Bool { problems.isEmpty }

        public var description: String {
            var lines = [String]()
            let kinds = countsByKind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            lines.append("\(statements) statement(s) from node \(nodeIDs.sorted().map(String.init).joined(separator: ",")): \(kinds)")
            if let firstTime, let lastTime {
                lines.append("time span: \(firstTime) .. \(lastTime) (Unix seconds)")
            }
            lines.append("\(deliveredReports) report(s) delivered, \(pendingReports.count) pending at export")
            if problems.isEmpty {
                lines.append("OK: every signature verifies, the hash chain is complete and the head commits to the last statement")
            } else {
                lines.append("FAILED: \(problems.count) problem(s)")
                lines += problems.map { "  " + $0 }
            }
            return lines.joined(separator: "\n")
        }
    }

    /// Checks an export file against the node's public key: the header, every signature, the
    /// sequence and hash links, receipts naming earlier reports, uptime never growing faster than
    /// the timestamp hints within one boot, and the export head committing to the last statement.
    public static func verify(_ file: [UInt8], nodeKey: Ed25519PublicKey) -> Verification {
        var result = Verification()
        func problem(_ text: String) {
            if result.problems.count < maxReportedErrors { result.problems.append(text) }
            else if result.problems.count == maxReportedErrors { result.problems.append("... further problems not listed") }
        }
        var lines = file.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        guard lines.last?.isEmpty == true else {
            problem("the file does not end with a newline (truncated?)")
            return result
        }
        lines.removeLast()
        guard let first = lines.first, Array(first) == Array(header.utf8) else {
            problem("line 1 is not the header \"\(header)\"")
            return result
        }

        var previousHash = [UInt8](repeating: 0, count: 32)
        var previousSeq: UInt64 = 0
        var sawHead = false
        var reportKinds: [UInt64: ReportStatement.Kind] = [:]
        var receipts: [UInt64: DeliveryReceipt.Outcome] = [:]
        // Per boot id, the largest (hint - uptime) seen: uptime may never exceed hint minus it.
        var uptimeEpochs: [String: Int64] = [:]

        for (offset, rawLine) in lines.dropFirst().enumerated() {
            let number = offset + 2
            let line = Array(rawLine)
            if sawHead { problem("line \(number): a statement after the export head"); break }
            guard line.count <= maxLineBytes else { problem("line \(number): longer than \(maxLineBytes) bytes"); continue }
            guard line.count > 129, line[128] == UInt8(ascii: " "),
                  line[0..<128].allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }),
                  let signature = try? Hex.decode(String(decoding: line[0..<128], as: UTF8.self)) else {
                problem("line \(number): not \"<128 lowercase hex signature> <statement JSON>\"")
                continue
            }
            let body = Array(line[129...])
            guard nodeKey.verify(signature: signature, message: signingContext + body) else {
                problem("line \(number): the signature does not verify with node key \(nodeKey.hex) (changed statement or another node's log)")
                previousHash = Blake2b.hash256(body)
                continue
            }
            guard let statement = decode(body), statement.version == ReportStatement.currentVersion else {
                problem("line \(number): signed, but not a version-\(ReportStatement.currentVersion) statement")
                continue
            }
            if statement.seq != previousSeq + 1 {
                problem("line \(number): statement \(statement.seq) follows \(previousSeq): \(statement.seq > previousSeq + 1 ? "statements are missing" : "out of order")")
            }
            if statement.prev != Hex.encode(previousHash) {
                problem("line \(number): statement \(statement.seq) does not link to the statement before it (one was removed or changed)")
            }
            previousSeq = statement.seq
            previousHash = Blake2b.hash256(body)

            if statement.kind == .exportHead {
                sawHead = true
                if statement.exportedCount != UInt64(result.statements) {
                    problem("line \(number): the export head counts \(statement.exportedCount.map(String.init) ?? "nothing") statements, the file holds \(result.statements)")
                }
                continue
            }
            result.statements += 1
            result.countsByKind[statement.kind.rawValue, default: 0] += 1
            result.nodeIDs.insert(statement.nodeID)
            if result.firstTime == nil { result.firstTime = statement.time }
            result.lastTime = statement.time

            if statement.kind.isReport { reportKinds[statement.seq] = statement.kind }
            if let replaced = statement.replaces, reportKinds[replaced] != statement.kind {
                problem("line \(number): statement \(statement.seq) replaces \(replaced), which is not an earlier \(statement.kind.rawValue) report")
            }
            switch statement.kind {
            case .uptime:
                guard let claim = statement.uptime else { problem("line \(number): an uptime statement without its claim"); continue }
                if claim.uptime > claim.bootUptime {
                    problem("line \(number): uptime \(claim.uptime) s is more than the \(claim.bootUptime) s since boot")
                }
                let hint = Int64(clamping: claim.timestampHint), uptime = Int64(clamping: claim.uptime)
                if let epoch = uptimeEpochs[statement.bootID], uptime > hint - epoch {
                    problem("line \(number): uptime \(claim.uptime) s grows faster than wall time since an earlier report of boot \(statement.bootID) (by \(uptime - (hint - epoch)) s)")
                }
                uptimeEpochs[statement.bootID] = max(uptimeEpochs[statement.bootID] ?? Int64.min, hint - uptime)
            case .contractResources where statement.contractResources == nil,
                 .nru where statement.nru == nil,
                 .nodeResources where statement.nodeResources == nil,
                 .capacity where statement.capacity == nil:
                problem("line \(number): a \(statement.kind.rawValue) statement without its content")
            case .receipt:
                guard let receipt = statement.receipt else { problem("line \(number): a receipt without content"); continue }
                if reportKinds[receipt.of] == nil {
                    problem("line \(number): receipt for statement \(receipt.of), which is not an earlier report")
                } else if let earlier = receipts[receipt.of] {
                    problem("line \(number): a second receipt for report \(receipt.of) (first: \(earlier.rawValue))")
                }
                if let by = receipt.by, reportKinds[by] == nil {
                    problem("line \(number): receipt names \(by) as the replacement, which is not an earlier report")
                }
                if receipt.outcome == .delivered, receipt.block == nil {
                    problem("line \(number): a delivery receipt without a block number")
                }
                receipts[receipt.of] = receipt.outcome
                if receipt.outcome == .delivered { result.deliveredReports += 1 }
            default:
                break
            }
        }
        if !sawHead {
            problem("the file has no export head: its end may have been cut off")
        }
        result.pendingReports = reportKinds.keys.filter { receipts[$0] == nil }.sorted()
        return result
    }
}
