import ContainerRuntime
import Foundation
import Testing

/// The cgroup v2 logic against a plain directory tree laid out like /sys/fs/cgroup.
struct CgroupV2Tests {
    func tree() throws -> String {
        let root = NSTemporaryDirectory() + "cg2-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try "cpuset cpu io memory pids\n".write(toFile: root + "/cgroup.controllers", atomically: true, encoding: .utf8)
        try "".write(toFile: root + "/cgroup.subtree_control", atomically: true, encoding: .utf8)
        return root
    }

    @Test func limitsAreWrittenAndControllersDelegated() throws {
        let root = try tree()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var resources = ContainerSpec.Resources()
        resources.memoryLimit = 64 << 20
        resources.cpuQuota = 50_000
        resources.cpuPeriod = 100_000
        resources.cpuShares = 1024
        resources.pidsLimit = 32
        let cgroup = CgroupV2(root: root, path: "/node-agent/c1")
        try cgroup.create(resources: resources)
        func read(_ file: String) -> String? { try? String(contentsOfFile: file, encoding: .utf8) }
        #expect(read(root + "/cgroup.subtree_control") == "+cpu +memory +pids")
        #expect(read(root + "/node-agent/c1/memory.max") == "67108864")
        #expect(read(root + "/node-agent/c1/cpu.max") == "50000 100000")
        #expect(read(root + "/node-agent/c1/pids.max") == "32")
        #expect(read(root + "/node-agent/c1/cpu.weight") == "\(CgroupV2.weight(fromShares: 1024))")
        #expect(CgroupV2.weight(fromShares: 2) == 1 && CgroupV2.weight(fromShares: 262_144) == 10_000)
    }

    @Test func unlimitedCPUIsWrittenAsMax() throws {
        let root = try tree()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var resources = ContainerSpec.Resources()
        resources.cpuQuota = -1
        resources.cpuPeriod = 200_000
        try CgroupV2(root: root, path: "c").create(resources: resources)
        #expect(try String(contentsOfFile: root + "/c/cpu.max", encoding: .utf8) == "max 200000")
    }

    @Test func statsAreReadFromTheKernelsFiles() throws {
        let root = try tree()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dir = root + "/c"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let files = [
            "memory.current": "1234567\n", "memory.max": "67108864\n", "pids.current": "7\n",
            "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n", "cpu.stat": "usage_usec 98765\nuser_usec 1\nsystem_usec 2\n",
            "cgroup.procs": "10\n11\n", "cgroup.events": "populated 1\nfrozen 1\n",
        ]
        for (name, text) in files { try text.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8) }
        let cgroup = CgroupV2(root: root, path: "c")
        let stats = cgroup.stats()
        #expect(stats == CgroupStats(memoryCurrent: 1_234_567, memoryLimit: 67_108_864, oomKills: 1, pidsCurrent: 7, cpuUsageMicroseconds: 98_765))
        #expect(cgroup.processes() == [10, 11])
        #expect(cgroup.isFrozen())
        try "max\n".write(toFile: dir + "/memory.max", atomically: true, encoding: .utf8)
        #expect(cgroup.stats().memoryLimit == nil)
    }

    @Test func killAndFreezeUseTheKernelInterface() throws {
        let root = try tree()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dir = root + "/c"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "".write(toFile: dir + "/cgroup.kill", atomically: true, encoding: .utf8)
        let cgroup = CgroupV2(root: root, path: "c")
        try cgroup.killAll()
        #expect(try String(contentsOfFile: dir + "/cgroup.kill", encoding: .utf8) == "1")
        try cgroup.freeze(true)
        #expect(try String(contentsOfFile: dir + "/cgroup.freeze", encoding: .utf8) == "1")
        try cgroup.freeze(false)
        #expect(try String(contentsOfFile: dir + "/cgroup.freeze", encoding: .utf8) == "0")
    }

    @Test func thisHostsModeIsDetected() {
        // Whatever the host is, detection must name a hierarchy that exists.
        let mode = CgroupMode.detect()
        #expect(mode != .none)
        #expect(CgroupMode.detect(root: NSTemporaryDirectory()) == .none)
    }
}
