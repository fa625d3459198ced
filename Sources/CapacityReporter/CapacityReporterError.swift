import Foundation

/// Errors of the capacity reporter. Each says what failed, on what, and what to do.
public enum CapacityReporterError: Error, Equatable, Sendable, CustomStringConvertible {
    case io(operation: String, path: String, errno: Int32)
    /// The report database could not be opened or written.
    case database(path: String, operation: String, detail: String)
    /// The report database was written by a newer program.
    case schemaTooNew(path: String, found: Int, supported: Int)
    case signing(String)
    case invalidInput(String)

    public var description: String {
        switch self {
        case .io(let operation, let path, let errno):
            return "\(operation) \(path) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .database(let path, let operation, let detail):
            return "report database \(path): \(operation) failed: \(detail); check free space and permissions on the state directory"
        case .schemaTooNew(let path, let found, let supported):
            return "report database \(path) has schema version \(found), newer than the \(supported) this node-agent understands; upgrade node-agent"
        case .signing(let detail):
            return "cannot sign a report statement: \(detail)"
        case .invalidInput(let detail):
            return detail
        }
    }
}
