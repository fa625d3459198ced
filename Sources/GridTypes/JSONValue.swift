import Foundation

/// A JSON value, Sendable: JSON-RPC messages whose shape depends on the method, workload result data.
public enum JSONValue: Sendable, Equatable, Codable, CustomStringConvertible {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n):
            // Integers (ids, block numbers) must go out without a fraction.
            if n.rounded() == n, abs(n) < 9.0e15 { try c.encode(Int64(n)) } else { try c.encode(n) }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var array: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var isNull: Bool { self == .null }

    /// Numbers come as JSON numbers or as "0x.." hex strings (block numbers in headers).
    public var uint64: UInt64? {
        switch self {
        case .number(let n) where n >= 0 && n.rounded() == n && n < 1.8e19: return UInt64(n)
        case .string(let s) where s.hasPrefix("0x"): return UInt64(s.dropFirst(2), radix: 16)
        default: return nil
        }
    }

    public var description: String {
        guard let data = try? JSONEncoder().encode(self) else { return "<json>" }
        return String(decoding: data, as: UTF8.self)
    }

    public func serialized() -> String {
        description
    }
}
