import CSodium

/// sodium_init must run once before any other libsodium call; a global `let` runs it lazily and
/// exactly once, thread-safely.
private let sodiumInitResult: Int32 = sodium_init()

enum Sodium {
    static func ready() throws(GridTypesError) {
        guard sodiumInitResult >= 0 else { throw .sodiumUnavailable }
    }

    static var versionString: String { String(cString: sodium_version_string()) }
}

/// BLAKE2b from libsodium (crypto_generichash), any output length from 16 to 64 bytes.
public enum Blake2b {
    public static func hash(_ data: [UInt8], outputLength: Int = 32, key: [UInt8] = []) -> [UInt8] {
        precondition((16...64).contains(outputLength), "BLAKE2b output length must be 16...64")
        precondition(key.count <= 64, "BLAKE2b key must be at most 64 bytes")
        _ = sodiumInitResult
        var out = [UInt8](repeating: 0, count: outputLength)
        let rc = key.isEmpty
            ? crypto_generichash(&out, outputLength, data, UInt64(data.count), nil, 0)
            : crypto_generichash(&out, outputLength, data, UInt64(data.count), key, key.count)
        precondition(rc == 0, "crypto_generichash rejected valid parameters")
        return out
    }

    public static func hash256(_ data: [UInt8]) -> [UInt8] { hash(data, outputLength: 32) }
}

public enum SodiumInfo {
    public static var version: String { Sodium.versionString }
}
