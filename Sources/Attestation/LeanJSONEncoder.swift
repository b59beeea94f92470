import AttestationAPI
import Foundation

/// A JSON encoder for the service's hot path (every attestation encodes its outcome, its stored
/// result and its token's claims): the same JSON that Foundation's `JSONEncoder` writes with
/// `.withoutEscapingSlashes` — `Data` as base64, `URL` as its string, `Date` as Foundation's default
/// (seconds since 2001 as a number), optionals left out when nil — with keys sorted or in
/// the order the type encodes them. Built as a small tree of reference nodes (an `Encoder` may
/// hand out a container and fill it later) and written in one pass; about a third of
/// Foundation's time on the outcome (`TLaunchBench --attestation-breakdown`).
public struct LeanJSONEncoder: Sendable {
    /// Keys in byte order (stable output for dictionaries, whose order differs per process).
    public var sortedKeys: Bool
    public init(sortedKeys: Bool = true) { self.sortedKeys = sortedKeys }

    public func encode<T: Encodable>(_ value: T) throws -> Data { Data(try encodeBytes(value)) }

    public func encodeBytes<T: Encodable>(_ value: T) throws -> [UInt8] {
        let node = try LeanNode.encode(value, path: [])
        var out: [UInt8] = []
        out.reserveCapacity(1024)
        node.write(to: &out, sorted: sortedKeys)
        return out
    }
}

/// A value whose JSON, as `LeanJSONEncoder` writes it with sorted keys, was made once and is
/// written again as it is (a boot's baseline components, the same in every attestation of that
/// boot). Other encoders encode the value itself, so the output is the same either way
/// (`LeanJSONEncoderTests`); an encoder with unsorted keys must not be handed one.
struct PreEncoded<Value: Encodable>: Encodable, PreEncodedJSON {
    let value: Value
    let json: [UInt8]
    func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
}

protocol PreEncodedJSON { var json: [UInt8] { get } }

/// One JSON value under construction.
enum LeanNode {
    case literal([UInt8])        // a number, true, false or null, as written
    case string(String)
    case object(LeanObject)
    case array(LeanArray)
    case selfWriting(any JSONSelfWriting)

    static func encode<T: Encodable>(_ value: T, path: [any CodingKey]) throws -> LeanNode {
        switch value {
        case let s as String: return .string(s)
        case let b as Bool: return .literal(b ? Array("true".utf8) : Array("false".utf8))
        case let d as Data: return .string(d.base64EncodedString())
        case let u as URL: return .string(u.absoluteString)
        case let p as any PreEncodedJSON: return .literal(p.json)
        case let w as any JSONSelfWriting: return .selfWriting(w)
        default: break
        }
        let encoder = LeanEncoder(codingPath: path)
        try value.encode(to: encoder)
        guard let node = encoder.node else {
            throw EncodingError.invalidValue(value, .init(codingPath: path, debugDescription: "\(T.self) encoded no value"))
        }
        return node
    }

    func write(to out: inout [UInt8], sorted: Bool) {
        switch self {
        case .literal(let bytes): out += bytes
        case .string(let s): JSONText.appendString(s, to: &out)
        case .selfWriting(let w): w.writeJSON(to: &out, sortedKeys: sorted)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (i, item) in a.items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                item.write(to: &out, sorted: sorted)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            var entries = o.entries
            if sorted, zip(entries, entries.dropFirst()).contains(where: { $0.key >= $1.key }) { entries.sort { $0.key < $1.key } }
            for (i, entry) in entries.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONText.appendString(entry.key, to: &out)
                out.append(UInt8(ascii: ":"))
                entry.value.write(to: &out, sorted: sorted)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func number(_ d: Double, path: [any CodingKey]) throws -> LeanNode {
        guard d.isFinite else {
            throw EncodingError.invalidValue(d, .init(codingPath: path, debugDescription: "\(d) is not a JSON number"))
        }
        // Integral values as integers (as Foundation writes them), others in Swift's shortest
        // round-tripping form.
        if d == d.rounded(), abs(d) < 1e15 { return .literal(Array(String(Int64(d)).utf8)) }
        return .literal(Array("\(d)".utf8))
    }
}

final class LeanObject { var entries: [(key: String, value: LeanNode)] = [] }
final class LeanArray { var items: [LeanNode] = [] }

final class LeanEncoder: Encoder {
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    var node: LeanNode?
    init(codingPath: [any CodingKey]) { self.codingPath = codingPath }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let object: LeanObject
        if case .object(let o) = node { object = o } else { object = LeanObject(); node = .object(object) }
        return KeyedEncodingContainer(LeanKeyed<Key>(object: object, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let array: LeanArray
        if case .array(let a) = node { array = a } else { array = LeanArray(); node = .array(array) }
        return LeanUnkeyed(array: array, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { LeanSingle(encoder: self) }
}

/// A nested encoder whose value lands in a parent's slot once it is known.
final class LeanSlotEncoder: Encoder {
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    let inner: LeanEncoder
    let place: (LeanNode) -> Void
    init(codingPath: [any CodingKey], place: @escaping (LeanNode) -> Void) {
        self.codingPath = codingPath; self.inner = LeanEncoder(codingPath: codingPath); self.place = place
    }
    deinit { place(inner.node ?? .object(LeanObject())) }
    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> { inner.container(keyedBy: type) }
    func unkeyedContainer() -> any UnkeyedEncodingContainer { inner.unkeyedContainer() }
    func singleValueContainer() -> any SingleValueEncodingContainer { inner.singleValueContainer() }
}

struct LeanKeyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let object: LeanObject
    let codingPath: [any CodingKey]

    mutating func put(_ key: Key, _ node: LeanNode) { object.entries.append((key.stringValue, node)) }
    mutating func encodeNil(forKey key: Key) throws { put(key, .literal(Array("null".utf8))) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { put(key, .literal(Array((value ? "true" : "false").utf8))) }
    mutating func encode(_ value: String, forKey key: Key) throws { put(key, .string(value)) }
    mutating func encode(_ value: Double, forKey key: Key) throws { put(key, try LeanNode.number(value, path: codingPath + [key])) }
    mutating func encode(_ value: Float, forKey key: Key) throws { put(key, try LeanNode.number(Double(value), path: codingPath + [key])) }
    mutating func encode(_ value: Int, forKey key: Key) throws { put(key, .literal(Array(String(value).utf8))) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { put(key, .literal(Array(String(value).utf8))) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { put(key, .literal(Array(String(value).utf8))) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { put(key, .literal(Array(String(value).utf8))) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { put(key, .literal(Array(String(value).utf8))) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { put(key, .literal(Array(String(value).utf8))) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { put(key, .literal(Array(String(value).utf8))) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { put(key, .literal(Array(String(value).utf8))) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { put(key, .literal(Array(String(value).utf8))) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { put(key, .literal(Array(String(value).utf8))) }
    mutating func encode<T: Encodable>(_ value: T,
                                       forKey key: Key) throws { put(key, try LeanNode.encode(value, path: codingPath + [key])) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type,
                                                        forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let o = LeanObject()
        put(key, .object(o))
        return KeyedEncodingContainer(LeanKeyed<NestedKey>(object: o, codingPath: codingPath + [key]))
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let a = LeanArray()
        put(key, .array(a))
        return LeanUnkeyed(array: a, codingPath: codingPath + [key])
    }
    mutating func superEncoder() -> any Encoder { superEncoder(named: "super") }
    mutating func superEncoder(forKey key: Key) -> any Encoder { superEncoder(named: key.stringValue) }
    private func superEncoder(named name: String) -> any Encoder {
        let object = self.object
        let index = object.entries.count
        object.entries.append((name, .literal(Array("null".utf8))))
        return LeanSlotEncoder(codingPath: codingPath) { object.entries[index].value = $0 }
    }
}

struct LeanUnkeyed: UnkeyedEncodingContainer {
    let array: LeanArray
    let codingPath: [any CodingKey]
    var count: Int { array.items.count }

    struct Index: CodingKey {
        var intValue: Int?
        var stringValue: String { "Index \(intValue ?? 0)" }
        init(intValue: Int) { self.intValue = intValue }
        init?(stringValue: String) { nil }
    }
    var path: [any CodingKey] { codingPath + [Index(intValue: array.items.count)] }

    mutating func encodeNil() throws { array.items.append(.literal(Array("null".utf8))) }
    mutating func encode(_ value: Bool) throws { array.items.append(.literal(Array((value ? "true" : "false").utf8))) }
    mutating func encode(_ value: String) throws { array.items.append(.string(value)) }
    mutating func encode(_ value: Double) throws { array.items.append(try LeanNode.number(value, path: path)) }
    mutating func encode(_ value: Float) throws { array.items.append(try LeanNode.number(Double(value), path: path)) }
    mutating func encode(_ value: Int) throws { array.items.append(.literal(Array(String(value).utf8))) }
    mutating func encode(_ value: Int64) throws { array.items.append(.literal(Array(String(value).utf8))) }
    mutating func encode(_ value: UInt8) throws { array.items.append(.literal(Array(String(value).utf8))) }
    mutating func encode(_ value: UInt32) throws { array.items.append(.literal(Array(String(value).utf8))) }
    mutating func encode(_ value: UInt64) throws { array.items.append(.literal(Array(String(value).utf8))) }
    mutating func encode<T: Encodable>(_ value: T) throws { array.items.append(try LeanNode.encode(value, path: path)) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let o = LeanObject()
        let p = path
        array.items.append(.object(o))
        return KeyedEncodingContainer(LeanKeyed<NestedKey>(object: o, codingPath: p))
    }
    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let a = LeanArray()
        let p = path
        array.items.append(.array(a))
        return LeanUnkeyed(array: a, codingPath: p)
    }
    mutating func superEncoder() -> any Encoder {
        let array = self.array
        let index = array.items.count
        let p = path
        array.items.append(.literal(Array("null".utf8)))
        return LeanSlotEncoder(codingPath: p) { array.items[index] = $0 }
    }
}

struct LeanSingle: SingleValueEncodingContainer {
    let encoder: LeanEncoder
    var codingPath: [any CodingKey] { encoder.codingPath }
    func set(_ node: LeanNode) { encoder.node = node }
    mutating func encodeNil() throws { set(.literal(Array("null".utf8))) }
    mutating func encode(_ value: Bool) throws { set(.literal(Array((value ? "true" : "false").utf8))) }
    mutating func encode(_ value: String) throws { set(.string(value)) }
    mutating func encode(_ value: Double) throws { set(try LeanNode.number(value, path: codingPath)) }
    mutating func encode(_ value: Float) throws { set(try LeanNode.number(Double(value), path: codingPath)) }
    mutating func encode(_ value: Int) throws { set(.literal(Array(String(value).utf8))) }
    mutating func encode(_ value: Int8) throws { set(.literal(Array(String(value).utf8))) }
    mutating func encode(_ value: Int16) throws { set(.literal(Array(String(value).utf8))) }
    mutating func encode(_ value: Int32) throws { set(.literal(Array(String(value).utf8))) }
    mutating func encode(_ value: Int64) throws { set(.literal(Array(String(value).utf8))) }
    mutating func encode(_ value: UInt) throws { set(.literal(Array(String(value).utf8))) }
    mutating func encode(_ value: UInt8) throws { set(.literal(Array(String(value).utf8))) }
    mutating func encode(_ value: UInt16) throws { set(.literal(Array(String(value).utf8))) }
    mutating func encode(_ value: UInt32) throws { set(.literal(Array(String(value).utf8))) }
    mutating func encode(_ value: UInt64) throws { set(.literal(Array(String(value).utf8))) }
    mutating func encode<T: Encodable>(_ value: T) throws { set(try LeanNode.encode(value, path: codingPath)) }
}
