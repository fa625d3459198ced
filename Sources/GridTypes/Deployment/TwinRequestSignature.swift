import CSodium
import Foundation

/// How a twin signs its calls to a node's API: ed25519 over the method, the path with its query,
/// the Unix time, a random nonce and BLAKE2b-256 of the body, so a captured request cannot be
/// replayed, sent to another path or given another body, while two identical calls in the same
/// second are still two requests. The node adds a ±60 s window and a replay cache.
public enum TwinRequestSignature {
    public static let twinHeader = "X-Grid-Twin"
    public static let timestampHeader = "X-Grid-Timestamp"
    public static let nonceHeader = "X-Grid-Nonce"
    public static let signatureHeader = "X-Grid-Signature"
    public static let allowedSkewSeconds: Int64 = 60
    public static let maxNonceLength = 64

    public static func message(method: String, path: String, timestamp: Int64, nonce: String, body: [UInt8]) -> [UInt8] {
        Array("grid-request-v1\n\(method.uppercased())\n\(path)\n\(timestamp)\n\(nonce)\n\(Hex.encode(Blake2b.hash256(body)))".utf8)
    }

    /// Header values for a request.
    public static func headers(method: String, path: String, body: [UInt8], twinID: UInt32, keyPair: Ed25519KeyPair,
                               now: Int64 = Int64(Date().timeIntervalSince1970),
                               nonce: String = Hex.encode((0..<16).map { _ in UInt8.random(in: 0...255) })) -> [String: String] {
        let signature = keyPair.sign(message(method: method, path: path, timestamp: now, nonce: nonce, body: body))
        return [twinHeader: String(twinID), timestampHeader: String(now), nonceHeader: nonce, signatureHeader: Hex.encode(signature)]
    }
}

/// libsodium sealed boxes to a node's ed25519 key converted to X25519: only the node can open a
/// deployment body, so namespace passwords and env secrets never cross the network in clear.
public enum SealedBox {
    public static let contentType = "application/x-grid-sealed"

    public static func seal(_ plaintext: [UInt8], to nodeKey: Ed25519PublicKey) throws(GridTypesError) -> [UInt8] {
        try Sodium.ready()
        var curve = [UInt8](repeating: 0, count: Int(crypto_box_PUBLICKEYBYTES))
        guard crypto_sign_ed25519_pk_to_curve25519(&curve, nodeKey.bytes) == 0 else {
            throw .sealedBox(reason: "the node key \(nodeKey.hex) is not a valid ed25519 point")
        }
        var out = [UInt8](repeating: 0, count: plaintext.count + crypto_box_sealbytes())
        guard crypto_box_seal(&out, plaintext, UInt64(plaintext.count), curve) == 0 else {
            throw .sealedBox(reason: "crypto_box_seal failed")
        }
        return out
    }

    public static func open(_ sealed: [UInt8], with keyPair: Ed25519KeyPair) throws(GridTypesError) -> [UInt8] {
        try Sodium.ready()
        guard sealed.count >= crypto_box_sealbytes() else {
            throw .sealedBox(reason: "\(sealed.count) bytes is shorter than a sealed box's \(crypto_box_sealbytes())-byte overhead")
        }
        var curvePublic = [UInt8](repeating: 0, count: Int(crypto_box_PUBLICKEYBYTES))
        var curveSecret = [UInt8](repeating: 0, count: Int(crypto_box_SECRETKEYBYTES))
        defer { sodium_memzero(&curveSecret, curveSecret.count) }
        guard crypto_sign_ed25519_pk_to_curve25519(&curvePublic, keyPair.publicKey.bytes) == 0,
              crypto_sign_ed25519_sk_to_curve25519(&curveSecret, keyPair.secretKeyBytes) == 0 else {
            throw .sealedBox(reason: "the node key cannot be converted to X25519")
        }
        var out = [UInt8](repeating: 0, count: sealed.count - crypto_box_sealbytes())
        guard crypto_box_seal_open(&out, sealed, UInt64(sealed.count), curvePublic, curveSecret) == 0 else {
            throw .sealedBox(reason: "it was not sealed to this node's key (\(keyPair.publicKey.hex)) or was damaged in transit")
        }
        return out
    }
}
