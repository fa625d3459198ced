/// What `doctor` knows about a host: plain data, gathered by `HostProbe` from the real machine or
/// written by hand in tests, and judged by `DoctorChecks`.
struct HostDescription: Codable, Equatable, Sendable {
    enum CgroupMode: String, Codable, Sendable {
        /// cgroup v2 only (production hosts).
        case unified
        /// v1 controllers plus a v2 mount (this development host).
        case hybrid
        /// v1 only.
        case legacy
        case none
    }

    enum ClockState: String, Codable, Sendable {
        case synchronized, unsynchronized, unknown
    }

    var effectiveUID: UInt32
    var kernelRelease: String
    /// Namespace name (user, pid, mount, net, uts, ipc, cgroup) -> 0 when creatable, else errno.
    var namespaces: [String: Int32]
    var cgroupMode: CgroupMode
    /// Controller name -> whether the agent can write its limits.
    var cgroupControllers: [String: Bool]
    /// 0 when a seccomp filter loaded and denied a syscall with EPERM, else errno (-1: loaded, no effect).
    var seccompProbe: Int32
    var overlayfs: Bool
    var stateDir: String
    /// Free bytes for the state directory (or its nearest existing parent); nil when unreadable.
    var stateDirFreeBytes: UInt64?
    var stateDirExists: Bool
    var clock: ClockState
    /// Library name -> version text.
    var libraries: [String: String]

    static let namespaceNames = ["user", "pid", "mount", "net", "uts", "ipc", "cgroup"]
    static let requiredControllers = ["memory", "cpu", "pids"]
    static let optionalControllers = ["freezer", "cpuset", "io"]
}
