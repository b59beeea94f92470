/// A TPM 2.0 wire structure (TPM 2.0 Library Part 2): declared once, fields in wire order.
///
/// `wire(_:)` is the single definition of the structure's wire form. It is run by a
/// ``TPMEncoder`` (which reads the fields and writes bytes) or by a ``TPMDecoder``
/// (which reads bytes and writes the fields), so encoding and decoding cannot disagree.
/// All integers are big-endian (Part 1, "Byte ordering").
public protocol TPMStructure: Sendable, Equatable {
    /// The specification's name, e.g. `TPMS_ATTEST`; used in error paths.
    static var tpmName: String { get }
    /// The value a decoder starts from before it overwrites each field.
    init()
    mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError)
}

/// A TPMU union: its wire form depends on a selector carried elsewhere in the enclosing structure.
public protocol TPMUnion: Sendable, Equatable {
    associatedtype Selector: Sendable
    static var tpmName: String { get }
    init()
    /// The selector that describes the current member (used when encoding).
    var selector: Selector { get }
    mutating func wire<C: TPMCoder>(_ c: inout C, selector: Selector) throws(TPMWireError)
}

/// A sized region (TPM2B) opened by ``TPMCoder/enterSized(max:field:)``.
public struct TPMSizedRegion: Sendable {
    public var start: Int
    public var size: Int
    public var savedEnd: Int
    public var max: Int
    @inlinable public init(start: Int, size: Int, savedEnd: Int, max: Int) {
        self.start = start; self.size = size; self.savedEnd = savedEnd; self.max = max
    }
}

/// The two directions of the wire format behind one interface. Structures call these
/// primitives in wire order; the encoder and decoder give them their meaning.
public protocol TPMCoder {
    var isDecoding: Bool { get }
    /// Bytes consumed (decoder) or produced (encoder) so far.
    var offset: Int { get }
    /// Bytes left in the current region (decoder); `Int.max` for the encoder.
    var remaining: Int { get }

    mutating func u8(_ v: inout UInt8, _ field: StaticString) throws(TPMWireError)
    mutating func u16(_ v: inout UInt16, _ field: StaticString) throws(TPMWireError)
    mutating func u32(_ v: inout UInt32, _ field: StaticString) throws(TPMWireError)
    mutating func u64(_ v: inout UInt64, _ field: StaticString) throws(TPMWireError)
    /// Exactly `count` bytes, no size prefix.
    mutating func fixedBytes(_ v: inout [UInt8], count: Int, _ field: StaticString) throws(TPMWireError)
    /// A TPM2B byte buffer: UINT16 size then that many bytes, at most `max`.
    mutating func sizedBytes(_ v: inout [UInt8], max: Int, _ field: StaticString) throws(TPMWireError)
    /// All bytes up to the end of the current region (e.g. TPMS_ID_OBJECT.encIdentity).
    mutating func remainingBytes(_ v: inout [UInt8], _ field: StaticString) throws(TPMWireError)
    /// Opens a TPM2B region holding a structure: UINT16 size, then the structure.
    mutating func enterSized(max: Int, field: StaticString) throws(TPMWireError) -> TPMSizedRegion
    mutating func exitSized(_ region: TPMSizedRegion, field: StaticString) throws(TPMWireError)

    // Composite steps. Their implementations below are the defaults; a coder that only wants
    // to see a structure's top-level fields (``TPMFieldNames``) replaces them.
    mutating func nested<T: TPMStructure>(_ v: inout T, _ field: StaticString) throws(TPMWireError)
    mutating func union<U: TPMUnion>(_ v: inout U, selector: U.Selector, _ field: StaticString) throws(TPMWireError)
    mutating func sized<T: TPMStructure>(_ v: inout T, max: Int, _ field: StaticString) throws(TPMWireError)
    mutating func sizedOptional<T: TPMStructure>(_ v: inout T?, max: Int, _ field: StaticString) throws(TPMWireError)
    mutating func list<T: TPMStructure>(_ v: inout [T], max: Int, _ field: StaticString) throws(TPMWireError)
    mutating func valueList<T: TPMWireValue>(_ v: inout [T], max: Int, _ field: StaticString) throws(TPMWireError)
}

extension TPMCoder {
    /// A nested structure; failures are attributed to `field` of the enclosing structure.
    @inlinable
    public mutating func nested<T: TPMStructure>(_ v: inout T, _ field: StaticString) throws(TPMWireError) {
        do {
            try v.wire(&self)
        } catch {
            var e = error
            e.qualify(T.tpmName)
            e.pendingField = "\(field)"
            throw e
        }
    }

    /// A union member selected by `selector`.
    @inlinable
    public mutating func union<U: TPMUnion>(_ v: inout U, selector: U.Selector, _ field: StaticString) throws(TPMWireError) {
        do {
            try v.wire(&self, selector: selector)
        } catch {
            var e = error
            e.qualify(U.tpmName)
            e.pendingField = "\(field)"
            throw e
        }
    }

    /// A TPM2B that wraps a structure (e.g. TPM2B_PUBLIC): the structure must fill the size exactly.
    /// A zero size is rejected unless the field is declared optional (see ``sizedOptional(_:max:_:)``).
    @inlinable
    public mutating func sized<T: TPMStructure>(_ v: inout T, max: Int, _ field: StaticString) throws(TPMWireError) {
        let start = offset
        let region = try enterSized(max: max, field: field)
        if isDecoding && region.size == 0 {
            throw TPMWireError(.emptyStructure, offset: start, field: "\(field)",
                               reason: "\(T.tpmName) has size 0 where the structure is required")
        }
        try nested(&v, field)
        try exitSized(region, field: field)
    }

    /// A TPM2B around a structure that may be absent (size 0), e.g. LoadExternal's inPrivate.
    @inlinable
    public mutating func sizedOptional<T: TPMStructure>(_ v: inout T?, max: Int, _ field: StaticString) throws(TPMWireError) {
        if isDecoding {
            let region = try enterSized(max: max, field: field)
            if region.size == 0 {
                v = nil
            } else {
                var value = T()
                try nested(&value, field)
                v = value
            }
            try exitSized(region, field: field)
        } else if var value = v {
            let region = try enterSized(max: max, field: field)
            try nested(&value, field)
            try exitSized(region, field: field)
        } else {
            var zero: UInt16 = 0
            try u16(&zero, field)
        }
    }

    /// A TPML list: UINT32 count (at most `max`, the specification's limit), then the elements.
    @inlinable
    public mutating func list<T: TPMStructure>(_ v: inout [T], max: Int, _ field: StaticString) throws(TPMWireError) {
        let start = offset
        var count = UInt32(truncatingIfNeeded: v.count)
        if !isDecoding && v.count > max {
            throw TPMWireError(.countExceedsLimit, offset: start, field: "\(field)",
                               reason: "\(v.count) elements exceed the limit of \(max)")
        }
        try u32(&count, field)
        if isDecoding {
            guard count <= UInt32(max) else {
                throw TPMWireError(.countExceedsLimit, offset: start, field: "\(field)",
                                   reason: "count \(count) exceeds the limit of \(max)")
            }
            var out: [T] = []
            // Never reserve more than the bytes that remain could possibly hold.
            out.reserveCapacity(Swift.min(Int(count), remaining))
            for i in 0..<Int(count) {
                var e = T()
                do { try e.wire(&self) } catch {
                    var err = error
                    err.qualify(T.tpmName)
                    err.pendingField = "\(field)[\(i)]"
                    throw err
                }
                out.append(e)
            }
            v = out
        } else {
            for (i, element) in v.enumerated() {
                var e = element
                do { try e.wire(&self) } catch {
                    var err = error
                    err.qualify(T.tpmName)
                    err.pendingField = "\(field)[\(i)]"
                    throw err
                }
            }
        }
    }

    /// A raw-value wire constant (TPM_ALG_ID, TPM_CC, TPMA_* …).
    @inlinable
    public mutating func value<T: TPMWireValue>(_ v: inout T, _ field: StaticString) throws(TPMWireError) {
        var raw = v.rawValue
        try T.RawValue.code(&raw, field, &self)
        if isDecoding { v = T(rawValue: raw) }
    }

    /// TPMI_YES_NO: a byte that must be 0 or 1.
    @inlinable
    public mutating func bool(_ v: inout Bool, _ field: StaticString) throws(TPMWireError) {
        let start = offset
        var b: UInt8 = v ? 1 : 0
        try u8(&b, field)
        if isDecoding {
            guard b <= 1 else {
                throw TPMWireError(.invalidValue, offset: start, field: "\(field)",
                                   reason: "TPMI_YES_NO must be 0 or 1, found \(b)")
            }
            v = b == 1
        }
    }

    /// A constant that must have one value (e.g. TPM_GENERATED_VALUE in TPMS_ATTEST.magic).
    @inlinable
    public mutating func constant(_ expected: UInt32, _ field: StaticString, name: StaticString) throws(TPMWireError) {
        let start = offset
        var v = expected
        try u32(&v, field)
        if isDecoding && v != expected {
            throw TPMWireError(.invalidValue, offset: start, field: "\(field)",
                               reason: "expected \(name) (\(hex32(expected))), found \(hex32(v))")
        }
    }
}

/// Integer types the coder can move directly.
public protocol TPMWireInteger: FixedWidthInteger, Sendable {
    static func code<C: TPMCoder>(_ v: inout Self, _ field: StaticString, _ c: inout C) throws(TPMWireError)
}
extension UInt8: TPMWireInteger {
    @inlinable public static func code<C: TPMCoder>(_ v: inout UInt8, _ field: StaticString,
                                                    _ c: inout C) throws(TPMWireError) { try c.u8(&v, field) }
}
extension UInt16: TPMWireInteger {
    @inlinable public static func code<C: TPMCoder>(_ v: inout UInt16, _ field: StaticString,
                                                    _ c: inout C) throws(TPMWireError) { try c.u16(&v, field) }
}
extension UInt32: TPMWireInteger {
    @inlinable public static func code<C: TPMCoder>(_ v: inout UInt32, _ field: StaticString,
                                                    _ c: inout C) throws(TPMWireError) { try c.u32(&v, field) }
}
extension UInt64: TPMWireInteger {
    @inlinable public static func code<C: TPMCoder>(_ v: inout UInt64, _ field: StaticString,
                                                    _ c: inout C) throws(TPMWireError) { try c.u64(&v, field) }
}

/// An open wire constant: any raw value is representable, named ones are static members.
public protocol TPMWireValue: RawRepresentable, Hashable, Sendable where RawValue: TPMWireInteger {
    init(rawValue: RawValue)
}

extension TPMStructure {
    /// Decodes exactly one structure from `bytes`; trailing bytes are an error.
    @inlinable
    public init(tpmBytes bytes: some Collection<UInt8>) throws(TPMWireError) {
        var d = TPMDecoder(Array(bytes))
        self.init()
        do {
            try self.wire(&d)
            try d.finish()
        } catch {
            var e = error
            e.qualify(Self.tpmName)
            throw e
        }
    }

    /// The structure's wire bytes.
    @inlinable
    public func tpmBytes() throws(TPMWireError) -> [UInt8] {
        var e = TPMEncoder()
        var copy = self
        do {
            try copy.wire(&e)
        } catch {
            var err = error
            err.qualify(Self.tpmName)
            throw err
        }
        return e.bytes
    }
}

extension TPMCoder {
    /// One member of a union held as a Swift enum: when decoding, the member is decoded and
    /// wrapped with `embed`; when encoding, `extract` must find that member (or the union's
    /// value does not match the selector written before it).
    @inlinable
    public mutating func member<U, P: TPMStructure>(
        _ u: inout U, _ field: StaticString, _ embed: (P) -> U, _ extract: (U) -> P?
    ) throws(TPMWireError) {
        if isDecoding {
            var p = P()
            try nested(&p, field)
            u = embed(p)
        } else {
            guard var p = extract(u) else {
                throw TPMWireError(.selectorMismatch, offset: offset, field: "\(field)",
                                   reason: "the value is not the member \(field) that the selector names")
            }
            try nested(&p, field)
        }
    }

    /// The error for a selector that names no member of a union.
    @inlinable
    public func unknownSelector(_ selector: some CustomStringConvertible, union: String) -> TPMWireError {
        TPMWireError(.unknownSelector, offset: offset, field: nil,
                     reason: "\(selector) selects no member of \(union)")
    }
}

/// Content of a TPM2B that wraps a structure (TPM2B_PUBLIC wraps TPMT_PUBLIC, …).
public protocol TPM2BContent: TPMStructure {
    /// The TPM2B's name, e.g. `TPM2B_PUBLIC`.
    static var sizedTPMName: String { get }
    /// The TPM2B's field name for the structure, e.g. `publicArea`.
    static var sizedFieldName: StaticString { get }
    static var sizedMaxSize: Int { get }
}

/// A TPM2B around a structure: UINT16 size, then the structure, which must fill it exactly.
public struct TPM2BSized<Content: TPM2BContent>: TPMStructure, Hashable where Content: Hashable {
    public static var tpmName: String { Content.sizedTPMName }
    public var content: Content
    @inlinable public init() { content = Content() }
    @inlinable public init(_ content: Content) { self.content = content }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.sized(&content, max: Content.sizedMaxSize, Content.sizedFieldName)
    }
}

extension TPMCoder {
    /// A TPML list of wire constants (TPML_HANDLE, TPML_CC, TPML_ECC_CURVE …).
    @inlinable
    public mutating func valueList<T: TPMWireValue>(_ v: inout [T], max: Int, _ field: StaticString) throws(TPMWireError) {
        let start = offset
        if !isDecoding && v.count > max {
            throw TPMWireError(.countExceedsLimit, offset: start, field: "\(field)",
                               reason: "\(v.count) elements exceed the limit of \(max)")
        }
        var count = UInt32(truncatingIfNeeded: v.count)
        try u32(&count, field)
        if isDecoding {
            guard count <= UInt32(max) else {
                throw TPMWireError(.countExceedsLimit, offset: start, field: "\(field)",
                                   reason: "count \(count) exceeds the limit of \(max)")
            }
            var out: [T] = []
            out.reserveCapacity(Swift.min(Int(count), remaining))
            for _ in 0..<Int(count) {
                var e = T(rawValue: 0)
                try value(&e, field)
                out.append(e)
            }
            v = out
        } else {
            for element in v {
                var e = element
                try value(&e, field)
            }
        }
    }
}


/// Lists the top-level field names of a parameter area in wire order, without descending
/// into them (a TPM uses it to number the parameter an unmarshalling error points at).
public struct TPMFieldNames: TPMCoder {
    public private(set) var names: [String] = []
    public init() {}
    public var isDecoding: Bool { false }
    public var offset: Int { 0 }
    public var remaining: Int { Int.max }
    public mutating func u8(_ v: inout UInt8, _ field: StaticString) throws(TPMWireError) { names.append("\(field)") }
    public mutating func u16(_ v: inout UInt16, _ field: StaticString) throws(TPMWireError) { names.append("\(field)") }
    public mutating func u32(_ v: inout UInt32, _ field: StaticString) throws(TPMWireError) { names.append("\(field)") }
    public mutating func u64(_ v: inout UInt64, _ field: StaticString) throws(TPMWireError) { names.append("\(field)") }
    public mutating func fixedBytes(_ v: inout [UInt8], count: Int, _ field: StaticString) throws(TPMWireError) { names.append("\(field)") }
    public mutating func sizedBytes(_ v: inout [UInt8], max: Int, _ field: StaticString) throws(TPMWireError) { names.append("\(field)") }
    public mutating func remainingBytes(_ v: inout [UInt8], _ field: StaticString) throws(TPMWireError) { names.append("\(field)") }
    public mutating func enterSized(max: Int, field: StaticString) throws(TPMWireError) -> TPMSizedRegion {
        TPMSizedRegion(start: 0, size: 0, savedEnd: 0, max: max)
    }
    public mutating func exitSized(_ region: TPMSizedRegion, field: StaticString) throws(TPMWireError) {}
    public mutating func nested<T: TPMStructure>(_ v: inout T, _ field: StaticString) throws(TPMWireError) { names.append("\(field)") }
    public mutating func union<U: TPMUnion>(_ v: inout U, selector: U.Selector,
                                            _ field: StaticString) throws(TPMWireError) { names.append("\(field)") }
    public mutating func sized<T: TPMStructure>(_ v: inout T, max: Int,
                                                _ field: StaticString) throws(TPMWireError) { names.append("\(field)") }
    public mutating func sizedOptional<T: TPMStructure>(_ v: inout T?, max: Int,
                                                        _ field: StaticString) throws(TPMWireError) { names.append("\(field)") }
    public mutating func list<T: TPMStructure>(_ v: inout [T], max: Int,
                                               _ field: StaticString) throws(TPMWireError) { names.append("\(field)") }
    public mutating func valueList<T: TPMWireValue>(_ v: inout [T], max: Int,
                                                    _ field: StaticString) throws(TPMWireError) { names.append("\(field)") }
}
