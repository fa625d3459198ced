import Foundation

/// A zos v3 deployment as grid clients build it (zos-deployment.md): the JSON shape, field names
/// and number types are the wire format, so existing tooling's deployments decode unchanged.
public struct Deployment: Codable, Equatable, Sendable {
    public var version: UInt32
    public var twinID: UInt32
    public var contractID: UInt64
    public var metadata: String
    public var description: String
    public var expiration: Int64
    public var signatureRequirement: SignatureRequirement
    public var workloads: [Workload]

    enum CodingKeys: String, CodingKey {
        case version, metadata, description, expiration, workloads
        case twinID = "twin_id", contractID = "contract_id", signatureRequirement = "signature_requirement"
    }

    public init(version: UInt32 = 0, twinID: UInt32, contractID: UInt64 = 0, metadata: String = "", description: String = "",
                expiration: Int64 = 0, signatureRequirement: SignatureRequirement, workloads: [Workload]) {
        self.version = version
        self.twinID = twinID
        self.contractID = contractID
        self.metadata = metadata
        self.description = description
        self.expiration = expiration
        self.signatureRequirement = signatureRequirement
        self.workloads = workloads
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decodeIfPresent(UInt32.self, forKey: .version) ?? 0
        twinID = try c.decode(UInt32.self, forKey: .twinID)
        contractID = try c.decodeIfPresent(UInt64.self, forKey: .contractID) ?? 0
        metadata = try c.decodeIfPresent(String.self, forKey: .metadata) ?? ""
        description = try c.decodeIfPresent(String.self, forKey: .description) ?? ""
        expiration = try c.decodeIfPresent(Int64.self, forKey: .expiration) ?? 0
        signatureRequirement = try c.decode(SignatureRequirement.self, forKey: .signatureRequirement)
        workloads = try c.decodeIfPresent([Workload].self, forKey: .workloads) ?? []
    }

    /// Limits on what a stranger may send; checked by `DeploymentRules` before anything else.
    public enum Limits {
        public static let maxBodyBytes = 1 << 20
        public static let maxWorkloads = 64
        public static let maxSignatureRequests = 32
        public static let maxTextBytes = 4096
    }
}

public struct SignatureRequirement: Codable, Equatable, Sendable {
    public var requests: [SignatureRequest]
    public var weightRequired: UInt32
    public var signatures: [Signature]
    public var signatureStyle: String

    enum CodingKeys: String, CodingKey {
        case requests, signatures
        case weightRequired = "weight_required", signatureStyle = "signature_style"
    }

    public init(requests: [SignatureRequest], weightRequired: UInt32, signatures: [Signature] = [], signatureStyle: String = "") {
        self.requests = requests
        self.weightRequired = weightRequired
        self.signatures = signatures
        self.signatureStyle = signatureStyle
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        requests = try c.decodeIfPresent([SignatureRequest].self, forKey: .requests) ?? []
        weightRequired = try c.decodeIfPresent(UInt32.self, forKey: .weightRequired) ?? 0
        signatures = try c.decodeIfPresent([Signature].self, forKey: .signatures) ?? []
        signatureStyle = try c.decodeIfPresent(String.self, forKey: .signatureStyle) ?? ""
    }
}

public struct SignatureRequest: Codable, Equatable, Sendable {
    public var twinID: UInt32
    public var required: Bool
    public var weight: UInt32

    enum CodingKeys: String, CodingKey {
        case required, weight
        case twinID = "twin_id"
    }

    public init(twinID: UInt32, required: Bool, weight: UInt32) {
        self.twinID = twinID
        self.required = required
        self.weight = weight
    }
}

public struct Signature: Codable, Equatable, Sendable {
    public var twinID: UInt32
    /// Hex of the 64-byte signature.
    public var signature: String
    public var signatureType: String

    enum CodingKeys: String, CodingKey {
        case signature
        case twinID = "twin_id", signatureType = "signature_type"
    }

    public init(twinID: UInt32, signature: String, signatureType: String = "ed25519") {
        self.twinID = twinID
        self.signature = signature
        self.signatureType = signatureType
    }
}

/// What became of a workload on the node.
public struct WorkloadResult: Codable, Equatable, Sendable {
    public enum State: String, Codable, Sendable {
        case initializing = "init", ok, error, deleted, paused
    }

    /// Unix seconds.
    public var created: Int64
    public var state: State
    public var message: String
    public var data: JSONValue?

    public init(created: Int64, state: State, message: String = "", data: JSONValue? = nil) {
        self.created = created
        self.state = state
        self.message = message
        self.data = data
    }
}
