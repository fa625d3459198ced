import Foundation
import GridTypes
import NIOCore
import ShardServer
import Testing
@testable import StorageClient

@Suite struct RoundTripTests {
    static let block = 64 << 10

    @Test func sizesAroundTheBlockSize() async throws {
        try await withCluster(3) { cluster in
            let ws = try Workspace()
            let b = Self.block
            for (i, size) in [0, 1, b - 1, b, b + 1, 3 * b + 17].enumerated() {
                for compressible in [false, true] {
                    let data = compressible ? compressibleBytes(size, seed: UInt64(i)) : randomBytes(size, seed: UInt64(i))
                    let path = try ws.write(data, name: "in-\(size)-\(compressible)")
                    let put = try await ws.client.put(path: path, placement: cluster.endpoints,
                                                      options: StorageOptions(k: 2, m: 1, blockSize: b))
                    #expect(put.size == UInt64(size) && put.shardsWritten == 3 && put.warnings.isEmpty)
                    #expect(put.blocks == max(1, (size + b - 1) / b))
                    let out = ws.dir.path + "/out-\(size)-\(compressible)"
                    let got = try await ws.client.get(fileID: put.fileID, to: out)
                    #expect(got.warnings.isEmpty)
                    #expect(try ws.read(out) == data, "size \(size) compressible \(compressible)")
                    if compressible && size > 1000 { #expect(put.storedBytes < UInt64(size), "compressible data stored smaller") }
                }
            }
            #expect(try ws.client.list().count == 12)
        }
    }

    /// For several codes: up to m nodes stopped still decodes; m+1 stopped says how many are left.
    @Test(arguments: [(1, 1), (2, 2), (3, 2), (4, 1)])
    func loseUpToMShards(_ code: (Int, Int)) async throws {
        let (k, m) = code
        try await withCluster(k + m) { cluster in
            let ws = try Workspace()
            let data = randomBytes(5 * 32_768 + 999, seed: UInt64(k * 10 + m))
            let put = try await ws.client.put(path: try ws.write(data), placement: cluster.endpoints,
                                              options: StorageOptions(k: k, m: m, blockSize: 32_768))
            // Stop a data node first (so the decode path is used), then more.
            for stopped in 1...m {
                try await cluster.stop(stopped - 1)
                let out = ws.dir.path + "/out-\(stopped)"
                let got = try await ws.client.get(fileID: put.fileID, to: out)
                #expect(try ws.read(out) == data)
                #expect(got.decodedBlocks == put.blocks, "a data shard was missing in every block")
                #expect(got.warnings.contains { $0.contains("node-1") })
            }
            try await cluster.stop(m)
            let error = await storageError { _ = try await ws.client.get(fileID: put.fileID, to: ws.dir.path + "/out-lost") }
            guard case .notRecoverable(_, _, let available, let needed, _)? = error else {
                Issue.record("expected notRecoverable, got \(String(describing: error))")
                return
            }
            #expect(available == k - 1 && needed == k)
            #expect(error?.description.contains("\(k - 1) good shard(s) left, \(k) are needed") == true)
            #expect(!FileManager.default.fileExists(atPath: ws.dir.path + "/out-lost"), "no partial output")
            let check = try await ws.client.check(fileID: put.fileID)
            #expect(!check.recoverable && check.minimumGoodShards == k - 1)
        }
    }

    /// 100 MiB and more with k=4 m=2 across six servers, two of them stopped for the read.
    @Test func hundredMebibytesWithTwoNodesDown() async throws {
        try await withCluster(6) { cluster in
            let ws = try Workspace()
            let size = (100 << 20) + 12_345
            var data = compressibleBytes(size / 2, seed: 11)
            data += randomBytes(size - data.count, seed: 12)
            let path = try ws.write(data)
            let put = try await ws.client.put(path: path, placement: cluster.endpoints, options: StorageOptions(k: 4, m: 2))
            #expect(put.blocks == 26 && put.shardsWritten == 6)
            try await cluster.stop(2)  // a data shard
            try await cluster.stop(5)  // a parity shard
            let out = ws.dir.path + "/out"
            _ = try await ws.client.get(fileID: put.fileID, to: out)
            let restored = try ws.read(out)
            #expect(restored.count == data.count)
            #expect(restored == data)
        }
    }
}

@Suite struct FaultTests {
    static let block = 16 << 10

    func putSmall(_ ws: Workspace, _ cluster: TestCluster, data: [UInt8], k: Int = 2, m: Int = 1,
                  placement: [ShardEndpoint]? = nil) async throws -> PutReport {
        try await ws.client.put(path: try ws.write(data), placement: placement ?? cluster.endpoints,
                                options: StorageOptions(k: k, m: m, blockSize: Self.block))
    }

    /// A shard changed on a node is caught by its checksum, the read goes around it, check names
    /// it, repair rewrites it, and afterwards everything is healthy.
    @Test func corruptAndMissingShardsAreDetectedAndRepaired() async throws {
        try await withCluster(3) { cluster in
            let ws = try Workspace()
            let data = randomBytes(4 * Self.block + 5, seed: 21)
            let put = try await putSmall(ws, cluster, data: data)
            let manifest = try await ws.client.manifest(fileID: put.fileID)
            // Column 0, block 1: same length, one bit flipped. Column 1, block 3: deleted.
            let c0 = try await cluster.connection(0)
            let key = manifest.columns[0].key(block: 1)
            guard case .value(let original) = try await c0.get(key) else { Issue.record("shard missing"); return }
            var bytes = Array(original.readableBytesView)
            bytes[7] ^= 0x40
            try await c0.set(key, ByteBuffer(bytes: bytes))
            let c1 = try await cluster.connection(1)
            try await c1.delete(manifest.columns[1].key(block: 3))
            c0.close()
            c1.close()

            // Data shards first, so get reads the two damaged ones whatever the nodes' speed.
            let dataFirst = StorageClient(key: ws.key, localStore: ws.store, connection: ws.client.connection, readPreference: .dataColumns)
            let out = ws.dir.path + "/out"
            let got = try await dataFirst.get(fileID: put.fileID, to: out)
            #expect(try ws.read(out) == data)
            #expect(got.warnings.contains { $0.contains("node-1") && $0.contains("checksum") })
            #expect(got.warnings.contains { $0.contains("node-2") && $0.contains("missing") })

            let check = try await ws.client.check(fileID: put.fileID)
            #expect(check.recoverable && !check.healthy && check.minimumGoodShards == 2)
            #expect(check.columns[0].corrupt == 1 && check.columns[0].good == 4)
            #expect(check.columns[1].missing == 1 && check.columns[2].good == 5)
            let deep = try await ws.client.check(fileID: put.fileID, deep: true)
            #expect(deep.columns[0].corrupt == 1 && deep.columns[1].missing == 1 && deep.method == "deep")
            // Deep downloads every shard; proof downloads one random shard per column (5 blocks).
            #expect(deep.downloadedShards == 15 && check.downloadedShards == 3 && check.method == "proof")

            let repair = try await ws.client.repair(fileID: put.fileID, spares: [])
            #expect(repair.rebuiltShards == 2 && repair.repairedInPlace == [1, 1, 0] && repair.moved.isEmpty)
            #expect(repair.after.healthy)
            let again = try await ws.client.check(fileID: put.fileID, deep: true)
            #expect(again.healthy)
            let got2 = try await ws.client.get(fileID: put.fileID, to: out, overwrite: true)
            #expect(got2.warnings.isEmpty)
            #expect(try ws.read(out) == data)
        }
    }

    /// A proof check also downloads a few random shards per column, new ones every time: PROOF
    /// challenges repeat, so a node that kept the answers and dropped the data would pass them.
    @Test func proofChecksDownloadAFreshRandomSample() {
        #expect(StorageClient.downloadSample(blockCount: 0).isEmpty)
        #expect(StorageClient.downloadSample(blockCount: 1) == [0])
        #expect(StorageClient.downloadSample(blockCount: 63).count == 1)
        #expect(StorageClient.downloadSample(blockCount: 256).count == 4)
        #expect(StorageClient.downloadSample(blockCount: 100_000).count == 8)
        var seen = Set<Int>()
        for _ in 0..<50 {
            let sample = StorageClient.downloadSample(blockCount: 1000)
            #expect(sample.allSatisfy { (0..<1000).contains($0) })
            seen.formUnion(sample)
        }
        #expect(seen.count > 100, "the same blocks every time: \(seen.count)")
    }

    /// A shard with its right bytes and more after them is not the shard: the proof check covers
    /// the whole value.
    @Test func aShardWithBytesAppendedFailsTheProofCheck() async throws {
        try await withCluster(3) { cluster in
            let ws = try Workspace()
            // 200 blocks: the random download sample (3 per column) almost never includes the one changed.
            let put = try await putSmall(ws, cluster, data: randomBytes(200 * Self.block, seed: 33))
            let manifest = try await ws.client.manifest(fileID: put.fileID)
            let c0 = try await cluster.connection(0)
            let key = manifest.columns[0].key(block: 0)
            guard case .value(let original) = try await c0.get(key) else { Issue.record("shard missing"); return }
            try await c0.set(key, ByteBuffer(bytes: Array(original.readableBytesView) + [1, 2, 3]))
            c0.close()
            let check = try await ws.client.check(fileID: put.fileID)
            #expect(check.method == "proof" && check.columns[0].corrupt == 1 && !check.healthy, "\(check.columns[0])")
        }
    }

    /// Whole blocks swapped on every node (each shard in place of another block's): checksums
    /// fail everywhere, get refuses, and no output appears.
    @Test func swappedBlocksNeverDecodeToWrongBytes() async throws {
        try await withCluster(3) { cluster in
            let ws = try Workspace()
            let data = randomBytes(3 * Self.block, seed: 22)
            let put = try await putSmall(ws, cluster, data: data)
            let manifest = try await ws.client.manifest(fileID: put.fileID)
            for column in manifest.columns {
                let c = try await cluster.connection(column.index)
                guard case .value(let a) = try await c.get(column.key(block: 0)), case .value(let b) = try await c.get(column.key(block: 1)) else {
                    Issue.record("shards missing")
                    return
                }
                try await c.set(column.key(block: 0), b)
                try await c.set(column.key(block: 1), a)
                c.close()
            }
            let out = ws.dir.path + "/out"
            let error = await storageError { _ = try await ws.client.get(fileID: put.fileID, to: out) }
            guard case .notRecoverable(_, let block, let available, _, let failures)? = error else {
                Issue.record("expected notRecoverable, got \(String(describing: error))")
                return
            }
            #expect(block <= 1 && available == 0 && failures.allSatisfy { $0.contains("checksum") })
            #expect(!FileManager.default.fileExists(atPath: out))
        }
    }

    @Test func wrongTwinKeyFailsClearly() async throws {
        try await withCluster(3) { cluster in
            let ws = try Workspace()
            let put = try await putSmall(ws, cluster, data: randomBytes(1000, seed: 23))
            // Another key, the same local copies.
            let other = TwinStorageKey(keyPair: try Ed25519KeyPair.generate())
            let stranger = StorageClient(key: other, localStore: ws.store)
            let error = await storageError { _ = try await stranger.get(fileID: put.fileID, to: ws.dir.path + "/o1") }
            guard case .wrongKey? = error else { Issue.record("expected wrongKey, got \(String(describing: error))"); return }
            #expect(error?.description.contains(ws.key.fingerprint) == true)
            // And from the nodes' copies only.
            let remote = StorageClient(key: other, localStore: nil)
            let error2 = await storageError { _ = try await remote.get(fileID: put.fileID, to: ws.dir.path + "/o2", endpoints: cluster.endpoints) }
            guard case .wrongKey? = error2 else { Issue.record("expected wrongKey, got \(String(describing: error2))"); return }
            #expect(!FileManager.default.fileExists(atPath: ws.dir.path + "/o1") && !FileManager.default.fileExists(atPath: ws.dir.path + "/o2"))
        }
    }

    /// Without the local copy, the twin key and any namespace of the file are enough; damaged
    /// copies on some nodes are passed over, damage on all is reported.
    @Test func metadataFromTheNodesAlone() async throws {
        try await withCluster(3) { cluster in
            let seed = SodiumCrypto.random(32)
            let ws = try Workspace(seed: seed)
            let data = compressibleBytes(3 * Self.block + 1, seed: 24)
            let put = try await putSmall(ws, cluster, data: data)
            let fresh = try Workspace(label: "fresh", seed: seed)
            #expect(try fresh.client.list().isEmpty)
            let error = await storageError { _ = try await fresh.client.get(fileID: put.fileID, to: fresh.dir.path + "/o") }
            guard case .metadataUnavailable? = error else { Issue.record("expected metadataUnavailable, got \(String(describing: error))"); return }

            // Only one namespace named: its metadata lists the others.
            _ = try await fresh.client.get(fileID: put.fileID, to: fresh.dir.path + "/o", endpoints: [cluster.endpoints[2]])
            #expect(try fresh.read(fresh.dir.path + "/o") == data)

            // Truncate the record on two nodes: the third still serves.
            for i in 0..<2 {
                let c = try await cluster.connection(i)
                guard case .value(let record) = try await c.get(MetadataEnvelope.key(fileID: put.fileID, part: 0)) else { Issue.record("no metadata"); return }
                try await c.set(MetadataEnvelope.key(fileID: put.fileID, part: 0), record.getSlice(at: record.readerIndex, length: record.readableBytes - 20)!)
                c.close()
            }
            _ = try await fresh.client.get(fileID: put.fileID, to: fresh.dir.path + "/o2", endpoints: cluster.endpoints)
            #expect(try fresh.read(fresh.dir.path + "/o2") == data)
            let c = try await cluster.connection(2)
            try await c.set(MetadataEnvelope.key(fileID: put.fileID, part: 0), ByteBuffer(bytes: Array("GTSHPART".utf8) + [1, 2, 3]))
            c.close()
            let error2 = await storageError { _ = try await fresh.client.get(fileID: put.fileID, to: fresh.dir.path + "/o3", endpoints: cluster.endpoints) }
            guard case .metadataUnavailable(_, let reasons)? = error2 else { Issue.record("expected metadataUnavailable, got \(String(describing: error2))"); return }
            #expect(reasons.count == 3 && reasons.filter { $0.contains("truncated") }.count == 3, "\(reasons)")
            // The local copy of the original workspace still works.
            _ = try await ws.client.get(fileID: put.fileID, to: ws.dir.path + "/o4")
        }
    }

    @Test func nodeDownBeforePutFailsOrUsesASpare() async throws {
        try await withCluster(4) { cluster in
            let ws = try Workspace()
            let data = randomBytes(2 * Self.block + 3, seed: 25)
            try await cluster.stop(1)
            let path = try ws.write(data)
            // Default policy: fail, naming the node, keeping nothing.
            let error = await storageError {
                _ = try await ws.client.put(path: path, placement: cluster.endpoints, options: StorageOptions(k: 2, m: 1, blockSize: Self.block))
            }
            guard case .placementFailed(let written, let wanted, let failures)? = error else {
                Issue.record("expected placementFailed, got \(String(describing: error))")
                return
            }
            #expect(written == 2 && wanted == 3 && failures.contains { $0.contains("node-2") }, "\(String(describing: error))")
            #expect(try ws.client.list().isEmpty)
            for i in [0, 2, 3] { #expect(try cluster.nodes[i].server.namespaceInfo(TestCluster.namespace).entries == 0) }

            // Spare policy: node-4 takes node-2's place.
            let spared = try await ws.client.put(path: path, placement: cluster.endpoints,
                                                 options: StorageOptions(k: 2, m: 1, blockSize: Self.block, onNodeFailure: .spare))
            #expect(spared.columns.map(\.node) == ["node-1", "node-4", "node-3"] && spared.shardsWritten == 3)
            #expect(spared.warnings.contains { $0.contains("node-2") })
            _ = try await ws.client.get(fileID: spared.fileID, to: ws.dir.path + "/o1")
            #expect(try ws.read(ws.dir.path + "/o1") == data)

            // Degraded allowed: two of three written is a success with a warning.
            let degraded = try await ws.client.put(path: path, placement: Array(cluster.endpoints.prefix(3)),
                                                   options: StorageOptions(k: 2, m: 1, blockSize: Self.block, minimumShards: 2))
            #expect(degraded.shardsWritten == 2 && degraded.warnings.contains { $0.contains("2 of 3") })
            let check = try await ws.client.check(fileID: degraded.fileID)
            #expect(check.recoverable && !check.healthy && !check.columns[1].reachable)
            _ = try await ws.client.get(fileID: degraded.fileID, to: ws.dir.path + "/o2")
            #expect(try ws.read(ws.dir.path + "/o2") == data)
        }
    }

    /// A put that stops part way with keepPartial keeps its shards and record; resume finishes
    /// it under the same id, sending only what the nodes lack, and refuses a different file.
    @Test func aStoppedPutIsResumedWithoutSendingItsShardsAgain() async throws {
        try await withCluster(3) { cluster in
            let ws = try Workspace()
            let data = randomBytes(40 * Self.block, seed: 31)
            let path = try ws.write(data)
            var options = StorageOptions(k: 2, m: 1, blockSize: Self.block, parallelBlocks: 1)
            options.keepPartial = true
            let broken = Once()
            let node3 = cluster.nodes[2].server
            let error = await storageError {
                _ = try await ws.client.put(path: path, placement: cluster.endpoints, options: options) { progress in
                    if progress.bytesDone < progress.bytesTotal { broken.run { try? node3.deleteNamespace(TestCluster.namespace) } }
                }
            }
            guard case .putStopped(let fileID, let reason)? = error else {
                Issue.record("expected putStopped, got \(String(describing: error))")
                return
            }
            #expect(reason.contains("node-3") && !reason.contains("nothing was kept"), "\(reason)")
            #expect(error.map { "\($0)" }?.contains("--resume \(fileID)") == true)
            #expect(try ws.store.load(fileID)?.complete == false)

            // Node-3's namespace is back, empty. A different file is refused.
            try node3.createNamespace(TestCluster.namespace, settings: NamespaceSettings(password: cluster.endpoints[2].password, isPublic: false))
            let other = try ws.write(randomBytes(100, seed: 1), name: "other.bin")
            let mismatch = await storageError { _ = try await ws.client.resume(fileID: fileID, path: other, options: StorageOptions()) }
            guard case .invalidInput? = mismatch else { Issue.record("expected invalidInput, got \(String(describing: mismatch))"); return }

            // Another file of the same size (here even the same bytes): it cannot be told from a
            // changed one, whose blocks would be encrypted again under the same nonces; refused.
            let copy = try ws.write(data, name: "copy.bin")
            let notTheSame = await storageError { _ = try await ws.client.resume(fileID: fileID, path: copy, options: StorageOptions()) }
            guard case .invalidInput(_, let why)? = notTheSame, why.contains("same nonces") else {
                Issue.record("expected invalidInput (not the same file), got \(String(describing: notTheSame))")
                return
            }

            let resumed = try await ws.client.resume(fileID: fileID, path: path, options: StorageOptions())
            #expect(resumed.fileID == fileID && resumed.shardsWritten == 3 && resumed.blocks == 40)
            // Blocks 0 and 1 reached node-1 and node-2 before the stop (node-3's copies went with its namespace).
            #expect(resumed.shardsAlreadyStored >= 4 && resumed.shardsAlreadyStored < 80, "\(resumed.shardsAlreadyStored)")
            #expect(try ws.store.load(fileID)?.complete == true)
            #expect(try await ws.client.check(fileID: fileID, deep: true).healthy)
            _ = try await ws.client.get(fileID: fileID, to: ws.dir.path + "/out")
            #expect(try ws.read(ws.dir.path + "/out") == data)

            let again = await storageError { _ = try await ws.client.resume(fileID: fileID, path: path, options: StorageOptions()) }
            guard case .invalidInput(_, let why)? = again, why.contains("already stored") else {
                Issue.record("expected invalidInput (already stored), got \(String(describing: again))")
                return
            }
        }
    }

    /// A node that stops in the middle of an upload: its column is rebuilt onto a spare.
    @Test func nodeFailingDuringPutMovesToASpare() async throws {
        try await withCluster(4) { cluster in
            let ws = try Workspace()
            let data = randomBytes(40 * Self.block, seed: 26)
            let path = try ws.write(data)
            let broken = Once()
            let options = StorageOptions(k: 2, m: 1, blockSize: Self.block, parallelBlocks: 1, onNodeFailure: .spare)
            let node3 = cluster.nodes[2].server
            let put = try await ws.client.put(path: path, placement: cluster.endpoints, options: options) { progress in
                // The first progress report comes after block 0: node-3 loses its namespace then
                // (synchronously, so the next block's SET there fails; its connection is closed).
                if progress.bytesDone < progress.bytesTotal { broken.run { try? node3.deleteNamespace(TestCluster.namespace) } }
            }
            #expect(broken.done)
            #expect(put.columns.map(\.node) == ["node-1", "node-2", "node-4"], "\(put.warnings)")
            #expect(put.warnings.contains { $0.contains("node-3") && $0.contains("rebuilt on spare") })
            let check = try await ws.client.check(fileID: put.fileID, deep: true)
            #expect(check.healthy)
            _ = try await ws.client.get(fileID: put.fileID, to: ws.dir.path + "/o")
            #expect(try ws.read(ws.dir.path + "/o") == data)
        }
    }

    @Test func fileChangingWhileStoredIsRefused() async throws {
        try await withCluster(3) { cluster in
            let ws = try Workspace()
            let path = try ws.write(randomBytes(20 * Self.block, seed: 27))
            let grown = Once()
            let error = await storageError {
                _ = try await ws.client.put(path: path, placement: cluster.endpoints,
                                            options: StorageOptions(k: 2, m: 1, blockSize: Self.block, parallelBlocks: 1)) { _ in
                    grown.run {
                        guard let handle = try? FileHandle(forWritingTo: URL(fileURLWithPath: path)) else { return }
                        _ = try? handle.seekToEnd()
                        try? handle.write(contentsOf: Data([1, 2, 3]))
                        try? handle.close()
                    }
                }
            }
            guard case .sourceChanged? = error else { Issue.record("expected sourceChanged, got \(String(describing: error))"); return }
            #expect(try ws.client.list().isEmpty)
            for i in 0..<3 { #expect(try cluster.nodes[i].server.namespaceInfo(TestCluster.namespace).entries == 0, "shards removed") }
        }
    }

    /// A node that is gone for good: check says which and that the file is still recoverable;
    /// repair moves its shards to a spare, and the nodes' metadata says where they are now.
    @Test func repairMovesAnUnreachableColumnToASpare() async throws {
        try await withCluster(4) { cluster in
            let seed = SodiumCrypto.random(32)
            let ws = try Workspace(seed: seed)
            let data = compressibleBytes(5 * Self.block + 77, seed: 28)
            let put = try await putSmall(ws, cluster, data: data, placement: Array(cluster.endpoints.prefix(3)))
            // Another machine of the same twin with the same local copy, which goes stale below.
            let laptop = try Workspace(label: "laptop", seed: seed)
            try FileManager.default.createDirectory(atPath: laptop.store.directory, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: ws.store.path(put.fileID), toPath: laptop.store.path(put.fileID))
            try await cluster.stop(0)
            let check = try await ws.client.check(fileID: put.fileID)
            #expect(check.recoverable && !check.healthy && !check.columns[0].reachable && check.columns[0].unknown == put.blocks)
            #expect(check.columns[0].error?.contains("node-1") == true)

            let refused = await storageError { _ = try await ws.client.repair(fileID: put.fileID, spares: []) }
            guard case .needsSpares? = refused else { Issue.record("expected needsSpares, got \(String(describing: refused))"); return }
            // A spare on a node the file already uses is not taken.
            let sameNode = await storageError { _ = try await ws.client.repair(fileID: put.fileID, spares: [cluster.endpoints[1]]) }
            guard case .needsSpares? = sameNode else { Issue.record("expected needsSpares, got \(String(describing: sameNode))"); return }

            let repair = try await ws.client.repair(fileID: put.fileID, spares: [cluster.endpoints[3]])
            #expect(repair.moved.count == 1 && repair.moved[0].index == 0 && repair.moved[0].to.hasPrefix("node-4@"))
            #expect(repair.rebuiltShards == put.blocks && repair.revision == 2 && repair.after.healthy)

            let fresh = try Workspace(label: "fresh", seed: seed)
            let manifest = try await fresh.client.manifest(fileID: put.fileID, endpoints: Array(cluster.endpoints[1...]))
            #expect(manifest.revision == 2 && manifest.columns[0].endpoint.node == "node-4")
            _ = try await fresh.client.get(fileID: put.fileID, to: fresh.dir.path + "/o", endpoints: Array(cluster.endpoints[1...]))
            #expect(try fresh.read(fresh.dir.path + "/o") == data)

            // The other machine's local copy still names node-1: the nodes' newer revision wins,
            // and its local copy is brought up to date.
            #expect(try laptop.store.load(put.fileID)?.revision == 1)
            let seenFromLaptop = try await laptop.client.check(fileID: put.fileID)
            #expect(seenFromLaptop.healthy && seenFromLaptop.revision == 2, "\(seenFromLaptop)")
            #expect(try laptop.store.load(put.fileID)?.revision == 2)
            let got = try await laptop.client.get(fileID: put.fileID, to: laptop.dir.path + "/o")
            #expect(got.warnings.isEmpty, "\(got.warnings)")
            #expect(try laptop.read(laptop.dir.path + "/o") == data)
        }
    }

    @Test func badOptionsAreRefusedBeforeAnyNetwork() async throws {
        let ws = try Workspace()
        let path = try ws.write([1, 2, 3])
        let endpoints = (0..<3).map { ShardEndpoint(node: "n\($0)", address: "127.0.0.1:1", namespace: "ns") }
        for options in [StorageOptions(k: 0, m: 1), StorageOptions(k: 2, m: 1, blockSize: 100), StorageOptions(k: 1, m: 0, blockSize: 16 << 20),
                        StorageOptions(k: 2, m: 1, zstdLevel: 40), StorageOptions(k: 2, m: 1, minimumShards: 1)] {
            let error = await storageError { _ = try await ws.client.put(path: path, placement: endpoints, options: options) }
            guard case .invalidInput? = error else { Issue.record("expected invalidInput, got \(String(describing: error))"); continue }
        }
        let sameNode = endpoints.map { ShardEndpoint(node: "one", address: $0.address, namespace: $0.namespace) }
        let error = await storageError { _ = try await ws.client.put(path: path, placement: sameNode, options: StorageOptions(k: 2, m: 1)) }
        guard case .invalidPlacement? = error else { Issue.record("expected invalidPlacement, got \(String(describing: error))"); return }
        let notFound = await storageError { _ = try await ws.client.get(fileID: "00112233445566778899aabbccddeeff", to: ws.dir.path + "/x") }
        guard case .metadataUnavailable? = notFound else { Issue.record("expected metadataUnavailable, got \(String(describing: notFound))"); return }
    }

    @Test func wrongNamespacePasswordNamesTheNode() async throws {
        try await withCluster(3) { cluster in
            let ws = try Workspace()
            var endpoints = cluster.endpoints
            endpoints[2].password = "not-the-password"
            let error = await storageError {
                _ = try await ws.client.put(path: try ws.write([1, 2, 3]), placement: endpoints, options: StorageOptions(k: 2, m: 1))
            }
            #expect(error?.description.contains("node-3") == true && error?.description.contains("password") == true, "\(String(describing: error))")
            #expect(error?.description.contains("not-the-password") == false)
        }
    }
}

/// Runs an action once, from a synchronous callback (never blocking it: progress callbacks run on
/// the cooperative pool, which waiting would starve).
final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var started = false
    private(set) var done = false

    func run(_ action: () -> Void) {
        lock.lock()
        defer { lock.unlock() }
        guard !started else { return }
        started = true
        action()
        done = true
    }
}
