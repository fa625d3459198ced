import Crypto
import GridTypes
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// One connection's session (selected namespace, rights, pending challenge) and the 0-db command
/// set run against it. Replies follow 0-db's texts so its clients work unchanged.
struct CommandProcessor {
    static let maxKeyLength = 255
    static let maxMGetKeys = 1023
    static let scanBatch = 100
    static let maxNonceLength = 1024

    let server: ServerContext
    let eventLoop: any EventLoop
    let allocator: ByteBufferAllocator
    private(set) var namespace: Namespace
    private(set) var writable: Bool
    private(set) var admin = false
    /// What the last `execute` ran, for the latency histograms.
    private(set) var lastCommand: TimedCommand = .other
    private var challenge: String?

    init?(server: ServerContext, eventLoop: any EventLoop, allocator: ByteBufferAllocator) {
        guard let namespace = server.store.namespace(ShardStore.defaultNamespace) else { return nil }
        self.server = server
        self.eventLoop = eventLoop
        self.allocator = allocator
        self.namespace = namespace
        self.writable = namespace.settings.password == nil
    }

    // MARK: - Reply helpers

    private func error(_ text: String) -> Reply {
        server.counters.commandsFailed.wrappingAdd(1, ordering: .relaxed)
        var buffer = allocator.buffer(capacity: text.utf8.count + 3)
        buffer.writeErrorReply(text)
        return .bytes(buffer)
    }

    private func error(_ error: any Error) -> Reply {
        if let error = error as? ShardServerError {
            if case .refused = error {} else {
                server.logger.error("command failed", metadata: ["namespace": "\(namespace.name)", "error": "\(error)"])
            }
            if case .corrupt = error { server.counters.corruptFound.wrappingAdd(1, ordering: .relaxed) }
            return self.error(error.replyText)
        }
        server.logger.error("command failed", metadata: ["namespace": "\(namespace.name)", "error": "\(error)"])
        return self.error("Internal error")
    }

    private func simple(_ text: String) -> Reply {
        var buffer = allocator.buffer(capacity: text.utf8.count + 3)
        buffer.writeSimpleString(text)
        return .bytes(buffer)
    }

    private func integer<T: BinaryInteger>(_ value: T) -> Reply {
        var buffer = allocator.buffer(capacity: 24)
        buffer.writeIntegerReply(value)
        return .bytes(buffer)
    }

    private func bulk(_ bytes: [UInt8]) -> Reply {
        var buffer = allocator.buffer(capacity: bytes.count + 16)
        buffer.writeBulk(bytes)
        return .bytes(buffer)
    }

    private func nilReply() -> Reply {
        var buffer = allocator.buffer(capacity: 5)
        buffer.writeNilReply()
        return .bytes(buffer)
    }

    private static func bytes(_ buffer: ByteBuffer) -> [UInt8] { Array(buffer.readableBytesView) }
    private static func string(_ buffer: ByteBuffer) -> String { String(decoding: buffer.readableBytesView, as: UTF8.self) }

    /// Answers `reply` once the write at `point` is durable, under fsync=always; at once otherwise.
    private func afterDurable(_ point: DurabilityPoint, _ reply: Reply) -> Reply {
        guard server.config.fsync == .always else { return reply }
        let allocator = self.allocator
        let counters = server.counters
        return .later(server.committer.sync(point, on: eventLoop).map { reply }.recover { error in
            counters.commandsFailed.wrappingAdd(1, ordering: .relaxed)
            var buffer = allocator.buffer(capacity: 64)
            buffer.writeErrorReply((error as? ShardServerError)?.replyText ?? "Cannot write data right now")
            return .bytes(buffer)
        })
    }

    private static func now() -> (seconds: UInt64, micros: UInt64) {
        var tv = timeval()
        gettimeofday(&tv, nil)
        return (UInt64(tv.tv_sec), UInt64(tv.tv_usec))
    }

    // MARK: - Dispatch

    mutating func execute(_ args: [ByteBuffer]) -> Reply {
        server.counters.commands.wrappingAdd(1, ordering: .relaxed)
        lastCommand = .other
        guard let first = args.first, first.readableBytes <= 16 else { return error("Command not supported") }
        if namespace.isRemoved {
            var buffer = allocator.buffer(capacity: 80)
            buffer.writeErrorReply("Your active namespace is not available anymore (probably removed).")
            return .close(buffer)
        }
        // The name, upper-cased, packed into an integer: dispatch without building a String.
        // The literals are `pack(NAME)`, written out so the switch compares constants.
        switch Self.packedName(first) {
        case 0x474E4950 /* PING */: return simple("PONG")
        case 0x454D4954 /* TIME */: return time()
        case 0x4F464E49 /* INFO */: return info()
        case 0x544553 /* SET */, 0x58544553 /* SETX */: lastCommand = .set; return set(args)
        case 0x544547 /* GET */: lastCommand = .get; return get(args)
        case 0x5445474D /* MGET */: lastCommand = .mget; return mget(args)
        case 0x4C4544 /* DEL */: lastCommand = .del; return del(args)
        case 0x535453495845 /* EXISTS */: lastCommand = .exists; return exists(args)
        case 0x4B43454843 /* CHECK */: lastCommand = .check; return check(args)
        case 0x455A49534244 /* DBSIZE */: return integer(namespace.entryCount)
        case 0x4E414353 /* SCAN */, 0x584E414353 /* SCANX */: lastCommand = .scan; return scan(args, forward: true)
        case 0x4E41435352 /* RSCAN */: lastCommand = .scan; return scan(args, forward: false)
        case 0x52554359454B /* KEYCUR */: return keycur(args)
        case 0x4854474E454C /* LENGTH */: return length(args)
        case 0x454D495459454B /* KEYTIME */: return keytime(args)
        case 0x464F4F5250 /* PROOF */: lastCommand = .proof; return proof(args)
        case 0x57454E534E /* NSNEW */: return nsnew(args)
        case 0x4C4544534E /* NSDEL */: return nsdel(args)
        case 0x5453494C534E /* NSLIST */: return nslist()
        case 0x4F464E49534E /* NSINFO */: return nsinfo(args)
        case 0x544553534E /* NSSET */: return nsset(args)
        case 0x5443454C4553 /* SELECT */: return select(args)
        case 0x48545541 /* AUTH */: return auth(args)
        default: return error("Command not supported")
        }
    }

    /// Up to 8 bytes, upper-cased, little-endian in a UInt64; 0 for longer names (no command is
    /// longer than 7 bytes) or ones with a NUL, so they fall to "not supported".
    static func packedName(_ buffer: ByteBuffer) -> UInt64 {
        guard buffer.readableBytes <= 8 else { return 0 }
        var packed: UInt64 = 0
        var shift: UInt64 = 0
        for byte in buffer.readableBytesView {
            if byte == 0 { return 0 }  // "GET\0" must not pack like "GET"
            let upper = byte >= 0x61 && byte <= 0x7A ? byte - 0x20 : byte
            packed |= UInt64(upper) << shift
            shift += 8
        }
        return packed
    }

    /// The packed form of a name (tests check the literals in `execute` against it).
    static func pack(_ name: String) -> UInt64 {
        var packed: UInt64 = 0
        for (i, byte) in name.utf8.prefix(8).enumerated() { packed |= UInt64(byte) << UInt64(8 * i) }
        return packed
    }

    // MARK: - System

    private func time() -> Reply {
        let (seconds, micros) = Self.now()
        var buffer = allocator.buffer(capacity: 48)
        buffer.writeArrayHeader(2)
        buffer.writeBulk(string: String(seconds))
        buffer.writeBulk(string: String(micros))
        return .bytes(buffer)
    }

    private func info() -> Reply {
        let c = server.counters
        let now = Self.now().seconds
        var text = "# server\n"
        text += "server_name: node-agent shard-server (0-db compatible)\n"
        text += "boot_time: \(server.bootTime)\n"
        text += "uptime: \(now - min(now, server.bootTime))\n"
        text += "fsync: \(server.config.fsync)\n"
        text += "crc32c_hardware: \(CRC32C.isHardwareAccelerated ? "yes" : "no")\n"
        text += "\n# clients\n"
        text += "clients_connected: \(c.connectionsCurrent.load(ordering: .relaxed))\n"
        text += "clients_lifetime: \(c.connectionsTotal.load(ordering: .relaxed))\n"
        text += "\n# stats\n"
        text += "commands_executed: \(c.commands.load(ordering: .relaxed))\n"
        text += "commands_failed: \(c.commandsFailed.load(ordering: .relaxed))\n"
        text += "data_write_bytes: \(c.bytesWritten.load(ordering: .relaxed))\n"
        text += "data_read_bytes: \(c.bytesRead.load(ordering: .relaxed))\n"
        text += "corrupt_entries_found: \(c.corruptFound.load(ordering: .relaxed))\n"
        text += "compacted_bytes: \(c.compactedBytes.load(ordering: .relaxed))\n"
        let cache = server.valueCache.statistics
        text += "value_cache_bytes: \(cache.bytes) of \(server.valueCache.capacity)\n"
        text += "value_cache_entries: \(cache.entries)\n"
        text += "value_cache_hits: \(cache.hits)\n"
        text += "value_cache_misses: \(cache.misses)\n"
        text += "\n# latency\n"
        text += Self.latencyText(c.latency.snapshot())
        var buffer = allocator.buffer(capacity: text.utf8.count + 16)
        buffer.writeBulk(string: text)
        return .bytes(buffer)
    }

    /// One summary line and one bucket line per command that ran: 
    /// `latency_get: calls=N mean_us=M p50_us=A p90_us=B p99_us=C p999_us=D max_us=E` and
    /// `latency_get_buckets: lt1=N lt2=N lt4=N ... ge16777216=N` (non-empty buckets, upper bound in µs).
    static func latencyText(_ histograms: [TimedCommand: LatencyHistogram]) -> String {
        var text = ""
        for command in TimedCommand.allCases {
            guard let h = histograms[command], h.count > 0 else { continue }
            text += "latency_\(command.name): calls=\(h.count) mean_us=\(UInt64(h.meanMicros.rounded()))"
            text += " p50_us=\(h.percentileMicros(0.5)) p90_us=\(h.percentileMicros(0.9))"
            text += " p99_us=\(h.percentileMicros(0.99)) p999_us=\(h.percentileMicros(0.999)) max_us=\(h.maxMicros)\n"
            text += "latency_\(command.name)_buckets:"
            for (i, n) in h.buckets.enumerated() where n > 0 {
                if let bound = LatencyHistogram.upperBoundMicros(ofBucket: i) {
                    text += " lt\(bound)=\(n)"
                } else {
                    text += " ge\(UInt64(1) << UInt64(LatencyHistogram.bucketCount - 2))=\(n)"
                }
            }
            text += "\n"
        }
        return text
    }

    // MARK: - Dataset

    /// The key argument, or the error reply for a missing or oversized one.
    private func keyArgument(_ args: [ByteBuffer], count: Int, tooLong: String = "Invalid key") -> Result<[UInt8], ReplyError> {
        guard args.count == count else { return .failure(ReplyError("Unexpected arguments")) }
        guard args[1].readableBytes > 0 else { return .failure(ReplyError("Invalid argument")) }
        guard args[1].readableBytes <= Self.maxKeyLength else { return .failure(ReplyError(tooLong)) }
        return .success(Self.bytes(args[1]))
    }

    struct ReplyError: Error {
        let text: String
        init(_ text: String) { self.text = text }
    }

    private mutating func set(_ args: [ByteBuffer]) -> Reply {
        guard args.count == 3 || args.count == 4 else { return error("Unexpected arguments") }
        var timestamp = Self.now().seconds
        if args.count == 4 {
            // An explicit timestamp is for replication, as in 0-db: admin only.
            guard admin else { return error("Permission denied") }
            guard let given = UInt64(Self.string(args[3])) else { return error("Invalid timestamp") }
            timestamp = given
        }
        guard args[1].readableBytes <= Self.maxKeyLength else { return error("Key too large") }
        guard args[2].readableBytes <= server.config.maxValueSize else { return error("Value too large") }
        guard writable else { return error("Namespace is in read-only mode") }
        let key = Self.bytes(args[1])
        let value = args[2]
        do {
            let outcome = try value.withUnsafeReadableBytes { raw in
                try namespace.set(key: key, value: raw, timestamp: timestamp)
            }
            switch outcome {
            case .unchanged:
                return nilReply()
            case .stored(let storedKey, let durability):
                server.valueCache.remove(ValueCache.Key(namespace: namespace.cacheID, key: storedKey))
                server.counters.sets.wrappingAdd(1, ordering: .relaxed)
                server.counters.bytesWritten.wrappingAdd(UInt64(value.readableBytes), ordering: .relaxed)
                return afterDurable(durability, bulk(storedKey))
            }
        } catch {
            return self.error(error)
        }
    }

    private func get(_ args: [ByteBuffer]) -> Reply {
        let key: [UInt8]
        switch keyArgument(args, count: 2) {
        case .failure(let failure): return error(failure.text)
        case .success(let k): key = k
        }
        let location: ValueLocation?
        do { location = try namespace.locate(key: key) } catch { return self.error(error) }
        if let location, !location.corrupt, location.length <= server.config.sendfileThreshold {
            // The common small GET: the whole reply is one buffer, cached or built and cached.
            let cache = server.valueCache
            let cacheable = cache.admits(length: location.length)
            let cacheKey = ValueCache.Key(namespace: namespace.cacheID, key: key)
            let version = ValueCache.Version(sequence: location.sequence, segmentID: location.segment.id, offset: location.valueOffset)
            var reply: ByteBuffer
            if cacheable, let cached = cache.lookup(cacheKey, version: version) {
                reply = cached
            } else {
                reply = allocator.buffer(capacity: location.length + 24)
                do {
                    try appendBuffered(location, key: key, to: &reply)
                } catch {
                    return self.error(error)
                }
                if cacheable { cache.insert(cacheKey, version: version, reply: reply) }
            }
            server.counters.gets.wrappingAdd(1, ordering: .relaxed)
            server.counters.bytesRead.wrappingAdd(UInt64(location.length), ordering: .relaxed)
            return .bytes(reply)
        }
        var parts: [ReplyPart] = []
        var pending = allocator.buffer(capacity: 64)
        do {
            try appendValue(location, key: key, parts: &parts, pending: &pending)
        } catch {
            return self.error(error)
        }
        server.counters.gets.wrappingAdd(1, ordering: .relaxed)
        if parts.isEmpty { return .bytes(pending) }
        if pending.readableBytes > 0 { parts.append(.bytes(pending)) }
        return .parts(parts)
    }

    private func mget(_ args: [ByteBuffer]) -> Reply {
        guard args.count >= 2 else { return error("Unexpected arguments") }
        guard args.count - 1 <= Self.maxMGetKeys else { return error("Too many keys (limit \(Self.maxMGetKeys))") }
        var parts: [ReplyPart] = []
        var pending = allocator.buffer(capacity: 256)
        pending.writeArrayHeader(args.count - 1)
        for arg in args.dropFirst() {
            guard arg.readableBytes > 0, arg.readableBytes <= Self.maxKeyLength else {
                pending.writeErrorReply("Invalid key")
                continue
            }
            do {
                let key = Self.bytes(arg)
                try appendValue(try namespace.locate(key: key), key: key, parts: &parts, pending: &pending)
            } catch let failure as ShardServerError {
                if case .refused = failure {} else {
                    server.logger.error("MGET read failed", metadata: ["namespace": "\(namespace.name)", "error": "\(failure)"])
                }
                pending.writeErrorReply(failure.replyText)
            } catch {
                pending.writeErrorReply("Internal error")
            }
        }
        server.counters.gets.wrappingAdd(UInt64(args.count - 1), ordering: .relaxed)
        if parts.isEmpty { return .bytes(pending) }
        if pending.readableBytes > 0 { parts.append(.bytes(pending)) }
        return .parts(parts)
    }

    /// Appends one value's bulk reply. Small values are read, checked against their CRC and
    /// copied into `pending`; large ones become a header in `pending` and a sendfile range of the
    /// segment (see `ShardServerConfig.sendfileThreshold`).
    private func appendValue(_ location: ValueLocation?, key: [UInt8], parts: inout [ReplyPart], pending: inout ByteBuffer) throws {
        guard let location else {
            pending.writeNilReply()
            return
        }
        if location.corrupt { throw ShardServerError.refused("Data corrupted") }
        let length = location.length
        if length <= server.config.sendfileThreshold {
            let cache = server.valueCache
            if cache.admits(length: length),
               let cached = cache.lookup(ValueCache.Key(namespace: namespace.cacheID, key: key),
                                         version: ValueCache.Version(sequence: location.sequence, segmentID: location.segment.id,
                                                                     offset: location.valueOffset)) {
                pending.writeImmutableBuffer(cached)
            } else {
                try appendBuffered(location, key: key, to: &pending)
            }
        } else {
            let fd = dup(location.segment.fd)
            guard fd >= 0 else { throw ShardServerError.io(operation: "dup", path: location.segment.path, errno: errno) }
            pending.writeBulkHeader(length)
            parts.append(.bytes(pending))
            parts.append(.file(NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: fd),
                               offset: Int(location.valueOffset), length: length))
            pending = allocator.buffer(capacity: 64)
            pending.writeStaticString("\r\n")
        }
        server.counters.bytesRead.wrappingAdd(UInt64(length), ordering: .relaxed)
    }

    /// Reads a value, checks it against its CRC and appends its bulk reply to `buffer`; on error
    /// nothing is appended.
    private func appendBuffered(_ location: ValueLocation, key: [UInt8], to buffer: inout ByteBuffer) throws {
        if location.corrupt { throw ShardServerError.refused("Data corrupted") }
        let length = location.length
        // Room for header, value and CRLF at once: no regrowth (a copy) of the reply buffer.
        buffer.reserveCapacity(minimumWritableBytes: length + 24)
        let start = buffer.writerIndex
        buffer.writeBulkHeader(length)
        let namespace = self.namespace
        do {
            try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: max(length, 1)) { raw in
                try namespace.readVerified(location, key: key, into: raw)
                return length
            }
        } catch {
            // Take the half-written header back out so the error is the whole answer for this key.
            buffer.moveWriterIndex(to: start)
            throw error
        }
        buffer.writeStaticString("\r\n")
    }

    private func del(_ args: [ByteBuffer]) -> Reply {
        let key: [UInt8]
        switch keyArgument(args, count: 2) {
        case .failure(let failure): return error(failure.text)
        case .success(let k): key = k
        }
        guard writable else { return error("Namespace is in read-only mode") }
        do {
            let point = try namespace.delete(key: key, timestamp: Self.now().seconds)
            server.valueCache.remove(ValueCache.Key(namespace: namespace.cacheID, key: key))
            return afterDurable(point, simple("OK"))
        } catch {
            return self.error(error)
        }
    }

    private func exists(_ args: [ByteBuffer]) -> Reply {
        switch keyArgument(args, count: 2) {
        case .failure(let failure): return error(failure.text)
        case .success(let key):
            do { return integer(try namespace.exists(key: key) ? 1 : 0) } catch { return self.error(error) }
        }
    }

    private func length(_ args: [ByteBuffer]) -> Reply {
        switch keyArgument(args, count: 2) {
        case .failure(let failure): return error(failure.text)
        case .success(let key):
            do {
                guard let location = try namespace.locate(key: key) else { return nilReply() }
                return integer(location.length)
            } catch { return self.error(error) }
        }
    }

    private func keytime(_ args: [ByteBuffer]) -> Reply {
        switch keyArgument(args, count: 2) {
        case .failure(let failure): return error(failure.text)
        case .success(let key):
            do {
                guard let location = try namespace.locate(key: key) else { return nilReply() }
                return integer(location.timestamp)
            } catch { return self.error(error) }
        }
    }

    /// CHECK: 1 when the stored value matches its CRC, 0 (and the entry flagged corrupt, so GET
    /// refuses it) when not, nil when the key does not exist. Runs on the thread pool: up to 8 MiB
    /// of reading and hashing.
    private func check(_ args: [ByteBuffer]) -> Reply {
        let key: [UInt8]
        switch keyArgument(args, count: 2) {
        case .failure(let failure): return error(failure.text)
        case .success(let k): key = k
        }
        let location: ValueLocation
        do {
            guard let found = try namespace.locate(key: key) else { return nilReply() }
            location = found
        } catch { return self.error(error) }
        let namespace = self.namespace
        let allocator = self.allocator
        let counters = server.counters
        let logger = server.logger
        return .later(server.threadPool.runIfActive(eventLoop: eventLoop) { () -> Reply in
            var scratch = [UInt8](repeating: 0, count: max(location.length, 1))
            var buffer = allocator.buffer(capacity: 8)
            do {
                try scratch.withUnsafeMutableBytes { try namespace.readVerified(location, key: key, into: $0) }
                buffer.writeIntegerReply(1)
            } catch ShardServerError.corrupt(let path, let offset, _) {
                counters.corruptFound.wrappingAdd(1, ordering: .relaxed)
                logger.error("CHECK found a corrupt entry", metadata: [
                    "namespace": "\(namespace.name)", "segment": "\(path)", "offset": "\(offset)"])
                buffer.writeIntegerReply(0)
            } catch {
                counters.commandsFailed.wrappingAdd(1, ordering: .relaxed)
                buffer.writeErrorReply((error as? ShardServerError)?.replyText ?? "Internal error")
            }
            return .bytes(buffer)
        })
    }

    /// PROOF key nonce [offset length]: BLAKE2b-256(nonce || value[offset ..< offset+length]), so an
    /// auditor holding the shard (or its precomputed answers) can check that this node still has
    /// it without downloading it. The whole value is checked against its CRC first: a corrupt
    /// entry gives an error, never a proof over wrong bytes.
    private func proof(_ args: [ByteBuffer]) -> Reply {
        guard args.count == 3 || args.count == 5 else { return error("Unexpected arguments") }
        guard args[1].readableBytes > 0, args[1].readableBytes <= Self.maxKeyLength else { return error("Invalid key") }
        guard args[2].readableBytes <= Self.maxNonceLength else { return error("Nonce too long") }
        let key = Self.bytes(args[1])
        let nonce = Self.bytes(args[2])
        let location: ValueLocation
        do {
            guard let found = try namespace.locate(key: key) else { return nilReply() }
            location = found
        } catch { return self.error(error) }
        if location.corrupt { return error("Data corrupted") }
        var range = 0..<location.length
        if args.count == 5 {
            guard let offset = Int(Self.string(args[3])), let length = Int(Self.string(args[4])),
                  offset >= 0, length >= 0, offset <= location.length, length <= location.length - offset else {
                return error("Invalid range")
            }
            range = offset..<(offset + length)
        }
        let namespace = self.namespace
        let allocator = self.allocator
        let counters = server.counters
        let proofRange = range
        return .later(server.threadPool.runIfActive(eventLoop: eventLoop) { () -> Reply in
            var value = [UInt8](repeating: 0, count: max(location.length, 1))
            var buffer = allocator.buffer(capacity: 48)
            do {
                try value.withUnsafeMutableBytes { try namespace.readVerified(location, key: key, into: $0) }
                var input = nonce
                input.append(contentsOf: value[proofRange])
                buffer.writeBulk(Blake2b.hash256(input))
            } catch {
                counters.commandsFailed.wrappingAdd(1, ordering: .relaxed)
                if case ShardServerError.corrupt = error { counters.corruptFound.wrappingAdd(1, ordering: .relaxed) }
                buffer.writeErrorReply((error as? ShardServerError)?.replyText ?? "Internal error")
            }
            return .bytes(buffer)
        })
    }

    // MARK: - Walking

    private static func cursorBytes(_ sequence: UInt64) -> [UInt8] {
        withUnsafeBytes(of: sequence.littleEndian) { Array($0) }
    }

    /// SCAN/RSCAN [cursor]. A cursor is the 8-byte little-endian sequence number of an entry
    /// (what KEYCUR answers and what each SCAN answers as its next cursor); SCAN walks the entries
    /// written after it, RSCAN those before it. Sequence numbers survive overwrites of other keys,
    /// deletions and compaction, so a cursor stays valid for the namespace's life.
    private func scan(_ args: [ByteBuffer], forward: Bool) -> Reply {
        guard args.count <= 2 else { return error("Unexpected arguments") }
        var cursor: UInt64? = nil
        if args.count == 2 {
            guard args[1].readableBytes == 8 else { return error("Invalid key format") }
            cursor = args[1].getInteger(at: args[1].readerIndex, endianness: .little, as: UInt64.self)
        }
        let items: [Namespace.ScanItem]
        do { items = try namespace.scan(after: cursor, forward: forward, limit: Self.scanBatch) } catch {
            return self.error(error)
        }
        guard let last = items.last else { return error("No more data") }
        var buffer = allocator.buffer(capacity: 32 + items.count * 300)
        buffer.writeArrayHeader(2)
        buffer.writeBulk(Self.cursorBytes(last.sequence))
        buffer.writeArrayHeader(items.count)
        for item in items {
            buffer.writeArrayHeader(3)
            buffer.writeBulk(item.key)
            buffer.writeIntegerReply(item.length)
            buffer.writeIntegerReply(item.timestamp)
        }
        return .bytes(buffer)
    }

    private func keycur(_ args: [ByteBuffer]) -> Reply {
        switch keyArgument(args, count: 2) {
        case .failure(let failure): return error(failure.text)
        case .success(let key):
            do {
                guard let location = try namespace.locate(key: key) else { return error("Key not found") }
                return bulk(Self.cursorBytes(location.sequence))
            } catch { return self.error(error) }
        }
    }

    // MARK: - Namespaces

    private func namespaceArgument(_ args: [ByteBuffer], count: Int) -> Result<String, ReplyError> {
        guard args.count == count else { return .failure(ReplyError("Unexpected arguments")) }
        guard args[1].readableBytes > 0 else { return .failure(ReplyError("Invalid argument")) }
        guard args[1].readableBytes <= 128 else { return .failure(ReplyError("Namespace too long")) }
        return .success(Self.string(args[1]))
    }

    private func nsnew(_ args: [ByteBuffer]) -> Reply {
        guard admin else { return error("Permission denied") }
        switch namespaceArgument(args, count: 2) {
        case .failure(let failure): return error(failure.text)
        case .success(let name):
            do {
                _ = try server.store.create(name: name, settings: NamespaceSettings())
                server.logger.info("namespace created", metadata: ["namespace": "\(name)"])
                return simple("OK")
            } catch { return self.error(error) }
        }
    }

    private func nsdel(_ args: [ByteBuffer]) -> Reply {
        guard admin else { return error("Permission denied") }
        switch namespaceArgument(args, count: 2) {
        case .failure(let failure): return error(failure.text)
        case .success(let name):
            if name == ShardStore.defaultNamespace { return error("Cannot remove default namespace") }
            if name == namespace.name { return error("Cannot remove namespace you're currently using.") }
            do {
                let cacheID = server.store.namespace(name)?.cacheID
                try server.store.delete(name: name)
                if let cacheID { server.valueCache.removeAll(namespace: cacheID) }
                server.logger.info("namespace deleted", metadata: ["namespace": "\(name)"])
                return simple("OK")
            } catch ShardServerError.namespaceMissing {
                return error("This namespace doesn't exists")
            } catch { return self.error(error) }
        }
    }

    private func nslist() -> Reply {
        let names = server.store.names()
        var buffer = allocator.buffer(capacity: 16 + names.count * 24)
        buffer.writeArrayHeader(names.count)
        for name in names { buffer.writeBulk(string: name) }
        return .bytes(buffer)
    }

    private func nsinfo(_ args: [ByteBuffer]) -> Reply {
        switch namespaceArgument(args, count: 2) {
        case .failure(let failure): return error(failure.text)
        case .success(let name):
            guard let target = server.store.namespace(name) else { return error("Namespace not found") }
            let info = target.info()
            let s = info.settings
            func yesNo(_ flag: Bool) -> String { flag ? "yes" : "no" }
            func mb(_ bytes: UInt64) -> String {
                let hundredths = bytes * 100 / (1024 * 1024)
                let fraction = hundredths % 100
                return "\(hundredths / 100)." + (fraction < 10 ? "0" : "") + "\(fraction)"
            }
            var text = "# namespace\n"
            text += "name: \(info.name)\n"
            text += "entries: \(info.entries)\n"
            text += "public: \(yesNo(s.isPublic))\n"
            text += "worm: \(yesNo(s.worm))\n"
            text += "locked: \(yesNo(s.locked))\n"
            text += "frozen: \(yesNo(s.frozen))\n"
            text += "password: \(yesNo(s.password != nil))\n"
            text += "data_size_bytes: \(info.dataSize)\n"
            text += "data_size_mb: \(mb(info.dataSize))\n"
            text += "data_limits_bytes: \(s.maxSize)\n"
            text += "disk_size_bytes: \(info.diskSize)\n"
            text += "segments: \(info.segments)\n"
            text += "corrupt_entries: \(info.corruptEntries)\n"
            text += "data_dir: \(String(target.directory.dropLast(target.name.utf8.count + 1)))\n"
            switch target.recovery {
            case .snapshot(let replayed): text += "index_recovery: snapshot, \(replayed) entries replayed\n"
            case .rebuilt(let reason): text += "index_recovery: rebuilt from segments (\(reason.isEmpty ? "requested" : reason))\n"
            }
            text += "mode: \(s.mode == .user ? "userkey" : "sequential")\n"
            var fs = statvfs()
            if statvfs(target.directory, &fs) == 0 {
                let free = UInt64(fs.f_bsize) * UInt64(fs.f_bavail)
                text += "data_disk_freespace_bytes: \(free)\n"
                text += "data_disk_freespace_mb: \(mb(free))\n"
            }
            var buffer = allocator.buffer(capacity: text.utf8.count + 16)
            buffer.writeBulk(string: text)
            return .bytes(buffer)
        }
    }

    /// Applies one NSSET property to `settings`; the error text is the reply.
    static func apply(property: String, value: String, to settings: inout NamespaceSettings) -> String? {
        func flag(_ text: String) -> Bool? {
            switch text.lowercased() {
            case "1", "yes", "true": return true
            case "0", "no", "false": return false
            default: return nil
            }
        }
        switch property.lowercased() {
        case "maxsize":
            guard let size = UInt64(value) else { return "Invalid value" }
            settings.maxSize = size
        case "password":
            guard !value.isEmpty, value.utf8.count <= 128 else { return "Invalid value" }
            settings.password = value == "*" ? nil : value
        case "public":
            guard let on = flag(value) else { return "Invalid value" }
            settings.isPublic = on
        case "worm":
            guard let on = flag(value) else { return "Invalid value" }
            settings.worm = on
        case "lock":
            guard let on = flag(value) else { return "Invalid value" }
            settings.locked = on
        case "freeze":
            guard let on = flag(value) else { return "Invalid value" }
            settings.frozen = on
        case "mode":
            switch value.lowercased() {
            case "user", "userkey": settings.mode = .user
            case "seq", "sequential": settings.mode = .seq
            default: return "Invalid value"
            }
        default:
            return "Invalid property"
        }
        return nil
    }

    private func nsset(_ args: [ByteBuffer]) -> Reply {
        guard admin else { return error("Permission denied") }
        guard args.count == 4 else { return error("Unexpected arguments") }
        switch namespaceArgument(Array(args.prefix(2)), count: 2) {
        case .failure(let failure): return error(failure.text)
        case .success(let name):
            guard args[2].readableBytes <= 64, args[3].readableBytes <= 128 else { return error("Invalid value") }
            if name == ShardStore.defaultNamespace { return error("Cannot update default namespace") }
            guard let target = server.store.namespace(name) else { return error("Namespace not found") }
            let property = Self.string(args[2])
            let value = Self.string(args[3])
            do {
                var refusal: String? = nil
                try target.updateSettings { settings in refusal = Self.apply(property: property, value: value, to: &settings) }
                if let refusal { return error(refusal) }
                // The value is not logged: it may be a password.
                server.logger.info("namespace updated", metadata: ["namespace": "\(name)", "property": "\(property.lowercased())"])
                return simple("OK")
            } catch { return self.error(error) }
        }
    }

    /// Compares secrets in time independent of where they differ.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    /// sha1hex("<nonce>:<password>"), 0-db's SECURE digest.
    static func secureDigest(nonce: String, password: String) -> String {
        Hex.encode(Insecure.SHA1.hash(data: Array("\(nonce):\(password)".utf8)))
    }

    private mutating func select(_ args: [ByteBuffer]) -> Reply {
        guard args.count >= 2 && args.count <= 4 else { return error("Invalid argument") }
        guard args[1].readableBytes <= 128 else { return error("Namespace too long") }
        let name = Self.string(args[1])
        guard let target = server.store.namespace(name) else { return error("Namespace not found") }
        let settings = target.settings
        var canWrite = true
        if let password = settings.password {
            switch args.count {
            case 2:
                guard settings.isPublic else { return error("Namespace protected and private") }
                canWrite = false
            case 3:
                guard args[2].readableBytes <= 255 else { return error("Password too long") }
                guard Self.constantTimeEqual(Self.bytes(args[2]), Array(password.utf8)) else { return error("Access denied") }
            default:
                guard Self.string(args[2]).uppercased() == "SECURE" else { return error("Unexpected arguments") }
                guard let nonce = challenge else {
                    return error("No CHALLENGE requested, secure authentication not available")
                }
                challenge = nil  // one use only
                let expected = Self.secureDigest(nonce: nonce, password: password)
                guard Self.constantTimeEqual(Self.bytes(args[3]).map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 },
                                             Array(expected.utf8)) else { return error("Access denied") }
            }
        }
        namespace = target
        writable = canWrite
        return simple("OK")
    }

    private mutating func auth(_ args: [ByteBuffer]) -> Reply {
        switch args.count {
        case 2:
            guard let password = server.config.adminPassword else { return error("Authentication disabled") }
            guard args[1].readableBytes <= 128 else { return error("Password too long") }
            guard Self.constantTimeEqual(Self.bytes(args[1]), Array(password.utf8)) else {
                server.logger.notice("admin authentication failed")
                return error("Access denied")
            }
            admin = true
            return simple("OK")
        case 3:
            guard Self.string(args[1]).uppercased() == "SECURE" else { return error("Only SECURE extra method supported") }
            if Self.string(args[2]).uppercased() == "CHALLENGE" {
                var random = [UInt8](repeating: 0, count: 12)
                for i in random.indices { random[i] = UInt8.random(in: 0...255) }
                let nonce = Hex.encode(random)
                challenge = nonce
                return simple(nonce)
            }
            guard let password = server.config.adminPassword else { return error("Authentication disabled") }
            guard let nonce = challenge else { return error("No CHALLENGE requested, secure authentication not available") }
            challenge = nil
            guard args[2].readableBytes == 40 else { return error("Invalid hash length") }
            let expected = Self.secureDigest(nonce: nonce, password: password)
            guard Self.constantTimeEqual(Self.bytes(args[2]).map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 },
                                         Array(expected.utf8)) else {
                server.logger.notice("admin authentication failed")
                return error("Access denied")
            }
            admin = true
            return simple("OK")
        default:
            return error("Unexpected arguments")
        }
    }
}
