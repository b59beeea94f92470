// Start-up, testing, randomness, capability, clock and hierarchy commands (Part 3, 9, 10, 16, 24, 29, 30).

/// TPM2_Startup (Part 3, 9.3).
public struct TPM2Startup: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .startup }
    public var startupType = TPMSU.clear
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&startupType, "startupType") }
}

/// TPM2_Shutdown (Part 3, 9.4).
public struct TPM2Shutdown: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .shutdown }
    public var shutdownType = TPMSU.clear
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&shutdownType, "shutdownType")
    }
}

/// TPM2_SelfTest (Part 3, 10.2).
public struct TPM2SelfTest: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .selfTest }
    public var fullTest = true
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.bool(&fullTest, "fullTest") }
}

/// TPM2_GetRandom (Part 3, 16.1).
public struct TPM2GetRandom: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .getRandom }
    public var bytesRequested: UInt16 = 0
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.u16(&bytesRequested, "bytesRequested")
    }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public static var encryptable: Bool { true }
        public var randomBytes = TPM2BDigest()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.nested(&randomBytes, "randomBytes")
        }
    }
}

/// TPM2_StirRandom (Part 3, 16.2).
public struct TPM2StirRandom: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .stirRandom }
    public static var decryptable: Bool { true }
    public var inData = TPM2BSensitiveData()
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&inData, "inData") }
}

/// TPM2_GetCapability (Part 3, 30.2).
public struct TPM2GetCapability: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .getCapability }
    public var capability = TPMCap.algs
    public var property: UInt32 = 0
    public var propertyCount: UInt32 = 0
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&capability, "capability")
        try c.u32(&property, "property")
        try c.u32(&propertyCount, "propertyCount")
    }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public var moreData = false
        public var capabilityData = TPMSCapabilityData()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.bool(&moreData, "moreData")
            try c.nested(&capabilityData, "capabilityData")
        }
    }
}

/// TPM2_ReadClock (Part 3, 29.1).
public struct TPM2ReadClock: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .readClock }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public var currentTime = TPMSTimeInfo()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.nested(&currentTime, "currentTime")
        }
    }
}

/// TPM2_Clear (Part 3, 24.6).
public struct TPM2Clear: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .clear }
    public static var handleCount: Int { 1 }
    public static var authHandleCount: Int { 1 }
    /// TPM_RH_LOCKOUT or TPM_RH_PLATFORM.
    public var authHandle = TPMHandle.lockout
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&authHandle, "authHandle") }
}

/// TPM2_HierarchyChangeAuth (Part 3, 24.8).
public struct TPM2HierarchyChangeAuth: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .hierarchyChangeAuth }
    public static var handleCount: Int { 1 }
    public static var authHandleCount: Int { 1 }
    public static var decryptable: Bool { true }
    public var authHandle = TPMHandle.owner
    public var newAuth = TPM2BAuth()
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&authHandle, "authHandle") }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&newAuth, "newAuth") }
}
