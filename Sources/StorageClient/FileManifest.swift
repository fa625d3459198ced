import Foundation
import GridTypes

/// Where one shard column of a file lives: shard `index` of every block is on `endpoint` under
/// `keyPrefix` + block number.
public struct ShardColumn: Codable, Sendable, Equatable {
    public var index: Int
    public var endpoint: ShardEndpoint
    public var keyPrefix: String

    func key(block: Int) -> String { keyPrefix + String(block) }
}

/// Everything needed to get a file back, given the twin key: sizes, the code, where each shard
/// column is (with the namespace passwords), per-block checksums and proofs, and the file key
/// wrapped with the twin's wrap key. Stored encrypted (`MetadataEnvelope`) on every shard
/// namespace of the file and in the local copy.
public struct FileManifest: Codable, Sendable, Equatable {
    public static let formatVersion = 1
    public static let maxNameLength = 255

    public var version: Int
    public var fileID: String
    /// Bumped by every repair; readers take the highest revision they can open.
    public var revision: Int
    public var name: String
    public var size: UInt64
    public var blockSize: Int
    public var blockCount: Int
    public var k: Int
    public var m: Int
    /// "zstd" or "none".
    public var compression: String
    public var zstdLevel: Int
    public var createdAt: Int64
    /// nonce (24) || XChaCha20-Poly1305(file key) with AD "grid-twin file key" || file id; base64.
    public var wrappedKey: String
    public var columns: [ShardColumn]
    /// The packed `BlockTable`, base64.
    public var blocks: String

    var fileIDBytes: [UInt8] { (try? Hex.decode(fileID)) ?? [] }

    /// Structural checks on a decrypted manifest before anything acts on it.
    func validate() throws {
        func bad(_ reason: String) -> StorageError { .metadataInvalid(fileID: fileID, reason: reason) }
        guard version == Self.formatVersion else { throw bad("format version \(version); this client reads \(Self.formatVersion)") }
        guard fileIDBytes.count == 16 else { throw bad("file id is not 16 bytes of hex") }
        guard (1...ReedSolomon.maxShards).contains(k), m >= 0, k + m <= ReedSolomon.maxShards else { throw bad("k=\(k) m=\(m)") }
        guard (StorageOptions.minBlockSize...StorageOptions.maxBlockSize).contains(blockSize) else { throw bad("block size \(blockSize)") }
        guard blockCount == BlockCodec.blockCount(size: size, blockSize: blockSize) else {
            throw bad("\(blockCount) blocks do not fit size \(size) with block size \(blockSize)")
        }
        guard columns.count == k + m, columns.enumerated().allSatisfy({ $0.offset == $0.element.index }) else {
            throw bad("expected \(k + m) shard columns in order")
        }
        for column in columns { try column.endpoint.validate() }
        guard compression == "zstd" || compression == "none" else { throw bad("unknown compression '\(compression)'") }
        guard name.utf8.count <= Self.maxNameLength else { throw bad("name too long") }
        let table = try blockTable()
        guard table.count == blockCount, table.bytes.count == blockCount * table.entrySize else {
            throw bad("block table holds \(table.bytes.count) bytes, expected \(blockCount) entries")
        }
        let maxCipher = max(ZstdCompressor.bound(blockSize), blockSize) + SodiumCrypto.tagLength
        for block in 0..<blockCount {
            let entry = table.entry(block)
            guard entry.cipherLength >= SodiumCrypto.tagLength, entry.cipherLength <= maxCipher else {
                throw bad("block \(block) has an impossible length \(entry.cipherLength)")
            }
            guard (entry.flags & BlockCodec.flagLast != 0) == (block == blockCount - 1), entry.flags & ~3 == 0 else {
                throw bad("block \(block) has flags \(entry.flags)")
            }
        }
    }

    func blockTable() throws -> BlockTable {
        guard let bytes = Data(base64Encoded: blocks) else {
            throw StorageError.metadataInvalid(fileID: fileID, reason: "block table is not base64")
        }
        return BlockTable(shardCount: k + m, bytes: Array(bytes))
    }

    static func wrapAdditional(fileID: [UInt8]) -> [UInt8] { Array("grid-twin file key".utf8) + fileID }

    static func wrap(fileKey: [UInt8], fileID: [UInt8], with key: TwinStorageKey) -> String {
        let sealed = SodiumCrypto.seal(fileKey, additional: wrapAdditional(fileID: fileID), key: key.wrapKey)
        return Data(sealed.nonce + sealed.ciphertext).base64EncodedString()
    }

    func unwrapFileKey(with key: TwinStorageKey) throws -> [UInt8] {
        guard let raw = Data(base64Encoded: wrappedKey), raw.count == SodiumCrypto.nonceLength + SodiumCrypto.keyLength + SodiumCrypto.tagLength else {
            throw StorageError.metadataInvalid(fileID: fileID, reason: "wrapped key has the wrong length")
        }
        let bytes = Array(raw)
        guard let fileKey = SodiumCrypto.open(Array(bytes[SodiumCrypto.nonceLength...]), additional: Self.wrapAdditional(fileID: fileIDBytes),
                                              nonce: Array(bytes[0..<SodiumCrypto.nonceLength]), key: key.wrapKey) else {
            throw StorageError.wrongKey(fileID: fileID, detail: "the file key does not unwrap")
        }
        return fileKey
    }

    func codec(key: TwinStorageKey) throws -> BlockCodec {
        try BlockCodec(fileID: fileIDBytes, fileKey: unwrapFileKey(with: key), size: size, blockSize: blockSize, blockCount: blockCount,
                       code: ReedSolomon(k: k, m: m), zstdLevel: compression == "zstd" ? Int32(zstdLevel) : nil,
                       proofKey: key.proofKey(fileID: fileIDBytes))
    }

    /// The manifest without passwords, for output.
    public var redactedColumns: [ShardColumn] {
        columns.map { ShardColumn(index: $0.index, endpoint: $0.endpoint.redacted, keyPrefix: $0.keyPrefix) }
    }
}

/// The encrypted form of a manifest, as stored on the nodes and in the local copy:
///     "GTSHMETA" | version u8 | file id (16) | key fingerprint (8) | revision u32 LE | nonce (24) | ciphertext
/// The header is the associated data, so none of it can be changed without the tag failing; the
/// fingerprint lets a wrong key be told apart from damage.
enum MetadataEnvelope {
    static let magic = Array("GTSHMETA".utf8)
    static let headerLength = 8 + 1 + 16 + 8 + 4
    /// Metadata bigger than this is refused (a 100 GiB file at 4 MiB blocks needs about 10 MiB).
    static let maxLength = 64 << 20

    static func seal(_ manifest: FileManifest, key: TwinStorageKey) throws -> [UInt8] {
        let fileID = manifest.fileIDBytes
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let plaintext = Array(try encoder.encode(manifest))
        let header = Self.header(fileID: fileID, fingerprint: try Hex.decode(key.fingerprint), revision: UInt32(manifest.revision))
        let sealed = SodiumCrypto.seal(plaintext, additional: header, key: key.metadataKey(fileID: fileID))
        return header + sealed.nonce + sealed.ciphertext
    }

    static func header(fileID: [UInt8], fingerprint: [UInt8], revision: UInt32) -> [UInt8] {
        magic + [1] + fileID + fingerprint + withUnsafeBytes(of: revision.littleEndian, Array.init)
    }

    struct Header {
        var fileID: [UInt8]
        var fingerprint: String
        var revision: Int
    }

    static func parseHeader(_ bytes: [UInt8], fileID: String) throws -> Header {
        guard bytes.count >= headerLength + SodiumCrypto.nonceLength + SodiumCrypto.tagLength else {
            throw StorageError.metadataInvalid(fileID: fileID, reason: "record is \(bytes.count) bytes: truncated")
        }
        guard Array(bytes[0..<8]) == magic else { throw StorageError.metadataInvalid(fileID: fileID, reason: "not a metadata record") }
        guard bytes[8] == 1 else { throw StorageError.metadataInvalid(fileID: fileID, reason: "record format \(bytes[8]) is unknown") }
        let revision = Int(bytes[33]) | Int(bytes[34]) << 8 | Int(bytes[35]) << 16 | Int(bytes[36]) << 24
        return Header(fileID: Array(bytes[9..<25]), fingerprint: Hex.encode(bytes[25..<33]), revision: revision)
    }

    /// `validate: false` only for the record of an interrupted put (it has no block table yet).
    static func open(_ bytes: [UInt8], fileID: String, key: TwinStorageKey, validate: Bool = true) throws -> FileManifest {
        let header = try parseHeader(bytes, fileID: fileID)
        guard Hex.encode(header.fileID) == fileID else {
            throw StorageError.metadataInvalid(fileID: fileID, reason: "record belongs to file \(Hex.encode(header.fileID))")
        }
        guard header.fingerprint == key.fingerprint else {
            throw StorageError.wrongKey(fileID: fileID, detail: "it was stored by the twin key with fingerprint \(header.fingerprint); "
                                        + "this key's fingerprint is \(key.fingerprint)")
        }
        let nonce = Array(bytes[headerLength..<(headerLength + SodiumCrypto.nonceLength)])
        guard let plaintext = SodiumCrypto.open(Array(bytes[(headerLength + SodiumCrypto.nonceLength)...]),
                                                additional: Array(bytes[0..<headerLength]), nonce: nonce,
                                                key: key.metadataKey(fileID: header.fileID)) else {
            throw StorageError.metadataInvalid(fileID: fileID, reason: "the record does not authenticate (truncated or altered)")
        }
        let manifest: FileManifest
        do { manifest = try JSONDecoder().decode(FileManifest.self, from: Data(plaintext)) } catch {
            throw StorageError.metadataInvalid(fileID: fileID, reason: "record does not decode: \(error)")
        }
        guard manifest.fileID == fileID, manifest.revision == header.revision else {
            throw StorageError.metadataInvalid(fileID: fileID, reason: "record header and content disagree")
        }
        if validate { try manifest.validate() }
        return manifest
    }

    // MARK: - Parts on a node

    /// A value on a node is at most 8 MiB: the envelope is stored in parts of this size, each
    ///     "GTSHPART" | part u32 | parts u32 | total length u64 | bytes
    static let partSize = 4 << 20
    static let partMagic = Array("GTSHPART".utf8)
    static let partHeaderLength = 8 + 4 + 4 + 8

    static func key(fileID: String, part: Int) -> String { part == 0 ? "gtm:\(fileID)" : "gtm:\(fileID):\(part)" }

    static func parts(_ envelope: [UInt8]) -> [[UInt8]] {
        let count = max(1, (envelope.count + partSize - 1) / partSize)
        return (0..<count).map { i in
            let slice = envelope[(i * partSize)..<min(envelope.count, (i + 1) * partSize)]
            return partMagic + le32(i) + le32(count) + withUnsafeBytes(of: UInt64(envelope.count).littleEndian, Array.init) + Array(slice)
        }
    }

    struct Part {
        var index: Int
        var count: Int
        var total: Int
        var bytes: ArraySlice<UInt8>
    }

    static func parsePart(_ value: [UInt8], fileID: String) throws -> Part {
        guard value.count >= partHeaderLength, Array(value[0..<8]) == partMagic else {
            throw StorageError.metadataInvalid(fileID: fileID, reason: "stored record part is truncated or not a record")
        }
        func u32(_ at: Int) -> Int { Int(value[at]) | Int(value[at + 1]) << 8 | Int(value[at + 2]) << 16 | Int(value[at + 3]) << 24 }
        var total = 0
        for i in 0..<8 { total |= Int(value[16 + i]) << (8 * i) }
        let part = Part(index: u32(8), count: u32(12), total: total, bytes: value[partHeaderLength...])
        guard part.count >= 1, part.index < part.count, part.total <= maxLength,
              part.count == max(1, (part.total + partSize - 1) / partSize) else {
            throw StorageError.metadataInvalid(fileID: fileID, reason: "stored record part header is inconsistent")
        }
        return part
    }

    private static func le32(_ v: Int) -> [UInt8] { withUnsafeBytes(of: UInt32(v).littleEndian, Array.init) }
}
