import Foundation

/// The OCI state of a container, as `state <id>` prints it, plus how a stopped one ended.
public struct ContainerState: Codable, Equatable, Sendable {
    public enum Status: String, Codable, Sendable {
        case creating, created, running, stopped
    }

    public var ociVersion: String
    public var id: String
    public var status: Status
    /// The container init's pid on the host; absent once stopped.
    public var pid: Int32?
    public var bundle: String
    public var rootfs: String
    public var created: Date
    public var annotations: [String: String]
    /// How the workload ended, when stopped and known.
    public var exit: ContainerExit?
}

/// How a container's workload ended.
public struct ContainerExit: Codable, Equatable, Sendable {
    /// The shell convention: the exit code, or 128 + the signal that killed it.
    public var code: Int32
    /// The signal that killed the workload, 0 when it exited by itself.
    public var signal: Int32
    /// The cgroup recorded an OOM kill: the workload went past its memory limit.
    public var oomKilled: Bool

    public init(code: Int32, signal: Int32, oomKilled: Bool) {
        self.code = code
        self.signal = signal
        self.oomKilled = oomKilled
    }

    /// Parses the init's "exit_code N\nsignal S\n" file.
    static func parse(_ text: String, oomKilled: Bool) -> ContainerExit? {
        var code: Int32?, signal: Int32 = 0
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let value = Int32(parts[1]) else { continue }
            if parts[0] == "exit_code" { code = value }
            if parts[0] == "signal" { signal = value }
        }
        return code.map { ContainerExit(code: $0, signal: signal, oomKilled: oomKilled) }
    }

    /// From a waitpid status of the init itself (when it died without writing its file).
    static func fromWaitStatus(_ status: Int32, oomKilled: Bool) -> ContainerExit {
        let signal = status & 0x7f
        if signal == 0 { return ContainerExit(code: (status >> 8) & 0xff, signal: 0, oomKilled: oomKilled) }
        return ContainerExit(code: 128 + signal, signal: signal, oomKilled: oomKilled)
    }
}
