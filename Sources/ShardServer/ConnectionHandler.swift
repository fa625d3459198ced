import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// One client connection: runs its requests in order, one at a time, and holds back reads while
/// replies are waiting (on fsync or the thread pool), while the socket is not writable (a slow
/// reader), or while many requests are queued, so no client can make the server buffer without
/// bound.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPFrame
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

    init(server: ServerContext) {
        self.server = server
        self.latencyShard = server.counters.latency.assignShard()
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
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if counted {
            server.counters.connectionsCurrent.wrappingSubtract(1, ordering: .relaxed)
            counted = false
        }
        closing = true
        queue.removeAll()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        queue.append(unwrapInboundIn(data))
        process(context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded(context: context)
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
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

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            // Idle too long: 0-db clients reconnect on demand, so dropping costs them little.
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
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
                guard var processor else { return }
                let start = Self.monotonicMicros()
                let reply = processor.execute(arguments)
                self.processor = processor
                if case .later = reply {
                    // Timed when the answer is ready (after fsync or the thread pool).
                    pendingTiming = (processor.lastCommand, start)
                } else {
                    recordLatency(processor.lastCommand, start: start)
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
