import GridTypes

/// A workload's name on the node: `wl-<contract>-<name>`. The prefix marks what the provisioner
/// owns, so start-up can remove its own orphans and never touch what the farmer made by hand.
public struct WorkloadID: Hashable, Sendable, CustomStringConvertible {
    public static let prefix = "wl-"
    public var contractID: UInt64
    public var name: String

    public init(contractID: UInt64, name: String) {
        self.contractID = contractID
        self.name = name
    }

    /// Parses a node-side name; nil for anything the provisioner did not make.
    public init?(nodeName: String) {
        guard nodeName.hasPrefix(Self.prefix) else { return nil }
        let rest = nodeName.dropFirst(Self.prefix.count)
        guard let dash = rest.firstIndex(of: "-"), let contract = UInt64(rest[..<dash]) else { return nil }
        let name = String(rest[rest.index(after: dash)...])
        guard !name.isEmpty else { return nil }
        self.init(contractID: contract, name: name)
    }

    public var nodeName: String { "\(Self.prefix)\(contractID)-\(name)" }
    public var description: String { "\(contractID)/\(name)" }
}

/// What a manager may know about the rest of its deployment.
public struct DeploymentContext: Sendable {
    public var contractID: UInt64
    public var twinID: UInt32
    /// Host paths of this deployment's volumes and zmounts that are ready, by workload name.
    public var diskPaths: [String: String]

    public init(contractID: UInt64, twinID: UInt32, diskPaths: [String: String] = [:]) {
        self.contractID = contractID
        self.twinID = twinID
        self.diskPaths = diskPaths
    }
}

/// One workload type's install, update, pause, resume and remove. Every call converges: it looks at
/// what exists and does only what is missing, so a call repeated after a crash is safe.
public protocol WorkloadManager: Sendable {
    var types: [WorkloadType] { get }
    /// Makes the workload exist as described, paused or running; answers its result data.
    func apply(_ workload: Workload, id: WorkloadID, context: DeploymentContext, paused: Bool) async throws(ProvisionerError) -> JSONValue?
    /// Removes it; succeeds when it is already gone.
    func remove(_ id: WorkloadID, type: WorkloadType) async throws(ProvisionerError)
    /// What of this manager's kind exists on the node, for orphan removal.
    func existing() async throws(ProvisionerError) -> [WorkloadID]
    /// Host path of a disk workload that is ready (volume and zmount only).
    func diskPath(_ id: WorkloadID) -> String?
}

extension WorkloadManager {
    public func diskPath(_ id: WorkloadID) -> String? { nil }
}
