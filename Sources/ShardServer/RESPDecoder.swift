import NIOCore

/// One request as the decoder hands it on.
enum RESPFrame: Sendable {
    /// Command name and arguments, slices of the receive buffer (no copy).
    case command([ByteBuffer])
    /// A well-framed request the server refuses (too large): answer the error, keep serving.
    case invalid(String)
    /// Framing is lost (bad header, missing CRLF, bound exceeded past recovery): answer, then close.
    case fatal(String)
}

/// Bounds the decoder enforces before it trusts any length a client sends.
struct RESPLimits: Sendable {
    /// Elements in one multibulk (MGET takes up to 1023 keys plus its name).
    var maxArguments = 1025
    /// Largest bulk string kept (a value: 8 MiB).
    var maxBulkLength = 8 << 20
    /// Bytes of all arguments of one request.
    var maxRequestBytes = (8 << 20) + (1 << 20)
    /// An oversized bulk up to this size is read and thrown away, so the client gets an error
    /// and the connection stays usable; beyond it the connection is closed.
    var maxSkippedBytes = 64 << 20
    /// Longest inline (telnet-style) command line.
    var maxInlineLength = 64 << 10
}

/// RESP2 request decoder: multibulk (`*N`, `$len` bulks) and inline commands, pipelined.
struct RESPDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPFrame

    private static let headerLineLimit = 24  // '*' or '$', up to 20 digits and a sign, CRLF

    let limits: RESPLimits
    private var arguments: [ByteBuffer] = []
    /// Bulk strings still expected in the current multibulk.
    private var remaining = 0
    private var requestBytes = 0
    /// Bytes of an oversized bulk (and its CRLF) still to discard.
    private var skipping = 0
    private var skippedTotal = 0
    /// The error to answer once the current multibulk has been consumed.
    private var refusal: String?
    private var broken = false

    init(limits: RESPLimits = RESPLimits()) {
        self.limits = limits
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        switch decodeStep(&buffer) {
        case .needMoreData:
            return .needMoreData
        case .continue:
            return .continue
        case .frame(let frame):
            context.fireChannelRead(Self.wrapInboundOut(frame))
            return .continue
        }
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // Complete requests before the EOF still run; a partial one is dropped with the connection.
        while true {
            switch decodeStep(&buffer) {
            case .needMoreData:
                buffer.moveReaderIndex(to: buffer.writerIndex)
                return .needMoreData
            case .continue:
                continue
            case .frame(let frame):
                context.fireChannelRead(Self.wrapInboundOut(frame))
            }
        }
    }

    enum Step: Equatable {
        case needMoreData
        case `continue`
        case frame(RESPFrame)

        static func == (lhs: Step, rhs: Step) -> Bool {
            switch (lhs, rhs) {
            case (.needMoreData, .needMoreData), (.continue, .continue): return true
            default: return false
            }
        }
    }

    /// One decoding step, independent of a channel (the unit and fuzz tests drive this).
    mutating func decodeStep(_ buffer: inout ByteBuffer) -> Step {
        if broken {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        if skipping > 0 {
            let n = min(skipping, buffer.readableBytes)
            buffer.moveReaderIndex(forwardBy: n)
            skipping -= n
            if skipping > 0 { return .needMoreData }
            remaining -= 1
            return finishIfComplete()
        }
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return .needMoreData }
        if remaining == 0 {
            if first == UInt8(ascii: "*") {
                return multibulkHeader(&buffer)
            }
            return inline(&buffer)
        }
        guard first == UInt8(ascii: "$") else {
            return fail("Protocol error: expected '$', got '\(Self.printable(first))'")
        }
        let line: HeaderLine = Self.headerLine(buffer)
        let length: Int
        switch line {
        case .incomplete: return .needMoreData
        case .invalid: return fail("Protocol error: invalid bulk length")
        case .value(let value, _) where value < 0: return fail("Protocol error: invalid bulk length")
        case .value(let value, _): length = value
        }
        guard case .value(_, let lineLength) = line else { return .needMoreData }
        if length > limits.maxBulkLength || requestBytes + length > limits.maxRequestBytes {
            if length > limits.maxSkippedBytes || skippedTotal + length > limits.maxSkippedBytes {
                return fail("Protocol error: bulk length \(length) is over the limit of \(limits.maxBulkLength) bytes")
            }
            if refusal == nil {
                refusal = length > limits.maxBulkLength
                    ? "Value too large (\(length) bytes, limit \(limits.maxBulkLength))"
                    : "Request too large (limit \(limits.maxRequestBytes) bytes)"
            }
            buffer.moveReaderIndex(forwardBy: lineLength)
            skipping = length + 2
            skippedTotal += length + 2
            arguments.removeAll()
            return .continue
        }
        let dataStart = buffer.readerIndex + lineLength
        guard buffer.readableBytes >= lineLength + length + 2 else { return .needMoreData }
        guard buffer.getInteger(at: dataStart + length, as: UInt8.self) == UInt8(ascii: "\r"),
              buffer.getInteger(at: dataStart + length + 1, as: UInt8.self) == UInt8(ascii: "\n") else {
            return fail("Protocol error: expected CRLF after a bulk string of \(length) bytes")
        }
        if refusal == nil, let slice = buffer.getSlice(at: dataStart, length: length) {
            arguments.append(slice)
            requestBytes += length
        }
        buffer.moveReaderIndex(to: dataStart + length + 2)
        remaining -= 1
        return finishIfComplete()
    }

    private mutating func multibulkHeader(_ buffer: inout ByteBuffer) -> Step {
        switch Self.headerLine(buffer) {
        case .incomplete:
            return .needMoreData
        case .invalid:
            return fail("Protocol error: invalid multibulk length")
        case .value(let count, let lineLength):
            if count < -1 { return fail("Protocol error: invalid multibulk length") }
            if count > limits.maxArguments {
                return fail("Protocol error: \(count) arguments, the limit is \(limits.maxArguments)")
            }
            buffer.moveReaderIndex(forwardBy: lineLength)
            if count <= 0 { return .continue }  // *0 and *-1: nothing to run, as Redis does
            remaining = count
            requestBytes = 0
            skippedTotal = 0
            refusal = nil
            arguments.removeAll(keepingCapacity: true)
            arguments.reserveCapacity(min(count, 16))
            return .continue
        }
    }

    private mutating func inline(_ buffer: inout ByteBuffer) -> Step {
        let view = buffer.readableBytesView
        let searchEnd = view.index(view.startIndex, offsetBy: min(view.count, limits.maxInlineLength + 2))
        guard let newline = view[view.startIndex..<searchEnd].firstIndex(of: UInt8(ascii: "\n")) else {
            if view.count > limits.maxInlineLength { return fail("Protocol error: too big inline request") }
            return .needMoreData
        }
        let lineLength = newline - view.startIndex
        var line = buffer.getSlice(at: buffer.readerIndex, length: lineLength) ?? ByteBuffer()
        buffer.moveReaderIndex(forwardBy: lineLength + 1)
        var words: [ByteBuffer] = []
        var start: Int? = nil
        let bytes = line.readableBytesView
        for i in bytes.indices {
            let b = bytes[i]
            let isSpace = b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") || b == UInt8(ascii: "\r")
            if isSpace {
                if let s = start {
                    words.append(line.getSlice(at: s, length: i - s) ?? ByteBuffer())
                    start = nil
                }
            } else if start == nil {
                start = i
            }
        }
        if let s = start { words.append(line.getSlice(at: s, length: bytes.endIndex - s) ?? ByteBuffer()) }
        line.clear()
        if words.isEmpty { return .continue }
        if words.count > limits.maxArguments {
            return .frame(.invalid("Protocol error: \(words.count) arguments, the limit is \(limits.maxArguments)"))
        }
        return .frame(.command(words))
    }

    private mutating func finishIfComplete() -> Step {
        guard remaining == 0 else { return .continue }
        defer {
            arguments = []
            refusal = nil
            requestBytes = 0
            skippedTotal = 0
        }
        if let refusal { return .frame(.invalid(refusal)) }
        return .frame(.command(arguments))
    }

    private mutating func fail(_ message: String) -> Step {
        broken = true
        arguments = []
        return .frame(.fatal(message))
    }

    enum HeaderLine {
        case incomplete
        case invalid
        /// The integer after the type byte, and the line's length including CRLF.
        case value(Int, Int)
    }

    /// Parses `*N\r\n` or `$N\r\n` at the reader index without consuming it. Lines longer than any
    /// valid header are invalid even before their CRLF arrives.
    static func headerLine(_ buffer: ByteBuffer) -> HeaderLine {
        let view = buffer.readableBytesView
        let limit = min(view.count, headerLineLimit)
        var value = 0
        var negative = false
        var digits = 0
        var i = view.startIndex + 1
        let end = view.startIndex + limit
        while i < end {
            let b = view[i]
            if b == UInt8(ascii: "\r") {
                guard i + 1 < view.endIndex else { return .incomplete }
                guard view[i + 1] == UInt8(ascii: "\n"), digits > 0 else { return .invalid }
                return .value(negative ? -value : value, i + 2 - view.startIndex)
            }
            if b == UInt8(ascii: "-") && i == view.startIndex + 1 {
                negative = true
            } else if b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") {
                digits += 1
                if digits > 18 { return .invalid }  // beyond any bound, and no overflow
                value = value * 10 + Int(b - UInt8(ascii: "0"))
            } else {
                return .invalid
            }
            i += 1
        }
        return view.count >= headerLineLimit ? .invalid : .incomplete
    }

    static func printable(_ byte: UInt8) -> String {
        (0x21...0x7E).contains(byte) ? String(UnicodeScalar(byte)) : "\\x" + String(byte, radix: 16)
    }
}
