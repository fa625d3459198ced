import Foundation
import GridTypes
import Testing
@testable import CapacityReporter

@Suite struct CapacityArithmeticTests {
    static let gib: UInt64 = 1 << 30

    func measurement(cru: UInt64, mruGiB: UInt64, sruGiB: UInt64 = 0, hruGiB: UInt64 = 0, systemDisk: StorageKind = .ssd) -> CapacityMeasurement {
        let disk = DataDisk(paths: ["/var/lib/node-agent"], mountPoint: "/", device: "sda1", deviceNumber: "8:1", kind: systemDisk,
                            basis: "", totalBytes: (systemDisk == .ssd ? sruGiB : hruGiB) * Self.gib, availableBytes: 0, files: 0, filesAvailable: 0)
        return CapacityMeasurement(total: Resources(hru: hruGiB * Self.gib, sru: sruGiB * Self.gib, cru: cru, mru: mruGiB * Self.gib),
                                   disks: [disk], gpus: [], unreadableDirectories: [], hardware: HardwareIdentity(), warnings: [])
    }

    @Test func memoryReserveIsTenPercentButAtLeastTwoGiB() {
        let policy = CapacityPolicy(diskReserve: 0)
        #expect(policy.reserve(for: measurement(cru: 4, mruGiB: 8)).mru == 2 * Self.gib)
        #expect(policy.reserve(for: measurement(cru: 4, mruGiB: 20)).mru == 2 * Self.gib)
        #expect(policy.reserve(for: measurement(cru: 4, mruGiB: 128)).mru == UInt64((Double(128 * Self.gib) * 0.1).rounded(.up)))
        // A machine smaller than the minimum keeps everything: allocatable 0, never negative.
        #expect(policy.reserve(for: measurement(cru: 1, mruGiB: 1)).mru == Self.gib)
    }

    @Test func diskReserveComesFromTheStateDirectorysDisk() {
        let policy = CapacityPolicy(diskReserve: 20 * Self.gib)
        let onSSD = policy.reserve(for: measurement(cru: 4, mruGiB: 16, sruGiB: 500, hruGiB: 4000, systemDisk: .ssd))
        #expect(onSSD.sru == 20 * Self.gib && onSSD.hru == 0)
        let onHDD = policy.reserve(for: measurement(cru: 4, mruGiB: 16, sruGiB: 500, hruGiB: 4000, systemDisk: .hdd))
        #expect(onHDD.hru == 20 * Self.gib && onHDD.sru == 0)
        let tiny = policy.reserve(for: measurement(cru: 4, mruGiB: 16, sruGiB: 5))
        #expect(tiny.sru == 5 * Self.gib)
    }

    @Test func allocatableLimitUsedAndFree() {
        let policy = CapacityPolicy(diskReserve: 20 * Self.gib, cpuOvercommit: 2.0)
        let used = Resources(hru: 0, sru: 100 * Self.gib, cru: 10, mru: 16 * Self.gib)
        let capacity = NodeCapacity(measurement: measurement(cru: 8, mruGiB: 64, sruGiB: 1000), policy: policy, used: used)
        #expect(capacity.reserve == Resources(sru: 20 * Self.gib, mru: UInt64((Double(64 * Self.gib) * 0.1).rounded(.up))))
        #expect(capacity.allocatable.cru == 8)
        #expect(capacity.allocatable.sru == 980 * Self.gib)
        #expect(capacity.allocatable.mru == 64 * Self.gib - capacity.reserve.mru)
        // CPU may be promised twice over; memory and disk never.
        #expect(capacity.limit.cru == 16)
        #expect(capacity.limit.mru == capacity.allocatable.mru)
        #expect(capacity.limit.sru == capacity.allocatable.sru)
        #expect(capacity.free == Resources(hru: 0, sru: 880 * Self.gib, cru: 6, mru: capacity.allocatable.mru - 16 * Self.gib))
        #expect(!capacity.isOvercommitted)
        #expect(capacity.admits(Resources(cru: 6, mru: 1 * Self.gib)))
        #expect(capacity.shortfall(for: Resources(cru: 7)) == Resources(cru: 1))
        #expect(capacity.shortfall(for: Resources(hru: 1)) == Resources(hru: 1))
        #expect(capacity.shortfall(for: Resources(sru: UInt64.max)) != nil)
    }

    @Test func capacityThatShrinksBelowWhatIsUsedSaturates() {
        let capacity = NodeCapacity(total: Resources(hru: 0, sru: 10 * Self.gib, cru: 2, mru: 4 * Self.gib),
                                    reserve: Resources(sru: 20 * Self.gib, mru: 2 * Self.gib),
                                    used: Resources(sru: 1, cru: 4, mru: 3 * Self.gib))
        #expect(capacity.allocatable == Resources(hru: 0, sru: 0, cru: 2, mru: 2 * Self.gib))
        #expect(capacity.free == Resources(hru: 0, sru: 0, cru: 0, mru: 0))
        #expect(capacity.isOvercommitted)
        // Nothing more fits while more is promised than there is.
        #expect(!capacity.admits(.zero))
    }

    @Test func anOvercommitBelowOneMeansNone() {
        let capacity = NodeCapacity(total: Resources(cru: 4), reserve: .zero, used: .zero, cpuOvercommit: 0.5)
        #expect(capacity.limit.cru == 4)
    }
}

@Suite struct UptimeLimiterTests {
    /// Readings across second boundaries of both clocks: wall minus time since boot is one value,
    /// and claims made from them are never capped (separately truncated clocks gave two values,
    /// which capped every claim after the larger one by 1 s).
    @Test func theSystemClocksGiveOneDifferenceAndUncappedClaims() async throws {
        let clock = SystemReporterClock()
        var differences = Set<Int64>()
        var limiter = UptimeLimiter(bootID: clock.bootID, epoch: nil)
        var capped: [UInt64] = []
        let end = ContinuousClock.now + .milliseconds(2300)
        while ContinuousClock.now < end {
            let now = clock.wallAndBootSeconds()
            differences.insert(Int64(now.wall) - Int64(now.sinceBoot))
            let claim = limiter.claim(bootUptime: now.sinceBoot, hint: now.wall, bootID: clock.bootID)
            if claim.cappedBy > 0 { capped.append(claim.cappedBy) }
            try await Task.sleep(for: .milliseconds(7))
        }
        #expect(differences.count == 1, "\(differences)")
        #expect(capped.isEmpty, "\(capped.prefix(5))")
    }

    @Test func uptimeIsTheRealOneWhileTheClocksAgree() {
        var limiter = UptimeLimiter(bootID: "a", epoch: nil)
        for step in UInt64(0)..<5 {
            let claim = limiter.claim(bootUptime: 1000 + step * 2400, hint: 1_700_000_000 + step * 2400, bootID: "a")
            #expect(claim.uptime == 1000 + step * 2400)
            #expect(claim.cappedBy == 0)
        }
    }

    @Test func aWallClockThatJumpsBackLowersUptimeByTheJump() {
        var limiter = UptimeLimiter(bootID: "a", epoch: nil)
        _ = limiter.claim(bootUptime: 1000, hint: 1_700_000_000, bootID: "a")
        // 2400 s later by CLOCK_BOOTTIME, but the wall clock moved only 2100 s.
        let capped = limiter.claim(bootUptime: 3400, hint: 1_700_002_100, bootID: "a")
        #expect(capped.uptime == 3100)
        #expect(capped.cappedBy == 300)
        let next = limiter.claim(bootUptime: 5800, hint: 1_700_004_500, bootID: "a")
        #expect(next.uptime == 5500)
        // A reboot starts afresh.
        let rebooted = limiter.claim(bootUptime: 60, hint: 1_700_010_000, bootID: "b")
        #expect(rebooted.uptime == 60 && rebooted.cappedBy == 0)
    }

    @Test func noSequenceOfClaimsGrowsFasterThanItsHints() {
        var generator = SplitMix(seed: 42)
        var limiter = UptimeLimiter(bootID: "a", epoch: nil)
        var boot: UInt64 = 500, wall: UInt64 = 1_700_000_000
        var claims = [UptimeLimiter.Claim]()
        for _ in 0..<200 {
            let elapsed = generator.next() % 3000
            boot += elapsed
            // The wall clock follows, jumps back, or jumps ahead.
            switch generator.next() % 5 {
            case 0: wall = wall + elapsed - min(wall, generator.next() % 600)
            case 1: wall += elapsed + generator.next() % 600
            default: wall += elapsed
            }
            claims.append(limiter.claim(bootUptime: boot, hint: wall, bootID: "a"))
        }
        for (i, earlier) in claims.enumerated() {
            for later in claims[(i + 1)...] {
                #expect(Int64(later.uptime) - Int64(earlier.uptime) <= Int64(later.hint) - Int64(earlier.hint))
            }
            #expect(earlier.uptime <= earlier.bootUptime)
        }
    }
}

/// A small deterministic generator so the property test is the same on every run.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
