import Foundation

/// The model's rules (zos-deployment.md plus this node's limits), checked before anything is
/// verified against the chain or reserved. Every error names the field and says what is allowed.
public enum DeploymentRules {
    public static let maxNameLength = 36
    public static let minDiskSize: UInt64 = 16 << 20
    public static let minZdbSize: UInt64 = 1 << 20
    public static let minContainerMemory: UInt64 = 16 << 20
    public static let maxPasswordBytes = 128

    public static func validate(_ d: Deployment) throws(GridTypesError) {
        try text(d.metadata, "metadata")
        try text(d.description, "description")
        guard !d.workloads.isEmpty else { throw .invalidDeployment(field: "workloads", reason: "a deployment needs at least one workload") }
        guard d.workloads.count <= Deployment.Limits.maxWorkloads else {
            throw .invalidDeployment(field: "workloads", reason: "\(d.workloads.count) workloads; at most \(Deployment.Limits.maxWorkloads)")
        }
        var names = Set<String>()
        for w in d.workloads {
            try name(w.name)
            guard names.insert(w.name).inserted else {
                throw .invalidDeployment(field: "workloads.\(w.name)", reason: "the name is used twice; workload names are unique in a deployment")
            }
            guard w.version <= d.version else {
                throw .invalidDeployment(field: "workloads.\(w.name).version",
                                         reason: "\(w.version) is above the deployment's version \(d.version)")
            }
            try text(w.metadata, "workloads.\(w.name).metadata")
            try text(w.description, "workloads.\(w.name).description")
        }
        for w in d.workloads { try data(w, in: d) }
        try NetworkRules.validate(d)
        try signatureRequirement(d)
    }

    /// An update: version old+1, same twin and contract, no type changes, and workloads not
    /// carrying the new version unchanged.
    public static func validateUpdate(from old: Deployment, to new: Deployment) throws(GridTypesError) {
        try validate(new)
        guard new.twinID == old.twinID else {
            throw .invalidDeployment(field: "twin_id", reason: "\(new.twinID) differs from the deployment's owner \(old.twinID)")
        }
        guard new.contractID == old.contractID else {
            throw .invalidDeployment(field: "contract_id", reason: "\(new.contractID) differs from the deployment's contract \(old.contractID)")
        }
        guard new.version == old.version + 1 else {
            throw .invalidDeployment(field: "version", reason: "an update must carry version \(old.version + 1) (current \(old.version)), got \(new.version)")
        }
        let previous = Dictionary(old.workloads.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for w in new.workloads {
            guard let before = previous[w.name] else {
                guard w.version == new.version else {
                    throw .invalidDeployment(field: "workloads.\(w.name).version",
                                             reason: "a new workload must carry the deployment's new version \(new.version), got \(w.version)")
                }
                continue
            }
            guard before.type == w.type else {
                throw .invalidDeployment(field: "workloads.\(w.name).type",
                                         reason: "cannot change from \(before.type) to \(w.type); remove the workload and add one under another name")
            }
            if w.version != new.version {
                var unchanged = w
                unchanged.result = before.result
                guard unchanged == before else {
                    throw .invalidDeployment(field: "workloads.\(w.name)",
                                             reason: "changed without carrying the new version \(new.version)")
                }
            }
        }
    }

    static func text(_ value: String, _ field: String) throws(GridTypesError) {
        guard value.utf8.count <= Deployment.Limits.maxTextBytes else {
            throw .invalidDeployment(field: field, reason: "\(value.utf8.count) bytes; at most \(Deployment.Limits.maxTextBytes)")
        }
    }

    static func name(_ name: String) throws(GridTypesError) {
        let allowed = name.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x5f
        }
        guard !name.isEmpty, name.utf8.count <= maxNameLength, allowed else {
            throw .invalidDeployment(field: "workloads.name", reason: "'\(name.prefix(64))' is not a valid name: use 1 to \(maxNameLength) of [a-zA-Z0-9_]")
        }
    }

    static func data(_ w: Workload, in d: Deployment) throws(GridTypesError) {
        let field = "workloads.\(w.name)"
        switch w.data {
        case .unsupported(let type):
            throw .invalidDeployment(field: "\(field).type", reason: "this node does not run '\(type.prefix(40))' workloads; it runs "
                                     + WorkloadType.runnable.map(\.rawValue).joined(separator: ", "))
        case .zdb(let z):
            guard z.size >= minZdbSize else { throw .invalidDeployment(field: "\(field).data.size", reason: "\(z.size) bytes; a zdb namespace needs at least \(minZdbSize)") }
            guard z.password.utf8.count <= maxPasswordBytes, z.password.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
                throw .invalidDeployment(field: "\(field).data.password", reason: "use at most \(maxPasswordBytes) printable ASCII characters without spaces")
            }
        case .zmount(let disk), .volume(let disk):
            guard disk.size >= minDiskSize else { throw .invalidDeployment(field: "\(field).data.size", reason: "\(disk.size) bytes; at least \(minDiskSize)") }
        case .container(let c):
            try container(c, field: field, in: d)
        }
    }

    static func container(_ c: ContainerData, field: String, in d: Deployment) throws(GridTypesError) {
        let schemes = ["file://", "http://", "https://"]
        guard c.image.utf8.count <= 2048, schemes.contains(where: { c.image.hasPrefix($0) }) else {
            throw .invalidDeployment(field: "\(field).data.image", reason: "must be a file://, http:// or https:// URL of at most 2048 bytes")
        }
        guard c.imageDigest.utf8.count == 64, c.imageDigest.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
            throw .invalidDeployment(field: "\(field).data.image_digest", reason: "must be the image's BLAKE2b-256 as 64 lowercase hex characters")
        }
        guard c.entrypoint.utf8.count <= 4096, c.args.count <= 256, c.args.allSatisfy({ $0.utf8.count <= 4096 && !$0.utf8.contains(0) }),
              !c.entrypoint.utf8.contains(0) else {
            throw .invalidDeployment(field: "\(field).data.args", reason: "at most 256 arguments of at most 4096 bytes each, without NUL")
        }
        guard c.env.count <= 256 else { throw .invalidDeployment(field: "\(field).data.env", reason: "at most 256 variables") }
        for (key, value) in c.env {
            let validKey = !key.isEmpty && key.utf8.count <= 256 && key.utf8.allSatisfy { ch in
                (ch >= 0x30 && ch <= 0x39) || (ch >= 0x41 && ch <= 0x5a) || (ch >= 0x61 && ch <= 0x7a) || ch == 0x5f
            } && !(key.utf8.first.map { $0 >= 0x30 && $0 <= 0x39 } ?? true)
            guard validKey, value.utf8.count <= 32768, !value.utf8.contains(0) else {
                throw .invalidDeployment(field: "\(field).data.env", reason: "'\(key.prefix(64))': names are [A-Za-z_][A-Za-z0-9_]*, values at most 32 KiB without NUL")
            }
        }
        guard c.compute.cpu >= 1 else { throw .invalidDeployment(field: "\(field).data.compute_capacity.cpu", reason: "at least 1") }
        guard c.compute.memory >= minContainerMemory else {
            throw .invalidDeployment(field: "\(field).data.compute_capacity.memory", reason: "\(c.compute.memory) bytes; at least \(minContainerMemory)")
        }
        var mountpoints = Set<String>()
        for m in c.mounts {
            let target = d.workloads.first { $0.name == m.name }
            guard let target, target.type == WorkloadType.volume.rawValue || target.type == WorkloadType.zmount.rawValue else {
                throw .invalidDeployment(field: "\(field).data.mounts", reason: "'\(m.name.prefix(64))' is not a volume or zmount of this deployment")
            }
            let parts = m.mountpoint.split(separator: "/")
            let forbidden = ["proc", "sys", "dev"]
            guard m.mountpoint.hasPrefix("/"), m.mountpoint.utf8.count <= 1024, !parts.isEmpty,
                  !parts.contains(where: { $0 == ".." || $0 == "." }), !forbidden.contains(String(parts[0])) else {
                throw .invalidDeployment(field: "\(field).data.mounts", reason: "mountpoint '\(m.mountpoint.prefix(64))' must be an absolute path below / without . or .., not in /proc, /sys or /dev")
            }
            guard mountpoints.insert(m.mountpoint).inserted else {
                throw .invalidDeployment(field: "\(field).data.mounts", reason: "mountpoint '\(m.mountpoint.prefix(64))' is used twice")
            }
        }
    }

    static func signatureRequirement(_ d: Deployment) throws(GridTypesError) {
        let req = d.signatureRequirement
        guard req.requests.count <= Deployment.Limits.maxSignatureRequests,
              req.signatures.count <= Deployment.Limits.maxSignatureRequests else {
            throw .invalidDeployment(field: "signature_requirement", reason: "at most \(Deployment.Limits.maxSignatureRequests) requests and signatures")
        }
        guard req.signatureStyle == "" || req.signatureStyle == "polka-wallet" else {
            throw .invalidDeployment(field: "signature_requirement.signature_style", reason: "'\(req.signatureStyle.prefix(40))'; use \"\" or \"polka-wallet\"")
        }
        guard Set(req.requests.map(\.twinID)).count == req.requests.count else {
            throw .invalidDeployment(field: "signature_requirement.requests", reason: "a twin is listed twice")
        }
        guard req.requests.contains(where: { $0.twinID == d.twinID && $0.required }) else {
            throw .invalidDeployment(field: "signature_requirement.requests",
                                     reason: "the deployment's twin \(d.twinID) must be listed as a required signer")
        }
        let total = req.requests.reduce(UInt64(0)) { $0 + UInt64($1.weight) }
        guard req.weightRequired >= 1, UInt64(req.weightRequired) <= total else {
            throw .invalidDeployment(field: "signature_requirement.weight_required",
                                     reason: "\(req.weightRequired) cannot be reached: the requests' weights add up to \(total) (and it must be at least 1)")
        }
    }
}
