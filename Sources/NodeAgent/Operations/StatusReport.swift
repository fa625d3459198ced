import Foundation
import GridTypes

/// What `node-agent status` shows, as the admin socket returns it (`GET /v1/status`) and `--json`
/// prints it. Optional fields are what the agent does not know (yet): the renderer shows "n/a".
struct StatusReport: Codable, Equatable, Sendable {
    struct Chain: Codable, Equatable, Sendable {
        var backend: String
        /// "local:<genesis>" or "tfchain:<genesis>"; nil until the chain answered.
        var name: String?
        var finalizedBlock: UInt64?
        /// The newest block the contract watcher has processed.
        var processedBlock: UInt64?
        var lagBlocks: UInt64?
        /// Seconds since the finalized block's timestamp.
        var finalizedAgeSeconds: Int64?
    }

    struct Condition: Codable, Equatable, Sendable {
        var type: String
        /// "True", "False" or "Unknown".
        var status: String
        var reason: String
        var message: String
        /// True when this condition's status is the bad one (Ready=False, MemoryPressure=True...).
        var bad: Bool
    }

    struct Node: Codable, Equatable, Sendable {
        var nodeID: UInt32?
        var farmID: UInt32
        var twinID: UInt32?
        var address: String
        var version: String
        var pid: Int32
        /// Unix seconds.
        var startedAt: Int64
        var uptimeSeconds: Int64
        var chain: Chain
        /// nil: no conditions source (the capacity reporter) is wired in.
        var conditions: [Condition]?
        var draining: Bool
    }

    struct Capacity: Codable, Equatable, Sendable {
        var total: Resources
        /// What deployments may reserve (total minus the system reserve, CPU times the overcommit ratio).
        var allocatable: Resources
        var used: Resources
        var free: Resources
    }

    struct Reports: Codable, Equatable, Sendable {
        /// Unix seconds of the newest report the chain included; nil when none yet.
        var lastDeliveredAt: Int64?
        var lastDeliveredKind: String?
        var pending: Int
        var oldestPendingAt: Int64?
    }

    struct RecentError: Codable, Equatable, Sendable {
        /// Unix seconds.
        var time: Int64
        /// "12/web" for a workload, a component name otherwise.
        var subject: String
        var message: String
    }

    struct Work: Codable, Equatable, Sendable {
        /// Deployment state -> count: ok, deploying, error, paused, removing.
        var deployments: [String: Int]
        /// Workload result state -> count: ok, init, error, paused.
        var workloads: [String: Int]
        var shardNamespaces: Int?
        var shardBytesStored: UInt64?
        /// nil: no reports source is wired in.
        var reports: Reports?
        /// nil: container networking is off.
        var traffic: Traffic?
        /// nil: the provisioner is not running.
        var awaitingDeployment: AwaitingDeployment?
        var recentErrors: [RecentError]
    }

    /// Contracts for this node whose deployment has not arrived: normal for a moment after the
    /// twin made the contract; for long, the twin gave up or its deployments fail before reaching us.
    struct AwaitingDeployment: Codable, Equatable, Sendable {
        var contracts: Int
        var oldestContractID: UInt64?
        /// Blocks since the oldest was first seen, and that in seconds at the chain's block time.
        var oldestWaitingBlocks: UInt64?
        var oldestWaitingSeconds: Int64?
    }

    /// Container networks' traffic, summed over contracts (public is what add_nru_reports bills).
    struct Traffic: Codable, Equatable, Sendable {
        var contracts: Int
        var publicBytes: UInt64
        var privateBytes: UInt64
    }

    /// starting, registering, restoring, running, degraded, stopping.
    var phase: String
    /// Why the node is not Ready, when it is not (empty when it is).
    var notReadyReasons: [String]
    var ready: Bool
    var node: Node
    /// nil until the provisioner is up (capacity is what it admits against).
    var capacity: Capacity?
    var work: Work
}

/// A workload as `node-agent workloads` lists it (`GET /v1/workloads`).
struct WorkloadEntry: Codable, Equatable, Sendable {
    var contractID: UInt64
    var twinID: UInt32
    var name: String
    var type: String
    var version: UInt32
    var state: String
    var message: String
    /// Unix seconds the current result's workload was created.
    var created: Int64
    var reservation: Resources
    /// The deployment is being removed (its contract ended).
    var removing: Bool
    var usage: ContainerUsage?
}

/// Live usage of one container from its cgroup.
struct ContainerUsage: Codable, Equatable, Sendable {
    /// The runtime's container id (`wl-<contract>-<name>` for provisioned containers).
    var id: String
    var cpuSeconds: Double?
    var memoryBytes: UInt64?
    var memoryLimitBytes: UInt64?
    var pids: UInt64?
}

/// One line of `node-agent events` (`GET /v1/events`): what the agent did and why.
struct AgentEvent: Codable, Equatable, Sendable {
    enum Source: String, Codable, Sendable {
        /// The agent's own lifecycle: started, ready, draining, stopping.
        case agent
        /// Contract changes the chain watcher saw.
        case chain
        /// Workload results and removals from the provisioner's history.
        case provisioner
    }

    /// Unix seconds.
    var time: Int64
    var source: Source
    /// info, warning, error.
    var level: String
    var contractID: UInt64?
    var workload: String?
    var message: String
}

/// JSON as the admin API and `--json` write it: snake_case keys, sorted, so scripts can rely on them.
enum AdminJSON {
    static func encoder(pretty: Bool = false) -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// The inverse of `.convertToSnakeCase` for these types: "contract_id" -> "contractID" (Foundation's
    /// own inverse would say "contractId").
    static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .custom { path in
            let key = path.last?.stringValue ?? ""
            return JSONKey(camelCase(key))
        }
        return decoder
    }

    static func camelCase(_ snake: String) -> String {
        let words = snake.split(separator: "_", omittingEmptySubsequences: true)
        guard let first = words.first else { return snake }
        return String(first) + words.dropFirst().map { $0 == "id" ? "ID" : $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }

    struct JSONKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ value: String) { stringValue = value }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}
