// Further commands a TPM implements and tools use (Part 3, 15, 25, 31).

/// TPM2_Hash (Part 3, 15.4): a digest and, for data that does not start with
/// TPM_GENERATED_VALUE, a ticket that a restricted key may sign.
public struct TPM2Hash: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .hash }
    public static var decryptable: Bool { true }
    public var data = TPM2BMaxBuffer()
    public var hashAlg = TPMAlgID.sha256
    public var hierarchy = TPMHandle.null
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&data, "data")
        try c.value(&hashAlg, "hashAlg")
        try c.value(&hierarchy, "hierarchy")
    }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public static var encryptable: Bool { true }
        public var outHash = TPM2BDigest()
        public var validation = TPMTTKHashcheck()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.nested(&outHash, "outHash")
            try c.nested(&validation, "validation")
        }
    }
}

/// TPM2_NV_SetBits (Part 3, 31.10).
public struct TPM2NVSetBits: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .nvSetBits }
    public static var handleCount: Int { 2 }
    public static var authHandleCount: Int { 1 }
    public var authHandle = TPMHandle(0)
    public var nvIndex = TPMHandle(0)
    public var bits: UInt64 = 0
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&authHandle, "authHandle")
        try c.value(&nvIndex, "nvIndex")
    }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.u64(&bits, "bits") }
}

/// TPM2_NV_WriteLock (Part 3, 31.11).
public struct TPM2NVWriteLock: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .nvWriteLock }
    public static var handleCount: Int { 2 }
    public static var authHandleCount: Int { 1 }
    public var authHandle = TPMHandle(0)
    public var nvIndex = TPMHandle(0)
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&authHandle, "authHandle")
        try c.value(&nvIndex, "nvIndex")
    }
}

/// TPM2_NV_ReadLock (Part 3, 31.14).
public struct TPM2NVReadLock: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .nvReadLock }
    public static var handleCount: Int { 2 }
    public static var authHandleCount: Int { 1 }
    public var authHandle = TPMHandle(0)
    public var nvIndex = TPMHandle(0)
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&authHandle, "authHandle")
        try c.value(&nvIndex, "nvIndex")
    }
}

/// TPM2_DictionaryAttackLockReset (Part 3, 25.2).
public struct TPM2DictionaryAttackLockReset: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .dictionaryAttackLockReset }
    public static var handleCount: Int { 1 }
    public static var authHandleCount: Int { 1 }
    public var lockHandle = TPMHandle.lockout
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&lockHandle, "lockHandle") }
}

/// TPM2_DictionaryAttackParameters (Part 3, 25.3).
public struct TPM2DictionaryAttackParameters: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .dictionaryAttackParameters }
    public static var handleCount: Int { 1 }
    public static var authHandleCount: Int { 1 }
    public var lockHandle = TPMHandle.lockout
    public var newMaxTries: UInt32 = 0
    public var newRecoveryTime: UInt32 = 0
    public var lockoutRecovery: UInt32 = 0
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&lockHandle, "lockHandle") }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.u32(&newMaxTries, "newMaxTries")
        try c.u32(&newRecoveryTime, "newRecoveryTime")
        try c.u32(&lockoutRecovery, "lockoutRecovery")
    }
}

/// TPM2_ObjectChangeAuth (Part 3, 12.8).
public struct TPM2ObjectChangeAuth: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .objectChangeAuth }
    public static var handleCount: Int { 2 }
    public static var authHandleCount: Int { 1 }
    public static var decryptable: Bool { true }
    public var objectHandle = TPMHandle(0)
    public var parentHandle = TPMHandle(0)
    public var newAuth = TPM2BAuth()
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&objectHandle, "objectHandle")
        try c.value(&parentHandle, "parentHandle")
    }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&newAuth, "newAuth") }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public static var encryptable: Bool { true }
        public var outPrivate = TPM2BPrivate()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.nested(&outPrivate, "outPrivate")
        }
    }
}

/// TPM2_TestParms (Part 3, 10.4).
public struct TPM2TestParms: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .testParms }
    /// TPMT_PUBLIC_PARMS: the type and its parameters.
    public var publicParms = TPMUPublicParms()
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        var type = publicParms.selector
        try c.value(&type, "type")
        try c.union(&publicParms, selector: type, "parameters")
    }
}
