import GridTypes

/// How much of the machine the system keeps for itself, and how far CPU may be promised beyond
/// what is there.
public struct CapacityPolicy: Equatable, Sendable {
    /// Memory kept for the system: the larger of this fraction of MemTotal and `memoryReserveMinimum`.
    public var memoryReserveFraction: Double = 0.10
    public var memoryReserveMinimum: UInt64 = 2 << 30
    /// Disk kept for the system on the disk holding the state directory (SSD or HDD as measured).
    public var diskReserve: UInt64
    /// CPU only: CPUs are time-shared, so `cpuOvercommit` x allocatable CPUs may be promised.
    /// Memory and disk are never overcommitted: they cannot be taken back without killing workloads.
    public var cpuOvercommit: Double

    public init(diskReserve: UInt64 = 20 << 30, cpuOvercommit: Double = 1.0) {
        self.diskReserve = diskReserve
        self.cpuOvercommit = max(1.0, cpuOvercommit)
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

/// The node's capacity arithmetic, in one place for admission, status and the chain:
///
///     allocatable = total - reserve                (per resource, never below 0)
///     limit       = allocatable, CPU x overcommit  (what may be promised)
///     used        = sum of admitted reservations   (the ReservationSource, nothing else)
///     free        = limit - used                   (never below 0)
///
/// Actual consumption (`ActualUsage`) is a different number and never enters here.
public struct NodeCapacity: Codable, Equatable, Sendable {
    public var total: Resources
    public var reserve: Resources
    public var allocatable: Resources
    public var limit: Resources
    public var used: Resources
    public var free: Resources
    public var cpuOvercommit: Double

    public init(total: Resources, reserve: Resources, used: Resources, cpuOvercommit: Double = 1.0) {
        self.total = total
        self.reserve = reserve
        self.used = used
        self.cpuOvercommit = max(1.0, cpuOvercommit)
        allocatable = Self.subtracting(total, reserve)
        limit = allocatable
        let promisedCPUs = (Double(allocatable.cru) * self.cpuOvercommit).rounded(.down)
        limit.cru = promisedCPUs >= Double(UInt64.max) ? .max : UInt64(promisedCPUs)
        free = Self.subtracting(limit, used)
    }

    public init(measurement: CapacityMeasurement, policy: CapacityPolicy, used: Resources) {
        self.init(total: measurement.total, reserve: policy.reserve(for: measurement), used: used, cpuOvercommit: policy.cpuOvercommit)
    }

    /// Component-wise a - b, 0 where b is larger.
    public static func subtracting(_ a: Resources, _ b: Resources) -> Resources {
        Resources(hru: a.hru - min(a.hru, b.hru), sru: a.sru - min(a.sru, b.sru),
                  cru: a.cru - min(a.cru, b.cru), mru: a.mru - min(a.mru, b.mru))
    }

    /// More is promised than may be (capacity shrank: a disk gone, memory taken out).
    public var isOvercommitted: Bool {
        used.hru > limit.hru || used.sru > limit.sru || used.cru > limit.cru || used.mru > limit.mru
    }

    /// What `request` lacks to fit on top of `used`: nil when it fits. The admission check.
    public func shortfall(for request: Resources) -> Resources? {
        guard let wanted = used.adding(request) else { return Resources(hru: .max, sru: .max, cru: .max, mru: .max) }
        let missing = Self.subtracting(wanted, limit)
        return missing == .zero ? nil : missing
    }

    /// Whether a workload reserving `request` may be admitted now.
    public func admits(_ request: Resources) -> Bool { shortfall(for: request) == nil }
}
