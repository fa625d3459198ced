import GridTypes

/// The node's shard server, as the zdb manager needs it: a local API, never the network.
public protocol ShardNamespaceService: Sendable {
    func ensureNamespace(_ name: String, maxSize: UInt64, mode: ZdbData.Mode, password: String, isPublic: Bool,
                         locked: Bool) async throws(ProvisionerError)
    func deleteNamespace(_ name: String) async throws(ProvisionerError)
    func namespaceNames() async throws(ProvisionerError) -> [String]
    /// Where clients reach the namespaces.
    func endpoint() async -> (ips: [String], port: Int)
}

/// zdb workloads: one shard namespace each, with the requested size limit, mode, password and
/// public flag. A paused deployment's namespaces are locked (read-only), as zos does.
public struct ZdbManager: WorkloadManager {
    let service: any ShardNamespaceService

    public init(service: any ShardNamespaceService) {
        self.service = service
    }

    public var types: [WorkloadType] { [.zdb] }

    public func apply(_ workload: Workload, id: WorkloadID, context: DeploymentContext, paused: Bool) async throws(ProvisionerError) -> JSONValue? {
        guard case .zdb(let z) = workload.data else { return nil }
        try await service.ensureNamespace(id.nodeName, maxSize: z.size, mode: z.mode, password: z.password, isPublic: z.public, locked: paused)
        let endpoint = await service.endpoint()
        // zos' result keys are capitalised; grid clients read them as-is.
        return .object(["Namespace": .string(id.nodeName), "IPs": .array(endpoint.ips.map { .string($0) }),
                        "Port": .number(Double(endpoint.port))])
    }

    public func remove(_ id: WorkloadID, type: WorkloadType) async throws(ProvisionerError) {
        try await service.deleteNamespace(id.nodeName)
    }

    public func existing() async throws(ProvisionerError) -> [WorkloadID] {
        try await service.namespaceNames().compactMap(WorkloadID.init(nodeName:))
    }
}
