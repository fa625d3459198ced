/// What the node has promised: the provisioner's admitted workloads. The capacity reporter reads
/// "used" from here and nowhere else, so admission, status and the chain see the same numbers.
/// The provisioner conforms to it and calls the reporter's `reservationsChanged()` after every
/// deploy, update and removal.
public protocol ReservationSource: Sendable {
    /// The sum of every admitted workload's reservation (what admission counts as used).
    func reservedCapacity() async -> Resources
    /// Per active contract, what its workloads reserve: the body of report_contract_resources.
    func contractReservations() async -> [ContractResources]
}

/// Public network traffic per contract, as cumulative byte counters. Networking provides them; the
/// reporter turns differences into hourly add_nru_reports.
public protocol NetworkCounterSource: Sendable {
    /// Cumulative public bytes per contract id since the counter started. A value lower than the
    /// previous one means the counter restarted (the new value is then counted from zero).
    func publicTrafficBytes() async throws -> [UInt64: UInt64]
    /// These counters (a `publicTrafficBytes` answer) are now the reporter's durable base: a
    /// source may forget contracts it keeps only to have them billed (networks already gone).
    func countersReported(_ counters: [UInt64: UInt64]) async
}

extension NetworkCounterSource {
    public func countersReported(_ counters: [UInt64: UInt64]) async {}
}
