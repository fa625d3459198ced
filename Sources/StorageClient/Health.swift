import Foundation
import NIOCore
import Synchronization

/// What a check found for one shard.
enum ShardState: Sendable, Equatable {
    case good
    case missing
    case corrupt
    /// Not asked: the node was unreachable or failed during the check.
    case unknown
}

/// Per column, per block shard states, and which metadata revision each column holds.
struct Assessment: Sendable {
    var states: [[ShardState]]
    var metadataRevisions: [Int?]
    var errors: [Int: String]
    /// Shards downloaded and checksummed in a proof check (the random sample).
    var downloaded = 0

    func goodShards(block: Int) -> Int { states.reduce(0) { $0 + ($1[block] == .good ? 1 : 0) } }
}

extension StorageClient {
    /// Per-shard health of a file without downloading it: each shard is asked for two PROOFs (the
    /// node reads the value, checks its CRC and hashes it): over all of it with no nonce, which
    /// must equal the shard's checksum, and over a secret range with a secret nonce, which must
    /// equal the answer computed at put. With `deep` every shard is downloaded and checksummed
    /// instead. Nodes that do not know PROOF (a plain 0-db) are checked the deep way.
    public func check(fileID: String, endpoints: [ShardEndpoint] = [], deep: Bool = false,
                      progress: ProgressHandler? = nil) async throws -> CheckReport {
        let started = DispatchTimeLike.now()
        let (manifest, links) = try await openFile(fileID: fileID, endpoints: endpoints)
        defer { links.closeAll() }
        let codec = try manifest.codec(key: key)
        let assessment = try await assess(manifest: manifest, codec: codec, links: links, deep: deep, progress: progress)
        return report(manifest: manifest, assessment: assessment, deep: deep, seconds: Double(DispatchTimeLike.now() - started) / 1e9)
    }

    func report(manifest: FileManifest, assessment: Assessment, deep: Bool, seconds: Double) -> CheckReport {
        var columns: [ColumnHealth] = []
        for column in manifest.columns {
            let states = assessment.states[column.index]
            let error = assessment.errors[column.index]
            columns.append(ColumnHealth(
                column: ColumnStatus(column: column.redactedForReport, k: manifest.k, status: error == nil ? "reachable" : "failed"),
                reachable: error == nil, error: error,
                good: states.filter { $0 == .good }.count, missing: states.filter { $0 == .missing }.count,
                corrupt: states.filter { $0 == .corrupt }.count, unknown: states.filter { $0 == .unknown }.count,
                metadataRevision: assessment.metadataRevisions[column.index]))
        }
        let minimum = (0..<manifest.blockCount).map { assessment.goodShards(block: $0) }.min() ?? 0
        return CheckReport(fileID: manifest.fileID, name: manifest.name, size: manifest.size, k: manifest.k, m: manifest.m,
                           blocks: manifest.blockCount, revision: manifest.revision, method: deep ? "deep" : "proof",
                           downloadedShards: assessment.downloaded, columns: columns,
                           minimumGoodShards: minimum, recoverable: minimum >= manifest.k, healthy: minimum == manifest.k + manifest.m,
                           seconds: seconds)
    }

    func assess(manifest: FileManifest, codec: BlockCodec, links: ColumnLinks, deep: Bool,
                progress: ProgressHandler?) async throws -> Assessment {
        let table = try manifest.blockTable()
        let width = manifest.k + manifest.m
        let tracker = ProgressTracker(deep ? "check (deep)" : "check", total: UInt64(manifest.blockCount * width), handler: progress)
        var assessment = Assessment(states: Array(repeating: Array(repeating: .unknown, count: manifest.blockCount), count: width),
                                    metadataRevisions: Array(repeating: nil, count: width), errors: links.deadReasons)
        await withTaskGroup(of: (Int, [ShardState], Int?, String?, Int).self) { group in
            for column in 0..<width {
                guard let connection = links.connection(column) else { continue }
                let sample = deep ? [] : Self.downloadSample(blockCount: manifest.blockCount)
                group.addTask {
                    await Self.assessColumn(column, connection: connection, manifest: manifest, codec: codec, table: table,
                                            deep: deep, sample: sample, tracker: tracker)
                }
            }
            for await (column, states, revision, error, downloaded) in group {
                assessment.downloaded += downloaded
                assessment.states[column] = states
                assessment.metadataRevisions[column] = revision
                if let error {
                    assessment.errors[column] = error
                    links.markDead(column, reason: error)
                }
            }
        }
        return assessment
    }

    /// Blocks whose shard a proof check downloads and checksums, chosen afresh for every column
    /// and every check: each shard's secret challenge is the same every time, so a node that
    /// kept the answers and dropped the data would pass PROOFs alone. About 1 in 64 blocks, at
    /// least 1 and at most 8 per column.
    static func downloadSample(blockCount: Int) -> Set<Int> {
        guard blockCount > 0 else { return [] }
        let count = min(blockCount, max(1, min(8, blockCount / 64)))
        var sample = Set<Int>()
        while sample.count < count { sample.insert(Int.random(in: 0..<blockCount)) }
        return sample
    }

    private static func assessColumn(_ column: Int, connection: ShardConnection, manifest: FileManifest, codec: BlockCodec,
                                     table: BlockTable, deep: Bool, sample: Set<Int>,
                                     tracker: ProgressTracker) async -> (Int, [ShardState], Int?, String?, Int) {
        var states = [ShardState](repeating: .unknown, count: manifest.blockCount)
        var downloaded = 0
        var revision: Int?
        var useGet = deep
        do {
            revision = try await StorageClient.metadataRevision(fileID: manifest.fileID, on: connection)
            // Many requests in flight on the one connection; fewer when each reply is a whole shard.
            var block = 0
            while block < manifest.blockCount {
                let batch = block..<min(manifest.blockCount, block + (useGet ? 4 : 32))
                let download = useGet
                let results = try await withThrowingTaskGroup(of: (Int, ShardState?).self) { group in
                    for b in batch {
                        group.addTask {
                            let entry = table.entry(b)
                            let length = codec.shardLength(cipherLength: entry.cipherLength)
                            let key = manifest.columns[column].key(block: b)
                            if download || sample.contains(b) {
                                switch try await connection.get(key) {
                                case .value(let buffer):
                                    return (b, BlockCodec.verify(buffer, index: column, entry: entry, shardLength: length) ? .good : .corrupt)
                                case .missing: return (b, .missing)
                                case .corrupt: return (b, .corrupt)
                                }
                            }
                            // Two questions, both answered by the node reading the whole value and
                            // checking its CRC: the hash of all of it with no nonce (that is the
                            // shard's checksum: any changed byte shows), and the secret challenge
                            // (a nonce and range only this twin knows: the node must hold the data).
                            switch try await connection.proof(key, nonce: [], range: nil) {
                            case .answer(let bytes):
                                guard SodiumCrypto.equal(bytes, entry.checksums[column]) else { return (b, .corrupt) }
                            case .missing: return (b, .missing)
                            case .corrupt: return (b, .corrupt)
                            case .unsupported: return (b, nil)
                            }
                            let challenge = codec.challenge(block: b, shard: column, shardLength: length)
                            switch try await connection.proof(key, nonce: challenge.nonce, range: (challenge.offset, challenge.length)) {
                            case .answer(let bytes):
                                return (b, SodiumCrypto.equal(Array(bytes.prefix(BlockTable.proofLength)), entry.proofs[column]) ? .good : .corrupt)
                            case .missing: return (b, .missing)
                            case .corrupt: return (b, .corrupt)
                            case .unsupported: return (b, nil)
                            }
                        }
                    }
                    var out: [(Int, ShardState?)] = []
                    for try await result in group { out.append(result) }
                    return out
                }
                if results.contains(where: { $0.1 == nil }) {
                    useGet = true  // a node without PROOF: check this column by download instead
                    continue
                }
                for (b, state) in results { states[b] = state ?? .unknown }
                downloaded += download ? batch.count : batch.filter(sample.contains).count
                tracker.add(UInt64(batch.count))
                block = batch.upperBound
            }
            return (column, states, revision, nil, downloaded)
        } catch {
            return (column, states, revision, "\(error)", downloaded)
        }
    }

    /// Rebuilds what a check finds wrong: shards missing or corrupt on a reachable node are
    /// rewritten in place; columns on unreachable nodes move to `spares` (namespaces on nodes the
    /// file does not use yet). The metadata gets a new revision on every namespace and locally.
    public func repair(fileID: String, spares: [ShardEndpoint], endpoints: [ShardEndpoint] = [], deep: Bool = false,
                       progress: ProgressHandler? = nil) async throws -> RepairReport {
        let started = DispatchTimeLike.now()
        var (manifest, links) = try await openFile(fileID: fileID, endpoints: endpoints)
        defer { links.closeAll() }
        let codec = try manifest.codec(key: key)
        let assessment = try await assess(manifest: manifest, codec: codec, links: links, deep: deep, progress: nil)

        let relocate = manifest.columns.map(\.index).filter { !links.isAlive($0) }
        var inPlace: [Int: Set<Int>] = [:]
        for column in links.alive {
            let bad = (0..<manifest.blockCount).filter { assessment.states[column][$0] != .good }
            if !bad.isEmpty { inPlace[column] = Set(bad) }
        }
        // Every block must still have k good shards outside the ones being rebuilt.
        for block in 0..<manifest.blockCount where assessment.goodShards(block: block) < manifest.k {
            let failures = manifest.columns.compactMap { column -> String? in
                let state = assessment.states[column.index][block]
                if state == .good { return nil }
                return "shard \(column.index) on node \(column.endpoint.node): \(assessment.errors[column.index] ?? "\(state)")"
            }
            throw StorageError.notRecoverable(fileID: fileID, block: block, available: assessment.goodShards(block: block),
                                              needed: manifest.k, failures: failures)
        }

        // Replacement namespaces for the columns on unreachable nodes, decided before anything is written.
        var targets: [Int: ShardConnection] = [:]
        var moves: [RepairReport.Move] = []
        var candidates = spares
        var used = links.alive.map { manifest.columns[$0].endpoint }
        var spareFailures: [String] = []
        for column in relocate {
            var placed = false
            while let spare = Self.takeSpare(&candidates, avoiding: used) {
                do {
                    let connection = try await ShardConnection.open(spare, settings: connection)
                    targets[column] = connection
                    moves.append(RepairReport.Move(index: column, from: manifest.columns[column].endpoint.description, to: spare.description))
                    used.append(spare)
                    placed = true
                    break
                } catch {
                    spareFailures.append("\(error)")
                }
            }
            if !placed { break }
        }
        guard targets.count == relocate.count else {
            for connection in targets.values { connection.close() }
            let sameNode = candidates.map { "\($0) is on a node the file already uses" }
            throw StorageError.needsSpares(fileID: fileID, columns: relocate.map {
                "shard \($0) on node \(manifest.columns[$0].endpoint.node): \(assessment.errors[$0] ?? "unreachable")"
            }, given: spares.count, spareFailures: spareFailures + sameNode)
        }

        let blocks = (0..<manifest.blockCount).filter { block in !targets.isEmpty || inPlace.values.contains { $0.contains(block) } }
        let tracker = ProgressTracker("repair", total: UInt64(blocks.count), handler: progress)
        let rebuilt = try await rebuild(manifest: manifest, codec: codec, links: links, targets: targets, inPlace: inPlace,
                                        blocks: blocks, tracker: tracker)
        let changedColumns = !targets.isEmpty
        for (column, connection) in targets {
            manifest.columns[column].endpoint = connection.endpoint
            links.set(column, connection)
        }
        if changedColumns { manifest.revision += 1 }
        let metadataFailures = try await writeMetadata(manifest, links: links)
        if let (column, reason) = metadataFailures.first {
            throw StorageError.nodeFailed(node: manifest.columns[column].endpoint.node, namespace: manifest.columns[column].endpoint.namespace,
                                          operation: "write metadata", reason: reason)
        }
        _ = try saveLocal(manifest, complete: true)
        let afterAssessment = try await assess(manifest: manifest, codec: codec, links: links, deep: false, progress: nil)
        let after = report(manifest: manifest, assessment: afterAssessment, deep: false, seconds: 0)
        return RepairReport(fileID: fileID, revision: manifest.revision, rebuiltShards: rebuilt,
                            repairedInPlace: manifest.columns.map { inPlace[$0.index]?.count ?? 0 }, moved: moves, after: after,
                            seconds: Double(DispatchTimeLike.now() - started) / 1e9)
    }

    /// For each block: gathers k good shards from the columns not being rebuilt, recomputes the
    /// target shards (the code is deterministic, so they must match the recorded checksums) and
    /// writes them: to the new namespace for `targets`, over the bad copy for `inPlace`.
    func rebuild(manifest: FileManifest, codec: BlockCodec, links: ColumnLinks, targets: [Int: ShardConnection],
                 inPlace: [Int: Set<Int>], blocks: [Int], tracker: ProgressTracker?) async throws -> Int {
        let table = try manifest.blockTable()
        let k = manifest.k
        let rebuilt = SharedCounter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            var pending = blocks[...]
            var running = 0
            while !pending.isEmpty || running > 0 {
                while running < parallelBlocks, let block = pending.popFirst() {
                    let wanted = (Array(targets.keys) + inPlace.filter { $0.value.contains(block) }.map(\.key)).sorted()
                    let sources = links.alive.filter { !wanted.contains($0) }.sorted { ($0 >= k ? 1 : 0, $0) < ($1 >= k ? 1 : 0, $1) }
                    group.addTask {
                        defer { tracker?.add(1) }
                        guard !wanted.isEmpty else { return }
                        let entry = table.entry(block)
                        let length = codec.shardLength(cipherLength: entry.cipherLength)
                        let (shards, _) = try await gather(block: block, manifest: manifest, entry: entry, codec: codec, links: links, order: sources)
                        let outputs = try codec.rebuild(targets: wanted, from: shards, shardLength: length)
                        for column in wanted {
                            guard let bytes = outputs[column] else { continue }
                            let buffer = ByteBuffer(bytes: bytes)
                            guard BlockCodec.verify(buffer, index: column, entry: entry, shardLength: length) else {
                                throw StorageError.integrity(fileID: manifest.fileID, block: block,
                                                             reason: "shard \(column) rebuilt from verified shards does not match its checksum")
                            }
                            let key = manifest.columns[column].key(block: block)
                            if let target = targets[column] {
                                try await target.set(key, buffer)
                            } else if let connection = links.connection(column) {
                                // DEL first: a value damaged on disk still carries its original CRC,
                                // and 0-db skips a SET whose value has the stored length and CRC.
                                try await connection.delete(key)
                                try await connection.set(key, buffer)
                            } else {
                                throw StorageError.nodeFailed(node: manifest.columns[column].endpoint.node,
                                                              namespace: manifest.columns[column].endpoint.namespace,
                                                              operation: "repair", reason: links.deadReasons[column] ?? "connection lost")
                            }
                            rebuilt.add()
                        }
                    }
                    running += 1
                }
                guard try await group.next() != nil else { break }
                running -= 1
            }
        }
        return rebuilt.count
    }

    /// Deletes a file's shards and metadata from its namespaces and the local copy. Namespaces
    /// that cannot be reached are listed in the error; the local copy is kept then.
    public func remove(fileID: String, endpoints: [ShardEndpoint] = []) async throws -> [String] {
        let manifest: FileManifest
        let links: ColumnLinks
        if let record = try localStore?.load(fileID), !record.complete, let envelope = Data(base64Encoded: record.envelope) {
            // An interrupted put: its record names the namespaces, its blocks may be partly written.
            manifest = try MetadataEnvelope.open(Array(envelope), fileID: fileID, key: key, validate: false)
            links = await ColumnLinks.connected(to: manifest, settings: connection)
        } else {
            (manifest, links) = try await openFile(fileID: fileID, endpoints: endpoints)
        }
        defer { links.closeAll() }
        await removeShards(manifest: manifest, blockCount: manifest.blockCount, links: links)
        let unreachable = links.deadReasons.sorted { $0.key < $1.key }.map { "shard \($0.key) on node \(manifest.columns[$0.key].endpoint.node): \($0.value)" }
        if unreachable.isEmpty { try localStore?.remove(fileID) }
        return unreachable
    }
}

extension ShardColumn {
    var redactedForReport: ShardColumn { ShardColumn(index: index, endpoint: endpoint.redacted, keyPrefix: keyPrefix) }
}
