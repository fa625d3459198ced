import Foundation

/// What a farmer allows on this node's network (config `[network]`), checked at admission.
public struct NetworkPolicy: Equatable, Sendable {
    /// Public ports below this are refused (1024: no privileged ports; 1: the farmer allows them).
    public var minPublicPort: UInt16
    /// Containers with a network per deployment (each takes a veth pair and an address).
    public var maxInterfaces: Int
    /// Where deployments without their own range get a /24.
    public var pool: IPv4Network
    /// Ports the node itself listens on (twin API, shard server): never published.
    public var reservedPorts: Set<UInt16>

    public static let defaultPool = IPv4Network(address: 0x0AC9_0000, prefixLength: 16)  // 10.201.0.0/16

    public init(minPublicPort: UInt16 = 1024, maxInterfaces: Int = 16, pool: IPv4Network = NetworkPolicy.defaultPool,
                reservedPorts: Set<UInt16> = []) {
        self.minPublicPort = minPublicPort
        self.maxInterfaces = maxInterfaces
        self.pool = pool
        self.reservedPorts = reservedPorts
    }
}

/// Network rules: the shape of one deployment's networks (DeploymentRules), and admission against
/// the node's policy and the other deployments on it.
public enum NetworkRules {
    public static let maxPorts = 64
    public static let maxAllowEntries = 64

    /// One destination of an allow-list: `CIDR` or `CIDR:port`.
    public static func parseAllow(_ entry: String) -> (network: IPv4Network, port: UInt16?)? {
        guard entry.utf8.count <= 24 else { return nil }
        let parts = entry.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2, let network = IPv4Network(String(parts[0])) else { return nil }
        guard parts.count == 2 else { return (network, nil) }
        guard let port = UInt16(parts[1]), port > 0, String(port) == parts[1] else { return nil }
        return (network, port)
    }

    /// A deployment's private range: every container naming one names the same.
    public static func privateRange(_ d: Deployment) -> String? {
        for w in d.workloads { if case .container(let c) = w.data, let range = c.network?.ipRange { return range } }
        return nil
    }

    public static func networked(_ d: Deployment) -> [(name: String, network: ContainerNetwork)] {
        d.workloads.compactMap { w in
            if case .container(let c) = w.data, let n = c.network { return (w.name, n) }
            return nil
        }
    }

    static func validate(_ d: Deployment) throws(GridTypesError) {
        let containers = networked(d)
        // The first container naming a range sets it; then every networked container must name it.
        let range = containers.lazy.compactMap(\.network.ipRange).first
        var published = Set<String>()
        for (name, n) in containers {
            let field = "workloads.\(name).data.network"
            if let r = n.ipRange {
                guard let network = IPv4Network(r) else {
                    throw .invalidDeployment(field: "\(field).ip_range", reason: "'\(r.prefix(40))' is not an IPv4 CIDR with its host bits clear, like 10.20.0.0/24")
                }
                guard (16...29).contains(network.prefixLength) else {
                    throw .invalidDeployment(field: "\(field).ip_range", reason: "\(network) is a /\(network.prefixLength); use a /16 to /29")
                }
                guard isPrivate(network) else {
                    throw .invalidDeployment(field: "\(field).ip_range", reason: "\(network) is not inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
                }
            }
            if let first = range, n.ipRange != first {
                throw .invalidDeployment(field: "\(field).ip_range", reason: "'\((n.ipRange ?? "none").prefix(40))' differs from '\(first)': a deployment has one private range; name the same in every container with a network")
            }
            guard n.ports.count <= maxPorts else { throw .invalidDeployment(field: "\(field).ports", reason: "\(n.ports.count) ports; at most \(maxPorts)") }
            for p in n.ports {
                guard p.port > 0, p.publicPort > 0 else { throw .invalidDeployment(field: "\(field).ports", reason: "ports are 1 to 65535") }
                guard published.insert("\(p.protocol.rawValue)/\(p.publicPort)").inserted else {
                    throw .invalidDeployment(field: "\(field).ports", reason: "public \(p.protocol.rawValue) port \(p.publicPort) is published twice in this deployment")
                }
            }
            guard n.egress.allow.count <= maxAllowEntries else {
                throw .invalidDeployment(field: "\(field).egress.allow", reason: "\(n.egress.allow.count) entries; at most \(maxAllowEntries)")
            }
            if n.egress.mode != .allow, !n.egress.allow.isEmpty {
                throw .invalidDeployment(field: "\(field).egress.allow", reason: "an allow-list needs mode \"allow\" (mode is \"\(n.egress.mode.rawValue)\")")
            }
            for entry in n.egress.allow where parseAllow(entry) == nil {
                throw .invalidDeployment(field: "\(field).egress.allow", reason: "'\(entry.prefix(40))' is not CIDR or CIDR:port, like 192.0.2.0/24:443")
            }
        }
    }

    static func isPrivate(_ n: IPv4Network) -> Bool {
        let blocks = [IPv4Network(address: 0x0A00_0000, prefixLength: 8), IPv4Network(address: 0xAC10_0000, prefixLength: 12),
                      IPv4Network(address: 0xC0A8_0000, prefixLength: 16)]
        return blocks.contains { $0.prefixLength <= n.prefixLength && $0.contains(n.address) }
    }

    /// Admission on this node: the farmer's policy, and no range or public port shared with
    /// another deployment (`others`: every other deployment on the node, also those being removed).
    public static func admit(_ d: Deployment, others: [Deployment], policy: NetworkPolicy) throws(GridTypesError) {
        let containers = networked(d)
        guard containers.count <= policy.maxInterfaces else {
            throw .invalidDeployment(field: "workloads", reason: "\(containers.count) containers with a network; this node allows \(policy.maxInterfaces) per deployment")
        }
        var taken = [String: UInt64]()
        var ranges = [(IPv4Network, UInt64)]()
        for other in others {
            for (_, n) in networked(other) { for p in n.ports { taken["\(p.protocol.rawValue)/\(p.publicPort)"] = other.contractID } }
            if let r = privateRange(other), let network = IPv4Network(r) { ranges.append((network, other.contractID)) }
        }
        for (name, n) in containers {
            let field = "workloads.\(name).data.network.ports"
            for p in n.ports {
                guard p.publicPort >= policy.minPublicPort else {
                    throw .invalidDeployment(field: field, reason: "public port \(p.publicPort) is below \(policy.minPublicPort); the farmer allows ports from \(policy.minPublicPort)")
                }
                guard !policy.reservedPorts.contains(p.publicPort) else {
                    throw .invalidDeployment(field: field, reason: "public port \(p.publicPort) is used by the node itself; pick another")
                }
                if let owner = taken["\(p.protocol.rawValue)/\(p.publicPort)"] {
                    throw .invalidDeployment(field: field, reason: "public \(p.protocol.rawValue) port \(p.publicPort) is already published by contract \(owner); pick another")
                }
            }
        }
        if let r = privateRange(d), let network = IPv4Network(r) {
            if network.overlaps(policy.pool) {
                throw .invalidDeployment(field: "ip_range", reason: "\(network) overlaps the node's automatic pool \(policy.pool); pick a range outside it or name none")
            }
            if let (other, owner) = ranges.first(where: { $0.0.overlaps(network) }) {
                throw .invalidDeployment(field: "ip_range", reason: "\(network) overlaps \(other) of contract \(owner); pick another range")
            }
        }
    }
}
