/// JSON written straight into bytes, for the values every attestation encodes (`LeanJSONEncoder`
/// in the service; `JSONSelfWriting` values).
public enum JSONText {
    /// `s` as a JSON string — RFC 8259 §7: quote, backslash and control characters escaped,
    /// everything else as UTF-8 (slashes too, as Foundation with `.withoutEscapingSlashes`).
    public static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { bytes in
            var start = 0
            var i = 0
            let n = bytes.count
            while i < n {
                // Eight bytes at a time while none needs escaping (SWAR: a byte below 0x20, or
                // equal to '"' or '\\', sets its high bit in the test word).
                if i + 8 <= n {
                    let w = UnsafeRawPointer(bytes.baseAddress! + i).loadUnaligned(as: UInt64.self)
                    let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
                    let quote = w ^ (ones &* 0x22), backslash = w ^ (ones &* 0x5c)
                    let special = ((w &- ones &* 0x20) | (quote &- ones) | (backslash &- ones)) & ~w & highs
                    if special == 0 { i += 8; continue }
                }
                let b = bytes[i]
                i += 1
                guard b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") else { continue }
                let at = i - 1
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<at]))
                start = at + 1
                out.append(UInt8(ascii: "\\"))
                switch b {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(b)
                case 0x0a: out.append(UInt8(ascii: "n"))
                case 0x0d: out.append(UInt8(ascii: "r"))
                case 0x09: out.append(UInt8(ascii: "t"))
                case 0x08: out.append(UInt8(ascii: "b"))
                case 0x0c: out.append(UInt8(ascii: "f"))
                default:
                    let hex: StaticString = "0123456789abcdef"
                    out.append(contentsOf: [UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                    out.append(hex.utf8Start[Int(b >> 4)]); out.append(hex.utf8Start[Int(b & 15)])
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start...]))
        }
        out.append(UInt8(ascii: "\""))
    }

    /// An integer as Swift writes it (`LeanJSONEncoder` writes integers so).
    @inline(__always) public static func appendInt<T: BinaryInteger>(_ n: T, to out: inout [UInt8]) {
        out.append(contentsOf: String(n).utf8)
    }

    @inline(__always) public static func appendBool(_ b: Bool, to out: inout [UInt8]) {
        b ? append("true", to: &out) : append("false", to: &out)
    }

    /// An array of values that write themselves.
    public static func appendArray<Element: JSONSelfWriting>(_ items: [Element], sortedKeys: Bool, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "["))
        for i in items.indices {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            items[i].writeJSON(to: &out, sortedKeys: sortedKeys)
        }
        out.append(UInt8(ascii: "]"))
    }

    /// A JSON object of a type's fields: `{`, then each field `field(i)` writes, preceded by its
    /// key — in the order of `keys` or, when `sortedKeys`, in the keys' sorted order — then `}`.
    /// `field` returns false to leave its field out (an optional that is nil, as `Encodable`'s
    /// `encodeIfPresent` does); its key is then taken back. `field` must not throw or escape.
    public static func appendObject(_ keys: JSONKeys, sortedKeys: Bool, to out: inout [UInt8],
                                    _ field: (_ index: Int, _ out: inout [UInt8]) -> Bool) {
        out.append(UInt8(ascii: "{"))
        var first = true
        for position in 0..<keys.written.count {
            let i = sortedKeys ? keys.sortedOrder[position] : position
            let mark = out.count
            if !first { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: keys.written[i])
            if field(i, &out) { first = false } else { out.removeSubrange(mark...) }
        }
        out.append(UInt8(ascii: "}"))
    }

    /// `literal`'s bytes as they are (punctuation, and keys known to need no escaping).
    @inline(__always) public static func append(_ literal: StaticString, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }
}

/// A value that writes its own JSON: the bytes `LeanJSONEncoder` would write for it through its
/// `Encodable` conformance, in either key order, without a container per value. For the values an
/// attestation encodes many times over — its checks, in the answer, the stored result and the token
/// — where the generic path was most of the encoding's time. Other encoders use `Encodable` as
/// before; `LeanJSONEncoderTests` compares both ways for every shape.
public protocol JSONSelfWriting: Encodable {
    /// Appends the value's JSON: keys in byte order when `sortedKeys`, else in the order
    /// `encode(to:)` writes them.
    func writeJSON(to out: inout [UInt8], sortedKeys: Bool)
}

/// A type's JSON keys in its `CodingKeys` order, each written once as `"key":`, with the order
/// they sort in (`String`'s `<`, as `LeanJSONEncoder` sorts): for ``JSONText/appendObject``.
public struct JSONKeys: Sendable {
    public let keys: [String]
    let written: [[UInt8]]
    let sortedOrder: [Int]

    public init(_ keys: [String]) {
        precondition(Set(keys).count == keys.count, "an object's keys are distinct")
        self.keys = keys
        written = keys.map { key in
            var bytes: [UInt8] = []
            JSONText.appendString(key, to: &bytes)
            bytes.append(UInt8(ascii: ":"))
            return bytes
        }
        sortedOrder = keys.indices.sorted { keys[$0] < keys[$1] }
    }
}
