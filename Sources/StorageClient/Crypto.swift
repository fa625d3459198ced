import CSodium
import GridTypes

/// libsodium must be initialised once before use; a global `let` does it lazily and thread-safely.
private let sodiumReady: Bool = sodium_init() >= 0

enum SodiumCrypto {
    static func ensureReady() throws {
        guard sodiumReady else {
            throw StorageError.invalidInput(what: "libsodium", reason: "sodium_init failed; check that libsodium23 is installed")
        }
    }

    static func random(_ count: Int) -> [UInt8] {
        _ = sodiumReady
        var out = [UInt8](repeating: 0, count: count)
        randombytes_buf(&out, count)
        return out
    }

    /// BLAKE2b of a byte range, `length` bytes of output (16...64), optionally keyed.
    static func blake2b(_ bytes: UnsafeRawBufferPointer, outputLength: Int = 32, key: [UInt8] = []) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: outputLength)
        let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let rc = key.isEmpty
            ? crypto_generichash(&out, outputLength, base, UInt64(bytes.count), nil, 0)
            : crypto_generichash(&out, outputLength, base, UInt64(bytes.count), key, key.count)
        precondition(rc == 0, "crypto_generichash rejected valid parameters")
        return out
    }

    static func blake2b(_ bytes: [UInt8], outputLength: Int = 32, key: [UInt8] = []) -> [UInt8] {
        bytes.withUnsafeBytes { blake2b($0, outputLength: outputLength, key: key) }
    }

    /// Compares secrets (tags, checksums) in time independent of where they differ.
    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in sodium_memcmp(pa.baseAddress, pb.baseAddress, a.count) == 0 } }
    }

    static let keyLength = Int(crypto_aead_xchacha20poly1305_ietf_KEYBYTES)
    static let nonceLength = Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
    static let tagLength = Int(crypto_aead_xchacha20poly1305_ietf_ABYTES)

    /// XChaCha20-Poly1305 in place: `buffer[0..<length]` is the plaintext and must have room for
    /// the 16-byte tag after it. Returns the ciphertext length (length + 16).
    static func seal(_ buffer: UnsafeMutableRawBufferPointer, length: Int, additional: [UInt8], nonce: [UInt8], key: [UInt8]) -> Int {
        precondition(buffer.count >= length + tagLength && nonce.count == nonceLength && key.count == keyLength)
        var outLength: UInt64 = 0
        guard let p = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self) else { preconditionFailure("empty AEAD buffer") }
        let rc = crypto_aead_xchacha20poly1305_ietf_encrypt(p, &outLength, p, UInt64(length), additional, UInt64(additional.count),
                                                            nil, nonce, key)
        precondition(rc == 0, "crypto_aead_xchacha20poly1305_ietf_encrypt failed")
        return Int(outLength)
    }

    /// Opens `buffer[0..<length]` in place; nil when the tag does not verify (wrong key, altered,
    /// reordered or swapped data). Returns the plaintext length.
    static func open(_ buffer: UnsafeMutableRawBufferPointer, length: Int, additional: [UInt8], nonce: [UInt8], key: [UInt8]) -> Int? {
        guard length >= tagLength, buffer.count >= length else { return nil }
        var outLength: UInt64 = 0
        guard let p = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
        let rc = crypto_aead_xchacha20poly1305_ietf_decrypt(p, &outLength, nil, p, UInt64(length), additional,
                                                            UInt64(additional.count), nonce, key)
        return rc == 0 ? Int(outLength) : nil
    }

    static func seal(_ plaintext: [UInt8], additional: [UInt8], key: [UInt8]) -> (nonce: [UInt8], ciphertext: [UInt8]) {
        let nonce = random(nonceLength)
        var buffer = plaintext + [UInt8](repeating: 0, count: tagLength)
        let n = buffer.withUnsafeMutableBytes { seal($0, length: plaintext.count, additional: additional, nonce: nonce, key: key) }
        return (nonce, Array(buffer[0..<n]))
    }

    static func open(_ ciphertext: [UInt8], additional: [UInt8], nonce: [UInt8], key: [UInt8]) -> [UInt8]? {
        var buffer = ciphertext
        guard let n = buffer.withUnsafeMutableBytes({ open($0, length: ciphertext.count, additional: additional, nonce: nonce, key: key) })
        else { return nil }
        return Array(buffer[0..<n])
    }
}

/// The storage keys of one twin, all derived from its ed25519 seed, so the twin key alone opens
/// every file it stored:
///     root        = BLAKE2b-256(key: seed, "grid-twin storage v1")           (GridTypes.derivedSecret)
///     wrap key    = BLAKE2b-256(key: root, "file-key-wrap")                   wraps each file's random key
///     metadata    = BLAKE2b-256(key: root, "metadata" || file id)             encrypts the file's metadata
///     proofs      = BLAKE2b-256(key: root, "proof" || file id)                derives PROOF challenges
///     fingerprint = BLAKE2b-64(key: root, "fingerprint")                      says which key stored a file
public struct TwinStorageKey: Sendable {
    public static let domain = "grid-twin storage v1"
    private let root: [UInt8]

    public init(keyPair: Ed25519KeyPair) {
        root = keyPair.derivedSecret(domain: Self.domain)
    }

    /// From a 32-byte root secret directly (tests, tools that keep only the derived secret).
    public init(rootSecret: [UInt8]) throws {
        guard rootSecret.count == 32 else {
            throw StorageError.invalidInput(what: "storage root secret", reason: "must be 32 bytes, got \(rootSecret.count)")
        }
        root = rootSecret
    }

    func derive(_ label: String, _ context: [UInt8] = [], length: Int = 32) -> [UInt8] {
        SodiumCrypto.blake2b(Array(label.utf8) + context, outputLength: length, key: root)
    }

    var wrapKey: [UInt8] { derive("file-key-wrap") }
    func metadataKey(fileID: [UInt8]) -> [UInt8] { derive("metadata", fileID) }
    func proofKey(fileID: [UInt8]) -> [UInt8] { derive("proof", fileID) }

    /// 8 bytes, hex: names the key in errors without revealing anything about it.
    public var fingerprint: String { Hex.encode(derive("fingerprint", length: 16).prefix(8)) }
}
