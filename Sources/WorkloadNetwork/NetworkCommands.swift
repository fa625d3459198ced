import Foundation

/// Runs iproute2 and nftables, in the agent's own network namespace or, when `hostNamespace` is set
/// (tests, several nodes on one machine), in that named namespace.
struct NetworkCommands: Sendable {
    static let ipTool = "/usr/sbin/ip"
    static let nftTool = "/usr/sbin/nft"
    let hostNamespace: String?

    struct Result {
        var status: Int32
        var output: String
    }

    static func execute(_ tool: String, _ arguments: [String], input: String? = nil) throws(NetworkError) -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        let stdin = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : stdin
        do { try process.run() } catch {
            throw .command(tool: tool, arguments: arguments, status: -1, output: "cannot start: \(error)")
        }
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }

    @discardableResult
    func checked(_ tool: String, _ arguments: [String], input: String? = nil) throws(NetworkError) -> String {
        let result = try Self.execute(tool, arguments, input: input)
        guard result.status == 0 else {
            throw .command(tool: tool, arguments: arguments + (input.map { ["<<", String($0.prefix(2000))] } ?? []),
                           status: result.status, output: result.output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return result.output
    }

    /// `ip` in the node's namespace.
    @discardableResult
    func ip(_ arguments: [String]) throws(NetworkError) -> String {
        try checked(Self.ipTool, (hostNamespace.map { ["-n", $0] } ?? []) + arguments)
    }

    /// `ip` inside a container's named namespace.
    @discardableResult
    func ip(in namespace: String, _ arguments: [String]) throws(NetworkError) -> String {
        try checked(Self.ipTool, ["-n", namespace] + arguments)
    }

    /// Succeeds when the command does; false when it failed (for probes and deletions of what may be gone).
    func tryIP(_ arguments: [String]) -> Bool {
        (try? Self.execute(Self.ipTool, (hostNamespace.map { ["-n", $0] } ?? []) + arguments).status) == 0
    }

    /// One nft script, applied as one transaction: all of it or nothing.
    func nft(script: String) throws(NetworkError) {
        if let hostNamespace {
            try checked(Self.ipTool, ["netns", "exec", hostNamespace, Self.nftTool, "-f", "-"], input: script)
        } else {
            try checked(Self.nftTool, ["-f", "-"], input: script)
        }
    }

    func nft(_ arguments: [String]) throws(NetworkError) -> String {
        if let hostNamespace { return try checked(Self.ipTool, ["netns", "exec", hostNamespace, Self.nftTool] + arguments) }
        return try checked(Self.nftTool, arguments)
    }

    /// A sysctl of the node's namespace (net.* entries are per namespace).
    func setSysctl(_ key: String, _ value: String) throws(NetworkError) {
        let path = "/proc/sys/" + key.replacingOccurrences(of: ".", with: "/")
        if let hostNamespace {
            try checked(Self.ipTool, ["netns", "exec", hostNamespace, "/bin/sh", "-c", "echo \(value) > \(path)"])
            return
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw .io(operation: "open", path: path, errno: errno) }
        defer { try? handle.close() }
        do { try handle.write(contentsOf: Data(value.utf8)) } catch { throw .io(operation: "write", path: path, errno: EIO) }
    }

    /// Parsed `ip -j` output.
    func ipJSON(_ arguments: [String]) throws(NetworkError) -> [[String: Any]] {
        let text = try ip(["-j"] + arguments)
        guard let data = text.data(using: .utf8), !text.isEmpty,
              let value = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else { return [] }
        return value
    }
}
