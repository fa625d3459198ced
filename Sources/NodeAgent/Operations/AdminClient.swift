import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// The farmer commands' side of the admin socket: one HTTP/1.1 request per connection (SwiftNIO's
/// HTTP codec on a Unix socket). Connection failures become errors that say whether the agent is
/// not running or the caller is not root.
struct AdminClient: Sendable {
    let socketPath: String
    /// Bounds a whole non-streaming exchange.
    var timeout: TimeAmount = .seconds(15)
    /// Largest reply body accepted (statuses and lists are far smaller).
    static let maxBodyBytes = 64 << 20

    struct Reply: Sendable {
        var status: Int
        var body: [UInt8]
    }

    func get(_ uri: String) async throws -> Reply { try await request(.GET, uri) }
    func post(_ uri: String) async throws -> Reply { try await request(.POST, uri) }

    /// A request whose reply is read whole.
    func request(_ method: HTTPMethod, _ uri: String) async throws -> Reply {
        var body = [UInt8]()
        let status = try await exchange(method, uri, deadline: timeout) { chunk in
            guard body.count + chunk.readableBytes <= Self.maxBodyBytes else {
                throw NodeAgentError.adminAPI(status: 502, message: "the reply is larger than \(Self.maxBodyBytes) bytes")
            }
            body += chunk.readableBytesView
        }
        return Reply(status: status, body: body)
    }

    /// Decodes a 2xx reply as `T`; any other status becomes `.adminAPI` with the agent's message.
    func decode<T: Decodable>(_ type: T.Type, _ reply: Reply) throws -> T {
        try Self.check(reply)
        return try AdminJSON.decoder().decode(T.self, from: Data(reply.body))
    }

    static func check(_ reply: Reply) throws {
        guard (200..<300).contains(reply.status) else {
            let message = (try? JSONDecoder().decode([String: String].self, from: Data(reply.body)))?["error"]
                ?? String(decoding: reply.body.prefix(2000), as: UTF8.self)
            throw NodeAgentError.adminAPI(status: reply.status, message: message)
        }
    }

    /// Sends the request and hands each body chunk to `onChunk` as it arrives (streams such as a
    /// followed log). Returns the HTTP status. `deadline` nil: no time limit.
    @discardableResult
    func exchange(_ method: HTTPMethod, _ uri: String, deadline: TimeAmount?,
                  onChunk: (ByteBuffer) async throws -> Void) async throws -> Int {
        let channel = try await connect()
        let timer = deadline.map { limit in
            channel.channel.eventLoop.scheduleTask(in: limit) { channel.channel.close(promise: nil) }
        }
        defer { timer?.cancel() }
        return try await channel.executeThenClose { inbound, outbound in
            var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
            head.headers.add(name: "Host", value: "node-agent")
            head.headers.add(name: "Connection", value: "close")
            if method == .POST { head.headers.add(name: "Content-Length", value: "0") }
            try await outbound.write(.head(head))
            try await outbound.write(.end(nil))
            var status = 0
            for try await part in inbound {
                switch part {
                case .head(let response): status = Int(response.status.code)
                case .body(let buffer): try await onChunk(buffer)
                case .end: return status
                }
            }
            guard status != 0 else {
                throw NodeAgentError.adminAPI(status: 504, message: "the agent closed the connection without a reply"
                                              + (deadline.map { " (limit \($0.nanoseconds / 1_000_000_000) s)" } ?? ""))
            }
            return status
        }
    }

    func connect() async throws -> NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart> {
        // Say why before NIO does: no socket file means no agent.
        var info = stat()
        if stat(socketPath, &info) != 0 {
            if errno == EACCES { throw NodeAgentError.adminPermission(socket: socketPath) }
            throw NodeAgentError.agentNotRunning(socket: socketPath, errno: errno)
        }
        do {
            return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(unixDomainSocketPath: socketPath) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch let error as IOError {
            switch error.errnoCode {
            case EACCES, EPERM: throw NodeAgentError.adminPermission(socket: socketPath)
            case ECONNREFUSED, ENOENT: throw NodeAgentError.agentNotRunning(socket: socketPath, errno: error.errnoCode)
            default: throw error
            }
        }
    }
}
