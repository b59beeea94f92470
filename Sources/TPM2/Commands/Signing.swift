// Attestation and signing commands (Part 3, 18 and 20).

/// TPM2_Certify (Part 3, 18.2).
public struct TPM2Certify: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .certify }
    public static var handleCount: Int { 2 }
    public static var authHandleCount: Int { 2 }
    public static var decryptable: Bool { true }
    /// The object being certified (ADMIN role).
    public var objectHandle = TPMHandle(0)
    /// The signing key (USER role), or TPM_RH_NULL.
    public var signHandle = TPMHandle(0)
    public var qualifyingData = TPM2BData()
    public var inScheme = TPMTSigScheme()
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&objectHandle, "objectHandle")
        try c.value(&signHandle, "signHandle")
    }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&qualifyingData, "qualifyingData")
        try c.nested(&inScheme, "inScheme")
    }
    public typealias Response = TPMAttestResponse
}

/// The response of the commands that sign a TPMS_ATTEST: the original bytes and the signature.
public struct TPMAttestResponse: TPMResponse {
    @inlinable public init() {}
    public static var encryptable: Bool { true }
    public var attest = TPM2BAttest()
    public var signature = TPMTSignature()
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&attest, "attest")
        try c.nested(&signature, "signature")
    }
}

/// TPM2_Quote (Part 3, 18.4).
public struct TPM2Quote: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .quote }
    public static var handleCount: Int { 1 }
    public static var authHandleCount: Int { 1 }
    public static var decryptable: Bool { true }
    public var signHandle = TPMHandle(0)
    public var qualifyingData = TPM2BData()
    public var inScheme = TPMTSigScheme()
    public var pcrSelect = TPMLPCRSelection()
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&signHandle, "signHandle") }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&qualifyingData, "qualifyingData")
        try c.nested(&inScheme, "inScheme")
        try c.nested(&pcrSelect, "PCRselect")
    }
    public typealias Response = TPMAttestResponse
}

/// TPM2_Sign (Part 3, 20.2).
public struct TPM2Sign: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .sign }
    public static var handleCount: Int { 1 }
    public static var authHandleCount: Int { 1 }
    public static var decryptable: Bool { true }
    public var keyHandle = TPMHandle(0)
    public var digest = TPM2BDigest()
    public var inScheme = TPMTSigScheme()
    /// A hashcheck ticket proving the TPM hashed the data; the NULL ticket for unrestricted keys.
    public var validation = TPMTTicket.nullTicket(.hashcheck)
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&keyHandle, "keyHandle") }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&digest, "digest")
        try c.nested(&inScheme, "inScheme")
        try c.nested(&validation, "validation")
    }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public var signature = TPMTSignature()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&signature, "signature") }
    }
}

/// TPM2_VerifySignature (Part 3, 20.1).
public struct TPM2VerifySignature: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .verifySignature }
    public static var handleCount: Int { 1 }
    public static var decryptable: Bool { true }
    public var keyHandle = TPMHandle(0)
    public var digest = TPM2BDigest()
    public var signature = TPMTSignature()
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&keyHandle, "keyHandle") }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&digest, "digest")
        try c.nested(&signature, "signature")
    }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public var validation = TPMTTKVerified()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.nested(&validation, "validation")
        }
    }
}
