import CCRC32C

/// CRC32-C, the checksum 0-db uses for payloads (and we use for headers too).
enum CRC32C {
    static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return ccrc32c_extend(crc, base, bytes.count)
    }

    static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }

    static var isHardwareAccelerated: Bool { ccrc32c_hardware() != 0 }
}
