#if canImport(Glibc)
import Glibc
#endif

/// Everything the storage client can fail on. Each case names what failed, on which input or node,
/// and (where the user can act) what to do. Passwords never appear in these texts.
public enum StorageError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Bad arguments or options (sizes, k/m, block size, paths).
    case invalidInput(what: String, reason: String)
    /// A placement (list of shard namespaces) that cannot be used as given.
    case invalidPlacement(reason: String)
    /// A node could not be reached or refused the namespace (connect, SELECT).
    case unreachable(node: String, address: String, reason: String)
    /// A node answered a command with an error or broke the protocol.
    case nodeFailed(node: String, namespace: String, operation: String, reason: String)
    /// A command got no answer in time.
    case timedOut(node: String, operation: String, seconds: Double)
    /// Fewer than k good shards of a block remain: the file cannot be rebuilt from what is left.
    case notRecoverable(fileID: String, block: Int, available: Int, needed: Int, failures: [String])
    /// put could not place all k+m shards (and the caller did not allow fewer).
    case placementFailed(written: Int, wanted: Int, failures: [String])
    /// No metadata record for the file could be read and decrypted.
    case metadataUnavailable(fileID: String, reasons: [String])
    /// The metadata decrypted but says something impossible (damaged or from a newer format).
    case metadataInvalid(fileID: String, reason: String)
    /// The twin key does not open this file's metadata or file key.
    case wrongKey(fileID: String, detail: String)
    /// A block's tag did not verify after a successful decode: the bytes are not what was stored.
    case integrity(fileID: String, block: Int, reason: String)
    /// The input file changed (size, modification time) while put read it.
    case sourceChanged(path: String, reason: String)
    case compression(reason: String)
    case io(operation: String, path: String, errno: Int32)
    /// The output exists and overwriting was not asked for.
    case outputExists(path: String)
    /// repair needs replacement namespaces it was not given.
    case needsSpares(fileID: String, columns: [String], given: Int, spareFailures: [String])
    /// A put (with keepPartial) or a resume stopped part way; what was written is kept.
    case putStopped(fileID: String, reason: String)

    public var description: String {
        switch self {
        case .invalidInput(let what, let reason):
            return "\(what): \(reason)"
        case .invalidPlacement(let reason):
            return "placement: \(reason)"
        case .unreachable(let node, let address, let reason):
            return "node \(node) (\(address)) is unreachable: \(reason)"
        case .nodeFailed(let node, let namespace, let operation, let reason):
            return "node \(node), namespace \(namespace): \(operation) failed: \(reason)"
        case .timedOut(let node, let operation, let seconds):
            return "node \(node): \(operation) got no answer within \(seconds) s"
        case .notRecoverable(let fileID, let block, let available, let needed, let failures):
            return "file \(fileID) is not recoverable: block \(block) has \(available) good shard(s) left, \(needed) are needed"
                + (failures.isEmpty ? "" : " (\(failures.joined(separator: "; ")))")
        case .placementFailed(let written, let wanted, let failures):
            return "only \(written) of \(wanted) shard namespaces took the file (\(failures.joined(separator: "; "))); nothing was kept. "
                + "Add spare namespaces to the placement and use --on-node-failure spare, or allow fewer with --min-shards"
        case .metadataUnavailable(let fileID, let reasons):
            return "no readable metadata for file \(fileID)"
                + (reasons.isEmpty ? "; give the namespaces it is on with --placement or --ns" : ": " + reasons.joined(separator: "; "))
        case .metadataInvalid(let fileID, let reason):
            return "metadata of file \(fileID) is invalid: \(reason)"
        case .wrongKey(let fileID, let detail):
            return "the twin key does not open file \(fileID): \(detail). Use the key that stored it (--key)"
        case .integrity(let fileID, let block, let reason):
            return "file \(fileID), block \(block): \(reason); nothing of it was written"
        case .sourceChanged(let path, let reason):
            return "\(path) changed while it was being stored (\(reason)); nothing was kept. Store it again once it is no longer written to"
        case .compression(let reason):
            return "zstd: \(reason)"
        case .io(let operation, let path, let errno):
            return "\(operation) \(path) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .outputExists(let path):
            return "\(path) already exists; pass --force to replace it"
        case .needsSpares(let fileID, let columns, let given, let spareFailures):
            return "file \(fileID): \(columns.count) shard namespace(s) cannot be repaired in place (\(columns.joined(separator: "; "))); "
                + "\(given) replacement(s) given" + (spareFailures.isEmpty ? "" : ", unusable: " + spareFailures.joined(separator: "; "))
                + ". Pass a usable --spare namespace on another node for each"
        case .putStopped(let fileID, let reason):
            return "storing file \(fileID) stopped: \(reason). What was written is kept: finish it with "
                + "`grid-twin shard put FILE --resume \(fileID)` (the same file), or remove it with `grid-twin shard rm \(fileID)`"
        }
    }
}
