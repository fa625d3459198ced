import NIOCore
import Synchronization

/// Whole GET replies (`$len\r\n value \r\n`) of small hot values, so a repeated GET is answered
/// without a pread, a checksum pass or a copy: the cached buffer is written to the socket as is.
///
/// - Bounded by bytes (buffer capacities plus keys); CLOCK eviction (a hit sets a reference bit, the
///   hand clears it once before evicting), which keeps the hot set under scans of cold keys.
/// - Only bytes whose CRC was verified when they were read from the segment are ever inserted.
/// - A hit needs the namespace instance, the key, the entry's sequence and its place (segment,
///   offset) to match the index entry just looked up: an overwrite or delete (new sequence or no
///   entry), a compaction move (new place) or a deleted-and-recreated namespace (new instance) is
///   a miss, never stale bytes. SET and DEL also drop the key at once so dead replies do not hold
///   the budget; entries of moved or deleted data age out under CLOCK.
/// - A corrupt flag is checked on the index entry before the cache is consulted.
final class ValueCache: Sendable {
    struct Key: Hashable {
        let namespace: UInt64
        let key: [UInt8]
    }

    /// Where the cached bytes came from; all of it must match the index entry for a hit.
    struct Version: Equatable {
        let sequence: UInt64
        let segmentID: UInt32
        let offset: UInt64
    }

    private struct Slot {
        var version: Version
        var reply: ByteBuffer
        var cost: Int
        var referenced: Bool
    }

    private struct State {
        var slots: [Key: Slot] = [:]
        /// The CLOCK: keys in insertion order. Removed keys leave stale items, skipped by the hand
        /// and swept when they outnumber the live ones.
        var hand = CircularBuffer<Key>()
        var bytes = 0
        var hits: UInt64 = 0
        var misses: UInt64 = 0
    }

    /// Values larger than this are never cached: the cache is for the per-request overhead of
    /// small values, which dominates below a few tens of KiB.
    static let maxCachedValue = 64 << 10

    /// Per entry beyond its buffer and key: dictionary slot, queue item, buffer storage header.
    static let overhead = 96

    let capacity: Int
    /// Larger values are not cached (they go out with sendfile or are rare enough not to matter).
    let maxValueLength: Int
    private let state = Mutex(State())

    init(capacity: Int, maxValueLength: Int) {
        self.capacity = max(0, capacity)
        self.maxValueLength = capacity > 0 ? max(0, maxValueLength) : -1
    }

    /// Whether a value of this length may be cached at all (cheap check before building a key).
    func admits(length: Int) -> Bool { length <= maxValueLength }

    func lookup(_ key: Key, version: Version) -> ByteBuffer? {
        state.withLock { state in
            guard let index = state.slots.index(forKey: key), state.slots.values[index].version == version else {
                state.misses &+= 1
                return nil
            }
            state.hits &+= 1
            state.slots.values[index].referenced = true
            return state.slots.values[index].reply
        }
    }

    /// Caches `reply`, which must hold the whole bulk reply of a value whose CRC was just verified.
    func insert(_ key: Key, version: Version, reply: ByteBuffer) {
        let cost = reply.capacity + key.key.count + Self.overhead
        guard cost <= capacity / 8 else { return }  // a few large values must not flush the rest
        state.withLock { state in
            if let old = state.slots.removeValue(forKey: key) { state.bytes -= old.cost }
            var budget = 2 * state.hand.count + 1  // every item is visited at most twice
            while state.bytes + cost > capacity, budget > 0, let victim = state.hand.popFirst() {
                budget -= 1
                guard let index = state.slots.index(forKey: victim) else { continue }  // stale item
                if state.slots.values[index].referenced {
                    state.slots.values[index].referenced = false
                    state.hand.append(victim)
                } else {
                    state.bytes -= state.slots.values[index].cost
                    state.slots.remove(at: index)
                }
            }
            guard state.bytes + cost <= capacity else { return }
            state.slots[key] = Slot(version: version, reply: reply, cost: cost, referenced: false)
            state.bytes += cost
            state.hand.append(key)
            Self.sweepIfStale(&state)
        }
    }

    /// Drops a key (after SET or DEL of it).
    func remove(_ key: Key) {
        state.withLock { state in
            guard let old = state.slots.removeValue(forKey: key) else { return }
            state.bytes -= old.cost
            Self.sweepIfStale(&state)
        }
    }

    /// Drops every entry of a namespace instance (after the namespace is deleted).
    func removeAll(namespace: UInt64) {
        state.withLock { state in
            state.slots = state.slots.filter { $0.key.namespace != namespace }
            state.bytes = state.slots.values.reduce(0) { $0 + $1.cost }
            Self.sweepIfStale(&state)
        }
    }

    /// `hand` is the CLOCK's length including stale items (tests check it stays bounded).
    var statistics: (bytes: Int, entries: Int, hits: UInt64, misses: UInt64, hand: Int) {
        state.withLock { ($0.bytes, $0.slots.count, $0.hits, $0.misses, $0.hand.count) }
    }

    /// Rebuilds the hand from the live keys once stale items are most of it (keeps it bounded
    /// when keys are cached and dropped without the cache ever filling up).
    private static func sweepIfStale(_ state: inout State) {
        guard state.hand.count > 2 * state.slots.count + 1024 else { return }
        var seen = Set<Key>()
        var fresh = CircularBuffer<Key>(initialCapacity: state.slots.count)
        for key in state.hand where state.slots[key] != nil && seen.insert(key).inserted { fresh.append(key) }
        state.hand = fresh
    }
}
