/// The weighted multisig rule (zos-deployment.md): every required request has a valid signature
/// and the valid signatures' weights reach weight_required. A non-required request without a
/// signature is fine (the public node software wrongly fails it); a present but invalid signature
/// is always an error, so a forged co-signer cannot hide behind the weight of others.
public enum MultisigVerifier {
    public struct Outcome: Equatable, Sendable {
        public var signers: [UInt32]
        public var weight: UInt64
    }

    /// `keys` maps twin ids to their ed25519 keys as read from the chain; a signer missing from it
    /// is a twin the chain does not know.
    public static func verify(_ d: Deployment, keys: [UInt32: Ed25519PublicKey]) throws(GridTypesError) -> Outcome {
        let req = d.signatureRequirement
        let field = "signature_requirement.signatures"
        let digest = DeploymentChallenge.digest(d)
        let message = DeploymentChallenge.signedMessage(digest: digest, style: req.signatureStyle)
        let requests = Dictionary(req.requests.map { ($0.twinID, $0) }, uniquingKeysWith: { a, _ in a })
        var signed = Set<UInt32>()
        var weight: UInt64 = 0
        for s in req.signatures {
            guard let request = requests[s.twinID] else {
                throw .invalidDeployment(field: field, reason: "twin \(s.twinID) signed but is not one of the signature requests")
            }
            guard signed.insert(s.twinID).inserted else {
                throw .invalidDeployment(field: field, reason: "twin \(s.twinID) signed twice")
            }
            guard s.signatureType == "ed25519" else {
                throw .invalidDeployment(field: field, reason: "twin \(s.twinID) used signature type '\(s.signatureType.prefix(20))'; this node verifies ed25519 signatures only")
            }
            guard let key = keys[s.twinID] else {
                throw .invalidDeployment(field: field, reason: "twin \(s.twinID) is not on the chain, so its signature cannot be checked")
            }
            guard let bytes = try? Hex.decode(s.signature, context: "signature"), bytes.count == Ed25519KeyPair.signatureLength,
                  key.verify(signature: bytes, message: message) else {
                throw .invalidDeployment(field: field, reason: "the signature of twin \(s.twinID) does not verify against its key on chain for challenge hash \(Hex.encode(digest))")
            }
            weight += UInt64(request.weight)
        }
        let missing = req.requests.filter { $0.required && !signed.contains($0.twinID) }.map(\.twinID)
        guard missing.isEmpty else {
            throw .invalidDeployment(field: field, reason: "required signer(s) \(missing.map(String.init).joined(separator: ", ")) have not signed")
        }
        guard weight >= UInt64(req.weightRequired) else {
            let waiting = req.requests.filter { !signed.contains($0.twinID) }.map { "\($0.twinID) (weight \($0.weight))" }
            throw .invalidDeployment(field: field, reason: "signatures reach weight \(weight) of the \(req.weightRequired) required; not yet signed: \(waiting.joined(separator: ", "))")
        }
        return Outcome(signers: req.signatures.map(\.twinID), weight: weight)
    }
}
