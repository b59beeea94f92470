// TPM2B sized byte buffers (Part 2, 10.4 and the structure clauses that define each).
//
// Each buffer type carries its specification limit: the largest size the reference
// implementation's maximum configuration (the one TSS stacks compile against) can hold.
// A decoder rejects a larger size before it allocates.

/// The limit and name of one TPM2B byte-buffer type.
public protocol TPM2BKind: Sendable {
    static var tpmName: String { get }
    static var maxSize: Int { get }
}

/// A TPM2B byte buffer: UINT16 size, then that many bytes.
public struct TPM2BBuffer<Kind: TPM2BKind>: TPMStructure, Hashable, ExpressibleByArrayLiteral, CustomStringConvertible {
    public var bytes: [UInt8]
    public static var tpmName: String { Kind.tpmName }
    @inlinable public init() { bytes = [] }
    @inlinable public init(_ bytes: some Sequence<UInt8>) { self.bytes = Array(bytes) }
    public init(arrayLiteral elements: UInt8...) { bytes = elements }
    @inlinable public var isEmpty: Bool { bytes.isEmpty }
    @inlinable public var count: Int { bytes.count }

    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.sizedBytes(&bytes, max: Kind.maxSize, "buffer")
    }

    public var description: String { bytes.hexString }
}

public enum TPM2BDigestKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_DIGEST" }
    /// sizeof(TPMU_HA): the largest digest (SHA-512).
    public static var maxSize: Int { 64 }
}
public enum TPM2BDataKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_DATA" }
    /// sizeof(TPMT_HA).
    public static var maxSize: Int { 66 }
}
public enum TPM2BEventKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_EVENT" }
    public static var maxSize: Int { 1024 }
}
public enum TPM2BMaxBufferKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_MAX_BUFFER" }
    /// MAX_DIGEST_BUFFER.
    public static var maxSize: Int { 1024 }
}
public enum TPM2BMaxNVBufferKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_MAX_NV_BUFFER" }
    /// MAX_NV_BUFFER_SIZE.
    public static var maxSize: Int { 2048 }
}
public enum TPM2BTimeoutKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_TIMEOUT" }
    public static var maxSize: Int { 8 }
}
public enum TPM2BIVKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_IV" }
    /// MAX_SYM_BLOCK_SIZE.
    public static var maxSize: Int { 16 }
}
public enum TPM2BNameKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_NAME" }
    /// sizeof(TPMU_NAME): a TPMT_HA or a handle.
    public static var maxSize: Int { 66 }
}
public enum TPM2BSensitiveDataKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_SENSITIVE_DATA" }
    /// MAX_SYM_DATA in TSS builds (the library's own profile uses 128).
    public static var maxSize: Int { 256 }
}
public enum TPM2BSymKeyKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_SYM_KEY" }
    /// MAX_SYM_KEY_BYTES.
    public static var maxSize: Int { 32 }
}
public enum TPM2BPublicKeyRSAKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_PUBLIC_KEY_RSA" }
    /// MAX_RSA_KEY_BYTES (4096-bit keys).
    public static var maxSize: Int { 512 }
}
public enum TPM2BPrivateKeyRSAKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_PRIVATE_KEY_RSA" }
    /// RSA_PRIVATE_SIZE: room for the CRT form (5 half-size values).
    public static var maxSize: Int { 1280 }
}
public enum TPM2BECCParameterKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_ECC_PARAMETER" }
    /// MAX_ECC_KEY_BYTES.
    public static var maxSize: Int { 128 }
}
public enum TPM2BEncryptedSecretKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_ENCRYPTED_SECRET" }
    /// sizeof(TPMU_ENCRYPTED_SECRET): an RSA-4096 ciphertext is the largest member.
    public static var maxSize: Int { 512 }
}
public enum TPM2BIDObjectKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_ID_OBJECT" }
    /// sizeof(TPMS_ID_OBJECT): two TPM2B_DIGESTs.
    public static var maxSize: Int { 132 }
}
public enum TPM2BPrivateKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_PRIVATE" }
    /// sizeof(_PRIVATE): two integrity digests and a TPM2B_SENSITIVE.
    public static var maxSize: Int { 1550 }
}
public enum TPM2BContextDataKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_CONTEXT_DATA" }
    /// sizeof(TPMS_CONTEXT_DATA) with MAX_CONTEXT_SIZE 5120.
    public static var maxSize: Int { 5188 }
}
public enum TPM2BAttestKind: TPM2BKind {
    public static var tpmName: String { "TPM2B_ATTEST" }
    /// sizeof(TPMS_ATTEST): the NV certify member with a full MAX_NV_BUFFER is the largest.
    public static var maxSize: Int { 2304 }
}

public typealias TPM2BDigest = TPM2BBuffer<TPM2BDigestKind>
/// TPM2B_NONCE is a TPM2B_DIGEST (Part 2, 10.4.4).
public typealias TPM2BNonce = TPM2BDigest
/// TPM2B_AUTH is a TPM2B_DIGEST (Part 2, 10.4.5).
public typealias TPM2BAuth = TPM2BDigest
public typealias TPM2BData = TPM2BBuffer<TPM2BDataKind>
public typealias TPM2BEvent = TPM2BBuffer<TPM2BEventKind>
public typealias TPM2BMaxBuffer = TPM2BBuffer<TPM2BMaxBufferKind>
public typealias TPM2BMaxNVBuffer = TPM2BBuffer<TPM2BMaxNVBufferKind>
public typealias TPM2BTimeout = TPM2BBuffer<TPM2BTimeoutKind>
public typealias TPM2BIV = TPM2BBuffer<TPM2BIVKind>
public typealias TPM2BName = TPM2BBuffer<TPM2BNameKind>
public typealias TPM2BSensitiveData = TPM2BBuffer<TPM2BSensitiveDataKind>
public typealias TPM2BSymKey = TPM2BBuffer<TPM2BSymKeyKind>
public typealias TPM2BPublicKeyRSA = TPM2BBuffer<TPM2BPublicKeyRSAKind>
public typealias TPM2BPrivateKeyRSA = TPM2BBuffer<TPM2BPrivateKeyRSAKind>
public typealias TPM2BECCParameter = TPM2BBuffer<TPM2BECCParameterKind>
public typealias TPM2BEncryptedSecret = TPM2BBuffer<TPM2BEncryptedSecretKind>
public typealias TPM2BIDObject = TPM2BBuffer<TPM2BIDObjectKind>
public typealias TPM2BPrivate = TPM2BBuffer<TPM2BPrivateKind>
public typealias TPM2BContextData = TPM2BBuffer<TPM2BContextDataKind>
/// TPM2B_ATTEST: kept as the original signed bytes; parse with ``TPMSAttest/init(tpmBytes:)``.
public typealias TPM2BAttest = TPM2BBuffer<TPM2BAttestKind>

/// Structure sizes used for TPM2B wrappers around structures.
public enum TPM2BStructLimit {
    /// sizeof(TPMT_PUBLIC) for a 4096-bit RSA or a 1024-bit ECC point.
    public static let publicArea = 640
    /// sizeof(TPMS_SENSITIVE_CREATE).
    public static let sensitiveCreate = 326
    /// sizeof(TPMT_SENSITIVE).
    public static let sensitive = 1416
    /// sizeof(TPMS_CREATION_DATA).
    public static let creationData = 400
    /// sizeof(TPMS_NV_PUBLIC).
    public static let nvPublic = 78
    /// sizeof(TPMS_ECC_POINT).
    public static let eccPoint = 260
}

extension Sequence where Element == UInt8 {
    /// Lower-case hex, no separators.
    public var hexString: String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in self {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension Array where Element == UInt8 {
    /// Parses hex (upper or lower case; spaces, newlines and a leading `0x` ignored).
    public init?(hex: String) {
        var text = hex
        guard let bytes = text.withUTF8({ hexDecode($0) }) else { return nil }
        self = bytes
    }
}

/// Hex without separators (what every peer and the agent send) is read two digits at a time into
/// storage sized once; anything else — separators, an odd count, a bad digit — takes the general
/// loop, which decides. Both give the same answer for every input (HexTests compare them).
private func hexDecode(_ utf8: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
    var start = 0
    if utf8.count >= 2, utf8[0] == UInt8(ascii: "0"), utf8[1] | 0x20 == UInt8(ascii: "x") { start = 2 }
    let body = UnsafeBufferPointer(rebasing: utf8[start...])
    if body.count % 2 == 0 {
        var plain = true
        let out = [UInt8](unsafeUninitializedCapacity: body.count / 2) { buffer, count in
            var i = 0
            while i < body.count {
                let high = hexDigitValue(body[i]), low = hexDigitValue(body[i + 1])
                if high | low > 0xF { plain = false; break }
                buffer[i / 2] = high << 4 | low
                i += 2
            }
            count = plain ? body.count / 2 : 0
        }
        if plain { return out }
    }
    var out: [UInt8] = []
    out.reserveCapacity(body.count / 2)
    var high: UInt8?
    for ch in body {
        let v = hexDigitValues[Int(ch)]
        if v == hexSkip { continue }
        if v == hexInvalid { return nil }
        if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
    }
    if high != nil { return nil }
    return out
}

/// A hex digit's value, or 0xFF for any other byte.
@inline(__always)
private func hexDigitValue(_ c: UInt8) -> UInt8 {
    let digit = c &- UInt8(ascii: "0")
    if digit < 10 { return digit }
    let letter = (c | 0x20) &- UInt8(ascii: "a")
    return letter < 6 ? letter + 10 : 0xFF
}

private let hexInvalid: UInt8 = 0xFF
private let hexSkip: UInt8 = 0xFE
/// Each byte's value as a hex digit; `hexSkip` for the separators Array(hex:) ignores (space,
/// newline, tab, carriage return, colon), `hexInvalid` for anything else.
private let hexDigitValues: [UInt8] = (0..<256).map { c -> UInt8 in
    switch UInt8(c) {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt8(c) - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt8(c) - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt8(c) - UInt8(ascii: "A") + 10
    case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\t"), UInt8(ascii: "\r"), UInt8(ascii: ":"): return hexSkip
    default: return hexInvalid
    }
}
