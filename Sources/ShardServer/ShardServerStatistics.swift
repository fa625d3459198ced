import Synchronization

/// A snapshot of the server's counters, for metrics and status.
public struct ShardServerStatistics: Sendable, Equatable {
    public var connectionsCurrent: Int
    public var connectionsTotal: UInt64
    public var connectionsRefused: UInt64
    public var commands: UInt64
    public var commandsFailed: UInt64
    public var gets: UInt64
    public var sets: UInt64
    /// Payload bytes stored by SET and served by GET/MGET.
    public var bytesWritten: UInt64
    public var bytesRead: UInt64
    /// Total time spent executing commands (not counting network), in microseconds, and how many
    /// were timed: their ratio is the mean service latency.
    public var latencyMicrosTotal: UInt64
    /// Corrupt entries found by GET, CHECK or the scrub since start.
    public var corruptFound: UInt64
    public var compactedBytes: UInt64
    /// The cache of verified small GET replies: bytes held, hits and misses since start.
    public var valueCacheBytes: Int
    public var valueCacheHits: UInt64
    public var valueCacheMisses: UInt64
    /// Per command (`TimedCommand.name`): latency from parsed request to reply handed to the
    /// socket, including any fsync wait.
    public var latencies: [String: LatencyHistogram]
    public var namespaces: [NamespaceInfo]
}

/// The live counters, shared by every connection (atomics: no lock on the request path).
final class Counters: Sendable {
    let connectionsCurrent = Atomic<Int>(0)
    let connectionsTotal = Atomic<UInt64>(0)
    let connectionsRefused = Atomic<UInt64>(0)
    let commands = Atomic<UInt64>(0)
    let commandsFailed = Atomic<UInt64>(0)
    let gets = Atomic<UInt64>(0)
    let sets = Atomic<UInt64>(0)
    let bytesWritten = Atomic<UInt64>(0)
    let bytesRead = Atomic<UInt64>(0)
    let latencyMicrosTotal = Atomic<UInt64>(0)
    let corruptFound = Atomic<UInt64>(0)
    let compactedBytes = Atomic<UInt64>(0)
    let latency = LatencyRecorder()
}
