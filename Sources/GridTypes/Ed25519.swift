import CSodium

/// An ed25519 public key (32 bytes).
public struct Ed25519PublicKey: Hashable, Sendable, Codable, CustomStringConvertible {
    public static let length = 32
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws(GridTypesError) {
        guard bytes.count == Self.length else {
            throw .invalidLength(context: "ed25519 public key", expected: Self.length, actual: bytes.count)
        }
        self.bytes = bytes
    }

    public init(hex: String) throws(GridTypesError) {
        try self.init(bytes: Hex.decode(hex, context: "ed25519 public key"))
    }

    public var hex: String { Hex.encode(bytes) }
    public var description: String { hex }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { try self.init(hex: text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(hex)
    }

    /// Verifies a detached signature with libsodium's crypto_sign_verify_detached.
    public func verify(signature: [UInt8], message: [UInt8]) -> Bool {
        guard signature.count == Ed25519KeyPair.signatureLength, (try? Sodium.ready()) != nil else { return false }
        // Array-to-pointer conversion yields a valid pointer even for an empty message.
        return crypto_sign_verify_detached(signature, message, UInt64(message.count), bytes) == 0
    }
}

/// An ed25519 key pair derived from a 32-byte seed. The secret never appears in `description`.
public struct Ed25519KeyPair: Sendable, CustomStringConvertible {
    public static let seedLength = 32
    public static let signatureLength = 64

    public let publicKey: Ed25519PublicKey
    let seed: [UInt8]
    private let secretKey: [UInt8]

    public init(seed: [UInt8]) throws(GridTypesError) {
        try Sodium.ready()
        guard seed.count == Self.seedLength else {
            throw .invalidLength(context: "ed25519 seed", expected: Self.seedLength, actual: seed.count)
        }
        var pk = [UInt8](repeating: 0, count: Int(crypto_sign_PUBLICKEYBYTES))
        var sk = [UInt8](repeating: 0, count: Int(crypto_sign_SECRETKEYBYTES))
        _ = crypto_sign_seed_keypair(&pk, &sk, seed)
        self.seed = seed
        self.secretKey = sk
        self.publicKey = try Ed25519PublicKey(bytes: pk)
    }

    /// A new key pair from libsodium's CSPRNG.
    public static func generate() throws(GridTypesError) -> Ed25519KeyPair {
        try Sodium.ready()
        var seed = [UInt8](repeating: 0, count: seedLength)
        randombytes_buf(&seed, seedLength)
        return try Ed25519KeyPair(seed: seed)
    }

    public func sign(_ message: [UInt8]) -> [UInt8] {
        var signature = [UInt8](repeating: 0, count: Self.signatureLength)
        _ = crypto_sign_detached(&signature, nil, message, UInt64(message.count), secretKey)
        return signature
    }

    /// libsodium's 64-byte secret key, for conversions (X25519) inside this module only.
    var secretKeyBytes: [UInt8] { secretKey }

    public var description: String { "Ed25519KeyPair(public: \(publicKey.hex))" }
}
