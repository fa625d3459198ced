import GridTypes

/// What a signature commits to besides the call: the runtime's versions and the chain's genesis.
public struct SigningContext: Sendable, Equatable {
    public var specVersion: UInt32
    public var transactionVersion: UInt32
    public var genesisHash: [UInt8]

    public init(specVersion: UInt32, transactionVersion: UInt32, genesisHash: [UInt8]) {
        self.specVersion = specVersion
        self.transactionVersion = transactionVersion
        self.genesisHash = genesisHash
    }
}

/// Builds calls and signed extrinsics (format version 4) from the runtime metadata: pallet and
/// call indices, argument layouts, the address and signature enums and the signed extensions all
/// come from the metadata, so a runtime upgrade that moves them does not break signing.
public struct ExtrinsicBuilder: Sendable {
    public let metadata: RuntimeMetadata

    public init(metadata: RuntimeMetadata) { self.metadata = metadata }

    /// Call bytes: pallet index ++ call index ++ each argument encoded with its registry type.
    /// `arguments` are given by field name.
    public func call(_ pallet: String, _ name: String, _ arguments: [String: SCALEValue]) throws(ChainError) -> [UInt8] {
        let (palletIndex, variant) = try metadata.call(pallet, name)
        var w = SCALEWriter()
        w.appendRaw([palletIndex, variant.index])
        for field in variant.fields {
            guard let fieldName = field.name, let value = arguments[fieldName] else {
                throw .invalidInput("\(pallet).\(name) needs argument \(field.name ?? "(unnamed)"); given \(arguments.keys.sorted().joined(separator: ", "))")
            }
            try metadata.registry.encode(value, as: field.type, into: &w)
        }
        guard arguments.count == variant.fields.count else {
            let known = Set(variant.fields.compactMap(\.name))
            let extra = arguments.keys.filter { !known.contains($0) }.sorted()
            throw .invalidInput("\(pallet).\(name) takes no argument named \(extra.joined(separator: ", "))")
        }
        return w.bytes
    }

    /// The extrinsic's type parameters (Address, Signature, Extra) from UncheckedExtrinsic.
    func extrinsicParameter(_ name: String) throws(ChainError) -> Int {
        let info = try metadata.registry.type(metadata.extrinsicType)
        guard let param = info.params.first(where: { $0.name == name }), let type = param.type else {
            throw .metadata("the extrinsic type \(metadata.registry.name(of: metadata.extrinsicType)) has no \(name) parameter")
        }
        return type
    }

    /// Encodes (extra, additional signed) of every signed extension the runtime lists, in its order.
    /// The extensions this client knows get their values; any other must add no bytes, otherwise
    /// signing would produce a transaction the runtime rejects, so it is refused up front.
    func signedExtensions(nonce: UInt64, tip: UInt64, context: SigningContext) throws(ChainError) -> (extra: [UInt8], additional: [UInt8]) {
        let registry = metadata.registry
        var extra = SCALEWriter(), additional = SCALEWriter()
        for ext in metadata.signedExtensions {
            let extraValue: SCALEValue?
            let additionalValue: SCALEValue?
            switch ext.identifier {
            case "CheckSpecVersion": extraValue = nil; additionalValue = .uint(UInt64(context.specVersion))
            case "CheckTxVersion": extraValue = nil; additionalValue = .uint(UInt64(context.transactionVersion))
            case "CheckGenesis": extraValue = nil; additionalValue = .bytes(context.genesisHash)
            // Immortal era: valid in any block, so the block hash signed is the genesis hash.
            case "CheckMortality", "CheckEra": extraValue = .variant("Immortal"); additionalValue = .bytes(context.genesisHash)
            case "CheckNonce": extraValue = .uint(nonce); additionalValue = nil
            case "ChargeTransactionPayment": extraValue = .uint(tip); additionalValue = nil
            default: extraValue = nil; additionalValue = nil
            }
            for (value, type, writer) in [(extraValue, ext.type, 0), (additionalValue, ext.additionalSigned, 1)] {
                if let value {
                    if writer == 0 { try registry.encode(value, as: type, into: &extra) } else { try registry.encode(value, as: type, into: &additional) }
                } else if !registry.isEmpty(type) {
                    throw .metadata("signed extension \(ext.identifier) needs a value of \(registry.name(of: type)) this client does not know how to give")
                }
            }
        }
        return (extra.bytes, additional.bytes)
    }

    /// A signed extrinsic: compact(length) ++ (0x80 | version) ++ address ++ signature ++ extra ++ call.
    public func signed(call: [UInt8], signer: Ed25519KeyPair, nonce: UInt64, tip: UInt64 = 0,
                       context: SigningContext) throws(ChainError) -> [UInt8] {
        let (extra, additional) = try signedExtensions(nonce: nonce, tip: tip, context: context)
        var payload = call + extra + additional
        // Substrate signs the blake2-256 of payloads longer than 256 bytes.
        if payload.count > 256 { payload = Blake2b.hash256(payload) }
        let signature = signer.sign(payload)
        let registry = metadata.registry
        let address = try registry.encode(.variant("Id", [.bytes(signer.publicKey.bytes)]), as: try extrinsicParameter("Address"))
        let sig = try registry.encode(.variant("Ed25519", [.bytes(signature)]), as: try extrinsicParameter("Signature"))
        var body = [0x80 | metadata.extrinsicVersion]
        body += address + sig + extra + call
        var w = SCALEWriter(capacity: body.count + 5)
        w.appendByteVector(body)
        return w.bytes
    }
}

extension PortableRegistry {
    /// True for types that encode to no bytes at all (unit structs, empty tuples, PhantomData).
    func isEmpty(_ id: Int, depth: Int = 0) -> Bool {
        guard id >= 0, id < types.count, depth < 16 else { return false }
        switch types[id].definition {
        case .composite(let fields, _): return fields.allSatisfy { isEmpty($0.type, depth: depth + 1) }
        case .tuple(let elements): return elements.allSatisfy { isEmpty($0, depth: depth + 1) }
        case .array(let length, let element): return length == 0 || isEmpty(element, depth: depth + 1)
        default: return false
        }
    }
}
