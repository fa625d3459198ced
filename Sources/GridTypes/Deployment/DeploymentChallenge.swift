import Crypto
import Foundation

/// The zos v3 challenge (zos-deployment.md): Go-fmt renderings of the signed fields concatenated
/// without separators, hashed with MD5. The contract stores hex(md5); signers sign the raw digest.
public enum DeploymentChallenge {
    public static func text(_ d: Deployment) -> String {
        var out = ""
        out += "\(d.version)\(d.twinID)\(d.metadata)\(d.description)\(d.expiration)"
        for w in d.workloads {
            out += "\(w.version)\(w.name)\(w.type)\(w.metadata)\(w.description)"
            out += dataText(w.data)
        }
        for r in d.signatureRequirement.requests {
            out += "\(r.twinID)\(r.required)\(r.weight)"
        }
        out += "\(d.signatureRequirement.weightRequired)\(d.signatureRequirement.signatureStyle)"
        return out
    }

    /// Per-type data challenge. `container` is this node's own type: image, digest, entrypoint,
    /// each arg, env as sorted `k=v`, cpu, memory, each mount's name and mountpoint, root size.
    public static func dataText(_ data: WorkloadData) -> String {
        switch data {
        case .zdb(let z): return "\(z.size)\(z.mode.rawValue)\(z.password)\(z.public)"
        case .zmount(let d), .volume(let d): return "\(d.size)"
        case .container(let c):
            var out = "\(c.image)\(c.imageDigest)\(c.entrypoint)"
            for arg in c.args { out += arg }
            for key in c.env.keys.sorted() { out += "\(key)=\(c.env[key] ?? "")" }
            out += "\(c.compute.cpu)\(c.compute.memory)"
            for m in c.mounts { out += "\(m.name)\(m.mountpoint)" }
            out += "\(c.rootSize)"
            // Only when present, so the hashes of containers without networking stay as they were.
            if let n = c.network { out += networkText(n) }
            return out
        case .unsupported: return ""
        }
    }

    /// `network`, the private range, each port as protocol, port and public port, the egress mode
    /// and each allowed destination.
    static func networkText(_ n: ContainerNetwork) -> String {
        var out = "network\(n.ipRange ?? "")"
        for p in n.ports { out += "\(p.protocol.rawValue)\(p.port)\(p.publicPort)" }
        out += n.egress.mode.rawValue
        for entry in n.egress.allow { out += entry }
        return out
    }

    public static func digest(_ d: Deployment) -> [UInt8] {
        Array(Insecure.MD5.hash(data: Array(text(d).utf8)))
    }

    /// What the node contract's deployment_hash holds: 32 lowercase hex characters.
    public static func hash(_ d: Deployment) -> String { Hex.encode(digest(d)) }

    /// The bytes a signer signs for the given signature style.
    public static func signedMessage(digest: [UInt8], style: String) -> [UInt8] {
        style == "polka-wallet" ? Array("<Bytes>\(Hex.encode(digest))</Bytes>".utf8) : digest
    }

    /// Adds (or replaces) `twinID`'s signature over the deployment's current challenge.
    public static func sign(_ d: inout Deployment, twinID: UInt32, keyPair: Ed25519KeyPair) {
        let message = signedMessage(digest: digest(d), style: d.signatureRequirement.signatureStyle)
        let signature = Signature(twinID: twinID, signature: Hex.encode(keyPair.sign(message)))
        d.signatureRequirement.signatures.removeAll { $0.twinID == twinID }
        d.signatureRequirement.signatures.append(signature)
    }
}
