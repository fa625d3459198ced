import GridTypes

/// What the provisioner asks of the container runtime: one call that converges a container to
/// running (or frozen) from an image, and its removal. The node's implementation pulls and checks
/// the image, lays out the root filesystem and applies the secure defaults.
public protocol ContainerService: Sendable {
    func ensure(_ launch: ContainerLaunch, paused: Bool) async throws(ProvisionerError) -> ContainerStatus
    func remove(id: String) async throws(ProvisionerError)
    func containerIDs() async throws(ProvisionerError) -> [String]
}

/// Container networks (README "Networking"): set up before a container starts, removed after it.
public protocol ContainerNetworking: Sendable {
    /// Converges the container's network; answers where the container joins it.
    func attach(_ id: WorkloadID, network: ContainerNetwork) async throws(ProvisionerError) -> ContainerLaunch.Network
    /// Removes it; succeeds when already gone.
    func detach(_ id: WorkloadID) async throws(ProvisionerError)
    /// Containers with a network on record, for orphan removal.
    func attached() async throws(ProvisionerError) -> [WorkloadID]
}

public struct ContainerLaunch: Equatable, Sendable {
    public var id: String
    public var image: String
    public var imageDigest: String
    public var entrypoint: String
    public var args: [String]
    /// Sorted `k=v` pairs.
    public var env: [String]
    public var cpus: UInt8
    public var memoryBytes: UInt64
    public var rootSizeBytes: UInt64
    /// Host path -> container path.
    public var mounts: [Bind]
    /// Changes whenever the workload's definition changes: a running container with another
    /// revision is replaced.
    public var revision: String
    /// nil: an empty network namespace of the container's own.
    public var network: Network?

    public struct Network: Equatable, Sendable {
        /// A persistent named namespace (/run/netns/...) the container joins.
        public var namespacePath: String
        public var address: String
        /// Bound read-only onto the container's /etc/resolv.conf.
        public var resolvConf: String

        public init(namespacePath: String, address: String, resolvConf: String) {
            self.namespacePath = namespacePath
            self.address = address
            self.resolvConf = resolvConf
        }
    }

    public struct Bind: Equatable, Sendable {
        public var source: String
        public var destination: String
    }
}

public struct ContainerStatus: Equatable, Sendable {
    public var pid: Int32
    public var running: Bool
    public var paused: Bool
    public var message: String

    public init(pid: Int32, running: Bool, paused: Bool, message: String = "") {
        self.pid = pid
        self.running = running
        self.paused = paused
        self.message = message
    }
}

/// container workloads through a `ContainerService`. Mounts name this deployment's own volumes;
/// validation already refused any other name, and a volume that is not ready yet fails the apply
/// (retried on the next pass) instead of starting the container without its data.
///
/// A container with a network gets it before it starts and loses it after it stops; one whose
/// network was dropped by an update is detached.
public struct ContainerManager: WorkloadManager {
    let service: any ContainerService
    let networking: (any ContainerNetworking)?

    public init(service: any ContainerService, networking: (any ContainerNetworking)? = nil) {
        self.service = service
        self.networking = networking
    }

    public var types: [WorkloadType] { [.container] }

    public func apply(_ workload: Workload, id: WorkloadID, context: DeploymentContext, paused: Bool) async throws(ProvisionerError) -> JSONValue? {
        guard case .container(let c) = workload.data else { return nil }
        var binds = [ContainerLaunch.Bind]()
        for mount in c.mounts {
            guard let source = context.diskPaths[mount.name] else {
                throw .workload(name: id.description, operation: "mount \(mount.name)",
                                detail: "volume \(mount.name) of this deployment is not ready", permanent: false)
            }
            binds.append(.init(source: source, destination: mount.mountpoint))
        }
        let revision = Hex.encode(Blake2b.hash(Array(DeploymentChallenge.dataText(workload.data).utf8) + Array("\(workload.version)".utf8),
                                               outputLength: 16))
        var network: ContainerLaunch.Network?
        if let wanted = c.network {
            guard let networking else {
                throw .workload(name: id.description, operation: "network", detail: "this node has no container networking; deploy without `network`",
                                permanent: true)
            }
            network = try await networking.attach(id, network: wanted)
        } else if let networking {
            try await networking.detach(id)
        }
        let launch = ContainerLaunch(id: id.nodeName, image: c.image, imageDigest: c.imageDigest, entrypoint: c.entrypoint, args: c.args,
                                     env: c.env.keys.sorted().map { "\($0)=\(c.env[$0] ?? "")" }, cpus: c.compute.cpu,
                                     memoryBytes: c.compute.memory, rootSizeBytes: c.rootSize, mounts: binds, revision: revision,
                                     network: network)
        let status = try await service.ensure(launch, paused: paused)
        var result: [String: JSONValue] = ["id": .string(id.nodeName), "pid": .number(Double(status.pid)), "running": .bool(status.running)]
        if let network { result["address"] = .string(network.address) }
        return .object(result)
    }

    public func remove(_ id: WorkloadID, type: WorkloadType) async throws(ProvisionerError) {
        try await service.remove(id: id.nodeName)
        try await networking?.detach(id)
    }

    public func existing() async throws(ProvisionerError) -> [WorkloadID] {
        var ids = Set(try await service.containerIDs().compactMap(WorkloadID.init(nodeName:)))
        if let networking { ids.formUnion(try await networking.attached()) }
        return Array(ids)
    }
}
