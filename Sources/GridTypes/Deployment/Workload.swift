import Foundation

/// The workload types a deployment may carry. Only the first four run on this node; the others are
/// recognised so that a deployment naming them gets a precise refusal instead of a decode error.
public enum WorkloadType: String, Codable, Sendable, CaseIterable {
    case zdb, zmount, volume, container
    case zmachine, network, networkLight = "network-light", zlogs, qsfs, ip = "ip", ipv4
    case gatewayName = "gateway-name-proxy", gatewayFQDN = "gateway-fqdn-proxy", zmachineLight = "zmachine-light"

    public static let runnable: [WorkloadType] = [.zdb, .zmount, .volume, .container]
    public var isRunnable: Bool { Self.runnable.contains(self) }
}

public struct Workload: Codable, Equatable, Sendable {
    public var version: UInt32
    public var name: String
    /// The type as sent; `data` is decoded according to it.
    public var type: String
    public var data: WorkloadData
    public var metadata: String
    public var description: String
    /// Set by the node; never part of the challenge.
    public var result: WorkloadResult?

    enum CodingKeys: String, CodingKey {
        case version, name, type, data, metadata, description, result
    }

    public init(version: UInt32 = 0, name: String, data: WorkloadData, metadata: String = "", description: String = "") {
        self.version = version
        self.name = name
        self.type = data.type.rawValue
        self.data = data
        self.metadata = metadata
        self.description = description
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decodeIfPresent(UInt32.self, forKey: .version) ?? 0
        name = try c.decode(String.self, forKey: .name)
        type = try c.decode(String.self, forKey: .type)
        metadata = try c.decodeIfPresent(String.self, forKey: .metadata) ?? ""
        description = try c.decodeIfPresent(String.self, forKey: .description) ?? ""
        result = try c.decodeIfPresent(WorkloadResult.self, forKey: .result)
        switch WorkloadType(rawValue: type) {
        case .zdb: data = .zdb(try c.decode(ZdbData.self, forKey: .data))
        case .zmount: data = .zmount(try c.decode(DiskData.self, forKey: .data))
        case .volume: data = .volume(try c.decode(DiskData.self, forKey: .data))
        case .container: data = .container(try c.decode(ContainerData.self, forKey: .data))
        default: data = .unsupported(type)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(version, forKey: .version)
        try c.encode(name, forKey: .name)
        try c.encode(type, forKey: .type)
        try c.encode(metadata, forKey: .metadata)
        try c.encode(description, forKey: .description)
        try c.encodeIfPresent(result, forKey: .result)
        switch data {
        case .zdb(let d): try c.encode(d, forKey: .data)
        case .zmount(let d), .volume(let d): try c.encode(d, forKey: .data)
        case .container(let d): try c.encode(d, forKey: .data)
        case .unsupported: try c.encode([String: String](), forKey: .data)
        }
    }

    /// Capacity the workload reserves (zos-deployment.md; containers: cpu, memory and root size).
    public var reservation: Resources {
        switch data {
        case .zdb(let d): return Resources(hru: d.size)
        case .zmount(let d), .volume(let d): return Resources(sru: d.size)
        case .container(let d): return Resources(sru: d.rootSize, cru: UInt64(d.compute.cpu), mru: d.compute.memory)
        case .unsupported: return .zero
        }
    }
}

public enum WorkloadData: Equatable, Sendable {
    case zdb(ZdbData)
    case zmount(DiskData)
    case volume(DiskData)
    case container(ContainerData)
    case unsupported(String)

    public var type: WorkloadType {
        switch self {
        case .zdb: return .zdb
        case .zmount: return .zmount
        case .volume: return .volume
        case .container: return .container
        case .unsupported(let name): return WorkloadType(rawValue: name) ?? .zmachine
        }
    }
}

public struct ZdbData: Codable, Equatable, Sendable {
    public enum Mode: String, Codable, Sendable { case user, seq }
    public var size: UInt64
    public var mode: Mode
    public var password: String
    public var `public`: Bool

    public init(size: UInt64, mode: Mode = .user, password: String = "", public: Bool = false) {
        self.size = size
        self.mode = mode
        self.password = password
        self.public = `public`
    }
}

/// zmount and volume: a filesystem of exactly `size` bytes.
public struct DiskData: Codable, Equatable, Sendable {
    public var size: UInt64
    public init(size: UInt64) { self.size = size }
}

/// This node's native container workload. Its challenge is documented in README ("container").
public struct ContainerData: Codable, Equatable, Sendable {
    public struct Compute: Codable, Equatable, Sendable {
        public var cpu: UInt8
        /// Bytes.
        public var memory: UInt64
        public init(cpu: UInt8, memory: UInt64) {
            self.cpu = cpu
            self.memory = memory
        }
    }

    public struct Mount: Codable, Equatable, Sendable {
        /// Name of a volume or zmount workload of the same deployment.
        public var name: String
        public var mountpoint: String
        public init(name: String, mountpoint: String) {
            self.name = name
            self.mountpoint = mountpoint
        }
    }

    /// file://, http:// or https:// URL of the image archive.
    public var image: String
    /// BLAKE2b-256 of the archive, 64 lowercase hex characters.
    public var imageDigest: String
    public var entrypoint: String
    public var args: [String]
    public var env: [String: String]
    public var compute: Compute
    public var mounts: [Mount]
    /// Bytes of writable root filesystem reserved for the container.
    public var rootSize: UInt64
    /// The container's network; nil: an empty network namespace of its own (loopback only).
    public var network: ContainerNetwork?

    enum CodingKeys: String, CodingKey {
        case image, entrypoint, args, env, mounts, network
        case imageDigest = "image_digest", compute = "compute_capacity", rootSize = "root_size"
    }

    public init(image: String, imageDigest: String, entrypoint: String, args: [String] = [], env: [String: String] = [:],
                compute: Compute, mounts: [Mount] = [], rootSize: UInt64 = 0, network: ContainerNetwork? = nil) {
        self.image = image
        self.imageDigest = imageDigest
        self.entrypoint = entrypoint
        self.args = args
        self.env = env
        self.compute = compute
        self.mounts = mounts
        self.rootSize = rootSize
        self.network = network
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        image = try c.decode(String.self, forKey: .image)
        imageDigest = try c.decode(String.self, forKey: .imageDigest)
        entrypoint = try c.decodeIfPresent(String.self, forKey: .entrypoint) ?? ""
        args = try c.decodeIfPresent([String].self, forKey: .args) ?? []
        env = try c.decodeIfPresent([String: String].self, forKey: .env) ?? [:]
        compute = try c.decode(Compute.self, forKey: .compute)
        mounts = try c.decodeIfPresent([Mount].self, forKey: .mounts) ?? []
        rootSize = try c.decodeIfPresent(UInt64.self, forKey: .rootSize) ?? 0
        network = try c.decodeIfPresent(ContainerNetwork.self, forKey: .network)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(image, forKey: .image)
        try c.encode(imageDigest, forKey: .imageDigest)
        try c.encode(entrypoint, forKey: .entrypoint)
        try c.encode(args, forKey: .args)
        try c.encode(env, forKey: .env)
        try c.encode(compute, forKey: .compute)
        try c.encode(mounts, forKey: .mounts)
        try c.encode(rootSize, forKey: .rootSize)
        // Absent rather than null, so deployments without networking encode as before.
        try c.encodeIfPresent(network, forKey: .network)
    }
}
