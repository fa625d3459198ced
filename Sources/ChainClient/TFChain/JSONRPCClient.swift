import Foundation
import GridTypes
import Logging
import NIOCore
import WSClient

/// Settings of the JSON-RPC connection to TFChain nodes.
public struct RPCConfiguration: Sendable {
    /// Node URLs (ws:// or wss://), tried in order; a failed connection moves to the next.
    public var urls: [String]
    /// How long one request may wait for its answer (including waiting for a connection).
    public var requestTimeout: Duration
    /// A connection with live subscriptions that delivers nothing for this long is broken.
    public var stallTimeout: Duration
    public var initialBackoff: Duration
    public var maxBackoff: Duration
    /// Largest message accepted from a node (metadata is the biggest, a few hundred KiB).
    public var maxMessageBytes: Int

    public init(urls: [String], requestTimeout: Duration = .seconds(30), stallTimeout: Duration = .seconds(60),
                initialBackoff: Duration = .milliseconds(250), maxBackoff: Duration = .seconds(30),
                maxMessageBytes: Int = 16 << 20) {
        self.urls = urls
        self.requestTimeout = requestTimeout
        self.stallTimeout = stallTimeout
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.maxMessageBytes = maxMessageBytes
    }
}

/// JSON-RPC 2.0 over WebSocket to a list of TFChain nodes: request ids, per-request timeouts,
/// subscriptions that survive reconnects (they are sent again on each new connection), reconnection
/// with full-jitter exponential backoff, fail-over to the next URL, and stall detection.
/// One actor owns all of it, so requests, replies and reconnects never race.
public actor JSONRPCClient {
    public typealias Notification = JSONValue

    private enum Waiter {
        case request(method: String, CheckedContinuation<JSONValue, any Error>)
        case subscribe(localID: Int)
    }

    private struct Subscription {
        var method: String
        var params: [JSONValue]
        var unsubscribeMethod: String
        /// False for subscriptions that must not be repeated (submitting an extrinsic).
        var resubscribe: Bool
        var continuation: AsyncThrowingStream<JSONValue, any Error>.Continuation
        var serverID: String?
    }

    public let configuration: RPCConfiguration
    private let logger: Logger
    private var nextRequestID: UInt64 = 1
    private var nextLocalID = 1
    private var waiters: [UInt64: Waiter] = [:]
    /// Requests written while disconnected, sent when a connection comes up.
    private var unsent: [String] = []
    /// Ids of the requests in `unsent`: a failed connection attempt must not fail them, they
    /// were never written and go out on the next connection.
    private var unsentIDs: Set<UInt64> = []
    private var subscriptions: [Int: Subscription] = [:]
    private var localIDByServerID: [String: Int] = [:]
    private var writer: AsyncStream<String>.Continuation?
    private var lastDelivery = ContinuousClock.now
    private var runner: Task<Void, Never>?
    private var urlIndex = 0
    private var generation = 0

    /// Connections opened so far and the URL in use, for tests and logs.
    public private(set) var connectionCount = 0
    public private(set) var currentURL: String?

    public init(configuration: RPCConfiguration, logger: Logger = Logger(label: "chain.rpc")) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Starts connecting in the background; requests made before the connection is up wait for it.
    public func start() throws(ChainError) {
        guard runner == nil else { return }
        guard !configuration.urls.isEmpty else { throw .invalidInput("chain.urls is empty: at least one TFChain node URL is needed") }
        for url in configuration.urls where !(url.hasPrefix("ws://") || url.hasPrefix("wss://")) {
            throw .invalidInput("chain URL \(url) is not a WebSocket URL (ws:// or wss://)")
        }
        runner = Task { await self.connectionLoop() }
    }

    public func stop() {
        runner?.cancel()
        runner = nil
        writer?.finish()
        writer = nil
        failAll(ChainError.cancelled(operation: "TFChain connection"), subscriptionsToo: true)
    }

    // MARK: requests

    public func request(_ method: String, _ params: [JSONValue] = [], timeout: Duration? = nil) async throws(ChainError) -> JSONValue {
        let id = nextRequestID
        nextRequestID += 1
        let text = Self.message(id: id, method: method, params: params)
        let limit = timeout ?? configuration.requestTimeout
        let timer = Task { [weak self] in
            try? await Task.sleep(for: limit)
            await self?.expire(id: id, after: limit)
        }
        defer { timer.cancel() }
        do {
            return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<JSONValue, any Error>) in
                waiters[id] = .request(method: method, continuation)
                send(text, id: id)
            }
        } catch let error as ChainError {
            throw error
        } catch {
            throw .unavailable("\(method): \(error)")
        }
    }

    private func expire(id: UInt64, after limit: Duration) {
        guard case .request(let method, let continuation)? = waiters.removeValue(forKey: id) else { return }
        continuation.resume(throwing: ChainError.timeout(operation: "TFChain \(method)", seconds: Self.seconds(limit)))
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    static func message(id: UInt64, method: String, params: [JSONValue]) -> String {
        JSONValue.object(["jsonrpc": .string("2.0"), "id": .number(Double(id)), "method": .string(method), "params": .array(params)]).serialized()
    }

    private func send(_ text: String, id: UInt64? = nil) {
        if let writer {
            writer.yield(text)
        } else {
            unsent.append(text)
            if let id { unsentIDs.insert(id) }
        }
    }

    // MARK: subscriptions

    /// Notifications of a subscription. It is made again on every new connection when
    /// `resubscribe` is true; otherwise a lost connection ends the stream with an error.
    public func subscribe(_ method: String, _ params: [JSONValue] = [], unsubscribe: String,
                          resubscribe: Bool = true) -> AsyncThrowingStream<JSONValue, any Error> {
        let localID = nextLocalID
        nextLocalID += 1
        let (stream, continuation) = AsyncThrowingStream<JSONValue, any Error>.makeStream(bufferingPolicy: .bufferingNewest(1024))
        subscriptions[localID] = Subscription(method: method, params: params, unsubscribeMethod: unsubscribe,
                                              resubscribe: resubscribe, continuation: continuation)
        continuation.onTermination = { [weak self] _ in
            Task { await self?.unsubscribe(localID: localID) }
        }
        sendSubscribe(localID)
        return stream
    }

    private func sendSubscribe(_ localID: Int) {
        guard let sub = subscriptions[localID] else { return }
        let id = nextRequestID
        nextRequestID += 1
        waiters[id] = .subscribe(localID: localID)
        send(Self.message(id: id, method: sub.method, params: sub.params), id: id)
    }

    private func unsubscribe(localID: Int) {
        guard let sub = subscriptions.removeValue(forKey: localID) else { return }
        if let serverID = sub.serverID {
            localIDByServerID[serverID] = nil
            // Fire and forget: the node drops the subscription with the connection anyway.
            let id = nextRequestID
            nextRequestID += 1
            if writer != nil { send(Self.message(id: id, method: sub.unsubscribeMethod, params: [.string(serverID)])) }
        }
    }

    // MARK: inbound

    func received(_ text: String) {
        guard let message = try? JSONValue.parse(text), case .object(let fields) = message else {
            logger.warning("ignoring a message from the TFChain node that is not a JSON object", metadata: ["start": .string(String(text.prefix(80)))])
            return
        }
        if let id = fields["id"]?.uint64 {
            guard let waiter = waiters.removeValue(forKey: id) else { return }   // timed out already
            let error = fields["error"].flatMap { e -> ChainError? in
                guard e != .null else { return nil }
                let code = e["code"].flatMap { v -> Int? in if case .number(let n) = v { return Int(n) } else { return nil } } ?? 0
                return .rpc(method: "", code: code, message: e["message"]?.string ?? e.description)
            }
            switch waiter {
            case .request(let method, let continuation):
                if case .rpc(_, let code, let text)? = error {
                    continuation.resume(throwing: ChainError.rpc(method: method, code: code, message: text))
                } else {
                    continuation.resume(returning: fields["result"] ?? .null)
                }
            case .subscribe(let localID):
                guard var sub = subscriptions[localID] else { return }
                if case .rpc(_, let code, let text)? = error {
                    subscriptions[localID] = nil
                    sub.continuation.finish(throwing: ChainError.rpc(method: sub.method, code: code, message: text))
                    return
                }
                let serverID = fields["result"].flatMap { $0.string ?? $0.uint64.map { String($0) } } ?? ""
                sub.serverID = serverID
                subscriptions[localID] = sub
                localIDByServerID[serverID] = localID
            }
            return
        }
        // Notification: {"method": ..., "params": {"subscription": id, "result": ...}}
        guard let params = fields["params"], let subID = params["subscription"].flatMap({ $0.string ?? $0.uint64.map { String($0) } }),
              let localID = localIDByServerID[subID], let sub = subscriptions[localID] else { return }
        lastDelivery = .now
        sub.continuation.yield(params["result"] ?? .null)
    }

    // MARK: connection

    private func connected(url: String, writer: AsyncStream<String>.Continuation) -> Int {
        generation += 1
        connectionCount += 1
        currentURL = url
        self.writer = writer
        lastDelivery = .now
        logger.info("connected to TFChain node", metadata: ["url": .string(url), "connection": "\(connectionCount)"])
        for text in unsent { writer.yield(text) }
        unsent.removeAll()
        unsentIDs.removeAll()
        for (localID, sub) in subscriptions.sorted(by: { $0.key < $1.key }) where sub.serverID == nil && !isSubscribePending(localID) {
            sendSubscribe(localID)
        }
        return generation
    }

    private func isSubscribePending(_ localID: Int) -> Bool {
        waiters.values.contains { if case .subscribe(let id) = $0 { return id == localID } else { return false } }
    }

    /// The connection is gone: requests in flight fail (their answer cannot come), subscriptions
    /// are marked for re-subscription on the next connection, one-shot ones end with the error.
    private func disconnected(generation: Int, error: any Error) {
        // A connection attempt that never came up has nothing in flight to fail.
        guard generation == self.generation, writer != nil else { return }
        writer?.finish()
        writer = nil
        currentURL = nil
        failAll(ChainError.unavailable("connection to TFChain node lost: \(error)"), subscriptionsToo: false)
    }

    private func failAll(_ error: ChainError, subscriptionsToo: Bool) {
        let pending = waiters
        waiters.removeAll()
        for (id, waiter) in pending {
            if !subscriptionsToo, unsentIDs.contains(id) {
                waiters[id] = waiter   // still queued: it goes out on the next connection
                continue
            }
            if case .request(_, let continuation) = waiter { continuation.resume(throwing: error) }
        }
        localIDByServerID.removeAll()
        for (localID, var sub) in subscriptions {
            if subscriptionsToo || !sub.resubscribe {
                subscriptions[localID] = nil
                sub.continuation.finish(throwing: error)
            } else {
                sub.serverID = nil
                subscriptions[localID] = sub
            }
        }
    }

    private func isStalled() -> Bool {
        // Only a connection that should be delivering steadily (a lasting subscription such as
        // finalized heads) can stall; a one-shot extrinsic watch is quiet until inclusion.
        subscriptions.values.contains { $0.resubscribe } && ContinuousClock.now - lastDelivery > configuration.stallTimeout
    }

    private func nextURL() -> String {
        let url = configuration.urls[urlIndex % configuration.urls.count]
        return url
    }

    private func advanceURL() { urlIndex = (urlIndex + 1) % configuration.urls.count }

    private func connectionLoop() async {
        var backoff = configuration.initialBackoff
        while !Task.isCancelled {
            let url = nextURL()
            let started = ContinuousClock.now
            do {
                var wsConfig = WebSocketClientConfiguration()
                wsConfig.maxFrameSize = configuration.maxMessageBytes
                let maxMessage = configuration.maxMessageBytes
                let stall = configuration.stallTimeout
                try await WebSocketClient.connect(url: url, configuration: wsConfig, logger: logger) { inbound, outbound, _ in
                    let (outgoing, continuation) = AsyncStream<String>.makeStream()
                    let generation = await self.connected(url: url, writer: continuation)
                    await self.setGenerationSeen(generation)
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            for await text in outgoing { try await outbound.write(.text(text)) }
                            throw ChainError.unavailable("connection closed by the client")
                        }
                        group.addTask {
                            for try await message in inbound.messages(maxSize: maxMessage) {
                                guard case .text(let text) = message else { continue }
                                await self.received(text)
                            }
                            throw ChainError.unavailable("the node closed the connection")
                        }
                        group.addTask {
                            while true {
                                try await Task.sleep(for: stall / 4)
                                if await self.isStalled() {
                                    throw ChainError.unavailable("no notification for \(stall); treating the connection as broken")
                                }
                            }
                        }
                        defer { group.cancelAll() }
                        try await group.next()
                    }
                }
                disconnected(generation: lastGeneration, error: ChainError.unavailable("connection closed"))
            } catch {
                logger.warning("TFChain connection failed", metadata: ["url": .string(url), "error": "\(error)"])
                disconnected(generation: lastGeneration, error: error)
            }
            if Task.isCancelled { return }
            // A connection that lasted resets the backoff; quick failures grow it.
            if ContinuousClock.now - started > configuration.stallTimeout { backoff = configuration.initialBackoff }
            advanceURL()
            let jittered = Duration.nanoseconds(Int64.random(in: 0...max(1, Int64(Self.seconds(backoff) * 1e9))))
            try? await Task.sleep(for: jittered)
            backoff = min(backoff * 2, configuration.maxBackoff)
        }
    }

    private var lastGeneration = 0
    private func setGenerationSeen(_ generation: Int) { lastGeneration = generation }
}

extension JSONValue {
    static func parse(_ text: String) throws(ChainError) -> JSONValue {
        do { return try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) } catch {
            throw .decode(type: "JSON-RPC message", position: 0, detail: "not JSON (\(text.prefix(80))...)")
        }
    }
}
