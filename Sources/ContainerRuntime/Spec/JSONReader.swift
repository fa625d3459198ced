import Foundation

/// JSON with its types kept exact (a boolean is never a number), for strict spec reading.
enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case integer(Int64)
    case unsigned(UInt64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .integer(i) }
        else if let u = try? c.decode(UInt64.self) { self = .unsigned(u) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }
}

/// Reads a JSON object field by field, remembering which keys were read, so that any key left
/// over is refused by its full path instead of being ignored.
struct JSONReader {
    let path: String
    let object: [String: JSONValue]
    private var known = Set<String>()

    init(path: String, object: [String: JSONValue]) {
        self.path = path
        self.object = object
    }

    static func parse(_ data: Data, path: String = "") throws(ContainerRuntimeError) -> JSONReader {
        let value: JSONValue
        do { value = try JSONDecoder().decode(JSONValue.self, from: data) } catch {
            throw .invalidSpec(field: "(file)", message: "not valid JSON: \(error)")
        }
        guard case .object(let object) = value else { throw .invalidSpec(field: "(file)", message: "expected a JSON object") }
        return JSONReader(path: path, object: object)
    }

    func field(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    private mutating func value(_ key: String) -> JSONValue? {
        known.insert(key)
        guard let v = object[key], v != .null else { return nil }
        return v
    }

    mutating func has(_ key: String) -> Bool { value(key) != nil }

    mutating func string(_ key: String) throws(ContainerRuntimeError) -> String? {
        guard let v = value(key) else { return nil }
        guard case .string(let s) = v else { throw .invalidSpec(field: field(key), message: "expected a string") }
        return s
    }

    mutating func bool(_ key: String) throws(ContainerRuntimeError) -> Bool? {
        guard let v = value(key) else { return nil }
        guard case .bool(let b) = v else { throw .invalidSpec(field: field(key), message: "expected true or false") }
        return b
    }

    mutating func integer(_ key: String, in range: ClosedRange<Int64> = Int64.min...Int64.max) throws(ContainerRuntimeError) -> Int64? {
        guard let v = value(key) else { return nil }
        guard case .integer(let i) = v else { throw .invalidSpec(field: field(key), message: "expected an integer") }
        guard range.contains(i) else {
            throw .invalidSpec(field: field(key), message: "\(i) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return i
    }

    mutating func unsigned(_ key: String) throws(ContainerRuntimeError) -> UInt64? {
        guard let v = value(key) else { return nil }
        switch v {
        case .integer(let i) where i >= 0: return UInt64(i)
        case .unsigned(let u): return u
        default: throw .invalidSpec(field: field(key), message: "expected a non-negative integer")
        }
    }

    mutating func strings(_ key: String) throws(ContainerRuntimeError) -> [String]? {
        guard let v = value(key) else { return nil }
        guard case .array(let list) = v else { throw .invalidSpec(field: field(key), message: "expected a list of strings") }
        var out = [String]()
        for (i, item) in list.enumerated() {
            guard case .string(let s) = item else { throw .invalidSpec(field: "\(field(key))[\(i)]", message: "expected a string") }
            out.append(s)
        }
        return out
    }

    mutating func object(_ key: String) throws(ContainerRuntimeError) -> JSONReader? {
        guard let v = value(key) else { return nil }
        guard case .object(let o) = v else { throw .invalidSpec(field: field(key), message: "expected an object") }
        return JSONReader(path: field(key), object: o)
    }

    mutating func objects(_ key: String) throws(ContainerRuntimeError) -> [JSONReader]? {
        guard let v = value(key) else { return nil }
        guard case .array(let list) = v else { throw .invalidSpec(field: field(key), message: "expected a list of objects") }
        var out = [JSONReader]()
        for (i, item) in list.enumerated() {
            guard case .object(let o) = item else { throw .invalidSpec(field: "\(field(key))[\(i)]", message: "expected an object") }
            out.append(JSONReader(path: "\(field(key))[\(i)]", object: o))
        }
        return out
    }

    mutating func stringMap(_ key: String) throws(ContainerRuntimeError) -> [String: String]? {
        guard let v = value(key) else { return nil }
        guard case .object(let o) = v else { throw .invalidSpec(field: field(key), message: "expected an object of strings") }
        var out = [String: String]()
        for (k, item) in o {
            guard case .string(let s) = item else { throw .invalidSpec(field: "\(field(key)).\(k)", message: "expected a string") }
            out[k] = s
        }
        return out
    }

    /// Marks keys this runtime accepts and deliberately does not act on.
    mutating func ignore(_ keys: String...) { for k in keys { known.insert(k) } }

    /// Refuses every key not read: unsupported fields are named, never silently ignored.
    func finish() throws(ContainerRuntimeError) {
        for key in object.keys.sorted() where !known.contains(key) {
            guard object[key] != .null else { continue }
            throw .unsupported(field: field(key), message: "this runtime does not implement it; remove it from config.json")
        }
    }
}
