import Foundation

/// The spec the provisioner gives every tenant container: all namespaces including a user
/// namespace with an unprivileged id range, Docker's default seccomp stance, a minimal capability
/// set, no_new_privs, masked /proc paths, a read-only /sys and only the standard device nodes.
public enum SecureDefaults {
    /// A tenant workload, in the provisioner's terms.
    public struct Workload: Sendable {
        public var rootfs: String
        public var args: [String]
        public var env: [String]
        public var cwd: String
        public var hostname: String
        public var memoryBytes: Int64
        /// CPU time per period, in thousandths of a CPU (1000 = one full CPU).
        public var milliCPUs: Int64
        public var pidsLimit: Int64
        /// First host uid/gid of the container's range; container uid 0 maps here.
        public var idBase: UInt32
        public var idCount: UInt32
        /// Host directories bound into the container (volumes): source -> destination.
        public var binds: [(source: String, destination: String, readonly: Bool)]
        /// An existing network namespace to join (the deployment's network), or nil for a new one.
        public var networkNamespacePath: String?

        public init(rootfs: String, args: [String], env: [String] = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                    cwd: String = "/", hostname: String, memoryBytes: Int64, milliCPUs: Int64, pidsLimit: Int64 = 1024,
                    idBase: UInt32 = 100_000, idCount: UInt32 = 65_536, binds: [(source: String, destination: String, readonly: Bool)] = [],
                    networkNamespacePath: String? = nil) {
            self.rootfs = rootfs
            self.args = args
            self.env = env
            self.cwd = cwd
            self.hostname = hostname
            self.memoryBytes = memoryBytes
            self.milliCPUs = milliCPUs
            self.pidsLimit = pidsLimit
            self.idBase = idBase
            self.idCount = idCount
            self.binds = binds
            self.networkNamespacePath = networkNamespacePath
        }
    }

    /// Docker's default set without CAP_MKNOD and CAP_NET_RAW (raw sockets and device nodes are not
    /// something a tenant's service needs on a shared node).
    public static let capabilities: [String] = Capabilities.containerDefault.filter { $0 != "CAP_MKNOD" && $0 != "CAP_NET_RAW" }

    public static let maskedPaths = [
        "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
    ]
    public static let readonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

    /// proc, a tmpfs /dev with devpts, shm and mqueue, and sysfs read-only.
    public static let standardMounts: [ContainerSpec.Mount] = [
        .init(destination: "/proc", type: "proc", source: "proc", flags: MountFlag.nosuid | MountFlag.noexec | MountFlag.nodev, data: "", bind: false),
        .init(destination: "/dev", type: "tmpfs", source: "tmpfs", flags: MountFlag.nosuid | MountFlag.strictatime, data: "mode=755,size=65536k", bind: false),
        .init(destination: "/dev/pts", type: "devpts", source: "devpts", flags: MountFlag.nosuid | MountFlag.noexec,
              data: "newinstance,ptmxmode=0666,mode=0620", bind: false),
        .init(destination: "/dev/shm", type: "tmpfs", source: "shm", flags: MountFlag.nosuid | MountFlag.noexec | MountFlag.nodev,
              data: "mode=1777,size=65536k", bind: false),
        .init(destination: "/dev/mqueue", type: "mqueue", source: "mqueue", flags: MountFlag.nosuid | MountFlag.noexec | MountFlag.nodev, data: "", bind: false),
        .init(destination: "/sys", type: "sysfs", source: "sysfs",
              flags: MountFlag.nosuid | MountFlag.noexec | MountFlag.nodev | MountFlag.rdonly, data: "", bind: false),
    ]

    public static func spec(_ w: Workload) -> ContainerSpec {
        var caps = ContainerSpec.CapabilitySets()
        let mask = (try? Capabilities.mask(capabilities).get()) ?? 0
        caps.bounding = mask
        caps.effective = mask
        caps.permitted = mask
        var process = ContainerSpec.Process(args: w.args, env: w.env, cwd: w.cwd)
        process.capabilities = caps
        process.noNewPrivileges = true
        process.oomScoreAdj = 500  // the OOM killer should pick a tenant's container before the agent

        var resources = ContainerSpec.Resources()
        resources.memoryLimit = w.memoryBytes
        resources.cpuPeriod = 100_000
        resources.cpuQuota = max(1_000, w.milliCPUs * 100)
        resources.pidsLimit = w.pidsLimit

        var namespaces: [ContainerSpec.Namespace] = [.init(kind: .user), .init(kind: .mount), .init(kind: .pid), .init(kind: .ipc),
                                                     .init(kind: .uts), .init(kind: .cgroup)]
        namespaces.append(.init(kind: .network, path: w.networkNamespacePath))
        var mounts = standardMounts
        for bind in w.binds {
            mounts.append(.init(destination: bind.destination, type: nil, source: bind.source,
                                flags: MountFlag.rec | MountFlag.nosuid | MountFlag.nodev | (bind.readonly ? MountFlag.rdonly : 0),
                                data: "", bind: true))
        }
        let mapping = [ContainerSpec.IDMapping(containerID: 0, hostID: w.idBase, size: w.idCount)]
        return ContainerSpec(
            ociVersion: OCIRuntime.ociVersion, process: process, rootPath: w.rootfs, rootReadonly: false, hostname: w.hostname,
            mounts: mounts, namespaces: namespaces, uidMappings: mapping, gidMappings: mapping, resources: resources,
            cgroupsPath: nil, seccomp: DefaultSeccompProfile.spec, maskedPaths: maskedPaths, readonlyPaths: readonlyPaths,
            sysctl: [:], rootfsPropagation: nil, annotations: [:])
    }
}
