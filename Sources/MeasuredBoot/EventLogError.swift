import Foundation

/// The one error type of `MeasuredBoot`: a stable code, a reason a person can act on, and where in
/// the input it happened (byte offset, event index, field).
public struct EventLogError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The input ends inside a field.
        public static let truncated = Self(rawValue: "truncated")
        /// A length or count is larger than the format or the remaining input allows.
        public static let sizeExceedsLimit = Self(rawValue: "size-exceeds-limit")
        /// A value the format does not allow (bad header, unknown algorithm, malformed UTF-16…).
        public static let invalidValue = Self(rawValue: "invalid-value")
        /// Bytes are left over after a complete structure.
        public static let trailingBytes = Self(rawValue: "trailing-bytes")
        /// Nesting deeper than the parser allows (device paths).
        public static let tooDeep = Self(rawValue: "too-deep")
        /// A digest algorithm the replay cannot compute.
        public static let unsupportedAlgorithm = Self(rawValue: "unsupported-algorithm")
        /// Bad input to a command (a PCR file, an option).
        public static let invalidInput = Self(rawValue: "invalid-input")
        public var description: String { rawValue }
    }

    public var code: Code
    public var reason: String
    /// Byte offset in the log (or in the structure being decoded, when `eventIndex` is nil).
    public var offset: Int?
    /// Index of the event (0-based, as tpm2_eventlog's EventNum) the error is in.
    public var eventIndex: Int?
    /// The field, as a path (`TCG_PCR_EVENT2.digests[1].digest`).
    public var field: String?

    public init(_ code: Code, _ reason: String, offset: Int? = nil, eventIndex: Int? = nil, field: String? = nil) {
        self.code = code
        self.reason = reason
        self.offset = offset
        self.eventIndex = eventIndex
        self.field = field
    }

    public var description: String {
        var where_: [String] = []
        if let eventIndex { where_.append("event \(eventIndex)") }
        if let field { where_.append(field) }
        if let offset { where_.append("byte offset \(offset)") }
        return "event log error [\(code)]" + (where_.isEmpty ? "" : " at " + where_.joined(separator: ", ")) + ": " + reason
    }
}

/// A little-endian cursor over untrusted bytes (TCG logs and UEFI structures are little-endian).
/// Every read checks the remaining length first; nothing is allocated from an unchecked length.
struct LEReader {
    let bytes: [UInt8]
    private(set) var offset: Int
    let end: Int
    /// Added to offsets in errors, so nested readers report positions in the whole log.
    let base: Int
    var field: String

    init(_ bytes: [UInt8], base: Int = 0, field: String = "") {
        self.bytes = bytes
        self.offset = 0
        self.end = bytes.count
        self.base = base
        self.field = field
    }

    init(_ bytes: [UInt8], range: Range<Int>, base: Int = 0, field: String = "") {
        self.bytes = bytes
        self.offset = range.lowerBound
        self.end = range.upperBound
        self.base = base
        self.field = field
    }

    var remaining: Int { end - offset }
    var isAtEnd: Bool { offset >= end }
    var position: Int { base + offset }

    func error(_ code: EventLogError.Code, _ reason: String, field f: String? = nil) -> EventLogError {
        EventLogError(code, reason, offset: position, field: f ?? (field.isEmpty ? nil : field))
    }

    mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws(EventLogError) {
        guard n >= 0, n <= remaining else {
            throw error(.truncated, "\(what()) needs \(n) bytes but only \(remaining) remain")
        }
    }

    mutating func u8(_ what: String = "byte") throws(EventLogError) -> UInt8 {
        try need(1, what)
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u16(_ what: String = "UINT16") throws(EventLogError) -> UInt16 {
        try need(2, what)
        defer { offset += 2 }
        return UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }

    mutating func u32(_ what: String = "UINT32") throws(EventLogError) -> UInt32 {
        try need(4, what)
        defer { offset += 4 }
        return UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24
    }

    mutating func u64(_ what: String = "UINT64") throws(EventLogError) -> UInt64 {
        let lo = try u32(what), hi = try u32(what)
        return UInt64(lo) | UInt64(hi) << 32
    }

    mutating func bytes(_ n: Int, _ what: @autoclosure () -> String) throws(EventLogError) -> [UInt8] {
        try need(n, what())
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }

    /// A byte count read from the input, checked against what remains and a hard cap.
    mutating func length(_ raw: UInt64, cap: Int, _ what: String) throws(EventLogError) -> Int {
        guard raw <= UInt64(cap) else {
            throw error(.sizeExceedsLimit, "\(what) is \(raw), more than the limit \(cap)")
        }
        let n = Int(raw)
        guard n <= remaining else {
            throw error(.truncated, "\(what) is \(n) but only \(remaining) bytes remain")
        }
        return n
    }

    mutating func guid(_ what: String = "GUID") throws(EventLogError) -> EFIGUID {
        try need(16, what)
        defer { offset += 16 }
        return EFIGUID(bytes: bytes[offset..<offset + 16])
    }

    mutating func skip(_ n: Int, _ what: @autoclosure () -> String) throws(EventLogError) {
        try need(n, what())
        offset += n
    }

    func requireEnd(_ what: String) throws(EventLogError) {
        guard isAtEnd else { throw error(.trailingBytes, "\(remaining) bytes left after \(what)") }
    }
}

/// An EFI_GUID (UEFI: a UINT32, two UINT16 little-endian, then 8 bytes), compared by its bytes.
public struct EFIGUID: Hashable, Sendable, CustomStringConvertible, Codable {
    public var bytes: [UInt8]

    public init<C: Collection<UInt8>>(bytes c: C) { bytes = Array(c) }

    /// From the registry form `8be4df61-93ca-11d2-aa0d-00e098032b8c`.
    public init?(_ text: String) {
        let hex = text.filter { $0 != "-" }
        guard hex.count == 32, text.count == 36 else { return nil }
        var raw: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            guard let b = UInt8(hex[i..<j], radix: 16) else { return nil }
            raw.append(b)
            i = j
        }
        bytes = [raw[3], raw[2], raw[1], raw[0], raw[5], raw[4], raw[7], raw[6]] + raw[8...]
    }

    public var description: String {
        func h(_ r: [UInt8]) -> String { r.map { byteHex($0) }.joined() }
        let b = bytes
        return h([b[3], b[2], b[1], b[0]]) + "-" + h([b[5], b[4]]) + "-" + h([b[7], b[6]]) + "-" + h(Array(b[8..<10])) + "-"
            + h(Array(b[10..<16]))
    }

    public init(from decoder: any Decoder) throws {
        let s = try decoder.singleValueContainer().decode(String.self)
        guard let g = EFIGUID(s) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a GUID: \(s)"))
        }
        self = g
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    // Well-known GUIDs (UEFI specification).
    public static let globalVariable = EFIGUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")!
    public static let imageSecurityDatabase = EFIGUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")!
    public static let shimLock = EFIGUID("605dab50-e046-4300-abb6-3dd810dd8b23")!
    public static let certX509 = EFIGUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")!
    public static let certSHA256 = EFIGUID("c1c41626-504c-4092-aca9-41f936934328")!
    public static let certSHA1 = EFIGUID("826ca512-cf10-4ac9-b187-be01496631bd")!
    public static let certSHA384 = EFIGUID("ff3e5307-9fd0-48c9-85f1-8ad56c701e01")!
    public static let certSHA512 = EFIGUID("093e0fae-a6c4-4f50-9f1b-d41e2b89c19a")!
    public static let certRSA2048 = EFIGUID("3c5766e8-269c-4e34-aa14-ed776e85b3b6")!
    public static let certX509SHA256 = EFIGUID("3bd2a492-96c0-4079-b420-fcf98ef103ed")!
    public static let certX509SHA384 = EFIGUID("7076876e-80c2-4ee6-aad2-28b349a6865b")!
    public static let certX509SHA512 = EFIGUID("446dbf63-2502-4cda-bcfa-2465d2b0fe9d")!
}

let hexDigits: [Character] = Array("0123456789abcdef")
@inline(__always) func byteHex(_ b: UInt8) -> String {
    String([hexDigits[Int(b >> 4)], hexDigits[Int(b & 15)]])
}

/// Lower-case hex of bytes.
public func hexString<C: Collection<UInt8>>(_ bytes: C) -> String {
    // Through contiguous storage: iterating a generic collection byte by byte, unspecialized
    // across modules, cost more than the formatting (TLaunchBench --only-firmware).
    bytes.withContiguousStorageIfAvailable(hexString(buffer:)) ?? Array(bytes).withUnsafeBufferPointer(hexString(buffer:))
}

func hexString(buffer bytes: UnsafeBufferPointer<UInt8>) -> String {
    guard !bytes.isEmpty else { return "" }
    @inline(__always) func digit(_ v: UInt8) -> UInt8 { v < 10 ? v &+ 0x30 : v &+ 0x57 }
    return String(unsafeUninitializedCapacity: bytes.count * 2) { out in
        for (i, b) in bytes.enumerated() {
            out[2 * i] = digit(b >> 4)
            out[2 * i + 1] = digit(b & 15)
        }
        return bytes.count * 2
    }
}

/// Bytes from hex (an optional `0x` prefix, either case); nil when not hex.
public func bytesFromHex(_ text: String) -> [UInt8]? {
    var s = Substring(text.trimmingCharacters(in: .whitespaces))
    if s.hasPrefix("0x") || s.hasPrefix("0X") { s = s.dropFirst(2) }
    let u = Array(s.utf8)
    guard u.count % 2 == 0 else { return nil }
    var out = [UInt8]()
    out.reserveCapacity(u.count / 2)
    func nib(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: return c - 48
        case 65...70: return c - 55
        case 97...102: return c - 87
        default: return nil
        }
    }
    var i = 0
    while i < u.count {
        guard let a = nib(u[i]), let b = nib(u[i + 1]) else { return nil }
        out.append(a << 4 | b)
        i += 2
    }
    return out
}
