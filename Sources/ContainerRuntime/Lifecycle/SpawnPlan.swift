import CNodeShim
import Foundation

/// Turns a validated spec into the flat description the C init reads, and keeps every C string
/// and array alive (in `arena`) until the clone has happened.
final class SpawnPlan {
    static let cloneFlags: [ContainerSpec.NamespaceKind: UInt64] = [
        .mount: 0x0002_0000, .uts: 0x0400_0000, .ipc: 0x0800_0000, .user: 0x1000_0000,
        .pid: 0x2000_0000, .network: 0x4000_0000, .cgroup: 0x0200_0000,
    ]

    let arena = CArena()
    var config = nshim_container_config()
    var cloneFlags: UInt64 = 0
    private var openedFDs: [Int32] = []

    struct Plumbing {
        var execFifoFD: Int32
        var exitStatusFD: Int32
        var logDirectoryFD: Int32
        var logMaxBytes: UInt64
        var logKeep: Int32
    }

    init(spec: ContainerSpec, seccompFilter: [UInt8]?, plumbing: Plumbing) throws(ContainerRuntimeError) {
        var joinFDs = [Int32](), joinTypes = [Int32]()
        // The user namespace is joined first: it decides what the later joins are allowed to do.
        let ordered = spec.namespaces.sorted { a, b in (a.kind == .user ? 0 : 1) < (b.kind == .user ? 0 : 1) }
        for namespace in ordered {
            guard let flag = Self.cloneFlags[namespace.kind] else { continue }
            if let path = namespace.path {
                let fd = open(path, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { throw .setup(id: "-", step: "open \(namespace.kind.rawValue) namespace \(path)", errno: errno) }
                openedFDs.append(fd)
                joinFDs.append(fd)
                joinTypes.append(Int32(flag))
            } else {
                cloneFlags |= flag
            }
        }
        let process = spec.process
        var mounts = [nshim_mount]()
        let unified = CgroupMode.detect() == .unified
        for var m in spec.mounts {
            if m.type == "cgroup" && !m.bind {
                // runtime-spec's "cgroup" mount: the container's own cgroup2 view on a unified host
                // (with a cgroup namespace); a v1 or hybrid host's controllers are not shown to
                // containers, so an empty read-only tmpfs stands in.
                if unified {
                    m.type = "cgroup2"
                } else {
                    m.type = "tmpfs"
                    m.flags |= MountFlag.rdonly
                    m.data = "size=4k"
                }
                m.source = m.type
            }
            var mount = nshim_mount()
            mount.source = m.source.map { UnsafePointer(arena.string($0)) }
            mount.destination = UnsafePointer(arena.string(m.destination))
            mount.fstype = m.bind ? nil : m.type.map { UnsafePointer(arena.string($0)) }
            mount.flags = m.flags
            mount.data = m.data.isEmpty ? nil : UnsafePointer(arena.string(m.data))
            mount.bind = m.bind ? 1 : 0
            mounts.append(mount)
        }
        let sysctl = spec.sysctl.sorted { $0.key < $1.key }

        config.rootfs = UnsafePointer(arena.string(spec.rootPath))
        config.readonly_root = spec.rootReadonly ? 1 : 0
        config.hostname = arena.optionalString(spec.hostname)
        config.mounts = UnsafePointer(arena.array(mounts))
        config.mount_count = Int32(mounts.count)
        config.masked_paths = arena.constStringArray(spec.maskedPaths)
        config.masked_count = Int32(spec.maskedPaths.count)
        config.readonly_paths = arena.constStringArray(spec.readonlyPaths)
        config.readonly_count = Int32(spec.readonlyPaths.count)
        // "net.ipv4.ip_forward" -> "net/ipv4/ip_forward" below /proc/sys
        config.sysctl_paths = arena.constStringArray(sysctl.map { $0.key.replacingOccurrences(of: ".", with: "/") })
        config.sysctl_values = arena.constStringArray(sysctl.map(\.value))
        config.sysctl_count = Int32(sysctl.count)
        config.populate_dev = spec.mounts.contains { $0.destination == "/dev" } ? 1 : 0
        config.rootfs_propagation = arena.optionalString(spec.rootfsPropagation)
        config.join_fds = UnsafePointer(arena.array(joinFDs))
        config.join_types = UnsafePointer(arena.array(joinTypes))
        config.join_count = Int32(joinFDs.count)
        config.become_root = spec.has(.user) ? 1 : 0

        config.path = UnsafePointer(arena.string(process.args[0]))
        config.argv = UnsafePointer(arena.stringArray(process.args))
        config.envp = UnsafePointer(arena.stringArray(process.env))
        config.cwd = UnsafePointer(arena.string(process.cwd))
        config.uid = process.uid
        config.gid = process.gid
        config.additional_gids = UnsafePointer(arena.array(process.additionalGids))
        config.additional_gid_count = Int32(process.additionalGids.count)
        config.rlimit_types = UnsafePointer(arena.array(process.rlimits.map(\.type)))
        config.rlimit_soft = UnsafePointer(arena.array(process.rlimits.map(\.soft)))
        config.rlimit_hard = UnsafePointer(arena.array(process.rlimits.map(\.hard)))
        config.rlimit_count = Int32(process.rlimits.count)
        config.cap_bounding = process.capabilities.bounding
        config.cap_effective = process.capabilities.effective
        config.cap_permitted = process.capabilities.permitted
        config.cap_inheritable = process.capabilities.inheritable
        config.cap_ambient = process.capabilities.ambient
        config.no_new_privileges = process.noNewPrivileges ? 1 : 0
        if let filter = seccompFilter, !filter.isEmpty {
            config.seccomp_filter = arena.bytes(filter)
            config.seccomp_instructions = UInt16(filter.count / 8)
        }
        // oom_score_adj is written by the parent: the child, once it changed credentials in its user
        // namespace, no longer owns its /proc files.
        config.oom_score_adj_set = 0
        config.exec_fifo_fd = plumbing.execFifoFD
        config.exit_status_fd = plumbing.exitStatusFD
        config.log_dir_fd = plumbing.logDirectoryFD
        config.log_max_bytes = plumbing.logMaxBytes
        config.log_keep = plumbing.logKeep
        config.stdin_fd = -1
        config.stdout_fd = -1
        config.stderr_fd = -1
    }

    /// Clones the init. The child waits on the returned sync fd before doing anything.
    func spawn(cgroupFD: Int32) throws(ContainerRuntimeError) -> nshim_container_child {
        var child = nshim_container_child()
        let rc = withUnsafePointer(to: &config) { nshim_container_spawn($0, cloneFlags, cgroupFD, &child) }
        guard rc == 0 else { throw .setup(id: "-", step: "clone the container init", errno: -rc) }
        return child
    }

    deinit {
        for fd in openedFDs { close(fd) }
    }
}
