import Foundation
import NIOCore
import Synchronization

/// The file being written by get: a temporary file next to the output, renamed over it only once
/// every block is in and synced, so the output is never a partial file.
final class OutputFile {
    let path: String
    let temporary: String
    let fd: Int32
    private var finished = false

    init(path: String, overwrite: Bool) throws {
        var info = stat()
        if stat(path, &info) == 0 {
            guard overwrite else { throw StorageError.outputExists(path: path) }
            guard info.st_mode & S_IFMT == S_IFREG else { throw StorageError.invalidInput(what: path, reason: "exists and is not a regular file") }
        }
        let directory = (path as NSString).deletingLastPathComponent
        let base = (path as NSString).lastPathComponent
        guard !base.isEmpty, base != ".", base != ".." else { throw StorageError.invalidInput(what: "output", reason: "'\(path)' names no file") }
        temporary = (directory.isEmpty ? "" : directory + "/") + ".\(base).part-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        self.path = path
        fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw StorageError.io(operation: "create", path: temporary, errno: errno) }
    }

    deinit {
        close(fd)
        if !finished { unlink(temporary) }
    }

    /// A writer of blocks into the file for the tasks of one get (it has one writer thread).
    func makeBlockWriter() -> BlockWriter { BlockWriter(fd: fd, path: temporary) }

    static func write(fd: Int32, path: String, _ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        var written = 0
        while written < bytes.count {
            let n = pwrite(fd, bytes.baseAddress.map { $0 + written }, bytes.count - written, off_t(offset) + off_t(written))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw StorageError.io(operation: "write", path: path, errno: n < 0 ? errno : EIO) }
            written += n
        }
    }

    /// Sets the final length, syncs, and renames over the output. The file keeps mode 0600: its
    /// contents were private enough to encrypt.
    func commit(size: UInt64) throws {
        guard ftruncate(fd, off_t(size)) == 0 else { throw StorageError.io(operation: "truncate", path: temporary, errno: errno) }
        guard fsync(fd) == 0 else { throw StorageError.io(operation: "fsync", path: temporary, errno: errno) }
        guard rename(temporary, path) == 0 else { throw StorageError.io(operation: "rename to", path: path, errno: errno) }
        finished = true
        AtomicFile.syncDirectory(of: path)
    }
}

/// Writes to one file are serialized by the kernel anyway (the inode lock), and writers waiting
/// for it spin: with blocks decoded in parallel, a sixth of get's CPU time went to that spinning
/// (storage-bench on tmpfs). One writer thread takes the blocks in turn instead, and a block's
/// task waits for its write without holding a thread of the cooperative pool, which decodes the
/// next blocks meanwhile.
struct BlockWriter: Sendable {
    let fd: Int32
    let path: String
    private let queue = DispatchQueue(label: "storage-client.get.output")

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    /// Writes `bytes` at `offset` on the writer thread; `bytes` must stay valid until this returns.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) async throws {
        // @unchecked: the caller keeps the memory alive and untouched until the write resumes it.
        struct Borrowed: @unchecked Sendable { let bytes: UnsafeRawBufferPointer }
        let borrowed = Borrowed(bytes: bytes)
        let fd = self.fd, path = self.path
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            queue.async {
                continuation.resume(with: Result { try OutputFile.write(fd: fd, path: path, borrowed.bytes, at: offset) })
            }
        }
    }
}

extension StorageClient {
    /// Rebuilds the file into `output` (atomically: temp file + rename). Reads each block from the
    /// k fastest columns, with another column for every shard that is missing, corrupt or whose
    /// node fails; every shard is checked against its checksum and every block against its tag.
    public func get(fileID: String, to output: String, endpoints: [ShardEndpoint] = [], overwrite: Bool = false,
                    progress: ProgressHandler? = nil) async throws -> GetReport {
        try SodiumCrypto.ensureReady()
        let out = try OutputFile(path: output, overwrite: overwrite)
        let (manifest, links) = try await openFile(fileID: fileID, endpoints: endpoints)
        defer { links.closeAll() }
        let codec = try manifest.codec(key: key)
        let table = try manifest.blockTable()
        let k = manifest.k

        let warnings = SharedNotes(links.deadReasons.sorted { $0.key < $1.key }.map {
            "shard \($0.key) (node \(manifest.columns[$0.key].endpoint.node)) unavailable: \($0.value)"
        })
        guard links.aliveCount >= k else {
            throw StorageError.notRecoverable(fileID: fileID, block: 0, available: links.aliveCount, needed: k,
                                              failures: warnings.all)
        }

        let tracker = ProgressTracker("get", total: manifest.size, handler: progress)
        let decoded = SharedCounter()
        let writer = out.makeBlockWriter()
        let width = parallelBlocks
        // One decode workspace per block in flight, reused, and freed when get returns.
        let workspaces = Pool<DecodeWorkspace>(keep: width) { DecodeWorkspace() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            var running = 0
            while next < manifest.blockCount || running > 0 {
                while running < width && next < manifest.blockCount {
                    let block = next
                    let order = Self.readOrder(links: links, k: k, preference: readPreference)
                    group.addTask {
                        let length = try await Self.readBlock(block, manifest: manifest, table: table, codec: codec, links: links, order: order,
                                                              client: self, warnings: warnings, decoded: decoded, workspaces: workspaces) { plain in
                            try await writer.write(plain, at: UInt64(block) * UInt64(manifest.blockSize))
                            return plain.count
                        }
                        tracker.add(UInt64(length))
                    }
                    next += 1
                    running += 1
                }
                guard try await group.next() != nil else { break }
                running -= 1
            }
        }
        try out.commit(size: manifest.size)
        var notes = warnings.all
        if !notes.isEmpty {
            notes.append("the file was rebuilt from the remaining shards; run `grid-twin shard check \(fileID)` and `repair` to restore full redundancy")
        }
        return GetReport(fileID: fileID, name: manifest.name, size: manifest.size, output: output, seconds: tracker.elapsedSeconds,
                         warnings: notes, decodedBlocks: decoded.count)
    }

    /// Reads and decodes one block and hands its plaintext to `deliver` (valid during the call,
    /// which keeps the block's workspace).
    /// The first k shards are decoded without checking their checksums: if the block's tag
    /// verifies, every byte that went into it was intact (the checksums would only repeat that
    /// work). If it does not, the checksums find the bad shards, which are replaced by others and
    /// the block decoded again; nothing unverified is ever delivered.
    static func readBlock<R>(_ block: Int, manifest: FileManifest, table: BlockTable, codec: BlockCodec, links: ColumnLinks, order: [Int],
                             client: StorageClient, warnings: SharedNotes, decoded: SharedCounter, workspaces: Pool<DecodeWorkspace>,
                             deliver: (UnsafeRawBufferPointer) async throws -> R) async throws -> R {
        let entry = table.entry(block)
        let shardLength = codec.shardLength(cipherLength: entry.cipherLength)
        var excluded: Set<Int> = []
        var failures: [String] = []
        for round in 0...manifest.k + manifest.m {
            let (shards, more) = try await client.gather(block: block, manifest: manifest, entry: entry, codec: codec, links: links,
                                                         order: order.filter { !excluded.contains($0) }, verify: round > 0,
                                                         alreadyFailed: failures)
            failures = more
            let workspace = try workspaces.take()
            defer { workspaces.give(workspace) }
            do {
                // The plaintext lives in the workspace, which this task holds until deliver is done.
                let plain = try codec.decode(block: block, entry: entry, shards: shards, decompressors: client.decompressors,
                                             workspace: workspace) { $0 }
                if !failures.isEmpty { warnings.add(failures) }
                if (0..<manifest.k).contains(where: { shards[$0] == nil }) { decoded.add() }
                return try await deliver(plain)
            } catch StorageError.integrity(let fileID, _, let reason) {
                let bad = shards.filter { !BlockCodec.verify($0.value, index: $0.key, entry: entry, shardLength: shardLength) }.keys.sorted()
                // All k shards intact and still no valid block: the metadata and the data disagree.
                guard !bad.isEmpty else { throw StorageError.integrity(fileID: fileID, block: block, reason: reason) }
                for column in bad {
                    excluded.insert(column)
                    failures.append(checksumFailure(node: manifest.columns[column].endpoint.node, column: column, block: block))
                }
            }
        }
        throw StorageError.notRecoverable(fileID: manifest.fileID, block: block, available: manifest.k + manifest.m - excluded.count,
                                          needed: manifest.k, failures: failures)
    }

    /// The columns to read from, best first. With `.fastestNodes`, the fastest to answer
    /// (connect + SELECT + PING); one round trip is a noisy measure, so columns within 10 ms (or
    /// 2x) of the fastest count as equally fast, and among those data columns come first: reading
    /// them needs no decode. With `.dataColumns`, data columns first whatever their speed.
    static func readOrder(links: ColumnLinks, k: Int, preference: ReadPreference) -> [Int] {
        let timed = links.alive.compactMap { column -> (column: Int, nanos: UInt64)? in
            links.connection(column).map { (column, $0.setupNanoseconds) }
        }
        guard let fastest = timed.map(\.nanos).min() else { return [] }
        let tolerance = preference == .dataColumns ? UInt64.max - fastest : max(10_000_000, fastest)
        return timed.sorted { a, b in
            let aFast = a.nanos <= fastest + tolerance, bFast = b.nanos <= fastest + tolerance
            if aFast != bFast { return aFast }
            if aFast { return (a.column >= k ? 1 : 0, a.column) < (b.column >= k ? 1 : 0, b.column) }
            return (a.nanos, a.column) < (b.nanos, b.column)
        }.map(\.column)
    }
}
