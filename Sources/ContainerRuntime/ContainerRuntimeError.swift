import Foundation

/// Errors of the container runtime. Each names what failed, on what, with errno where the kernel
/// said no, and what to do where the user can act.
public enum ContainerRuntimeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bundle's config.json: `field` is the JSON path, e.g. "linux.resources.memory.swap".
    case invalidSpec(field: String, message: String)
    case unsupported(field: String, message: String)
    case bundle(path: String, message: String)
    case containerExists(id: String)
    case containerNotFound(id: String)
    case invalidID(String)
    case invalidState(id: String, state: String, operation: String)
    case setup(id: String, step: String, errno: Int32)
    case cgroup(path: String, operation: String, errno: Int32)
    case seccomp(String)
    case io(operation: String, path: String, errno: Int32)
    case image(String)
    /// The archive's BLAKE2b-256 is not the one the workload named.
    case imageDigestMismatch(url: String, expected: String, actual: String)
    /// Fetching failed (`url` has credentials and query removed).
    case imageFetch(url: String, message: String)
    /// An archive entry that would be unsafe to write (`..`, absolute, through a symlink, a device).
    case imageEntryRefused(entry: String, reason: String)
    /// A configured bound was reached: `what` names it.
    case imageLimit(what: String, limit: UInt64)
    /// Not a tar / not a usable OCI image layout.
    case imageFormat(String)
    case imageNotFound(digest: String)
    case imageInUse(digest: String, containers: [String])

    public var description: String {
        switch self {
        case .invalidSpec(let field, let message):
            return "config.json: \(field): \(message)"
        case .unsupported(let field, let message):
            return "config.json: \(field) is not supported: \(message)"
        case .bundle(let path, let message):
            return "bundle \(path): \(message)"
        case .containerExists(let id):
            return "container \(id) already exists; delete it first (node-agent runtime delete \(id))"
        case .containerNotFound(let id):
            return "container \(id) does not exist"
        case .invalidID(let id):
            return "container id '\(id)' is invalid: use 1-64 characters of a-z A-Z 0-9 _ . - (not starting with . or -)"
        case .invalidState(let id, let state, let operation):
            return "cannot \(operation) container \(id): it is \(state)"
        case .setup(let id, let step, let errno):
            return "container \(id): \(step) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .cgroup(let path, let operation, let errno):
            return "cgroup \(path): \(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .seccomp(let message):
            return "seccomp: \(message)"
        case .io(let operation, let path, let errno):
            return "\(operation) \(path) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .image(let message):
            return "image: \(message)"
        case .imageDigestMismatch(let url, let expected, let actual):
            return "image \(url): BLAKE2b-256 digest mismatch: expected \(expected), got \(actual); the file is not the image the workload names (refused)"
        case .imageFetch(let url, let message):
            return "image \(url): fetch failed: \(message)"
        case .imageEntryRefused(let entry, let reason):
            return "image entry '\(entry)' refused: \(reason)"
        case .imageLimit(let what, let limit):
            return "image refused: \(what) exceeds the limit of \(limit)"
        case .imageFormat(let message):
            return "image format: \(message)"
        case .imageNotFound(let digest):
            return "image \(digest) is not in the store; pull it first (node-agent runtime image pull URL --digest \(digest))"
        case .imageInUse(let digest, let containers):
            return "image \(digest) is in use by container(s) \(containers.joined(separator: ", ")); release their rootfs first"
        }
    }
}
