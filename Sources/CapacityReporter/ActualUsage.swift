import Foundation

/// What the machine actually consumes, read from /proc and cgroups. Reported beside
/// `NodeCapacity` and used for the pressure conditions; never counted as "used" (that is the sum
/// of reservations).
public struct ActualUsage: Codable, Equatable, Sendable {
    public struct Filesystem: Codable, Equatable, Sendable {
        public var mountPoint: String
        public var totalBytes: UInt64
        public var availableBytes: UInt64
        public var files: UInt64
        public var filesAvailable: UInt64
    }

    /// Usage of the cgroup holding every workload (the container runtime's parent cgroup).
    public struct Workloads: Codable, Equatable, Sendable {
        public var memoryBytes: UInt64?
        public var cpuMicroseconds: UInt64?
        public var tasks: UInt64?
    }

    public var memoryTotalBytes: UInt64?
    public var memoryAvailableBytes: UInt64?
    /// /proc/pressure/memory "full avg10": percent of the last 10 s all tasks stalled on memory.
    public var memoryPressureFullAvg10: Double?
    public var filesystems: [Filesystem]
    /// Tasks (processes and threads) on the host, from /proc/loadavg.
    public var tasks: UInt64?
    /// The lower of kernel.pid_max and kernel.threads-max.
    public var taskLimit: UInt64?
    public var load1: Double?
    public var workloads: Workloads?

    public var memoryUsedBytes: UInt64? {
        guard let total = memoryTotalBytes, let available = memoryAvailableBytes else { return nil }
        return total - min(total, available)
    }

    /// Reads the host below `files.root`; the filesystems are the measured data disks, re-read now.
    public static func read(files: RootedFiles, disks: [DataDisk], probe: any FilesystemProbe,
                            workloadCgroup: String = "/sys/fs/cgroup/node-agent") -> ActualUsage {
        var usage = ActualUsage(filesystems: [])
        if case .success(let meminfo) = files.read("/proc/meminfo") {
            usage.memoryTotalBytes = CapacityScanner.meminfoField("MemTotal", in: meminfo).map { $0 &* 1024 }
            usage.memoryAvailableBytes = CapacityScanner.meminfoField("MemAvailable", in: meminfo).map { $0 &* 1024 }
        }
        if case .success(let pressure) = files.read("/proc/pressure/memory") {
            usage.memoryPressureFullAvg10 = Self.psiAvg10(pressure, line: "full")
        }
        for disk in disks {
            guard let path = disk.paths.first, case .success(let info) = probe.filesystem(containing: path) else { continue }
            usage.filesystems.append(Filesystem(mountPoint: info.mountPoint, totalBytes: info.totalBytes,
                                                availableBytes: info.availableBytes, files: info.files,
                                                filesAvailable: info.filesAvailable))
        }
        if let loadavg = files.line("/proc/loadavg") {
            let fields = loadavg.split(separator: " ")
            if fields.count >= 4 {
                usage.load1 = Double(fields[0])
                usage.tasks = fields[3].split(separator: "/").last.flatMap { UInt64($0) }
            }
        }
        let limits = [files.line("/proc/sys/kernel/pid_max"), files.line("/proc/sys/kernel/threads-max")].compactMap { $0.flatMap { UInt64($0) } }
        usage.taskLimit = limits.min()
        if files.exists(workloadCgroup) {
            var workloads = Workloads()
            workloads.memoryBytes = files.line(workloadCgroup + "/memory.current").flatMap { UInt64($0) }
            workloads.tasks = files.line(workloadCgroup + "/pids.current").flatMap { UInt64($0) }
            if case .success(let stat) = files.read(workloadCgroup + "/cpu.stat") {
                workloads.cpuMicroseconds = stat.split(separator: "\n").first { $0.hasPrefix("usage_usec ") }
                    .flatMap { UInt64($0.dropFirst("usage_usec ".count)) }
            }
            usage.workloads = workloads
        }
        return usage
    }

    /// "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=1.50 ..." -> 1.5 for "full".
    static func psiAvg10(_ text: String, line name: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            for field in line.split(separator: " ") where field.hasPrefix("avg10=") {
                return Double(field.dropFirst("avg10=".count))
            }
        }
        return nil
    }
}
