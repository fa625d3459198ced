import CXXHash

/// Substrate's twox hashers: xxHash64 with seeds 0, 1, ... concatenated little-endian.
public enum TwoX {
    public static func hash(_ data: [UInt8], outputLength: Int) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(outputLength)
        for seed in 0..<UInt64(outputLength / 8) {
            let h = data.withUnsafeBytes { XXH64($0.baseAddress, $0.count, seed) }
            withUnsafeBytes(of: h.littleEndian) { out.append(contentsOf: $0) }
        }
        return out
    }

    public static func twox64(_ data: [UInt8]) -> [UInt8] { hash(data, outputLength: 8) }
    public static func twox128(_ data: [UInt8]) -> [UInt8] { hash(data, outputLength: 16) }
    public static func twox256(_ data: [UInt8]) -> [UInt8] { hash(data, outputLength: 32) }
}
