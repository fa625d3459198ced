import Foundation

/// Errors of the chain module. `rejected` is the chain refusing a call (TFChain's DispatchError);
/// `unavailable` is the chain not answering, which must never be read as "the contract is gone".
public enum ChainError: Error, Equatable, Sendable, CustomStringConvertible {
    case rejected(call: String, module: String, error: String, detail: String)
    case unavailable(String)
    case timeout(operation: String, seconds: Double)
    case ledgerSchemaTooNew(path: String, found: Int, supported: Int)
    case ledgerCorrupt(path: String, detail: String)
    case ledgerLocked(path: String)
    case producerAlreadyRunning(path: String, holder: String)
    case database(path: String, operation: String, detail: String)
    case io(operation: String, path: String, errno: Int32)
    case invalidInput(String)
    case cancelled(operation: String)
    /// SCALE input that does not match its type: where (byte offset) and what was being read.
    case decode(type: String, position: Int, detail: String)
    /// Runtime metadata that cannot be used: wrong version, a missing pallet, call, storage item or type.
    case metadata(String)
    /// A JSON-RPC error reply from a TFChain node.
    case rpc(method: String, code: Int, message: String)

    public var description: String {
        switch self {
        case .rejected(let call, let module, let error, let detail):
            return "the chain rejected \(call): \(module).\(error)\(detail.isEmpty ? "" : " (\(detail))")"
        case .unavailable(let detail):
            return "chain unavailable: \(detail)"
        case .timeout(let operation, let seconds):
            return "\(operation) did not finish within \(seconds) s; is a block producer running for the ledger (node-agent run or node-agent ledger produce)?"
        case .ledgerSchemaTooNew(let path, let found, let supported):
            return "ledger \(path) has schema version \(found), newer than the \(supported) this program understands; upgrade node-agent/grid-twin"
        case .ledgerCorrupt(let path, let detail):
            return "ledger \(path) is damaged (\(detail)); restore it from a backup or start a new ledger file"
        case .ledgerLocked(let path):
            return "ledger \(path) stayed locked by another process for too long; check for a stuck process holding it"
        case .producerAlreadyRunning(let path, let holder):
            return "another block producer (\(holder)) is already producing blocks on \(path); only one may run per ledger file"
        case .database(let path, let operation, let detail):
            return "ledger \(path): \(operation) failed: \(detail)"
        case .io(let operation, let path, let errno):
            return "\(operation) \(path) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .invalidInput(let detail):
            return detail
        case .cancelled(let operation):
            return "\(operation) was cancelled (the program is shutting down)"
        case .decode(let type, let position, let detail):
            return "cannot decode \(type) at byte \(position): \(detail)"
        case .metadata(let detail):
            return "runtime metadata: \(detail)"
        case .rpc(let method, let code, let message):
            return "TFChain node refused \(method): \(message) (JSON-RPC error \(code))"
        }
    }
}
