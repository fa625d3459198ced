/// The agent's configuration, one struct per section of config.toml. The defaults here are the
/// documented defaults; `DefaultConfigFile.text` documents each key and a test keeps the two equal.
struct AgentConfig: Equatable, Sendable {
    struct Node: Equatable, Sendable {
        var farmID: UInt32 = 1
        /// 0 until the node is registered on the chain; the agent stores its id in the state dir.
        var nodeID: UInt32 = 0
        var stateDir: String = "/var/lib/node-agent"
    }

    enum ChainBackend: String, Equatable, Sendable, CaseIterable {
        case local
        case tfchain
    }

    struct Chain: Equatable, Sendable {
        var backend: ChainBackend = .local
        var ledgerPath: String = "/var/lib/grid-ledger/ledger.sqlite"
        var blockTimeMilliseconds: Int = 6000
        var urls: [String] = ["wss://tfchain.grid.tf/ws"]
        var stallTimeoutSeconds: Int = 60
        /// Embedded ledger only: whether this agent may produce the ledger's blocks (one process
        /// holds the producer lease at a time; the others stand by).
        var produceBlocks: Bool = true
        /// Rules for a new ledger file; an existing file keeps the rules it was created with.
        var billingPeriodBlocks: Int = 600
        var gracePeriodBlocks: Int = 201_600
    }

    struct Provisioner: Equatable, Sendable {
        var apiListen: String = "127.0.0.1:2021"
        var overcommitRatio: Double = 1.0
        var deploymentWaitSeconds: Int = 600
    }

    enum FsyncPolicy: String, Equatable, Sendable, CaseIterable {
        case always
        case interval
        case never
    }

    struct ShardServer: Equatable, Sendable {
        var enabled: Bool = true
        var listen: String = "0.0.0.0:9900"
        var dataDirs: [String] = ["/var/lib/node-agent/shards"]
        var fsync: FsyncPolicy = .interval
        var fsyncIntervalMilliseconds: Int = 1000
        var maxClients: Int = 1024
        /// A connection silent both ways this long is closed; 0: never.
        var idleTimeoutSeconds: Int = 300
        /// Background integrity scrub over all namespaces; 0: off.
        var scrubMiBPerSecond: Int = 32
        /// A sealed segment with at least this fraction of dead bytes is compacted; 0: never.
        var compactionDeadRatio: Double = 0.5
        /// Values larger than this go out with sendfile; smaller ones are read, CRC-checked and copied.
        var sendfileThresholdBytes: Int = 64 << 10
        /// Memory for whole GET replies of small hot values (verified when read); 0: no cache.
        var valueCacheMiB: Int = 64
    }

    /// Container networks (README "Networking").
    struct Network: Equatable, Sendable {
        var enabled: Bool = true
        /// Deployments without their own range get a /24 from here.
        var pool: String = "10.201.0.0/16"
        /// Public ports below this are refused; 1 lets tenants publish privileged ports.
        var minPublicPort: Int = 1024
        var maxInterfaces: Int = 16
        var nameservers: [String] = ["1.1.1.1", "9.9.9.9"]
        /// Start of every interface, namespace and chain the agent owns (several agents on one host need their own).
        var prefix: String = "na"
        var table: String = "node_agent"
    }

    struct Reporter: Equatable, Sendable {
        var uptimeIntervalSeconds: Int = 2400
        var capacityScanIntervalSeconds: Int = 300
        var networkReportIntervalSeconds: Int = 3600
        /// Disk kept for the system on the state directory's disk, never offered to workloads.
        var reserveDiskGiB: Int = 20
        /// Reports the outbox holds before it holds back new uptime and network reports.
        var maxPendingReports: Int = 10_000
    }

    struct Admin: Equatable, Sendable {
        var socket: String = "/run/node-agent/admin.sock"
        var metricsListen: String = "127.0.0.1:9101"
    }

    enum LogFormat: String, Equatable, Sendable, CaseIterable {
        case auto
        case human
        case logfmt
    }

    enum LogLevel: String, Equatable, Sendable, CaseIterable {
        case trace, debug, info, notice, warning, error, critical
    }

    struct Log: Equatable, Sendable {
        var level: LogLevel = .info
        var format: LogFormat = .auto
    }

    var node = Node()
    var chain = Chain()
    var provisioner = Provisioner()
    var shardServer = ShardServer()
    var network = Network()
    var reporter = Reporter()
    var admin = Admin()
    var log = Log()

    static let defaultPath = "/etc/node-agent/config.toml"
}
