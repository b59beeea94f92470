// NV storage commands (Part 3, 31).

/// TPM2_NV_DefineSpace (Part 3, 31.3).
public struct TPM2NVDefineSpace: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .nvDefineSpace }
    public static var handleCount: Int { 1 }
    public static var authHandleCount: Int { 1 }
    public static var decryptable: Bool { true }
    /// TPM_RH_OWNER or TPM_RH_PLATFORM.
    public var authHandle = TPMHandle.owner
    public var auth = TPM2BAuth()
    public var publicInfo = TPM2BNVPublic()
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&authHandle, "authHandle") }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&auth, "auth")
        try c.nested(&publicInfo, "publicInfo")
    }
}

/// TPM2_NV_UndefineSpace (Part 3, 31.4).
public struct TPM2NVUndefineSpace: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .nvUndefineSpace }
    public static var handleCount: Int { 2 }
    public static var authHandleCount: Int { 1 }
    public var authHandle = TPMHandle.owner
    public var nvIndex = TPMHandle(0)
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&authHandle, "authHandle")
        try c.value(&nvIndex, "nvIndex")
    }
}

/// TPM2_NV_ReadPublic (Part 3, 31.6).
public struct TPM2NVReadPublic: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .nvReadPublic }
    public static var handleCount: Int { 1 }
    public var nvIndex = TPMHandle(0)
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&nvIndex, "nvIndex") }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public var nvPublic = TPM2BNVPublic()
        public var nvName = TPM2BName()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.nested(&nvPublic, "nvPublic")
            try c.nested(&nvName, "nvName")
        }
    }
}

/// TPM2_NV_Write (Part 3, 31.7).
public struct TPM2NVWrite: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .nvWrite }
    public static var handleCount: Int { 2 }
    public static var authHandleCount: Int { 1 }
    public static var decryptable: Bool { true }
    /// The index itself, TPM_RH_OWNER or TPM_RH_PLATFORM, as the index's attributes allow.
    public var authHandle = TPMHandle(0)
    public var nvIndex = TPMHandle(0)
    public var data = TPM2BMaxNVBuffer()
    public var offset: UInt16 = 0
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&authHandle, "authHandle")
        try c.value(&nvIndex, "nvIndex")
    }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&data, "data")
        try c.u16(&offset, "offset")
    }
}

/// TPM2_NV_Increment (Part 3, 31.8).
public struct TPM2NVIncrement: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .nvIncrement }
    public static var handleCount: Int { 2 }
    public static var authHandleCount: Int { 1 }
    public var authHandle = TPMHandle(0)
    public var nvIndex = TPMHandle(0)
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&authHandle, "authHandle")
        try c.value(&nvIndex, "nvIndex")
    }
}

/// TPM2_NV_Extend (Part 3, 31.9).
public struct TPM2NVExtend: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .nvExtend }
    public static var handleCount: Int { 2 }
    public static var authHandleCount: Int { 1 }
    public static var decryptable: Bool { true }
    public var authHandle = TPMHandle(0)
    public var nvIndex = TPMHandle(0)
    public var data = TPM2BMaxNVBuffer()
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&authHandle, "authHandle")
        try c.value(&nvIndex, "nvIndex")
    }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&data, "data") }
}

/// TPM2_NV_Read (Part 3, 31.13).
public struct TPM2NVRead: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .nvRead }
    public static var handleCount: Int { 2 }
    public static var authHandleCount: Int { 1 }
    public var authHandle = TPMHandle(0)
    public var nvIndex = TPMHandle(0)
    public var size: UInt16 = 0
    public var offset: UInt16 = 0
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&authHandle, "authHandle")
        try c.value(&nvIndex, "nvIndex")
    }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.u16(&size, "size")
        try c.u16(&offset, "offset")
    }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public static var encryptable: Bool { true }
        public var data = TPM2BMaxNVBuffer()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&data, "data") }
    }
}
