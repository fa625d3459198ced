/// The on-disk layout of one entry in a segment file. Everything is little-endian.
///
///     0  u32  magic "SHD1"
///     4  u8   flags (bit 0: tombstone)
///     5  u8   key length (1...255)
///     6  u16  reserved, 0
///     8  u32  value length (0...8 MiB)
///     12 u32  CRC32-C of the value
///     16 u64  sequence number: the write order, kept by compaction so SCAN order and
///             "newest wins" survive copies
///     24 u64  timestamp, Unix seconds
///     32 u32  reserved, 0
///     36 u32  CRC32-C of bytes 0..<36 and the key: a header that passes this is trusted for
///             its lengths, so a torn or garbled header is never followed into the file
///     40      key, then the value, contiguous (so sendfile can serve it as one range)
struct EntryHeader: Equatable, Sendable {
    static let size = 40
    static let magic: UInt32 = 0x3144_4853  // "SHD1" read as little-endian
    static let tombstoneFlag: UInt8 = 1

    var flags: UInt8
    var keyLength: UInt8
    var valueLength: UInt32
    var valueCRC: UInt32
    var sequence: UInt64
    var timestamp: UInt64

    var isTombstone: Bool { flags & Self.tombstoneFlag != 0 }
    var totalLength: UInt64 { UInt64(Self.size) + UInt64(keyLength) + UInt64(valueLength) }

    /// Header plus key, ready to be written in front of the value.
    func encode(key: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(Self.size + key.count)
        func put<T: FixedWidthInteger>(_ value: T) {
            withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
        }
        put(Self.magic)
        put(flags)
        put(keyLength)
        put(UInt16(0))
        put(valueLength)
        put(valueCRC)
        put(sequence)
        put(timestamp)
        put(UInt32(0))
        var crc = CRC32C.checksum(out)
        crc = CRC32C.checksum(key, continuing: crc)
        put(crc)
        out.append(contentsOf: key)
        return out
    }

    enum DecodeResult: Equatable {
        case entry(EntryHeader, key: [UInt8])
        case invalid(String)
    }

    /// Parses header and key from `bytes`, which must hold at least `size` bytes and, for a
    /// valid header, its key too.
    static func decode(_ bytes: UnsafeRawBufferPointer, maxValueLength: Int) -> DecodeResult {
        guard bytes.count >= size else { return .invalid("short header") }
        func get<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        guard get(0, UInt32.self) == magic else { return .invalid("bad magic") }
        let keyLength = get(5, UInt8.self)
        let valueLength = get(8, UInt32.self)
        guard keyLength > 0 else { return .invalid("empty key") }
        guard Int(valueLength) <= maxValueLength else { return .invalid("value length \(valueLength) over the limit") }
        guard bytes.count >= size + Int(keyLength) else { return .invalid("short key") }
        var crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<36]))
        crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[size..<(size + Int(keyLength))]), continuing: crc)
        guard crc == get(36, UInt32.self) else { return .invalid("header checksum mismatch") }
        let header = EntryHeader(
            flags: get(4, UInt8.self), keyLength: keyLength, valueLength: valueLength,
            valueCRC: get(12, UInt32.self), sequence: get(16, UInt64.self), timestamp: get(24, UInt64.self))
        return .entry(header, key: Array(bytes[size..<(size + Int(keyLength))]))
    }
}
