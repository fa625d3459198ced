#if canImport(Glibc)
import Glibc
#endif

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
    /// Largest snapshot read: 64 GiB is over 200 million entries with the longest keys, an index
    /// that needs more memory than a node has. A larger file is damage; it is ignored and the
    /// index rebuilt. The file is read in chunks, so its size is never allocated at once.
    static let maxFileSize = 64 << 30
    /// Bytes read (and written) per system call while streaming a snapshot.
    static let chunkSize = 4 << 20
    /// Entries reserved before the checksum could vouch for the count; more grow as they come.
    static let maxReservedEntries = 1 << 20

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

    /// The whole encoding in memory (tests; the server streams it with `encode(chunkSize:into:)`).
    func encode() -> [UInt8] {
        var whole = [UInt8]()
        // The closure cannot throw here; `try?` only satisfies the signature.
        try? encode(chunkSize: Int.max) { whole += $0 }
        return whole
    }

    /// Encodes in pieces of about `chunkSize` bytes handed to `sink` in order, so writing a large
    /// index never holds its whole encoding in memory.
    func encode(chunkSize: Int, into sink: ([UInt8]) throws -> Void) throws {
        var out = [UInt8]()
        let total = Self.headerSize + segments.count * Self.segmentRecordSize
            + entries.reduce(0) { $0 + Self.minimumEntrySize - 1 + $1.key.count } + 4
        out.reserveCapacity(min(total, chunkSize) + 512)
        var crc: UInt32 = 0
        func put<T: FixedWidthInteger>(_ value: T) {
            withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
        }
        func flushIfFull() throws {
            guard out.count >= chunkSize else { return }
            crc = CRC32C.checksum(out, continuing: crc)
            try sink(out)
            out.removeAll(keepingCapacity: true)
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
            try flushIfFull()
        }
        crc = CRC32C.checksum(out, continuing: crc)
        put(crc)
        try sink(out)
    }

    /// Parses a snapshot held in memory, or says why it cannot be used.
    static func decode(_ bytes: [UInt8], maxValueLength: Int, chunkSize: Int = chunkSize) -> Result<IndexSnapshot, ShardServerError> {
        guard bytes.count >= headerSize + 4 else { return .failure(problem("file of \(bytes.count) bytes is too short")) }
        let body = bytes.count - 4
        let stored = bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: body, as: UInt32.self)) }
        var reader = Reader(bodySize: body, chunkSize: chunkSize) { offset, count in Array(bytes[offset..<(offset + count)]) }
        return parse(&reader, storedChecksum: stored, maxValueLength: maxValueLength)
    }

    /// Reads the snapshot at `path` in chunks of `chunkSize` bytes, or says why it cannot be used.
    /// The file may be at most `maxFileSize` bytes (a parameter so tests can show a file over the
    /// limit is refused without writing gigabytes).
    static func read(path: String, maxValueLength: Int, maxFileSize: Int = maxFileSize,
                     chunkSize: Int = chunkSize) -> Result<IndexSnapshot, ShardServerError> {
        let fd: Int32
        do { fd = try FileIO.open(path, flags: O_RDONLY) } catch {
            return .failure(problem("unreadable: \(error)"))
        }
        defer { close(fd) }
        let size: Int
        var trailer = [UInt8](repeating: 0, count: 4)
        do {
            size = Int(try FileIO.fileSize(fd: fd, path: path))
            guard size <= maxFileSize else {
                return .failure(problem("file of \(size) bytes is larger than the \(maxFileSize) a snapshot may be"))
            }
            guard size >= headerSize + 4 else { return .failure(problem("file of \(size) bytes is too short")) }
            try trailer.withUnsafeMutableBytes { try FileIO.preadFully(fd: fd, into: $0, count: 4, offset: UInt64(size - 4), path: path) }
        } catch {
            return .failure(problem("unreadable: \(error)"))
        }
        let stored = trailer.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
        var reader = Reader(bodySize: size - 4, chunkSize: chunkSize) { offset, count throws(ShardServerError) in
            var chunk = [UInt8](repeating: 0, count: count)
            do {
                try chunk.withUnsafeMutableBytes {
                    try FileIO.preadFully(fd: fd, into: $0, count: count, offset: UInt64(offset), path: path)
                }
            } catch {
                // Shrunk while being read: as unusable as a torn file.
                throw problem("unreadable: \(error)")
            }
            return chunk
        }
        return parse(&reader, storedChecksum: stored, maxValueLength: maxValueLength)
    }

    /// Parses the body while the reader checksums it; the result counts only when the checksum of
    /// every body byte matches the stored one. Every count and length is checked against the bytes
    /// actually present before it is followed.
    private static func parse(_ reader: inout Reader, storedChecksum: UInt32, maxValueLength: Int) -> Result<IndexSnapshot, ShardServerError> {
        do {
            guard try reader.read(UInt32.self) == magic else { return .failure(unusable(&reader, storedChecksum, "bad magic")) }
            let version = try reader.read(UInt32.self)
            guard version == Self.version else {
                return .failure(unusable(&reader, storedChecksum, "version \(version), expected \(Self.version)"))
            }
            let nextSequence = try reader.read(UInt64.self)
            let nextSeqID = try reader.read(UInt64.self)
            let coveredSegment = try reader.read(UInt32.self)
            let coveredOffset = try reader.read(UInt64.self)
            let segmentCount = Int(try reader.read(UInt32.self))
            let entryCount = try reader.read(UInt64.self)
            guard segmentCount <= maxSegments, segmentCount * segmentRecordSize <= reader.remaining else {
                return .failure(unusable(&reader, storedChecksum, "segment count \(segmentCount) does not fit the file"))
            }
            guard entryCount <= UInt64((reader.remaining - segmentCount * segmentRecordSize) / minimumEntrySize) else {
                return .failure(unusable(&reader, storedChecksum, "entry count \(entryCount) does not fit the file"))
            }
            var segments: [SegmentRecord] = []
            segments.reserveCapacity(segmentCount)
            for _ in 0..<segmentCount {
                segments.append(SegmentRecord(id: try reader.read(UInt32.self), size: try reader.read(UInt64.self),
                                              deadBytes: try reader.read(UInt64.self)))
            }
            var entries: [EntryRecord] = []
            // The count fits the file, but the checksum has not vouched for it yet.
            entries.reserveCapacity(min(Int(entryCount), maxReservedEntries))
            for _ in 0..<entryCount {
                let keyLength = Int(try reader.read(UInt8.self))
                guard keyLength > 0 else { return .failure(unusable(&reader, storedChecksum, "an entry has an empty key")) }
                let key = try reader.bytes(keyLength)
                let entry = EntryRecord(
                    key: key, segmentID: try reader.read(UInt32.self), offset: try reader.read(UInt64.self),
                    valueLength: try reader.read(UInt32.self), valueCRC: try reader.read(UInt32.self),
                    sequence: try reader.read(UInt64.self), timestamp: try reader.read(UInt64.self),
                    corrupt: try reader.read(UInt8.self) & 1 != 0)
                guard Int(entry.valueLength) <= maxValueLength else {
                    return .failure(unusable(&reader, storedChecksum, "an entry's value length \(entry.valueLength) is over the limit"))
                }
                entries.append(entry)
            }
            guard reader.remaining == 0 else {
                return .failure(unusable(&reader, storedChecksum, "\(reader.remaining) bytes after the last entry"))
            }
            guard reader.checksum == storedChecksum else { return .failure(problem("checksum mismatch")) }
            return .success(IndexSnapshot(nextSequence: nextSequence, nextSeqID: nextSeqID, coveredSegment: coveredSegment,
                                          coveredOffset: coveredOffset, segments: segments, entries: entries))
        } catch {
            return .failure(unusable(&reader, storedChecksum, error.snapshotReason))
        }
    }

    /// Why parsing stopped; a damaged file is reported as a checksum mismatch (as it was when the
    /// whole file was checked before parsing), which reads the rest of the body to find out.
    private static func unusable(_ reader: inout Reader, _ stored: UInt32, _ reason: String) -> ShardServerError {
        guard let checksum = reader.checksumOfWholeBody(), checksum == stored else { return problem("checksum mismatch") }
        return problem(reason)
    }

    /// Why a snapshot cannot be used, as the module's error (the reason is what start-up logs
    /// and `Namespace.Recovery` records).
    static func problem(_ reason: String) -> ShardServerError {
        .corrupt(path: fileName, offset: 0, reason: reason)
    }

    /// Bounds-checked little-endian reads over the snapshot's body, loaded `chunkSize` bytes at a
    /// time and checksummed as loaded.
    private struct Reader {
        typealias Load = (_ offset: Int, _ count: Int) throws(ShardServerError) -> [UInt8]

        private let bodySize: Int
        private let chunkSize: Int
        private let load: Load
        private var buffer: [UInt8] = []
        private var position = 0
        private var loaded = 0
        private var consumed = 0
        /// CRC32-C of the body bytes loaded so far (all of it once `remaining` is 0).
        private(set) var checksum: UInt32 = 0

        init(bodySize: Int, chunkSize: Int, load: @escaping Load) {
            self.bodySize = bodySize
            self.chunkSize = max(1, chunkSize)
            self.load = load
        }

        var remaining: Int { bodySize - consumed }

        /// Makes `count` unread bytes available in `buffer` from `position`.
        private mutating func ensure(_ count: Int) throws(ShardServerError) {
            guard remaining >= count else { throw IndexSnapshot.problem("truncated") }
            let buffered = buffer.count - position
            guard buffered < count else { return }
            let want = min(max(chunkSize, count - buffered), bodySize - loaded)
            let chunk = try load(loaded, want)
            guard chunk.count == want else { throw IndexSnapshot.problem("truncated") }
            checksum = CRC32C.checksum(chunk, continuing: checksum)
            loaded += want
            if buffered == 0 {
                buffer = chunk
            } else {
                buffer = Array(buffer[position...]) + chunk
            }
            position = 0
        }

        /// Loads (and drops) whatever of the body is not loaded yet; nil when it cannot be read.
        mutating func checksumOfWholeBody() -> UInt32? {
            buffer = []
            position = 0
            while loaded < bodySize {  // each pass loads at least one byte
                let want = min(chunkSize, bodySize - loaded)
                guard let chunk = try? load(loaded, want), chunk.count == want else { return nil }
                checksum = CRC32C.checksum(chunk, continuing: checksum)
                loaded += want
            }
            consumed = bodySize
            return checksum
        }

        mutating func read<T: FixedWidthInteger>(_: T.Type) throws(ShardServerError) -> T {
            let size = MemoryLayout<T>.size
            try ensure(size)
            let value = buffer.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: position, as: T.self)) }
            position += size
            consumed += size
            return value
        }

        mutating func bytes(_ count: Int) throws(ShardServerError) -> [UInt8] {
            guard count >= 0 else { throw IndexSnapshot.problem("truncated") }
            try ensure(count)
            defer { position += count; consumed += count }
            return Array(buffer[position..<(position + count)])
        }
    }
}
