import NIOCore

/// A RESP2 reply as a 0-db node sends it.
public enum RESPValue: Sendable, Equatable {
    case simple(String)
    case error(String)
    case integer(Int64)
    /// nil is RESP's null bulk ($-1): for GET, a missing key.
    case bulk(ByteBuffer?)
    case array([RESPValue]?)

    var bytes: [UInt8]? {
        if case .bulk(let buffer?) = self { return Array(buffer.readableBytesView) }
        return nil
    }
}

/// One argument of a command: small ones are copied into the request, a value buffer is sent as it
/// is (a slice of the block's buffer: no copy between the erasure coder and the socket).
enum RESPArgument: Sendable {
    case text(String)
    case bytes([UInt8])
    case buffer(ByteBuffer)

    var count: Int {
        switch self {
        case .text(let s): return s.utf8.count
        case .bytes(let b): return b.count
        case .buffer(let b): return b.readableBytes
        }
    }
}

/// A command on its way to the handler: its encoded parts, and the promise its reply fulfils.
struct RESPRequest {
    var parts: [ByteBuffer]
    var promise: EventLoopPromise<RESPValue>

    /// `*N\r\n$len\r\narg\r\n...`; large buffers become their own parts.
    static func encode(_ arguments: [RESPArgument], allocator: ByteBufferAllocator) -> [ByteBuffer] {
        var parts: [ByteBuffer] = []
        var head = allocator.buffer(capacity: 64 + arguments.reduce(0) { $0 + ($1.count < 4096 ? $1.count + 16 : 16) })
        head.writeString("*\(arguments.count)\r\n")
        for argument in arguments {
            head.writeString("$\(argument.count)\r\n")
            switch argument {
            case .text(let s): head.writeString(s)
            case .bytes(let b): head.writeBytes(b)
            case .buffer(let b):
                if b.readableBytes < 4096 {
                    head.writeImmutableBuffer(b)
                } else {
                    parts.append(head)
                    parts.append(b)
                    head = allocator.buffer(capacity: 64)
                }
            }
            head.writeStaticString("\r\n")
        }
        parts.append(head)
        return parts
    }
}

/// Limits on what a node may send back, so a broken or hostile node cannot make the client buffer
/// without bound.
struct RESPReplyLimits: Sendable {
    var maxBulkLength = 16 << 20
    var maxArrayCount = 1 << 16
    var maxLineLength = 64 << 10
    var maxDepth = 4
}

struct RESPProtocolError: Error, CustomStringConvertible {
    let description: String
}

/// Decodes replies. Parsing works on indexes and consumes only whole replies, so a partial reply
/// just waits for more bytes; bulk payloads are zero-copy slices of the received bytes.
struct RESPReplyDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPValue
    let limits: RESPReplyLimits

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let (value, end) = try Self.parse(buffer, at: buffer.readerIndex, depth: 0, limits: limits) else {
            return .needMoreData
        }
        buffer.moveReaderIndex(to: end)
        context.fireChannelRead(wrapInboundOut(value))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }

    /// The line starting at `index` (without CRLF) and the index after its CRLF; nil when incomplete.
    static func line(_ buffer: ByteBuffer, at index: Int, limits: RESPReplyLimits) throws -> (String, Int)? {
        let available = buffer.writerIndex - index
        let searched = min(available, limits.maxLineLength + 2)
        let found: Int? = buffer.withUnsafeReadableBytes { raw -> Int? in
            let start = index - buffer.readerIndex
            guard searched > 1 else { return nil }
            var i = start
            while i < start + searched - 1 {
                if raw[i] == 0x0D && raw[i + 1] == 0x0A { return i - start }
                i += 1
            }
            return nil
        }
        guard let length = found else {
            if available > limits.maxLineLength + 2 {
                throw RESPProtocolError(description: "a reply line is longer than \(limits.maxLineLength) bytes")
            }
            return nil
        }
        let text = buffer.getString(at: index, length: length) ?? ""
        return (text, index + length + 2)
    }

    static func parse(_ buffer: ByteBuffer, at index: Int, depth: Int, limits: RESPReplyLimits) throws -> (RESPValue, Int)? {
        guard index < buffer.writerIndex, let type = buffer.getInteger(at: index, as: UInt8.self) else { return nil }
        guard let (text, next) = try line(buffer, at: index + 1, limits: limits) else { return nil }
        switch type {
        case UInt8(ascii: "+"): return (.simple(text), next)
        case UInt8(ascii: "-"): return (.error(text), next)
        case UInt8(ascii: ":"):
            guard let value = Int64(text) else { throw RESPProtocolError(description: "integer reply '\(text.prefix(32))' is not a number") }
            return (.integer(value), next)
        case UInt8(ascii: "$"):
            guard let length = Int(text), length >= -1 else { throw RESPProtocolError(description: "bad bulk length '\(text.prefix(32))'") }
            if length == -1 { return (.bulk(nil), next) }
            guard length <= limits.maxBulkLength else {
                throw RESPProtocolError(description: "bulk reply of \(length) bytes exceeds the \(limits.maxBulkLength) byte limit")
            }
            guard buffer.writerIndex - next >= length + 2 else { return nil }
            guard buffer.getInteger(at: next + length, as: UInt16.self) == 0x0D0A else {
                throw RESPProtocolError(description: "bulk reply not terminated by CRLF")
            }
            return (.bulk(buffer.getSlice(at: next, length: length)), next + length + 2)
        case UInt8(ascii: "*"):
            guard let count = Int(text), count >= -1 else { throw RESPProtocolError(description: "bad array length '\(text.prefix(32))'") }
            if count == -1 { return (.array(nil), next) }
            guard count <= limits.maxArrayCount else { throw RESPProtocolError(description: "array of \(count) elements is too long") }
            guard depth < limits.maxDepth else { throw RESPProtocolError(description: "arrays nested too deep") }
            var items: [RESPValue] = []
            items.reserveCapacity(count)
            var position = next
            for _ in 0..<count {
                guard let (item, after) = try parse(buffer, at: position, depth: depth + 1, limits: limits) else { return nil }
                items.append(item)
                position = after
            }
            return (.array(items), position)
        default:
            throw RESPProtocolError(description: "unknown reply type byte 0x\(String(type, radix: 16))")
        }
    }
}

/// Matches replies to requests in order (RESP answers in order, so many commands can be in
/// flight on one connection), and gives up on a connection whose reply is late: after a missed
/// reply the stream cannot be resynchronised.
final class RESPClientHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = RESPRequest
    typealias OutboundOut = ByteBuffer

    struct Failure: Error, CustomStringConvertible {
        let description: String
        /// Set when the failure is a missed reply deadline.
        var timeoutSeconds: Double? = nil
    }

    private var pending = CircularBuffer<(promise: EventLoopPromise<RESPValue>, deadline: NIODeadline)>()
    private var timer: Scheduled<Void>?
    private let timeout: TimeAmount
    private var failure: Failure?

    init(timeout: TimeAmount) { self.timeout = timeout }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let failure {
            request.promise.fail(failure)
            promise?.fail(failure)
            return
        }
        pending.append((request.promise, .now() + timeout))
        for (i, part) in request.parts.enumerated() {
            context.write(wrapOutboundOut(part), promise: i == request.parts.count - 1 ? promise : nil)
        }
        if timer == nil { armTimer(context: context) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = unwrapInboundIn(data)
        guard let first = pending.popFirst() else {
            failAll(Failure(description: "unsolicited reply"), context: context)
            return
        }
        first.promise.succeed(value)
        // Replies arriving means the node is alive: the next one has a full timeout from now.
        if !pending.isEmpty {
            let renewed = NIODeadline.now() + timeout
            pending[pending.startIndex].deadline = max(pending[pending.startIndex].deadline, renewed)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(Failure(description: "\(error)"), context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(Failure(description: "the node closed the connection"), context: context)
        context.fireChannelInactive()
    }

    private func armTimer(context: ChannelHandlerContext) {
        let period = TimeAmount.milliseconds(max(50, min(1000, timeout.nanoseconds / 4_000_000)))
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: period) {
            self.timer = nil
            guard let first = self.pending.first else { return }
            if first.deadline < .now() {
                let seconds = Double(self.timeout.nanoseconds) / 1e9
                self.failAll(Failure(description: "no reply within \(seconds) s", timeoutSeconds: seconds), context: context)
            } else {
                self.armTimer(context: context)
            }
        }
    }

    private func failAll(_ error: Failure, context: ChannelHandlerContext) {
        if failure == nil { failure = error }
        timer?.cancel()
        timer = nil
        while let entry = pending.popFirst() { entry.promise.fail(failure ?? error) }
        context.close(promise: nil)
    }
}
