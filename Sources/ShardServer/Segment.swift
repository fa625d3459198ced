#if canImport(Glibc)
import Glibc
#endif

/// One append-only segment file of a namespace, with its descriptor kept open for the life of the
/// object. Readers hold a reference while they read, so compaction can unlink the file at any time:
/// the descriptor (and the inode) lives until the last reader lets go.
final class Segment: Sendable {
    let id: UInt32
    let path: String
    let fd: Int32

    init(id: UInt32, path: String, fd: Int32) {
        self.id = id
        self.path = path
        self.fd = fd
    }

    deinit { Glibc.close(fd) }

    static func fileName(id: UInt32) -> String {
        let digits = String(id)
        return "seg-" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits + ".dat"
    }

    /// The id in a segment file name, or nil when the name is not one.
    static func id(fromFileName name: String) -> UInt32? {
        guard name.hasPrefix("seg-"), name.hasSuffix(".dat"), name.count == 16 else { return nil }
        return UInt32(name.dropFirst(4).dropLast(4))
    }

    static func open(directory: String, id: UInt32, create: Bool) throws -> Segment {
        let path = directory + "/" + fileName(id: id)
        let flags = create ? (O_RDWR | O_CREAT | O_EXCL) : O_RDWR
        let fd = try FileIO.open(path, flags: flags, mode: 0o600)
        return Segment(id: id, path: path, fd: fd)
    }
}

/// Reads a segment front to back through one large buffer, so start-up, scrub and compaction cost
/// one system call per buffer, not per entry.
struct SegmentScanner {
    static let chunkSize = 9 << 20  // holds any whole entry: 40 + 255 + 8 MiB

    let segment: Segment
    let fileSize: UInt64
    private var chunk: [UInt8]
    private var chunkStart: UInt64 = 0
    private var chunkLength = 0

    init(segment: Segment, fileSize: UInt64, chunkSize: Int = SegmentScanner.chunkSize) {
        self.segment = segment
        self.fileSize = fileSize
        self.chunk = [UInt8](repeating: 0, count: chunkSize)
    }

    /// Calls `body` with `count` bytes at `offset`, or with nil when the file ends first.
    mutating func withBytes<R>(at offset: UInt64, count: Int,
                               _ body: (UnsafeRawBufferPointer?) throws -> R) throws -> R {
        guard offset + UInt64(count) <= fileSize else { return try body(nil) }
        if count > chunk.count { chunk = [UInt8](repeating: 0, count: count) }
        if offset < chunkStart || offset + UInt64(count) > chunkStart + UInt64(chunkLength) {
            let want = Int(min(UInt64(chunk.count), fileSize - offset))
            let segment = self.segment
            let got = try chunk.withUnsafeMutableBytes { (raw) in
                try FileIO.pread(fd: segment.fd, into: raw, count: want, offset: offset, path: segment.path)
            }
            chunkStart = offset
            chunkLength = got
            guard got >= count else { return try body(nil) }
        }
        let start = Int(offset - chunkStart)
        return try chunk.withUnsafeBytes { (raw) in
            try body(UnsafeRawBufferPointer(rebasing: raw[start..<(start + count)]))
        }
    }

    enum Step {
        case entry(EntryHeader, key: [UInt8], offset: UInt64, valueOK: Bool?)
        case end
        case invalid(offset: UInt64, reason: String)
    }

    /// Parses the entry at `offset`; with `verifyValue` also checks the value's CRC.
    mutating func step(at offset: UInt64, maxValueLength: Int, verifyValue: Bool) throws -> Step {
        if offset == fileSize { return .end }
        let headerBytes = Int(min(UInt64(EntryHeader.size + 255), fileSize - offset))
        let decoded = try withBytes(at: offset, count: headerBytes) { (raw) -> EntryHeader.DecodeResult in
            guard let raw else { return .invalid("short header") }
            return EntryHeader.decode(raw, maxValueLength: maxValueLength)
        }
        guard case .entry(let header, let key) = decoded else {
            if case .invalid(let reason) = decoded { return .invalid(offset: offset, reason: reason) }
            return .end
        }
        guard offset + header.totalLength <= fileSize else {
            return .invalid(offset: offset, reason: "entry runs past the end of the file")
        }
        var valueOK: Bool? = nil
        if verifyValue {
            let valueOffset = offset + UInt64(EntryHeader.size) + UInt64(header.keyLength)
            valueOK = try withBytes(at: valueOffset, count: Int(header.valueLength)) { (raw) -> Bool in
                guard let raw else { return false }
                return CRC32C.checksum(raw) == header.valueCRC
            }
        }
        return .entry(header, key: key, offset: offset, valueOK: valueOK)
    }
}
