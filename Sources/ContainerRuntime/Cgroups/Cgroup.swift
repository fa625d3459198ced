import CNodeShim
import Foundation
import GridTypes

/// Usage read from a container's cgroup.
public struct CgroupStats: Codable, Equatable, Sendable {
    public var memoryCurrent: UInt64?
    public var memoryLimit: UInt64?
    public var oomKills: UInt64
    public var pidsCurrent: UInt64?
    public var cpuUsageMicroseconds: UInt64?

    public init(memoryCurrent: UInt64?, memoryLimit: UInt64?, oomKills: UInt64, pidsCurrent: UInt64?, cpuUsageMicroseconds: UInt64?) {
        self.memoryCurrent = memoryCurrent
        self.memoryLimit = memoryLimit
        self.oomKills = oomKills
        self.pidsCurrent = pidsCurrent
        self.cpuUsageMicroseconds = cpuUsageMicroseconds
    }
}

/// One container's cgroup, whatever the hierarchy. Limits are written before any process joins.
public protocol Cgroup: Sendable {
    /// The container's path below the hierarchy root(s).
    var path: String { get }
    func create(resources: ContainerSpec.Resources) throws(ContainerRuntimeError)
    func add(pid: Int32) throws(ContainerRuntimeError)
    /// An O_DIRECTORY fd for clone3's CLONE_INTO_CGROUP (cgroup v2 only); the caller closes it.
    func directoryFD() -> Int32?
    func freeze(_ frozen: Bool) throws(ContainerRuntimeError)
    func isFrozen() -> Bool
    func processes() -> [Int32]
    /// SIGKILLs every process in the cgroup.
    func killAll() throws(ContainerRuntimeError)
    func stats() -> CgroupStats
    /// Removes the cgroup; fails while processes remain.
    func destroy() throws(ContainerRuntimeError)
}

public enum CgroupMode: String, Codable, Sendable {
    case unified, hybrid, legacy, none

    static let cgroup2Magic: Int64 = 0x6367_7270
    static let cgroup1Magic: Int64 = 0x0027_e0eb
    static let tmpfsMagic: Int64 = 0x0102_1994

    /// Detected by filesystem type, as the established runtimes do.
    public static func detect(root: String = "/sys/fs/cgroup") -> CgroupMode {
        switch nshim_filesystem_type(root) {
        case cgroup2Magic: return .unified
        case tmpfsMagic:
            if nshim_filesystem_type(root + "/unified") == cgroup2Magic { return .hybrid }
            return nshim_filesystem_type(root + "/memory") == cgroup1Magic ? .legacy : .none
        default: return .none
        }
    }

    static func isCgroup1(_ path: String) -> Bool { nshim_filesystem_type(path) == cgroup1Magic }
}

public enum Cgroups {
    /// The cgroup implementation for this host: v2 on a unified hierarchy, v1 controllers otherwise.
    public static func make(path: String, root: String = "/sys/fs/cgroup") throws(ContainerRuntimeError) -> any Cgroup {
        switch CgroupMode.detect(root: root) {
        case .unified: return CgroupV2(root: root, path: path)
        case .hybrid, .legacy: return CgroupV1(root: root, path: path)
        case .none: throw .cgroup(path: root, operation: "find a cgroup hierarchy", errno: ENOENT)
        }
    }
}

/// File helpers shared by both hierarchies.
enum CgroupFiles {
    static func put(_ path: String, _ value: String) throws(ContainerRuntimeError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC | O_CREAT, 0o644)
        guard fd >= 0 else { throw .cgroup(path: path, operation: "open", errno: errno) }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw .cgroup(path: path, operation: "write '\(value)'", errno: errno) }
    }

    /// Read to the end: cgroup.procs of a busy cgroup is longer than the page a single read returns.
    static func get(_ path: String) -> String? {
        KernelFile.read(path)?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func number(_ path: String) -> UInt64? { get(path).flatMap { UInt64($0) } }

    /// "key value" lines -> value of key.
    static func keyed(_ path: String, _ key: String) -> UInt64? {
        guard let text = get(path) else { return nil }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, parts[0] == key { return UInt64(parts[1]) }
        }
        return nil
    }

    static func pids(_ path: String) -> [Int32] {
        (get(path) ?? "").split(separator: "\n").compactMap { Int32($0) }
    }

    static func makeDirectory(_ path: String) throws(ContainerRuntimeError) {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) != 0 && errno != EEXIST { throw .cgroup(path: current, operation: "mkdir", errno: errno) }
        }
    }

    /// rmdir, retrying briefly: a cgroup whose last process just died is busy for a moment.
    static func remove(_ path: String) throws(ContainerRuntimeError) {
        for attempt in 0..<50 {
            if rmdir(path) == 0 || errno == ENOENT { return }
            if errno != EBUSY || attempt == 49 { throw .cgroup(path: path, operation: "rmdir", errno: errno) }
            usleep(20_000)
        }
    }
}
