// Attestation structures (Part 2, 10.12) and signatures (Part 2, 11.3).

/// TPMS_CERTIFY_INFO (Part 2, 10.12.3).
public struct TPMSCertifyInfo: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_CERTIFY_INFO" }
    public var name: TPM2BName
    public var qualifiedName: TPM2BName
    @inlinable public init() { name = TPM2BName(); qualifiedName = TPM2BName() }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&name, "name")
        try c.nested(&qualifiedName, "qualifiedName")
    }
}

/// TPMS_QUOTE_INFO (Part 2, 10.12.4).
public struct TPMSQuoteInfo: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_QUOTE_INFO" }
    public var pcrSelect: TPMLPCRSelection
    /// Digest (with the signing scheme's hash) of the selected PCR values, in selection order.
    public var pcrDigest: TPM2BDigest
    @inlinable public init() { pcrSelect = TPMLPCRSelection(); pcrDigest = TPM2BDigest() }
    public init(pcrSelect: TPMLPCRSelection, pcrDigest: TPM2BDigest) { self.pcrSelect = pcrSelect; self.pcrDigest = pcrDigest }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&pcrSelect, "pcrSelect")
        try c.nested(&pcrDigest, "pcrDigest")
    }
}

/// TPMS_COMMAND_AUDIT_INFO (Part 2, 10.12.5).
public struct TPMSCommandAuditInfo: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_COMMAND_AUDIT_INFO" }
    public var auditCounter: UInt64
    public var digestAlg: TPMAlgID
    public var auditDigest: TPM2BDigest
    public var commandDigest: TPM2BDigest
    @inlinable public init() { auditCounter = 0; digestAlg = .null; auditDigest = TPM2BDigest(); commandDigest = TPM2BDigest() }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.u64(&auditCounter, "auditCounter")
        try c.value(&digestAlg, "digestAlg")
        try c.nested(&auditDigest, "auditDigest")
        try c.nested(&commandDigest, "commandDigest")
    }
}

/// TPMS_SESSION_AUDIT_INFO (Part 2, 10.12.6).
public struct TPMSSessionAuditInfo: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_SESSION_AUDIT_INFO" }
    public var exclusiveSession: Bool
    public var sessionDigest: TPM2BDigest
    @inlinable public init() { exclusiveSession = false; sessionDigest = TPM2BDigest() }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.bool(&exclusiveSession, "exclusiveSession")
        try c.nested(&sessionDigest, "sessionDigest")
    }
}

/// TPMS_CREATION_INFO (Part 2, 10.12.7).
public struct TPMSCreationInfo: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_CREATION_INFO" }
    public var objectName: TPM2BName
    public var creationHash: TPM2BDigest
    @inlinable public init() { objectName = TPM2BName(); creationHash = TPM2BDigest() }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&objectName, "objectName")
        try c.nested(&creationHash, "creationHash")
    }
}

/// TPMS_NV_CERTIFY_INFO (Part 2, 10.12.8).
public struct TPMSNVCertifyInfo: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_NV_CERTIFY_INFO" }
    public var indexName: TPM2BName
    public var offset: UInt16
    public var nvContents: TPM2BMaxNVBuffer
    @inlinable public init() { indexName = TPM2BName(); offset = 0; nvContents = TPM2BMaxNVBuffer() }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&indexName, "indexName")
        try c.u16(&offset, "offset")
        try c.nested(&nvContents, "nvContents")
    }
}

/// TPMS_NV_DIGEST_CERTIFY_INFO (Part 2, 10.12.9).
public struct TPMSNVDigestCertifyInfo: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_NV_DIGEST_CERTIFY_INFO" }
    public var indexName: TPM2BName
    public var nvDigest: TPM2BDigest
    @inlinable public init() { indexName = TPM2BName(); nvDigest = TPM2BDigest() }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&indexName, "indexName")
        try c.nested(&nvDigest, "nvDigest")
    }
}

/// TPMS_TIME_ATTEST_INFO (Part 2, 10.12.2).
public struct TPMSTimeAttestInfo: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_TIME_ATTEST_INFO" }
    public var time: TPMSTimeInfo
    public var firmwareVersion: UInt64
    @inlinable public init() { time = TPMSTimeInfo(); firmwareVersion = 0 }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&time, "time")
        try c.u64(&firmwareVersion, "firmwareVersion")
    }
}

/// TPMU_ATTEST (Part 2, 10.12.11), selected by TPMS_ATTEST.type (TPMI_ST_ATTEST).
public enum TPMUAttest: TPMUnion, Hashable {
    case certify(TPMSCertifyInfo)
    case creation(TPMSCreationInfo)
    case quote(TPMSQuoteInfo)
    case commandAudit(TPMSCommandAuditInfo)
    case sessionAudit(TPMSSessionAuditInfo)
    case time(TPMSTimeAttestInfo)
    case nv(TPMSNVCertifyInfo)
    case nvDigest(TPMSNVDigestCertifyInfo)
    public static var tpmName: String { "TPMU_ATTEST" }
    @inlinable public init() { self = .quote(TPMSQuoteInfo()) }
    @inlinable public var selector: TPMST {
        switch self {
        case .certify: .attestCertify
        case .creation: .attestCreation
        case .quote: .attestQuote
        case .commandAudit: .attestCommandAudit
        case .sessionAudit: .attestSessionAudit
        case .time: .attestTime
        case .nv: .attestNV
        case .nvDigest: .attestNVDigest
        }
    }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C, selector: TPMST) throws(TPMWireError) {
        switch selector {
        case .attestCertify: try c.member(&self, "certify", Self.certify) { if case .certify(let v) = $0 { v } else { nil } }
        case .attestCreation: try c.member(&self, "creation", Self.creation) { if case .creation(let v) = $0 { v } else { nil } }
        case .attestQuote: try c.member(&self, "quote", Self.quote) { if case .quote(let v) = $0 { v } else { nil } }
        case .attestCommandAudit: try c.member(&self, "commandAudit",
                                               Self.commandAudit) { if case .commandAudit(let v) = $0 { v } else { nil } }
        case .attestSessionAudit: try c.member(&self, "sessionAudit",
                                               Self.sessionAudit) { if case .sessionAudit(let v) = $0 { v } else { nil } }
        case .attestTime: try c.member(&self, "time", Self.time) { if case .time(let v) = $0 { v } else { nil } }
        case .attestNV: try c.member(&self, "nv", Self.nv) { if case .nv(let v) = $0 { v } else { nil } }
        case .attestNVDigest: try c.member(&self, "nvDigest", Self.nvDigest) { if case .nvDigest(let v) = $0 { v } else { nil } }
        default: throw c.unknownSelector(selector, union: Self.tpmName)
        }
    }
}

/// TPMS_ATTEST (Part 2, 10.12.12): what a TPM signs in Quote, Certify, CertifyCreation,
/// NV_Certify, GetTime and the audit commands. `magic` must be TPM_GENERATED_VALUE; the
/// type is the selector of `attested`.
///
/// Verify signatures over the original TPM2B_ATTEST bytes, never over a re-encoding.
public struct TPMSAttest: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_ATTEST" }
    /// TPM_GENERATED_VALUE (Part 2, 6.2): "\xFFTCG".
    public static let generatedValue: UInt32 = 0xFF54_4347
    public var qualifiedSigner: TPM2BName
    public var extraData: TPM2BData
    public var clockInfo: TPMSClockInfo
    public var firmwareVersion: UInt64
    public var attested: TPMUAttest
    @inlinable public var type: TPMST { attested.selector }

    @inlinable public init() {
        qualifiedSigner = TPM2BName(); extraData = TPM2BData(); clockInfo = TPMSClockInfo()
        firmwareVersion = 0; attested = TPMUAttest()
    }
    public init(qualifiedSigner: TPM2BName, extraData: TPM2BData, clockInfo: TPMSClockInfo, firmwareVersion: UInt64, attested: TPMUAttest) {
        self.qualifiedSigner = qualifiedSigner; self.extraData = extraData; self.clockInfo = clockInfo
        self.firmwareVersion = firmwareVersion; self.attested = attested
    }

    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.constant(Self.generatedValue, "magic", name: "TPM_GENERATED_VALUE")
        var type = attested.selector
        try c.value(&type, "type")
        try c.nested(&qualifiedSigner, "qualifiedSigner")
        try c.nested(&extraData, "extraData")
        try c.nested(&clockInfo, "clockInfo")
        try c.u64(&firmwareVersion, "firmwareVersion")
        try c.union(&attested, selector: type, "attested")
    }
}

/// TPMS_SIGNATURE_RSA (Part 2, 11.3.1): RSASSA and RSAPSS signatures.
public struct TPMSSignatureRSA: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_SIGNATURE_RSA" }
    public var hash: TPMAlgID
    public var sig: TPM2BPublicKeyRSA
    @inlinable public init() { hash = .null; sig = TPM2BPublicKeyRSA() }
    public init(hash: TPMAlgID, sig: [UInt8]) { self.hash = hash; self.sig = TPM2BPublicKeyRSA(sig) }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&hash, "hash")
        try c.nested(&sig, "sig")
    }
}

/// TPMS_SIGNATURE_ECC (Part 2, 11.3.2): ECDSA, ECDAA, SM2 and EC-Schnorr signatures.
public struct TPMSSignatureECC: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_SIGNATURE_ECC" }
    public var hash: TPMAlgID
    public var signatureR: TPM2BECCParameter
    public var signatureS: TPM2BECCParameter
    @inlinable public init() { hash = .null; signatureR = TPM2BECCParameter(); signatureS = TPM2BECCParameter() }
    public init(hash: TPMAlgID, r: [UInt8], s: [UInt8]) {
        self.hash = hash; signatureR = TPM2BECCParameter(r); signatureS = TPM2BECCParameter(s)
    }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&hash, "hash")
        try c.nested(&signatureR, "signatureR")
        try c.nested(&signatureS, "signatureS")
    }
}

/// An empty member (TPM_ALG_NULL in a union).
public struct TPMSEmpty: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_EMPTY" }
    @inlinable public init() {}
    @inlinable public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {}
}

/// TPMT_SIGNATURE (Part 2, 11.3.4): the signature algorithm selects TPMU_SIGNATURE.
public enum TPMTSignature: TPMStructure, Hashable {
    case rsassa(TPMSSignatureRSA)
    case rsapss(TPMSSignatureRSA)
    case ecdsa(TPMSSignatureECC)
    case ecdaa(TPMSSignatureECC)
    case sm2(TPMSSignatureECC)
    case ecschnorr(TPMSSignatureECC)
    case hmac(TPMTHA)
    case null
    public static var tpmName: String { "TPMT_SIGNATURE" }
    @inlinable public init() { self = .null }

    /// TPMI_ALG_SIG_SCHEME: the sigAlg field.
    @inlinable public var sigAlg: TPMAlgID {
        switch self {
        case .rsassa: .rsassa
        case .rsapss: .rsapss
        case .ecdsa: .ecdsa
        case .ecdaa: .ecdaa
        case .sm2: .sm2
        case .ecschnorr: .ecschnorr
        case .hmac: .hmac
        case .null: .null
        }
    }

    /// The hash algorithm the signature was made with.
    public var hashAlg: TPMAlgID {
        switch self {
        case .rsassa(let s), .rsapss(let s): s.hash
        case .ecdsa(let s), .ecdaa(let s), .sm2(let s), .ecschnorr(let s): s.hash
        case .hmac(let h): h.hashAlg
        case .null: .null
        }
    }

    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        var alg = sigAlg
        try c.value(&alg, "sigAlg")
        switch alg {
        case .rsassa: try c.member(&self, "rsassa", Self.rsassa) { if case .rsassa(let v) = $0 { v } else { nil } }
        case .rsapss: try c.member(&self, "rsapss", Self.rsapss) { if case .rsapss(let v) = $0 { v } else { nil } }
        case .ecdsa: try c.member(&self, "ecdsa", Self.ecdsa) { if case .ecdsa(let v) = $0 { v } else { nil } }
        case .ecdaa: try c.member(&self, "ecdaa", Self.ecdaa) { if case .ecdaa(let v) = $0 { v } else { nil } }
        case .sm2: try c.member(&self, "sm2", Self.sm2) { if case .sm2(let v) = $0 { v } else { nil } }
        case .ecschnorr: try c.member(&self, "ecschnorr", Self.ecschnorr) { if case .ecschnorr(let v) = $0 { v } else { nil } }
        case .hmac: try c.member(&self, "hmac", Self.hmac) { if case .hmac(let v) = $0 { v } else { nil } }
        case .null: try c.member(&self, "null", { (_: TPMSEmpty) in Self.null }) { if case .null = $0 { TPMSEmpty() } else { nil } }
        default: throw c.unknownSelector(alg, union: "TPMU_SIGNATURE")
        }
    }
}
