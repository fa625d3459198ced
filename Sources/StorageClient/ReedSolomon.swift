import CISAL

/// Reed-Solomon over GF(2^8) with ISA-L: k data shards and m parity shards, any k of which give
/// back the data. The coding matrix is ISA-L's Cauchy matrix (its top k rows are the identity, so
/// data shards are the data itself; every k x k submatrix is invertible).
public struct ReedSolomon: Sendable {
    public static let maxShards = 64

    public let k: Int
    public let m: Int
    /// (k+m) x k, row-major.
    let matrix: [UInt8]
    /// ISA-L's expanded tables for the m parity rows.
    private let parityTables: [UInt8]

    public init(k: Int, m: Int) throws {
        guard k >= 1, m >= 0, k + m <= Self.maxShards else {
            throw StorageError.invalidInput(what: "erasure code", reason: "k=\(k) m=\(m): need k >= 1, m >= 0 and k+m <= \(Self.maxShards)")
        }
        self.k = k
        self.m = m
        var matrix = [UInt8](repeating: 0, count: (k + m) * k)
        gf_gen_cauchy1_matrix(&matrix, Int32(k + m), Int32(k))
        self.matrix = matrix
        var tables = [UInt8](repeating: 0, count: max(1, 32 * k * m))
        if m > 0 {
            var parityRows = Array(matrix[(k * k)...])
            ec_init_tables(Int32(k), Int32(m), &parityRows, &tables)
        }
        self.parityTables = tables
    }

    /// Computes the m parity shards of `length` bytes from the k data shards.
    public func encode(length: Int, data: [UnsafeMutablePointer<UInt8>], parity: [UnsafeMutablePointer<UInt8>]) {
        precondition(data.count == k && parity.count == m)
        guard m > 0, length > 0 else { return }
        var sources: [UnsafeMutablePointer<UInt8>?] = data
        var outputs: [UnsafeMutablePointer<UInt8>?] = parity
        parityTables.withUnsafeBufferPointer { tables in
            ec_encode_data(Int32(length), Int32(k), Int32(m), UnsafeMutablePointer(mutating: tables.baseAddress), &sources, &outputs)
        }
    }

    /// Rebuilds the shards at `targets` from exactly k others at `sources` (shard indexes 0..<k+m,
    /// data shards first). Sources must be distinct; throws if they are not k.
    public func reconstruct(length: Int, sources: [(index: Int, pointer: UnsafeMutablePointer<UInt8>)],
                            targets: [(index: Int, pointer: UnsafeMutablePointer<UInt8>)]) throws {
        guard sources.count == k, Set(sources.map(\.index)).count == k,
              sources.allSatisfy({ (0..<(k + m)).contains($0.index) }), targets.allSatisfy({ (0..<(k + m)).contains($0.index) }) else {
            throw StorageError.invalidInput(what: "erasure decode", reason: "needs \(k) distinct source shards, got \(sources.map(\.index))")
        }
        guard !targets.isEmpty, length > 0 else { return }
        // B: the rows of the coding matrix that produced the sources; B^-1 maps sources to data.
        var b = [UInt8](repeating: 0, count: k * k)
        for (row, source) in sources.enumerated() {
            for c in 0..<k { b[row * k + c] = matrix[source.index * k + c] }
        }
        var inverse = [UInt8](repeating: 0, count: k * k)
        guard gf_invert_matrix(&b, &inverse, Int32(k)) == 0 else {
            throw StorageError.invalidInput(what: "erasure decode", reason: "the source shards' matrix is singular")
        }
        // Each target row: (its coding row) x B^-1; for a data shard that is just B^-1's row.
        var coefficients = [UInt8](repeating: 0, count: targets.count * k)
        for (t, target) in targets.enumerated() {
            for c in 0..<k {
                var sum: UInt8 = 0
                for j in 0..<k { sum ^= gf_mul(matrix[target.index * k + j], inverse[j * k + c]) }
                coefficients[t * k + c] = sum
            }
        }
        var tables = [UInt8](repeating: 0, count: 32 * k * targets.count)
        ec_init_tables(Int32(k), Int32(targets.count), &coefficients, &tables)
        var sourcePointers: [UnsafeMutablePointer<UInt8>?] = sources.map(\.pointer)
        var targetPointers: [UnsafeMutablePointer<UInt8>?] = targets.map(\.pointer)
        ec_encode_data(Int32(length), Int32(k), Int32(targets.count), &tables, &sourcePointers, &targetPointers)
    }
}
