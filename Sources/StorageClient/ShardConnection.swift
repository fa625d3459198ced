import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Connection timeouts and limits for talking to nodes.
public struct ConnectionSettings: Sendable {
    public var connectTimeoutSeconds: Double
    /// A command without any reply for this long fails its connection.
    public var commandTimeoutSeconds: Double

    public init(connectTimeoutSeconds: Double = 5, commandTimeoutSeconds: Double = 30) {
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.commandTimeoutSeconds = commandTimeoutSeconds
    }
}

/// One RESP connection to a namespace on a node, selected (with its password) and ready. Many
/// commands may be in flight at once; replies come back in order.
final class ShardConnection: Sendable {
    let endpoint: ShardEndpoint
    private let channel: any Channel
    /// How long connect + SELECT + PING took: what "fastest" means when choosing nodes to read from.
    let setupNanoseconds: UInt64

    private init(endpoint: ShardEndpoint, channel: any Channel, setupNanoseconds: UInt64) {
        self.endpoint = endpoint
        self.channel = channel
        self.setupNanoseconds = setupNanoseconds
    }

    static func open(_ endpoint: ShardEndpoint, settings: ConnectionSettings,
                     group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> ShardConnection {
        let (host, port) = try endpoint.hostAndPort()
        let started = DispatchTimeLike.now()
        let timeout = TimeAmount.nanoseconds(Int64(settings.commandTimeoutSeconds * 1e9))
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.nanoseconds(Int64(settings.connectTimeoutSeconds * 1e9)))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            // Shards are up to 8 MiB: read in large chunks (fewer reads, fewer decode attempts).
            .channelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64 << 10, initial: 256 << 10, maximum: 1 << 20))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(ByteToMessageHandler(RESPReplyDecoder(limits: RESPReplyLimits())))
                    try sync.addHandler(RESPClientHandler(timeout: timeout))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            throw StorageError.unreachable(node: endpoint.node, address: endpoint.address, reason: Self.describe(error))
        }
        let connection = ShardConnection(endpoint: endpoint, channel: channel, setupNanoseconds: 0)
        do {
            var select: [RESPArgument] = [.text("SELECT"), .text(endpoint.namespace)]
            if let password = endpoint.password { select.append(.text(password)) }
            let reply = try await connection.send(select, operation: "SELECT")
            switch reply {
            case .simple("OK"): break
            case .error(let text):
                throw StorageError.unreachable(node: endpoint.node, address: endpoint.address,
                                               reason: "namespace \(endpoint.namespace) refused: \(text)"
                                                   + (text.contains("denied") || text.contains("protected") ? " (check its password)" : ""))
            default:
                throw StorageError.nodeFailed(node: endpoint.node, namespace: endpoint.namespace, operation: "SELECT",
                                              reason: "unexpected reply \(reply)")
            }
            _ = try await connection.send([.text("PING")], operation: "PING")
        } catch {
            connection.close()
            throw error
        }
        return ShardConnection(endpoint: endpoint, channel: channel, setupNanoseconds: DispatchTimeLike.now() - started)
    }

    /// A short cause: "Connection refused (errno 111)" rather than NIO's nested error values.
    static func describe(_ error: any Error) -> String {
        if let error = error as? NIOConnectionError {
            if let first = error.connectionErrors.first { return describe(first.error) }
            return "cannot resolve \(error.host)"
        }
        if let error = error as? IOError { return "\(String(cString: strerror(error.errnoCode))) (errno \(error.errnoCode))" }
        if let error = error as? ChannelError, case .connectTimeout(let amount) = error {
            return "no connection within \(Double(amount.nanoseconds) / 1e9) s"
        }
        return "\(error)"
    }

    func close() {
        channel.close(promise: nil)
    }

    var isActive: Bool { channel.isActive }

    /// Sends one command; an error reply is returned as `.error`, a broken connection throws.
    func send(_ arguments: [RESPArgument], operation: String) async throws -> RESPValue {
        let promise = channel.eventLoop.makePromise(of: RESPValue.self)
        let request = RESPRequest(parts: RESPRequest.encode(arguments, allocator: channel.allocator), promise: promise)
        // A write that never reaches the handler (channel already closed) must still fail the request.
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { promise.fail($0) }
        channel.writeAndFlush(request, promise: written)
        do {
            return try await promise.futureResult.get()
        } catch let failure as RESPClientHandler.Failure {
            if let seconds = failure.timeoutSeconds {
                throw StorageError.timedOut(node: endpoint.node, operation: operation, seconds: seconds)
            }
            throw StorageError.nodeFailed(node: endpoint.node, namespace: endpoint.namespace, operation: operation, reason: failure.description)
        } catch {
            throw StorageError.nodeFailed(node: endpoint.node, namespace: endpoint.namespace, operation: operation,
                                          reason: Self.describe(error))
        }
    }

    private func failed(_ operation: String, _ reply: RESPValue) -> StorageError {
        if case .error(let text) = reply {
            return .nodeFailed(node: endpoint.node, namespace: endpoint.namespace, operation: operation, reason: text)
        }
        return .nodeFailed(node: endpoint.node, namespace: endpoint.namespace, operation: operation, reason: "unexpected reply \(reply)")
    }

    /// SET; 0-db answers the key, or nil when the same value is already stored: both are success.
    func set(_ key: String, _ value: ByteBuffer) async throws {
        let reply = try await send([.text("SET"), .text(key), .buffer(value)], operation: "SET \(key)")
        switch reply {
        case .bulk: return
        case .simple("OK"): return
        default: throw failed("SET \(key)", reply)
        }
    }

    /// GET: the value, nil when missing. A value the node itself finds corrupt comes back as
    /// `.corrupt` rather than an error, so callers count it with the other bad shards.
    enum Fetched: Sendable {
        case value(ByteBuffer)
        case missing
        case corrupt(String)
    }

    func get(_ key: String) async throws -> Fetched {
        let reply = try await send([.text("GET"), .text(key)], operation: "GET \(key)")
        switch reply {
        case .bulk(let buffer?): return .value(buffer)
        case .bulk(nil): return .missing
        case .error(let text) where text.lowercased().contains("corrupt"): return .corrupt(text)
        default: throw failed("GET \(key)", reply)
        }
    }

    func delete(_ key: String) async throws {
        let reply = try await send([.text("DEL"), .text(key)], operation: "DEL \(key)")
        switch reply {
        case .simple, .integer: return
        case .error(let text) where text.lowercased().contains("not found"): return
        default: throw failed("DEL \(key)", reply)
        }
    }

    enum ProofAnswer: Sendable, Equatable {
        case answer([UInt8])
        case missing
        case corrupt(String)
        /// The node does not know PROOF (a plain 0-db).
        case unsupported
    }

    /// PROOF key nonce [offset length]: BLAKE2b-256(nonce || value[offset..<offset+length]) from
    /// the node, after it checked the whole value against its CRC; over all of the value when
    /// `range` is nil (a value longer than expected but with the expected start must not pass).
    func proof(_ key: String, nonce: [UInt8], range: (offset: Int, length: Int)?) async throws -> ProofAnswer {
        var command: [RESPArgument] = [.text("PROOF"), .text(key), .bytes(nonce)]
        if let range { command += [.text(String(range.offset)), .text(String(range.length))] }
        let reply = try await send(command, operation: "PROOF \(key)")
        switch reply {
        case .bulk(let buffer?): return .answer(Array(buffer.readableBytesView))
        case .bulk(nil): return .missing
        case .error(let text) where text.lowercased().contains("not supported"): return .unsupported
        case .error(let text) where text.lowercased().contains("corrupt") || text.lowercased().contains("range"):
            return .corrupt(text)
        default: throw failed("PROOF \(key)", reply)
        }
    }
}

/// Monotonic nanoseconds (CLOCK_MONOTONIC), for timing without Foundation.
enum DispatchTimeLike {
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
