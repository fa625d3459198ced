import ContainerRuntime
import Foundation
import Testing

/// A busybox-static rootfs and a runtime state root per test, removed afterwards.
struct TestRootfs {
    static let applets = ["sh", "cat", "echo", "hostname", "sleep", "dd", "grep", "mkdir", "mount", "wc", "id", "ls", "true",
                          "seq", "readlink", "stat", "head", "tr", "touch", "ps", "kill", "false", "umount"]
    static let idBase: UInt32 = 100_000

    let base: String
    var rootfs: String { base + "/bundle/rootfs" }
    var bundle: String { base + "/bundle" }
    var stateRoot: String { base + "/state" }
    var logs: String { base + "/logs" }
    let runtime: OCIRuntime

    static var available: Bool { getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/bin/busybox") }

    init(owner: UInt32 = TestRootfs.idBase) throws {
        base = NSTemporaryDirectory() + "cr-\(getpid())-\(UUID().uuidString.prefix(8))"
        let fm = FileManager.default
        for dir in ["bin", "proc", "dev", "sys", "tmp", "etc", "root"] {
            try fm.createDirectory(atPath: base + "/bundle/rootfs/" + dir, withIntermediateDirectories: true)
        }
        try fm.copyItem(atPath: "/bin/busybox", toPath: base + "/bundle/rootfs/bin/busybox")
        for applet in Self.applets { try fm.createSymbolicLink(atPath: base + "/bundle/rootfs/bin/" + applet, withDestinationPath: "busybox") }
        try "root:x:0:0:root:/root:/bin/sh\n".write(toFile: base + "/bundle/rootfs/etc/passwd", atomically: true, encoding: .utf8)
        Self.chownTree(base + "/bundle/rootfs", owner)
        chmod(base + "/bundle/rootfs/tmp", 0o1777)
        runtime = OCIRuntime(stateRoot: base + "/state", cgroupParent: "node-agent-test-\(getpid())")
    }

    static func chownTree(_ path: String, _ owner: UInt32) {
        lchown(path, owner, owner)
        guard let walker = FileManager.default.enumerator(atPath: path) else { return }
        while let item = walker.nextObject() as? String { lchown(path + "/" + item, owner, owner) }
    }

    /// The provisioner's secure spec for this rootfs.
    func secureSpec(_ args: [String], memory: Int64 = 256 << 20, pids: Int64 = 128, hostname: String = "tenant") -> ContainerSpec {
        SecureDefaults.spec(.init(rootfs: rootfs, args: args, hostname: hostname, memoryBytes: memory, milliCPUs: 500, pidsLimit: pids,
                                  idBase: Self.idBase))
    }

    /// Creates, starts and waits (bounded) for a container; returns its exit and stdout/stderr.
    func run(_ id: String, _ spec: ContainerSpec, timeout: Duration = .seconds(30)) throws -> (exit: ContainerExit?, stdout: String, stderr: String) {
        let logDir = logs + "/" + id
        try runtime.create(id: id, bundle: bundle, spec: spec, options: .init(output: .files(directory: logDir, maxBytes: 1 << 20, keep: 1)))
        defer { try? runtime.delete(id: id, force: true) }
        try runtime.start(id: id)
        let exit = try runtime.wait(id: id, timeout: timeout)
        return (exit, read(logDir + "/stdout.log"), read(logDir + "/stderr.log"))
    }

    func read(_ path: String) -> String {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    func remove() {
        for id in runtime.list() { try? runtime.delete(id: id, force: true) }
        for controller in ["cpu", "cpuacct", "pids", "freezer", "devices", "memory", "unified"] {
            rmdir("/sys/fs/cgroup/\(controller)/" + runtime.cgroupParent)
        }
        rmdir("/sys/fs/cgroup/" + runtime.cgroupParent)
        try? FileManager.default.removeItem(atPath: base)
    }
}

/// Polls `condition` every 10 ms until it holds or `seconds` pass.
func waitUntil(seconds: Double = 5, _ condition: () throws -> Bool) rethrows {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return }
        usleep(10_000)
    }
}
