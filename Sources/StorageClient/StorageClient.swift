import Foundation
import GridTypes
import NIOCore

/// Stores files across 0-db namespaces on several nodes so that no single node can read them or
/// lose them: each block is compressed (zstd), encrypted (XChaCha20-Poly1305 under a random file
/// key), cut into k data and m parity shards (Reed-Solomon, ISA-L) and each shard, checksummed
/// (BLAKE2b), goes to its own node. Any k shards of a block give it back.
///
///     let client = StorageClient(key: TwinStorageKey(keyPair: identity.keyPair))
///     let put = try await client.put(path: "/data/file", placement: endpoints, options: StorageOptions(k: 4, m: 2))
///     _ = try await client.get(fileID: put.fileID, to: "/restore/file")
///     let health = try await client.check(fileID: put.fileID)
///     _ = try await client.repair(fileID: put.fileID, spares: spareEndpoints)
///
/// The file's metadata (where the shards are, checksums, the wrapped file key) is encrypted with a
/// key derived from the twin key and kept on every shard namespace and in a local copy, so the
/// twin key, the file id and any one of the namespaces are enough to get the file back.
public struct StorageClient: Sendable {
    public let key: TwinStorageKey
    /// Where local metadata copies go; nil keeps none (get then needs the nodes' copies).
    public let localStore: LocalFileStore?
    public let connection: ConnectionSettings
    /// Blocks in flight for get, check and repair (put takes it from its options).
    public let parallelBlocks: Int
    /// Which shards get reads first.
    public let readPreference: ReadPreference

    let compressors = Pool<ZstdCompressor>(keep: 16) { try ZstdCompressor() }
    let decompressors = Pool<ZstdDecompressor>(keep: 16) { try ZstdDecompressor() }

    public init(key: TwinStorageKey, localStore: LocalFileStore? = LocalFileStore(directory: LocalFileStore.defaultDirectory),
                connection: ConnectionSettings = ConnectionSettings(), parallelBlocks: Int = 4,
                readPreference: ReadPreference = .fastestNodes) {
        self.key = key
        self.localStore = localStore
        self.connection = connection
        self.parallelBlocks = max(1, min(64, parallelBlocks))
        self.readPreference = readPreference
    }

    // MARK: - Metadata

    /// The file's metadata: the local copy when there is one (and it opens), else the newest
    /// revision any of `endpoints` (and the namespaces the local copy names) holds.
    public func manifest(fileID: String, endpoints: [ShardEndpoint] = []) async throws -> FileManifest {
        try await loadManifest(fileID: fileID, endpoints: endpoints).manifest
    }

    /// The metadata (as `manifest`) and connections to its columns. When it came from the local
    /// copy, the columns' own copies are read too and a newer revision wins (a repair from
    /// another machine moved columns), and the local copy is updated to it.
    func openFile(fileID: String, endpoints: [ShardEndpoint]) async throws -> (FileManifest, ColumnLinks) {
        let (manifest, fromLocalCopy) = try await loadManifest(fileID: fileID, endpoints: endpoints)
        let links = await ColumnLinks.connected(to: manifest, settings: connection)
        guard fromLocalCopy, let newer = await newerOnColumns(than: manifest.revision, fileID: fileID, links: links) else {
            return (manifest, links)
        }
        links.closeAll()
        _ = try? saveLocal(newer, complete: true)
        return (newer, await ColumnLinks.connected(to: newer, settings: connection))
    }

    /// A revision of the metadata newer than `revision` that a connected column holds, if any.
    /// Each column's first part is read for the revision in its header; only a column claiming a
    /// newer one is read in full (and the claim holds only if the whole envelope opens).
    func newerOnColumns(than revision: Int, fileID: String, links: ColumnLinks) async -> FileManifest? {
        let claims = await withTaskGroup(of: (Int, Int)?.self) { group in
            for column in links.alive {
                guard let connection = links.connection(column) else { continue }
                group.addTask {
                    guard let claimed = try? await Self.metadataRevision(fileID: fileID, on: connection), claimed > revision else { return nil }
                    return (column, claimed)
                }
            }
            var out: [(column: Int, revision: Int)] = []
            for await case let claim? in group { out.append(claim) }
            return out.sorted { $0.revision > $1.revision }
        }
        for claim in claims {
            guard let connection = links.connection(claim.column),
                  let manifest = try? await fetchManifest(fileID: fileID, from: connection), manifest.revision > revision else { continue }
            return manifest
        }
        return nil
    }

    /// The revision in the header of the metadata a namespace holds (its first part only; not
    /// authenticated until the whole envelope opens), or nil when it holds none that parses.
    static func metadataRevision(fileID: String, on connection: ShardConnection) async throws -> Int? {
        guard case .value(let buffer) = try await connection.get(MetadataEnvelope.key(fileID: fileID, part: 0)),
              let part = try? MetadataEnvelope.parsePart(Array(buffer.readableBytesView), fileID: fileID),
              let header = try? MetadataEnvelope.parseHeader(Array(part.bytes.prefix(MetadataEnvelope.headerLength + 64)), fileID: fileID)
        else { return nil }
        return header.revision
    }

    func loadManifest(fileID: String, endpoints: [ShardEndpoint]) async throws -> (manifest: FileManifest, fromLocalCopy: Bool) {
        guard LocalFileStore.isFileID(fileID) else {
            throw StorageError.invalidInput(what: "file id", reason: "'\(fileID)' is not 32 lowercase hex digits")
        }
        var reasons: [String] = []
        if let record = try localStore?.load(fileID) {
            guard let envelope = Data(base64Encoded: record.envelope) else {
                throw StorageError.metadataInvalid(fileID: fileID, reason: "local copy's envelope is not base64")
            }
            do {
                return (try MetadataEnvelope.open(Array(envelope), fileID: fileID, key: key), true)
            } catch let error as StorageError {
                if case .wrongKey = error { throw error }
                if endpoints.isEmpty { throw error }
                reasons.append("local copy: \(error)")
            }
        }
        guard !endpoints.isEmpty else { throw StorageError.metadataUnavailable(fileID: fileID, reasons: reasons) }
        return (try await readManifest(fileID: fileID, from: endpoints, reasons: reasons), false)
    }

    /// Reads the metadata from every endpoint at once and keeps the newest revision that opens.
    func readManifest(fileID: String, from endpoints: [ShardEndpoint], reasons: [String] = []) async throws -> FileManifest {
        var unique: [ShardEndpoint] = []
        for e in endpoints where !unique.contains(where: { $0.address == e.address && $0.namespace == e.namespace }) { unique.append(e) }
        var found: [FileManifest] = []
        var failures = reasons
        var wrongKey: StorageError?
        await withTaskGroup(of: Result<FileManifest, any Error>.self) { group in
            for endpoint in unique {
                group.addTask {
                    do {
                        let connection = try await ShardConnection.open(endpoint, settings: connection)
                        defer { connection.close() }
                        return .success(try await fetchManifest(fileID: fileID, from: connection))
                    } catch { return .failure(error) }
                }
            }
            for await result in group {
                switch result {
                case .success(let manifest): found.append(manifest)
                case .failure(let error):
                    if case StorageError.wrongKey = error { wrongKey = error as? StorageError }
                    failures.append("\(error)")
                }
            }
        }
        if let best = found.max(by: { $0.revision < $1.revision }) { return best }
        if let wrongKey { throw wrongKey }
        throw StorageError.metadataUnavailable(fileID: fileID, reasons: failures)
    }

    func fetchManifest(fileID: String, from connection: ShardConnection) async throws -> FileManifest {
        let e = connection.endpoint
        func fetchPart(_ index: Int) async throws -> MetadataEnvelope.Part {
            switch try await connection.get(MetadataEnvelope.key(fileID: fileID, part: index)) {
            case .value(let buffer):
                return try MetadataEnvelope.parsePart(Array(buffer.readableBytesView), fileID: fileID)
            case .missing:
                throw StorageError.nodeFailed(node: e.node, namespace: e.namespace, operation: "read metadata",
                                              reason: index == 0 ? "no metadata for file \(fileID) here" : "metadata part \(index) is missing")
            case .corrupt(let text):
                throw StorageError.nodeFailed(node: e.node, namespace: e.namespace, operation: "read metadata", reason: text)
            }
        }
        let first = try await fetchPart(0)
        var envelope = Array(first.bytes)
        envelope.reserveCapacity(first.total)
        if first.count > 1 {
            for index in 1..<first.count {
                let part = try await fetchPart(index)
                guard part.index == index, part.count == first.count, part.total == first.total else {
                    throw StorageError.metadataInvalid(fileID: fileID, reason: "metadata parts on node \(e.node) disagree")
                }
                envelope += part.bytes
            }
        }
        guard envelope.count == first.total else {
            throw StorageError.metadataInvalid(fileID: fileID, reason: "metadata on node \(e.node) is \(envelope.count) of \(first.total) bytes: truncated")
        }
        do { return try MetadataEnvelope.open(envelope, fileID: fileID, key: key) } catch let error as StorageError {
            if case .metadataInvalid(_, let reason) = error {
                throw StorageError.metadataInvalid(fileID: fileID, reason: "\(reason) (copy on node \(e.node))")
            }
            throw error
        }
    }

    /// Writes the metadata to every live column; returns the columns that failed and why.
    func writeMetadata(_ manifest: FileManifest, links: ColumnLinks) async throws -> [Int: String] {
        let parts = try MetadataEnvelope.parts(MetadataEnvelope.seal(manifest, key: key))
        var failed: [Int: String] = [:]
        await withTaskGroup(of: (Int, String?).self) { group in
            for column in links.alive {
                guard let connection = links.connection(column) else { continue }
                group.addTask {
                    do {
                        for (i, part) in parts.enumerated() {
                            try await connection.set(MetadataEnvelope.key(fileID: manifest.fileID, part: i), ByteBuffer(bytes: part))
                        }
                        return (column, nil)
                    } catch { return (column, "\(error)") }
                }
            }
            for await (column, error) in group { if let error { failed[column] = error } }
        }
        return failed
    }

    func saveLocal(_ manifest: FileManifest, complete: Bool, resumeFingerprint: String? = nil) throws -> String? {
        guard let store = localStore else { return nil }
        let envelope = try MetadataEnvelope.seal(manifest, key: key)
        try store.save(LocalFileRecord(fileID: manifest.fileID, name: manifest.name, size: manifest.size, k: manifest.k, m: manifest.m,
                                       revision: manifest.revision, createdAt: manifest.createdAt, complete: complete,
                                       locations: manifest.columns.map { $0.endpoint.description }, keyFingerprint: key.fingerprint,
                                       envelope: Data(envelope).base64EncodedString(), resumeFingerprint: resumeFingerprint))
        return store.path(manifest.fileID)
    }

    /// The files this machine stored (from the local copies).
    public func list() throws -> [LocalFileRecord] { try localStore?.list() ?? [] }

    // MARK: - Shards

    enum ShardFetch: Sendable {
        case good(Int, ByteBuffer)
        case bad(Int, String)
        /// The node failed (not just this shard): skip it for the rest of the operation.
        case nodeDown(Int, String)
    }

    /// Fetches one shard and checks its length, and with `verify` its checksum.
    static func fetchShard(column: Int, block: Int, manifest: FileManifest, entry: BlockTable.Entry, shardLength: Int,
                           links: ColumnLinks, verify: Bool) async -> ShardFetch {
        let endpoint = manifest.columns[column].endpoint
        guard let connection = links.connection(column) else {
            return .nodeDown(column, "node \(endpoint.node): \(links.deadReasons[column] ?? "not connected")")
        }
        do {
            switch try await connection.get(manifest.columns[column].key(block: block)) {
            case .value(let buffer):
                guard buffer.readableBytes == shardLength else {
                    return .bad(column, "node \(endpoint.node): shard \(column) of block \(block) is \(buffer.readableBytes) bytes, expected \(shardLength)")
                }
                guard !verify || BlockCodec.verify(buffer, index: column, entry: entry, shardLength: shardLength) else {
                    return .bad(column, Self.checksumFailure(node: endpoint.node, column: column, block: block))
                }
                return .good(column, buffer)
            case .missing:
                return .bad(column, "node \(endpoint.node): shard \(column) of block \(block) is missing")
            case .corrupt(let text):
                return .bad(column, "node \(endpoint.node): shard \(column) of block \(block): \(text)")
            }
        } catch {
            return .nodeDown(column, "\(error)")
        }
    }

    static func checksumFailure(node: String, column: Int, block: Int) -> String {
        "node \(node): shard \(column) of block \(block) fails its checksum"
    }

    /// k shards of a block (checksummed unless `verify` is false), asked from `order` first to
    /// last: the first k at once, and one more for each that fails. Throws `notRecoverable` when
    /// fewer than k can be had; `alreadyFailed` are counted in that error.
    func gather(block: Int, manifest: FileManifest, entry: BlockTable.Entry, codec: BlockCodec, links: ColumnLinks,
                order: [Int], verify: Bool = true, alreadyFailed: [String] = []) async throws -> (shards: [Int: ByteBuffer], failures: [String]) {
        let k = codec.code.k
        let shardLength = codec.shardLength(cipherLength: entry.cipherLength)
        var shards: [Int: ByteBuffer] = [:]
        var failures: [String] = alreadyFailed
        var candidates = order[...]
        await withTaskGroup(of: ShardFetch.self) { group in
            var running = 0
            while running < k, let column = candidates.popFirst() {
                group.addTask { await Self.fetchShard(column: column, block: block, manifest: manifest, entry: entry, shardLength: shardLength, links: links, verify: verify) }
                running += 1
            }
            while shards.count < k, let result = await group.next() {
                running -= 1
                switch result {
                case .good(let column, let buffer): shards[column] = buffer
                case .bad(_, let reason): failures.append(reason)
                case .nodeDown(let column, let reason):
                    links.markDead(column, reason: reason)
                    failures.append(reason)
                }
                // Each failure frees a slot: ask the next candidate so k requests stay in flight.
                while shards.count + running < k, let column = candidates.popFirst() {
                    group.addTask { await Self.fetchShard(column: column, block: block, manifest: manifest, entry: entry, shardLength: shardLength, links: links, verify: verify) }
                    running += 1
                }
            }
        }
        guard shards.count >= k else {
            throw StorageError.notRecoverable(fileID: manifest.fileID, block: block, available: shards.count, needed: k, failures: failures)
        }
        return (shards, failures)
    }
}
