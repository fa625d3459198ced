import Foundation
import GridTypes
import NIOCore
import Synchronization

/// The file being stored, opened once; put reads blocks from it with pread and checks at the end
/// that it did not change meanwhile.
final class SourceFile {
    let path: String
    let fd: Int32
    let size: UInt64
    private let identity: [Int64]

    init(path: String) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StorageError.io(operation: "open", path: path, errno: errno) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let e = errno
            close(fd)
            throw StorageError.io(operation: "stat", path: path, errno: e)
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw StorageError.invalidInput(what: path, reason: "not a regular file")
        }
        size = UInt64(info.st_size)
        identity = Self.identity(info)
    }

    deinit { close(fd) }

    /// Device, inode, size, mtime and ctime (ns), and the zstd version: a resume needs all of
    /// them unchanged.
    var resumeFingerprint: String {
        "file " + identity.map(String.init).joined(separator: ":") + "; zstd \(ZstdCompressor.libraryVersion)"
    }

    private static func identity(_ info: stat) -> [Int64] {
        [Int64(bitPattern: UInt64(info.st_dev)), Int64(bitPattern: UInt64(info.st_ino)), Int64(info.st_size),
         Int64(info.st_mtim.tv_sec), Int64(info.st_mtim.tv_nsec), Int64(info.st_ctim.tv_sec), Int64(info.st_ctim.tv_nsec)]
    }

    /// Throws when size or modification time differ from when the file was opened.
    func checkUnchanged() throws {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw StorageError.io(operation: "stat", path: path, errno: errno) }
        let now = Self.identity(info)
        if now[2] != identity[2] {
            throw StorageError.sourceChanged(path: path, reason: "its size went from \(identity[2]) to \(now[2]) bytes")
        }
        if now != identity { throw StorageError.sourceChanged(path: path, reason: "it was modified") }
    }

    /// Reads exactly `count` bytes at `offset`; a short read means the file shrank.
    static func read(fd: Int32, path: String, into buffer: UnsafeMutableRawBufferPointer, offset: UInt64) throws {
        var filled = 0
        while filled < buffer.count {
            let n = pread(fd, buffer.baseAddress.map { $0 + filled }, buffer.count - filled, off_t(offset) + off_t(filled))
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw StorageError.io(operation: "read", path: path, errno: errno) }
            if n == 0 { throw StorageError.sourceChanged(path: path, reason: "it ended at \(offset + UInt64(filled)) bytes, before its size") }
            filled += n
        }
    }
}

extension StorageClient {
    /// Stores the file at `path` on the first k+m namespaces of `placement` that are on distinct
    /// nodes (the rest are spares). Returns only once every shard and the metadata are written
    /// (or, with `minimumShards`, at least that many columns); on failure nothing is kept.
    public func put(path: String, placement: [ShardEndpoint], options: StorageOptions, name: String? = nil,
                    progress: ProgressHandler? = nil) async throws -> PutReport {
        try options.validate()
        try SodiumCrypto.ensureReady()
        let width = options.k + options.m
        var chosen: [ShardEndpoint] = []
        var spares: [ShardEndpoint] = []
        for endpoint in placement {
            try endpoint.validate()
            if chosen.count < width && !chosen.contains(where: { $0.node == endpoint.node }) {
                chosen.append(endpoint)
            } else {
                spares.append(endpoint)
            }
        }
        guard chosen.count == width else {
            throw StorageError.invalidPlacement(reason: "k+m = \(width) shards need namespaces on \(width) distinct nodes; "
                                                + "the placement has \(Set(placement.map(\.node)).count)")
        }
        let source = try SourceFile(path: path)
        let fileName = name ?? (path as NSString).lastPathComponent
        guard fileName.utf8.count <= FileManifest.maxNameLength else {
            throw StorageError.invalidInput(what: "name", reason: "at most \(FileManifest.maxNameLength) bytes")
        }
        return try await store(source, as: Upload(fileIDBytes: SodiumCrypto.random(16), fileKey: SodiumCrypto.random(SodiumCrypto.keyLength),
                                                  name: fileName, createdAt: Int64(Date().timeIntervalSince1970), columns: chosen,
                                                  resuming: false),
                               spares: spares, options: options, progress: progress)
    }

    /// Finishes a put that stopped part way (the process was killed, or a put with `keepPartial`
    /// failed): the same file id, key and namespaces from the local record, every block coded
    /// again (the same bytes: the key and nonces are the file's), and only the shards the nodes
    /// do not already hold, by a PROOF of their checksum, are sent. `options` gives the failure
    /// policy, parallelism and connection settings; k, m, block size and compression are the
    /// record's. `spares` stand in for namespaces that do not answer (with the spare policy).
    public func resume(fileID: String, path: String, spares: [ShardEndpoint] = [], options: StorageOptions,
                       progress: ProgressHandler? = nil) async throws -> PutReport {
        try SodiumCrypto.ensureReady()
        guard LocalFileStore.isFileID(fileID) else {
            throw StorageError.invalidInput(what: "file id", reason: "'\(fileID)' is not 32 lowercase hex digits")
        }
        guard let record = try localStore?.load(fileID) else {
            throw StorageError.invalidInput(what: "--resume \(fileID)", reason: "no local record of that file here; only the machine that started a put can resume it")
        }
        guard !record.complete else {
            throw StorageError.invalidInput(what: "--resume \(fileID)", reason: "that file is already stored in full")
        }
        guard let envelope = Data(base64Encoded: record.envelope) else {
            throw StorageError.metadataInvalid(fileID: fileID, reason: "local copy's envelope is not base64")
        }
        let started = try MetadataEnvelope.open(Array(envelope), fileID: fileID, key: key, validate: false)
        let source = try SourceFile(path: path)
        guard source.size == started.size else {
            throw StorageError.invalidInput(what: path, reason: "it is \(source.size) bytes, the put being resumed was of \(started.size): "
                                            + "not the same file. Store it anew, and `grid-twin shard rm \(fileID)` the unfinished one")
        }
        // Blocks coded again are encrypted under the same key and nonces as before: they must be
        // the same bytes, or a node holding both versions learns their XOR.
        guard let recorded = record.resumeFingerprint, recorded == source.resumeFingerprint else {
            throw StorageError.invalidInput(what: path, reason: "it (or the zstd library) is not as it was when put \(fileID) started "
                                            + "(\(record.resumeFingerprint ?? "not recorded") now \(source.resumeFingerprint)); a resume would "
                                            + "encrypt other bytes under the same nonces. Store it anew, and `grid-twin shard rm \(fileID)` the unfinished one")
        }
        var settings = options
        settings.k = started.k
        settings.m = started.m
        settings.blockSize = started.blockSize
        settings.zstdLevel = started.compression == "zstd" ? started.zstdLevel : nil
        try settings.validate()
        for endpoint in spares { try endpoint.validate() }
        return try await store(source, as: Upload(fileIDBytes: started.fileIDBytes, fileKey: try started.unwrapFileKey(with: key),
                                                  name: started.name, createdAt: started.createdAt,
                                                  columns: started.columns.sorted { $0.index < $1.index }.map(\.endpoint), resuming: true),
                               spares: spares, options: settings, progress: progress)
    }

    /// What a put stores under: new for a put, the record's for a resume.
    struct Upload {
        var fileIDBytes: [UInt8]
        var fileKey: [UInt8]
        var name: String
        var createdAt: Int64
        var columns: [ShardEndpoint]
        var resuming: Bool
    }

    private func store(_ source: SourceFile, as upload: Upload, spares: [ShardEndpoint], options: StorageOptions,
                       progress: ProgressHandler?) async throws -> PutReport {
        var spares = spares
        let width = options.k + options.m
        let chosen = upload.columns
        let fileName = upload.name
        let started = DispatchTimeLike.now()
        let fileIDBytes = upload.fileIDBytes
        let fileID = Hex.encode(fileIDBytes)
        let fileKey = upload.fileKey
        let blockCount = BlockCodec.blockCount(size: source.size, blockSize: options.blockSize)
        let codec = BlockCodec(fileID: fileIDBytes, fileKey: fileKey, size: source.size, blockSize: options.blockSize,
                               blockCount: blockCount, code: try ReedSolomon(k: options.k, m: options.m),
                               zstdLevel: options.zstdLevel.map(Int32.init), proofKey: key.proofKey(fileID: fileIDBytes))

        // Connect; with the spare policy a node that does not answer is replaced before anything is written.
        let links = ColumnLinks()
        var endpoints = chosen
        var warnings: [String] = []
        await links.connect(Dictionary(uniqueKeysWithValues: chosen.enumerated().map { ($0.offset, $0.element) }), settings: options.connection)
        var failures = links.deadReasons.sorted { $0.key < $1.key }.map { "shard \($0.key): \($0.value)" }
        if options.onNodeFailure == .spare {
            for column in links.deadReasons.keys.sorted() {
                while let spare = Self.takeSpare(&spares, avoiding: endpoints) {
                    do {
                        let connection = try await ShardConnection.open(spare, settings: options.connection)
                        warnings.append("shard \(column): \(endpoints[column].node) did not answer; placed on spare \(spare) instead")
                        endpoints[column] = spare
                        links.set(column, connection)
                        break
                    } catch {
                        failures.append("spare \(spare): \(error)")
                    }
                }
            }
        }
        let connected = links.aliveCount
        guard connected >= options.requiredShards else {
            links.closeAll()
            let error = StorageError.placementFailed(written: connected, wanted: width, failures: failures)
            // A resume's earlier shards stay where they are, for another try.
            if upload.resuming { throw StorageError.putStopped(fileID: fileID, reason: Self.stopReason(error)) }
            throw error
        }

        var manifest = FileManifest(
            version: FileManifest.formatVersion, fileID: fileID, revision: 1, name: fileName, size: source.size,
            blockSize: options.blockSize, blockCount: blockCount, k: options.k, m: options.m,
            compression: options.zstdLevel == nil ? "none" : "zstd", zstdLevel: options.zstdLevel ?? 0,
            createdAt: upload.createdAt,
            wrappedKey: FileManifest.wrap(fileKey: fileKey, fileID: fileIDBytes, with: key),
            columns: endpoints.enumerated().map { ShardColumn(index: $0.offset, endpoint: $0.element, keyPrefix: "gts:\(fileID):\($0.offset):") },
            blocks: "")
        // The local record goes first (marked incomplete): if this process dies part way, the
        // record says which namespaces may hold partial shards.
        _ = try saveLocal(manifest, complete: false, resumeFingerprint: source.resumeFingerprint)

        let alreadyStored = SharedCounter()
        do {
            let tracker = ProgressTracker(upload.resuming ? "put (resume)" : "put", total: source.size, handler: progress)
            let table = try await uploadBlocks(source: source, codec: codec, manifest: manifest, links: links, options: options,
                                               spares: spares.count, skipStored: upload.resuming ? alreadyStored : nil, tracker: tracker)
            try source.checkUnchanged()
            manifest.blocks = Data(table.bytes).base64EncodedString()

            // Columns that failed part way: rebuild them onto spares from the columns that made it.
            var lost = links.deadReasons
            for (column, reason) in lost.sorted(by: { $0.key < $1.key }) {
                failures.append("shard \(column) on node \(endpoints[column].node): \(reason)")
            }
            if options.onNodeFailure == .spare, !lost.isEmpty {
                var targets: [Int: ShardConnection] = [:]
                for column in lost.keys.sorted() {
                    while let spare = Self.takeSpare(&spares, avoiding: endpoints) {
                        do {
                            targets[column] = try await ShardConnection.open(spare, settings: options.connection)
                            warnings.append("shard \(column): \(endpoints[column].node) failed during the upload; rebuilt on spare \(spare)")
                            endpoints[column] = spare
                            manifest.columns[column].endpoint = spare
                            break
                        } catch {
                            failures.append("spare \(spare): \(error)")
                        }
                    }
                }
                if !targets.isEmpty {
                    // Set first, so a failure below cleans the spares up too; the rebuild reads
                    // from the other columns only (a target is never its own source).
                    for (column, connection) in targets { links.set(column, connection) }
                    _ = try await rebuild(manifest: manifest, codec: codec, links: links, targets: targets, inPlace: [:],
                                          blocks: Array(0..<blockCount), tracker: nil)
                }
                lost = links.deadReasons
            }
            let metadataFailures = try await writeMetadata(manifest, links: links)
            for (column, reason) in metadataFailures {
                links.markDead(column, reason: "metadata: \(reason)")
                failures.append("shard \(column) on node \(endpoints[column].node): writing the metadata failed: \(reason)")
            }
            lost = links.deadReasons
            let written = links.aliveCount
            guard written >= options.requiredShards else {
                throw StorageError.placementFailed(written: written, wanted: width, failures: failures)
            }
            for column in lost.keys.sorted() {
                warnings.append("shard \(column) on node \(endpoints[column].node) was not stored (\(lost[column] ?? "")); "
                                + "the file has \(written) of \(width) shards: run `grid-twin shard repair \(fileID) --spare ...`")
            }
            let localPath = try saveLocal(manifest, complete: true)
            links.closeAll()
            let storedBytes = (0..<blockCount).reduce(UInt64(0)) { sum, block in
                sum + UInt64(codec.shardLength(cipherLength: table.entry(block).cipherLength) * width)
            }
            let columns = manifest.columns.map { column in
                ColumnStatus(column: column, k: options.k, status: lost[column.index].map { "failed: \($0)" } ?? "stored")
            }
            return PutReport(fileID: fileID, name: fileName, size: source.size, storedBytes: storedBytes, k: options.k, m: options.m,
                             blockSize: options.blockSize, blocks: blockCount, seconds: Double(DispatchTimeLike.now() - started) / 1e9,
                             columns: columns, shardsWritten: written, warnings: warnings, localCopy: localPath,
                             shardsAlreadyStored: alreadyStored.count)
        } catch {
            // Kept for a resume, unless the file changed (a resume of it would be refused).
            let changed: Bool
            if case StorageError.sourceChanged = error { changed = true } else { changed = false }
            if (options.keepPartial || upload.resuming) && !changed {
                // The local record (incomplete) names where the shards are.
                links.closeAll()
                _ = try? saveLocal(manifest, complete: false, resumeFingerprint: source.resumeFingerprint)
                throw StorageError.putStopped(fileID: fileID, reason: Self.stopReason(error))
            }
            // Nothing half-stored is kept: remove what was written (best effort) and the local record.
            await removeShards(manifest: manifest, blockCount: blockCount, links: links)
            links.closeAll()
            try? localStore?.remove(fileID)
            throw error
        }
    }

    /// Why a put stopped, without the advice that assumes nothing was kept.
    static func stopReason(_ error: any Error) -> String {
        switch error {
        case StorageError.placementFailed(let written, let wanted, let failures):
            return "only \(written) of \(wanted) shard namespaces took the file (\(failures.joined(separator: "; ")))"
        case StorageError.sourceChanged(let path, let reason):
            return "\(path) changed while it was being stored (\(reason))"
        default:
            return "\(error)"
        }
    }

    static func takeSpare(_ spares: inout [ShardEndpoint], avoiding used: [ShardEndpoint]) -> ShardEndpoint? {
        guard let index = spares.firstIndex(where: { spare in !used.contains(where: { $0.node == spare.node }) }) else { return nil }
        return spares.remove(at: index)
    }

    /// Reads, codes and uploads every block, `parallelBlocks` at a time. A column whose node fails
    /// is marked dead; with the fail policy (or too few columns left to finish) the upload stops.
    private func uploadBlocks(source: SourceFile, codec: BlockCodec, manifest: FileManifest, links: ColumnLinks,
                              options: StorageOptions, spares: Int, skipStored: SharedCounter?,
                              tracker: ProgressTracker) async throws -> BlockTable {
        let fd = source.fd, path = source.path
        let width = options.k + options.m
        var table = BlockTable(shardCount: width, blocks: codec.blockCount)
        let compressors = self.compressors
        // One encode workspace per block in flight, reused, and freed when the upload ends.
        let workspaces = Pool<EncodeWorkspace>(keep: options.parallelBlocks) { EncodeWorkspace() }
        try await withThrowingTaskGroup(of: (Int, BlockTable.Entry).self) { group in
            var next = 0
            var running = 0
            while next < codec.blockCount || running > 0 {
                while running < options.parallelBlocks && next < codec.blockCount {
                    let block = next
                    group.addTask {
                        let length = codec.plainLength(block)
                        let workspace = try workspaces.take()
                        let entry: BlockTable.Entry
                        do {
                            let plain = workspace.plain.reserve(length)  // pread fills it or throws
                            try SourceFile.read(fd: fd, path: path, into: plain, offset: UInt64(block) * UInt64(codec.blockSize))
                            let encoded = try codec.encode(block: block, plaintext: UnsafeRawBufferPointer(plain), compressors: compressors,
                                                           workspace: workspace)
                            entry = encoded.entry
                            try await Self.uploadShards(encoded.shards, block: block, manifest: manifest, links: links,
                                                        options: options, spares: spares,
                                                        skipStored: skipStored.map { ($0, encoded.entry.checksums) })
                        }
                        // The shards are on the nodes and dropped: the workspace's buffers can be reused.
                        workspaces.give(workspace)
                        tracker.add(UInt64(length))
                        return (block, entry)
                    }
                    next += 1
                    running += 1
                }
                guard let (block, entry) = try await group.next() else { break }
                table.set(block, entry)
                running -= 1
            }
        }
        return table
    }

    /// Sends a block's shards to the live columns. With `skipStored` (a resume), a shard the
    /// node already holds, as its PROOF over the whole value equals the checksum, is counted
    /// there instead of sent.
    private static func uploadShards(_ shards: [ByteBuffer], block: Int, manifest: FileManifest, links: ColumnLinks,
                                     options: StorageOptions, spares: Int,
                                     skipStored: (counter: SharedCounter, checksums: [[UInt8]])?) async throws {
        await withTaskGroup(of: Void.self) { group in
            for column in links.alive {
                guard let connection = links.connection(column) else { continue }
                let key = manifest.columns[column].key(block: block)
                let shard = shards[column]
                group.addTask {
                    do {
                        if let skipStored,
                           case .answer(let proof) = try await connection.proof(key, nonce: [], range: nil),
                           SodiumCrypto.equal(proof, skipStored.checksums[column]) {
                            skipStored.counter.add()
                            return
                        }
                        try await connection.set(key, shard)
                    } catch { links.markDead(column, reason: "\(error)") }
                }
            }
        }
        let alive = links.aliveCount
        let reachable = options.onNodeFailure == .spare ? min(alive + spares, options.k + options.m) : alive
        if alive < options.k || reachable < options.requiredShards {
            let failures = links.deadReasons.sorted { $0.key < $1.key }.map { "shard \($0.key) on node \(manifest.columns[$0.key].endpoint.node): \($0.value)" }
            throw StorageError.placementFailed(written: alive, wanted: options.k + options.m, failures: failures)
        }
    }

    /// Deletes a file's shards and metadata from the columns still connected (best effort).
    func removeShards(manifest: FileManifest, blockCount: Int, links: ColumnLinks) async {
        await withTaskGroup(of: Void.self) { group in
            for column in links.alive {
                guard let connection = links.connection(column) else { continue }
                let prefix = manifest.columns[column].keyPrefix
                group.addTask {
                    // Pipelined in batches: many DELs in flight on the one connection.
                    var block = 0
                    while block < blockCount {
                        let batch = block..<min(blockCount, block + 64)
                        await withTaskGroup(of: Void.self) { inner in
                            for b in batch { inner.addTask { try? await connection.delete(prefix + String(b)) } }
                        }
                        block = batch.upperBound
                    }
                    for part in 0..<8 { try? await connection.delete(MetadataEnvelope.key(fileID: manifest.fileID, part: part)) }
                }
            }
        }
    }
}
