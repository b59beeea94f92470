// Session and policy commands (Part 3, 11 and 23).

/// TPM2_StartAuthSession (Part 3, 11.1).
public struct TPM2StartAuthSession: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .startAuthSession }
    public static var handleCount: Int { 2 }
    public static var decryptable: Bool { true }
    /// The key that decrypts `encryptedSalt`, or TPM_RH_NULL for an unsalted session.
    public var tpmKey = TPMHandle.null
    /// The entity whose authValue is mixed into the session key, or TPM_RH_NULL.
    public var bind = TPMHandle.null
    public var nonceCaller = TPM2BNonce()
    public var encryptedSalt = TPM2BEncryptedSecret()
    public var sessionType = TPMSE.hmac
    public var symmetric = TPMTSymDef()
    public var authHash = TPMAlgID.sha256
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&tpmKey, "tpmKey")
        try c.value(&bind, "bind")
    }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&nonceCaller, "nonceCaller")
        try c.nested(&encryptedSalt, "encryptedSalt")
        try c.value(&sessionType, "sessionType")
        try c.nested(&symmetric, "symmetric")
        try c.value(&authHash, "authHash")
    }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public static var handleCount: Int { 1 }
        public static var encryptable: Bool { true }
        public var sessionHandle = TPMHandle(0)
        public var nonceTPM = TPM2BNonce()
        @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.value(&sessionHandle, "sessionHandle")
        }
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&nonceTPM, "nonceTPM") }
    }
}

/// TPM2_PolicyRestart (Part 3, 11.2).
public struct TPM2PolicyRestart: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .policyRestart }
    public static var handleCount: Int { 1 }
    public var sessionHandle = TPMHandle(0)
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&sessionHandle, "sessionHandle") }
}

/// TPM2_PolicySecret (Part 3, 23.4).
public struct TPM2PolicySecret: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .policySecret }
    public static var handleCount: Int { 2 }
    public static var authHandleCount: Int { 1 }
    public static var decryptable: Bool { true }
    public var authHandle = TPMHandle.endorsement
    public var policySession = TPMHandle(0)
    public var nonceTPM = TPM2BNonce()
    public var cpHashA = TPM2BDigest()
    public var policyRef = TPM2BNonce()
    public var expiration: Int32 = 0
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&authHandle, "authHandle")
        try c.value(&policySession, "policySession")
    }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&nonceTPM, "nonceTPM")
        try c.nested(&cpHashA, "cpHashA")
        try c.nested(&policyRef, "policyRef")
        var e = UInt32(bitPattern: expiration)
        try c.u32(&e, "expiration")
        expiration = Int32(bitPattern: e)
    }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public static var encryptable: Bool { true }
        public var timeout = TPM2BTimeout()
        public var policyTicket = TPMTTKAuth()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.nested(&timeout, "timeout")
            try c.nested(&policyTicket, "policyTicket")
        }
    }
}

/// TPM2_PolicyOR (Part 3, 23.6).
public struct TPM2PolicyOR: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .policyOR }
    public static var handleCount: Int { 1 }
    public var policySession = TPMHandle(0)
    public var pHashList = TPMLDigest()
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&policySession, "policySession") }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&pHashList, "pHashList") }
}

/// TPM2_PolicyPCR (Part 3, 23.7).
public struct TPM2PolicyPCR: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .policyPCR }
    public static var handleCount: Int { 1 }
    public static var decryptable: Bool { true }
    public var policySession = TPMHandle(0)
    /// Expected digest of the selected PCRs, or empty to use their current values.
    public var pcrDigest = TPM2BDigest()
    public var pcrs = TPMLPCRSelection()
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&policySession, "policySession") }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&pcrDigest, "pcrDigest")
        try c.nested(&pcrs, "pcrs")
    }
}

/// TPM2_PolicyCommandCode (Part 3, 23.11).
public struct TPM2PolicyCommandCode: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .policyCommandCode }
    public static var handleCount: Int { 1 }
    public var policySession = TPMHandle(0)
    public var commandCode = TPMCC(rawValue: 0)
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&policySession, "policySession") }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&commandCode, "code") }
}

/// TPM2_PolicyAuthValue (Part 3, 23.17).
public struct TPM2PolicyAuthValue: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .policyAuthValue }
    public static var handleCount: Int { 1 }
    public var policySession = TPMHandle(0)
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&policySession, "policySession") }
}

/// TPM2_PolicyPassword (Part 3, 23.18).
public struct TPM2PolicyPassword: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .policyPassword }
    public static var handleCount: Int { 1 }
    public var policySession = TPMHandle(0)
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&policySession, "policySession") }
}

/// TPM2_PolicyGetDigest (Part 3, 23.19).
public struct TPM2PolicyGetDigest: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .policyGetDigest }
    public static var handleCount: Int { 1 }
    public var policySession = TPMHandle(0)
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&policySession, "policySession") }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public static var encryptable: Bool { true }
        public var policyDigest = TPM2BDigest()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.nested(&policyDigest, "policyDigest")
        }
    }
}
