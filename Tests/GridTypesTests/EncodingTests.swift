import GridTypes
import Testing

@Suite struct EncodingTests {
    // Alice's well-known public key and its generic-substrate (prefix 42) address.
    static let alicePublic = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
    static let aliceAddress = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"

    @Test func ss58EncodesTheKnownSubstrateAddress() throws {
        let key = try Hex.decode(Self.alicePublic)
        #expect(SS58.encode(publicKey: key) == Self.aliceAddress)
        #expect(try SS58.decode(Self.aliceAddress) == key)
    }

    @Test func ss58RejectsBadChecksumPrefixAndAlphabet() throws {
        var tampered = Array(Self.aliceAddress)
        tampered[10] = tampered[10] == "a" ? "b" : "a"
        #expect(throws: GridTypesError.self) { try SS58.decode(String(tampered)) }
        // The same key under Polkadot's prefix 0 is a valid address of another network.
        let polkadot = SS58.encode(publicKey: try Hex.decode(Self.alicePublic), prefix: 0)
        #expect(polkadot != Self.aliceAddress)
        #expect(throws: GridTypesError.self) { try SS58.decode(polkadot) }
        #expect(throws: GridTypesError.self) { try SS58.decode("0OIl") }
    }

    @Test func base58KeepsLeadingZeros() {
        let bytes: [UInt8] = [0, 0, 1, 2, 255, 0]
        let text = Base58.encode(bytes)
        #expect(text.hasPrefix("11"))
        #expect(Base58.decode(text) == bytes)
        #expect(Base58.encode([]) == "")
    }

    @Test func hexRoundTripsAndRejectsGarbage() throws {
        #expect(try Hex.decode("0x00ff10Ab") == [0x00, 0xff, 0x10, 0xab])
        #expect(Hex.encode([0x00, 0xff, 0x10, 0xab]) == "00ff10ab")
        #expect(throws: GridTypesError.invalidHex(context: "x")) { try Hex.decode("abc", context: "x") }
        #expect(throws: GridTypesError.invalidHex(context: "x")) { try Hex.decode("zz", context: "x") }
    }

    @Test func blake2bMatchesPublishedDigests() {
        // BLAKE2b-256 and BLAKE2b-512 of the empty string (RFC 7693 parameters).
        #expect(Hex.encode(Blake2b.hash256([])) == "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8")
        #expect(Hex.encode(Blake2b.hash(Array("abc".utf8), outputLength: 64)) ==
            "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923")
    }
}
