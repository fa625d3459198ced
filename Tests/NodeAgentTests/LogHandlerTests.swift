import Foundation
import Logging
import Testing
@testable import NodeAgent

@Suite struct LogHandlerTests {
    let date = Date(timeIntervalSince1970: 1_700_000_000.25)

    @Test func logfmtQuotesOnlyWhatNeedsIt() {
        let handler = AgentLogHandler(label: "node-agent", format: .logfmt(journaldPriority: false), level: .info) { _ in }
        let line = handler.render(level: .warning, message: "chain unreachable", metadata: [
            "url": "wss://a/ws", "error": "connection refused", "note": "say \"hi\"\nbye", "empty": "",
        ], date: date)
        #expect(line == "ts=2023-11-14T22:13:20.250Z level=warning logger=node-agent msg=\"chain unreachable\" empty=\"\" error=\"connection refused\" note=\"say \\\"hi\\\"\\nbye\" url=wss://a/ws\n")
        #expect(line.filter { $0 == "\n" }.count == 1)
    }

    @Test func journaldGetsSyslogPriorities() {
        let handler = AgentLogHandler(label: "x", format: .logfmt(journaldPriority: true), level: .info) { _ in }
        #expect(handler.render(level: .error, message: "m", metadata: [:], date: date).hasPrefix("<3>ts="))
        #expect(handler.render(level: .info, message: "m", metadata: [:], date: date).hasPrefix("<6>ts="))
        #expect(AgentLogHandler.format(for: .auto, environment: ["JOURNAL_STREAM": "8:123"]).isJournald || isatty(STDERR_FILENO) == 1)
    }

    @Test func humanLinesAreReadable() {
        let handler = AgentLogHandler(label: "x", format: .human, level: .info) { _ in }
        #expect(handler.render(level: .info, message: "started", metadata: ["node": "7"], date: date) ==
            "2023-11-14 22:13:20.250 INFO    started node=7\n")
    }

    @Test func levelFiltersAndMetadataMerge() {
        let lines = LockedLines()
        var logger = Logger(label: "t") { label in
            AgentLogHandler(label: label, format: .logfmt(journaldPriority: false), level: .notice) { lines.append($0) }
        }
        logger[metadataKey: "contract"] = "42"
        logger.info("dropped")
        logger.notice("kept", metadata: ["step": "verify"])
        #expect(lines.all.count == 1)
        #expect(lines.all.first?.contains("msg=kept contract=42 step=verify") == true)
    }
}

extension AgentLogHandler.Format {
    var isJournald: Bool {
        if case .logfmt(true) = self { return true }
        return false
    }
}

final class LockedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines = [String]()
    func append(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
}
