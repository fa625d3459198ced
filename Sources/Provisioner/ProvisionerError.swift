/// Errors of the provisioner module.
public enum ProvisionerError: Error, Equatable, Sendable, CustomStringConvertible {
    case database(path: String, operation: String, detail: String)

    public var description: String {
        switch self {
        case .database(let path, let operation, let detail):
            return "provisioner state \(path): \(operation) failed: \(detail)"
        }
    }
}
