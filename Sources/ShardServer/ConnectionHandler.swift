import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// One client connection: decodes its RESP requests, runs them in order, one at a time, and holds
/// back reads while replies are waiting (on fsync or the thread pool), while the socket is not
/// writable (a slow reader), or while many requests are queued, so no client can make the server
/// buffer without bound.
///
/// Decoding and the idle timeout live here rather than in separate pipeline handlers
/// (ByteToMessageHandler, IdleStateHandler): on the request path that saves a pipeline hop per
/// read and a promise per write, which measured as a good part of the per-request cost.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    private static let maxQueued = 128

    private let server: ServerContext
    private var processor: CommandProcessor?
    private var queue = CircularBuffer<RESPFrame>()
    private var waiting = false
    private var readHeld = false
    private var closing = false
    private var unflushed = false
    private var counted = false
    /// The latency shard this connection records into, and the deferred command being timed.
    private let latencyShard: Int
    private var pendingTiming: (command: TimedCommand, start: UInt64)?
    private var decoder: RESPDecoder
    /// Received bytes not yet decoded (a partial request); nil when none.
    private var cumulation: ByteBuffer?
    /// More undecoded bytes than this means a client is past every bound the decoder enforces.
    private let maxBuffered: Int
    /// Monotonic microseconds of the last read or write; the idle check compares against it.
    private var lastActivity: UInt64 = 0
    private var idleCheck: Scheduled<Void>?

    init(server: ServerContext, limits: RESPLimits) {
        self.server = server
        self.latencyShard = server.counters.latency.assignShard()
        self.decoder = RESPDecoder(limits: limits)
        self.maxBuffered = limits.maxRequestBytes + (4 << 20)
    }

    func channelActive(context: ChannelHandlerContext) {
        let current = server.counters.connectionsCurrent.wrappingAdd(1, ordering: .relaxed).newValue
        counted = true
        server.counters.connectionsTotal.wrappingAdd(1, ordering: .relaxed)
        if current > server.config.maxClients {
            server.counters.connectionsRefused.wrappingAdd(1, ordering: .relaxed)
            closeAfter("Too many clients, try again later", context: context)
            return
        }
        guard let processor = CommandProcessor(server: server, eventLoop: context.eventLoop,
                                               allocator: context.channel.allocator) else {
            closeAfter("Internal error: default namespace missing", context: context)
            return
        }
        self.processor = processor
        lastActivity = Self.monotonicMicros()
        if let idle = server.config.idleTimeoutSeconds {
            scheduleIdleCheck(context: context, limit: UInt64(idle) * 1_000_000,
                              period: .milliseconds(Int64(max(250, idle * 250))))
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if counted {
            server.counters.connectionsCurrent.wrappingSubtract(1, ordering: .relaxed)
            counted = false
        }
        closing = true
        queue.removeAll()
        cumulation = nil
        idleCheck?.cancel()
        idleCheck = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var incoming = unwrapInboundIn(data)
        lastActivity = Self.monotonicMicros()
        if var pending = cumulation {
            cumulation = nil
            pending.writeBuffer(&incoming)
            decode(&pending)
            if pending.readableBytes > 0 { cumulation = pending }
        } else {
            // The common case: whole requests in one read, decoded as slices of the receive buffer.
            decode(&incoming)
            if incoming.readableBytes > 0 { cumulation = incoming }
        }
        if let pending = cumulation, pending.readableBytes > maxBuffered {
            cumulation = nil
            queue.append(.fatal("Protocol error: request larger than \(maxBuffered) bytes"))
        }
        process(context: context)
    }

    /// Checked four times per timeout: a connection closes between 1 and 1.25 timeouts idle.
    private func scheduleIdleCheck(context: ChannelHandlerContext, limit: UInt64, period: TimeAmount) {
        idleCheck = context.eventLoop.assumeIsolated().scheduleTask(in: period) {
            guard !self.closing else { return }
            if Self.monotonicMicros() &- self.lastActivity >= limit {
                // Idle too long: 0-db clients reconnect on demand, so dropping costs them little.
                context.close(promise: nil)
            } else {
                self.scheduleIdleCheck(context: context, limit: limit, period: period)
            }
        }
    }

    /// Moves every complete request in `buffer` to the queue.
    private func decode(_ buffer: inout ByteBuffer) {
        var steps = 0
        while steps < 1_000_000 {  // each step consumes bytes or emits a frame; a guard, not a limit
            steps += 1
            switch decoder.decodeStep(&buffer) {
            case .needMoreData:
                return
            case .continue:
                continue
            case .frame(let frame):
                queue.append(frame)
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded(context: context)
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // The client is reading what we sent: it is not idle.
        lastActivity = Self.monotonicMicros()
        if context.channel.isWritable { process(context: context) }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if mustHoldReads(context: context) {
            readHeld = true
        } else {
            context.read()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        server.logger.debug("connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    private func mustHoldReads(context: ChannelHandlerContext) -> Bool {
        waiting || queue.count >= Self.maxQueued || !context.channel.isWritable
    }

    private func process(context: ChannelHandlerContext) {
        while !waiting && !closing && context.channel.isWritable, let frame = queue.popFirst() {
            switch frame {
            case .command(let arguments):
                let start = Self.monotonicMicros()
                // Optional chaining mutates the stored processor in place (no copy in and out).
                guard let reply = processor?.execute(arguments), let command = processor?.lastCommand else { return }
                if case .later = reply {
                    // Timed when the answer is ready (after fsync or the thread pool).
                    pendingTiming = (command, start)
                } else {
                    recordLatency(command, start: start)
                }
                handle(reply, context: context)
            case .invalid(let text):
                server.counters.commandsFailed.wrappingAdd(1, ordering: .relaxed)
                var buffer = context.channel.allocator.buffer(capacity: text.utf8.count + 3)
                buffer.writeErrorReply(text)
                write(buffer, context: context)
            case .fatal(let text):
                server.counters.commandsFailed.wrappingAdd(1, ordering: .relaxed)
                closeAfter(text, context: context)
            }
        }
        flushIfNeeded(context: context)
        if readHeld && !closing && !mustHoldReads(context: context) {
            readHeld = false
            context.read()
        }
    }

    private func write(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.byteBuffer(buffer)), promise: nil)
        unflushed = true
    }

    private func handle(_ reply: Reply, context: ChannelHandlerContext) {
        if closing {
            Self.release(reply)
            return
        }
        switch reply {
        case .bytes(let buffer):
            write(buffer, context: context)
        case .parts(let parts):
            for part in parts {
                switch part {
                case .bytes(let buffer):
                    write(buffer, context: context)
                case .file(let handle, let offset, let length):
                    // sendfile from the segment: the payload never enters user space.
                    let region = FileRegion(fileHandle: handle, readerIndex: offset, endIndex: offset + length)
                    let promise = context.eventLoop.makePromise(of: Void.self)
                    promise.futureResult.whenComplete { _ in try? handle.close() }
                    context.write(wrapOutboundOut(.fileRegion(region)), promise: promise)
                    unflushed = true
                }
            }
        case .later(let future):
            waiting = true
            flushIfNeeded(context: context)
            future.hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
                self.waiting = false
                if let timing = self.pendingTiming {
                    self.pendingTiming = nil
                    self.recordLatency(timing.command, start: timing.start)
                }
                switch result {
                case .success(let reply):
                    self.handle(reply, context: context)
                case .failure(let error):
                    self.server.logger.error("deferred command failed", metadata: ["error": "\(error)"])
                    var buffer = context.channel.allocator.buffer(capacity: 32)
                    buffer.writeErrorReply("Internal error")
                    if !self.closing { self.write(buffer, context: context) }
                }
                self.process(context: context)
            }
        case .close(let buffer):
            closing = true
            queue.removeAll()
            context.writeAndFlush(wrapOutboundOut(.byteBuffer(buffer))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }

    /// Closes the file handles of a reply that will not be sent.
    private static func release(_ reply: Reply) {
        switch reply {
        case .parts(let parts):
            for case .file(let handle, _, _) in parts { try? handle.close() }
        case .later(let future):
            future.whenSuccess { release($0) }
        default:
            break
        }
    }

    private func closeAfter(_ text: String, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: text.utf8.count + 3)
        buffer.writeErrorReply(text)
        handle(.close(buffer), context: context)
    }

    private func flushIfNeeded(context: ChannelHandlerContext) {
        if unflushed {
            unflushed = false
            context.flush()
            lastActivity = Self.monotonicMicros()
        }
    }

    private func recordLatency(_ command: TimedCommand, start: UInt64) {
        let micros = Self.monotonicMicros() &- start
        server.counters.latencyMicrosTotal.wrappingAdd(micros, ordering: .relaxed)
        server.counters.latency.record(command, micros: micros, shard: latencyShard)
    }

    private static func monotonicMicros() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }
}
