// Capability data (Part 2, 10.8–10.10): what TPM2_GetCapability returns.

/// MAX_CAP_BUFFER (1024) less the capability and count fields: the room a list has.
let maxCapData = 1016

/// TPMS_ALG_PROPERTY (Part 2, 10.8.1).
public struct TPMSAlgProperty: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_ALG_PROPERTY" }
    public var alg: TPMAlgID
    public var algProperties: TPMAAlgorithm
    @inlinable public init() { alg = .error; algProperties = [] }
    public init(alg: TPMAlgID, algProperties: TPMAAlgorithm) { self.alg = alg; self.algProperties = algProperties }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&alg, "alg")
        try c.value(&algProperties, "algProperties")
    }
}

/// TPMS_TAGGED_PROPERTY (Part 2, 10.8.2).
public struct TPMSTaggedProperty: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_TAGGED_PROPERTY" }
    public var property: TPMPT
    public var value: UInt32
    @inlinable public init() { property = TPMPT(rawValue: 0); value = 0 }
    public init(property: TPMPT, value: UInt32) { self.property = property; self.value = value }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&property, "property")
        try c.u32(&value, "value")
    }
}

/// TPMS_TAGGED_POLICY (Part 2, 10.8.4).
public struct TPMSTaggedPolicy: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_TAGGED_POLICY" }
    public var handle: TPMHandle
    public var policyHash: TPMTHA
    @inlinable public init() { handle = TPMHandle(0); policyHash = TPMTHA() }
    public init(handle: TPMHandle, policyHash: TPMTHA) { self.handle = handle; self.policyHash = policyHash }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&handle, "handle")
        try c.nested(&policyHash, "policyHash")
    }
}

/// TPMS_ACT_DATA (Part 2, 10.8.5).
public struct TPMSACTData: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_ACT_DATA" }
    public var handle: TPMHandle
    public var timeout: UInt32
    public var attributes: TPMAACT
    @inlinable public init() { handle = TPMHandle(0); timeout = 0; attributes = [] }
    public init(handle: TPMHandle, timeout: UInt32,
                attributes: TPMAACT) { self.handle = handle; self.timeout = timeout; self.attributes = attributes }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&handle, "handle")
        try c.u32(&timeout, "timeout")
        try c.value(&attributes, "attributes")
    }
}

/// TPMS_SPDM_SESSION_INFO (Part 2, 10.8.6, Library 1.83).
public struct TPMSSPDMSessionInfo: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_SPDM_SESSION_INFO" }
    public var reqKeyName: TPM2BName
    public var tpmKeyName: TPM2BName
    @inlinable public init() { reqKeyName = TPM2BName(); tpmKeyName = TPM2BName() }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&reqKeyName, "reqKeyName")
        try c.nested(&tpmKeyName, "tpmKeyName")
    }
}

/// TPMU_CAPABILITIES (Part 2, 10.10.1), selected by TPMS_CAPABILITY_DATA.capability. Each
/// member is a TPML list with its specification limit (derived from MAX_CAP_BUFFER = 1024).
public enum TPMUCapabilities: TPMUnion, Hashable {
    /// TPML_ALG_PROPERTY
    case algorithms([TPMSAlgProperty])
    /// TPML_HANDLE
    case handles([TPMHandle])
    /// TPML_CCA
    case command([TPMACC])
    /// TPML_CC
    case ppCommands([TPMCC])
    /// TPML_CC
    case auditCommands([TPMCC])
    /// TPML_PCR_SELECTION
    case assignedPCR(TPMLPCRSelection)
    /// TPML_TAGGED_TPM_PROPERTY
    case tpmProperties([TPMSTaggedProperty])
    /// TPML_TAGGED_PCR_PROPERTY
    case pcrProperties([TPMSTaggedPCRSelect])
    /// TPML_ECC_CURVE
    case eccCurves([TPMECCCurve])
    /// TPML_TAGGED_POLICY
    case authPolicies([TPMSTaggedPolicy])
    /// TPML_ACT_DATA
    case actData([TPMSACTData])
    /// TPML_PUB_KEY
    case pubKeys([TPM2BPublic])
    /// TPML_SPDM_SESSION_INFO
    case spdmSessionInfo([TPMSSPDMSessionInfo])
    /// TPM_CAP_VENDOR_PROPERTY: a list of UINT32 values whose meaning the vendor defines.
    case vendor([TPMHandle])

    public static var tpmName: String { "TPMU_CAPABILITIES" }
    @inlinable public init() { self = .algorithms([]) }

    public var selector: TPMCap {
        switch self {
        case .algorithms: .algs
        case .handles: .handles
        case .command: .commands
        case .ppCommands: .ppCommands
        case .auditCommands: .auditCommands
        case .assignedPCR: .pcrs
        case .tpmProperties: .tpmProperties
        case .pcrProperties: .pcrProperties
        case .eccCurves: .eccCurves
        case .authPolicies: .authPolicies
        case .actData: .act
        case .pubKeys: .pubKeys
        case .spdmSessionInfo: .spdmSessionInfo
        case .vendor: .vendorProperty
        }
    }

    public mutating func wire<C: TPMCoder>(_ c: inout C, selector: TPMCap) throws(TPMWireError) {
        // Each case: take the current list (encoding), code it, store it back (decoding).
        switch selector {
        case .algs:
            var l: [TPMSAlgProperty] = []
            if case .algorithms(let v) = self { l = v } else if !c.isDecoding { throw mismatch(c) }
            try c.list(&l, max: maxCapData / 6, "algorithms"); self = .algorithms(l)
        case .handles:
            var l: [TPMHandle] = []
            if case .handles(let v) = self { l = v } else if !c.isDecoding { throw mismatch(c) }
            try c.valueList(&l, max: maxCapData / 4, "handles"); self = .handles(l)
        case .commands:
            var l: [TPMACC] = []
            if case .command(let v) = self { l = v } else if !c.isDecoding { throw mismatch(c) }
            try c.valueList(&l, max: maxCapData / 4, "command"); self = .command(l)
        case .ppCommands:
            var l: [TPMCC] = []
            if case .ppCommands(let v) = self { l = v } else if !c.isDecoding { throw mismatch(c) }
            try c.valueList(&l, max: maxCapData / 4, "ppCommands"); self = .ppCommands(l)
        case .auditCommands:
            var l: [TPMCC] = []
            if case .auditCommands(let v) = self { l = v } else if !c.isDecoding { throw mismatch(c) }
            try c.valueList(&l, max: maxCapData / 4, "auditCommands"); self = .auditCommands(l)
        case .pcrs:
            try c.member(&self, "assignedPCR", Self.assignedPCR) { if case .assignedPCR(let v) = $0 { v } else { nil } }
        case .tpmProperties:
            var l: [TPMSTaggedProperty] = []
            if case .tpmProperties(let v) = self { l = v } else if !c.isDecoding { throw mismatch(c) }
            try c.list(&l, max: maxCapData / 8, "tpmProperties"); self = .tpmProperties(l)
        case .pcrProperties:
            var l: [TPMSTaggedPCRSelect] = []
            if case .pcrProperties(let v) = self { l = v } else if !c.isDecoding { throw mismatch(c) }
            try c.list(&l, max: maxCapData / 8, "pcrProperties"); self = .pcrProperties(l)
        case .eccCurves:
            var l: [TPMECCCurve] = []
            if case .eccCurves(let v) = self { l = v } else if !c.isDecoding { throw mismatch(c) }
            try c.valueList(&l, max: maxCapData / 2, "eccCurves"); self = .eccCurves(l)
        case .authPolicies:
            var l: [TPMSTaggedPolicy] = []
            if case .authPolicies(let v) = self { l = v } else if !c.isDecoding { throw mismatch(c) }
            try c.list(&l, max: maxCapData / 70, "authPolicies"); self = .authPolicies(l)
        case .act:
            var l: [TPMSACTData] = []
            if case .actData(let v) = self { l = v } else if !c.isDecoding { throw mismatch(c) }
            try c.list(&l, max: maxCapData / 12, "actData"); self = .actData(l)
        case .pubKeys:
            var l: [TPM2BPublic] = []
            if case .pubKeys(let v) = self { l = v } else if !c.isDecoding { throw mismatch(c) }
            try c.list(&l, max: 16, "pubKeys"); self = .pubKeys(l)
        case .spdmSessionInfo:
            var l: [TPMSSPDMSessionInfo] = []
            if case .spdmSessionInfo(let v) = self { l = v } else if !c.isDecoding { throw mismatch(c) }
            try c.list(&l, max: maxCapData / 136, "spdmSessionInfo"); self = .spdmSessionInfo(l)
        case .vendorProperty:
            var l: [TPMHandle] = []
            if case .vendor(let v) = self { l = v } else if !c.isDecoding { throw mismatch(c) }
            try c.valueList(&l, max: maxCapData / 4, "vendor"); self = .vendor(l)
        default:
            throw c.unknownSelector(selector, union: Self.tpmName)
        }
    }

    private func mismatch<C: TPMCoder>(_ c: C) -> TPMWireError {
        TPMWireError(.selectorMismatch, offset: c.offset, reason: "the capability data is not of the kind its selector names")
    }
}

/// TPMS_CAPABILITY_DATA (Part 2, 10.10.2).
public struct TPMSCapabilityData: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_CAPABILITY_DATA" }
    public var data: TPMUCapabilities
    public var capability: TPMCap { data.selector }
    @inlinable public init() { data = TPMUCapabilities() }
    public init(_ data: TPMUCapabilities) { self.data = data }
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        var cap = data.selector
        try c.value(&cap, "capability")
        try c.union(&data, selector: cap, "data")
    }
}
