// Basic structures: digests, PCR selections, lists, clock, tickets, authorization areas, contexts.

/// TPMT_HA (Part 2, 10.3.2): a digest tagged with its hash algorithm. The digest length is
/// selected by `hashAlg` (TPMU_HA); TPM_ALG_NULL selects an empty digest.
public struct TPMTHA: TPMStructure, Hashable {
    public static var tpmName: String { "TPMT_HA" }
    public var hashAlg: TPMAlgID
    public var digest: [UInt8]
    @inlinable public init() { hashAlg = .null; digest = [] }
    @inlinable public init(hashAlg: TPMAlgID, digest: [UInt8]) { self.hashAlg = hashAlg; self.digest = digest }

    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        let start = c.offset
        try c.value(&hashAlg, "hashAlg")
        if hashAlg == .null { digest = []; return }
        guard let size = hashAlg.digestSize else {
            throw TPMWireError(.unknownSelector, offset: start, field: "hashAlg",
                               reason: "\(hashAlg) is not a hash algorithm this library knows the digest size of")
        }
        try c.fixedBytes(&digest, count: size, "digest")
    }
}

/// TPMS_PCR_SELECTION (Part 2, 10.6.2): one bank and a bitmap of its PCRs (bit n of byte n/8 = PCR n).
public struct TPMSPCRSelection: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_PCR_SELECTION" }
    /// PCR_SELECT_MAX for 32 PCRs, the largest TSS stacks support.
    public static let maxSelectSize = 4
    public var hash: TPMAlgID
    public var pcrSelect: [UInt8]
    @inlinable public init() { hash = .null; pcrSelect = [] }
    @inlinable public init(hash: TPMAlgID, pcrSelect: [UInt8]) { self.hash = hash; self.pcrSelect = pcrSelect }
    /// Selects `pcrs` of bank `hash` with a bitmap of at least 3 bytes (PCR_SELECT_MIN for 24 PCRs).
    public init(hash: TPMAlgID, pcrs: some Sequence<Int>, selectSize: Int = 3) {
        let list = Array(pcrs)
        var bitmap = [UInt8](repeating: 0, count: max(selectSize, ((list.max() ?? 0) / 8) + 1))
        for p in list where p >= 0 { bitmap[p / 8] |= 1 << UInt8(p % 8) }
        self.init(hash: hash, pcrSelect: bitmap)
    }
    /// The selected PCR numbers, ascending.
    public var pcrs: [Int] {
        var out: [Int] = []
        for (i, b) in pcrSelect.enumerated() { for bit in 0..<8 where b & (1 << UInt8(bit)) != 0 { out.append(i * 8 + bit) } }
        return out
    }

    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&hash, "hash")
        let start = c.offset
        var size = UInt8(truncatingIfNeeded: pcrSelect.count)
        try c.u8(&size, "sizeofSelect")
        guard Int(size) <= Self.maxSelectSize, pcrSelect.count <= Self.maxSelectSize || c.isDecoding else {
            throw TPMWireError(.sizeExceedsLimit, offset: start, field: "sizeofSelect",
                               reason: "\(c.isDecoding ? Int(size) : pcrSelect.count) exceeds PCR_SELECT_MAX (\(Self.maxSelectSize))")
        }
        try c.fixedBytes(&pcrSelect, count: Int(size), "pcrSelect")
    }
}

/// TPMS_TAGGED_PCR_SELECT (Part 2, 10.8.3): a PCR property and the PCRs that have it.
public struct TPMSTaggedPCRSelect: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_TAGGED_PCR_SELECT" }
    public var tag: TPMPTPCR
    public var pcrSelect: [UInt8]
    @inlinable public init() { tag = .save; pcrSelect = [] }
    public init(tag: TPMPTPCR, pcrSelect: [UInt8]) { self.tag = tag; self.pcrSelect = pcrSelect }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&tag, "tag")
        let start = c.offset
        var size = UInt8(truncatingIfNeeded: pcrSelect.count)
        try c.u8(&size, "sizeofSelect")
        guard Int(size) <= TPMSPCRSelection.maxSelectSize, pcrSelect.count <= TPMSPCRSelection.maxSelectSize || c.isDecoding else {
            throw TPMWireError(.sizeExceedsLimit, offset: start, field: "sizeofSelect",
                               reason: "exceeds PCR_SELECT_MAX (\(TPMSPCRSelection.maxSelectSize))")
        }
        try c.fixedBytes(&pcrSelect, count: Int(size), "pcrSelect")
    }
}

/// HASH_COUNT in TSS builds: the most banks a list can name.
public let tpmHashCount = 16

/// TPML_PCR_SELECTION (Part 2, 10.9.7).
public struct TPMLPCRSelection: TPMStructure, Hashable {
    public static var tpmName: String { "TPML_PCR_SELECTION" }
    public var pcrSelections: [TPMSPCRSelection]
    @inlinable public init() { pcrSelections = [] }
    public init(_ selections: [TPMSPCRSelection]) { pcrSelections = selections }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.list(&pcrSelections, max: tpmHashCount, "pcrSelections")
    }
}

/// A digest as a list element (TPML_DIGEST holds TPM2B_DIGESTs).
public typealias TPMLDigestElement = TPM2BDigest

/// TPML_DIGEST (Part 2, 10.9.3): at most 8 digests.
public struct TPMLDigest: TPMStructure, Hashable {
    public static var tpmName: String { "TPML_DIGEST" }
    public var digests: [TPM2BDigest]
    @inlinable public init() { digests = [] }
    public init(_ digests: [TPM2BDigest]) { self.digests = digests }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.list(&digests, max: 8, "digests")
    }
}

/// TPML_DIGEST_VALUES (Part 2, 10.9.6): one TPMT_HA per bank.
public struct TPMLDigestValues: TPMStructure, Hashable {
    public static var tpmName: String { "TPML_DIGEST_VALUES" }
    public var digests: [TPMTHA]
    @inlinable public init() { digests = [] }
    public init(_ digests: [TPMTHA]) { self.digests = digests }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.list(&digests, max: tpmHashCount, "digests")
    }
}

/// TPMS_CLOCK_INFO (Part 2, 10.11.1).
public struct TPMSClockInfo: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_CLOCK_INFO" }
    /// Milliseconds the TPM has been powered since its Clock was last set.
    public var clock: UInt64
    /// TPM2_Startup(CLEAR) after TPM_Init (a reboot) increments this.
    public var resetCount: UInt32
    /// TPM2_Startup(STATE) (resume) increments this.
    public var restartCount: UInt32
    /// No value of Clock greater than the current one has been reported.
    public var safe: Bool
    @inlinable public init() { clock = 0; resetCount = 0; restartCount = 0; safe = false }
    public init(clock: UInt64, resetCount: UInt32, restartCount: UInt32, safe: Bool) {
        self.clock = clock; self.resetCount = resetCount; self.restartCount = restartCount; self.safe = safe
    }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.u64(&clock, "clock")
        try c.u32(&resetCount, "resetCount")
        try c.u32(&restartCount, "restartCount")
        try c.bool(&safe, "safe")
    }
}

/// TPMS_TIME_INFO (Part 2, 10.11.6).
public struct TPMSTimeInfo: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_TIME_INFO" }
    /// Milliseconds since the last TPM_Init.
    public var time: UInt64
    public var clockInfo: TPMSClockInfo
    @inlinable public init() { time = 0; clockInfo = TPMSClockInfo() }
    public init(time: UInt64, clockInfo: TPMSClockInfo) { self.time = time; self.clockInfo = clockInfo }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.u64(&time, "time")
        try c.nested(&clockInfo, "clockInfo")
    }
}

/// The ticket structures TPMT_TK_CREATION, TPMT_TK_VERIFIED, TPMT_TK_AUTH and
/// TPMT_TK_HASHCHECK (Part 2, 10.7) share one layout: tag, hierarchy, digest.
public struct TPMTTicket: TPMStructure, Hashable {
    public static var tpmName: String { "TPMT_TK" }
    public var tag: TPMST
    public var hierarchy: TPMHandle
    public var digest: TPM2BDigest
    @inlinable public init() { tag = .null; hierarchy = .null; digest = TPM2BDigest() }
    public init(tag: TPMST, hierarchy: TPMHandle, digest: TPM2BDigest = TPM2BDigest()) {
        self.tag = tag; self.hierarchy = hierarchy; self.digest = digest
    }
    /// The NULL ticket a command accepts when no ticket is offered (e.g. Sign's validation).
    public static func nullTicket(_ tag: TPMST) -> TPMTTicket { TPMTTicket(tag: tag, hierarchy: .null) }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&tag, "tag")
        try c.value(&hierarchy, "hierarchy")
        try c.nested(&digest, "digest")
    }
}
public typealias TPMTTKCreation = TPMTTicket
public typealias TPMTTKVerified = TPMTTicket
public typealias TPMTTKAuth = TPMTTicket
public typealias TPMTTKHashcheck = TPMTTicket

/// TPMS_AUTH_COMMAND (Part 2, 10.13.2): one session in a command's authorization area.
public struct TPMSAuthCommand: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_AUTH_COMMAND" }
    public var sessionHandle: TPMHandle
    public var nonce: TPM2BNonce
    public var sessionAttributes: TPMASession
    public var hmac: TPM2BAuth
    @inlinable public init() { sessionHandle = .password; nonce = TPM2BNonce(); sessionAttributes = []; hmac = TPM2BAuth() }
    public init(sessionHandle: TPMHandle, nonce: TPM2BNonce = TPM2BNonce(), sessionAttributes: TPMASession = [],
                hmac: TPM2BAuth = TPM2BAuth()) {
        self.sessionHandle = sessionHandle; self.nonce = nonce; self.sessionAttributes = sessionAttributes; self.hmac = hmac
    }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&sessionHandle, "sessionHandle")
        try c.nested(&nonce, "nonce")
        try c.value(&sessionAttributes, "sessionAttributes")
        try c.nested(&hmac, "hmac")
    }
}

/// TPMS_AUTH_RESPONSE (Part 2, 10.13.3).
public struct TPMSAuthResponse: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_AUTH_RESPONSE" }
    public var nonce: TPM2BNonce
    public var sessionAttributes: TPMASession
    public var hmac: TPM2BAuth
    @inlinable public init() { nonce = TPM2BNonce(); sessionAttributes = []; hmac = TPM2BAuth() }
    public init(nonce: TPM2BNonce, sessionAttributes: TPMASession, hmac: TPM2BAuth) {
        self.nonce = nonce; self.sessionAttributes = sessionAttributes; self.hmac = hmac
    }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&nonce, "nonce")
        try c.value(&sessionAttributes, "sessionAttributes")
        try c.nested(&hmac, "hmac")
    }
}

/// TPMS_CONTEXT (Part 2, 14.5): a saved object or session context.
public struct TPMSContext: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_CONTEXT" }
    public var sequence: UInt64
    public var savedHandle: TPMHandle
    public var hierarchy: TPMHandle
    public var contextBlob: TPM2BContextData
    @inlinable public init() { sequence = 0; savedHandle = .null; hierarchy = .null; contextBlob = TPM2BContextData() }
    public init(sequence: UInt64, savedHandle: TPMHandle, hierarchy: TPMHandle, contextBlob: TPM2BContextData) {
        self.sequence = sequence; self.savedHandle = savedHandle; self.hierarchy = hierarchy; self.contextBlob = contextBlob
    }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.u64(&sequence, "sequence")
        try c.value(&savedHandle, "savedHandle")
        try c.value(&hierarchy, "hierarchy")
        try c.nested(&contextBlob, "contextBlob")
    }
}

/// TPMS_ID_OBJECT (Part 2, 11.4.3): a credential protected for ActivateCredential.
/// `encIdentity` is an encrypted TPM2B_DIGEST (its size field is encrypted too), so on the
/// wire it runs to the end of the enclosing TPM2B_ID_OBJECT.
public struct TPMSIDObject: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_ID_OBJECT" }
    public var integrityHMAC: TPM2BDigest
    public var encIdentity: [UInt8]
    @inlinable public init() { integrityHMAC = TPM2BDigest(); encIdentity = [] }
    public init(integrityHMAC: TPM2BDigest, encIdentity: [UInt8]) { self.integrityHMAC = integrityHMAC; self.encIdentity = encIdentity }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&integrityHMAC, "integrityHMAC")
        try c.remainingBytes(&encIdentity, "encIdentity")
    }
}
