import Foundation
import Testing
@testable import CapacityReporter

/// A clock the test moves.
final class ManualTime: @unchecked Sendable {
    private let lock = NSLock()
    private var current = Date(timeIntervalSince1970: 1_700_000_000)
    var now: Date { lock.withLock { current } }
    func advance(_ seconds: TimeInterval) { lock.withLock { current = current.addingTimeInterval(seconds) } }
}

@Suite struct ConditionsTests {
    @Test func transitionTimesChangeOnlyWithTheStatusAndReadyFollows() async {
        let time = ManualTime()
        let conditions = NodeConditions(now: { time.now })
        #expect(await conditions.condition(.ready).status == .unknown)
        #expect(await conditions.all().map(\.type) == NodeConditionType.allCases)

        time.advance(10)
        await conditions.set(.memoryPressure, ConditionValue(.isFalse, reason: "SufficientMemory", message: "ok"))
        await conditions.set(.diskPressure, ConditionValue(.isFalse, reason: "SufficientDisk", message: "ok"))
        await conditions.set(.pidPressure, ConditionValue(.isFalse, reason: "SufficientPIDs", message: "ok"))
        #expect(await conditions.condition(.ready).status == .unknown, "the chain is not known yet")
        await conditions.set(.chainReachable, ConditionValue(.isTrue, reason: "ChainResponding", message: "ok"))
        let ready = await conditions.condition(.ready)
        #expect(ready.status == .isTrue)
        #expect(ready.lastTransitionTime == time.now)
        #expect(await conditions.isReady)
        #expect(await conditions.admissionBlockers().isEmpty)

        // Same status, new message: the transition time stays.
        time.advance(10)
        await conditions.set(.memoryPressure, ConditionValue(.isFalse, reason: "SufficientMemory", message: "still ok"))
        let memory = await conditions.condition(.memoryPressure)
        #expect(memory.message == "still ok")
        #expect(memory.lastTransitionTime == Date(timeIntervalSince1970: 1_700_000_010))

        // Pressure: Ready turns False naming it, admission is blocked.
        time.advance(10)
        await conditions.set(.diskPressure, ConditionValue(.isTrue, reason: "LowDiskSpace", message: "/ has 1.0% space free"))
        let notReady = await conditions.condition(.ready)
        #expect(notReady.status == .isFalse)
        #expect(notReady.reason == "LowDiskSpace")
        #expect(notReady.message.contains("DiskPressure: / has 1.0% space free"))
        #expect(notReady.lastTransitionTime == time.now)
        #expect(await conditions.admissionBlockers().map(\.type) == [.diskPressure])

        // Reports not delivering does not stop workloads: Ready ignores it.
        await conditions.set(.diskPressure, ConditionValue(.isFalse, reason: "SufficientDisk", message: "ok"))
        await conditions.set(.reportsDelivering, ConditionValue(.isFalse, reason: "ReportsDelayed", message: "3 pending"))
        #expect(await conditions.isReady)
        await conditions.set(.chainReachable, ConditionValue(.isFalse, reason: "ChainUnavailable", message: "down"))
        #expect(await conditions.condition(.ready).reason == "ChainUnavailable")
    }

    func usage(total: UInt64 = 100, available: UInt64 = 50, stall: Double? = 0, fsFree: UInt64 = 50, inodesFree: UInt64 = 50,
               tasks: UInt64? = 100, limit: UInt64? = 1000) -> ActualUsage {
        ActualUsage(memoryTotalBytes: total, memoryAvailableBytes: available, memoryPressureFullAvg10: stall,
                    filesystems: [ActualUsage.Filesystem(mountPoint: "/data", totalBytes: 100, availableBytes: fsFree, files: 100, filesAvailable: inodesFree)],
                    tasks: tasks, taskLimit: limit, load1: 0.1, workloads: nil)
    }

    @Test func pressureThresholds() {
        let limits = PressureThresholds()
        #expect(PressureRules.memory(usage(), limits).status == .isFalse)
        #expect(PressureRules.memory(usage(available: 4), limits).reason == "LowMemory")
        #expect(PressureRules.memory(usage(available: 5), limits).status == .isFalse, "exactly 5% is not below 5%")
        #expect(PressureRules.memory(usage(stall: 12.5), limits).reason == "MemoryStalls")
        #expect(PressureRules.memory(ActualUsage(filesystems: []), limits).status == .unknown)

        #expect(PressureRules.disk(usage(), unreadable: [], limits).status == .isFalse)
        let low = PressureRules.disk(usage(fsFree: 4), unreadable: [], limits)
        #expect(low.reason == "LowDiskSpace" && low.message.contains("/data has 4.0% space free"))
        #expect(PressureRules.disk(usage(inodesFree: 1), unreadable: [], limits).message.contains("inodes"))
        let gone = PressureRules.disk(usage(), unreadable: ["/data/gone"], limits)
        #expect(gone.status == .isTrue && gone.reason == "DataDirectoryUnreadable" && gone.message.contains("/data/gone"))

        #expect(PressureRules.pids(usage(tasks: 900), limits).status == .isFalse)
        #expect(PressureRules.pids(usage(tasks: 901), limits).reason == "TooManyTasks")
        #expect(PressureRules.pids(usage(tasks: nil), limits).status == .unknown)
    }

    @Test func theRecordedMachinesReadings() {
        let broken = CapacityScanner(root: Fixtures.root("broken"), dataDirectories: ["/data/b", "/data/gone"])
        let scan = broken.scan()
        let reading = ActualUsage.read(files: broken.files, disks: scan.disks, probe: broken.probe)
        // /data/b has 1% free; /data/gone cannot be read; meminfo has no MemTotal.
        #expect(PressureRules.disk(reading, unreadable: [], PressureThresholds()).reason == "LowDiskSpace")
        #expect(PressureRules.disk(reading, unreadable: scan.unreadableDirectories, PressureThresholds()).reason == "DataDirectoryUnreadable")
        #expect(PressureRules.memory(reading, PressureThresholds()).status == .unknown)
        #expect(reading.tasks == 811 && reading.taskLimit == 1_031_433)
        #expect(PressureRules.pids(reading, PressureThresholds()).status == .isFalse)
    }
}
