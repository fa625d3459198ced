import CSodium

extension Ed25519KeyPair {
    /// A 32-byte secret derived from the seed for one purpose: BLAKE2b-256 keyed with the seed over
    /// `domain`. Different domains give independent keys, and none of them reveals the seed, so a
    /// module can have key material tied to this identity without ever holding the seed itself.
    public func derivedSecret(domain: String) -> [UInt8] {
        Blake2b.hash(Array(domain.utf8), outputLength: 32, key: seed)
    }
}
