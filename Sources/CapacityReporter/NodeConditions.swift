import Foundation

/// Kubernetes-style node conditions. Pressure conditions are True when something is wrong; the
/// others are True when things are well.
public enum NodeConditionType: String, Codable, Sendable, CaseIterable {
    /// May the node take new workloads: no pressure and the chain reachable.
    case ready = "Ready"
    case memoryPressure = "MemoryPressure"
    case diskPressure = "DiskPressure"
    case pidPressure = "PIDPressure"
    case chainReachable = "ChainReachable"
    /// Reports reach the chain: nothing pending too long, nothing refused, the outbox not full.
    case reportsDelivering = "ReportsDelivering"
    /// The wall clock agrees with CLOCK_BOOTTIME and the chain's time (uptime reports depend on it).
    case clockConsistent = "ClockConsistent"

    /// For the pressure conditions, True is the bad state.
    public var trueIsBad: Bool { [.memoryPressure, .diskPressure, .pidPressure].contains(self) }
}

public enum ConditionStatus: String, Codable, Sendable {
    case isTrue = "True"
    case isFalse = "False"
    case unknown = "Unknown"
}

public struct NodeCondition: Codable, Equatable, Sendable {
    public var type: NodeConditionType
    public var status: ConditionStatus
    /// One CamelCase word a program can match on.
    public var reason: String
    /// What is wrong (or right) and what to do, for a person.
    public var message: String
    /// When `status` last changed.
    public var lastTransitionTime: Date

    public var isBad: Bool {
        switch status {
        case .unknown: return false
        case .isTrue: return type.trueIsBad
        case .isFalse: return !type.trueIsBad
        }
    }
}

/// When the pressure conditions turn True. Checked at every capacity scan
/// (reporter.capacity_scan_interval_s).
public struct PressureThresholds: Equatable, Sendable {
    /// MemoryPressure: MemAvailable below this fraction of MemTotal...
    public var memoryAvailableFraction = 0.05
    /// ...or every task stalled on memory more than this percent of the last 10 s (PSI "full avg10").
    public var memoryStallPercent = 10.0
    /// DiskPressure: a data filesystem with less than this fraction of its space or inodes free,
    /// or a data directory that cannot be read.
    public var diskAvailableFraction = 0.05
    public var inodeAvailableFraction = 0.05
    /// PIDPressure: more tasks than this fraction of min(kernel.pid_max, kernel.threads-max).
    public var taskFraction = 0.90

    public init() {}
}

/// A condition's new value, before its transition time is worked out.
public struct ConditionValue: Equatable, Sendable {
    public var status: ConditionStatus
    public var reason: String
    public var message: String

    public init(_ status: ConditionStatus, reason: String, message: String) {
        self.status = status
        self.reason = reason
        self.message = message
    }
}

/// The pressure rules, as functions of a reading (so they are tested without a machine).
public enum PressureRules {
    public static func memory(_ usage: ActualUsage, _ limits: PressureThresholds) -> ConditionValue {
        guard let total = usage.memoryTotalBytes, total > 0, let available = usage.memoryAvailableBytes else {
            return ConditionValue(.unknown, reason: "MeminfoUnreadable", message: "/proc/meminfo has no MemTotal/MemAvailable")
        }
        let fraction = Double(available) / Double(total)
        if fraction < limits.memoryAvailableFraction {
            return ConditionValue(.isTrue, reason: "LowMemory", message: percent(fraction) + " of memory available ("
                                  + "\(bytes(available)) of \(bytes(total))); below " + percent(limits.memoryAvailableFraction))
        }
        if let stall = usage.memoryPressureFullAvg10, stall > limits.memoryStallPercent {
            return ConditionValue(.isTrue, reason: "MemoryStalls", message: String(
                format: "tasks stalled on memory %.1f%% of the last 10 s (above %.0f%%)", stall, limits.memoryStallPercent))
        }
        return ConditionValue(.isFalse, reason: "SufficientMemory", message: String(format: "%.1f%% of memory available", fraction * 100))
    }

    public static func disk(_ usage: ActualUsage, unreadable: [String], _ limits: PressureThresholds) -> ConditionValue {
        if !unreadable.isEmpty {
            return ConditionValue(.isTrue, reason: "DataDirectoryUnreadable", message:
                "cannot read the filesystem of \(unreadable.joined(separator: ", ")), or it is not the one it was at start; "
                + "check that the disk is mounted and healthy")
        }
        var problems = [String]()
        for fs in usage.filesystems where fs.totalBytes > 0 {
            let free = Double(fs.availableBytes) / Double(fs.totalBytes)
            if free < limits.diskAvailableFraction {
                problems.append("\(fs.mountPoint) has \(percent(free)) space free")
            }
            if fs.files > 0, Double(fs.filesAvailable) / Double(fs.files) < limits.inodeAvailableFraction {
                problems.append("\(fs.mountPoint) has \(percent(Double(fs.filesAvailable) / Double(fs.files))) inodes free")
            }
        }
        if !problems.isEmpty {
            return ConditionValue(.isTrue, reason: "LowDiskSpace", message: problems.joined(separator: "; ")
                                  + " (below \(percent(limits.diskAvailableFraction)))")
        }
        return ConditionValue(.isFalse, reason: "SufficientDisk", message: "\(usage.filesystems.count) data filesystem(s) with space and inodes free")
    }

    public static func pids(_ usage: ActualUsage, _ limits: PressureThresholds) -> ConditionValue {
        guard let tasks = usage.tasks, let limit = usage.taskLimit, limit > 0 else {
            return ConditionValue(.unknown, reason: "TasksUnknown", message: "/proc/loadavg or kernel.pid_max unreadable")
        }
        if Double(tasks) > Double(limit) * limits.taskFraction {
            return ConditionValue(.isTrue, reason: "TooManyTasks", message: "\(tasks) tasks of at most \(limit)")
        }
        return ConditionValue(.isFalse, reason: "SufficientPIDs", message: "\(tasks) tasks of at most \(limit)")
    }

    static func percent(_ fraction: Double) -> String {
        String(format: "%.1f%%", fraction * 100)
    }

    static func bytes(_ value: UInt64) -> String {
        String(format: "%.1f GiB", Double(value) / Double(1 << 30))
    }
}

/// The node's current conditions, read by status, metrics and the admission check. Setting a
/// condition to the status it has keeps its transition time; Ready follows the others.
public actor NodeConditions {
    private var conditions: [NodeConditionType: NodeCondition]
    private let now: @Sendable () -> Date

    public init(now: @escaping @Sendable () -> Date = { Date() }) {
        self.now = now
        let start = now()
        var initial = [NodeConditionType: NodeCondition]()
        for type in NodeConditionType.allCases {
            initial[type] = NodeCondition(type: type, status: .unknown, reason: "Starting",
                                          message: "not checked yet", lastTransitionTime: start)
        }
        conditions = initial
    }

    public func set(_ type: NodeConditionType, _ value: ConditionValue) {
        guard type != .ready else { return }
        update(type, value)
        update(.ready, readiness())
    }

    private func update(_ type: NodeConditionType, _ value: ConditionValue) {
        let previous = conditions[type]
        let transition = previous?.status == value.status ? (previous?.lastTransitionTime ?? now()) : now()
        conditions[type] = NodeCondition(type: type, status: value.status, reason: value.reason, message: value.message,
                                         lastTransitionTime: transition)
    }

    /// Ready: True when no pressure condition is True and the chain is reachable; False naming
    /// what is wrong; Unknown while something it depends on is unknown.
    private func readiness() -> ConditionValue {
        let inputs: [NodeConditionType] = [.memoryPressure, .diskPressure, .pidPressure, .chainReachable]
        let bad = inputs.compactMap { conditions[$0] }.filter(\.isBad)
        if !bad.isEmpty {
            return ConditionValue(.isFalse, reason: bad.map(\.reason).joined(separator: ","),
                                  message: bad.map { "\($0.type.rawValue): \($0.message)" }.joined(separator: "; "))
        }
        let unknown = inputs.filter { conditions[$0]?.status == .unknown }
        if !unknown.isEmpty {
            return ConditionValue(.unknown, reason: "Checking", message: "not yet known: " + unknown.map(\.rawValue).joined(separator: ", "))
        }
        return ConditionValue(.isTrue, reason: "NodeReady", message: "no pressure and the chain is reachable")
    }

    public func condition(_ type: NodeConditionType) -> NodeCondition {
        conditions[type] ?? NodeCondition(type: type, status: .unknown, reason: "Starting", message: "", lastTransitionTime: now())
    }

    /// Every condition, in a fixed order.
    public func all() -> [NodeCondition] {
        NodeConditionType.allCases.compactMap { conditions[$0] }
    }

    public var isReady: Bool { conditions[.ready]?.status == .isTrue }

    /// What stops admission now: the bad conditions among those Ready depends on (empty: admit).
    public func admissionBlockers() -> [NodeCondition] {
        [.memoryPressure, .diskPressure, .pidPressure, .chainReachable].compactMap { conditions[$0] }.filter(\.isBad)
    }
}
