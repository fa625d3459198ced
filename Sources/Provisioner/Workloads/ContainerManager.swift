import GridTypes

/// What the provisioner asks of the container runtime: one call that converges a container to
/// running (or frozen) from an image, and its removal. The node's implementation pulls and checks
/// the image, lays out the root filesystem and applies the secure defaults.
public protocol ContainerService: Sendable {
    func ensure(_ launch: ContainerLaunch, paused: Bool) async throws(ProvisionerError) -> ContainerStatus
    func remove(id: String) async throws(ProvisionerError)
    func containerIDs() async throws(ProvisionerError) -> [String]
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
public struct ContainerManager: WorkloadManager {
    let service: any ContainerService

    public init(service: any ContainerService) {
        self.service = service
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
        let launch = ContainerLaunch(id: id.nodeName, image: c.image, imageDigest: c.imageDigest, entrypoint: c.entrypoint, args: c.args,
                                     env: c.env.keys.sorted().map { "\($0)=\(c.env[$0] ?? "")" }, cpus: c.compute.cpu,
                                     memoryBytes: c.compute.memory, rootSizeBytes: c.rootSize, mounts: binds, revision: revision)
        let status = try await service.ensure(launch, paused: paused)
        return .object(["id": .string(id.nodeName), "pid": .number(Double(status.pid)), "running": .bool(status.running)])
    }

    public func remove(_ id: WorkloadID, type: WorkloadType) async throws(ProvisionerError) {
        try await service.remove(id: id.nodeName)
    }

    public func existing() async throws(ProvisionerError) -> [WorkloadID] {
        try await service.containerIDs().compactMap(WorkloadID.init(nodeName:))
    }
}
