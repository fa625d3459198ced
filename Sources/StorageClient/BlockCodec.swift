import GridTypes
import NIOCore

/// What the metadata keeps per block: the encrypted length, the flags, and per shard its BLAKE2b
/// checksum and the answer to its PROOF challenge. Packed (the metadata of a big file holds
/// thousands of these), `entrySize` bytes each.
struct BlockTable: Sendable, Equatable {
    static let checksumLength = 32
    static let proofLength = 16

    let shardCount: Int
    private(set) var bytes: [UInt8]

    var entrySize: Int { Self.entrySize(shards: shardCount) }
    static func entrySize(shards: Int) -> Int { 5 + shards * (checksumLength + proofLength) }
    var count: Int { bytes.count / entrySize }

    init(shardCount: Int, blocks: Int) {
        self.shardCount = shardCount
        self.bytes = [UInt8](repeating: 0, count: blocks * Self.entrySize(shards: shardCount))
    }

    init(shardCount: Int, bytes: [UInt8]) {
        self.shardCount = shardCount
        self.bytes = bytes
    }

    struct Entry: Sendable, Equatable {
        var cipherLength: Int
        var flags: UInt8
        var checksums: [[UInt8]]
        var proofs: [[UInt8]]
    }

    func entry(_ block: Int) -> Entry {
        let base = block * entrySize
        let length = Int(bytes[base]) | Int(bytes[base + 1]) << 8 | Int(bytes[base + 2]) << 16 | Int(bytes[base + 3]) << 24
        var checksums: [[UInt8]] = [], proofs: [[UInt8]] = []
        var p = base + 5
        for _ in 0..<shardCount {
            checksums.append(Array(bytes[p..<(p + Self.checksumLength)]))
            p += Self.checksumLength
            proofs.append(Array(bytes[p..<(p + Self.proofLength)]))
            p += Self.proofLength
        }
        return Entry(cipherLength: length, flags: bytes[base + 4], checksums: checksums, proofs: proofs)
    }

    mutating func set(_ block: Int, _ entry: Entry) {
        precondition(entry.checksums.count == shardCount && entry.proofs.count == shardCount)
        let base = block * entrySize
        let length = UInt32(entry.cipherLength)
        bytes[base] = UInt8(truncatingIfNeeded: length)
        bytes[base + 1] = UInt8(truncatingIfNeeded: length >> 8)
        bytes[base + 2] = UInt8(truncatingIfNeeded: length >> 16)
        bytes[base + 3] = UInt8(truncatingIfNeeded: length >> 24)
        bytes[base + 4] = entry.flags
        var p = base + 5
        for s in 0..<shardCount {
            bytes.replaceSubrange(p..<(p + Self.checksumLength), with: entry.checksums[s])
            p += Self.checksumLength
            bytes.replaceSubrange(p..<(p + Self.proofLength), with: entry.proofs[s])
            p += Self.proofLength
        }
    }
}

/// The per-block pipeline of one file: zstd -> XChaCha20-Poly1305 -> Reed-Solomon -> BLAKE2b,
/// and back.
///
/// Each block's nonce is the file id followed by the block index, and its associated data binds
/// the file id, the block index, the number of blocks, the flags (last block, compressed) and the
/// plaintext length. So a block cannot be moved to another position or another file, the file
/// cannot be cut short (the last block says it is last, and every block knows the count), and
/// nothing decrypts to other bytes than were stored.
struct BlockCodec: Sendable {
    static let domain = Array("grid-twin shard block v1".utf8)
    static let flagLast: UInt8 = 1
    static let flagCompressed: UInt8 = 2
    /// PROOF challenges hash this much of a shard (the node still reads and CRC-checks all of it).
    static let proofWindow = 4096

    let fileID: [UInt8]
    let fileKey: [UInt8]
    let size: UInt64
    let blockSize: Int
    let blockCount: Int
    let code: ReedSolomon
    /// nil: blocks are stored without compression.
    let zstdLevel: Int32?
    let proofKey: [UInt8]

    var shardCount: Int { code.k + code.m }

    static func blockCount(size: UInt64, blockSize: Int) -> Int {
        // An empty file is one empty block, so even it has a "last" block to authenticate.
        max(1, Int((size + UInt64(blockSize) - 1) / UInt64(blockSize)))
    }

    func plainLength(_ block: Int) -> Int {
        let start = UInt64(block) * UInt64(blockSize)
        return Int(min(UInt64(blockSize), size - min(size, start)))
    }

    func shardLength(cipherLength: Int) -> Int { (cipherLength + code.k - 1) / code.k }

    func nonce(_ block: Int) -> [UInt8] {
        fileID + withUnsafeBytes(of: UInt64(block).littleEndian, Array.init)
    }

    func additionalData(_ block: Int, flags: UInt8, plainLength: Int) -> [UInt8] {
        var ad = Self.domain + fileID
        ad += withUnsafeBytes(of: UInt64(block).littleEndian, Array.init)
        ad += withUnsafeBytes(of: UInt64(blockCount).littleEndian, Array.init)
        ad.append(flags)
        ad += withUnsafeBytes(of: UInt64(plainLength).littleEndian, Array.init)
        return ad
    }

    /// The PROOF challenge of one shard: a nonce and a byte range, derived from the twin's secret
    /// so a node cannot know it before it is asked.
    func challenge(block: Int, shard: Int, shardLength: Int) -> (nonce: [UInt8], offset: Int, length: Int) {
        var input = Array("challenge".utf8)
        input += withUnsafeBytes(of: UInt64(block).littleEndian, Array.init)
        input.append(UInt8(shard))
        let nonce = SodiumCrypto.blake2b(input, outputLength: 16, key: proofKey)
        let window = min(shardLength, Self.proofWindow)
        var pick: UInt64 = 0
        for i in 0..<8 { pick |= UInt64(nonce[i]) << UInt64(8 * i) }
        let offset = Int(pick % UInt64(shardLength - window + 1))
        return (nonce, offset, window)
    }

    /// The expected PROOF answer (its first 16 bytes) for a shard's bytes.
    func proofAnswer(block: Int, shard: Int, bytes: UnsafeRawBufferPointer) -> [UInt8] {
        let c = challenge(block: block, shard: shard, shardLength: bytes.count)
        let slice = UnsafeRawBufferPointer(rebasing: bytes[c.offset..<(c.offset + c.length)])
        return Array(SodiumCrypto.blake2b(c.nonce + Array(slice)).prefix(BlockTable.proofLength))
    }

    struct Encoded {
        var entry: BlockTable.Entry
        var shards: [ByteBuffer]
    }

    /// Compresses, encrypts, erasure-codes and checksums one block. With a workspace, the
    /// shards are slices of its buffers, which are reused for a later block once nothing else
    /// holds them (until then, a later block gets new storage: ByteBuffer is copy-on-write).
    func encode(block: Int, plaintext: UnsafeRawBufferPointer, compressors: Pool<ZstdCompressor>,
                workspace: EncodeWorkspace = EncodeWorkspace()) throws -> Encoded {
        let k = code.k, m = code.m
        let plainLength = plaintext.count
        var flags: UInt8 = block == blockCount - 1 ? Self.flagLast : 0
        let room = max(zstdLevel != nil ? ZstdCompressor.bound(plainLength) : 0, plainLength) + SodiumCrypto.tagLength + k + 64
        var data = workspace.data
        workspace.data = ByteBuffer()  // so `data` is the storage's only holder here and is written in place
        data.clear(minimumCapacity: room)
        var cipherLength = 0
        var shardLength = 0
        try data.writeWithUnsafeMutableBytes(minimumWritableBytes: room) { out in
            var payload = 0
            if let level = zstdLevel, plainLength > 0 {
                let compressed = try compressors.with { try $0.compress(plaintext, into: out, level: level) }
                // Incompressible blocks are stored as they are: never larger than the input.
                if compressed < plainLength {
                    payload = compressed
                    flags |= Self.flagCompressed
                }
            }
            if flags & Self.flagCompressed == 0, plainLength > 0, let source = plaintext.baseAddress, let target = out.baseAddress {
                target.copyMemory(from: source, byteCount: plainLength)
                payload = plainLength
            }
            cipherLength = SodiumCrypto.seal(out, length: payload,
                                             additional: additionalData(block, flags: flags, plainLength: plainLength),
                                             nonce: nonce(block), key: fileKey)
            shardLength = self.shardLength(cipherLength: cipherLength)
            let padded = shardLength * k
            if padded > cipherLength { UnsafeMutableRawBufferPointer(rebasing: out[cipherLength..<padded]).initializeMemory(as: UInt8.self, repeating: 0) }
            return padded
        }
        var parity = workspace.parity
        workspace.parity = ByteBuffer()
        parity.clear(minimumCapacity: max(1, shardLength * m))
        if m > 0 {
            _ = data.withUnsafeReadableBytes { source in
                parity.writeWithUnsafeMutableBytes(minimumWritableBytes: shardLength * m) { out in
                    guard let sourceBase = source.baseAddress, let outBase = out.baseAddress else { return 0 }
                    let dataPointers = (0..<k).map { UnsafeMutablePointer(mutating: sourceBase.assumingMemoryBound(to: UInt8.self) + $0 * shardLength) }
                    let parityPointers = (0..<m).map { outBase.assumingMemoryBound(to: UInt8.self) + $0 * shardLength }
                    code.encode(length: shardLength, data: dataPointers, parity: parityPointers)
                    return shardLength * m
                }
            }
        }
        workspace.data = data
        workspace.parity = parity
        var shards: [ByteBuffer] = []
        shards.reserveCapacity(k + m)
        for i in 0..<k { shards.append(data.getSlice(at: data.readerIndex + i * shardLength, length: shardLength) ?? ByteBuffer()) }
        for i in 0..<m { shards.append(parity.getSlice(at: parity.readerIndex + i * shardLength, length: shardLength) ?? ByteBuffer()) }
        var checksums: [[UInt8]] = [], proofs: [[UInt8]] = []
        for (i, shard) in shards.enumerated() {
            shard.withUnsafeReadableBytes { bytes in
                checksums.append(SodiumCrypto.blake2b(bytes))
                proofs.append(proofAnswer(block: block, shard: i, bytes: bytes))
            }
        }
        return Encoded(entry: BlockTable.Entry(cipherLength: cipherLength, flags: flags, checksums: checksums, proofs: proofs),
                       shards: shards)
    }

    /// True when `shard` is exactly what was stored as shard `index` of the block.
    static func verify(_ shard: ByteBuffer, index: Int, entry: BlockTable.Entry, shardLength: Int) -> Bool {
        guard shard.readableBytes == shardLength else { return false }
        let sum = shard.withUnsafeReadableBytes { SodiumCrypto.blake2b($0) }
        return SodiumCrypto.equal(sum, entry.checksums[index])
    }

    /// Rebuilds shards `targets` of a block from k verified shards (index -> bytes).
    func rebuild(targets: [Int], from sources: [Int: ByteBuffer], shardLength: Int) throws -> [Int: [UInt8]] {
        let k = code.k
        let chosen = Array(sources.keys.sorted().prefix(k))
        guard chosen.count == k else {
            throw StorageError.invalidInput(what: "rebuild", reason: "needs \(k) shards, has \(sources.count)")
        }
        // One buffer: k source slots, then one slot per target.
        var work = [UInt8](repeating: 0, count: (k + targets.count) * shardLength)
        try work.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
            for (slot, index) in chosen.enumerated() {
                sources[index]?.withUnsafeReadableBytes { bytes in
                    if let from = bytes.baseAddress { (base + slot * shardLength).update(from: from.assumingMemoryBound(to: UInt8.self), count: shardLength) }
                }
            }
            try code.reconstruct(length: shardLength,
                                 sources: chosen.enumerated().map { ($0.element, base + $0.offset * shardLength) },
                                 targets: targets.enumerated().map { ($0.element, base + (k + $0.offset) * shardLength) })
        }
        var out: [Int: [UInt8]] = [:]
        for (slot, index) in targets.enumerated() {
            out[index] = Array(work[((k + slot) * shardLength)..<((k + slot + 1) * shardLength)])
        }
        return out
    }

    /// Decodes one block from k verified shards: erasure-decode (when data shards are missing),
    /// decrypt and check the tag, decompress. Returns the block's plaintext.
    func decode(block: Int, entry: BlockTable.Entry, shards: [Int: ByteBuffer], decompressors: Pool<ZstdDecompressor>) throws -> [UInt8] {
        try decode(block: block, entry: entry, shards: shards, decompressors: decompressors, workspace: DecodeWorkspace()) { Array($0) }
    }

    /// Decodes one block into `workspace` and hands `body` the plaintext, which lives in the
    /// workspace: valid while the caller holds the workspace and does not use it again. The data shards are joined into one buffer (the ciphertext); when any is
    /// missing, ISA-L rebuilds it in place from the others, otherwise there is no decode at all.
    /// The tag is checked before anything is decompressed or passed on.
    func decode<R>(block: Int, entry: BlockTable.Entry, shards: [Int: ByteBuffer], decompressors: Pool<ZstdDecompressor>,
                   workspace: DecodeWorkspace, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let k = code.k
        let shardLength = shardLength(cipherLength: entry.cipherLength)
        let plainLength = plainLength(block)
        let missing = (0..<k).filter { shards[$0] == nil }
        // Sources for the rebuild: the data shards there are, then parity (lowest indexes first).
        let sources = missing.isEmpty ? [] : Array(shards.keys.sorted().prefix(k))
        guard missing.isEmpty || sources.count == k else {
            throw StorageError.invalidInput(what: "erasure decode", reason: "needs \(k) shards, has \(shards.count)")
        }
        // The readers pass only shards of the right length; anything else is damage (the
        // caller's checksums then find which).
        for index in (0..<k).filter({ shards[$0] != nil }) + sources where shards[index]?.readableBytes != shardLength {
            throw StorageError.integrity(fileID: Hex.encode(fileID), block: block,
                                         reason: "shard \(index) is \(shards[index]?.readableBytes ?? 0) bytes, expected \(shardLength)")
        }
        let paritySources = sources.filter { $0 >= k }
        // k slots for the data shards (together, the ciphertext), then one per parity source.
        // Every byte of the data slots is copied or rebuilt below before it is read.
        let cipher = workspace.cipher.reserve(shardLength * (k + paritySources.count))
        guard let base = cipher.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            throw StorageError.integrity(fileID: Hex.encode(fileID), block: block, reason: "has no ciphertext")
        }
        func place(_ shard: ByteBuffer, at slot: Int) {
            shard.withUnsafeReadableBytes { bytes in
                if let from = bytes.baseAddress { (base + slot * shardLength).update(from: from.assumingMemoryBound(to: UInt8.self), count: shardLength) }
            }
        }
        for i in 0..<k { if let shard = shards[i] { place(shard, at: i) } }
        if !missing.isEmpty {
            var pointers: [(index: Int, pointer: UnsafeMutablePointer<UInt8>)] = []
            var extra = k
            for index in sources {
                if index < k {
                    pointers.append((index, base + index * shardLength))
                } else if let shard = shards[index] {
                    place(shard, at: extra)
                    pointers.append((index, base + extra * shardLength))
                    extra += 1
                }
            }
            try code.reconstruct(length: shardLength, sources: pointers, targets: missing.map { ($0, base + $0 * shardLength) })
        }
        let ciphertext = UnsafeMutableRawBufferPointer(rebasing: cipher[0..<(shardLength * k)])
        let opened = SodiumCrypto.open(ciphertext, length: entry.cipherLength,
                                       additional: additionalData(block, flags: entry.flags, plainLength: plainLength), nonce: nonce(block), key: fileKey)
        let hex = Hex.encode(fileID)
        guard let payload = opened else {
            throw StorageError.integrity(fileID: hex, block: block,
                                         reason: "the block does not authenticate (its shards verified, so the metadata and the data disagree: "
                                             + "reordered, swapped or altered blocks)")
        }
        let decrypted = UnsafeRawBufferPointer(rebasing: cipher[0..<payload])
        if entry.flags & Self.flagCompressed == 0 {
            guard payload == plainLength else {
                throw StorageError.integrity(fileID: hex, block: block, reason: "holds \(payload) bytes, expected \(plainLength)")
            }
            return try body(decrypted)
        }
        let plain = workspace.plain.reserve(plainLength)  // zstd fills all of it or throws
        try decompressors.with { try $0.decompress(decrypted, into: plain) }
        return try body(UnsafeRawBufferPointer(plain))
    }
}

/// Buffers one block is encoded in, reused from block to block (through a `Pool`) for the same
/// reason as `DecodeWorkspace`: the block read from the file, the ciphertext (data shards) and the
/// parity shards.
final class EncodeWorkspace: @unchecked Sendable {
    // @unchecked: used by one borrower at a time (a Pool hands it out exclusively).
    let plain = ScratchBuffer()
    var data = ByteBuffer()
    var parity = ByteBuffer()
}

/// Buffers one block is decoded in, reused from block to block (through a `Pool`): a fresh
/// block-sized allocation per block costs a page fault and a kernel zero-fill per 4 KiB page.
final class DecodeWorkspace: @unchecked Sendable {
    // @unchecked: used by one borrower at a time (a Pool hands it out exclusively).
    let cipher = ScratchBuffer()
    let plain = ScratchBuffer()
}

/// A growable buffer whose contents are not kept between uses (nor zeroed: callers fill what
/// they read).
final class ScratchBuffer {
    private var base: UnsafeMutableRawPointer?
    private var capacity = 0

    deinit { base?.deallocate() }

    /// `count` bytes, valid until the next call.
    func reserve(_ count: Int) -> UnsafeMutableRawBufferPointer {
        if count > capacity || base == nil {
            base?.deallocate()
            capacity = max(count, 1)
            base = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
        }
        return UnsafeMutableRawBufferPointer(start: base, count: count)
    }
}

/// A byte array of `count` whose contents are not zeroed first, for buffers that are filled
/// completely before they are read (saves a pass over every block).
func uninitializedBytes(_ count: Int) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
}
