/// Substrate's SS58 address format: base58(prefix ++ public key ++ blake2b-512("SS58PRE" ++ prefix ++
/// key)[0..<2]). TFChain uses the generic prefix 42.
public enum SS58 {
    public static let genericPrefix: UInt16 = 42
    private static let checksumContext = Array("SS58PRE".utf8)

    public static func encode(publicKey: [UInt8], prefix: UInt16 = genericPrefix) -> String {
        precondition(prefix < 16384, "SS58 prefixes are 14-bit")
        var payload: [UInt8]
        if prefix < 64 {
            payload = [UInt8(prefix)]
        } else {
            // Two-byte form, as defined by the SS58 registry.
            let first = UInt8(((prefix & 0b0000_0000_1111_1100) >> 2) | 0b0100_0000)
            let second = UInt8((prefix >> 8) | ((prefix & 0b0000_0000_0000_0011) << 6))
            payload = [first, second]
        }
        payload += publicKey
        let checksum = Blake2b.hash(checksumContext + payload, outputLength: 64)
        return Base58.encode(payload + checksum.prefix(2))
    }

    /// Decodes a single-byte-prefix address carrying a 32-byte key, checking prefix and checksum.
    public static func decode(_ address: String, expectedPrefix: UInt16 = genericPrefix) throws(GridTypesError) -> [UInt8] {
        guard let raw = Base58.decode(address) else { throw .invalidAddress(address, reason: "not base58") }
        guard raw.count == 35 else { throw .invalidAddress(address, reason: "expected 35 decoded bytes, got \(raw.count)") }
        guard UInt16(raw[0]) == expectedPrefix else {
            throw .invalidAddress(address, reason: "network prefix \(raw[0]), expected \(expectedPrefix)")
        }
        let payload = Array(raw[0..<33])
        let checksum = Blake2b.hash(checksumContext + payload, outputLength: 64)
        guard raw[33] == checksum[0], raw[34] == checksum[1] else {
            throw .invalidAddress(address, reason: "checksum mismatch")
        }
        return Array(payload[1...])
    }
}

/// Bitcoin's base58 alphabet, as SS58 uses it.
public enum Base58 {
    private static let alphabet = Array("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz".utf8)
    private static let reverse: [Int8] = {
        var table = [Int8](repeating: -1, count: 128)
        for (index, char) in alphabet.enumerated() { table[Int(char)] = Int8(index) }
        return table
    }()

    public static func encode(_ bytes: [UInt8]) -> String {
        let zeros = bytes.prefix(while: { $0 == 0 }).count
        var digits = [UInt8]()  // base-58 digits, least significant first
        for byte in bytes[zeros...] {
            var carry = Int(byte)
            for i in digits.indices {
                carry += Int(digits[i]) << 8
                digits[i] = UInt8(carry % 58)
                carry /= 58
            }
            while carry > 0 {
                digits.append(UInt8(carry % 58))
                carry /= 58
            }
        }
        let text = [UInt8](repeating: alphabet[0], count: zeros) + digits.reversed().map { alphabet[Int($0)] }
        return String(decoding: text, as: UTF8.self)
    }

    public static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count <= 128 else { return nil }  // addresses are short; bound the quadratic work
        let zeros = chars.prefix(while: { $0 == alphabet[0] }).count
        var bytes = [UInt8]()  // least significant first
        for char in chars[zeros...] {
            guard char < 128, reverse[Int(char)] >= 0 else { return nil }
            var carry = Int(reverse[Int(char)])
            for i in bytes.indices {
                carry += Int(bytes[i]) * 58
                bytes[i] = UInt8(carry & 0xff)
                carry >>= 8
            }
            while carry > 0 {
                bytes.append(UInt8(carry & 0xff))
                carry >>= 8
            }
        }
        return [UInt8](repeating: 0, count: zeros) + bytes.reversed()
    }
}
