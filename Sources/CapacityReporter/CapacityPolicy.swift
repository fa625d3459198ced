import GridTypes

/// How much of the machine the system keeps for itself, and how far CPU and memory may be
/// promised beyond what is there (`provisioner.overcommit_ratio`, as the provisioner admits).
public struct CapacityPolicy: Equatable, Sendable {
    /// Memory kept for the system: the larger of this fraction of MemTotal and `memoryReserveMinimum`.
    public var memoryReserveFraction: Double = 0.10
    public var memoryReserveMinimum: UInt64 = 2 << 30
    /// Disk kept for the system on the disk holding the state directory (SSD or HDD as measured).
    public var diskReserve: UInt64
    public var overcommit: NodeCapacity.Overcommit

    public init(diskReserve: UInt64 = 20 << 30, overcommit: NodeCapacity.Overcommit = .none) {
        self.diskReserve = diskReserve
        self.overcommit = overcommit
    }

    /// The system reserve for a measurement, never more than the total.
    public func reserve(for measurement: CapacityMeasurement) -> Resources {
        let total = measurement.total
        let fraction = (Double(total.mru) * memoryReserveFraction).rounded(.up)
        let memory = min(total.mru, max(fraction >= Double(UInt64.max) ? .max : UInt64(fraction), memoryReserveMinimum))
        var reserve = Resources(mru: memory)
        switch measurement.systemDiskKind {
        case .ssd: reserve.sru = min(total.sru, diskReserve)
        case .hdd: reserve.hru = min(total.hru, diskReserve)
        }
        return reserve
    }
}

extension NodeCapacity {
    /// The capacity of a measurement under a policy, with `used` from the reservations.
    public init(measurement: CapacityMeasurement, policy: CapacityPolicy, used: Resources) {
        self.init(total: measurement.total, reserve: policy.reserve(for: measurement), used: used, overcommit: policy.overcommit)
    }
}
