/// The one error type of `SecureBoot`: a stable code, a reason a person can act on, and where
/// (byte offset, structure and field).
public struct SecureBootError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public static let truncated = Self(rawValue: "truncated")
        public static let invalidPE = Self(rawValue: "invalid-pe")
        public static let invalidSignature = Self(rawValue: "invalid-signature-data")
        public static let unsupported = Self(rawValue: "unsupported")
        public static let invalidInput = Self(rawValue: "invalid-input")
        public static let invalidVariableStore = Self(rawValue: "invalid-variable-store")
        public static let signing = Self(rawValue: "signing")
        public var description: String { rawValue }
    }

    public var code: Code
    public var reason: String
    public var offset: Int?
    public var field: String?

    public init(_ code: Code, _ reason: String, offset: Int? = nil, field: String? = nil) {
        self.code = code
        self.reason = reason
        self.offset = offset
        self.field = field
    }

    public var description: String {
        var at: [String] = []
        if let field { at.append(field) }
        if let offset { at.append("byte offset \(offset)") }
        return "secure boot error [\(code)]" + (at.isEmpty ? "" : " at " + at.joined(separator: ", ")) + ": " + reason
    }
}

/// Little-endian reads at absolute offsets, each checked against the buffer.
struct LE {
    let bytes: [UInt8]
    let structure: String

    func need(_ offset: Int, _ count: Int, _ field: @autoclosure () -> String) throws(SecureBootError) {
        guard offset >= 0, count >= 0, offset <= bytes.count, count <= bytes.count - offset else {
            throw SecureBootError(.truncated, "\(field()) needs \(count) bytes at \(offset) but the file has \(bytes.count)",
                                  offset: offset, field: structure + "." + field())
        }
    }
    func u16(_ o: Int, _ f: @autoclosure () -> String) throws(SecureBootError) -> UInt16 {
        try need(o, 2, f())
        return UInt16(bytes[o]) | UInt16(bytes[o + 1]) << 8
    }
    func u32(_ o: Int, _ f: @autoclosure () -> String) throws(SecureBootError) -> UInt32 {
        try need(o, 4, f())
        return UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24
    }
}
