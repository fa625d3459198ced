/// A namespace's durable index: the in-memory index as of a point in the log, so start-up reads
/// this file and replays only the segment bytes written after that point instead of scanning
/// every segment.
///
/// It is written (temp file, fsync, rename) only after the segment bytes it covers were
/// fdatasync'ed, so a snapshot never describes data that a machine crash could lose. When it is
/// missing, fails its checksum, or disagrees with the segment files (one shorter than the snapshot
/// says, an unknown one, an entry in a vanished one), start-up ignores it and rebuilds the index
/// from the segments, as before the snapshot existed.
///
/// Layout, little-endian, CRC32-C of everything before it at the end:
///
///     u32 magic "SHIX", u32 version, u64 next sequence, u64 next seq-mode id,
///     u32 covered segment, u64 covered offset, u32 segment count, u64 entry count,
///     segments: u32 id, u64 size, u64 dead bytes
///     entries:  u8 key length, key, u32 segment, u64 offset, u32 value length, u32 value CRC,
///               u64 sequence, u64 timestamp, u8 flags (bit 0: corrupt)
///     u32 CRC32-C
struct IndexSnapshot: Equatable {
    static let fileName = "index.snapshot"
    static let magic: UInt32 = 0x5849_4853  // "SHIX" read as little-endian
    static let version: UInt32 = 1
    static let headerSize = 48
    static let segmentRecordSize = 20
    static let minimumEntrySize = 39  // with a one-byte key
    /// Segments a namespace may have (at 256 MiB each: 256 TiB); a larger count is damage.
    static let maxSegments = 1 << 20
    /// Largest snapshot read (about 20 million keys); a larger one is ignored and the index rebuilt.
    static let maxFileSize = 1 << 30

    struct SegmentRecord: Equatable {
        var id: UInt32
        var size: UInt64
        var deadBytes: UInt64
    }

    struct EntryRecord: Equatable {
        var key: [UInt8]
        var segmentID: UInt32
        var offset: UInt64
        var valueLength: UInt32
        var valueCRC: UInt32
        var sequence: UInt64
        var timestamp: UInt64
        var corrupt: Bool
    }

    var nextSequence: UInt64
    var nextSeqID: UInt64
    /// Everything before this position of the log (segment, offset) is in the snapshot.
    var coveredSegment: UInt32
    var coveredOffset: UInt64
    var segments: [SegmentRecord]
    var entries: [EntryRecord]

    func encode() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(Self.headerSize + segments.count * Self.segmentRecordSize
                            + entries.reduce(0) { $0 + Self.minimumEntrySize - 1 + $1.key.count } + 4)
        func put<T: FixedWidthInteger>(_ value: T) {
            withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
        }
        put(Self.magic)
        put(Self.version)
        put(nextSequence)
        put(nextSeqID)
        put(coveredSegment)
        put(coveredOffset)
        put(UInt32(segments.count))
        put(UInt64(entries.count))
        for segment in segments {
            put(segment.id)
            put(segment.size)
            put(segment.deadBytes)
        }
        for entry in entries {
            put(UInt8(entry.key.count))
            out.append(contentsOf: entry.key)
            put(entry.segmentID)
            put(entry.offset)
            put(entry.valueLength)
            put(entry.valueCRC)
            put(entry.sequence)
            put(entry.timestamp)
            put(UInt8(entry.corrupt ? 1 : 0))
        }
        put(CRC32C.checksum(out))
        return out
    }

    /// Parses a snapshot, or says why it cannot be used. Every count and length is checked against
    /// the bytes actually present before it is followed.
    static func decode(_ bytes: [UInt8], maxValueLength: Int) -> Result<IndexSnapshot, ShardServerError> {
        guard bytes.count >= headerSize + 4 else { return .failure(problem("file of \(bytes.count) bytes is too short")) }
        let body = bytes.count - 4
        let stored = bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: body, as: UInt32.self)) }
        let computed = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<body])) }
        guard stored == computed else { return .failure(problem("checksum mismatch")) }
        var reader = Reader(bytes: bytes, end: body)
        do {
            guard try reader.read(UInt32.self) == magic else { return .failure(problem("bad magic")) }
            let version = try reader.read(UInt32.self)
            guard version == Self.version else { return .failure(problem("version \(version), expected \(Self.version)")) }
            let nextSequence = try reader.read(UInt64.self)
            let nextSeqID = try reader.read(UInt64.self)
            let coveredSegment = try reader.read(UInt32.self)
            let coveredOffset = try reader.read(UInt64.self)
            let segmentCount = Int(try reader.read(UInt32.self))
            let entryCount = try reader.read(UInt64.self)
            guard segmentCount <= maxSegments, segmentCount * segmentRecordSize <= reader.remaining else {
                return .failure(problem("segment count \(segmentCount) does not fit the file"))
            }
            guard entryCount <= UInt64(reader.remaining / minimumEntrySize) else {
                return .failure(problem("entry count \(entryCount) does not fit the file"))
            }
            var segments: [SegmentRecord] = []
            segments.reserveCapacity(segmentCount)
            for _ in 0..<segmentCount {
                segments.append(SegmentRecord(id: try reader.read(UInt32.self), size: try reader.read(UInt64.self),
                                              deadBytes: try reader.read(UInt64.self)))
            }
            var entries: [EntryRecord] = []
            entries.reserveCapacity(Int(entryCount))
            for _ in 0..<entryCount {
                let keyLength = Int(try reader.read(UInt8.self))
                guard keyLength > 0 else { return .failure(problem("an entry has an empty key")) }
                let key = try reader.bytes(keyLength)
                let entry = EntryRecord(
                    key: key, segmentID: try reader.read(UInt32.self), offset: try reader.read(UInt64.self),
                    valueLength: try reader.read(UInt32.self), valueCRC: try reader.read(UInt32.self),
                    sequence: try reader.read(UInt64.self), timestamp: try reader.read(UInt64.self),
                    corrupt: try reader.read(UInt8.self) & 1 != 0)
                guard Int(entry.valueLength) <= maxValueLength else {
                    return .failure(problem("an entry's value length \(entry.valueLength) is over the limit"))
                }
                entries.append(entry)
            }
            guard reader.remaining == 0 else { return .failure(problem("\(reader.remaining) bytes after the last entry")) }
            return .success(IndexSnapshot(nextSequence: nextSequence, nextSeqID: nextSeqID, coveredSegment: coveredSegment,
                                          coveredOffset: coveredOffset, segments: segments, entries: entries))
        } catch {
            return .failure(problem("truncated"))
        }
    }

    /// Why a snapshot cannot be used, as the module's error (the reason is what start-up logs
    /// and `Namespace.Recovery` records).
    static func problem(_ reason: String) -> ShardServerError {
        .corrupt(path: fileName, offset: 0, reason: reason)
    }

    /// Bounds-checked little-endian reads over the snapshot's bytes.
    private struct Reader {
        let bytes: [UInt8]
        let end: Int
        var position = 0

        init(bytes: [UInt8], end: Int) {
            self.bytes = bytes
            self.end = end
        }

        var remaining: Int { end - position }

        mutating func read<T: FixedWidthInteger>(_: T.Type) throws(ShardServerError) -> T {
            let size = MemoryLayout<T>.size
            guard remaining >= size else { throw IndexSnapshot.problem("truncated") }
            let value = bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: position, as: T.self)) }
            position += size
            return value
        }

        mutating func bytes(_ count: Int) throws(ShardServerError) -> [UInt8] {
            guard count >= 0, remaining >= count else { throw IndexSnapshot.problem("truncated") }
            defer { position += count }
            return Array(bytes[position..<(position + count)])
        }
    }
}
