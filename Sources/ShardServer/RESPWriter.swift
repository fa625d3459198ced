import NIOCore

/// RESP2 reply encoding.
extension ByteBuffer {
    mutating func writeSimpleString(_ text: String) {
        writeInteger(UInt8(ascii: "+"))
        writeString(text)
        writeStaticString("\r\n")
    }

    /// An error line; CR and LF inside the text would break framing, so they become spaces.
    mutating func writeErrorReply(_ text: String) {
        writeInteger(UInt8(ascii: "-"))
        for byte in text.utf8 {
            writeInteger(byte == 13 || byte == 10 ? UInt8(ascii: " ") : byte)
        }
        writeStaticString("\r\n")
    }

    mutating func writeIntegerReply<T: BinaryInteger>(_ value: T) {
        writeInteger(UInt8(ascii: ":"))
        writeString(String(value))
        writeStaticString("\r\n")
    }

    mutating func writeBulkHeader(_ length: Int) {
        writeInteger(UInt8(ascii: "$"))
        writeString(String(length))
        writeStaticString("\r\n")
    }

    mutating func writeBulk<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        writeBulkHeader(bytes.count)
        writeBytes(bytes)
        writeStaticString("\r\n")
    }

    mutating func writeBulk(string: String) {
        writeBulk(Array(string.utf8))
    }

    mutating func writeNilReply() {
        writeStaticString("$-1\r\n")
    }

    mutating func writeArrayHeader(_ count: Int) {
        writeInteger(UInt8(ascii: "*"))
        writeString(String(count))
        writeStaticString("\r\n")
    }
}
