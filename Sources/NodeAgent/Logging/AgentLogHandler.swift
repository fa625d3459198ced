import Foundation
import Logging

/// swift-log handler: human lines on a terminal, logfmt `key=value` lines otherwise. Under systemd
/// (JOURNAL_STREAM set) each line starts with the `<N>` syslog priority journald understands, so
/// `journalctl -p warning` works without a journald client library.
struct AgentLogHandler: LogHandler {
    enum Format: Sendable {
        case human
        case logfmt(journaldPriority: Bool)
    }

    let label: String
    let format: Format
    let output: @Sendable (String) -> Void
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String, format: Format, level: Logger.Level, output: @escaping @Sendable (String) -> Void = AgentLogHandler.writeStderr) {
        self.label = label
        self.format = format
        self.logLevel = level
        self.output = output
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Picks the format from config ("auto" looks at whether stderr is a terminal).
    static func format(for configured: AgentConfig.LogFormat, environment: [String: String] = ProcessInfo.processInfo.environment) -> Format {
        switch configured {
        case .human: return .human
        case .logfmt: return .logfmt(journaldPriority: environment["JOURNAL_STREAM"] != nil)
        case .auto:
            return isatty(STDERR_FILENO) == 1 ? .human : .logfmt(journaldPriority: environment["JOURNAL_STREAM"] != nil)
        }
    }

    static func bootstrap(format configured: AgentConfig.LogFormat, level: Logger.Level) {
        let format = format(for: configured)
        LoggingSystem.bootstrap { label in AgentLogHandler(label: label, format: format, level: level) }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        output(render(level: event.level, message: event.message.description, metadata: merged, date: Date()))
    }

    func render(level: Logger.Level, message: String, metadata: Logger.Metadata, date: Date) -> String {
        let keys = metadata.keys.sorted()
        switch format {
        case .human:
            var line = "\(Self.timestamp(date, iso: false)) \(level.rawValue.uppercased().padding(toLength: 8, withPad: " ", startingAt: 0))\(message)"
            for key in keys { line += " \(key)=\(Self.quote(metadata[key]?.description ?? ""))" }
            return line + "\n"
        case .logfmt(let journaldPriority):
            var line = journaldPriority ? "<\(Self.syslogPriority(level))>" : ""
            line += "ts=\(Self.timestamp(date, iso: true)) level=\(level.rawValue) logger=\(Self.quote(label)) msg=\(Self.quote(message))"
            for key in keys { line += " \(Self.sanitizeKey(key))=\(Self.quote(metadata[key]?.description ?? ""))" }
            return line + "\n"
        }
    }

    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// logfmt quoting: bare when safe, otherwise double-quoted with escapes; newlines never split a line.
    static func quote(_ value: String) -> String {
        let needsQuotes = value.isEmpty || value.contains { $0 == " " || $0 == "=" || $0 == "\"" || $0 == "\\" || $0.isNewline || $0 == "\t" }
        guard needsQuotes else { return value }
        var out = "\""
        for char in value {
            switch char {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default: out.append(char)
            }
        }
        return out + "\""
    }

    static func sanitizeKey(_ key: String) -> String {
        String(key.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." || $0 == "-" ? $0 : "_" })
    }

    static func timestamp(_ date: Date, iso: Bool) -> String {
        let interval = date.timeIntervalSince1970
        var seconds = time_t(interval.rounded(.down))
        let millis = Int((interval - interval.rounded(.down)) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let date = String(format: "%04d-%02d-%02d", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday))
        let time = String(format: "%02d:%02d:%02d.%03d", Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), millis)
        return iso ? "\(date)T\(time)Z" : "\(date) \(time)"
    }

    /// One write(2) per line so lines from concurrent tasks never interleave.
    @Sendable static func writeStderr(_ line: String) {
        let bytes = Array(line.utf8)
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var offset = 0
            while offset < raw.count {
                let n = write(STDERR_FILENO, base + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                offset += n
            }
        }
    }
}

extension AgentConfig.LogLevel {
    var swiftLogLevel: Logger.Level { Logger.Level(rawValue: rawValue) ?? .info }
}
