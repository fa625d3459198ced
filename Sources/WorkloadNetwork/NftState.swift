import Foundation

/// What of the agent's nft tables exists, parsed from `nft -j list table`: chains, counters and
/// map/set elements. Teardown and sweeping delete only what is there, in one transaction.
struct NftState {
    var chains = Set<String>()
    var counters = [String: UInt64]()
    /// Map name -> elements as (key in nft syntax, jump target).
    var mapElements = [String: [(key: String, target: String)]]()
    /// Set name -> elements in nft syntax.
    var setElements = [String: [String]]()

    init() {}

    init(json text: String) {
        guard let data = text.data(using: .utf8),
              let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let items = root["nftables"] as? [[String: Any]] else { return }
        for item in items {
            if let chain = item["chain"] as? [String: Any], let name = chain["name"] as? String { chains.insert(name) }
            if let counter = item["counter"] as? [String: Any], let name = counter["name"] as? String {
                counters[name] = (counter["bytes"] as? NSNumber)?.uint64Value ?? 0
            }
            if let map = item["map"] as? [String: Any], let name = map["name"] as? String {
                var out = [(key: String, target: String)]()
                for element in map["elem"] as? [Any] ?? [] {
                    guard let pair = element as? [Any], pair.count == 2, let key = Self.key(pair[0]),
                          let verdict = pair[1] as? [String: Any], let jump = verdict["jump"] as? [String: Any],
                          let target = jump["target"] as? String else { continue }
                    out.append((key, target))
                }
                mapElements[name] = out
            }
            if let set = item["set"] as? [String: Any], let name = set["name"] as? String {
                setElements[name] = (set["elem"] as? [Any] ?? []).compactMap(Self.key)
            }
        }
    }

    /// An element key back in nft syntax: `"ifname"`, `tcp . 8080`, `10.1.2.0/24`.
    static func key(_ value: Any) -> String? {
        if let text = value as? String { return Self.isWord(text) ? text : "\"\(text)\"" }
        if let number = value as? NSNumber { return "\(number.intValue)" }
        guard let object = value as? [String: Any] else { return nil }
        if let concat = object["concat"] as? [Any] {
            let parts = concat.compactMap { part -> String? in
                if let text = part as? String { return text }
                if let number = part as? NSNumber { return "\(number.intValue)" }
                return nil
            }
            return parts.count == concat.count ? parts.joined(separator: " . ") : nil
        }
        if let prefix = object["prefix"] as? [String: Any], let address = prefix["addr"] as? String, let length = prefix["len"] as? NSNumber {
            return "\(address)/\(length.intValue)"
        }
        if let range = object["range"] as? [Any], range.count == 2, let low = range[0] as? String, let high = range[1] as? String {
            return "\(low)-\(high)"
        }
        return nil
    }

    /// Protocol names stay bare; interface names are quoted.
    static func isWord(_ text: String) -> Bool { ["tcp", "udp"].contains(text) || IPv4Address.isAddress(text) }
}

enum IPv4Address {
    static func isAddress(_ text: String) -> Bool { text.split(separator: ".").count == 4 && text.allSatisfy { $0 == "." || $0.isNumber } }
}
