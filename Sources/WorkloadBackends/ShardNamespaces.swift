import Foundation
import GridTypes
import Provisioner
import ShardServer

/// The provisioner's zdb workloads on this node's shard server, through its local admin API.
public struct ShardNamespaces: ShardNamespaceService {
    let server: ShardServer
    let host: String
    let port: Int

    /// `host` and `port` are the configured listen address; a wildcard host is answered with the
    /// host's own addresses, and the bound port wins once the server runs.
    public init(server: ShardServer, host: String, port: Int) {
        self.server = server
        self.host = host
        self.port = port
    }

    public func ensureNamespace(_ name: String, maxSize: UInt64, mode: ZdbData.Mode, password: String, isPublic: Bool,
                         locked: Bool) async throws(ProvisionerError) {
        let wanted = NamespaceSettings(maxSize: maxSize, password: password.isEmpty ? nil : password, isPublic: isPublic,
                                       mode: mode == .seq ? .seq : .user, locked: locked)
        do {
            if let current = try? server.namespaceInfo(name).settings {
                guard current != wanted else { return }
                if current.mode != wanted.mode {
                    throw ProvisionerError.workload(name: name, operation: "update namespace",
                                                    detail: "the mode cannot change from \(current.mode.rawValue) to \(wanted.mode.rawValue)", permanent: true)
                }
                try server.updateNamespace(name) { settings in
                    settings.maxSize = wanted.maxSize
                    settings.password = wanted.password
                    settings.isPublic = wanted.isPublic
                    settings.locked = wanted.locked
                }
            } else {
                try server.createNamespace(name, settings: wanted)
            }
        } catch let error as ProvisionerError {
            throw error
        } catch {
            throw .workload(name: name, operation: "create namespace", detail: "\(error)", permanent: false)
        }
    }

    public func deleteNamespace(_ name: String) async throws(ProvisionerError) {
        do {
            guard try server.namespaceNames().contains(name) else { return }
            try server.deleteNamespace(name)
        } catch {
            throw .workload(name: name, operation: "delete namespace", detail: "\(error)", permanent: false)
        }
    }

    public func namespaceNames() async throws(ProvisionerError) -> [String] {
        do { return try server.namespaceNames() } catch {
            throw .workload(name: "shard server", operation: "list namespaces", detail: "\(error)", permanent: false)
        }
    }

    /// A wildcard listen address is answered with the host's own addresses.
    public func endpoint() async -> (ips: [String], port: Int) {
        let port = server.port ?? self.port
        guard host == "0.0.0.0" || host == "::" else { return ([host], port) }
        return (Self.hostAddresses(), port)
    }

    static func hostAddresses() -> [String] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return [] }
        defer { freeifaddrs(list) }
        var out = [String]()
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let address = entry.pointee.ifa_addr, entry.pointee.ifa_flags & UInt32(IFF_LOOPBACK) == 0 else { continue }
            let family = Int32(address.pointee.sa_family)
            guard family == AF_INET || family == AF_INET6 else { continue }
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            let length = socklen_t(family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
            if getnameinfo(address, length, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                let text = String(cString: buffer)
                if !text.hasPrefix("fe80") { out.append(text) }
            }
        }
        return out
    }
}
