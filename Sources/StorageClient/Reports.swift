/// One shard column as reports show it (never with its password).
public struct ColumnStatus: Codable, Sendable, Equatable {
    public var index: Int
    public var node: String
    public var address: String
    public var namespace: String
    /// "data" or "parity".
    public var role: String
    /// "stored", "failed: <reason>", "moved from <endpoint>", ...
    public var status: String

    init(column: ShardColumn, k: Int, status: String) {
        index = column.index
        node = column.endpoint.node
        address = column.endpoint.address
        namespace = column.endpoint.namespace
        role = column.index < k ? "data" : "parity"
        self.status = status
    }
}

public struct PutReport: Codable, Sendable {
    public var fileID: String
    public var name: String
    public var size: UInt64
    /// Bytes of all shards written (after compression, encryption and parity).
    public var storedBytes: UInt64
    public var k: Int
    public var m: Int
    public var blockSize: Int
    public var blocks: Int
    public var seconds: Double
    public var columns: [ColumnStatus]
    /// Shard columns written in full; below k+m only when the caller allowed it.
    public var shardsWritten: Int
    public var warnings: [String]
    public var localCopy: String?
    /// Resume only: shards already on their nodes (checked by PROOF against their checksum) and
    /// not sent again.
    public var shardsAlreadyStored: Int = 0
}

public struct GetReport: Codable, Sendable {
    public var fileID: String
    public var name: String
    public var size: UInt64
    public var output: String
    public var seconds: Double
    /// Shards that had to be replaced by others (missing, corrupt, node down), per node.
    public var warnings: [String]
    /// Blocks that needed the erasure decode (a data shard was not used).
    public var decodedBlocks: Int
}

/// The health of one shard column.
public struct ColumnHealth: Codable, Sendable, Equatable {
    public var column: ColumnStatus
    public var reachable: Bool
    public var error: String?
    /// Shards present and proven (PROOF answer matched, or the checksum in deep mode).
    public var good: Int
    public var missing: Int
    /// Present but wrong: failed the node's CRC, the PROOF answer or the checksum.
    public var corrupt: Int
    /// Could not be asked (node unreachable or failed during the check).
    public var unknown: Int
    /// Whether this namespace holds the file's metadata, and which revision.
    public var metadataRevision: Int?
}

public struct CheckReport: Codable, Sendable {
    public var fileID: String
    public var name: String
    public var size: UInt64
    public var k: Int
    public var m: Int
    public var blocks: Int
    public var revision: Int
    /// "proof" (PROOF challenges) or "deep" (every shard downloaded and checksummed).
    public var method: String
    /// Shards downloaded and checksummed: all of them in a deep check; in a proof check, a random
    /// sample of each column (about 1 in 64 blocks, 1 to 8 per column).
    public var downloadedShards: Int
    public var columns: [ColumnHealth]
    /// The fewest good shards any block has: the file is recoverable while this is >= k.
    public var minimumGoodShards: Int
    public var recoverable: Bool
    public var healthy: Bool
    public var seconds: Double
}

public struct RepairReport: Codable, Sendable {
    public struct Move: Codable, Sendable, Equatable {
        public var index: Int
        public var from: String
        public var to: String
    }

    public var fileID: String
    public var revision: Int
    public var rebuiltShards: Int
    /// Per shard column: how many of its shards were rewritten in place.
    public var repairedInPlace: [Int]
    public var moved: [Move]
    /// The check after the repair.
    public var after: CheckReport
    public var seconds: Double
}
