import Foundation

/// The clocks the reporter reads: wall time (timestamp hints, statement times) and time since
/// boot (uptime, staleness). A protocol so tests can move the wall clock back.
public protocol ReporterClock: Sendable {
    /// Unix seconds from the wall clock (CLOCK_REALTIME).
    func wallSeconds() -> UInt64
    /// Seconds since boot including suspend (CLOCK_BOOTTIME).
    func secondsSinceBoot() -> UInt64
    /// This boot's id (/proc/sys/kernel/random/boot_id); a change means the machine rebooted.
    var bootID: String { get }
    /// Both of the above from one moment. Their difference is what uptime reports are held to.
    func wallAndBootSeconds() -> (wall: UInt64, sinceBoot: UInt64)
}

extension ReporterClock {
    public func wallAndBootSeconds() -> (wall: UInt64, sinceBoot: UInt64) { (wallSeconds(), secondsSinceBoot()) }
}

public struct SystemReporterClock: ReporterClock {
    public let bootID: String

    public init() {
        let id = RootedFiles().line("/proc/sys/kernel/random/boot_id") ?? ""
        // Without a boot id (no /proc), a boot is told apart by when it happened.
        bootID = id.isEmpty ? "boot-at-\(Self.wall() - Self.boottime())" : id
    }

    public func wallSeconds() -> UInt64 { Self.wall() }
    public func secondsSinceBoot() -> UInt64 { wallAndBootSeconds().sinceBoot }

    /// Truncating the two clocks to seconds separately makes their difference jump between two
    /// values as their fractions pass each other; once one report had the larger, every later
    /// one looked 1 s behind (ClockConsistent=False until the next boot). So the boot's wall time
    /// is rounded to a whole second once, and time since boot is wall seconds minus that.
    public func wallAndBootSeconds() -> (wall: UInt64, sinceBoot: UInt64) {
        var boot = timespec(), real = timespec()
        clock_gettime(CLOCK_BOOTTIME, &boot)
        clock_gettime(CLOCK_REALTIME, &real)
        let bootedAtNanos = (Int64(real.tv_sec) - Int64(boot.tv_sec)) * 1_000_000_000 + Int64(real.tv_nsec) - Int64(boot.tv_nsec)
        let bootedAt = Int64((Double(bootedAtNanos) / 1e9).rounded())
        let wall = max(0, Int64(real.tv_sec))
        return (UInt64(wall), UInt64(max(0, wall - bootedAt)))
    }

    static func wall() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(max(0, now.tv_sec))
    }

    static func boottime() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_BOOTTIME, &now)
        return UInt64(max(0, now.tv_sec))
    }
}

/// Keeps uptime reports truthful to the chain's rule that uptime may not grow faster than the
/// timestamp hints: across every report of one boot, uptime <= hint - E, where E is the largest
/// (hint - uptime) of the earlier reports. E only grows, so whichever subset of reports reaches
/// the chain, none claims more uptime than wall time allows. A wall clock that jumped back by J
/// seconds lowers the reported uptime by J until the next boot (or until the clock jumps forward).
public struct UptimeLimiter: Equatable, Sendable {
    public var bootID: String
    /// E above; nil before this boot's first report.
    public var epoch: Int64?

    public init(bootID: String, epoch: Int64?) {
        self.bootID = bootID
        self.epoch = epoch
    }

    public struct Claim: Equatable, Sendable {
        public var uptime: UInt64
        public var bootUptime: UInt64
        public var hint: UInt64
        /// How many seconds the claim is below the real uptime (0 when not capped).
        public var cappedBy: UInt64 { bootUptime - uptime }
    }

    /// The claim for a report built now; updates E.
    public mutating func claim(bootUptime: UInt64, hint: UInt64, bootID: String) -> Claim {
        if bootID != self.bootID {
            self.bootID = bootID
            epoch = nil
        }
        let hintValue = Int64(clamping: hint), boot = Int64(clamping: bootUptime)
        var uptime = boot
        if let epoch { uptime = max(0, min(boot, hintValue - epoch)) }
        epoch = max(epoch ?? .min, hintValue - uptime)
        return Claim(uptime: UInt64(uptime), bootUptime: bootUptime, hint: hint)
    }
}
