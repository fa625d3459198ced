import Foundation
import GridTypes
import TOMLKit

/// Reads config.toml strictly: an unknown section or key, a value of the wrong type or outside its
/// range is an error naming the key, the value and what is allowed. Absent keys take the defaults.
struct ConfigParser {
    let file: String

    static let sections = ["node", "chain", "provisioner", "shard_server", "network", "reporter", "admin", "log"]
    static let maxFileSize = 1 << 20

    static func load(path: String) throws(NodeAgentError) -> AgentConfig {
        guard FileManager.default.fileExists(atPath: path) else { throw .configMissing(file: path) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .io(operation: "read", path: path, errno: access(path, R_OK) == 0 ? EIO : errno)
        }
        guard data.count <= maxFileSize else {
            throw .config(file: path, key: "(file)", message: "\(data.count) bytes is larger than the 1 MiB a config file may be")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw .config(file: path, key: "(file)", message: "not UTF-8 text")
        }
        return try ConfigParser(file: path).parse(text)
    }

    func parse(_ text: String) throws(NodeAgentError) -> AgentConfig {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch {
            throw .config(file: file, key: "(syntax)", message: "not valid TOML: \(error)")
        }
        for (key, value) in root {
            guard value.type == .table else {
                throw .config(file: file, key: key,
                              message: "a key outside any section; keys belong under one of [\(Self.sections.joined(separator: "], ["))]")
            }
            guard Self.sections.contains(key) else {
                throw .config(file: file, key: key,
                              message: "unknown section [\(key)]; allowed sections: \(Self.sections.joined(separator: ", "))")
            }
        }

        var config = AgentConfig()
        do {
            let s = reader("node", in: root)
            if let v = try s.integer("farm_id", in: 1...Int(UInt32.max)) { config.node.farmID = UInt32(v) }
            if let v = try s.integer("node_id", in: 0...Int(UInt32.max)) { config.node.nodeID = UInt32(v) }
            if let v = try s.absolutePath("state_dir") { config.node.stateDir = v }
            try s.rejectUnknownKeys()
        }
        do {
            let s = reader("chain", in: root)
            if let v = try s.choice("backend", AgentConfig.ChainBackend.self) { config.chain.backend = v }
            if let v = try s.absolutePath("ledger_path") { config.chain.ledgerPath = v }
            if let v = try s.integer("block_time_ms", in: 1...600_000) { config.chain.blockTimeMilliseconds = v }
            if let v = try s.stringList("urls", validate: Self.checkWebSocketURL) { config.chain.urls = v }
            if let v = try s.integer("stall_timeout_s", in: 5...3600) { config.chain.stallTimeoutSeconds = v }
            if let v = try s.boolean("produce_blocks") { config.chain.produceBlocks = v }
            if let v = try s.integer("billing_period_blocks", in: 1...1_000_000) { config.chain.billingPeriodBlocks = v }
            if let v = try s.integer("grace_period_blocks", in: 1...100_000_000) { config.chain.gracePeriodBlocks = v }
            try s.rejectUnknownKeys()
        }
        do {
            let s = reader("provisioner", in: root)
            if let v = try s.hostPort("api_listen") { config.provisioner.apiListen = v }
            if let v = try s.number("overcommit_ratio", in: 1.0...10.0) { config.provisioner.overcommitRatio = v }
            if let v = try s.integer("deployment_wait_s", in: 10...86_400) { config.provisioner.deploymentWaitSeconds = v }
            try s.rejectUnknownKeys()
        }
        do {
            let s = reader("shard_server", in: root)
            if let v = try s.boolean("enabled") { config.shardServer.enabled = v }
            if let v = try s.hostPort("listen") { config.shardServer.listen = v }
            if let v = try s.stringList("data_dirs", validate: Self.checkAbsolutePath) {
                guard v.count <= 64 else {
                    throw .config(file: file, key: "shard_server.data_dirs", message: "\(v.count) directories; at most 64 are allowed")
                }
                if let repeated = v.first(where: { dir in v.filter { $0 == dir }.count > 1 }) {
                    throw .config(file: file, key: "shard_server.data_dirs", message: "value \"\(repeated)\" is listed twice")
                }
                config.shardServer.dataDirs = v
            }
            if let v = try s.choice("fsync", AgentConfig.FsyncPolicy.self) { config.shardServer.fsync = v }
            if let v = try s.integer("fsync_interval_ms", in: 1...60_000) { config.shardServer.fsyncIntervalMilliseconds = v }
            if let v = try s.integer("max_clients", in: 1...65_536) { config.shardServer.maxClients = v }
            if let v = try s.integer("idle_timeout_s", in: 0...86_400) { config.shardServer.idleTimeoutSeconds = v }
            if let v = try s.integer("scrub_mib_per_s", in: 0...10_240) { config.shardServer.scrubMiBPerSecond = v }
            if let v = try s.number("compaction_dead_ratio", in: 0.0...1.0) {
                // Below 10% dead, compaction rewrites nine live bytes or more per byte it frees.
                guard v == 0 || v >= ShardServerSetup.minimumCompactionRatio else {
                    throw .config(file: file, key: "shard_server.compaction_dead_ratio",
                                  message: "value \(v) is not allowed: expected 0 (never compact) or a number in 0.1...1.0")
                }
                config.shardServer.compactionDeadRatio = v
            }
            if let v = try s.integer("value_cache_mib", in: 0...65_536) { config.shardServer.valueCacheMiB = v }
            if let v = try s.integer("sendfile_threshold_bytes", in: 0...ShardServerSetup.maxSendfileThreshold) {
                config.shardServer.sendfileThresholdBytes = v
            }
            try s.rejectUnknownKeys()
        }
        do {
            let s = reader("network", in: root)
            if let v = try s.boolean("enabled") { config.network.enabled = v }
            if let v = try s.string("pool") {
                guard let pool = IPv4Network(v), (8...24).contains(pool.prefixLength) else {
                    throw .config(file: file, key: "network.pool", message: "value \"\(v)\" is not an IPv4 CIDR of /8 to /24 with its host bits clear")
                }
                config.network.pool = pool.description
            }
            if let v = try s.integer("min_public_port", in: 1...65_535) { config.network.minPublicPort = v }
            if let v = try s.integer("max_interfaces", in: 1...1024) { config.network.maxInterfaces = v }
            if let v = try s.stringList("nameservers", validate: { IPv4Network.parseAddress($0) == nil ? "not an IPv4 address" : nil }) {
                config.network.nameservers = v
            }
            if let v = try s.string("prefix") {
                guard (1...4).contains(v.count), v.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) }) else {
                    throw .config(file: file, key: "network.prefix", message: "value \"\(v)\" must be 1 to 4 of [a-z0-9]")
                }
                config.network.prefix = v
            }
            if let v = try s.string("table") {
                guard (1...32).contains(v.count), v.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5f }) else {
                    throw .config(file: file, key: "network.table", message: "value \"\(v)\" must be 1 to 32 of [a-z0-9_]")
                }
                config.network.table = v
            }
            try s.rejectUnknownKeys()
        }
        do {
            let s = reader("reporter", in: root)
            if let v = try s.integer("uptime_interval_s", in: 60...2400) { config.reporter.uptimeIntervalSeconds = v }
            if let v = try s.integer("capacity_scan_interval_s", in: 10...86_400) { config.reporter.capacityScanIntervalSeconds = v }
            if let v = try s.integer("network_report_interval_s", in: 60...86_400) { config.reporter.networkReportIntervalSeconds = v }
            if let v = try s.integer("reserve_disk_gib", in: 0...1_000_000) { config.reporter.reserveDiskGiB = v }
            if let v = try s.integer("max_pending_reports", in: 100...1_000_000) { config.reporter.maxPendingReports = v }
            try s.rejectUnknownKeys()
        }
        do {
            let s = reader("admin", in: root)
            if let v = try s.absolutePath("socket") { config.admin.socket = v }
            if let v = try s.hostPort("metrics_listen") { config.admin.metricsListen = v }
            try s.rejectUnknownKeys()
        }
        do {
            let s = reader("log", in: root)
            if let v = try s.choice("level", AgentConfig.LogLevel.self) { config.log.level = v }
            if let v = try s.choice("format", AgentConfig.LogFormat.self) { config.log.format = v }
            try s.rejectUnknownKeys()
        }
        return config
    }

    private func reader(_ name: String, in root: TOMLTable) -> SectionReader {
        SectionReader(file: file, section: name, table: root[name]?.table ?? TOMLTable())
    }

    static func checkWebSocketURL(_ value: String) -> String? {
        guard let url = URL(string: value), let scheme = url.scheme, ["ws", "wss"].contains(scheme),
              let host = url.host, !host.isEmpty else {
            return "expected a WebSocket URL such as wss://tfchain.grid.tf/ws"
        }
        return nil
    }

    static func checkAbsolutePath(_ value: String) -> String? {
        guard value.hasPrefix("/") else { return "expected an absolute path (starting with /)" }
        guard !value.split(separator: "/").contains("..") else { return "a path may not contain '..'" }
        guard !value.contains("\0") else { return "a path may not contain NUL" }
        return nil
    }

    /// "HOST:PORT" with an IPv4 address, a name, or a bracketed IPv6 address, and port 1...65535.
    static func checkHostPort(_ value: String) -> String? {
        let expected = "expected HOST:PORT such as 127.0.0.1:9900 or [::1]:9900"
        guard let colon = value.lastIndex(of: ":") else { return expected }
        var host = value[..<colon]
        let port = value[value.index(after: colon)...]
        if host.hasPrefix("[") {
            guard host.hasSuffix("]"), host.count > 2 else { return expected }
            host = host.dropFirst().dropLast()
        } else if host.contains(":") {
            return "an IPv6 address must be in brackets: [\(host)]:\(port)"
        }
        guard !host.isEmpty else { return expected }
        guard let number = Int(port), (1...65_535).contains(number) else { return "port must be 1...65535" }
        return nil
    }
}

/// Reads one section's keys with type and range checks, remembering which keys it knows.
final class SectionReader {
    let file: String
    let section: String
    let table: TOMLTable
    private(set) var knownKeys: [String] = []

    init(file: String, section: String, table: TOMLTable) {
        self.file = file
        self.section = section
        self.table = table
    }

    private func value(_ key: String) -> TOMLValueConvertible? {
        knownKeys.append(key)
        return table[key]
    }

    private func fail(_ key: String, _ value: TOMLValueConvertible, _ message: String) -> NodeAgentError {
        .config(file: file, key: "\(section).\(key)", message: "value \(Self.render(value)) is not allowed: \(message)")
    }

    static func render(_ value: TOMLValueConvertible) -> String {
        if let s = value.string { return "\"\(s)\"" }
        if let i = value.int { return String(i) }
        if let d = value.double { return String(d) }
        if let b = value.bool { return String(b) }
        return "(a \(value.type))"
    }

    func integer(_ key: String, in range: ClosedRange<Int>) throws(NodeAgentError) -> Int? {
        guard let v = value(key) else { return nil }
        guard v.type == .int, let i = v.int else { throw fail(key, v, "expected an integer in \(range.lowerBound)...\(range.upperBound)") }
        guard range.contains(i) else { throw fail(key, v, "expected an integer in \(range.lowerBound)...\(range.upperBound)") }
        return i
    }

    func number(_ key: String, in range: ClosedRange<Double>) throws(NodeAgentError) -> Double? {
        guard let v = value(key) else { return nil }
        let d: Double
        if v.type == .double, let x = v.double { d = x } else if v.type == .int, let i = v.int { d = Double(i) } else {
            throw fail(key, v, "expected a number in \(range.lowerBound)...\(range.upperBound)")
        }
        guard range.contains(d) else { throw fail(key, v, "expected a number in \(range.lowerBound)...\(range.upperBound)") }
        return d
    }

    func boolean(_ key: String) throws(NodeAgentError) -> Bool? {
        guard let v = value(key) else { return nil }
        guard v.type == .bool, let b = v.bool else { throw fail(key, v, "expected true or false") }
        return b
    }

    func string(_ key: String) throws(NodeAgentError) -> String? {
        guard let v = value(key) else { return nil }
        guard v.type == .string, let s = v.string else { throw fail(key, v, "expected a string") }
        return s
    }

    func choice<T: RawRepresentable & CaseIterable>(_ key: String, _: T.Type) throws(NodeAgentError) -> T? where T.RawValue == String {
        let allowed = T.allCases.map(\.rawValue).joined(separator: ", ")
        guard let v = value(key) else { return nil }
        guard v.type == .string, let s = v.string, let choice = T(rawValue: s) else {
            throw fail(key, v, "expected one of: \(allowed)")
        }
        return choice
    }

    func absolutePath(_ key: String) throws(NodeAgentError) -> String? {
        try validated(key, ConfigParser.checkAbsolutePath)
    }

    func hostPort(_ key: String) throws(NodeAgentError) -> String? {
        try validated(key, ConfigParser.checkHostPort)
    }

    private func validated(_ key: String, _ check: (String) -> String?) throws(NodeAgentError) -> String? {
        guard let s = try string(key) else { return nil }
        if let problem = check(s) { throw fail(key, s, problem) }
        return s
    }

    func stringList(_ key: String, validate: (String) -> String?) throws(NodeAgentError) -> [String]? {
        guard let v = value(key) else { return nil }
        guard v.type == .array, let array = v.array else { throw fail(key, v, "expected a list of strings") }
        var out = [String]()
        for element in array {
            guard element.type == .string, let s = element.string else { throw fail(key, element, "expected a list of strings") }
            if let problem = validate(s) { throw fail(key, s, problem) }
            out.append(s)
        }
        guard !out.isEmpty else { throw fail(key, v, "the list may not be empty") }
        return out
    }

    func rejectUnknownKeys() throws(NodeAgentError) {
        for (key, _) in table where !knownKeys.contains(key) {
            throw .config(file: file, key: "\(section).\(key)",
                          message: "unknown key; allowed in [\(section)]: \(knownKeys.joined(separator: ", "))")
        }
    }
}
