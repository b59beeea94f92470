import Foundation
import MeasuredBoot
import TPM2

/// What a guest attestation agent sends: a quote (the TPMS_ATTEST bytes exactly as signed, and
/// the TPMT_SIGNATURE), the PCR values it covers, the TCG event log, and the nonce it answers.
public struct Evidence: Sendable, Codable, Hashable {
    public var quote: String          // hex TPMS_ATTEST
    public var signature: String      // hex TPMT_SIGNATURE
    public var pcrs: [String: [String: String]]   // bank → PCR → hex
    public var eventLog: String       // base64
    public var nonce: String          // hex
    /// The IMA log (ascii_runtime_measurements), when the guest runs IMA.
    public var imaLog: String?

    public init(quote: TPMSignedAttest, pcrs: [TPMPCRBank], eventLog: [UInt8], nonce: [UInt8]) throws {
        self.quote = hexString(quote.attestBytes)
        self.signature = hexString(try quote.signature.tpmBytes())
        var out: [String: [String: String]] = [:]
        for b in pcrs {
            out[PCRValues.bankName(b.hashAlg)] = Dictionary(uniqueKeysWithValues: b.values.map { (String($0.key), hexString($0.value)) })
        }
        self.pcrs = out
        self.eventLog = Data(eventLog).base64EncodedString()
        self.nonce = hexString(nonce)
    }
}

/// Why a request body is not evidence: where in the bytes, which field, and what was wrong.
public struct EvidenceJSONError: Error, Sendable, CustomStringConvertible, Equatable {
    public var offset: Int
    public var field: String?
    public var reason: String
    /// Inside a member evidence does not have (read for well-formedness only).
    package var inIgnoredMember = false
    public init(offset: Int, field: String?, _ reason: String) { self.offset = offset; self.field = field; self.reason = reason }
    public var description: String {
        if reason.hasPrefix("missing field") { return "evidence: \(reason) (the JSON ends at byte \(offset))" }
        return "the body is not valid JSON evidence at byte \(offset)\(field.map { " (in \($0))" } ?? ""): \(reason)"
    }
}

extension Evidence {
    public init(quote: String, signature: String, pcrs: [String: [String: String]], eventLog: String, nonce: String,
                imaLog: String? = nil) {
        self.quote = quote; self.signature = signature; self.pcrs = pcrs; self.eventLog = eventLog; self.nonce = nonce; self.imaLog = imaLog
    }

    /// Evidence from its JSON (RFC 8259), read directly rather than through Foundation's decoder
    /// (a tenth of an attestation's time there): the fields `quote`, `signature`, `eventLog`,
    /// `nonce` (strings), `pcrs` (bank → PCR → hex), `imaLog` (a string, or null or absent).
    /// Stricter than JSONDecoder: a key given twice is refused (which one counts would be the
    /// reader's choice), and so are trailing commas and malformed strings anywhere; other members are read for well-formedness and
    /// ignored (as JSONDecoder ignores them), so agents may send more than this build knows.
    public init(json: some ContiguousBytes) throws(EvidenceJSONError) {
        let result: Result<Evidence, EvidenceJSONError> = json.withUnsafeBytes { raw in
            var r = JSONReader(raw.bindMemory(to: UInt8.self))
            do throws(EvidenceJSONError) { return .success(try r.evidence()) } catch { return .failure(error) }
        }
        self = try result.get()
    }
}

/// A reader over JSON bytes for the shapes evidence uses; every error names its byte offset.
struct JSONReader {
    let bytes: UnsafeBufferPointer<UInt8>
    var i = 0
    /// The keys from the top to the member being read (joined with "." in errors).
    var path: [String] = []
    var field: String? { path.isEmpty ? nil : path.joined(separator: ".") }
    var ignoring = false
    static let maxDepth = 64

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    func fail(_ reason: String, at offset: Int? = nil) -> EvidenceJSONError {
        var e = EvidenceJSONError(offset: offset ?? i, field: field, reason)
        e.inIgnoredMember = ignoring
        return e
    }

    mutating func evidence() throws(EvidenceJSONError) -> Evidence {
        var quote, signature, eventLog, nonce: String?
        var imaLog: String?
        var pcrs: [String: [String: String]]?
        try members { (key, r) throws(EvidenceJSONError) in
            switch key {
            case "quote": quote = try r.string()
            case "signature": signature = try r.string()
            case "eventLog": eventLog = try r.string()
            case "nonce": nonce = try r.string()
            case "imaLog": imaLog = try r.null() ? nil : r.string()
            case "pcrs":
                var banks: [String: [String: String]] = [:]
                try r.members { (bank, r) throws(EvidenceJSONError) in
                    var values: [String: String] = [:]
                    try r.members { (pcr, r) throws(EvidenceJSONError) in values[pcr] = try r.string() }
                    banks[bank] = values
                }
                pcrs = banks
            default:
                r.ignoring = true
                try r.skipValue(depth: 1)
                r.ignoring = false
            }
        }
        skipSpace()
        guard i == bytes.count else { throw fail("text after the evidence object") }
        func need<T>(_ v: T?, _ name: String) throws(EvidenceJSONError) -> T {
            guard let v else { throw EvidenceJSONError(offset: bytes.count, field: name, "missing field \(name)") }
            return v
        }
        return try Evidence(quote: need(quote, "quote"), signature: need(signature, "signature"), pcrs: need(pcrs, "pcrs"),
                            eventLog: need(eventLog, "eventLog"), nonce: need(nonce, "nonce"), imaLog: imaLog)
    }

    mutating func skipSpace() {
        while i < bytes.count {
            switch bytes[i] {
            case 0x20, 0x09, 0x0a, 0x0d: i += 1
            default: return
            }
        }
    }

    /// An object's members in order; each value is read by `body`. A key seen twice is an error.
    mutating func members(_ body: (String, inout JSONReader) throws(EvidenceJSONError) -> Void) throws(EvidenceJSONError) {
        skipSpace()
        guard i < bytes.count, bytes[i] == UInt8(ascii: "{") else { throw fail("expected an object") }
        i += 1
        var seen: Set<String> = []
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return }
        while true {
            skipSpace()
            let keyAt = i
            let key = try string()
            guard seen.insert(key).inserted else { throw fail("the key \"\(key)\" appears twice", at: keyAt) }
            path.append(key)
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':' after a key") }
            i += 1
            try body(key, &self)
            path.removeLast()
            if try closes(UInt8(ascii: "}"), "object") { return }
        }
    }

    /// After a member or an element: true when `close` ends the container (consumed), false
    /// after a ',' with more to come; a trailing comma is refused (RFC 8259 has none).
    /// `container`: "object" or "array", for the messages.
    mutating func closes(_ close: UInt8, _ container: String) throws(EvidenceJSONError) -> Bool {
        skipSpace()
        guard i < bytes.count else { throw fail("the \(container) is not closed") }
        if bytes[i] == UInt8(ascii: ",") {
            i += 1
            skipSpace()
            if i < bytes.count, bytes[i] == close { throw fail("a trailing comma in an \(container) (RFC 8259 has none)") }
            return false
        }
        if bytes[i] == close { i += 1; return true }
        throw fail("expected ',' or '\(Character(Unicode.Scalar(close)))' in an \(container)")
    }

    /// `null` (consumed) or not (nothing consumed).
    mutating func null() -> Bool {
        skipSpace()
        guard i + 4 <= bytes.count, bytes[i] == UInt8(ascii: "n"), bytes[i + 1] == UInt8(ascii: "u"),
              bytes[i + 2] == UInt8(ascii: "l"), bytes[i + 3] == UInt8(ascii: "l") else { return false }
        i += 4
        return true
    }

    mutating func string() throws(EvidenceJSONError) -> String {
        skipSpace()
        guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a string") }
        i += 1
        let start = i
        // The common case: no escapes, so the bytes are the string. Eight bytes at a time while
        // none of them can end the run (the base64 event log is most of a body), then byte by byte.
        var wide: UInt64 = 0
        while i + 8 <= bytes.count {
            let word = UnsafeRawPointer(bytes.baseAddress! + i).loadUnaligned(as: UInt64.self)
            if Self.mayEndARun(word) { break }
            wide |= word
            i += 8
        }
        var narrow: UInt8 = 0
        while i < bytes.count, bytes[i] != UInt8(ascii: "\""), bytes[i] != UInt8(ascii: "\\"), bytes[i] >= 0x20 {
            narrow |= bytes[i]
            i += 1
        }
        guard i < bytes.count else { throw fail("the string is not closed", at: start - 1) }
        if bytes[i] == UInt8(ascii: "\"") {
            i += 1
            let run = UnsafeBufferPointer(rebasing: bytes[start..<(i - 1)])
            // ASCII is valid UTF-8 as it stands; anything else is validated.
            if wide & 0x8080_8080_8080_8080 == 0, narrow < 0x80 { return String(decoding: run, as: UTF8.self) }
            guard let s = String(validating: run, as: UTF8.self) else { throw fail("the string is not valid UTF-8", at: start) }
            return s
        }
        // Escapes (Foundation writes every "/" of base64 as "\/"): runs between them copied whole.
        var text: [UInt8] = []
        text.reserveCapacity(i - start + 64)
        text.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<i]))
        while bytes[i] != UInt8(ascii: "\"") {
            guard bytes[i] >= 0x20 else { throw fail("a control character inside a string must be escaped") }
            try escape(into: &text)   // bytes[i] is a backslash
            let run = i
            while i < bytes.count, bytes[i] != UInt8(ascii: "\""), bytes[i] != UInt8(ascii: "\\"), bytes[i] >= 0x20 { i += 1 }
            text.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<i]))
            guard i < bytes.count else { throw fail("the string is not closed", at: start - 1) }
        }
        i += 1
        guard let s = String(validating: text, as: UTF8.self) else { throw fail("the string is not valid UTF-8", at: start) }
        return s
    }

    /// Whether any of a word's eight bytes is a quote, a backslash or a control character (the
    /// bytes that end a run of plain string text): the zero-byte test of each comparison, exact as a
    /// yes or no for the word (which byte it is, the byte loop finds).
    @inline(__always)
    static func mayEndARun(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        let quote = word ^ (ones &* 0x22), backslash = word ^ (ones &* 0x5C)
        let isQuote = (quote &- ones) & ~quote & highs
        let isBackslash = (backslash &- ones) & ~backslash & highs
        let isControl = (word &- ones &* 0x20) & ~word & highs
        return isQuote | isBackslash | isControl != 0
    }

    /// One escape sequence (RFC 8259 §7), its character appended as UTF-8.
    mutating func escape(into text: inout [UInt8]) throws(EvidenceJSONError) {
        let at = i
        guard i + 1 < bytes.count else { throw fail("an escape is cut short") }
        let c = bytes[i + 1]
        i += 2
        switch c {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): text.append(c)
        case UInt8(ascii: "b"): text.append(0x08)
        case UInt8(ascii: "f"): text.append(0x0c)
        case UInt8(ascii: "n"): text.append(0x0a)
        case UInt8(ascii: "r"): text.append(0x0d)
        case UInt8(ascii: "t"): text.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try hex4()
            if (0xd800..<0xdc00).contains(scalar) {
                guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                    throw fail("a high surrogate without its low surrogate", at: at)
                }
                i += 2
                let low = try hex4()
                guard (0xdc00..<0xe000).contains(low) else { throw fail("a high surrogate without its low surrogate", at: at) }
                scalar = 0x10000 + (scalar - 0xd800) << 10 + (low - 0xdc00)
            } else if (0xdc00..<0xe000).contains(scalar) {
                throw fail("a low surrogate on its own", at: at)
            }
            text += Array(String(Character(Unicode.Scalar(scalar)!)).utf8)
        default: throw fail("an unknown escape", at: at)
        }
    }

    mutating func hex4() throws(EvidenceJSONError) -> UInt32 {
        guard i + 4 <= bytes.count else { throw fail("\\u needs four hex digits") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[i]
            let d: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = b - UInt8(ascii: "A") + 10
            default: throw fail("\\u needs four hex digits")
            }
            v = v << 4 | UInt32(d)
            i += 1
        }
        return v
    }

    /// Any JSON value, checked for well-formedness and dropped.
    mutating func skipValue(depth: Int) throws(EvidenceJSONError) {
        guard depth <= Self.maxDepth else { throw fail("nested deeper than \(Self.maxDepth) levels") }
        skipSpace()
        guard i < bytes.count else { throw fail("expected a value") }
        switch bytes[i] {
        case UInt8(ascii: "\""): _ = try string()
        case UInt8(ascii: "{"): try members { (_, r) throws(EvidenceJSONError) in try r.skipValue(depth: depth + 1) }
        case UInt8(ascii: "["):
            i += 1
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return }
            while true {
                try skipValue(depth: depth + 1)
                if try closes(UInt8(ascii: "]"), "array") { return }
            }
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        default: try number()
        }
    }

    mutating func literal(_ word: StaticString) throws(EvidenceJSONError) {
        let n = word.utf8CodeUnitCount
        guard i + n <= bytes.count, (0..<n).allSatisfy({ bytes[i + $0] == word.utf8Start[$0] }) else { throw fail("expected \(word)") }
        i += n
    }

    /// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
    mutating func number() throws(EvidenceJSONError) {
        let start = i
        func digits(_ r: inout JSONReader) -> Int {
            let s = r.i
            while r.i < r.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(r.bytes[r.i]) { r.i += 1 }
            return r.i - s
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "-") { i += 1 }
        let whole = i
        guard digits(&self) > 0 else { throw fail("expected a value", at: start) }
        guard bytes[whole] != UInt8(ascii: "0") || i - whole == 1 else { throw fail("a number with a leading zero", at: start) }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            i += 1
            guard digits(&self) > 0 else { throw fail("a number needs digits after '.'", at: start) }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard digits(&self) > 0 else { throw fail("a number needs digits in its exponent", at: start) }
        }
    }
}
