/// The node's capacity arithmetic, in one place for admission, status and the chain:
///
///     allocatable = total - reserve                    (per resource, never below 0)
///     limit       = allocatable, CPU and memory x their overcommit ratios (what may be promised)
///     used        = sum of admitted reservations       (a ReservationSource, nothing else)
///     free        = limit - used                       (never below 0)
///
/// Disk is never overcommitted. Actual consumption is a different number and never enters here.
public struct NodeCapacity: Codable, Equatable, Sendable {
    /// How far CPU and memory may be promised beyond what is allocatable (1.0: not at all).
    public struct Overcommit: Codable, Equatable, Sendable {
        public var cpu: Double
        public var memory: Double

        /// Ratios below 1 mean none.
        public init(cpu: Double = 1.0, memory: Double = 1.0) {
            self.cpu = max(1.0, cpu)
            self.memory = max(1.0, memory)
        }

        public static let none = Overcommit()
    }

    public var total: Resources
    public var reserve: Resources
    public var allocatable: Resources
    public var limit: Resources
    public var used: Resources
    public var free: Resources
    public var overcommit: Overcommit

    public init(total: Resources, reserve: Resources, used: Resources, overcommit: Overcommit = .none) {
        self.total = total
        self.reserve = reserve
        self.used = used
        self.overcommit = overcommit
        allocatable = Self.subtracting(total, reserve)
        limit = allocatable
        limit.cru = Self.scaled(allocatable.cru, overcommit.cpu)
        limit.mru = Self.scaled(allocatable.mru, overcommit.memory)
        free = Self.subtracting(limit, used)
    }

    static func scaled(_ value: UInt64, _ ratio: Double) -> UInt64 {
        let product = (Double(value) * ratio).rounded(.down)
        return product >= Double(UInt64.max) ? .max : UInt64(product)
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
