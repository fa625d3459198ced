import Foundation

/// cgroup v1 (hybrid and legacy hosts): one directory per controller. Also denies every device
/// but the standard nodes through the devices controller.
public struct CgroupV1: Cgroup {
    public let root: String
    public let path: String
    static let controllers = ["memory", "cpu", "cpuacct", "pids", "freezer", "devices"]

    public init(root: String, path: String) {
        self.root = root
        self.path = path.split(separator: "/").joined(separator: "/")
    }

    func directory(_ controller: String) -> String { root + "/" + controller + "/" + path }

    /// Controllers mounted on this host (cpu may be the combined cpu,cpuacct hierarchy).
    var mounted: [String] {
        Self.controllers.filter { CgroupMode.isCgroup1(root + "/" + $0) }
    }

    /// The standard nodes: null, zero, full, random, urandom, tty, the pty master and slaves.
    static let allowedDevices = ["c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm"]

    public func create(resources: ContainerSpec.Resources) throws(ContainerRuntimeError) {
        let present = mounted
        for controller in present { try CgroupFiles.makeDirectory(directory(controller)) }
        if present.contains("memory"), let memory = resources.memoryLimit {
            try CgroupFiles.put(directory("memory") + "/memory.limit_in_bytes", String(memory))
            let swap = directory("memory") + "/memory.memsw.limit_in_bytes"
            if FileManager.default.fileExists(atPath: swap) { try CgroupFiles.put(swap, String(memory)) }
        }
        if present.contains("cpu") {
            if let period = resources.cpuPeriod { try CgroupFiles.put(directory("cpu") + "/cpu.cfs_period_us", String(period)) }
            if let quota = resources.cpuQuota { try CgroupFiles.put(directory("cpu") + "/cpu.cfs_quota_us", String(quota > 0 ? quota : -1)) }
            if let shares = resources.cpuShares, shares > 0 { try CgroupFiles.put(directory("cpu") + "/cpu.shares", String(shares)) }
        }
        if present.contains("pids"), let pids = resources.pidsLimit {
            try CgroupFiles.put(directory("pids") + "/pids.max", String(pids))
        }
        if present.contains("devices") {
            try CgroupFiles.put(directory("devices") + "/devices.deny", "a")
            for rule in Self.allowedDevices { try CgroupFiles.put(directory("devices") + "/devices.allow", rule) }
        }
    }

    public func add(pid: Int32) throws(ContainerRuntimeError) {
        for controller in mounted { try CgroupFiles.put(directory(controller) + "/cgroup.procs", String(pid)) }
    }

    public func directoryFD() -> Int32? { nil }

    public func freeze(_ frozen: Bool) throws(ContainerRuntimeError) {
        let state = directory("freezer") + "/freezer.state"
        try CgroupFiles.put(state, frozen ? "FROZEN" : "THAWED")
        // Freezing is asynchronous in v1: wait (bounded) until the kernel says it is done.
        for _ in 0..<100 {
            if CgroupFiles.get(state) == (frozen ? "FROZEN" : "THAWED") { return }
            usleep(10_000)
        }
        throw .cgroup(path: state, operation: frozen ? "freeze" : "thaw", errno: ETIMEDOUT)
    }

    public func isFrozen() -> Bool { CgroupFiles.get(directory("freezer") + "/freezer.state") == "FROZEN" }

    public func processes() -> [Int32] {
        let source = mounted.contains("pids") ? "pids" : (mounted.first ?? "memory")
        return CgroupFiles.pids(directory(source) + "/cgroup.procs")
    }

    public func killAll() throws(ContainerRuntimeError) {
        // Freeze first so nothing forks between listing and killing.
        let canFreeze = mounted.contains("freezer")
        if canFreeze { try? freeze(true) }
        for pid in processes() { kill(pid, SIGKILL) }
        if canFreeze { try? freeze(false) }
    }

    public func stats() -> CgroupStats {
        let memory = directory("memory")
        let limit = CgroupFiles.number(memory + "/memory.limit_in_bytes")
        return CgroupStats(memoryCurrent: CgroupFiles.number(memory + "/memory.usage_in_bytes"),
                           memoryLimit: limit.flatMap { $0 >= UInt64(Int64.max) / 2 ? nil : $0 },
                           oomKills: CgroupFiles.keyed(memory + "/memory.oom_control", "oom_kill") ?? 0,
                           pidsCurrent: CgroupFiles.number(directory("pids") + "/pids.current"),
                           cpuUsageMicroseconds: CgroupFiles.number(directory("cpuacct") + "/cpuacct.usage").map { $0 / 1000 })
    }

    public func destroy() throws(ContainerRuntimeError) {
        for controller in mounted { try CgroupFiles.remove(directory(controller)) }
    }
}
