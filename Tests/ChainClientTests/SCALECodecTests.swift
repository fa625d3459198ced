import Foundation
import GridTypes
import Testing
@testable import ChainClient

@Suite struct SCALECodecTests {
    /// Compact vectors from the SCALE specification (and scalecodec).
    static let compacts: [(UInt64, String)] = [
        (0, "00"), (1, "04"), (42, "a8"), (63, "fc"), (64, "0101"), (69, "1501"), (16383, "fdff"),
        (16384, "02000100"), (1_073_741_823, "feffffff"), (1_073_741_824, "0300000040"),
        (UInt64(UInt32.max), "03ffffffff"), (1 << 32, "070000000001"), (UInt64.max, "13ffffffffffffffff"),
    ]

    @Test func compactRoundTrip() throws {
        for (value, hex) in Self.compacts {
            var w = SCALEWriter()
            w.appendCompact(value)
            #expect(Hex.encode(w.bytes) == hex, "encode \(value)")
            var r = SCALEReader(Fixture.bytes(hex))
            #expect(try r.readCompact() == value, "decode \(hex)")
            #expect(r.isAtEnd)
        }
    }

    @Test func primitivesOptionsVectorsStrings() throws {
        var w = SCALEWriter()
        w.append(UInt32(0x01020304))
        w.appendBool(true)
        w.appendOption(UInt64(7)) { $0.append($1) }
        w.appendOption(nil as UInt64?) { $0.append($1) }
        w.appendVector([UInt16(1), 2, 3]) { $0.append($1) }
        w.appendString("grid ✓")
        w.appendRaw([9, 9, 9])   // a fixed [u8; 3]
        #expect(Hex.encode(w.bytes) == "04030201" + "01" + "01" + "0700000000000000" + "00" + "0c010002000300" + "206772696420e29c93" + "090909")
        var r = SCALEReader(w.bytes)
        #expect(try r.readU32() == 0x01020304)
        #expect(try r.readBool() == true)
        #expect(try r.readOption("Option<u64>") { (r: inout SCALEReader) throws(ChainError) in try r.readU64() } == 7)
        #expect(try r.readOption("Option<u64>") { (r: inout SCALEReader) throws(ChainError) in try r.readU64() } == nil)
        #expect(try r.readVector("Vec<u16>", minElementSize: 2) { (r: inout SCALEReader) throws(ChainError) in try r.readInteger(UInt16.self, "u16") } == [1, 2, 3])
        #expect(try r.readString() == "grid ✓")
        #expect(try r.readBytes(3, "[u8; 3]") == [9, 9, 9])
        try r.expectEnd("test")
    }

    /// Each bad input is a decode error that names the type and the byte position.
    @Test func badInputIsAPositionedError() throws {
        func failure(_ hex: String, _ body: (inout SCALEReader) throws(ChainError) -> Void) -> ChainError? {
            var r = SCALEReader(Fixture.bytes(hex))
            do { try body(&r); return nil } catch { return error }
        }
        // Truncated u64.
        #expect(failure("010203") { (r: inout SCALEReader) throws(ChainError) in _ = try r.readU64() }
                == .decode(type: "u64", position: 0, detail: "needs 8 bytes, only 3 left"))
        // A compact past its width: 256 as Compact<u8>.
        if case .decode(let type, let position, _)? = failure("0104") { (r: inout SCALEReader) throws(ChainError) in _ = try r.readCompact("Compact<u8>", maxBits: 8) } {
            #expect(type == "Compact<u8>" && position == 0)
        } else { Issue.record("Compact<u8> of 256 accepted") }
        // 9-byte big-integer mode for a u64.
        #expect(failure("17ffffffffffffffffff") { (r: inout SCALEReader) throws(ChainError) in _ = try r.readCompact() } != nil)
        // Non-canonical compact (1 in two-byte mode).
        #expect(failure("0500") { (r: inout SCALEReader) throws(ChainError) in _ = try r.readCompact() } != nil)
        // A vector length larger than the bytes left: refused before allocating.
        if case .decode(_, let position, let detail)? = failure("feffffff0102") { (r: inout SCALEReader) throws(ChainError) in _ = try r.readByteVector() } {
            #expect(position == 0 && detail.contains("1073741823"))
        } else { Issue.record("huge vector accepted") }
        #expect(failure("fdff" + "00") { (r: inout SCALEReader) throws(ChainError) in
            _ = try r.readVector("Vec<u64>", minElementSize: 8) { (r: inout SCALEReader) throws(ChainError) in try r.readU64() }
        } != nil)
        // Option tag and bool out of range, invalid UTF-8.
        #expect(failure("02") { (r: inout SCALEReader) throws(ChainError) in _ = try r.readOption("Option<u8>") { (r: inout SCALEReader) throws(ChainError) in try r.readByte() } }
                == .decode(type: "Option<u8>", position: 0, detail: "option tag 2 is neither 0 (None) nor 1 (Some)"))
        #expect(failure("02") { (r: inout SCALEReader) throws(ChainError) in _ = try r.readBool() } != nil)
        #expect(failure("08ff fe".replacingOccurrences(of: " ", with: "")) { (r: inout SCALEReader) throws(ChainError) in _ = try r.readString() } != nil)
    }

    @Test func registryRejectsBadEnumsAndTrailingBytes() throws {
        let md = try #require(Fixture.metadata)
        let (_, entry) = try md.storageEntry("SmartContractModule", "Contracts")
        var bytes = Fixture.bytes(TFChainVectorTests.contractHex)
        bytes[4] = 9   // ContractState has 3 variants
        do {
            _ = try md.registry.decode(entry.valueType, from: bytes)
            Issue.record("variant 9 accepted")
        } catch {
            guard case .decode(let type, let position, let detail) = error else { Issue.record("\(error)"); return }
            #expect(position == 4 && type.contains("ContractState") && detail.contains("variant index 9"))
        }
        #expect(throws: ChainError.self) { try md.registry.decode(entry.valueType, from: Fixture.bytes(TFChainVectorTests.contractHex + "00")) }
        #expect(throws: ChainError.self) { try md.registry.decode(entry.valueType, from: Array(Fixture.bytes(TFChainVectorTests.contractHex).dropLast())) }
    }

    @Test func metadataOfAnotherVersionOrNotMetadata() throws {
        var bytes = Fixture.metadataBytes
        bytes[4] = 15
        #expect(throws: ChainError.decode(type: "metadata version", position: 4, detail: "metadata V15 is not supported (this client reads V14)")) {
            try RuntimeMetadata(bytes: bytes)
        }
        #expect(throws: ChainError.self) { try RuntimeMetadata(bytes: Array("nope".utf8) + [14]) }
        #expect(throws: ChainError.self) { try RuntimeMetadata(bytes: Array(Fixture.metadataBytes.prefix(50_000))) }
        #expect(throws: ChainError.self) { try RuntimeMetadata(hex: "0xzz") }
    }

    /// Fuzz-style: random and mutated input into every decoder, bounded in iterations. Each must
    /// throw a ChainError or succeed, never crash, hang or allocate without bound.
    @Test func fuzzDecoders() throws {
        let md = try #require(Fixture.metadata)
        var rng = SplitMix64(seed: 0x7F_C4A1)
        let typeCount = md.registry.types.count
        var errors = 0, decoded = 0
        for _ in 0..<20_000 {
            let length = Int(rng.next() % 96)
            let input = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let type = Int(rng.next() % UInt64(typeCount))
            do { _ = try md.registry.decode(type, from: input); decoded += 1 } catch { errors += 1 }
            var r = SCALEReader(input)
            _ = try? r.readCompact()
            _ = try? r.readByteVector()
        }
        // System.Events bytes with bit flips and truncations.
        let events = Fixture.bytes(TFChainVectorTests.eventsHex)
        for i in 0..<5_000 {
            var mutated = events
            let flips = 1 + Int(rng.next() % 4)
            for _ in 0..<flips { mutated[Int(rng.next() % UInt64(mutated.count))] ^= UInt8(truncatingIfNeeded: 1 << (rng.next() % 8)) }
            if i % 3 == 0 { mutated = Array(mutated.prefix(Int(rng.next() % UInt64(mutated.count)))) }
            _ = try? md.decodeEvents(mutated)
        }
        // Whole metadata with mutations (slower: a few dozen).
        for _ in 0..<24 {
            var mutated = Fixture.metadataBytes
            for _ in 0..<8 { mutated[5 + Int(rng.next() % UInt64(mutated.count - 5))] = UInt8(truncatingIfNeeded: rng.next()) }
            _ = try? RuntimeMetadata(bytes: mutated)
        }
        #expect(errors + decoded == 20_000)
    }
}

/// Deterministic generator so a fuzz failure is reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
