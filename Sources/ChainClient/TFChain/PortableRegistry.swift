/// The portable type registry of runtime metadata V14 (scale-info): every type the runtime uses,
/// by id. Decoding and encoding go through it, so nothing about a pallet's layout is hand-written.
public struct PortableRegistry: Sendable {
    public enum Primitive: UInt8, Sendable {
        case bool = 0, char, str, u8, u16, u32, u64, u128, u256, i8, i16, i32, i64, i128, i256

        /// Encoded size, nil for variable-size (str).
        var size: Int? {
            switch self {
            case .bool, .u8, .i8: return 1
            case .u16, .i16: return 2
            case .char, .u32, .i32: return 4
            case .u64, .i64: return 8
            case .u128, .i128: return 16
            case .u256, .i256: return 32
            case .str: return nil
            }
        }
    }

    public struct Field: Sendable {
        public var name: String?
        public var type: Int
        public var typeName: String?
    }

    public struct Variant: Sendable {
        public var name: String
        public var fields: [Field]
        public var index: UInt8
        /// Field names shared by every decoded value of this variant (one allocation, not one per value).
        public var fieldNames: [String?]
    }

    public indirect enum Definition: Sendable {
        case composite([Field], names: [String?])
        /// `byIndex[tag]` is the position in `variants` of the variant with that index, or -1.
        case variant([Variant], byIndex: [Int16])
        case sequence(Int)
        case array(length: Int, element: Int)
        case tuple([Int])
        case primitive(Primitive)
        case compact(Int)
        case bitSequence(store: Int, order: Int)
    }

    public struct TypeInfo: Sendable {
        public var path: [String]
        public var params: [(name: String, type: Int?)]
        public var definition: Definition

        /// "pallet::Type<..>" style name for errors.
        public var displayName: String {
            if !path.isEmpty { return path.joined(separator: "::") }
            switch definition {
            case .sequence: return "Vec"
            case .array(let length, _): return "[_; \(length)]"
            case .tuple: return "tuple"
            case .primitive(let p): return "\(p)"
            case .compact: return "Compact"
            case .bitSequence: return "BitVec"
            case .composite, .variant: return "anonymous"
            }
        }
    }

    public let types: [TypeInfo]
    /// Smallest encoded size of each type, to bound vector lengths against the bytes left.
    let minSizes: [Int]

    init(types: [TypeInfo]) throws(ChainError) {
        self.types = types
        for (id, info) in types.enumerated() {
            for child in Self.children(info.definition) where child < 0 || child >= types.count {
                throw .metadata("type \(id) (\(info.displayName)) refers to type \(child), which the registry (\(types.count) types) lacks")
            }
        }
        minSizes = Self.computeMinSizes(types)
    }

    public func type(_ id: Int) throws(ChainError) -> TypeInfo {
        guard id >= 0, id < types.count else { throw .metadata("type id \(id) is not in the registry (\(types.count) types)") }
        return types[id]
    }

    public func name(of id: Int) -> String {
        id >= 0 && id < types.count ? "\(types[id].displayName) (type \(id))" : "type \(id)"
    }

    static func children(_ definition: Definition) -> [Int] {
        switch definition {
        case .composite(let fields, _): return fields.map(\.type)
        case .variant(let variants, _): return variants.flatMap { $0.fields.map(\.type) }
        case .sequence(let t), .compact(let t): return [t]
        case .array(_, let t): return [t]
        case .tuple(let ts): return ts
        case .primitive: return []
        case .bitSequence(let s, let o): return [s, o]
        }
    }

    /// Fixed-point iteration from zero: recursive types stay at the size of their finite part.
    static func computeMinSizes(_ types: [TypeInfo]) -> [Int] {
        var sizes = [Int](repeating: 0, count: types.count)
        let cap = 1 << 20
        for _ in 0..<16 {
            var changed = false
            for (id, info) in types.enumerated() {
                let size: Int
                switch info.definition {
                case .composite(let fields, _): size = fields.reduce(0) { min(cap, $0 + sizes[$1.type]) }
                case .variant(let variants, _):
                    size = variants.isEmpty ? 1 : 1 + (variants.map { $0.fields.reduce(0) { min(cap, $0 + sizes[$1.type]) } }.min() ?? 0)
                case .sequence, .compact, .bitSequence: size = 1
                case .array(let length, let element): size = min(cap, length * sizes[element])
                case .tuple(let ts): size = ts.reduce(0) { min(cap, $0 + sizes[$1]) }
                case .primitive(let p): size = p.size ?? 1
                }
                if size != sizes[id] { sizes[id] = size; changed = true }
            }
            if !changed { break }
        }
        return sizes
    }
}

extension PortableRegistry {
    /// Reads the registry part of metadata V14.
    static func read(_ r: inout SCALEReader) throws(ChainError) -> PortableRegistry {
        let count = try r.readLength("PortableRegistry", minElementSize: 4)
        var types = [TypeInfo]()
        types.reserveCapacity(count)
        for expected in 0..<count {
            let idStart = r.position
            let id = try r.readCompact("PortableType.id", maxBits: 32)
            // scale-info emits ids 0..<n in order; the array index is then the id.
            guard id == UInt64(expected) else {
                throw r.error("PortableType.id", "type id \(id) out of order (expected \(expected))", at: idStart)
            }
            let path = try r.readVector("Type.path", minElementSize: 1) { (r: inout SCALEReader) throws(ChainError) in try r.readString("Type.path segment") }
            let params = try r.readVector("Type.params", minElementSize: 2) { (r: inout SCALEReader) throws(ChainError) -> (name: String, type: Int?) in
                let name = try r.readString("TypeParameter.name")
                let type = try r.readOption("TypeParameter.type") { (r: inout SCALEReader) throws(ChainError) in Int(try r.readCompact("type id", maxBits: 32)) }
                return (name, type)
            }
            let definition = try readDefinition(&r)
            try skipDocs(&r)
            types.append(TypeInfo(path: path, params: params, definition: definition))
        }
        return try PortableRegistry(types: types)
    }

    static func skipDocs(_ r: inout SCALEReader) throws(ChainError) {
        let count = try r.readLength("docs", minElementSize: 1)
        for _ in 0..<count { _ = try r.readByteVector("doc line") }
    }

    static func readFields(_ r: inout SCALEReader) throws(ChainError) -> [Field] {
        try r.readVector("fields", minElementSize: 3) { (r: inout SCALEReader) throws(ChainError) -> Field in
            let name = try r.readOption("Field.name") { (r: inout SCALEReader) throws(ChainError) in try r.readString("Field.name") }
            let type = Int(try r.readCompact("Field.type", maxBits: 32))
            let typeName = try r.readOption("Field.typeName") { (r: inout SCALEReader) throws(ChainError) in try r.readString("Field.typeName") }
            try skipDocs(&r)
            return Field(name: name, type: type, typeName: typeName)
        }
    }

    static func readDefinition(_ r: inout SCALEReader) throws(ChainError) -> Definition {
        let start = r.position
        switch try r.readByte("TypeDef") {
        case 0:
            let fields = try readFields(&r)
            return .composite(fields, names: fields.map(\.name))
        case 1:
            let variants = try r.readVector("TypeDefVariant", minElementSize: 4) { (r: inout SCALEReader) throws(ChainError) -> Variant in
                let name = try r.readString("Variant.name")
                let fields = try readFields(&r)
                let index = try r.readByte("Variant.index")
                try skipDocs(&r)
                return Variant(name: name, fields: fields, index: index, fieldNames: fields.map(\.name))
            }
            var byIndex = [Int16](repeating: -1, count: 256)
            for (position, variant) in variants.enumerated() {
                guard byIndex[Int(variant.index)] < 0 else {
                    throw r.error("TypeDefVariant", "two variants share index \(variant.index)", at: start)
                }
                byIndex[Int(variant.index)] = Int16(position)
            }
            return .variant(variants, byIndex: byIndex)
        case 2: return .sequence(Int(try r.readCompact("TypeDefSequence", maxBits: 32)))
        case 3:
            let length = try r.readU32("TypeDefArray.len")
            return .array(length: Int(length), element: Int(try r.readCompact("TypeDefArray.type", maxBits: 32)))
        case 4:
            return .tuple(try r.readVector("TypeDefTuple", minElementSize: 1) { (r: inout SCALEReader) throws(ChainError) in
                Int(try r.readCompact("tuple element", maxBits: 32))
            })
        case 5:
            let tagStart = r.position
            let tag = try r.readByte("TypeDefPrimitive")
            guard let primitive = Primitive(rawValue: tag) else {
                throw r.error("TypeDefPrimitive", "unknown primitive \(tag)", at: tagStart)
            }
            return .primitive(primitive)
        case 6: return .compact(Int(try r.readCompact("TypeDefCompact", maxBits: 32)))
        case 7:
            let store = Int(try r.readCompact("TypeDefBitSequence.store", maxBits: 32))
            return .bitSequence(store: store, order: Int(try r.readCompact("TypeDefBitSequence.order", maxBits: 32)))
        case let other:
            throw r.error("TypeDef", "variant index \(other) out of range (8 variants)", at: start)
        }
    }
}
