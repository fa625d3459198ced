import Synchronization

/// The commands whose latency is recorded separately; everything else is `other`.
public enum TimedCommand: Int, CaseIterable, Sendable {
    case get, set, del, mget, exists, check, proof, scan, other

    public var name: String {
        switch self {
        case .get: return "get"
        case .set: return "set"
        case .del: return "del"
        case .mget: return "mget"
        case .exists: return "exists"
        case .check: return "check"
        case .proof: return "proof"
        case .scan: return "scan"
        case .other: return "other"
        }
    }
}

/// Latencies of one command, from the request parsed to its reply handed to the socket (for a
/// write under fsync=always that includes the wait for fdatasync), in power-of-two microsecond
/// buckets: bucket 0 is under 1 µs, bucket i (1...24) is [2^(i-1), 2^i) µs, bucket 25 is 2^24 µs
/// (about 16.8 s) and more.
public struct LatencyHistogram: Sendable, Equatable {
    public static let bucketCount = 26

    public var buckets: [UInt64] = Array(repeating: 0, count: LatencyHistogram.bucketCount)
    public var count: UInt64 = 0
    public var totalMicros: UInt64 = 0
    public var maxMicros: UInt64 = 0

    public init() {}

    static func bucket(forMicros micros: UInt64) -> Int {
        min(64 - micros.leadingZeroBitCount, bucketCount - 1)
    }

    /// The exclusive upper bound of bucket `i` in microseconds (nil for the last, open one).
    public static func upperBoundMicros(ofBucket i: Int) -> UInt64? {
        i < bucketCount - 1 ? UInt64(1) << UInt64(i) : nil
    }

    public var meanMicros: Double { count == 0 ? 0 : Double(totalMicros) / Double(count) }

    /// An upper bound for the `q` quantile (0...1): the upper edge of the bucket it falls in, or
    /// the maximum seen when that is smaller (or the bucket is the open last one).
    public func percentileMicros(_ q: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let rank = max(1, UInt64((q * Double(count)).rounded(.up)))
        var seen: UInt64 = 0
        for (i, n) in buckets.enumerated() {
            seen += n
            if seen >= rank {
                guard let bound = Self.upperBoundMicros(ofBucket: i) else { return maxMicros }
                return min(bound, maxMicros)
            }
        }
        return maxMicros
    }

    mutating func merge(_ other: LatencyHistogram) {
        for i in buckets.indices { buckets[i] += other.buckets[i] }
        count += other.count
        totalMicros += other.totalMicros
        maxMicros = max(maxMicros, other.maxMicros)
    }
}

/// Per-command histograms shared by every connection. Connections are spread over a few
/// independently locked shards, so the event loop threads rarely wait on each other; a
/// statistics read merges the shards.
final class LatencyRecorder: Sendable {
    static let shardCount = 16
    private static let stride = LatencyHistogram.bucketCount + 3  // buckets, count, total, max

    private final class Shard: Sendable {
        let cells = Mutex([UInt64](repeating: 0, count: TimedCommand.allCases.count * LatencyRecorder.stride))
    }

    private let shards: [Shard] = (0..<LatencyRecorder.shardCount).map { _ in Shard() }
    private let nextShard = Atomic<Int>(0)

    /// The shard a new connection records into.
    func assignShard() -> Int {
        nextShard.wrappingAdd(1, ordering: .relaxed).oldValue & (Self.shardCount - 1)
    }

    func record(_ command: TimedCommand, micros: UInt64, shard: Int) {
        let base = command.rawValue * Self.stride
        let bucket = LatencyHistogram.bucket(forMicros: micros)
        shards[shard & (Self.shardCount - 1)].cells.withLock { cells in
            cells[base + bucket] &+= 1
            cells[base + LatencyHistogram.bucketCount] &+= 1
            cells[base + LatencyHistogram.bucketCount + 1] &+= micros
            if micros > cells[base + LatencyHistogram.bucketCount + 2] {
                cells[base + LatencyHistogram.bucketCount + 2] = micros
            }
        }
    }

    func snapshot() -> [TimedCommand: LatencyHistogram] {
        var out: [TimedCommand: LatencyHistogram] = [:]
        for command in TimedCommand.allCases { out[command] = LatencyHistogram() }
        for shard in shards {
            let cells = shard.cells.withLock { $0 }
            for command in TimedCommand.allCases {
                let base = command.rawValue * Self.stride
                var h = LatencyHistogram()
                h.buckets = Array(cells[base..<(base + LatencyHistogram.bucketCount)])
                h.count = cells[base + LatencyHistogram.bucketCount]
                h.totalMicros = cells[base + LatencyHistogram.bucketCount + 1]
                h.maxMicros = cells[base + LatencyHistogram.bucketCount + 2]
                out[command]?.merge(h)
            }
        }
        return out
    }
}
