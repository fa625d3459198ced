import Foundation
import Logging
import Synchronization

/// Sizes the store is built with (the same for every namespace of a server).
struct StoreLimits: Sendable {
    var maxValueLength: Int
    var segmentSize: UInt64
    /// A larger index snapshot is ignored and the index rebuilt from the segments.
    var maxSnapshotSize: Int = IndexSnapshot.maxFileSize
}

/// Where a live value sits, handed out by `Namespace.locate` so the read itself happens outside
/// the namespace's lock (the segment reference keeps the file open even if compaction drops it).
struct ValueLocation: Sendable {
    let segment: Segment
    let valueOffset: UInt64
    let length: Int
    let crc: UInt32
    let sequence: UInt64
    let timestamp: UInt64
    let corrupt: Bool
}

/// How far a write must be synced to be durable.
struct DurabilityPoint: Sendable {
    let segment: Segment
}

enum SetOutcome: Sendable {
    case stored(key: [UInt8], durability: DurabilityPoint)
    /// Same length and CRC as the stored value: nothing written (0-db answers nil).
    case unchanged
}

/// One namespace: its settings, its segment files and the in-memory index over them.
///
/// All state sits behind one mutex. Writes append under it (so the index and the file agree in
/// order); reads only look up a location under it and read outside. Payloads are never held in
/// memory by the index.
final class Namespace: Sendable {
    static let settingsFile = "settings.json"

    let name: String
    let directory: String
    let limits: StoreLimits
    /// How the index was obtained at start-up (tests and NSINFO show it).
    let recovery: Recovery
    private let state: Mutex<State>
    /// Held while a snapshot is written, so two writers never share the temporary file.
    private let snapshotWriter = Mutex(())
    private let removedFlag = Atomic<Bool>(false)
    /// Unique per instance for the life of the process (the value cache's key): a namespace
    /// deleted and created again under the same name starts over with new sequence numbers.
    let cacheID: UInt64
    private static let nextCacheID = Atomic<UInt64>(1)

    struct IndexEntry {
        var segmentID: UInt32
        var offset: UInt64
        var keyLength: UInt8
        var valueLength: UInt32
        var valueCRC: UInt32
        var sequence: UInt64
        var timestamp: UInt64
        var corrupt: Bool

        var valueOffset: UInt64 { offset + UInt64(EntryHeader.size) + UInt64(keyLength) }
        var totalLength: UInt64 { UInt64(EntryHeader.size) + UInt64(keyLength) + UInt64(valueLength) }
    }

    struct SegmentState {
        let segment: Segment
        var size: UInt64
        /// Bytes of overwritten or deleted values: what compaction would reclaim.
        var deadBytes: UInt64
    }

    struct OrderItem {
        var sequence: UInt64
        var key: [UInt8]
    }

    struct State {
        var settings: NamespaceSettings
        var index: [[UInt8]: IndexEntry] = [:]
        /// Live keys by sequence, ascending: SCAN's walk order. Overwritten or deleted keys leave
        /// stale items (their sequence no longer matches the index), skipped and swept in bulk.
        var order: [OrderItem] = []
        var staleOrderItems = 0
        var segments: [UInt32: SegmentState] = [:]
        var activeID: UInt32 = 0
        var nextSequence: UInt64 = 1
        /// Next id of a seq-mode namespace.
        var nextSeqID: UInt64 = 0
        var dataSize: UInt64 = 0
        var corruptEntries = 0
        var removed = false
        /// Something was appended since the last fsync (for the interval policy).
        var unsynced = false
        /// A segment was sealed or compacted, or start-up replayed entries: the index snapshot
        /// should be rewritten (by the maintenance task, off the request path).
        var snapshotWanted = false
    }

    private init(name: String, directory: String, limits: StoreLimits, state: State, recovery: Recovery) {
        self.name = name
        self.directory = directory
        self.limits = limits
        self.state = Mutex(state)
        self.recovery = recovery
        self.cacheID = Self.nextCacheID.wrappingAdd(1, ordering: .relaxed).oldValue
    }

    // MARK: - Opening and recovery

    /// Creates a namespace directory with its settings and a first segment.
    static func create(name: String, directory: String, limits: StoreLimits, settings: NamespaceSettings,
                       logger: Logger) throws -> Namespace {
        try FileIO.makeDirectory(directory)
        try writeSettings(settings, directory: directory)
        return try open(name: name, directory: directory, limits: limits, logger: logger)
    }

    /// How start-up got the index: from the durable snapshot plus a replay of what was written
    /// after it, or by scanning every segment (no snapshot, or one that could not be trusted).
    enum Recovery: Sendable, Equatable {
        case snapshot(replayedEntries: Int)
        case rebuilt(reason: String)
    }

    /// Opens an existing namespace: reads its settings and its index snapshot, then replays the
    /// segment bytes written after the snapshot (all segments when there is no usable snapshot).
    /// Sealed segments were fsynced when they were sealed, so only their headers are checked; the
    /// last segment's values are verified too and it is truncated at the first entry that is torn
    /// (partly written when the process or machine died).
    static func open(name: String, directory: String, limits: StoreLimits, logger: Logger) throws -> Namespace {
        let settingsBytes = try FileIO.readWholeFile(directory + "/" + settingsFile, limit: 1 << 16)
        let settings: NamespaceSettings
        do {
            settings = try JSONDecoder().decode(NamespaceSettings.self, from: Data(settingsBytes))
        } catch {
            throw ShardServerError.corrupt(path: directory + "/" + settingsFile, offset: 0, reason: "not valid settings: \(error)")
        }
        let ids = try FileIO.listDirectory(directory).compactMap(Segment.id(fromFileName:)).sorted()
        var recovered: (State, Recovery)
        switch loadSnapshot(directory: directory, limits: limits) {
        case .success(let snapshot):
            switch try recover(name: name, directory: directory, limits: limits, settings: settings, ids: ids,
                               snapshot: snapshot, logger: logger) {
            case .success(let result):
                recovered = result
            case .failure(let problem):
                logger.warning("index snapshot does not match the segments; rebuilding the index from them", metadata: [
                    "namespace": "\(name)", "reason": "\(problem.snapshotReason)"])
                let state = try recover(name: name, directory: directory, limits: limits, settings: settings, ids: ids,
                                        snapshot: nil, logger: logger).get().0
                recovered = (state, .rebuilt(reason: problem.snapshotReason))
            }
        case .failure(let problem):
            if problem.snapshotReason != "missing" {
                logger.warning("index snapshot unusable; rebuilding the index from the segments", metadata: [
                    "namespace": "\(name)", "reason": "\(problem.snapshotReason)"])
            }
            let state = try recover(name: name, directory: directory, limits: limits, settings: settings, ids: ids,
                                    snapshot: nil, logger: logger).get().0
            recovered = (state, .rebuilt(reason: problem.snapshotReason))
        }
        if recovered.1 == .rebuilt(reason: "missing") && !ids.isEmpty {
            logger.notice("no index snapshot; the index was rebuilt from the segments", metadata: ["namespace": "\(name)"])
        }
        if ids.isEmpty {
            let segment = try Segment.open(directory: directory, id: 1, create: true)
            try FileIO.syncDirectory(directory)
            recovered.0.segments[1] = SegmentState(segment: segment, size: 0, deadBytes: 0)
            recovered.0.activeID = 1
        }
        // A fresh snapshot once anything had to be replayed, so the next start is quick again.
        if recovered.1 != .snapshot(replayedEntries: 0) { recovered.0.snapshotWanted = true }
        return Namespace(name: name, directory: directory, limits: limits, state: recovered.0, recovery: recovered.1)
    }

    private static func loadSnapshot(directory: String, limits: StoreLimits) -> Result<IndexSnapshot, ShardServerError> {
        let path = directory + "/" + IndexSnapshot.fileName
        guard FileIO.exists(path) else { return .failure(IndexSnapshot.problem("missing")) }
        return IndexSnapshot.read(path: path, maxValueLength: limits.maxValueLength, maxFileSize: limits.maxSnapshotSize)
    }

    /// Builds the state from `snapshot` (or from nothing) plus the segment bytes after it. Fails
    /// (so the caller rebuilds from scratch) when the snapshot and the segment files disagree.
    private static func recover(name: String, directory: String, limits: StoreLimits, settings: NamespaceSettings,
                                ids: [UInt32], snapshot: IndexSnapshot?, logger: Logger)
        throws -> Result<(State, Recovery), ShardServerError> {
        var state = State(settings: settings)
        // Newest version per key wins by sequence (equal sequence: the later copy, from
        // compaction); tombstones take part in that and are dropped after.
        var latest: [[UInt8]: (entry: IndexEntry, tombstone: Bool)] = [:]
        var maxSequence: UInt64 = 0
        var maxSeqID: UInt64? = nil
        var start = (segment: UInt32(0), offset: UInt64(0))
        var startDead: UInt64 = 0
        var segmentsByID: [UInt32: Segment] = [:]
        func openSegment(_ id: UInt32) throws -> Segment {
            if let segment = segmentsByID[id] { return segment }
            let segment = try Segment.open(directory: directory, id: id, create: false)
            segmentsByID[id] = segment
            return segment
        }

        if let snapshot {
            let present = Set(ids)
            let known = Dictionary(snapshot.segments.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            for id in ids where id < snapshot.coveredSegment && known[id] == nil {
                return .failure(IndexSnapshot.problem("segment \(id) is not in the snapshot"))
            }
            for record in snapshot.segments where present.contains(record.id) {
                let segment = try openSegment(record.id)
                let size = try FileIO.fileSize(fd: segment.fd, path: segment.path)
                if record.id < snapshot.coveredSegment {
                    guard size == record.size else {
                        return .failure(IndexSnapshot.problem("sealed segment \(record.id) is \(size) bytes, the snapshot says \(record.size)"))
                    }
                    state.segments[record.id] = SegmentState(segment: segment, size: size, deadBytes: record.deadBytes)
                } else if record.id == snapshot.coveredSegment {
                    guard size >= snapshot.coveredOffset else {
                        return .failure(IndexSnapshot.problem("segment \(record.id) is \(size) bytes, shorter than the \(snapshot.coveredOffset) the snapshot covers"))
                    }
                    startDead = record.deadBytes
                }
            }
            for record in snapshot.entries {
                let entry = IndexEntry(segmentID: record.segmentID, offset: record.offset, keyLength: UInt8(record.key.count),
                                       valueLength: record.valueLength, valueCRC: record.valueCRC, sequence: record.sequence,
                                       timestamp: record.timestamp, corrupt: record.corrupt)
                latest[record.key] = (entry, false)
                if record.key.count == 8 {
                    let id = record.key.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
                    maxSeqID = max(maxSeqID ?? 0, id)
                }
            }
            maxSequence = snapshot.nextSequence > 0 ? snapshot.nextSequence - 1 : 0
            if snapshot.nextSeqID > 0 { maxSeqID = max(maxSeqID ?? 0, snapshot.nextSeqID - 1) }
            start = present.contains(snapshot.coveredSegment) ? (snapshot.coveredSegment, snapshot.coveredOffset) : (snapshot.coveredSegment, 0)
        }

        var replayed = 0
        for (position, id) in ids.enumerated() where id >= start.segment {
            let isLast = position == ids.count - 1
            let segment = try openSegment(id)
            let size = try FileIO.fileSize(fd: segment.fd, path: segment.path)
            var scanner = SegmentScanner(segment: segment, fileSize: size)
            var offset: UInt64 = id == start.segment ? start.offset : 0
            var deadBytes: UInt64 = id == start.segment ? startDead : 0
            scan: while true {
                let step = try scanner.step(at: offset, maxValueLength: limits.maxValueLength, verifyValue: isLast)
                switch step {
                case .end:
                    break scan
                case .invalid(let at, let reason):
                    if isLast {
                        logger.warning("dropping a torn tail", metadata: [
                            "namespace": "\(name)", "segment": "\(segment.path)", "offset": "\(at)",
                            "bytes": "\(size - at)", "reason": "\(reason)"])
                        try FileIO.ftruncate(fd: segment.fd, length: at, path: segment.path)
                        try FileIO.fdatasync(fd: segment.fd, path: segment.path)
                    } else {
                        // A sealed segment was synced whole; damage here is the disk's, not a crash's.
                        // What follows cannot be framed, so it stays unreachable (and is reported).
                        logger.error("segment damaged; entries after this point are unreadable", metadata: [
                            "namespace": "\(name)", "segment": "\(segment.path)", "offset": "\(at)", "reason": "\(reason)"])
                    }
                    break scan
                case .entry(let header, let key, let at, let valueOK):
                    if valueOK == false {
                        // Last segment, value does not match its CRC: a torn write. Drop it and what follows.
                        logger.warning("dropping a torn tail", metadata: [
                            "namespace": "\(name)", "segment": "\(segment.path)", "offset": "\(at)",
                            "bytes": "\(size - at)", "reason": "value checksum mismatch"])
                        try FileIO.ftruncate(fd: segment.fd, length: at, path: segment.path)
                        try FileIO.fdatasync(fd: segment.fd, path: segment.path)
                        break scan
                    }
                    replayed += 1
                    let entry = IndexEntry(segmentID: id, offset: at, keyLength: header.keyLength,
                                           valueLength: header.valueLength, valueCRC: header.valueCRC,
                                           sequence: header.sequence, timestamp: header.timestamp, corrupt: false)
                    maxSequence = max(maxSequence, header.sequence)
                    if key.count == 8 {
                        let id = key.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
                        maxSeqID = max(maxSeqID ?? 0, id)
                    }
                    if let current = latest[key], current.entry.sequence > header.sequence {
                        if !header.isTombstone { deadBytes += header.totalLength }
                    } else {
                        if let current = latest[key], !current.tombstone {
                            if current.entry.segmentID == id {
                                deadBytes += current.entry.totalLength
                            } else {
                                state.segments[current.entry.segmentID]?.deadBytes += current.entry.totalLength
                            }
                        }
                        latest[key] = (entry, header.isTombstone)
                    }
                    offset = at + header.totalLength
                }
            }
            let finalSize = try FileIO.fileSize(fd: segment.fd, path: segment.path)
            state.segments[id] = SegmentState(segment: segment, size: finalSize, deadBytes: deadBytes)
        }

        for (key, item) in latest where !item.tombstone {
            guard state.segments[item.entry.segmentID] != nil else {
                return .failure(IndexSnapshot.problem("an entry lives in segment \(item.entry.segmentID), which is gone"))
            }
            state.index[key] = item.entry
            state.dataSize += UInt64(item.entry.valueLength)
            if item.entry.corrupt { state.corruptEntries += 1 }
        }
        state.order = state.index.map { OrderItem(sequence: $0.value.sequence, key: $0.key) }
            .sorted { $0.sequence < $1.sequence }
        state.nextSequence = maxSequence + 1
        state.nextSeqID = maxSeqID.map { $0 + 1 } ?? 0
        if let last = ids.last { state.activeID = last }
        let recovery: Recovery = snapshot == nil ? .rebuilt(reason: "") : .snapshot(replayedEntries: replayed)
        return .success((state, recovery))
    }

    static func writeSettings(_ settings: NamespaceSettings, directory: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let data: Data
        do { data = try encoder.encode(settings) } catch {
            throw ShardServerError.invalidConfig(field: "namespace settings", reason: "cannot encode: \(error)")
        }
        try FileIO.writeAtomically([UInt8](data), to: directory + "/" + settingsFile, directory: directory)
    }

    // MARK: - Settings

    var settings: NamespaceSettings { state.withLock { $0.settings } }
    /// Checked before every command: an atomic, so the read path takes the namespace's lock once.
    var isRemoved: Bool { removedFlag.load(ordering: .acquiring) }

    func updateSettings(_ update: (inout NamespaceSettings) throws -> Void) throws {
        try state.withLock { state in
            var settings = state.settings
            try update(&settings)
            if settings.mode != state.settings.mode && !state.index.isEmpty {
                throw ShardServerError.refused("Cannot change mode of a namespace which is not empty")
            }
            try Self.writeSettings(settings, directory: directory)
            state.settings = settings
        }
    }

    func markRemoved() {
        state.withLock { $0.removed = true }
        removedFlag.store(true, ordering: .releasing)
    }

    func info() -> NamespaceInfo {
        state.withLock { state in
            NamespaceInfo(name: name, settings: state.settings, entries: state.index.count, dataSize: state.dataSize,
                          diskSize: state.segments.values.reduce(0) { $0 + $1.size }, segments: state.segments.count,
                          corruptEntries: state.corruptEntries)
        }
    }

    var entryCount: Int { state.withLock { $0.index.count } }

    // MARK: - Writes

    private static func checkWritable(_ state: State) throws {
        if state.removed { throw ShardServerError.refused("Namespace not found") }
        if state.settings.frozen { throw ShardServerError.refused("Namespace is temporarily frozen") }
        if state.settings.locked { throw ShardServerError.refused("Namespace is temporarily locked") }
    }

    /// Appends header, key and value to the active segment, rolling to a new segment first when
    /// this entry would overflow it. On a failed write the segment is cut back to where it was, so
    /// a full disk leaves no half entry behind and nothing stored before is touched.
    private func append(_ state: inout State, header: EntryHeader, key: [UInt8],
                        value: UnsafeRawBufferPointer) throws -> (segmentID: UInt32, offset: UInt64) {
        guard var active = state.segments[state.activeID] else {
            throw ShardServerError.corrupt(path: directory, offset: 0, reason: "active segment \(state.activeID) is missing")
        }
        if active.size > 0 && active.size + header.totalLength > limits.segmentSize {
            try roll(&state)
            guard let fresh = state.segments[state.activeID] else {
                throw ShardServerError.corrupt(path: directory, offset: 0, reason: "new segment \(state.activeID) is missing")
            }
            active = fresh
        }
        let bytes = header.encode(key: key)
        let segment = active.segment
        let offset = active.size
        do {
            try bytes.withUnsafeBytes { headerBytes in
                try FileIO.pwritevFully(fd: segment.fd, [headerBytes, value], offset: offset, path: segment.path)
            }
        } catch {
            try? FileIO.ftruncate(fd: segment.fd, length: offset, path: segment.path)
            throw error
        }
        state.segments[state.activeID]?.size = offset + header.totalLength
        state.unsynced = true
        return (state.activeID, offset)
    }

    /// Seals the active segment (fsync, whatever the policy: recovery trusts sealed segments'
    /// payloads without reading them) and starts the next one.
    private func roll(_ state: inout State) throws {
        guard let active = state.segments[state.activeID] else { return }
        try FileIO.fdatasync(fd: active.segment.fd, path: active.segment.path)
        let nextID = state.activeID + 1
        let segment = try Segment.open(directory: directory, id: nextID, create: true)
        try FileIO.syncDirectory(directory)
        state.segments[nextID] = SegmentState(segment: segment, size: 0, deadBytes: 0)
        state.activeID = nextID
        state.snapshotWanted = true
    }

    private func retire(_ state: inout State, _ old: IndexEntry) {
        state.segments[old.segmentID]?.deadBytes += old.totalLength
        state.dataSize -= UInt64(old.valueLength)
        state.staleOrderItems += 1
        if old.corrupt { state.corruptEntries -= 1 }
        // Sweep stale order items when they outnumber live ones: amortised O(1) per write.
        if state.staleOrderItems > 1024 && state.staleOrderItems > state.order.count / 2 {
            let index = state.index
            state.order.removeAll { index[$0.key]?.sequence != $0.sequence }
            state.staleOrderItems = 0
        }
    }

    /// SET. `key` empty in a seq namespace appends under the next id.
    func set(key requested: [UInt8], value: UnsafeRawBufferPointer, timestamp: UInt64) throws -> SetOutcome {
        guard value.count <= limits.maxValueLength else { throw ShardServerError.refused("Value too large") }
        let crc = CRC32C.checksum(value)  // outside the lock: up to 8 MiB of work
        return try state.withLock { state in
            try Self.checkWritable(state)
            var key = requested
            switch state.settings.mode {
            case .user:
                guard !key.isEmpty else { throw ShardServerError.refused("Invalid argument, key needed") }
            case .seq:
                if key.isEmpty {
                    withUnsafeBytes(of: state.nextSeqID.littleEndian) { key = Array($0) }
                } else if state.index[key] == nil {
                    throw ShardServerError.refused("Invalid key, only update authorized")
                }
            }
            let existing = state.index[key]
            if let existing, existing.valueCRC == crc, existing.valueLength == UInt32(value.count), !existing.corrupt {
                return .unchanged
            }
            if existing != nil && state.settings.worm {
                throw ShardServerError.refused("Cannot overwrite a key when namespace is in worm mode")
            }
            let maxSize = state.settings.maxSize
            if maxSize > 0 && state.dataSize - UInt64(existing?.valueLength ?? 0) + UInt64(value.count) > maxSize {
                throw ShardServerError.refused("No space left on this namespace")
            }
            let header = EntryHeader(flags: 0, keyLength: UInt8(key.count), valueLength: UInt32(value.count),
                                     valueCRC: crc, sequence: state.nextSequence, timestamp: timestamp)
            let (segmentID, offset) = try append(&state, header: header, key: key, value: value)
            state.nextSequence += 1
            if state.settings.mode == .seq && requested.isEmpty { state.nextSeqID += 1 }
            if let existing { retire(&state, existing) }
            state.index[key] = IndexEntry(segmentID: segmentID, offset: offset, keyLength: header.keyLength,
                                          valueLength: header.valueLength, valueCRC: crc, sequence: header.sequence,
                                          timestamp: timestamp, corrupt: false)
            state.order.append(OrderItem(sequence: header.sequence, key: key))
            state.dataSize += UInt64(value.count)
            guard let segment = state.segments[segmentID]?.segment else {
                throw ShardServerError.corrupt(path: directory, offset: offset, reason: "segment \(segmentID) vanished")
            }
            return .stored(key: key, durability: DurabilityPoint(segment: segment))
        }
    }

    /// DEL: appends a tombstone so the deletion survives restarts.
    func delete(key: [UInt8], timestamp: UInt64) throws -> DurabilityPoint {
        try state.withLock { state in
            try Self.checkWritable(state)
            guard let existing = state.index[key] else { throw ShardServerError.refused("Key not found") }
            if state.settings.worm {
                throw ShardServerError.refused("Cannot delete a key when namespace is in worm mode")
            }
            let header = EntryHeader(flags: EntryHeader.tombstoneFlag, keyLength: UInt8(key.count), valueLength: 0,
                                     valueCRC: 0, sequence: state.nextSequence, timestamp: timestamp)
            let (segmentID, _) = try append(&state, header: header, key: key, value: UnsafeRawBufferPointer(start: nil, count: 0))
            state.nextSequence += 1
            state.index[key] = nil
            retire(&state, existing)
            guard let segment = state.segments[segmentID]?.segment else {
                throw ShardServerError.corrupt(path: directory, offset: 0, reason: "segment \(segmentID) vanished")
            }
            return DurabilityPoint(segment: segment)
        }
    }

    // MARK: - Reads

    private static func checkReadable(_ state: State) throws {
        if state.removed { throw ShardServerError.refused("Namespace not found") }
        if state.settings.frozen { throw ShardServerError.refused("Namespace is temporarily frozen") }
    }

    func locate(key: [UInt8]) throws -> ValueLocation? {
        try state.withLock { state in
            try Self.checkReadable(state)
            guard let entry = state.index[key], let segment = state.segments[entry.segmentID]?.segment else { return nil }
            return ValueLocation(segment: segment, valueOffset: entry.valueOffset, length: Int(entry.valueLength),
                                 crc: entry.valueCRC, sequence: entry.sequence, timestamp: entry.timestamp,
                                 corrupt: entry.corrupt)
        }
    }

    /// Flags a key's current version as corrupt (a GET, CHECK or the scrub found its CRC wrong),
    /// unless it was overwritten meanwhile.
    /// Returns whether the entry was newly flagged.
    @discardableResult
    func markCorrupt(key: [UInt8], sequence: UInt64) -> Bool {
        state.withLock { state in
            guard var entry = state.index[key], entry.sequence == sequence, !entry.corrupt else { return false }
            entry.corrupt = true
            state.index[key] = entry
            state.corruptEntries += 1
            return true
        }
    }

    func exists(key: [UInt8]) throws -> Bool {
        try state.withLock { state in
            try Self.checkReadable(state)
            return state.index[key] != nil
        }
    }

    struct ScanItem: Sendable {
        var key: [UInt8]
        var length: UInt32
        var timestamp: UInt64
        var sequence: UInt64
    }

    /// Up to `limit` live keys after (forward) or before (backward) the cursor's sequence.
    func scan(after cursor: UInt64?, forward: Bool, limit: Int) throws -> [ScanItem] {
        try state.withLock { state in
            try Self.checkReadable(state)
            var items: [ScanItem] = []
            let order = state.order
            // First position past the cursor, by binary search over ascending sequences.
            func firstIndex(greaterThan value: UInt64) -> Int {
                var low = 0, high = order.count
                while low < high {
                    let mid = (low + high) / 2
                    if order[mid].sequence <= value { low = mid + 1 } else { high = mid }
                }
                return low
            }
            if forward {
                var i = cursor.map { firstIndex(greaterThan: $0) } ?? 0
                while i < order.count && items.count < limit {
                    let item = order[i]
                    if let entry = state.index[item.key], entry.sequence == item.sequence {
                        items.append(ScanItem(key: item.key, length: entry.valueLength, timestamp: entry.timestamp,
                                              sequence: item.sequence))
                    }
                    i += 1
                }
            } else {
                // Last position before the cursor.
                var i = (cursor.map { firstIndex(greaterThan: $0 == 0 ? 0 : $0 - 1) } ?? order.count) - 1
                while i >= 0 && items.count < limit {
                    let item = order[i]
                    if let entry = state.index[item.key], entry.sequence == item.sequence {
                        items.append(ScanItem(key: item.key, length: entry.valueLength, timestamp: entry.timestamp,
                                              sequence: item.sequence))
                    }
                    i -= 1
                }
            }
            return items
        }
    }

    /// Reads a whole value and checks it against its CRC; a mismatch flags the entry corrupt and
    /// throws, so no caller ever gets wrong bytes.
    func readVerified(_ location: ValueLocation, key: [UInt8], into buffer: UnsafeMutableRawBufferPointer) throws {
        try FileIO.preadFully(fd: location.segment.fd, into: buffer, count: location.length,
                              offset: location.valueOffset, path: location.segment.path)
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer[0..<location.length]))
        if crc != location.crc {
            markCorrupt(key: key, sequence: location.sequence)
            throw ShardServerError.corrupt(path: location.segment.path, offset: location.valueOffset,
                                           reason: "value checksum mismatch")
        }
    }

    // MARK: - Durability

    /// fsync of the active segment if something was written since the last one (interval policy,
    /// shutdown).
    func syncIfNeeded() throws {
        let segment: Segment? = state.withLock { state in
            guard state.unsynced else { return nil }
            state.unsynced = false
            return state.segments[state.activeID]?.segment
        }
        if let segment { try FileIO.fdatasync(fd: segment.fd, path: segment.path) }
    }

    var wantsSnapshot: Bool { state.withLock { $0.snapshotWanted } }

    /// Writes the index snapshot as of now (when one is wanted, or always with `force`): the
    /// state is captured under the lock, the active segment is fdatasync'ed so every byte the
    /// snapshot covers is on disk first, then the file is replaced atomically. Writers wait only
    /// for the capture (the dictionary is copied on their next write, not here).
    func writeSnapshot(force: Bool) throws {
        try snapshotWriter.withLock { _ in
            guard let captured = state.withLock({ state -> (IndexSnapshot, [[UInt8]: IndexEntry], Segment)? in
                guard !state.removed, force || state.snapshotWanted,
                      let active = state.segments[state.activeID] else { return nil }
                state.snapshotWanted = false
                let segments = state.segments.sorted { $0.key < $1.key }.map {
                    IndexSnapshot.SegmentRecord(id: $0.key, size: $0.value.size, deadBytes: $0.value.deadBytes)
                }
                let snapshot = IndexSnapshot(nextSequence: state.nextSequence, nextSeqID: state.nextSeqID,
                                             coveredSegment: state.activeID, coveredOffset: active.size,
                                             segments: segments, entries: [])
                return (snapshot, state.index, active.segment)
            }) else { return }
            var (snapshot, index, active) = captured
            do {
                try FileIO.fdatasync(fd: active.fd, path: active.path)
                snapshot.entries.reserveCapacity(index.count)
                for (key, entry) in index {
                    snapshot.entries.append(IndexSnapshot.EntryRecord(
                        key: key, segmentID: entry.segmentID, offset: entry.offset, valueLength: entry.valueLength,
                        valueCRC: entry.valueCRC, sequence: entry.sequence, timestamp: entry.timestamp, corrupt: entry.corrupt))
                }
                index = [:]
                try FileIO.writeAtomically(to: directory + "/" + IndexSnapshot.fileName, directory: directory) { write in
                    try snapshot.encode(chunkSize: IndexSnapshot.chunkSize, into: write)
                }
            } catch {
                state.withLock { $0.snapshotWanted = true }
                throw error
            }
        }
    }

    // MARK: - Maintenance: scrub and compaction

    /// Segment ids with their sizes, oldest first (for the scrub's walk).
    func segmentSizes() -> [(id: UInt32, size: UInt64)] {
        state.withLock { state in
            state.segments.map { ($0.key, $0.value.size) }.sorted { $0.id < $1.id }
        }
    }

    /// Verifies the entries of segment `id` from `offset` on, for about `budget` bytes; flags
    /// corrupt the live ones whose value fails its CRC. Returns where to continue (nil: segment
    /// done) and how many corrupt entries it found.
    func scrub(segmentID id: UInt32, from offset: UInt64, budget: UInt64) throws -> (next: UInt64?, corrupt: Int) {
        guard let (segment, size) = state.withLock({ state -> (Segment, UInt64)? in
            guard let s = state.segments[id] else { return nil }
            return (s.segment, s.size)
        }) else { return (nil, 0) }
        var scanner = SegmentScanner(segment: segment, fileSize: size, chunkSize: 1 << 20)
        var position = offset
        var found = 0
        var spent: UInt64 = 0
        while spent < budget {
            switch try scanner.step(at: position, maxValueLength: limits.maxValueLength, verifyValue: true) {
            case .end:
                return (nil, found)
            case .invalid:
                return (nil, found)
            case .entry(let header, let key, let at, let valueOK):
                if valueOK == false && !header.isTombstone {
                    let isLive = state.withLock { state -> Bool in
                        guard let entry = state.index[key] else { return false }
                        return entry.segmentID == id && entry.offset == at
                    }
                    if isLive && markCorrupt(key: key, sequence: header.sequence) { found += 1 }
                }
                position = at + header.totalLength
                spent += header.totalLength
            }
        }
        return (position, found)
    }

    /// The sealed segment most worth compacting: at least `ratio` of it dead.
    func compactionCandidate(minimumDeadRatio ratio: Double) -> UInt32? {
        state.withLock { state in
            state.segments
                .filter { $0.key != state.activeID && $0.value.size > 0
                    && Double($0.value.deadBytes) >= ratio * Double($0.value.size) }
                .max { Double($0.value.deadBytes) / Double($0.value.size) < Double($1.value.deadBytes) / Double($1.value.size) }?
                .key
        }
    }

    /// Copies the live entries of a sealed segment to the end of the active one (same sequence,
    /// timestamp and CRC, so order and identity do not change), syncs the copies, then deletes the
    /// old file. The lock is taken per entry, so readers and writers wait at most one entry's copy;
    /// readers already holding the old segment keep reading it until they let go.
    /// A crash part-way leaves both copies; recovery keeps one (same sequence, later position).
    func compact(segmentID id: UInt32) throws -> (reclaimed: UInt64, moved: Int) {
        guard let (segment, size, isOldest) = state.withLock({ state -> (Segment, UInt64, Bool)? in
            guard id != state.activeID, let s = state.segments[id] else { return nil }
            return (s.segment, s.size, state.segments.keys.min() == id)
        }) else { return (0, 0) }
        var scanner = SegmentScanner(segment: segment, fileSize: size)
        var position: UInt64 = 0
        var moved = 0
        scan: while true {
            switch try scanner.step(at: position, maxValueLength: limits.maxValueLength, verifyValue: false) {
            case .end:
                break scan
            case .invalid(let at, let reason):
                // Do not drop a segment we cannot read to the end: its tail may hold live data.
                throw ShardServerError.corrupt(path: segment.path, offset: at, reason: "compaction stopped: \(reason)")
            case .entry(let header, let key, let at, _):
                position = at + header.totalLength
                if header.isTombstone {
                    // A tombstone must outlive every older version of its key; those can only sit in
                    // this segment or older ones, so it can go once this is the oldest segment.
                    if isOldest { continue }
                    try state.withLock { state in
                        if state.index[key] != nil { return }  // re-set since: the newer value wins anyway
                        _ = try append(&state, header: header, key: key, value: UnsafeRawBufferPointer(start: nil, count: 0))
                    }
                    continue
                }
                let live = state.withLock { state -> Bool in
                    guard let entry = state.index[key] else { return false }
                    return entry.segmentID == id && entry.offset == at
                }
                guard live else { continue }
                let valueOffset = at + UInt64(EntryHeader.size) + UInt64(header.keyLength)
                try scanner.withBytes(at: valueOffset, count: Int(header.valueLength)) { raw in
                    guard let raw else {
                        throw ShardServerError.corrupt(path: segment.path, offset: valueOffset, reason: "value cut short")
                    }
                    try state.withLock { state in
                        guard var entry = state.index[key], entry.segmentID == id, entry.offset == at else { return }
                        let (newSegment, newOffset) = try append(&state, header: header, key: key, value: raw)
                        entry.segmentID = newSegment
                        entry.offset = newOffset
                        state.index[key] = entry
                    }
                }
                moved += 1
            }
        }
        // The copies must be on disk before the originals go.
        let active: Segment? = state.withLock { $0.segments[$0.activeID]?.segment }
        if let active { try FileIO.fdatasync(fd: active.fd, path: active.path) }
        state.withLock { state in
            _ = state.segments.removeValue(forKey: id)
            state.snapshotWanted = true
        }
        if unlink(segment.path) != 0 {
            throw ShardServerError.io(operation: "unlink", path: segment.path, errno: errno)
        }
        try FileIO.syncDirectory(directory)
        return (size, moved)
    }
}
