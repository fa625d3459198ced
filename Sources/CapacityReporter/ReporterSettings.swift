/// The reporter's periods and limits. Defaults are TFChain's expectations (tfchain.md); tests
/// shorten them.
public struct ReporterSettings: Sendable {
    /// report_uptime_v2 period (TFChain: 40 minutes; a node is shown down after 80 without a report).
    public var uptimeInterval: Duration = .seconds(2400)
    /// Capacity re-measured, conditions re-checked, attestation renewed when the totals change.
    public var capacityScanInterval: Duration = .seconds(300)
    /// add_nru_reports period, when a network counter source exists.
    public var networkReportInterval: Duration = .seconds(3600)
    /// Retry delay after a failed send, doubling up to `retryMaximum`.
    public var retryInitial: Duration = .seconds(2)
    public var retryMaximum: Duration = .seconds(300)
    /// How often an idle sender re-checks (new reports wake it at once).
    public var idleCheck: Duration = .seconds(30)
    /// While waiting for a report of unknown outcome to settle on the chain.
    public var settlePoll: Duration = .seconds(2)
    /// The outbox holds at most this many open reports; beyond it uptime and network reports are
    /// held back (uptime is cumulative, network counters keep counting) and the condition says so.
    public var maxOpenReports = 10_000
    /// An uptime report older than this is rebuilt before it is sent (the chain allows the hint
    /// 60 s from its block time).
    public var uptimeStaleSeconds: UInt64 = 30
    /// A report whose outcome is unknown (a crash or timeout after it was handed over) is looked
    /// for in this many blocks after the submission...
    public var inclusionWindowBlocks: UInt64 = 100
    /// ...and sent again only once the chain is this many blocks past it without it.
    public var settleBlocks: UInt64 = 3
    /// ReportsDelivering turns False when the oldest open report is older than this.
    public var deliveryLagSeconds: UInt64 = 600
    /// Contracts per report_contract_resources / add_nru_reports call.
    public var maxContractsPerReport = 100
    /// Send update_node when the measured totals differ from the registered ones (embedded
    /// ledger only: on TFChain the farmer registers the node with the grid's tools).
    public var updatesNodeResources = true
    public var pressure = PressureThresholds()
    public var policy = CapacityPolicy()

    public init() {}
}
