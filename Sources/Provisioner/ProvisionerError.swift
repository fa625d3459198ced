import Foundation
import GridTypes

/// Errors of the provisioner module. Each says what failed and on what, and maps to the HTTP
/// status the twin API answers with.
public enum ProvisionerError: Error, Equatable, Sendable, CustomStringConvertible {
    case database(path: String, operation: String, detail: String)
    /// Malformed or oversized input.
    case badRequest(String)
    /// The deployment breaks the model's rules or fails signature verification.
    case invalidDeployment(field: String, reason: String)
    /// The deployment does not match its contract on chain.
    case contract(id: UInt64, reason: String)
    /// The API request's own signature, time window or replay check failed.
    case unauthorized(String)
    case forbidden(String)
    case notFound(String)
    case conflict(String)
    /// Admission: the deployment does not fit the node's allocatable capacity.
    case insufficientCapacity(resource: String, requested: UInt64, free: UInt64, allocatable: UInt64)
    /// The chain could not be asked; nothing was decided.
    case chainUnavailable(String)
    /// The node is draining: it keeps running deployments but takes no new ones.
    case draining
    /// A node condition (memory, disk or PID pressure, chain unreachable) stops new deployments.
    case nodeUnderPressure(String)
    /// A workload manager failed; `permanent` errors are not retried until the workload changes.
    case workload(name: String, operation: String, detail: String, permanent: Bool)
    case system(operation: String, path: String, errno: Int32)

    init(_ error: GridTypesError) {
        if case .invalidDeployment(let field, let reason) = error {
            self = .invalidDeployment(field: field, reason: reason)
        } else {
            self = .badRequest("\(error)")
        }
    }

    public var httpStatus: Int {
        switch self {
        case .badRequest: return 400
        case .unauthorized: return 401
        case .forbidden: return 403
        case .notFound: return 404
        case .conflict: return 409
        case .invalidDeployment, .contract, .insufficientCapacity: return 422
        case .chainUnavailable, .draining, .nodeUnderPressure: return 503
        case .database, .workload, .system: return 500
        }
    }

    public var isPermanent: Bool {
        if case .workload(_, _, _, let permanent) = self { return permanent }
        return false
    }

    public var description: String {
        switch self {
        case .database(let path, let operation, let detail):
            return "provisioner state \(path): \(operation) failed: \(detail)"
        case .badRequest(let detail): return "bad request: \(detail)"
        case .invalidDeployment(let field, let reason): return "deployment \(field): \(reason)"
        case .contract(let id, let reason): return "contract \(id): \(reason)"
        case .unauthorized(let detail): return "request not authenticated: \(detail)"
        case .forbidden(let detail): return "not allowed: \(detail)"
        case .notFound(let detail): return "not found: \(detail)"
        case .conflict(let detail): return "conflict: \(detail)"
        case .insufficientCapacity(let resource, let requested, let free, let allocatable):
            return "not enough \(resource) on this node: the deployment needs \(requested), \(free) of \(allocatable) allocatable is free; deploy to another node or ask for less"
        case .chainUnavailable(let detail): return "the chain cannot be reached (\(detail)); nothing was changed, retry later"
        case .draining: return "this node is draining: it runs its current deployments but accepts no new ones; deploy to another node"
        case .nodeUnderPressure(let detail):
            return "this node takes no new deployments now (\(detail)); running ones keep running; retry later or deploy to another node"
        case .workload(let name, let operation, let detail, _): return "workload \(name): \(operation) failed: \(detail)"
        case .system(let operation, let path, let errno):
            return "\(operation) \(path) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        }
    }
}
