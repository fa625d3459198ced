#if canImport(Glibc)
import Glibc
#endif

/// Every failure of the shard server. System calls carry their errno and the file or address they
/// failed on; `refused` is a command the rules turn down and carries the exact RESP error text
/// (without the leading `-`) that 0-db clients expect.
public enum ShardServerError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A system call failed: `operation` is what was attempted ("pwrite", "open"), `path` what on.
    case io(operation: String, path: String, errno: Int32)
    /// A command refused by the protocol or a namespace's rules (worm, maxsize, password, ...).
    case refused(String)
    /// A segment whose bytes do not parse or whose checksum does not match.
    case corrupt(path: String, offset: UInt64, reason: String)
    case invalidNamespaceName(String, reason: String)
    case namespaceExists(String)
    case namespaceMissing(String)
    /// One namespace name in two data directories: which copy is current cannot be told.
    case namespaceConflict(String, directories: [String])
    case invalidConfig(field: String, reason: String)
    case bindFailed(address: String, reason: String)
    case notRunning
    case alreadyRunning

    public var description: String {
        switch self {
        case .io(let operation, let path, let errno):
            return "\(operation) \(path) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .refused(let text):
            return text
        case .corrupt(let path, let offset, let reason):
            return "segment \(path) at offset \(offset) is corrupt: \(reason)"
        case .invalidNamespaceName(let name, let reason):
            return "namespace name '\(name)' is not allowed: \(reason)"
        case .namespaceExists(let name):
            return "namespace '\(name)' already exists"
        case .namespaceMissing(let name):
            return "namespace '\(name)' does not exist"
        case .namespaceConflict(let name, let directories):
            return "namespace '\(name)' exists in more than one data directory (\(directories.joined(separator: " and "))); move or remove all but one copy"
        case .invalidConfig(let field, let reason):
            return "shard server configuration: \(field): \(reason)"
        case .bindFailed(let address, let reason):
            return "shard server cannot listen on \(address): \(reason)"
        case .notRunning:
            return "shard server is not running"
        case .alreadyRunning:
            return "shard server is already running; stop it before starting it again"
        }
    }

    /// The RESP error line (without `-` and CRLF) a client sees for this error.
    var replyText: String {
        switch self {
        case .refused(let text):
            return text
        case .io(let operation, _, let errno) where operation.hasPrefix("pwrite") || operation.hasPrefix("fdatasync")
            || operation.hasPrefix("open") || operation.hasPrefix("ftruncate"):
            // Paths stay in the server's log; the client learns what kind of failure it was.
            return "Cannot write data right now: \(String(cString: strerror(errno)))"
        case .io(_, _, let errno):
            return "Internal error: \(String(cString: strerror(errno)))"
        case .corrupt:
            return "Data corrupted"
        case .namespaceMissing:
            return "Namespace not found"
        case .namespaceExists:
            return "This namespace is not available"
        case .invalidNamespaceName:
            return "This name is not allowed"
        default:
            return "Internal error"
        }
    }
}

extension ShardServerError {
    /// The reason part of a `corrupt` error (what an index snapshot problem says), else the whole
    /// description.
    var snapshotReason: String {
        if case .corrupt(_, _, let reason) = self { return reason }
        return description
    }
}
