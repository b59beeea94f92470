// PCR commands (Part 3, 22).

/// TPM2_PCR_Read (Part 3, 22.4).
public struct TPM2PCRRead: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .pcrRead }
    public var pcrSelectionIn = TPMLPCRSelection()
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&pcrSelectionIn, "pcrSelectionIn")
    }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public var pcrUpdateCounter: UInt32 = 0
        /// The PCRs actually read (at most 8 digests per response).
        public var pcrSelectionOut = TPMLPCRSelection()
        public var pcrValues = TPMLDigest()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
            try c.u32(&pcrUpdateCounter, "pcrUpdateCounter")
            try c.nested(&pcrSelectionOut, "pcrSelectionOut")
            try c.nested(&pcrValues, "pcrValues")
        }
    }
}

/// TPM2_PCR_Extend (Part 3, 22.2).
public struct TPM2PCRExtend: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .pcrExtend }
    public static var handleCount: Int { 1 }
    public static var authHandleCount: Int { 1 }
    public var pcrHandle = TPMHandle(0)
    public var digests = TPMLDigestValues()
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&pcrHandle, "pcrHandle") }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&digests, "digests") }
}

/// TPM2_PCR_Event (Part 3, 22.3): the TPM hashes the event data with every bank's hash and extends.
public struct TPM2PCREvent: TPMCommand {
    @inlinable public init() {}
    public static var code: TPMCC { .pcrEvent }
    public static var handleCount: Int { 1 }
    public static var authHandleCount: Int { 1 }
    public static var decryptable: Bool { true }
    public var pcrHandle = TPMHandle(0)
    public var eventData = TPM2BEvent()
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&pcrHandle, "pcrHandle") }
    @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&eventData, "eventData") }
    public struct Response: TPMResponse {
        @inlinable public init() {}
        public var digests = TPMLDigestValues()
        @inlinable public mutating func parameters<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&digests, "digests") }
    }
}

/// TPM2_PCR_Reset (Part 3, 22.8).
public struct TPM2PCRReset: TPMCommand {
    @inlinable public init() {}
    public typealias Response = TPMEmptyResponse
    public static var code: TPMCC { .pcrReset }
    public static var handleCount: Int { 1 }
    public static var authHandleCount: Int { 1 }
    public var pcrHandle = TPMHandle(0)
    @inlinable public mutating func handles<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.value(&pcrHandle, "pcrHandle") }
}
