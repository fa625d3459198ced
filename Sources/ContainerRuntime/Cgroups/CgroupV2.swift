import Foundation

/// cgroup v2: one directory with memory.max, cpu.max, cpu.weight, pids.max, cgroup.freeze,
/// cgroup.kill. `root` is injectable so the logic runs against a plain directory tree in tests.
public struct CgroupV2: Cgroup {
    public let root: String
    public let path: String
    var directory: String { root + "/" + path }

    public init(root: String, path: String) {
        self.root = root
        self.path = path.split(separator: "/").joined(separator: "/")
    }

    public func create(resources: ContainerSpec.Resources) throws(ContainerRuntimeError) {
        // Each ancestor must delegate the controllers to its children.
        var current = root
        for component in path.split(separator: "/") {
            let subtree = current + "/cgroup.subtree_control"
            let available = CgroupFiles.get(current + "/cgroup.controllers")?.split(separator: " ").map(String.init) ?? []
            let enabled = CgroupFiles.get(subtree)?.split(separator: " ").map(String.init) ?? []
            let wanted = ["cpu", "memory", "pids"].filter { available.contains($0) && !enabled.contains($0) }
            if !wanted.isEmpty { try CgroupFiles.put(subtree, wanted.map { "+" + $0 }.joined(separator: " ")) }
            current += "/" + component
            if mkdir(current, 0o755) != 0 && errno != EEXIST { throw .cgroup(path: current, operation: "mkdir", errno: errno) }
        }
        if let memory = resources.memoryLimit {
            try CgroupFiles.put(directory + "/memory.max", String(memory))
            // Swap would let a container outlive its memory limit.
            if FileManager.default.fileExists(atPath: directory + "/memory.swap.max") {
                try CgroupFiles.put(directory + "/memory.swap.max", "0")
            }
        }
        if resources.cpuQuota != nil || resources.cpuPeriod != nil {
            let period = resources.cpuPeriod ?? 100_000
            let quota = resources.cpuQuota.flatMap { $0 > 0 ? String($0) : nil } ?? "max"
            try CgroupFiles.put(directory + "/cpu.max", "\(quota) \(period)")
        }
        if let shares = resources.cpuShares, shares > 0 {
            try CgroupFiles.put(directory + "/cpu.weight", String(Self.weight(fromShares: shares)))
        }
        if let pids = resources.pidsLimit {
            try CgroupFiles.put(directory + "/pids.max", String(pids))
        }
    }

    /// cgroup v1 cpu.shares (2...262144) -> v2 cpu.weight (1...10000), the conversion runc and crun use.
    public static func weight(fromShares shares: UInt64) -> UInt64 {
        let clamped = min(max(shares, 2), 262_144)
        return 1 + ((clamped - 2) * 9999) / 262_142
    }

    public func add(pid: Int32) throws(ContainerRuntimeError) {
        try CgroupFiles.put(directory + "/cgroup.procs", String(pid))
    }

    public func directoryFD() -> Int32? {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        return fd >= 0 ? fd : nil
    }

    public func freeze(_ frozen: Bool) throws(ContainerRuntimeError) {
        try CgroupFiles.put(directory + "/cgroup.freeze", frozen ? "1" : "0")
    }

    public func isFrozen() -> Bool { CgroupFiles.keyed(directory + "/cgroup.events", "frozen") == 1 }

    public func processes() -> [Int32] { CgroupFiles.pids(directory + "/cgroup.procs") }

    public func killAll() throws(ContainerRuntimeError) {
        if FileManager.default.fileExists(atPath: directory + "/cgroup.kill") {
            try CgroupFiles.put(directory + "/cgroup.kill", "1")
            return
        }
        for pid in processes() { kill(pid, SIGKILL) }
    }

    public func stats() -> CgroupStats {
        let max = CgroupFiles.get(directory + "/memory.max")
        return CgroupStats(memoryCurrent: CgroupFiles.number(directory + "/memory.current"),
                           memoryLimit: max == "max" ? nil : max.flatMap { UInt64($0) },
                           oomKills: CgroupFiles.keyed(directory + "/memory.events", "oom_kill") ?? 0,
                           pidsCurrent: CgroupFiles.number(directory + "/pids.current"),
                           cpuUsageMicroseconds: CgroupFiles.keyed(directory + "/cpu.stat", "usage_usec"))
    }

    public func destroy() throws(ContainerRuntimeError) {
        try CgroupFiles.remove(directory)
    }
}
