import Logging
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The 0-db compatible shard server: RESP2 over TCP on SwiftNIO, namespaces of append-only
/// segment files under one data directory.
///
///     let server = ShardServer(logger: logger)
///     let port = try await server.start(config)   // binds, recovers every namespace
///     try server.createNamespace("ns1", settings: NamespaceSettings(maxSize: 1 << 30, password: "pw"))
///     ...
///     try await server.stop()                      // closes clients, fsyncs, releases the directory
///
/// The namespace administration here is the provisioner's local API; over the network the same
/// operations need AUTH with the admin password.
public final class ShardServer: Sendable {
    private struct Running: Sendable {
        let group: MultiThreadedEventLoopGroup
        let threadPool: NIOThreadPool
        let channel: any Channel
        let context: ServerContext
        let tasks: [RepeatedTask]
        let port: Int
    }

    /// Where the scrub is: it walks namespaces by name, segments by id, entries by offset.
    private struct ScrubCursor {
        var namespace = ""
        var segment: UInt32 = 0
        var offset: UInt64 = 0
    }

    private let logger: Logger
    private let running = Mutex<Running?>(nil)
    private let starting = Mutex(false)
    private let scrubCursor = Mutex(ScrubCursor())
    private let maintenanceBusy = Atomic<Bool>(false)
    private let syncBusy = Atomic<Bool>(false)

    public init(logger: Logger = Logger(label: "shard-server")) {
        self.logger = logger
    }

    /// The bound TCP port while running (useful with port 0).
    public var port: Int? { running.withLock { $0?.port } }

    /// Opens the data directory (recovering every namespace: torn tails are dropped, the index is
    /// rebuilt), then listens. Returns the bound port.
    @discardableResult
    public func start(_ config: ShardServerConfig) async throws -> Int {
        try config.validate()
        let claimed = starting.withLock { busy -> Bool in
            if busy { return false }
            busy = true
            return true
        }
        guard claimed, running.withLock({ $0 == nil }) else {
            if claimed { starting.withLock { $0 = false } }
            throw ShardServerError.alreadyRunning
        }
        defer { starting.withLock { $0 = false } }

        let threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
        let threads = config.threads > 0 ? config.threads : System.coreCount
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let limits = StoreLimits(maxValueLength: config.maxValueSize, segmentSize: config.segmentSize)
        let logger = self.logger
        let store: ShardStore
        do {
            store = try await threadPool.runIfActive {
                try ShardStore.open(roots: config.dataDirectories, limits: limits, logger: logger)
            }
        } catch {
            try? await group.shutdownGracefully()
            try? await threadPool.shutdownGracefully()
            throw error
        }
        let bootTime = currentUnixSeconds()
        let context = ServerContext(config: config, store: store, committer: GroupCommitter(threadPool: threadPool),
                                    threadPool: threadPool, counters: Counters(), logger: logger, bootTime: bootTime)
        var decoderLimits = RESPLimits()
        decoderLimits.maxBulkLength = config.maxValueSize
        decoderLimits.maxRequestBytes = config.maxValueSize + (1 << 20)
        let respLimits = decoderLimits

        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 4)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 256 << 10, high: 1 << 20))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // One handler does decoding, idle timeout and commands (see ConnectionHandler).
                    try channel.pipeline.syncOperations.addHandler(ConnectionHandler(server: context, limits: respLimits))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: config.host, port: config.port).get()
        } catch {
            store.close()
            try? await group.shutdownGracefully()
            try? await threadPool.shutdownGracefully()
            throw ShardServerError.bindFailed(address: "\(config.host):\(config.port)", reason: "\(error)")
        }
        let port = channel.localAddress?.port ?? config.port

        var tasks: [RepeatedTask] = []
        let loop = group.next()
        if case .interval(let ms) = config.fsync {
            tasks.append(loop.scheduleRepeatedTask(initialDelay: .milliseconds(Int64(ms)), delay: .milliseconds(Int64(ms))) {
                [self] _ in self.periodicSync(context)
            })
        }
        // Always scheduled: besides scrub and compaction it writes wanted index snapshots.
        tasks.append(loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [self] _ in
            self.maintenanceTick(context)
        })
        running.withLock {
            $0 = Running(group: group, threadPool: threadPool, channel: channel, context: context, tasks: tasks, port: port)
        }
        logger.info("shard server listening", metadata: [
            "address": "\(config.host):\(port)", "data": "\(config.dataDirectories.joined(separator: ","))", "fsync": "\(config.fsync)",
            "namespaces": "\(store.names().count)"])
        return port
    }

    /// Stops listening, closes every connection, syncs every namespace to disk and releases the
    /// data directory.
    public func stop() async throws {
        guard let state = running.withLock({ state -> Running? in
            defer { state = nil }
            return state
        }) else { throw ShardServerError.notRunning }
        for task in state.tasks { task.cancel() }
        try? await state.channel.close()
        try? await state.group.shutdownGracefully()
        // Let maintenance already handed to the pool finish before the final sync.
        try? await state.threadPool.shutdownGracefully()
        state.context.store.syncAll()
        // A clean stop leaves a snapshot covering everything: the next start replays nothing.
        state.context.store.writeSnapshots(force: true)
        state.context.store.close()
        logger.info("shard server stopped")
    }

    /// The running store (tests look at recovery and placement through it).
    var storeForTesting: ShardStore? { running.withLock { $0?.context.store } }

    private func context() throws -> ServerContext {
        guard let context = running.withLock({ $0?.context }) else { throw ShardServerError.notRunning }
        return context
    }

    // MARK: - Local namespace administration (the provisioner's API)

    public func createNamespace(_ name: String, settings: NamespaceSettings = NamespaceSettings()) throws {
        _ = try context().store.create(name: name, settings: settings)
        logger.info("namespace created", metadata: ["namespace": "\(name)"])
    }

    /// Changes a namespace's settings (maxsize, password, public, mode, worm, lock, freeze).
    /// Changing the mode of a namespace that holds keys is refused.
    public func updateNamespace(_ name: String, _ update: (inout NamespaceSettings) -> Void) throws {
        guard let namespace = try context().store.namespace(name) else { throw ShardServerError.namespaceMissing(name) }
        try namespace.updateSettings { update(&$0) }
        logger.info("namespace updated", metadata: ["namespace": "\(name)"])
    }

    public func deleteNamespace(_ name: String) throws {
        let context = try context()
        let cacheID = context.store.namespace(name)?.cacheID
        try context.store.delete(name: name)
        if let cacheID { context.valueCache.removeAll(namespace: cacheID) }
        logger.info("namespace deleted", metadata: ["namespace": "\(name)"])
    }

    public func namespaceInfo(_ name: String) throws -> NamespaceInfo {
        guard let namespace = try context().store.namespace(name) else { throw ShardServerError.namespaceMissing(name) }
        return namespace.info()
    }

    public func namespaceNames() throws -> [String] { try context().store.names() }

    public func statistics() throws -> ShardServerStatistics {
        let context = try context()
        let c = context.counters
        let cache = context.valueCache.statistics
        return ShardServerStatistics(
            connectionsCurrent: c.connectionsCurrent.load(ordering: .relaxed),
            connectionsTotal: c.connectionsTotal.load(ordering: .relaxed),
            connectionsRefused: c.connectionsRefused.load(ordering: .relaxed),
            commands: c.commands.load(ordering: .relaxed),
            commandsFailed: c.commandsFailed.load(ordering: .relaxed),
            gets: c.gets.load(ordering: .relaxed),
            sets: c.sets.load(ordering: .relaxed),
            bytesWritten: c.bytesWritten.load(ordering: .relaxed),
            bytesRead: c.bytesRead.load(ordering: .relaxed),
            latencyMicrosTotal: c.latencyMicrosTotal.load(ordering: .relaxed),
            corruptFound: c.corruptFound.load(ordering: .relaxed),
            compactedBytes: c.compactedBytes.load(ordering: .relaxed),
            valueCacheBytes: cache.bytes, valueCacheHits: cache.hits, valueCacheMisses: cache.misses,
            latencies: Dictionary(uniqueKeysWithValues: c.latency.snapshot().map { ($0.key.name, $0.value) }),
            namespaces: context.store.all().map { $0.info() }.sorted { $0.name < $1.name })
    }

    // MARK: - Maintenance

    /// One full scrub pass over every namespace now (not rate limited); returns the number of
    /// corrupt entries found. For tests and operators; the background scrub does the same slowly.
    public func scrubNow() throws -> Int {
        let context = try context()
        var found = 0
        for namespace in context.store.all() {
            for segment in namespace.segmentSizes() {
                var offset: UInt64? = 0
                var guardrail = 0
                while let from = offset, guardrail < 1_000_000 {
                    let step = try namespace.scrub(segmentID: segment.id, from: from, budget: 64 << 20)
                    found += step.corrupt
                    offset = step.next
                    guardrail += 1
                }
            }
        }
        context.counters.corruptFound.wrappingAdd(UInt64(found), ordering: .relaxed)
        return found
    }

    /// Compacts every sealed segment at or over `ratio` dead bytes now; returns the bytes of the
    /// segment files removed.
    public func compactNow(minimumDeadRatio ratio: Double = 0.5) throws -> UInt64 {
        let context = try context()
        var reclaimed: UInt64 = 0
        for namespace in context.store.all() {
            var rounds = 0
            while rounds < 10_000, let id = namespace.compactionCandidate(minimumDeadRatio: ratio) {
                reclaimed += try namespace.compact(segmentID: id).reclaimed
                rounds += 1
            }
        }
        context.counters.compactedBytes.wrappingAdd(reclaimed, ordering: .relaxed)
        return reclaimed
    }

    private func periodicSync(_ context: ServerContext) {
        guard syncBusy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return }
        context.threadPool.submit { [self] _ in
            context.store.syncAll()
            self.syncBusy.store(false, ordering: .releasing)
        }
    }

    /// Once a second on the thread pool: scrub about `scrubBytesPerSecond` bytes, write the index
    /// snapshots that are wanted, then compact at most one segment. Skipped while the previous
    /// tick is still running.
    private func maintenanceTick(_ context: ServerContext) {
        guard maintenanceBusy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return }
        context.threadPool.submit { [self] state in
            defer { self.maintenanceBusy.store(false, ordering: .releasing) }
            guard case .active = state else { return }
            if context.config.scrubBytesPerSecond > 0 {
                self.scrubStep(context, budget: UInt64(context.config.scrubBytesPerSecond))
            }
            context.store.writeSnapshots(force: false)
            if context.config.compactionDeadRatio > 0 {
                for namespace in context.store.all() {
                    guard let id = namespace.compactionCandidate(minimumDeadRatio: context.config.compactionDeadRatio) else { continue }
                    do {
                        let result = try namespace.compact(segmentID: id)
                        context.counters.compactedBytes.wrappingAdd(result.reclaimed, ordering: .relaxed)
                        context.logger.info("segment compacted", metadata: [
                            "namespace": "\(namespace.name)", "segment": "\(id)", "reclaimed_bytes": "\(result.reclaimed)",
                            "moved_entries": "\(result.moved)"])
                    } catch {
                        context.logger.error("compaction failed", metadata: [
                            "namespace": "\(namespace.name)", "segment": "\(id)", "error": "\(error)"])
                    }
                    break
                }
            }
        }
    }

    private func scrubStep(_ context: ServerContext, budget: UInt64) {
        var left = budget
        var cursor = scrubCursor.withLock { $0 }
        let names = context.store.names()
        var steps = 0
        while left > 0 && steps < 10_000 {
            steps += 1
            guard let name = names.first(where: { $0 >= cursor.namespace }),
                  let namespace = context.store.namespace(name) else {
                cursor = ScrubCursor()  // a full pass is done; start over next tick
                break
            }
            if name != cursor.namespace { cursor = ScrubCursor(namespace: name) }
            guard let segment = namespace.segmentSizes().first(where: { $0.id >= cursor.segment }) else {
                cursor = ScrubCursor(namespace: name + "\u{0}")  // the next name up
                continue
            }
            if segment.id != cursor.segment { cursor.segment = segment.id; cursor.offset = 0 }
            do {
                let step = try namespace.scrub(segmentID: segment.id, from: cursor.offset, budget: left)
                if step.corrupt > 0 {
                    context.counters.corruptFound.wrappingAdd(UInt64(step.corrupt), ordering: .relaxed)
                    context.logger.error("scrub found corrupt entries", metadata: [
                        "namespace": "\(name)", "segment": "\(segment.id)", "count": "\(step.corrupt)"])
                }
                if let next = step.next {
                    left -= min(left, next - cursor.offset)
                    cursor.offset = next
                } else {
                    left -= min(left, segment.size - min(segment.size, cursor.offset))
                    cursor.segment = segment.id + 1
                    cursor.offset = 0
                }
            } catch {
                context.logger.error("scrub failed", metadata: ["namespace": "\(name)", "error": "\(error)"])
                cursor.segment = segment.id + 1
                cursor.offset = 0
            }
        }
        scrubCursor.withLock { $0 = cursor }
    }
}

private func currentUnixSeconds() -> UInt64 {
    var tv = timeval()
    gettimeofday(&tv, nil)
    return UInt64(tv.tv_sec)
}
