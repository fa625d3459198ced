import Foundation

/// One 0-db namespace that can hold a file's shards: on which node, where to connect, which
/// namespace, and its password. The provisioner's zdb workload results map onto this one to one
/// (node id, the workload's address and port, its namespace, the password the twin deployed it with).
///
/// The password is never printed: `description` and `redacted` leave it out, and errors name the
/// node and namespace only.
public struct ShardEndpoint: Codable, Sendable, Hashable, CustomStringConvertible {
    public static let maxNamespaceLength = 128
    public static let maxPasswordLength = 128

    /// The node's identity (its grid node id, or any name unique per machine): two shards of a file
    /// never go to the same node.
    public var node: String
    /// host:port; IPv6 as [addr]:port.
    public var address: String
    public var namespace: String
    public var password: String?

    public init(node: String, address: String, namespace: String, password: String? = nil) {
        self.node = node
        self.address = address
        self.namespace = namespace
        self.password = password
    }

    public var description: String { "\(node)@\(address)/\(namespace)" }

    /// The same endpoint without its password (for local records and output).
    public var redacted: ShardEndpoint { ShardEndpoint(node: node, address: address, namespace: namespace, password: nil) }

    /// Host and port from `address`, validated.
    public func hostAndPort() throws(StorageError) -> (host: String, port: Int) {
        let text = address
        let host: Substring, portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw .invalidPlacement(reason: "address '\(text)' of node \(node): an IPv6 address is written [addr]:port")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw .invalidPlacement(reason: "address '\(text)' of node \(node) has no port (host:port)")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, host.utf8.count <= 253 else {
            throw .invalidPlacement(reason: "address '\(text)' of node \(node) has no host")
        }
        guard let port = Int(portText), (1...65535).contains(port) else {
            throw .invalidPlacement(reason: "address '\(text)' of node \(node): '\(portText)' is not a TCP port")
        }
        return (String(host), port)
    }

    /// Checks lengths and characters before anything is sent to a node.
    public func validate() throws(StorageError) {
        guard !node.isEmpty, node.utf8.count <= 128 else {
            throw .invalidPlacement(reason: "node name must be 1 to 128 bytes (endpoint \(self))")
        }
        guard !namespace.isEmpty, namespace.utf8.count <= Self.maxNamespaceLength,
              namespace.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw .invalidPlacement(reason: "namespace '\(namespace)' on node \(node) must be 1 to 128 printable ASCII characters")
        }
        if let password, password.isEmpty || password.utf8.count > Self.maxPasswordLength {
            throw .invalidPlacement(reason: "the password of namespace \(namespace) on node \(node) must be 1 to 128 bytes")
        }
        _ = try hostAndPort()
    }

    /// Parses `NODE@HOST:PORT/NAMESPACE` (the command line's --ns form; the password comes separately).
    public static func parse(_ text: String, password: String? = nil) throws(StorageError) -> ShardEndpoint {
        guard let at = text.firstIndex(of: "@"), let slash = text.lastIndex(of: "/"), at < slash else {
            throw .invalidPlacement(reason: "'\(text)' is not NODE@HOST:PORT/NAMESPACE")
        }
        let endpoint = ShardEndpoint(node: String(text[..<at]), address: String(text[text.index(after: at)..<slash]),
                                     namespace: String(text[text.index(after: slash)...]), password: password)
        try endpoint.validate()
        return endpoint
    }
}

/// The placement file: a JSON list of endpoints, or an object with "endpoints" and "spares".
/// For put, the first k+m endpoints (on distinct nodes) take the shards and the rest are spares.
public enum PlacementFile {
    public static let maxFileSize = 1 << 20
    public static let maxEndpoints = 256

    private struct Wrapped: Decodable {
        var endpoints: [ShardEndpoint]
        var spares: [ShardEndpoint]?
    }

    /// Reads and validates a placement file. A file that holds passwords must not be readable by
    /// group or others.
    public static func load(path: String) throws(StorageError) -> [ShardEndpoint] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(operation: "open placement file", path: path, errno: errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .io(operation: "stat", path: path, errno: errno) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .invalidPlacement(reason: "\(path) is not a regular file") }
        guard info.st_size <= maxFileSize else {
            throw .invalidPlacement(reason: "\(path) is \(info.st_size) bytes; a placement file is at most \(maxFileSize)")
        }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var filled = 0
        while filled < bytes.count {
            let n = bytes[filled...].withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw .io(operation: "read", path: path, errno: n < 0 ? errno : EIO) }
            filled += n
        }
        let endpoints = try parse(Data(bytes), source: path)
        if endpoints.contains(where: { $0.password != nil }) && info.st_mode & 0o077 != 0 {
            throw .invalidPlacement(reason: "\(path) holds namespace passwords and is readable by others (mode "
                                    + "\(String(info.st_mode & 0o777, radix: 8))); run `chmod 600 \(path)`")
        }
        return endpoints
    }

    public static func parse(_ data: Data, source: String = "placement") throws(StorageError) -> [ShardEndpoint] {
        let decoder = JSONDecoder()
        var endpoints: [ShardEndpoint]
        if let list = try? decoder.decode([ShardEndpoint].self, from: data) {
            endpoints = list
        } else {
            do {
                let wrapped = try decoder.decode(Wrapped.self, from: data)
                endpoints = wrapped.endpoints + (wrapped.spares ?? [])
            } catch {
                throw .invalidPlacement(reason: "\(source) is not a JSON list of {node, address, namespace, password}: \(error)")
            }
        }
        guard endpoints.count <= maxEndpoints else {
            throw .invalidPlacement(reason: "\(source) lists \(endpoints.count) namespaces; at most \(maxEndpoints)")
        }
        // An empty password means none (as a provisioner's result may say it).
        endpoints = endpoints.map { e in
            var e = e
            if e.password == "" { e.password = nil }
            return e
        }
        for endpoint in endpoints { try endpoint.validate() }
        return endpoints
    }
}
