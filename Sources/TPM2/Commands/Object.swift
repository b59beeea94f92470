// Object commands (Part 3, 12), hierarchy (24.1), context management (28) and EvictControl.

/// TPM2_CreatePrimary (Part 3, 24.1).
public struct TPM2CreatePrimary: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .createPrimary }
    public static var handleCount: Int { 1 }
    public static var authHandleCount: Int { 1 }
    public static var decryptable: Bool { true }
    /// TPM_RH_ENDORSEMENT, TPM_RH_OWNER, TPM_RH_PLATFORM or TPM_RH_NULL.
    public var primaryHandle = TPMHandle.owner
    public var inSensitive = TPM2BSensitiveCreate()
    public var inPublic = TPM2BPublic()
    public var outsideInfo = TPM2BData()
    public var creationPCR = TPMLPCRSelection()
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&primaryHandle, "primaryHandle") }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&inSensitive, "inSensitive")
        try c.nested(&inPublic, "inPublic")
        try c.nested(&outsideInfo, "outsideInfo")
        try c.nested(&creationPCR, "creationPCR")
    }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public static var handleCount: Int { 1 }
        public var objectHandle = TPMHandle(0)
        public var outPublic = TPM2BPublic()
        public var creationData = TPM2BCreationData()
        public var creationHash = TPM2BDigest()
        public var creationTicket = TPMTTKCreation()
        public var name = TPM2BName()
        @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.value(&objectHandle, "objectHandle")
        }
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.nested(&outPublic, "outPublic")
            try c.nested(&creationData, "creationData")
            try c.nested(&creationHash, "creationHash")
            try c.nested(&creationTicket, "creationTicket")
            try c.nested(&name, "name")
        }
    }
}

/// TPM2_Create (Part 3, 12.1).
public struct TPM2Create: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .create }
    public static var handleCount: Int { 1 }
    public static var authHandleCount: Int { 1 }
    public static var decryptable: Bool { true }
    public var parentHandle = TPMHandle(0)
    public var inSensitive = TPM2BSensitiveCreate()
    public var inPublic = TPM2BPublic()
    public var outsideInfo = TPM2BData()
    public var creationPCR = TPMLPCRSelection()
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&parentHandle, "parentHandle") }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&inSensitive, "inSensitive")
        try c.nested(&inPublic, "inPublic")
        try c.nested(&outsideInfo, "outsideInfo")
        try c.nested(&creationPCR, "creationPCR")
    }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public static var encryptable: Bool { true }
        public var outPrivate = TPM2BPrivate()
        public var outPublic = TPM2BPublic()
        public var creationData = TPM2BCreationData()
        public var creationHash = TPM2BDigest()
        public var creationTicket = TPMTTKCreation()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.nested(&outPrivate, "outPrivate")
            try c.nested(&outPublic, "outPublic")
            try c.nested(&creationData, "creationData")
            try c.nested(&creationHash, "creationHash")
            try c.nested(&creationTicket, "creationTicket")
        }
    }
}

/// TPM2_Load (Part 3, 12.2).
public struct TPM2Load: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .load }
    public static var handleCount: Int { 1 }
    public static var authHandleCount: Int { 1 }
    public static var decryptable: Bool { true }
    public var parentHandle = TPMHandle(0)
    public var inPrivate = TPM2BPrivate()
    public var inPublic = TPM2BPublic()
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&parentHandle, "parentHandle") }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&inPrivate, "inPrivate")
        try c.nested(&inPublic, "inPublic")
    }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public static var handleCount: Int { 1 }
        public static var encryptable: Bool { true }
        public var objectHandle = TPMHandle(0)
        public var name = TPM2BName()
        @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.value(&objectHandle, "objectHandle")
        }
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&name, "name") }
    }
}

/// TPM2_LoadExternal (Part 3, 12.3): a public key (and optionally its sensitive area) from outside.
public struct TPM2LoadExternal: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .loadExternal }
    public static var decryptable: Bool { true }
    /// Absent (size 0) when only the public part is loaded.
    public var inPrivate: TPMTSensitive? = nil
    public var inPublic = TPM2BPublic()
    public var hierarchy = TPMHandle.null
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.sizedOptional(&inPrivate, max: TPMTSensitive.sizedMaxSize, "inPrivate")
        try c.nested(&inPublic, "inPublic")
        try c.value(&hierarchy, "hierarchy")
    }
    public typealias Response = TPM2Load.Response
}

/// TPM2_ReadPublic (Part 3, 12.4).
public struct TPM2ReadPublic: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .readPublic }
    public static var handleCount: Int { 1 }
    public var objectHandle = TPMHandle(0)
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&objectHandle, "objectHandle") }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public static var encryptable: Bool { true }
        public var outPublic = TPM2BPublic()
        public var name = TPM2BName()
        public var qualifiedName = TPM2BName()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.nested(&outPublic, "outPublic")
            try c.nested(&name, "name")
            try c.nested(&qualifiedName, "qualifiedName")
        }
    }
}

/// TPM2_ActivateCredential (Part 3, 12.5).
public struct TPM2ActivateCredential: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .activateCredential }
    public static var handleCount: Int { 2 }
    public static var authHandleCount: Int { 2 }
    public static var decryptable: Bool { true }
    /// The object the credential is bound to (ADMIN role).
    public var activateHandle = TPMHandle(0)
    /// The key that decrypts the seed, typically the EK (USER role).
    public var keyHandle = TPMHandle(0)
    public var credentialBlob = TPM2BIDObject()
    public var secret = TPM2BEncryptedSecret()
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&activateHandle, "activateHandle")
        try c.value(&keyHandle, "keyHandle")
    }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&credentialBlob, "credentialBlob")
        try c.nested(&secret, "secret")
    }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public static var encryptable: Bool { true }
        public var certInfo = TPM2BDigest()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&certInfo, "certInfo") }
    }
}

/// TPM2_MakeCredential (Part 3, 12.6).
public struct TPM2MakeCredential: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .makeCredential }
    public static var handleCount: Int { 1 }
    public static var decryptable: Bool { true }
    public var handle = TPMHandle(0)
    public var credential = TPM2BDigest()
    public var objectName = TPM2BName()
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&handle, "handle") }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&credential, "credential")
        try c.nested(&objectName, "objectName")
    }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public static var encryptable: Bool { true }
        public var credentialBlob = TPM2BIDObject()
        public var secret = TPM2BEncryptedSecret()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.nested(&credentialBlob, "credentialBlob")
            try c.nested(&secret, "secret")
        }
    }
}

/// TPM2_Unseal (Part 3, 12.7).
public struct TPM2Unseal: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .unseal }
    public static var handleCount: Int { 1 }
    public static var authHandleCount: Int { 1 }
    public var itemHandle = TPMHandle(0)
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&itemHandle, "itemHandle") }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public static var encryptable: Bool { true }
        public var outData = TPM2BSensitiveData()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&outData, "outData") }
    }
}

/// TPM2_ContextSave (Part 3, 28.2).
public struct TPM2ContextSave: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .contextSave }
    public static var handleCount: Int { 1 }
    public var saveHandle = TPMHandle(0)
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&saveHandle, "saveHandle") }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public var context = TPMSContext()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&context, "context") }
    }
}

/// TPM2_ContextLoad (Part 3, 28.3).
public struct TPM2ContextLoad: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .contextLoad }
    public var context = TPMSContext()
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&context, "context") }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public static var handleCount: Int { 1 }
        public var loadedHandle = TPMHandle(0)
        @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.value(&loadedHandle, "loadedHandle")
        }
    }
}

/// TPM2_FlushContext (Part 3, 28.4): the handle to flush is a parameter, not a handle.
public struct TPM2FlushContext: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .flushContext }
    public var flushHandle = TPMHandle(0)
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&flushHandle, "flushHandle") }
}

/// TPM2_EvictControl (Part 3, 28.5).
public struct TPM2EvictControl: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .evictControl }
    public static var handleCount: Int { 2 }
    public static var authHandleCount: Int { 1 }
    /// TPM_RH_OWNER or TPM_RH_PLATFORM.
    public var auth = TPMHandle.owner
    public var objectHandle = TPMHandle(0)
    public var persistentHandle = TPMHandle(0)
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&auth, "auth")
        try c.value(&objectHandle, "objectHandle")
    }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&persistentHandle, "persistentHandle")
    }
}
