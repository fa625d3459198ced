/// A validated OCI runtime spec: only what this runtime implements, already checked. Built by
/// `SpecParser` from a bundle's config.json, or by `SecureDefaults` for the provisioner.
public struct ContainerSpec: Equatable, Sendable {
    public struct IDMapping: Equatable, Sendable {
        public var containerID: UInt32
        public var hostID: UInt32
        public var size: UInt32
        public init(containerID: UInt32, hostID: UInt32, size: UInt32) {
            self.containerID = containerID
            self.hostID = hostID
            self.size = size
        }
    }

    public enum NamespaceKind: String, CaseIterable, Sendable {
        case pid, network, mount, ipc, uts, user, cgroup
    }

    public struct Namespace: Equatable, Sendable {
        public var kind: NamespaceKind
        /// Join this existing namespace instead of creating one.
        public var path: String?
        public init(kind: NamespaceKind, path: String? = nil) {
            self.kind = kind
            self.path = path
        }
    }

    public struct Mount: Equatable, Sendable {
        public var destination: String
        public var type: String?
        public var source: String?
        public var flags: UInt
        public var data: String
        public var bind: Bool
        public init(destination: String, type: String?, source: String?, flags: UInt, data: String, bind: Bool) {
            self.destination = destination
            self.type = type
            self.source = source
            self.flags = flags
            self.data = data
            self.bind = bind
        }
    }

    public struct Rlimit: Equatable, Sendable {
        public var type: Int32
        public var soft: UInt64
        public var hard: UInt64
    }

    public struct CapabilitySets: Equatable, Sendable {
        public var bounding: UInt64 = 0
        public var effective: UInt64 = 0
        public var permitted: UInt64 = 0
        public var inheritable: UInt64 = 0
        public var ambient: UInt64 = 0
        public init() {}
    }

    public struct Process: Equatable, Sendable {
        public var args: [String]
        public var env: [String]
        public var cwd: String
        public var uid: UInt32 = 0
        public var gid: UInt32 = 0
        public var additionalGids: [UInt32] = []
        public var rlimits: [Rlimit] = []
        public var capabilities = CapabilitySets()
        public var noNewPrivileges = false
        public var oomScoreAdj: Int?
        /// What the parser changed or ignored, for the caller to show (never silently).
        public var warnings: [String] = []
    }

    public struct Resources: Equatable, Sendable {
        public var memoryLimit: Int64?
        public var cpuQuota: Int64?
        public var cpuPeriod: UInt64?
        public var cpuShares: UInt64?
        public var pidsLimit: Int64?
        public init() {}
    }

    public struct SeccompRule: Equatable, Sendable {
        public struct Arg: Equatable, Sendable {
            public var index: UInt32
            public var value: UInt64
            public var valueTwo: UInt64
            public var op: String
        }
        public var names: [String]
        public var action: String
        public var errnoRet: UInt32?
        public var args: [Arg]
    }

    public struct Seccomp: Equatable, Sendable {
        public var defaultAction: String
        public var defaultErrnoRet: UInt32?
        public var architectures: [String]
        public var rules: [SeccompRule]
    }

    public var ociVersion: String
    public var process: Process
    /// Absolute host path of the rootfs.
    public var rootPath: String
    public var rootReadonly: Bool
    public var hostname: String?
    public var mounts: [Mount]
    public var namespaces: [Namespace]
    public var uidMappings: [IDMapping]
    public var gidMappings: [IDMapping]
    public var resources: Resources
    public var cgroupsPath: String?
    public var seccomp: Seccomp?
    public var maskedPaths: [String]
    public var readonlyPaths: [String]
    public var sysctl: [String: String]
    public var rootfsPropagation: String?
    public var annotations: [String: String]

    public func has(_ kind: NamespaceKind) -> Bool { namespaces.contains { $0.kind == kind } }
}
