import Foundation

/// A container's network (README "Networking"): an address on its deployment's private network,
/// ports published on the node's public addresses, and what it may reach outside.
public struct ContainerNetwork: Codable, Equatable, Sendable {
    public enum TransportProtocol: String, Codable, Sendable { case tcp, udp }

    public struct Port: Codable, Equatable, Hashable, Sendable {
        public var `protocol`: TransportProtocol
        /// The port inside the container.
        public var port: UInt16
        /// The port on the node's public addresses.
        public var publicPort: UInt16

        enum CodingKeys: String, CodingKey {
            case `protocol`, port
            case publicPort = "public_port"
        }

        public init(protocol: TransportProtocol, port: UInt16, publicPort: UInt16) {
            self.protocol = `protocol`
            self.port = port
            self.publicPort = publicPort
        }
    }

    public struct Egress: Codable, Equatable, Sendable {
        /// all: anything outside; none: nothing outside (replies to published ports still flow);
        /// allow: only the listed destinations.
        public enum Mode: String, Codable, Sendable { case all, none, allow }
        public var mode: Mode
        /// `CIDR` or `CIDR:port` (the port for TCP and UDP alike); only with mode allow.
        public var allow: [String]

        public init(mode: Mode = .all, allow: [String] = []) {
            self.mode = mode
            self.allow = allow
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            mode = try c.decodeIfPresent(Mode.self, forKey: .mode) ?? .all
            allow = try c.decodeIfPresent([String].self, forKey: .allow) ?? []
        }
    }

    /// The deployment's private IPv4 range (a /16 to /29); nil: the node picks a /24 from its pool.
    /// Every container of a deployment that names one names the same.
    public var ipRange: String?
    public var ports: [Port]
    public var egress: Egress

    enum CodingKeys: String, CodingKey {
        case ports, egress
        case ipRange = "ip_range"
    }

    public init(ipRange: String? = nil, ports: [Port] = [], egress: Egress = Egress()) {
        self.ipRange = ipRange
        self.ports = ports
        self.egress = egress
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        ipRange = try c.decodeIfPresent(String.self, forKey: .ipRange)
        ports = try c.decodeIfPresent([Port].self, forKey: .ports) ?? []
        egress = try c.decodeIfPresent(Egress.self, forKey: .egress) ?? Egress()
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(ipRange, forKey: .ipRange)
        try c.encode(ports, forKey: .ports)
        try c.encode(egress, forKey: .egress)
    }
}

/// An IPv4 network in CIDR notation, parsed strictly (no leading zeros, host bits clear).
public struct IPv4Network: Hashable, Sendable, CustomStringConvertible {
    public var address: UInt32
    public var prefixLength: Int

    public init(address: UInt32, prefixLength: Int) {
        self.prefixLength = prefixLength
        self.address = address & Self.mask(prefixLength)
    }

    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = Self.parseAddress(String(parts[0])), parts[1].count <= 2,
              parts[1].allSatisfy(\.isASCII), let length = Int(parts[1]), (0...32).contains(length),
              String(length) == parts[1] else { return nil }
        guard address & ~Self.mask(length) == 0 else { return nil }
        self.init(address: address, prefixLength: length)
    }

    public static func mask(_ length: Int) -> UInt32 { length == 0 ? 0 : UInt32.max << UInt32(32 - length) }

    public static func parseAddress(_ text: String) -> UInt32? {
        let octets = text.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4, text.utf8.count <= 15 else { return nil }
        var value: UInt32 = 0
        for octet in octets {
            guard !octet.isEmpty, octet.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = UInt32(octet), n <= 255,
                  String(n) == octet else { return nil }
            value = value << 8 | n
        }
        return value
    }

    public static func format(_ address: UInt32) -> String {
        "\(address >> 24).\((address >> 16) & 0xff).\((address >> 8) & 0xff).\(address & 0xff)"
    }

    public var size: UInt64 { UInt64(1) << UInt64(32 - prefixLength) }
    public var last: UInt32 { address | ~Self.mask(prefixLength) }
    public func contains(_ a: UInt32) -> Bool { a & Self.mask(prefixLength) == address }
    public func overlaps(_ other: IPv4Network) -> Bool { contains(other.address) || other.contains(address) }
    public var description: String { "\(Self.format(address))/\(prefixLength)" }
}
