import Foundation
import GridTypes
import Testing
@testable import CapacityReporter

/// The capacity scan on recorded machines (Fixtures/) and on this host.
@Suite struct CapacityScanTests {
    @Test func aTwoCPUVirtualMachineWithAVirtioDisk() throws {
        // Recorded from this build machine by Fixtures/record_machine.py.
        let scan = CapacityScanner(root: Fixtures.root("vm-2cpu-virtio"),
                                   dataDirectories: ["/var/lib/node-agent", "/var/lib/node-agent/shards"]).scan()
        #expect(scan.total.cru == 2)
        #expect(scan.total.mru == 24_684_092 * 1024)
        // One filesystem holds both directories: counted once. virtio-blk says rotational=1, and the
        // kernel's word is taken: HDD.
        #expect(scan.disks.count == 1)
        let disk = try #require(scan.disks.first)
        #expect(disk.paths == ["/var/lib/node-agent", "/var/lib/node-agent/shards"])
        #expect(disk.device == "vda")
        #expect(disk.kind == .hdd)
        #expect(disk.basis == "vda (rotational=1)")
        #expect(scan.total.hru == 270_553_174_016)
        #expect(scan.total.sru == 0)
        #expect(scan.gpus.isEmpty)
        #expect(scan.hardware.machineID == "4d2862672346e6e646a15344c14da5a1")
        #expect(scan.hardware.productUUID == nil)
        #expect(scan.unreadableDirectories.isEmpty)
        #expect(scan.warnings.isEmpty, "\(scan.warnings)")
    }

    @Test func aServerWithSSDAndHDDDisksMDRaidAndLVM() throws {
        let directories = ["/var/lib/node-agent", "/var/lib/node-agent/shards", "/data/hdd1/shards", "/data/hdd1/more",
                           "/data/hdd2/shards", "/data/ssd/shards", "/data/mixed/shards"]
        let scan = CapacityScanner(root: Fixtures.root("server-hdd-ssd-md"), dataDirectories: directories).scan()
        #expect(scan.total.cru == 32)
        #expect(scan.total.mru == 131_841_236 * 1024)
        let byDevice = Dictionary(uniqueKeysWithValues: scan.disks.map { ($0.device, $0) })
        #expect(scan.disks.map(\.device) == ["md127", "sdc1", "md126", "dm-0", "dm-1"])
        // RAID1 of two SSD partitions: typed by the partitions' disks.
        #expect(byDevice["md127"]?.kind == .ssd)
        #expect(byDevice["md127"]?.basis == "md127 <- sda2 on sda (rotational=0), sdb2 on sdb (rotational=0)")
        #expect(byDevice["md127"]?.paths == ["/var/lib/node-agent", "/var/lib/node-agent/shards"])
        #expect(byDevice["sdc1"]?.kind == .hdd)
        #expect(byDevice["sdc1"]?.paths == ["/data/hdd1/shards", "/data/hdd1/more"])
        #expect(byDevice["md126"]?.kind == .hdd)
        // LVM on an NVMe partition.
        #expect(byDevice["dm-0"]?.kind == .ssd)
        #expect(byDevice["dm-0"]?.basis == "dm-0 <- nvme0n1p1 on nvme0n1 (rotational=0)")
        // A volume over one SSD and one HDD goes at the HDD's pace.
        #expect(byDevice["dm-1"]?.kind == .hdd)
        #expect(scan.total.sru == 470_000_000_000 + 1_900_000_000_000)
        #expect(scan.total.hru == 16_000_000_000_000 + 8_000_000_000_000 + 5_800_000_000_000)
        // The BMC's display controller is listed, and not mistaken for a GPU a tenant could use.
        #expect(scan.gpus.map(\.slot) == ["0000:03:00.0"])
        #expect(scan.gpus.first?.isComputeCapable == false)
        #expect(scan.hardware.productUUID == "4c4c4544-0042-3510-8052-b4c04f4d3732")
        #expect(scan.systemDiskKind == .ssd)
        #expect(scan.warnings.isEmpty, "\(scan.warnings)")
    }

    @Test func aBoxWithGPUsALoopDeviceAndBtrfs() throws {
        let scan = CapacityScanner(root: Fixtures.root("gpu-box"),
                                   dataDirectories: ["/var/lib/node-agent", "/data/images-loop/shards", "/data/btrfs/shards"]).scan()
        #expect(scan.total.cru == 16)
        #expect(scan.disks.map(\.device) == ["nvme0n1p2", "loop0", "sda1"])
        // The loop device claims rotational=1; its backing file is on the NVMe: SSD.
        let loop = try #require(scan.disks.first { $0.device == "loop0" })
        #expect(loop.kind == .ssd)
        #expect(loop.basis == "loop0 -> /var/lib/images/data.img on nvme0n1p2 on nvme0n1 (rotational=0)")
        // btrfs has an anonymous device number: the mount source names the disk.
        let btrfs = try #require(scan.disks.first { $0.mountPoint == "/data/btrfs" })
        #expect(btrfs.kind == .hdd)
        #expect(scan.total.sru == 980_000_000_000 + 200_000_000_000)
        #expect(scan.total.hru == 4_000_000_000_000)
        // Display-class devices only (not the GPU's audio function); NVIDIA and AMD usable, ASPEED not.
        #expect(scan.gpus.map(\.slot) == ["0000:01:00.0", "0000:04:00.0", "0000:41:00.0"])
        #expect(scan.gpus.filter(\.isComputeCapable).map(\.vendorID) == ["0x10de", "0x1002"])
        #expect(scan.gpus.first?.deviceID == "0x2204")
        #expect(scan.warnings.isEmpty, "\(scan.warnings)")
    }

    @Test func aBrokenMachineIsMeasuredAsFarAsItCanBeWithEveryProblemNamed() throws {
        let directories = ["/var/lib/node-agent", "/data/a", "/data/b", "/data/gone/shards", "/data/md"]
        let scan = CapacityScanner(root: Fixtures.root("broken"), dataDirectories: directories).scan()
        // A CPU list that is not one: cpuinfo counts.
        #expect(scan.total.cru == 3)
        #expect(scan.warnings.contains { $0.contains("/sys/devices/system/cpu/online holds \"garbage\"") })
        #expect(scan.total.mru == 0)
        #expect(scan.warnings.contains { $0.contains("no readable MemTotal") })
        // The gone disk is named and not counted; every other filesystem counts, as SSD when unsure.
        #expect(scan.unreadableDirectories == ["/data/gone/shards"])
        #expect(scan.disks.map(\.mountPoint) == ["/", "/data/a", "/data/b", "/data/md"])
        #expect(scan.disks.allSatisfy { $0.kind == .ssd })
        #expect(scan.total.sru == 100_000_000_000 + 200_000_000_000 + 300_000_000_000 + 400_000_000_000)
        #expect(scan.warnings.contains { $0.contains("/ (ext4 on /dev/sda1) has no block device in /sys; counted as SSD") })
        #expect(scan.warnings.contains { $0.contains("sdb1") && $0.contains("queue/rotational unreadable") })
        #expect(scan.warnings.contains { $0.contains("queue/rotational holds \"maybe\"") })
        #expect(scan.warnings.contains { $0.contains("md0 <- sdx (not found)") })
        #expect(scan.warnings.contains { $0.contains("/data/gone/shards") && $0.contains("not counted") })
        #expect(scan.warnings.contains { $0.contains("PCI device 0000:00:02.0 has no readable class") })
        #expect(scan.gpus.isEmpty)
        #expect(scan.hardware.machineID == nil)
        #expect(scan.hardware.bootID == "99999999-8888-4777-8666-555555555555")
    }

    @Test func thisHostAgreesWithTheKernelsOtherInterfaces() throws {
        let directory = try temporaryDirectory("scan-host")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let scan = CapacityScanner(dataDirectories: [directory, directory + "/not-created-yet"]).scan()
        // sysconf counts online CPUs and physical pages through other kernel interfaces.
        #expect(scan.total.cru == UInt64(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        let physical = UInt64(sysconf(Int32(_SC_PHYS_PAGES))) * UInt64(sysconf(Int32(_SC_PAGESIZE)))
        #expect(scan.total.mru >= physical - physical / 100 && scan.total.mru <= physical + physical / 100)
        var fs = statvfs()
        #expect(statvfs(directory, &fs) == 0)
        #expect(scan.disks.count == 1)
        #expect(scan.disks.first?.totalBytes == UInt64(fs.f_blocks) * UInt64(fs.f_frsize))
        #expect(scan.disks.first?.paths.count == 2)
        #expect(scan.total.sru + scan.total.hru == UInt64(fs.f_blocks) * UInt64(fs.f_frsize))
        #expect(scan.unreadableDirectories.isEmpty)
        var info = stat()
        #expect(stat(directory, &info) == 0)
        #expect(scan.disks.first?.deviceNumber == DeviceNumber(UInt64(info.st_dev)).description)
    }

    @Test func cpuListsAndMountinfoAreParsedStrictly() {
        #expect(CapacityScanner.countCPUList("0-3,8,10-11\n") == 7)
        #expect(CapacityScanner.countCPUList("0\n") == 1)
        for bad in ["", "3-1", "a-b", "0-", "1,,2", "0-99999999"] {
            #expect(CapacityScanner.countCPUList(bad) == nil, "\(bad)")
        }
        let entries = MountEntry.parse("""
            36 35 98:0 /mnt1 /mnt\\040with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue
            broken line
            37 35 0:45 / /data rw - btrfs /dev/sda1 rw
            """)
        #expect(entries.map(\.mountPoint) == ["/mnt with space", "/data"])
        #expect(entries.first?.device == DeviceNumber(major: 98, minor: 0))
        #expect(MountEntry.containing("/data/x/y", in: entries)?.source == "/dev/sda1")
        #expect(MountEntry.containing("/database", in: entries) == nil)
    }

    @Test func linksNeverLeaveTheRecordedRoot() throws {
        let root = try temporaryDirectory("rooted")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/sys", withIntermediateDirectories: true)
        try "inside\n".write(toFile: root + "/etc-hostname", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: root + "/sys/escape", withDestinationPath: "../../../../../../etc-hostname")
        try FileManager.default.createSymbolicLink(atPath: root + "/sys/absolute", withDestinationPath: "/etc-hostname")
        try FileManager.default.createSymbolicLink(atPath: root + "/sys/loop", withDestinationPath: "loop")
        let files = RootedFiles(root: root)
        #expect(files.line("/sys/escape") == "inside")
        #expect(files.line("/sys/absolute") == "inside")
        #expect(files.resolve("/sys/loop") == nil)
        #expect(files.line("/sys/loop") == nil)
        if case .failure(.tooLarge) = files.read("/etc-hostname", limit: 3) {} else { Issue.record("a read over the limit must fail") }
    }
}
