import Foundation
import GridTypes
import NIOCore
import Testing
@testable import StorageClient

@Suite struct ReedSolomonTests {
    /// Every way of losing up to m of k+m shards decodes back to the data, for several codes.
    @Test(arguments: [(1, 0), (1, 2), (2, 1), (3, 2), (4, 2), (5, 3)])
    func anyKShardsRebuildEveryShard(_ code: (Int, Int)) throws {
        let (k, m) = code
        let rs = try ReedSolomon(k: k, m: m)
        let length = 1000
        var shards = (0..<(k + m)).map { i in i < k ? randomBytes(length, seed: UInt64(i + 1)) : [UInt8](repeating: 0, count: length) }
        try encode(rs, &shards, length: length)
        let original = shards
        // All subsets of k shard indexes.
        func subsets(_ n: Int, _ r: Int) -> [[Int]] {
            if r == 0 { return [[]] }
            if n < r { return [] }
            return subsets(n - 1, r) + subsets(n - 1, r - 1).map { $0 + [n - 1] }
        }
        for sources in subsets(k + m, k) {
            let targets = (0..<(k + m)).filter { !sources.contains($0) }
            var work = original
            for t in targets { work[t] = [UInt8](repeating: 0xAA, count: length) }
            // One buffer: k source slots, then the target slots.
            var buffer = Array(sources.map { work[$0] }.joined()) + [UInt8](repeating: 0, count: targets.count * length)
            try buffer.withUnsafeMutableBufferPointer { raw in
                let base = raw.baseAddress!
                try rs.reconstruct(length: length, sources: sources.enumerated().map { ($0.element, base + $0.offset * length) },
                                   targets: targets.enumerated().map { ($0.element, base + (k + $0.offset) * length) })
            }
            for (i, t) in targets.enumerated() {
                #expect(Array(buffer[((k + i) * length)..<((k + i + 1) * length)]) == original[t], "k=\(k) m=\(m) from \(sources): shard \(t) differs")
            }
        }
    }

    private func encode(_ rs: ReedSolomon, _ shards: inout [[UInt8]], length: Int) throws {
        var data = Array(shards[0..<rs.k].joined())
        var parity = [UInt8](repeating: 0, count: max(1, rs.m * length))
        data.withUnsafeMutableBufferPointer { d in
            parity.withUnsafeMutableBufferPointer { p in
                rs.encode(length: length, data: (0..<rs.k).map { d.baseAddress! + $0 * length },
                          parity: (0..<rs.m).map { p.baseAddress! + $0 * length })
            }
        }
        for i in 0..<rs.m { shards[rs.k + i] = Array(parity[(i * length)..<((i + 1) * length)]) }
    }

    @Test func rejectsImpossibleCodes() {
        #expect(throws: StorageError.self) { try ReedSolomon(k: 0, m: 1) }
        #expect(throws: StorageError.self) { try ReedSolomon(k: 40, m: 30) }
    }
}

@Suite struct BlockCodecTests {
    let compressors = Pool<ZstdCompressor> { try ZstdCompressor() }
    let decompressors = Pool<ZstdDecompressor> { try ZstdDecompressor() }

    func codec(fileID: [UInt8] = SodiumCrypto.random(16), key: [UInt8] = SodiumCrypto.random(32), size: UInt64, blockSize: Int = 4096,
               k: Int = 3, m: Int = 2, level: Int32? = 3) throws -> BlockCodec {
        BlockCodec(fileID: fileID, fileKey: key, size: size, blockSize: blockSize,
                   blockCount: BlockCodec.blockCount(size: size, blockSize: blockSize), code: try ReedSolomon(k: k, m: m),
                   zstdLevel: level, proofKey: SodiumCrypto.random(32))
    }

    func encode(_ codec: BlockCodec, _ data: [UInt8], block: Int) throws -> BlockCodec.Encoded {
        let start = block * codec.blockSize
        let slice = Array(data[start..<min(data.count, start + codec.blockSize)])
        return try slice.withUnsafeBytes { try codec.encode(block: block, plaintext: $0, compressors: compressors) }
    }

    func shards(_ encoded: BlockCodec.Encoded, drop: Set<Int> = []) -> [Int: ByteBuffer] {
        var out: [Int: ByteBuffer] = [:]
        for (i, s) in encoded.shards.enumerated() where !drop.contains(i) { out[i] = s }
        // Exactly k are used, the lowest indexes first (as a reader would pick them).
        return out
    }

    @Test func compressibleAndRandomBlocksRoundTrip() throws {
        for (data, compressed) in [(compressibleBytes(10_000, seed: 1), true), (randomBytes(10_000, seed: 2), false)] {
            let c = try codec(size: UInt64(data.count))
            for block in 0..<c.blockCount {
                let encoded = try encode(c, data, block: block)
                #expect((encoded.entry.flags & BlockCodec.flagCompressed != 0) == compressed)
                #expect((encoded.entry.flags & BlockCodec.flagLast != 0) == (block == c.blockCount - 1))
                for drop in [Set<Int>(), [0], [1, 2], [0, 4]] {
                    let plain = try c.decode(block: block, entry: encoded.entry, shards: shards(encoded, drop: drop), decompressors: decompressors)
                    let start = block * c.blockSize
                    #expect(plain == Array(data[start..<min(data.count, start + c.blockSize)]))
                }
            }
        }
    }

    @Test func emptyFileIsOneAuthenticatedEmptyBlock() throws {
        let c = try codec(size: 0)
        #expect(c.blockCount == 1)
        let encoded = try encode(c, [], block: 0)
        #expect(encoded.entry.cipherLength == 16)
        #expect(try c.decode(block: 0, entry: encoded.entry, shards: shards(encoded), decompressors: decompressors) == [])
    }

    /// Blocks moved to another position (same file), or into another file, do not open.
    @Test func reorderedOrSwappedBlocksDoNotDecrypt() throws {
        let data = randomBytes(3 * 4096, seed: 3)
        let key = SodiumCrypto.random(32)
        let c = try codec(key: key, size: UInt64(data.count), level: nil)
        let b0 = try encode(c, data, block: 0)
        let b1 = try encode(c, data, block: 1)
        // Block 1's shards offered as block 0 (with block 1's own table entry, so checksums pass).
        #expect(throws: StorageError.self) { try c.decode(block: 0, entry: b1.entry, shards: shards(b1), decompressors: decompressors) }
        // The same bytes under another file id (same key, so only the binding can catch it).
        let other = try codec(key: key, size: UInt64(data.count), level: nil)
        #expect(throws: StorageError.self) { try other.decode(block: 0, entry: b0.entry, shards: shards(b0), decompressors: decompressors) }
        // A correct decode, for contrast.
        #expect(try c.decode(block: 1, entry: b1.entry, shards: shards(b1), decompressors: decompressors) == Array(data[4096..<8192]))
    }

    /// Cutting a file short: block 1 of 3 presented as the last block (flag flipped), or the file
    /// presented as having fewer blocks, fails the tag.
    @Test func truncationIsDetected() throws {
        let data = randomBytes(3 * 4096, seed: 4)
        let fileID = SodiumCrypto.random(16), key = SodiumCrypto.random(32)
        let c = try codec(fileID: fileID, key: key, size: UInt64(data.count), level: nil)
        let b1 = try encode(c, data, block: 1)
        var flipped = b1.entry
        flipped.flags |= BlockCodec.flagLast
        #expect(throws: StorageError.self) { try c.decode(block: 1, entry: flipped, shards: shards(b1), decompressors: decompressors) }
        let shorter = try codec(fileID: fileID, key: key, size: 2 * 4096, level: nil)
        #expect(throws: StorageError.self) { try shorter.decode(block: 1, entry: b1.entry, shards: shards(b1), decompressors: decompressors) }
    }

    /// One workspace reused block after block, as get and put use them, with data shards missing
    /// in some blocks: every block decodes to its own bytes (nothing left over from the block
    /// before), and a shard cut short is refused rather than decoded from stale bytes.
    @Test func reusedWorkspacesDecodeEachBlockAlone() throws {
        let data = compressibleBytes(4096 * 5 + 100, seed: 6) + randomBytes(4096 * 2, seed: 7)
        let c = try codec(size: UInt64(data.count))
        let decode = DecodeWorkspace(), encode = EncodeWorkspace()
        let drops: [Set<Int>] = [[], [0, 1], [], [2], [0, 3], [], [1], [4]]
        for block in 0..<c.blockCount {
            let start = block * c.blockSize
            let slice = Array(data[start..<min(data.count, start + c.blockSize)])
            let encoded = try slice.withUnsafeBytes { try c.encode(block: block, plaintext: $0, compressors: compressors, workspace: encode) }
            let plain = try c.decode(block: block, entry: encoded.entry, shards: shards(encoded, drop: drops[block % drops.count]),
                                     decompressors: decompressors, workspace: decode) { Array($0) }
            #expect(plain == slice, "block \(block)")
            var cut = shards(encoded)
            cut[1] = cut[1]?.getSlice(at: 0, length: (cut[1]?.readableBytes ?? 1) - 1)
            #expect(throws: StorageError.self) {
                try c.decode(block: block, entry: encoded.entry, shards: cut, decompressors: decompressors, workspace: decode) { Array($0) }
            }
        }
    }

    @Test func shardChecksumsCatchAnyChangedByte() throws {
        let data = randomBytes(5000, seed: 5)
        let c = try codec(size: UInt64(data.count))
        let encoded = try encode(c, data, block: 0)
        let length = c.shardLength(cipherLength: encoded.entry.cipherLength)
        for i in encoded.shards.indices {
            #expect(BlockCodec.verify(encoded.shards[i], index: i, entry: encoded.entry, shardLength: length))
            var bytes = Array(encoded.shards[i].readableBytesView)
            bytes[bytes.count / 2] ^= 0x01
            #expect(!BlockCodec.verify(ByteBuffer(bytes: bytes), index: i, entry: encoded.entry, shardLength: length))
        }
    }
}

@Suite struct MetadataTests {
    func manifest(key: TwinStorageKey) throws -> FileManifest {
        let fileID = SodiumCrypto.random(16)
        var table = BlockTable(shardCount: 3, blocks: 1)
        table.set(0, BlockTable.Entry(cipherLength: 100, flags: BlockCodec.flagLast,
                                      checksums: Array(repeating: [UInt8](repeating: 1, count: 32), count: 3),
                                      proofs: Array(repeating: [UInt8](repeating: 2, count: 16), count: 3)))
        return FileManifest(version: 1, fileID: Hex.encode(fileID), revision: 1, name: "f", size: 84, blockSize: 4096, blockCount: 1, k: 2, m: 1,
                            compression: "zstd", zstdLevel: 3, createdAt: 0,
                            wrappedKey: FileManifest.wrap(fileKey: SodiumCrypto.random(32), fileID: fileID, with: key),
                            columns: (0..<3).map { ShardColumn(index: $0, endpoint: ShardEndpoint(node: "n\($0)", address: "127.0.0.1:1", namespace: "ns", password: "secret"), keyPrefix: "p\($0):") },
                            blocks: Data(table.bytes).base64EncodedString())
    }

    @Test func envelopeOpensOnlyWithTheTwinKeyAndWhole() throws {
        let key = TwinStorageKey(keyPair: try Ed25519KeyPair.generate())
        let other = TwinStorageKey(keyPair: try Ed25519KeyPair.generate())
        let m = try manifest(key: key)
        let sealed = try MetadataEnvelope.seal(m, key: key)
        #expect(try MetadataEnvelope.open(sealed, fileID: m.fileID, key: key) == m)
        #expect(!String(decoding: sealed, as: UTF8.self).contains("secret"), "passwords are inside the encryption")
        do {
            _ = try MetadataEnvelope.open(sealed, fileID: m.fileID, key: other)
            Issue.record("a wrong key opened the metadata")
        } catch let error as StorageError {
            guard case .wrongKey = error else { Issue.record("expected wrongKey, got \(error)"); return }
            #expect(error.description.contains(key.fingerprint) && error.description.contains(other.fingerprint))
        }
        for cut in [10, sealed.count / 2, sealed.count - 1] {
            #expect(throws: StorageError.self) { try MetadataEnvelope.open(Array(sealed.prefix(cut)), fileID: m.fileID, key: key) }
        }
        var altered = sealed
        altered[MetadataEnvelope.headerLength + 30] ^= 1
        #expect(throws: StorageError.self) { try MetadataEnvelope.open(altered, fileID: m.fileID, key: key) }
        // The revision sits in the authenticated header: raising it by hand breaks the tag.
        var bumped = sealed
        bumped[33] &+= 1
        #expect(throws: StorageError.self) { try MetadataEnvelope.open(bumped, fileID: m.fileID, key: key) }
    }

    @Test func largeEnvelopesSplitIntoParts() throws {
        let envelope = randomBytes(MetadataEnvelope.partSize * 2 + 123, seed: 9)
        let parts = MetadataEnvelope.parts(envelope)
        #expect(parts.count == 3)
        var joined: [UInt8] = []
        for (i, p) in parts.enumerated() {
            let part = try MetadataEnvelope.parsePart(p, fileID: "x")
            #expect(part.index == i && part.count == 3 && part.total == envelope.count)
            joined += part.bytes
        }
        #expect(joined == envelope)
    }

    @Test func placementFileParsingAndPermissions() throws {
        let dir = try TempDir("placement")
        let path = dir.path + "/p.json"
        let text = #"[{"node":"1","address":"127.0.0.1:9900","namespace":"a","password":"x"},{"node":"2","address":"[::1]:9901","namespace":"b"}]"#
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o644])
        #expect(throws: StorageError.self) { try PlacementFile.load(path: path) }  // holds a password, readable by others
        chmod(path, 0o600)
        let endpoints = try PlacementFile.load(path: path)
        #expect(endpoints.count == 2 && endpoints[1].password == nil)
        #expect(try endpoints[1].hostAndPort() == ("::1", 9901))
        #expect(!endpoints[0].description.contains("x"))
        #expect(try ShardEndpoint.parse("7@10.0.0.1:9900/ns1") == ShardEndpoint(node: "7", address: "10.0.0.1:9900", namespace: "ns1"))
        #expect(throws: StorageError.self) { try ShardEndpoint.parse("10.0.0.1:9900/ns1") }
        #expect(throws: StorageError.self) { try ShardEndpoint.parse("7@10.0.0.1/ns1") }
        #expect(throws: StorageError.self) { try PlacementFile.parse(Data("{}".utf8)) }
    }
}
