/// How the shard server runs. Every field has the default the daemon uses.
public struct ShardServerConfig: Sendable, Equatable {
    /// When a write is on disk before its reply.
    public enum FsyncPolicy: Sendable, Equatable {
        /// The reply to SET/DEL is sent only after fdatasync of the segment (grouped across
        /// clients): an acknowledged write survives a power cut.
        case always
        /// Segments are fdatasync'ed every N milliseconds: a crash of the machine loses at most
        /// that window of acknowledged writes; a crash of the process alone loses nothing (the page
        /// cache has them).
        case interval(milliseconds: Int)
        /// The kernel writes back when it likes (typically within 30 s); a process crash loses
        /// nothing, a machine crash may lose recent writes. Torn tails are dropped at start-up.
        case never
    }

    public var host: String
    /// 0 picks a free port (tests); `ShardServer.port` tells which.
    public var port: Int
    /// Where namespaces live: one or more directories (each its own disk, typically). A new
    /// namespace goes to the directory with the most free space; existing ones stay where they are.
    public var dataDirectories: [String]
    /// The first data directory (the common single-directory case).
    public var dataDirectory: String {
        get { dataDirectories.first ?? "" }
        set {
            if dataDirectories.isEmpty { dataDirectories = [newValue] } else { dataDirectories[0] = newValue }
        }
    }
    /// AUTH password for NSNEW/NSDEL/NSSET over the network; nil disables admin over the network.
    public var adminPassword: String?
    public var fsync: FsyncPolicy
    public var maxClients: Int
    /// A connection with no traffic either way for this long is closed; nil: never.
    public var idleTimeoutSeconds: Int?
    /// Largest value (0-db's limit: 8 MiB).
    public var maxValueSize: Int
    /// A segment file is sealed and a new one started past this size.
    public var segmentSize: UInt64
    /// Values up to this size are read into memory, checked against their CRC and sent from the
    /// buffer; larger ones go out with sendfile straight from the segment (see README: integrity).
    public var sendfileThreshold: Int
    /// Scrub rate in bytes per second over all namespaces; 0 disables the scrub.
    public var scrubBytesPerSecond: Int
    /// A sealed segment with at least this fraction of dead bytes is compacted; 0 disables.
    public var compactionDeadRatio: Double
    /// Event loop threads; 0: one per core.
    public var threads: Int
    /// Bytes of whole GET replies of small values (up to 64 KiB and the sendfile threshold) kept in
    /// memory, verified when read, so hot values are answered without a disk read; 0 disables.
    public var valueCacheBytes: Int

    public init(host: String = "0.0.0.0", port: Int = 9900, dataDirectory: String, adminPassword: String? = nil,
                fsync: FsyncPolicy = .interval(milliseconds: 1000), maxClients: Int = 1024,
                idleTimeoutSeconds: Int? = 300, maxValueSize: Int = 8 << 20, segmentSize: UInt64 = 256 << 20,
                sendfileThreshold: Int = 64 << 10, scrubBytesPerSecond: Int = 32 << 20,
                compactionDeadRatio: Double = 0.5, threads: Int = 0, valueCacheBytes: Int = 64 << 20) {
        self.host = host
        self.port = port
        self.dataDirectories = [dataDirectory]
        self.adminPassword = adminPassword
        self.fsync = fsync
        self.maxClients = maxClients
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.maxValueSize = maxValueSize
        self.segmentSize = segmentSize
        self.sendfileThreshold = sendfileThreshold
        self.scrubBytesPerSecond = scrubBytesPerSecond
        self.compactionDeadRatio = compactionDeadRatio
        self.threads = threads
        self.valueCacheBytes = valueCacheBytes
    }

    func validate() throws {
        func bad(_ field: String, _ reason: String) -> ShardServerError { .invalidConfig(field: field, reason: reason) }
        guard (0...65535).contains(port) else { throw bad("port", "\(port) is not a TCP port") }
        guard (1...64).contains(dataDirectories.count) else {
            throw bad("data directories", "\(dataDirectories.count) given; 1 to 64 are allowed")
        }
        for directory in dataDirectories {
            guard directory.hasPrefix("/"), directory.utf8.count <= 1024 else {
                throw bad("data directory", "'\(directory)' must be an absolute path of at most 1024 bytes")
            }
        }
        guard Set(dataDirectories).count == dataDirectories.count else {
            throw bad("data directories", "a directory is listed twice: \(dataDirectories.joined(separator: ", "))")
        }
        guard maxClients > 0 else { throw bad("max clients", "must be at least 1") }
        guard (1...(64 << 20)).contains(maxValueSize) else { throw bad("max value size", "must be 1 byte to 64 MiB") }
        guard segmentSize >= UInt64(maxValueSize) + 512 else {
            throw bad("segment size", "must hold at least one largest entry (\(maxValueSize + 512) bytes)")
        }
        if case .interval(let ms) = fsync, ms <= 0 { throw bad("fsync interval", "must be at least 1 ms") }
        if let idle = idleTimeoutSeconds, idle <= 0 { throw bad("idle timeout", "must be at least 1 s (or none)") }
        guard scrubBytesPerSecond >= 0 else { throw bad("scrub rate", "must not be negative") }
        guard (0...(64 << 30)).contains(valueCacheBytes) else { throw bad("value cache", "must be 0 (off) to 64 GiB") }
        guard (0...1).contains(compactionDeadRatio) else { throw bad("compaction ratio", "must be within 0...1") }
        if let password = adminPassword, password.isEmpty || password.utf8.count > 128 {
            throw bad("admin password", "must be 1 to 128 bytes")
        }
    }
}
