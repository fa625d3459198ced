/// What put does when a node fails.
public enum NodeFailurePolicy: String, Codable, Sendable, CaseIterable {
    /// Stop, remove what was written, and report which node failed.
    case fail
    /// Move the failed node's shards to a spare namespace from the placement (rebuilt from the
    /// other shards when the node failed part way).
    case spare
}

/// How a file is cut, coded and placed.
public struct StorageOptions: Sendable {
    public static let minBlockSize = 1024
    public static let maxBlockSize = 64 << 20
    /// 0-db's value limit: a shard must fit in one value.
    public static let maxShardSize = 8 << 20

    public var k: Int
    public var m: Int
    public var blockSize: Int
    /// zstd level (-7...19); nil stores blocks uncompressed.
    public var zstdLevel: Int?
    /// Blocks in flight at once (read, coded, uploading); memory is about 3 blocks' worth each.
    public var parallelBlocks: Int
    public var onNodeFailure: NodeFailurePolicy
    /// The fewest shard columns put may succeed with; nil means all k+m. Never less than k.
    public var minimumShards: Int?
    public var connection: ConnectionSettings
    /// When put fails part way, keep what was written (and the local record, marked incomplete)
    /// so `resume` can finish it, instead of removing it.
    public var keepPartial = false

    public init(k: Int = 2, m: Int = 1, blockSize: Int = 4 << 20, zstdLevel: Int? = 3, parallelBlocks: Int = 4,
                onNodeFailure: NodeFailurePolicy = .fail, minimumShards: Int? = nil, connection: ConnectionSettings = ConnectionSettings()) {
        self.k = k
        self.m = m
        self.blockSize = blockSize
        self.zstdLevel = zstdLevel
        self.parallelBlocks = parallelBlocks
        self.onNodeFailure = onNodeFailure
        self.minimumShards = minimumShards
        self.connection = connection
    }

    var requiredShards: Int { minimumShards ?? (k + m) }

    public func validate() throws {
        func bad(_ what: String, _ reason: String) -> StorageError { .invalidInput(what: what, reason: reason) }
        guard k >= 1, m >= 0, k + m <= ReedSolomon.maxShards else {
            throw bad("-k/-m", "k=\(k) m=\(m): need k >= 1, m >= 0 and k+m <= \(ReedSolomon.maxShards)")
        }
        guard (Self.minBlockSize...Self.maxBlockSize).contains(blockSize) else {
            throw bad("--block-size", "\(blockSize) bytes; allowed \(Self.minBlockSize) to \(Self.maxBlockSize)")
        }
        let largestShard = (max(ZstdCompressor.bound(blockSize), blockSize) + SodiumCrypto.tagLength + k - 1) / k
        guard largestShard <= Self.maxShardSize else {
            throw bad("--block-size", "a block of \(blockSize) bytes makes shards of up to \(largestShard) bytes with k=\(k); "
                      + "a 0-db value holds at most \(Self.maxShardSize): use a smaller block or a larger k")
        }
        if let level = zstdLevel, !(-7...19).contains(level) { throw bad("--zstd-level", "\(level); allowed -7 to 19") }
        guard (1...64).contains(parallelBlocks) else { throw bad("--parallel", "\(parallelBlocks); allowed 1 to 64") }
        if let minimum = minimumShards, !(k...(k + m)).contains(minimum) {
            throw bad("--min-shards", "\(minimum); must be between k (\(k)) and k+m (\(k + m)): fewer than k shards cannot rebuild the file")
        }
        guard connection.connectTimeoutSeconds > 0, connection.commandTimeoutSeconds > 0 else {
            throw bad("timeouts", "must be positive")
        }
    }
}

/// How far a transfer is, for progress bars.
public struct TransferProgress: Sendable {
    public var operation: String
    public var bytesDone: UInt64
    public var bytesTotal: UInt64
    public var elapsedSeconds: Double
}

public typealias ProgressHandler = @Sendable (TransferProgress) -> Void
