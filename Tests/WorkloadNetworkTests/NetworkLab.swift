import Foundation
import GridTypes
@testable import WorkloadNetwork

/// A node in a network namespace of its own with an "outside" namespace behind a veth (its public
/// side, 192.0.2.0/24, and an internet host 203.0.113.10), a NodeNetwork driving the node
/// namespace, and unique names per run. Cleans up every namespace it or the network made.
final class NetworkLab: @unchecked Sendable {
    struct LabError: Error, CustomStringConvertible { var description: String }

    let id: String
    let prefix: String
    let nodeNS: String
    let outsideNS: String
    let dir: String
    let nodeAddress = "192.0.2.1"
    let internetHost = "203.0.113.10"
    var network: NodeNetwork!

    static func run(_ arguments: [String], input: String? = nil, allowFailure: Bool = false, timeout: Int = 20) throws -> (status: Int32, output: String) {
        let result = try NetworkCommands.execute("/usr/bin/timeout", ["-k", "2", "\(timeout)"] + arguments, input: input)
        if result.status != 0 && !allowFailure { throw LabError(description: "\(arguments.joined(separator: " ")) failed (\(result.status)): \(result.output)") }
        return (result.status, result.output)
    }

    static func ip(_ arguments: String...) throws { _ = try run(["/usr/sbin/ip"] + arguments) }

    init() throws {
        let letters = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        id = String((0..<6).map { _ in letters.randomElement() ?? "x" })
        prefix = "w" + id.prefix(3)   // "t...": the NodeAgent tests' agents
        nodeNS = "wnl\(id)node"
        outsideNS = "wnl\(id)out"
        dir = NSTemporaryDirectory() + "wnl-\(id)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        do {
            try Self.ip("netns", "add", nodeNS)
            try Self.ip("netns", "add", outsideNS)
            try Self.ip("-n", nodeNS, "link", "add", "pub0", "type", "veth", "peer", "name", "eth0", "netns", outsideNS)
            try Self.ip("-n", nodeNS, "addr", "add", "\(nodeAddress)/24", "dev", "pub0")
            try Self.ip("-n", nodeNS, "link", "set", "pub0", "up")
            try Self.ip("-n", nodeNS, "link", "set", "lo", "up")
            try Self.ip("-n", nodeNS, "route", "add", "default", "via", "192.0.2.2")
            try Self.ip("-n", outsideNS, "addr", "add", "192.0.2.2/24", "dev", "eth0")
            try Self.ip("-n", outsideNS, "addr", "add", "\(internetHost)/32", "dev", "lo")
            try Self.ip("-n", outsideNS, "link", "set", "eth0", "up")
            try Self.ip("-n", outsideNS, "link", "set", "lo", "up")
            // Outside knows the private pool is behind the node: reaching a container directly must
            // then fail by the node's rules, not by a missing route.
            try Self.ip("-n", outsideNS, "route", "add", "10.0.0.0/8", "via", nodeAddress)
            network = try makeNetwork()
        } catch {
            cleanUp()
            throw error
        }
    }

    func makeNetwork() throws -> NodeNetwork {
        try NodeNetwork(configuration: .init(prefix: prefix, table: "na_\(id)", stateDirectory: dir + "/network", hostNamespace: nodeNS,
                                             nameservers: ["192.0.2.53"]))
    }

    /// Namespaces of this run's containers that still exist.
    func containerNamespaces() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: NodeNetwork.namespaceDirectory)) ?? []).filter { $0.hasPrefix(prefix + "-") }
    }

    /// Interfaces with this run's prefix in the node namespace.
    func ownLinks() throws -> [String] {
        let text = try Self.run(["/usr/sbin/ip", "-n", nodeNS, "-o", "link", "show"]).output
        return text.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: ":")
            guard parts.count > 1 else { return nil }
            let name = parts[1].trimmingCharacters(in: .whitespaces).split(separator: "@").first.map(String.init) ?? ""
            return name.hasPrefix(prefix) ? name : nil
        }
    }

    /// The agent's nft tables as text (empty when absent).
    func ruleset() throws -> String {
        try Self.run(["/usr/sbin/ip", "netns", "exec", nodeNS, "/usr/sbin/nft", "list", "ruleset"]).output
    }

    func cleanUp() {
        for ns in containerNamespaces() { _ = try? Self.run(["/usr/sbin/ip", "netns", "delete", ns], allowFailure: true) }
        for ns in [nodeNS, outsideNS] { _ = try? Self.run(["/usr/sbin/ip", "netns", "delete", ns], allowFailure: true) }
        try? FileManager.default.removeItem(atPath: dir)
    }

    // MARK: Traffic with python3 (busybox nc does not deliver all of a stream before it exits)

    static let serverScript = """
    import socket, sys
    port, greeting, timeout = int(sys.argv[1]), sys.argv[2].encode(), float(sys.argv[3])
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", port)); s.listen(4)
    s.settimeout(timeout)
    print("listening", flush=True)
    c, _ = s.accept(); c.settimeout(timeout)
    c.sendall(greeting)
    n = 0
    while True:
        d = c.recv(65536)
        if not d: break
        n += len(d)
    c.close(); print(n, flush=True)
    """

    static let clientScript = """
    import socket, sys
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    c = socket.create_connection((host, port), timeout=3)
    chunk = b"x" * 65536
    left = count
    while left > 0:
        n = min(left, len(chunk)); c.sendall(chunk[:n]); left -= n
    c.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        d = c.recv(65536)
        if not d: break
        got += d
    print(got.decode(), flush=True)
    """

    /// A server in `namespace` answering one connection with `greeting` and counting what it got.
    final class Server: @unchecked Sendable {
        let process: Process
        let output: Pipe

        init(namespace: String, port: Int, greeting: String, timeout: Int = 10) throws {
            process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            process.arguments = ["netns", "exec", namespace, "python3", "-c", NetworkLab.serverScript, "\(port)", greeting, "\(timeout)"]
            output = Pipe()
            process.standardOutput = output
            process.standardError = output
            try process.run()
            // Bounded wait for "listening".
            let deadline = Date().addingTimeInterval(10)
            var seen = Data()
            while Date() < deadline, !String(decoding: seen, as: UTF8.self).contains("listening") {
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                seen += chunk
            }
        }

        /// Bytes received (nil if the server failed or timed out).
        func finish() -> Int? {
            let rest = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return Int(String(decoding: rest, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").last ?? "")
        }

        func stop() { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
    }

    /// Connects from `namespace`, sends `bytes`, answers the greeting (nil when it cannot connect).
    static func client(namespace: String, host: String, port: Int, bytes: Int = 0) -> String? {
        guard let result = try? run(["/usr/sbin/ip", "netns", "exec", namespace, "python3", "-c", clientScript, host, "\(port)", "\(bytes)"],
                                    allowFailure: true, timeout: 15), result.status == 0 else { return nil }
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

