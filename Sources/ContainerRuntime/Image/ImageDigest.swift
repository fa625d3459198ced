import CSodium
import GridTypes

/// sodium_init picks the fastest BLAKE2b/SHA-256 code for this CPU; it is idempotent and
/// thread-safe, and a global `let` runs it once.
private let sodiumReady: Int32 = sodium_init()

/// Image digests: BLAKE2b-256 of the archive's bytes, 64 lowercase hex characters.
public enum ImageDigest {
    /// The digest in canonical form (lowercase), or a clear error.
    public static func validate(_ text: String) throws(ContainerRuntimeError) -> String {
        let lower = text.lowercased()
        guard lower.utf8.count == 64, lower.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else {
            throw .image("digest '\(text.prefix(80))' is not a BLAKE2b-256 digest: give 64 hex characters (b2sum -l 256 FILE)")
        }
        return lower
    }

    static func isDigest(_ name: String) -> Bool { (try? validate(name)) == name }
}

/// Streaming BLAKE2b-256 (libsodium crypto_generichash); the one-shot form is GridTypes.Blake2b.
final class Blake2bStream {
    private let state: UnsafeMutableRawPointer

    init() {
        _ = sodiumReady
        // The state type is declared 64-byte aligned; Swift's default allocation alignment is less.
        state = UnsafeMutableRawPointer.allocate(byteCount: crypto_generichash_statebytes(), alignment: 64)
        _ = crypto_generichash_init(OpaquePointer(state), nil, 0, 32)
    }

    func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        _ = crypto_generichash_update(OpaquePointer(state),
                                      base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
    }

    /// Hex of the 32-byte digest.
    func finish() -> String {
        var out = [UInt8](repeating: 0, count: 32)
        _ = crypto_generichash_final(OpaquePointer(state), &out, 32)
        return Hex.encode(out)
    }

    deinit { state.deallocate() }
}

/// Streaming SHA-256 (libsodium): OCI layouts address their blobs by it.
final class SHA256Stream {
    private let state: UnsafeMutableRawPointer

    init() {
        _ = sodiumReady
        state = UnsafeMutableRawPointer.allocate(byteCount: crypto_hash_sha256_statebytes(), alignment: 64)
        _ = crypto_hash_sha256_init(state.assumingMemoryBound(to: crypto_hash_sha256_state.self))
    }

    func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        _ = crypto_hash_sha256_update(state.assumingMemoryBound(to: crypto_hash_sha256_state.self),
                                      base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
    }

    func finish() -> String {
        var out = [UInt8](repeating: 0, count: 32)
        _ = crypto_hash_sha256_final(state.assumingMemoryBound(to: crypto_hash_sha256_state.self), &out)
        return Hex.encode(out)
    }

    deinit { state.deallocate() }
}
