import GridTypes

/// A value of any registry type, decoded without knowing the type at compile time.
public indirect enum SCALEValue: Sendable, Equatable, CustomStringConvertible {
    case bool(Bool)
    case uint(UInt64)
    case int(Int64)
    /// u128/u256/i128/i256 and wide compacts, little-endian (two's complement for signed).
    case bigInt([UInt8])
    case string(String)
    /// Vec<u8> and [u8; N], kept as bytes rather than one value per byte.
    case bytes([UInt8])
    case sequence([SCALEValue])
    /// A struct or tuple; `names` come from the registry (nil for tuples and unnamed fields).
    case composite(names: [String?], values: [SCALEValue])
    case variant(index: UInt8, name: String, names: [String?], values: [SCALEValue])
    case bits([UInt8])

    /// A struct with named fields, for building call arguments.
    public static func record(_ fields: KeyValuePairs<String, SCALEValue>) -> SCALEValue {
        .composite(names: fields.map { $0.key }, values: fields.map { $0.value })
    }

    public static func tuple(_ values: [SCALEValue]) -> SCALEValue {
        .composite(names: values.map { _ in nil }, values: values)
    }

    public static func variant(_ name: String, _ values: [SCALEValue] = []) -> SCALEValue {
        .variant(index: 0, name: name, names: values.map { _ in nil }, values: values)
    }

    public static let none: SCALEValue = .variant("None")
    public static func some(_ value: SCALEValue) -> SCALEValue { .variant("Some", [value]) }

    /// Single-field wrappers (BoundedVec, newtypes) are looked through by the accessors below.
    public var unwrapped: SCALEValue {
        var value = self
        while case .composite(_, let values) = value, values.count == 1 { value = values[0] }
        return value
    }

    public var uint: UInt64? {
        switch unwrapped {
        case .uint(let v): return v
        case .bigInt(let raw) where raw.count <= 8:
            return raw.enumerated().reduce(0) { $0 | UInt64($1.element) << UInt64(8 * $1.offset) }
        default: return nil
        }
    }

    public var bytes: [UInt8]? {
        switch unwrapped {
        case .bytes(let b): return b
        case .string(let s): return Array(s.utf8)
        case .sequence(let items) where items.isEmpty: return []
        default: return nil
        }
    }

    public var items: [SCALEValue]? {
        switch unwrapped {
        case .sequence(let items): return items
        case .bytes(let b): return b.map { .uint(UInt64($0)) }
        default: return nil
        }
    }

    /// The field named `name` of a struct or struct-like variant.
    public subscript(field name: String) -> SCALEValue? {
        switch self {
        case .composite(let names, let values), .variant(_, _, let names, let values):
            guard let i = names.firstIndex(of: name) else { return nil }
            return values[i]
        default: return nil
        }
    }

    /// The `i`th field of a struct, tuple or variant.
    public subscript(position i: Int) -> SCALEValue? {
        switch self {
        case .composite(_, let values), .variant(_, _, _, let values): return values.indices.contains(i) ? values[i] : nil
        case .sequence(let values): return values.indices.contains(i) ? values[i] : nil
        default: return nil
        }
    }

    public var variantName: String? {
        if case .variant(_, let name, _, _) = self { return name }
        return nil
    }

    public var description: String {
        switch self {
        case .bool(let b): return "\(b)"
        case .uint(let v): return "\(v)"
        case .int(let v): return "\(v)"
        case .bigInt(let raw): return "0x" + Hex.encode(raw.reversed())
        case .string(let s): return "\"\(s)\""
        case .bytes(let b): return "0x" + Hex.encode(b)
        case .bits(let b): return "bits(0x\(Hex.encode(b)))"
        case .sequence(let items): return "[" + items.map(\.description).joined(separator: ", ") + "]"
        case .composite(let names, let values):
            return "{" + zip(names, values).map { ($0.0.map { $0 + ": " } ?? "") + $0.1.description }.joined(separator: ", ") + "}"
        case .variant(_, let name, let names, let values):
            if values.isEmpty { return name }
            return name + "(" + zip(names, values).map { ($0.0.map { $0 + ": " } ?? "") + $0.1.description }.joined(separator: ", ") + ")"
        }
    }
}
