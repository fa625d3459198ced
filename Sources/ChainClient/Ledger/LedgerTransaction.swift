import Foundation
import GridTypes

/// The signed form of a ledger transaction. The signature covers the genesis hash (no replay on
/// another ledger), the account nonce (no replay on this one) and the exact call bytes stored.
enum LedgerTransaction {
    static let domain = Array("grid-ledger-tx:v1:".utf8)
    static let faucetDomain = Array("grid-ledger-faucet:v1:".utf8)
    static let maxPayload = 64 * 1024

    static func signingPayload(genesis: [UInt8], nonce: UInt64, callJSON: [UInt8]) -> [UInt8] {
        domain + Array(Hex.encode(genesis).utf8) + Array(":\(nonce):".utf8) + callJSON
    }

    /// Splits a payload back into nonce and call, after checking it belongs to this ledger.
    static func parse(payload: [UInt8], genesis: [UInt8]) -> (nonce: UInt64, call: ChainCall)? {
        guard payload.count <= maxPayload else { return nil }
        let prefix = domain + Array(Hex.encode(genesis).utf8) + Array(":".utf8)
        guard payload.starts(with: prefix) else { return nil }
        let rest = payload[prefix.count...]
        guard let colon = rest.firstIndex(of: UInt8(ascii: ":")),
              let nonce = UInt64(String(decoding: rest[rest.startIndex..<colon], as: UTF8.self)),
              let call = try? JSONDecoder().decode(ChainCall.self, from: Data(rest[(colon + 1)...])) else { return nil }
        return (nonce, call)
    }

    static func faucetPayload(twin: UInt32, amount: UInt64) -> [UInt8] {
        faucetDomain + Array("\(twin):\(amount)".utf8)
    }

    static func parseFaucet(_ payload: [UInt8]) -> (twin: UInt32, amount: UInt64)? {
        guard payload.starts(with: faucetDomain), payload.count < 128 else { return nil }
        let parts = String(decoding: payload[faucetDomain.count...], as: UTF8.self).split(separator: ":")
        guard parts.count == 2, let twin = UInt32(parts[0]), let amount = UInt64(parts[1]) else { return nil }
        return (twin, amount)
    }
}

/// A call the ledger refused, with TFChain's pallet and error names where one exists.
struct LedgerRejection: Error {
    var module: String
    var name: String
    var detail: String

    init(_ module: String, _ name: String, _ detail: String = "") {
        self.module = module
        self.name = name
        self.detail = detail
    }
}
