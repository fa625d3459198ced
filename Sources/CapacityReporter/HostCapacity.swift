import Foundation
import GridTypes

/// The node's total capacity as registered on the chain: logical CPUs, physical memory, and the
/// size of the filesystems holding the given data paths (each filesystem counted once). Disks are
/// counted as SSD (sru) until rotational-disk detection lands with the full capacity scan.
public enum HostCapacity {
    public static func measure(dataPaths: [String]) -> Resources {
        let cpus = UInt64(max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        let pages = UInt64(max(0, sysconf(Int32(_SC_PHYS_PAGES))))
        let pageSize = UInt64(max(0, sysconf(Int32(_SC_PAGESIZE))))
        var seenDevices = Set<UInt64>()
        var storage: UInt64 = 0
        for path in dataPaths {
            var existing = path
            while !FileManager.default.fileExists(atPath: existing), existing != "/" {
                existing = (existing as NSString).deletingLastPathComponent
                if existing.isEmpty { existing = "/" }
            }
            var info = stat()
            var fs = statvfs()
            guard stat(existing, &info) == 0, statvfs(existing, &fs) == 0 else { continue }
            if seenDevices.insert(UInt64(info.st_dev)).inserted {
                storage += UInt64(fs.f_blocks) * UInt64(fs.f_frsize)
            }
        }
        return Resources(hru: 0, sru: storage, cru: cpus, mru: pages * pageSize)
    }
}
