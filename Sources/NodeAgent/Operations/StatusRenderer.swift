import Foundation
import GridTypes

/// Text for the farmer's terminal: `node-agent status` (three blocks: node, capacity, work),
/// `workloads` and `events`. Pure functions of their input and `now`, so a golden test pins the layout.
struct StatusRenderer {
    /// Unicode bars (█░) on a UTF-8 terminal, ASCII (#.) otherwise.
    var unicode: Bool
    /// Lines are cut to this many characters.
    var width: Int = 100

    static let barWidth = 20
    static let labelWidth = 12

    static func forTerminal(environment: [String: String] = ProcessInfo.processInfo.environment) -> StatusRenderer {
        let locale = environment["LC_ALL"] ?? environment["LC_CTYPE"] ?? environment["LANG"] ?? ""
        let columns = Int(environment["COLUMNS"] ?? "") ?? 100
        return StatusRenderer(unicode: locale.uppercased().contains("UTF-8") || locale.uppercased().contains("UTF8"),
                              width: max(60, min(columns, 200)))
    }

    // MARK: status

    func render(_ report: StatusReport, now: Date) -> String {
        var lines = [String]()
        let nowSeconds = Int64(now.timeIntervalSince1970)
        if report.ready {
            lines.append("node-agent: Ready" + (report.node.draining ? " (draining: no new deployments)" : ""))
        } else {
            lines.append("node-agent: NOT READY (\(report.phase))")
            for reason in report.notReadyReasons { lines.append("  ! " + reason) }
        }
        lines.append("")

        // Node
        let node = report.node
        lines.append("NODE")
        lines.append(row("node", [node.nodeID.map { "\($0)" } ?? "not registered yet", "farm \(node.farmID)",
                                  node.twinID.map { "twin \($0)" } ?? "twin n/a"].joined(separator: "   ")))
        lines.append(row("address", node.address))
        lines.append(row("version", "\(node.version) (pid \(node.pid)), up \(Self.duration(node.uptimeSeconds)) since \(Self.timestamp(node.startedAt))"))
        lines.append(row("chain", chainText(node.chain)))
        lines.append(contentsOf: conditionLines(node.conditions))
        lines.append(row("scheduling", node.draining ? "draining: running deployments stay, new ones are refused (node-agent undrain)"
                                                     : "accepting new deployments"))
        lines.append("")

        // Capacity
        // Column titles over the amounts: 2 + label 8 + "[" + bar + "] " + percent 4 + 2 spaces.
        let amountsColumn = 2 + 8 + 1 + Self.barWidth + 2 + 4 + 2
        lines.append("CAPACITY".padding(toLength: amountsColumn, withPad: " ", startingAt: 0)
                     + "used / allocatable".padding(toLength: 26, withPad: " ", startingAt: 0) + "total")
        if let capacity = report.capacity {
            lines.append(capacityRow("cpu", used: capacity.used.cru, limit: capacity.allocatable.cru, total: capacity.total.cru, format: Self.cores))
            lines.append(capacityRow("memory", used: capacity.used.mru, limit: capacity.allocatable.mru, total: capacity.total.mru, format: Self.bytes))
            lines.append(capacityRow("ssd", used: capacity.used.sru, limit: capacity.allocatable.sru, total: capacity.total.sru, format: Self.bytes))
            lines.append(capacityRow("hdd", used: capacity.used.hru, limit: capacity.allocatable.hru, total: capacity.total.hru, format: Self.bytes))
        } else {
            lines.append("  n/a (the provisioner is not running yet)")
        }
        lines.append("")

        // Work
        let work = report.work
        lines.append("WORK")
        lines.append(row("deployments", countsText(work.deployments, order: ["ok", "deploying", "paused", "error", "removing"])))
        lines.append(row("workloads", countsText(work.workloads, order: ["ok", "init", "paused", "error", "removing"])))
        if let awaiting = work.awaitingDeployment, awaiting.contracts > 0 {
            var text = "\(awaiting.contracts) waiting for their deployment"
            if let id = awaiting.oldestContractID {
                text += " (oldest: contract \(id)" + (awaiting.oldestWaitingSeconds.map { ", \(Self.duration($0))" } ?? "") + ")"
            }
            lines.append(row("contracts", text))
        }
        if let namespaces = work.shardNamespaces {
            lines.append(row("shards", "\(namespaces) namespace\(namespaces == 1 ? "" : "s"), \(Self.bytes(work.shardBytesStored ?? 0)) stored"))
        } else {
            lines.append(row("shards", "n/a (shard server off)"))
        }
        if let reports = work.reports {
            var text = reports.lastDeliveredAt.map { "last delivered \(Self.duration(max(0, nowSeconds - $0))) ago" + (reports.lastDeliveredKind.map { " (\($0))" } ?? "") }
                ?? "none delivered yet"
            text += ", \(reports.pending) pending"
            if let oldest = reports.oldestPendingAt, reports.pending > 0 { text += " (oldest \(Self.duration(max(0, nowSeconds - oldest))) old)" }
            lines.append(row("reports", text))
        } else {
            lines.append(row("reports", "n/a"))
        }
        if let traffic = work.traffic {
            lines.append(row("traffic", "\(Self.bytes(traffic.publicBytes)) public, \(Self.bytes(traffic.privateBytes)) private"
                             + " (\(traffic.contracts) network\(traffic.contracts == 1 ? "" : "s"))"))
        }
        if work.recentErrors.isEmpty {
            lines.append(row("errors", "none"))
        } else {
            for (index, error) in work.recentErrors.reversed().enumerated() {
                lines.append(row(index == 0 ? "errors" : "", "\(error.subject) \(Self.duration(max(0, nowSeconds - error.time))) ago: \(error.message)"))
            }
        }
        return lines.map(cut).joined(separator: "\n") + "\n"
    }

    func row(_ label: String, _ value: String) -> String {
        "  " + label.padding(toLength: Self.labelWidth, withPad: " ", startingAt: 0) + value
    }

    func cut(_ line: String) -> String {
        line.count <= width ? line : String(line.prefix(width - 3)) + "..."
    }

    func chainText(_ chain: StatusReport.Chain) -> String {
        var parts = [chain.name.map(Self.shortChainName) ?? "\(chain.backend) (connecting)"]
        if let finalized = chain.finalizedBlock {
            parts.append("finalized #\(finalized)" + (chain.finalizedAgeSeconds.map { " (\(Self.duration($0)) ago)" } ?? ""))
        } else {
            parts.append("finalized n/a")
        }
        if let processed = chain.processedBlock {
            let lag = chain.lagBlocks ?? 0
            parts.append("processed #\(processed), lag \(lag) block\(lag == 1 ? "" : "s")")
        } else {
            parts.append("watcher not started")
        }
        return parts.joined(separator: "  ")
    }

    /// "local:0a1b2c3d4e5f..." -> "local:0a1b2c3d".
    static func shortChainName(_ name: String) -> String {
        guard let colon = name.firstIndex(of: ":") else { return name }
        let hash = name[name.index(after: colon)...]
        return String(name[...colon]) + (hash.count > 8 ? String(hash.prefix(8)) : String(hash))
    }

    func conditionLines(_ conditions: [StatusReport.Condition]?) -> [String] {
        guard let conditions else { return [row("conditions", "n/a")] }
        guard !conditions.isEmpty else { return [row("conditions", "none reported")] }
        var lines = [String]()
        var current = ""
        let room = width - 2 - Self.labelWidth
        for condition in conditions {
            let word = "\(condition.type)=\(condition.status)" + (condition.bad ? "!" : "")
            if !current.isEmpty && current.count + 1 + word.count > room {
                lines.append(row(lines.isEmpty ? "conditions" : "", current))
                current = word
            } else {
                current += (current.isEmpty ? "" : " ") + word
            }
        }
        if !current.isEmpty { lines.append(row(lines.isEmpty ? "conditions" : "", current)) }
        for condition in conditions where condition.bad {
            lines.append(row("", "! \(condition.type): \(condition.message)"))
        }
        return lines
    }

    func capacityRow(_ label: String, used: UInt64, limit: UInt64, total: UInt64, format: (UInt64) -> String) -> String {
        let fraction = limit == 0 ? (used == 0 ? 0 : 1) : min(1.0, Double(used) / Double(limit))
        let filled = Int((fraction * Double(Self.barWidth)).rounded())
        let bar = unicode ? String(repeating: "█", count: filled) + String(repeating: "░", count: Self.barWidth - filled)
                          : String(repeating: "#", count: filled) + String(repeating: ".", count: Self.barWidth - filled)
        let percent = limit == 0 ? "  - " : String(format: "%3d%%", Int((Double(used) / Double(limit) * 100).rounded()))
        let amounts = "\(format(used)) / \(format(limit))"
        return "  " + label.padding(toLength: 8, withPad: " ", startingAt: 0) + "[\(bar)] \(percent)  "
            + amounts.padding(toLength: 26, withPad: " ", startingAt: 0) + format(total)
    }

    func countsText(_ counts: [String: Int], order: [String]) -> String {
        let total = counts.values.reduce(0, +)
        guard total > 0 else { return "0" }
        let known = order.filter { counts[$0, default: 0] > 0 }.map { "\(counts[$0] ?? 0) \($0)" }
        let others = counts.keys.filter { !order.contains($0) && counts[$0, default: 0] > 0 }.sorted().map { "\(counts[$0] ?? 0) \($0)" }
        return "\(total)".padding(toLength: 5, withPad: " ", startingAt: 0) + (known + others).joined(separator: ", ")
    }

    // MARK: workloads and events

    func renderWorkloads(_ entries: [WorkloadEntry], now: Date) -> String {
        guard !entries.isEmpty else { return "no workloads on this node\n" }
        var rows = [["CONTRACT", "WORKLOAD", "TYPE", "STATE", "AGE", "RESERVED", "CPU", "MEMORY", "MESSAGE"]]
        let nowSeconds = Int64(now.timeIntervalSince1970)
        for entry in entries {
            let r = entry.reservation
            var reserved = [String]()
            if r.cru > 0 { reserved.append("\(r.cru) cpu") }
            if r.mru > 0 { reserved.append(Self.bytes(r.mru) + " mem") }
            if r.sru > 0 { reserved.append(Self.bytes(r.sru) + " ssd") }
            if r.hru > 0 { reserved.append(Self.bytes(r.hru) + " hdd") }
            rows.append(["\(entry.contractID)", entry.name, entry.type, entry.state, Self.duration(max(0, nowSeconds - entry.created)),
                         reserved.isEmpty ? "-" : reserved.joined(separator: " "),
                         entry.usage?.cpuSeconds.map { String(format: "%.1fs", $0) } ?? "-",
                         entry.usage?.memoryBytes.map(Self.bytes) ?? "-", entry.message])
        }
        return table(rows)
    }

    func renderEvents(_ events: [AgentEvent]) -> String {
        guard !events.isEmpty else { return "no events yet\n" }
        return events.map { event in
            let subject = event.contractID.map { "\($0)" + (event.workload.map { "/\($0)" } ?? "") } ?? "-"
            let level = event.level == "info" ? "" : event.level.uppercased() + " "
            return cut("\(Self.timestamp(event.time, seconds: true))  \(event.source.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) "
                       + "\(subject.padding(toLength: 10, withPad: " ", startingAt: 0)) \(level)\(event.message)")
        }.joined(separator: "\n") + "\n"
    }

    func table(_ rows: [[String]]) -> String {
        let columns = rows.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in rows { for (i, cell) in row.enumerated() where i < columns - 1 { widths[i] = max(widths[i], cell.count) } }
        return rows.map { row in
            cut(row.enumerated().map { i, cell in i < columns - 1 ? cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) : cell }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }.joined(separator: "\n") + "\n"
    }

    // MARK: units

    static func bytes(_ value: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var amount = Double(value)
        var unit = 0
        while amount >= 1024 && unit < units.count - 1 {
            amount /= 1024
            unit += 1
        }
        return unit == 0 ? "\(value) B" : String(format: "%.1f ", amount) + units[unit]
    }

    static func cores(_ value: UInt64) -> String { "\(value) cpu" }

    /// 45s, 3m, 2h 5m, 3d 4h.
    static func duration(_ seconds: Int64) -> String {
        let s = max(0, seconds)
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m" }
        if s < 86_400 { return "\(s / 3600)h \(s % 3600 / 60)m" }
        return "\(s / 86_400)d \(s % 86_400 / 3600)h"
    }

    static func timestamp(_ unixSeconds: Int64, seconds: Bool = false) -> String {
        var time = time_t(unixSeconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        let date = String(format: "%04d-%02d-%02d %02d:%02d", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                          Int(parts.tm_hour), Int(parts.tm_min))
        return date + (seconds ? String(format: ":%02d", Int(parts.tm_sec)) : "") + " UTC"
    }
}
