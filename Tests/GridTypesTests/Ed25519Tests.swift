import CSodium
import GridTypes
import Testing

@Suite struct Ed25519Tests {
    @Test func matchesRFC8032TestVector1() throws {
        let seed = try Hex.decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
        let keys = try Ed25519KeyPair(seed: seed)
        #expect(keys.publicKey.hex == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        let signature = keys.sign([])
        #expect(Hex.encode(signature) ==
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
        #expect(keys.publicKey.verify(signature: signature, message: []))
    }

    @Test func signatureVerifiesWithLibsodiumAndFailsWhenTampered() throws {
        let keys = try Ed25519KeyPair.generate()
        let message = Array("report_uptime_v2".utf8)
        let signature = keys.sign(message)
        #expect(crypto_sign_verify_detached(signature, message, UInt64(message.count), keys.publicKey.bytes) == 0)
        var tampered = message
        tampered[0] ^= 1
        #expect(!keys.publicKey.verify(signature: signature, message: tampered))
        #expect(!keys.publicKey.verify(signature: Array(signature.prefix(63)), message: message))
    }

    @Test func rejectsWrongLengths() {
        #expect(throws: GridTypesError.invalidLength(context: "ed25519 seed", expected: 32, actual: 31)) {
            try Ed25519KeyPair(seed: [UInt8](repeating: 1, count: 31))
        }
        #expect(throws: GridTypesError.self) { try Ed25519PublicKey(bytes: [1, 2, 3]) }
    }

    @Test func descriptionNeverShowsTheSecret() throws {
        let seed = [UInt8](repeating: 7, count: 32)
        let keys = try Ed25519KeyPair(seed: seed)
        #expect(!String(describing: keys).contains(Hex.encode(seed)))
    }
}
