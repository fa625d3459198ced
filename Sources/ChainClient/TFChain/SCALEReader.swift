import Foundation

/// Reads SCALE (Substrate's codec) from a byte array. Every read checks the bytes left first, and
/// every length prefix is bounded by the bytes that remain, so hostile input ends in
/// `ChainError.decode(type:position:detail:)`, never in a crash or a huge allocation.
public struct SCALEReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var position: Int

    public init(_ bytes: [UInt8], position: Int = 0) {
        self.bytes = bytes
        self.position = max(0, min(position, bytes.count))
    }

    public var remaining: Int { bytes.count - position }
    public var isAtEnd: Bool { position >= bytes.count }

    public func error(_ type: String, _ detail: String, at offset: Int? = nil) -> ChainError {
        .decode(type: type, position: offset ?? position, detail: detail)
    }

    @inline(__always)
    mutating func need(_ count: Int, _ type: String) throws(ChainError) {
        guard count <= remaining else {
            throw error(type, "needs \(count) bytes, only \(remaining) left")
        }
    }

    public mutating func readByte(_ type: String = "u8") throws(ChainError) -> UInt8 {
        guard position < bytes.count else { throw error(type, "needs 1 byte, none left") }
        defer { position += 1 }
        return bytes[position]
    }

    /// A little-endian fixed-width integer (u8...u64, i8...i64).
    public mutating func readInteger<T: FixedWidthInteger>(_: T.Type, _ type: String) throws(ChainError) -> T {
        let size = MemoryLayout<T>.size
        try need(size, type)
        var value: T = 0
        for i in 0..<size { value |= T(truncatingIfNeeded: bytes[position + i]) << (8 * i) }
        position += size
        return value
    }

    public mutating func readU32(_ type: String = "u32") throws(ChainError) -> UInt32 { try readInteger(UInt32.self, type) }
    public mutating func readU64(_ type: String = "u64") throws(ChainError) -> UInt64 { try readInteger(UInt64.self, type) }

    public mutating func readBytes(_ count: Int, _ type: String) throws(ChainError) -> [UInt8] {
        guard count >= 0 else { throw error(type, "negative length \(count)") }
        try need(count, type)
        defer { position += count }
        return Array(bytes[position..<(position + count)])
    }

    public mutating func skip(_ count: Int, _ type: String) throws(ChainError) {
        try need(count, type)
        position += count
    }

    public mutating func readBool(_ type: String = "bool") throws(ChainError) -> Bool {
        let start = position
        switch try readByte(type) {
        case 0: return false
        case 1: return true
        case let other: throw error(type, "byte \(other) is not a bool (0 or 1)", at: start)
        }
    }

    /// A compact integer that must fit in `maxBits` (8, 16, 32 or 64). Non-canonical encodings
    /// (a longer mode than the value needs) are refused, as Substrate does.
    public mutating func readCompact(_ type: String = "Compact<u64>", maxBits: Int = 64) throws(ChainError) -> UInt64 {
        let start = position
        let first = try readByte(type)
        let value: UInt64
        switch first & 0b11 {
        case 0b00:
            value = UInt64(first >> 2)
        case 0b01:
            let second = try readByte(type)
            value = (UInt64(first) | UInt64(second) << 8) >> 2
            guard value >= 1 << 6 else { throw error(type, "non-canonical two-byte compact for \(value)", at: start) }
        case 0b10:
            try need(3, type)
            var raw = UInt64(first)
            for i in 0..<3 { raw |= UInt64(bytes[position + i]) << (8 * (i + 1)) }
            position += 3
            value = raw >> 2
            guard value >= 1 << 14 else { throw error(type, "non-canonical four-byte compact for \(value)", at: start) }
        default:
            let count = Int(first >> 2) + 4
            guard count <= 8 else {
                throw error(type, "compact integer of \(count) bytes does not fit in \(maxBits) bits", at: start)
            }
            try need(count, type)
            var raw: UInt64 = 0
            for i in 0..<count { raw |= UInt64(bytes[position + i]) << (8 * i) }
            position += count
            guard bytes[position - 1] != 0, raw >= 1 << 30 else {
                throw error(type, "non-canonical big-integer compact (\(count) bytes for \(raw))", at: start)
            }
            value = raw
        }
        if maxBits < 64, value >> UInt64(maxBits) != 0 {
            throw error(type, "compact value \(value) does not fit in \(maxBits) bits", at: start)
        }
        return value
    }

    /// A compact integer of up to `maxBytes` bytes (16 for u128), returned little-endian with
    /// trailing zero bytes removed (empty for zero).
    public mutating func readCompactWide(_ type: String, maxBytes: Int) throws(ChainError) -> [UInt8] {
        let start = position
        let first = try readByte(type)
        guard first & 0b11 == 0b11 else {
            position = start
            var value = try readCompact(type, maxBits: 32)
            var out = [UInt8]()
            while value > 0 { out.append(UInt8(value & 0xff)); value >>= 8 }
            return out
        }
        let count = Int(first >> 2) + 4
        guard count <= maxBytes else {
            throw error(type, "compact integer of \(count) bytes does not fit in \(maxBytes * 8) bits", at: start)
        }
        var out = try readBytes(count, type)
        guard out.last != 0 else { throw error(type, "non-canonical big-integer compact (zero top byte)", at: start) }
        if count == 4, UInt32(out[0]) | UInt32(out[1]) << 8 | UInt32(out[2]) << 16 | UInt32(out[3]) << 24 < 1 << 30 {
            throw error(type, "non-canonical big-integer compact (fits a shorter mode)", at: start)
        }
        while out.last == 0 { out.removeLast() }
        return out
    }

    /// A length prefix for `minElementSize`-byte elements, bounded by the bytes left.
    public mutating func readLength(_ type: String, minElementSize: Int) throws(ChainError) -> Int {
        let start = position
        let length = try readCompact(type, maxBits: 32)
        let perElement = UInt64(max(1, minElementSize))
        let (needed, overflow) = length.multipliedReportingOverflow(by: perElement)
        guard !overflow, needed <= UInt64(remaining) else {
            throw error(type, "length \(length) needs at least \(needed) more bytes, only \(remaining) left", at: start)
        }
        return Int(length)
    }

    /// Vec<u8> / bytes.
    public mutating func readByteVector(_ type: String = "Vec<u8>") throws(ChainError) -> [UInt8] {
        let count = try readLength(type, minElementSize: 1)
        return try readBytes(count, type)
    }

    /// A length-prefixed UTF-8 string.
    public mutating func readString(_ type: String = "String") throws(ChainError) -> String {
        let start = position
        let raw = try readByteVector(type)
        guard let text = String(bytes: raw, encoding: .utf8) else { throw error(type, "not valid UTF-8", at: start) }
        return text
    }

    public mutating func readOption<T>(_ type: String, _ body: (inout SCALEReader) throws(ChainError) -> T) throws(ChainError) -> T? {
        let start = position
        switch try readByte(type) {
        case 0: return nil
        case 1: return try body(&self)
        case let other: throw error(type, "option tag \(other) is neither 0 (None) nor 1 (Some)", at: start)
        }
    }

    public mutating func readVector<T>(_ type: String, minElementSize: Int,
                                       _ body: (inout SCALEReader) throws(ChainError) -> T) throws(ChainError) -> [T] {
        let count = try readLength(type, minElementSize: minElementSize)
        var out = [T]()
        out.reserveCapacity(count)
        for _ in 0..<count { out.append(try body(&self)) }
        return out
    }

    /// An enum tag that must be below `count` (for fixed enums such as Cause).
    public mutating func readVariantIndex(_ type: String, count: Int) throws(ChainError) -> Int {
        let start = position
        let tag = try readByte(type)
        guard Int(tag) < count else { throw error(type, "variant index \(tag) out of range (\(count) variants)", at: start) }
        return Int(tag)
    }

    /// Throws unless every byte was consumed: trailing bytes mean the type was wrong.
    public func expectEnd(_ type: String) throws(ChainError) {
        guard isAtEnd else { throw error(type, "\(remaining) unexpected trailing bytes") }
    }
}

/// Writes SCALE.
public struct SCALEWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func appendRaw<S: Sequence>(_ raw: S) where S.Element == UInt8 { bytes.append(contentsOf: raw) }

    public mutating func appendBool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    public mutating func appendCompact(_ value: UInt64) {
        switch value {
        case 0..<(1 << 6): bytes.append(UInt8(value) << 2)
        case (1 << 6)..<(1 << 14): append(UInt16(value) << 2 | 0b01)
        case (1 << 14)..<(1 << 30): append(UInt32(value) << 2 | 0b10)
        default:
            var count = 8
            while count > 4, value >> UInt64((count - 1) * 8) == 0 { count -= 1 }
            bytes.append(UInt8(count - 4) << 2 | 0b11)
            for i in 0..<count { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(8 * i))) }
        }
    }

    /// A compact integer given little-endian (for u128 values).
    public mutating func appendCompactWide(littleEndian raw: [UInt8]) {
        var trimmed = raw
        while trimmed.last == 0 { trimmed.removeLast() }
        if trimmed.count <= 8 {
            var value: UInt64 = 0
            for (i, b) in trimmed.enumerated() { value |= UInt64(b) << UInt64(8 * i) }
            appendCompact(value)
            return
        }
        bytes.append(UInt8(trimmed.count - 4) << 2 | 0b11)
        bytes.append(contentsOf: trimmed)
    }

    /// Vec<u8> / bytes: compact length then the bytes.
    public mutating func appendByteVector<C: Collection>(_ raw: C) where C.Element == UInt8 {
        appendCompact(UInt64(raw.count))
        bytes.append(contentsOf: raw)
    }

    public mutating func appendString(_ text: String) { appendByteVector(Array(text.utf8)) }

    public mutating func appendOption<T>(_ value: T?, _ body: (inout SCALEWriter, T) -> Void) {
        guard let value else { bytes.append(0); return }
        bytes.append(1)
        body(&self, value)
    }

    public mutating func appendVector<T>(_ values: [T], _ body: (inout SCALEWriter, T) -> Void) {
        appendCompact(UInt64(values.count))
        for value in values { body(&self, value) }
    }
}
