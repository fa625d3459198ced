import Foundation

/// Errors of the workload network: which tool failed on what, or which input is unusable.
public enum NetworkError: Error, CustomStringConvertible, Sendable {
    /// A tool (ip, nft) exited non-zero or could not start.
    case command(tool: String, arguments: [String], status: Int32, output: String)
    case io(operation: String, path: String, errno: Int32)
    /// The node's pool has no free /24 left.
    case poolExhausted(pool: String)
    /// The deployment's range has no free address left.
    case rangeExhausted(range: String, contract: UInt64)
    case invalid(what: String, reason: String)

    public var description: String {
        switch self {
        case .command(let tool, let arguments, let status, let output):
            let shown = arguments.joined(separator: " ").prefix(300)
            return "\(tool) \(shown) failed (status \(status)): \(output.prefix(1500)); "
                + "check that iproute2 and nftables are installed (scripts/setup.sh) and the agent runs as root"
        case .io(let operation, let path, let errno):
            return "\(operation) \(path): \(String(cString: strerror(errno))) (errno \(errno))"
        case .poolExhausted(let pool):
            return "no free /24 left in the node's pool \(pool); enlarge network.pool in the config or remove deployments"
        case .rangeExhausted(let range, let contract):
            return "no free address left in \(range) of contract \(contract); use a larger ip_range"
        case .invalid(let what, let reason):
            return "\(what): \(reason)"
        }
    }
}
