/// Decoding and encoding of any registry type to and from `SCALEValue`.
extension PortableRegistry {
    /// Nesting deeper than this is refused: real runtime types nest a few dozen levels at most, and
    /// recursive types (calls inside calls) must not overflow the stack on hostile input.
    public static let maxDepth = 96

    public func decode(_ typeID: Int, from bytes: [UInt8]) throws(ChainError) -> SCALEValue {
        var r = SCALEReader(bytes)
        let value = try decode(typeID, from: &r)
        try r.expectEnd(name(of: typeID))
        return value
    }

    public func decode(_ typeID: Int, from r: inout SCALEReader, depth: Int = 0) throws(ChainError) -> SCALEValue {
        guard depth < Self.maxDepth else { throw r.error(name(of: typeID), "nested more than \(Self.maxDepth) levels deep") }
        guard typeID >= 0, typeID < types.count else { throw r.error("type \(typeID)", "not in the registry") }
        switch types[typeID].definition {
        case .primitive(let p):
            return try decodePrimitive(p, &r)
        case .composite(let fields, let names):
            if fields.count == 1 { return .composite(names: names, values: [try decode(fields[0].type, from: &r, depth: depth + 1)]) }
            var values = [SCALEValue]()
            values.reserveCapacity(fields.count)
            for field in fields { values.append(try decode(field.type, from: &r, depth: depth + 1)) }
            return .composite(names: names, values: values)
        case .variant(let variants, let byIndex):
            let start = r.position
            let tag = try r.readByte(name(of: typeID))
            let slot = Int(byIndex[Int(tag)])
            guard slot >= 0 else {
                throw r.error(name(of: typeID), "variant index \(tag) out of range (valid: \(variants.map { "\($0.index)" }.joined(separator: ",")))", at: start)
            }
            let variant = variants[slot]
            var values = [SCALEValue]()
            values.reserveCapacity(variant.fields.count)
            for field in variant.fields { values.append(try decode(field.type, from: &r, depth: depth + 1)) }
            return .variant(index: tag, name: variant.name, names: variant.fieldNames, values: values)
        case .sequence(let element):
            if case .primitive(.u8) = types[element].definition { return .bytes(try r.readByteVector(name(of: typeID))) }
            let count = try r.readLength(name(of: typeID), minElementSize: minSizes[element])
            var values = [SCALEValue]()
            values.reserveCapacity(count)
            for _ in 0..<count { values.append(try decode(element, from: &r, depth: depth + 1)) }
            return .sequence(values)
        case .array(let length, let element):
            if case .primitive(.u8) = types[element].definition { return .bytes(try r.readBytes(length, name(of: typeID))) }
            // Bound the allocation by the bytes left, as for sequences.
            guard length * max(1, minSizes[element]) <= r.remaining else {
                throw r.error(name(of: typeID), "array of \(length) needs more than the \(r.remaining) bytes left")
            }
            var values = [SCALEValue]()
            values.reserveCapacity(length)
            for _ in 0..<length { values.append(try decode(element, from: &r, depth: depth + 1)) }
            return .sequence(values)
        case .tuple(let elements):
            var values = [SCALEValue]()
            values.reserveCapacity(elements.count)
            for element in elements { values.append(try decode(element, from: &r, depth: depth + 1)) }
            return .composite(names: elements.map { _ in nil }, values: values)
        case .compact(let inner):
            return try decodeCompact(inner, typeID: typeID, &r, depth: depth)
        case .bitSequence(let store, _):
            let storeBytes: Int
            if case .primitive(let p) = types[store].definition, let size = p.size { storeBytes = size } else { storeBytes = 1 }
            let start = r.position
            let bits = try r.readCompact(name(of: typeID), maxBits: 32)
            let words = (Int(bits) + storeBytes * 8 - 1) / (storeBytes * 8)
            guard words * storeBytes <= r.remaining else {
                throw r.error(name(of: typeID), "\(bits) bits need \(words * storeBytes) bytes, only \(r.remaining) left", at: start)
            }
            return .bits(try r.readBytes(words * storeBytes, name(of: typeID)))
        }
    }

    private func decodePrimitive(_ p: Primitive, _ r: inout SCALEReader) throws(ChainError) -> SCALEValue {
        switch p {
        case .bool: return .bool(try r.readBool())
        case .u8: return .uint(UInt64(try r.readByte("u8")))
        case .u16: return .uint(UInt64(try r.readInteger(UInt16.self, "u16")))
        case .u32: return .uint(UInt64(try r.readInteger(UInt32.self, "u32")))
        case .u64: return .uint(try r.readInteger(UInt64.self, "u64"))
        case .i8: return .int(Int64(try r.readInteger(Int8.self, "i8")))
        case .i16: return .int(Int64(try r.readInteger(Int16.self, "i16")))
        case .i32: return .int(Int64(try r.readInteger(Int32.self, "i32")))
        case .i64: return .int(try r.readInteger(Int64.self, "i64"))
        case .u128, .i128: return .bigInt(try r.readBytes(16, "\(p)"))
        case .u256, .i256: return .bigInt(try r.readBytes(32, "\(p)"))
        case .str: return .string(try r.readString("str"))
        case .char:
            let start = r.position
            let scalar = try r.readInteger(UInt32.self, "char")
            guard let s = Unicode.Scalar(scalar) else { throw r.error("char", "\(scalar) is not a Unicode scalar", at: start) }
            return .string(String(Character(s)))
        }
    }

    /// Compact<T>: the value must fit T's width ("a compact integer past its width" is an error).
    private func decodeCompact(_ inner: Int, typeID: Int, _ r: inout SCALEReader, depth: Int) throws(ChainError) -> SCALEValue {
        var target = inner
        var wrappers = 0
        // Compact<Wrapper(u32)>: compact of a single-field struct encodes the field.
        while case .composite(let fields, _) = types[target].definition, fields.count == 1, wrappers < 8 {
            target = fields[0].type
            wrappers += 1
        }
        guard case .primitive(let p) = types[target].definition else {
            if case .composite(let fields, _) = types[target].definition, fields.isEmpty { return .composite(names: [], values: []) }
            throw r.error(name(of: typeID), "compact of a non-integer type \(name(of: inner))")
        }
        let label = "Compact<\(p)>"
        let value: SCALEValue
        switch p {
        case .u8: value = .uint(try r.readCompact(label, maxBits: 8))
        case .u16: value = .uint(try r.readCompact(label, maxBits: 16))
        case .u32: value = .uint(try r.readCompact(label, maxBits: 32))
        case .u64: value = .uint(try r.readCompact(label, maxBits: 64))
        case .u128: value = .bigInt(try r.readCompactWide(label, maxBytes: 16))
        case .u256: value = .bigInt(try r.readCompactWide(label, maxBytes: 32))
        default: throw r.error(name(of: typeID), "compact of \(p) is not an unsigned integer")
        }
        var wrapped = value
        for _ in 0..<wrappers { wrapped = .composite(names: [nil], values: [wrapped]) }
        return wrapped
    }
}

extension PortableRegistry {
    public func encode(_ value: SCALEValue, as typeID: Int) throws(ChainError) -> [UInt8] {
        var w = SCALEWriter()
        try encode(value, as: typeID, into: &w)
        return w.bytes
    }

    private func mismatch(_ typeID: Int, _ value: SCALEValue, _ detail: String = "") -> ChainError {
        .invalidInput("cannot encode \(value) as \(name(of: typeID))\(detail.isEmpty ? "" : ": \(detail)")")
    }

    public func encode(_ value: SCALEValue, as typeID: Int, into w: inout SCALEWriter, depth: Int = 0) throws(ChainError) {
        guard depth < Self.maxDepth else { throw mismatch(typeID, value, "nested too deep") }
        let info = try type(typeID)
        switch info.definition {
        case .primitive(let p):
            try encodePrimitive(p, value.unwrapped, typeID, &w)
        case .composite(let fields, _):
            if case .composite(let names, let values) = value, values.count == fields.count || fields.count != 1 {
                try encodeFields(fields, names: names, values: values, typeID: typeID, &w, depth: depth)
            } else if fields.count == 1 {
                try encode(value, as: fields[0].type, into: &w, depth: depth + 1)
            } else {
                throw mismatch(typeID, value, "expected a struct of \(fields.count) fields")
            }
        case .variant(let variants, _):
            guard case .variant(_, let name, let names, let values) = value else { throw mismatch(typeID, value, "expected a variant") }
            guard let variant = variants.first(where: { $0.name == name }) else {
                throw mismatch(typeID, value, "no variant \(name) (has \(variants.map(\.name).joined(separator: ", ")))")
            }
            w.appendRaw([variant.index])
            try encodeFields(variant.fields, names: names, values: values, typeID: typeID, &w, depth: depth)
        case .sequence(let element):
            if case .primitive(.u8) = types[element].definition, let bytes = value.bytes {
                w.appendByteVector(bytes)
                return
            }
            guard let items = value.items else { throw mismatch(typeID, value, "expected a sequence") }
            w.appendCompact(UInt64(items.count))
            for item in items { try encode(item, as: element, into: &w, depth: depth + 1) }
        case .array(let length, let element):
            if case .primitive(.u8) = types[element].definition, let bytes = value.bytes {
                guard bytes.count == length else { throw mismatch(typeID, value, "expected \(length) bytes, got \(bytes.count)") }
                w.appendRaw(bytes)
                return
            }
            guard let items = value.items, items.count == length else { throw mismatch(typeID, value, "expected \(length) elements") }
            for item in items { try encode(item, as: element, into: &w, depth: depth + 1) }
        case .tuple(let elements):
            guard case .composite(_, let values) = value, values.count == elements.count else {
                throw mismatch(typeID, value, "expected a tuple of \(elements.count)")
            }
            for (element, item) in zip(elements, values) { try encode(item, as: element, into: &w, depth: depth + 1) }
        case .compact:
            switch value.unwrapped {
            case .uint(let v): w.appendCompact(v)
            case .bigInt(let raw): w.appendCompactWide(littleEndian: raw)
            default: throw mismatch(typeID, value, "expected an unsigned integer")
            }
        case .bitSequence:
            throw mismatch(typeID, value, "bit sequences are not encoded by this client")
        }
    }

    private func encodeFields(_ fields: [Field], names: [String?], values: [SCALEValue], typeID: Int,
                              _ w: inout SCALEWriter, depth: Int) throws(ChainError) {
        let byName = !fields.isEmpty && fields.allSatisfy { $0.name != nil } && names.count == values.count && names.allSatisfy { $0 != nil }
        if byName {
            for field in fields {
                guard let i = names.firstIndex(of: field.name) else {
                    throw .invalidInput("cannot encode \(name(of: typeID)): field \(field.name ?? "?") is missing")
                }
                try encode(values[i], as: field.type, into: &w, depth: depth + 1)
            }
            guard values.count == fields.count else {
                throw .invalidInput("cannot encode \(name(of: typeID)): \(values.count) fields given, the type has \(fields.count)")
            }
        } else {
            guard values.count == fields.count else {
                throw .invalidInput("cannot encode \(name(of: typeID)): \(values.count) values given, the type has \(fields.count) fields")
            }
            for (field, item) in zip(fields, values) { try encode(item, as: field.type, into: &w, depth: depth + 1) }
        }
    }

    private func encodePrimitive(_ p: Primitive, _ value: SCALEValue, _ typeID: Int, _ w: inout SCALEWriter) throws(ChainError) {
        func unsigned(_ bits: Int) throws(ChainError) -> UInt64 {
            guard case .uint(let v) = value else { throw mismatch(typeID, value, "expected an unsigned integer") }
            guard bits == 64 || v >> UInt64(bits) == 0 else { throw mismatch(typeID, value, "out of range for \(bits) bits") }
            return v
        }
        func signed(_ bits: Int) throws(ChainError) -> Int64 {
            guard case .int(let v) = value else { throw mismatch(typeID, value, "expected a signed integer") }
            guard bits == 64 || (v >= -(1 << Int64(bits - 1)) && v < 1 << Int64(bits - 1)) else {
                throw mismatch(typeID, value, "out of range for \(bits) bits")
            }
            return v
        }
        func wide(_ size: Int) throws(ChainError) -> [UInt8] {
            switch value {
            case .uint(let v): return (0..<size).map { $0 < 8 ? UInt8(truncatingIfNeeded: v >> UInt64(8 * $0)) : 0 }
            case .bigInt(let raw) where raw.count <= size: return raw + [UInt8](repeating: 0, count: size - raw.count)
            default: throw mismatch(typeID, value, "expected an integer of at most \(size) bytes")
            }
        }
        switch p {
        case .bool:
            guard case .bool(let b) = value else { throw mismatch(typeID, value) }
            w.appendBool(b)
        case .u8: w.append(UInt8(try unsigned(8)))
        case .u16: w.append(UInt16(try unsigned(16)))
        case .u32: w.append(UInt32(try unsigned(32)))
        case .u64: w.append(try unsigned(64))
        case .i8: w.append(Int8(try signed(8)))
        case .i16: w.append(Int16(try signed(16)))
        case .i32: w.append(Int32(try signed(32)))
        case .i64: w.append(try signed(64))
        case .u128, .i128: w.appendRaw(try wide(16))
        case .u256, .i256: w.appendRaw(try wide(32))
        case .str:
            guard case .string(let s) = value else { throw mismatch(typeID, value) }
            w.appendString(s)
        case .char:
            guard case .string(let s) = value, let scalar = s.unicodeScalars.first, s.unicodeScalars.count == 1 else { throw mismatch(typeID, value) }
            w.append(scalar.value)
        }
    }
}
