import Foundation

/// Errors from the shared grid types: key files, encodings, crypto. Each names the input it failed
/// on and, where the user can act, what to do.
public enum GridTypesError: Error, Equatable, CustomStringConvertible, Sendable {
    case sodiumUnavailable
    case invalidHex(context: String)
    case invalidLength(context: String, expected: Int, actual: Int)
    case invalidAddress(String, reason: String)
    case keyFileExists(path: String)
    case keyFileMissing(path: String)
    case keyFileInsecure(path: String, mode: UInt16)
    case keyFileDamaged(path: String, reason: String)
    case io(operation: String, path: String, errno: Int32)
    /// A deployment that breaks the model's rules; `field` points at the offending part.
    case invalidDeployment(field: String, reason: String)
    case sealedBox(reason: String)
    case encoding(context: String, detail: String)

    public var description: String {
        switch self {
        case .sodiumUnavailable:
            return "libsodium failed to initialise (sodium_init < 0); check that libsodium23 is installed"
        case .invalidHex(let context):
            return "\(context): not valid hexadecimal"
        case .invalidLength(let context, let expected, let actual):
            return "\(context): expected \(expected) bytes, got \(actual)"
        case .invalidAddress(let address, let reason):
            return "SS58 address '\(address)': \(reason)"
        case .keyFileExists(let path):
            return "key file \(path) already exists; refusing to overwrite the node's identity (move it away first if you really mean to replace it)"
        case .keyFileMissing(let path):
            return "key file \(path) does not exist; run `node-agent init` to create the node's identity"
        case .keyFileInsecure(let path, let mode):
            return "key file \(path) has mode \(String(mode, radix: 8)); it must not be readable by group or others: run `chmod 600 \(path)`"
        case .keyFileDamaged(let path, let reason):
            return "key file \(path) is damaged: \(reason); restore it from your backup (a new key is a new node identity)"
        case .invalidDeployment(let field, let reason):
            return "deployment \(field): \(reason)"
        case .sealedBox(let reason):
            return "sealed deployment body: \(reason)"
        case .io(let operation, let path, let errno):
            return "\(operation) \(path) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .encoding(let context, let detail):
            return "cannot encode \(context): \(detail)"
        }
    }
}
