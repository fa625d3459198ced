import ChainClient
import Foundation
import GridTypes

/// Checks a twin's signed API request: the twin's key from chain, a ±60 s window and a replay
/// cache, so a captured request can be neither replayed nor altered.
public actor RequestAuthenticator {
    let chain: any GridChain
    let window: Int64
    let maxCachedSignatures: Int
    var seen: [String: Int64] = [:]
    var keys: [UInt32: (key: Ed25519PublicKey, fetched: Int64)] = [:]

    public init(chain: any GridChain, window: Int64 = TwinRequestSignature.allowedSkewSeconds, maxCachedSignatures: Int = 100_000) {
        self.chain = chain
        self.window = window
        self.maxCachedSignatures = maxCachedSignatures
    }

    /// The authenticated twin id.
    public func authenticate(method: String, path: String, headers: [String: String], body: [UInt8],
                             now: Int64 = Int64(Date().timeIntervalSince1970)) async throws(ProvisionerError) -> UInt32 {
        func header(_ name: String) -> String? { headers.first { $0.key.lowercased() == name.lowercased() }?.value }
        guard let twinText = header(TwinRequestSignature.twinHeader), let twinID = UInt32(twinText),
              let timeText = header(TwinRequestSignature.timestampHeader), let timestamp = Int64(timeText),
              let nonce = header(TwinRequestSignature.nonceHeader), let signatureHex = header(TwinRequestSignature.signatureHeader) else {
            throw .unauthorized("sign the request: headers \(TwinRequestSignature.twinHeader), \(TwinRequestSignature.timestampHeader), \(TwinRequestSignature.nonceHeader) and \(TwinRequestSignature.signatureHeader) are required (grid-twin does this)")
        }
        guard (8...TwinRequestSignature.maxNonceLength).contains(nonce.utf8.count) else {
            throw .unauthorized("\(TwinRequestSignature.nonceHeader) must be 8 to \(TwinRequestSignature.maxNonceLength) characters")
        }
        guard abs(now - timestamp) <= window else {
            throw .unauthorized("timestamp \(timestamp) is \(now - timestamp) s from the node's clock; at most ±\(window) s is accepted: check the clock")
        }
        guard let signature = try? Hex.decode(signatureHex, context: "signature"), signature.count == Ed25519KeyPair.signatureLength else {
            throw .unauthorized("\(TwinRequestSignature.signatureHeader) must be 128 hex characters")
        }
        let key = try await twinKey(twinID, now: now)
        let message = TwinRequestSignature.message(method: method, path: path, timestamp: timestamp, nonce: nonce, body: body)
        guard key.verify(signature: signature, message: message) else {
            throw .unauthorized("the signature does not verify against twin \(twinID)'s key on chain")
        }
        prune(now: now)
        guard seen[signatureHex.lowercased()] == nil else {
            throw .unauthorized("this exact request was already received (replay); sign each request anew")
        }
        guard seen.count < maxCachedSignatures else {
            throw .unauthorized("too many requests in the last \(2 * window) s; retry shortly")
        }
        seen[signatureHex.lowercased()] = timestamp
        return twinID
    }

    func prune(now: Int64) {
        guard seen.count > 1024 else { return }
        seen = seen.filter { now - $0.value <= window }
    }

    /// Keys are re-read after 30 s so a twin that changes its key is not locked out for long.
    func twinKey(_ id: UInt32, now: Int64) async throws(ProvisionerError) -> Ed25519PublicKey {
        if let cached = keys[id], now - cached.fetched < 30 { return cached.key }
        let twin: Twin?
        do { twin = try await chain.twin(id: id) } catch { throw .chainUnavailable("reading twin \(id): \(error)") }
        guard let twin else { throw .unauthorized("twin \(id) does not exist on chain") }
        keys[id] = (twin.publicKey, now)
        return twin.publicKey
    }
}
