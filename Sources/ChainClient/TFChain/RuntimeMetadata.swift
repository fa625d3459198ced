import GridTypes

/// Runtime metadata V14 as read from `state_getMetadata`: the type registry, the pallets with
/// their indices, calls, events, errors and storage items, and the extrinsic format. Every index
/// the client uses comes from here, never from constants.
public final class RuntimeMetadata: Sendable {
    public enum Hasher: UInt8, Sendable {
        case blake2_128 = 0, blake2_256, blake2_128Concat, twox128, twox256, twox64Concat, identity

        public func hash(_ data: [UInt8]) -> [UInt8] {
            switch self {
            case .blake2_128: return Blake2b.hash(data, outputLength: 16)
            case .blake2_256: return Blake2b.hash(data, outputLength: 32)
            case .blake2_128Concat: return Blake2b.hash(data, outputLength: 16) + data
            case .twox128: return TwoX.twox128(data)
            case .twox256: return TwoX.twox256(data)
            case .twox64Concat: return TwoX.twox64(data) + data
            case .identity: return data
            }
        }
    }

    public struct StorageEntry: Sendable {
        public enum Kind: Sendable {
            case plain(value: Int)
            case map(hashers: [Hasher], key: Int, value: Int)
        }
        public var name: String
        /// Optional (0): a missing value is None; Default (1): a missing value is `defaultValue`.
        public var isOptional: Bool
        public var kind: Kind
        public var defaultValue: [UInt8]

        public var valueType: Int {
            switch kind {
            case .plain(let v), .map(_, _, let v): return v
            }
        }
    }

    public struct Pallet: Sendable {
        public var name: String
        public var index: UInt8
        public var storagePrefix: String?
        public var storage: [String: StorageEntry]
        public var callType: Int?
        public var eventType: Int?
        public var errorType: Int?
    }

    public struct SignedExtension: Sendable {
        public var identifier: String
        public var type: Int
        public var additionalSigned: Int
    }

    public static let magic: [UInt8] = Array("meta".utf8)
    public static let supportedVersion: UInt8 = 14

    public let registry: PortableRegistry
    public let pallets: [Pallet]
    public let extrinsicType: Int
    public let extrinsicVersion: UInt8
    public let signedExtensions: [SignedExtension]
    private let palletsByName: [String: Int]
    private let palletsByIndex: [UInt8: Int]
    /// The runtime's outer event enum (from System.Events' EventRecord), for decoding events.
    public let eventRecordsType: Int

    public init(bytes: [UInt8]) throws(ChainError) {
        var r = SCALEReader(bytes)
        let magic = try r.readBytes(4, "metadata magic")
        guard magic == Self.magic else {
            throw r.error("metadata magic", "expected 0x6d657461 (\"meta\"), got 0x\(Hex.encode(magic))", at: 0)
        }
        let version = try r.readByte("metadata version")
        guard version == Self.supportedVersion else {
            throw r.error("metadata version", "metadata V\(version) is not supported (this client reads V14)", at: 4)
        }
        registry = try PortableRegistry.read(&r)
        let registry = registry
        func checked(_ id: UInt64, _ what: String) throws(ChainError) -> Int {
            guard id < UInt64(registry.types.count) else { throw .metadata("\(what) refers to unknown type \(id)") }
            return Int(id)
        }
        let palletCount = try r.readLength("pallets", minElementSize: 6)
        var pallets = [Pallet]()
        for _ in 0..<palletCount {
            let name = try r.readString("PalletMetadata.name")
            var prefix: String?
            var storage = [String: StorageEntry]()
            if try r.readOption("PalletMetadata.storage", { (_: inout SCALEReader) throws(ChainError) in true }) == true {
                prefix = try r.readString("PalletStorageMetadata.prefix")
                let entryCount = try r.readLength("storage entries", minElementSize: 5)
                for _ in 0..<entryCount {
                    let entryName = try r.readString("StorageEntryMetadata.name")
                    let modifier = try r.readVariantIndex("StorageEntryModifier", count: 2)
                    let kind: StorageEntry.Kind
                    switch try r.readVariantIndex("StorageEntryType", count: 2) {
                    case 0: kind = .plain(value: try checked(try r.readCompact("StorageEntryType.Plain", maxBits: 32), "\(name).\(entryName)"))
                    default:
                        let hashers = try r.readVector("StorageHasher list", minElementSize: 1) { (r: inout SCALEReader) throws(ChainError) -> Hasher in
                            let at = r.position
                            let tag = try r.readByte("StorageHasher")
                            guard let hasher = Hasher(rawValue: tag) else { throw r.error("StorageHasher", "variant index \(tag) out of range (7 variants)", at: at) }
                            return hasher
                        }
                        let key = try checked(try r.readCompact("StorageEntryType.Map.key", maxBits: 32), "\(name).\(entryName) key")
                        let value = try checked(try r.readCompact("StorageEntryType.Map.value", maxBits: 32), "\(name).\(entryName) value")
                        kind = .map(hashers: hashers, key: key, value: value)
                    }
                    let defaultValue = try r.readByteVector("StorageEntryMetadata.default")
                    try PortableRegistry.skipDocs(&r)
                    storage[entryName] = StorageEntry(name: entryName, isOptional: modifier == 0, kind: kind, defaultValue: defaultValue)
                }
            }
            let calls = try r.readOption("PalletMetadata.calls") { (r: inout SCALEReader) throws(ChainError) in try checked(try r.readCompact("calls type", maxBits: 32), "\(name) calls") }
            let event = try r.readOption("PalletMetadata.event") { (r: inout SCALEReader) throws(ChainError) in try checked(try r.readCompact("event type", maxBits: 32), "\(name) events") }
            let constantCount = try r.readLength("constants", minElementSize: 4)
            for _ in 0..<constantCount {
                _ = try r.readByteVector("PalletConstantMetadata.name")
                _ = try r.readCompact("PalletConstantMetadata.type", maxBits: 32)
                _ = try r.readByteVector("PalletConstantMetadata.value")
                try PortableRegistry.skipDocs(&r)
            }
            let error = try r.readOption("PalletMetadata.error") { (r: inout SCALEReader) throws(ChainError) in try checked(try r.readCompact("error type", maxBits: 32), "\(name) errors") }
            let index = try r.readByte("PalletMetadata.index")
            pallets.append(Pallet(name: name, index: index, storagePrefix: prefix, storage: storage,
                                  callType: calls, eventType: event, errorType: error))
        }
        extrinsicType = try checked(try r.readCompact("ExtrinsicMetadata.type", maxBits: 32), "extrinsic")
        extrinsicVersion = try r.readByte("ExtrinsicMetadata.version")
        signedExtensions = try r.readVector("signed extensions", minElementSize: 3) { (r: inout SCALEReader) throws(ChainError) -> SignedExtension in
            let identifier = try r.readString("SignedExtensionMetadata.identifier")
            let type = try checked(try r.readCompact("SignedExtensionMetadata.type", maxBits: 32), identifier)
            let additional = try checked(try r.readCompact("SignedExtensionMetadata.additional_signed", maxBits: 32), identifier)
            return SignedExtension(identifier: identifier, type: type, additionalSigned: additional)
        }
        _ = try r.readCompact("runtime type", maxBits: 32)
        try r.expectEnd("RuntimeMetadataV14")

        self.pallets = pallets
        var byName = [String: Int](), byIndex = [UInt8: Int]()
        for (i, pallet) in pallets.enumerated() {
            byName[pallet.name] = i
            byIndex[pallet.index] = i
        }
        palletsByName = byName
        palletsByIndex = byIndex
        guard let system = byName["System"], let events = pallets[system].storage["Events"] else {
            throw .metadata("the runtime has no System.Events storage item; cannot decode events")
        }
        eventRecordsType = events.valueType
    }

    /// Metadata from the hex string of `state_getMetadata`.
    public convenience init(hex: String) throws(ChainError) {
        let bytes: [UInt8]
        do { bytes = try Hex.decode(hex, context: "state_getMetadata result") } catch {
            throw .decode(type: "RuntimeMetadata", position: 0, detail: "\(error)")
        }
        try self.init(bytes: bytes)
    }

    public func pallet(_ name: String) throws(ChainError) -> Pallet {
        guard let i = palletsByName[name] else { throw .metadata("the runtime has no pallet named \(name)") }
        return pallets[i]
    }

    public func pallet(index: UInt8) -> Pallet? { palletsByIndex[index].map { pallets[$0] } }

    public func storageEntry(_ pallet: String, _ item: String) throws(ChainError) -> (prefix: String, entry: StorageEntry) {
        let p = try self.pallet(pallet)
        guard let prefix = p.storagePrefix, let entry = p.storage[item] else {
            throw .metadata("pallet \(pallet) has no storage item \(item)")
        }
        return (prefix, entry)
    }

    /// The variant named `name` of a pallet's call enum: its index and argument fields.
    public func call(_ pallet: String, _ name: String) throws(ChainError) -> (palletIndex: UInt8, call: PortableRegistry.Variant) {
        let p = try self.pallet(pallet)
        guard let callType = p.callType, case .variant(let variants, _) = try registry.type(callType).definition else {
            throw .metadata("pallet \(pallet) has no calls")
        }
        guard let variant = variants.first(where: { $0.name == name }) else {
            throw .metadata("pallet \(pallet) has no call named \(name)")
        }
        return (p.index, variant)
    }

    /// Pallet and error names of DispatchError::Module { index, error: [u8; 4] } (first byte is the variant).
    public func moduleError(palletIndex: UInt8, errorIndex: UInt8) -> (pallet: String, error: String) {
        guard let p = pallet(index: palletIndex) else { return ("pallet#\(palletIndex)", "error#\(errorIndex)") }
        guard let errorType = p.errorType, let info = try? registry.type(errorType),
              case .variant(let variants, let byIndex) = info.definition, byIndex[Int(errorIndex)] >= 0 else {
            return (p.name, "error#\(errorIndex)")
        }
        return (p.name, variants[Int(byIndex[Int(errorIndex)])].name)
    }

    /// Full storage key: twox128(prefix) ++ twox128(item) ++ hasher(key) for each encoded map key.
    public func storageKey(_ pallet: String, _ item: String, keys: [[UInt8]] = []) throws(ChainError) -> [UInt8] {
        let (prefix, entry) = try storageEntry(pallet, item)
        var key = TwoX.twox128(Array(prefix.utf8)) + TwoX.twox128(Array(item.utf8))
        switch entry.kind {
        case .plain:
            guard keys.isEmpty else { throw .metadata("\(pallet).\(item) is a plain value; it takes no keys") }
        case .map(let hashers, _, _):
            guard keys.count == hashers.count else {
                throw .metadata("\(pallet).\(item) takes \(hashers.count) keys, got \(keys.count)")
            }
            for (hasher, encoded) in zip(hashers, keys) { key += hasher.hash(encoded) }
        }
        return key
    }
}

extension RuntimeMetadata {
    /// Decodes the value of System.Events: every record of every pallet goes through the registry,
    /// so an event this client has never heard of is decoded (and skipped past) like any other.
    public func decodeEvents(_ bytes: [UInt8]) throws(ChainError) -> [DecodedEvent] {
        let value = try registry.decode(eventRecordsType, from: bytes)
        guard let records = value.items else {
            throw .decode(type: "System.Events", position: 0, detail: "the value is not a sequence of event records")
        }
        var events = [DecodedEvent]()
        events.reserveCapacity(records.count)
        for record in records {
            guard let phase = record[field: "phase"], let outer = record[field: "event"],
                  case .variant(_, let pallet, _, let palletValues) = outer, let inner = palletValues.first,
                  case .variant(_, let name, _, _) = inner else {
                throw .decode(type: "EventRecord", position: 0, detail: "unexpected shape \(String(record.description.prefix(200)))")
            }
            let index: UInt32? = phase.variantName == "ApplyExtrinsic" ? phase[position: 0]?.uint.flatMap { UInt32(exactly: $0) } : nil
            events.append(DecodedEvent(extrinsicIndex: index, pallet: pallet, name: name, fields: inner))
        }
        return events
    }
}
