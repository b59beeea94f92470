import TPM2

// The vTPM's persistent state, encoded with the same TPM wire coder as everything else
// (big-endian, sized, bounded) and then encrypted by the state store.

/// An NV index: its public area, authValue and contents.
struct NVIndexRecord: TPMStructure, Hashable {
    static var tpmName: String { "VTPM_NV_INDEX" }
    var publicArea = TPMSNVPublic()
    var authValue = TPM2BAuth()
    var data: [UInt8] = []
    init() {}
    init(publicArea: TPMSNVPublic, authValue: [UInt8], data: [UInt8]) {
        self.publicArea = publicArea; self.authValue = TPM2BAuth(authValue); self.data = data
    }
    mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&publicArea, "publicArea")
        try c.nested(&authValue, "authValue")
        var size = UInt16(truncatingIfNeeded: data.count)
        try c.u16(&size, "dataSize")
        try c.fixedBytes(&data, count: Int(size), "data")
    }
}

/// A persistent object (TPM2_EvictControl): its handle, hierarchy, public and sensitive areas.
struct PersistentObjectRecord: TPMStructure, Hashable {
    static var tpmName: String { "VTPM_PERSISTENT_OBJECT" }
    var handle = TPMHandle(0)
    var hierarchy = TPMHandle.null
    var publicArea = TPMTPublic()
    var sensitive = TPMTSensitive()
    var isPrimary = false
    init() {}
    mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&handle, "handle")
        try c.value(&hierarchy, "hierarchy")
        try c.sized(&publicArea, max: TPMTPublic.sizedMaxSize, "publicArea")
        try c.sized(&sensitive, max: TPMTSensitive.sizedMaxSize, "sensitive")
        try c.bool(&isPrimary, "isPrimary")
    }
}

/// A cached RSA primary key: deriving primes is slow, so they are kept, keyed by the digest of
/// the seed and template they came from.
struct PrimaryCacheRecord: TPMStructure, Hashable {
    static var tpmName: String { "VTPM_PRIMARY_CACHE" }
    var key: [UInt8] = []
    var modulus: [UInt8] = []
    var prime: [UInt8] = []
    init() {}
    init(key: [UInt8], modulus: [UInt8], prime: [UInt8]) { self.key = key; self.modulus = modulus; self.prime = prime }
    mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.sizedBytes(&key, max: 64, "key")
        try c.sizedBytes(&modulus, max: 512, "modulus")
        try c.sizedBytes(&prime, max: 512, "prime")
    }
}

/// A hierarchy's secrets and authorization.
struct HierarchyRecord: TPMStructure, Hashable {
    static var tpmName: String { "VTPM_HIERARCHY" }
    var seed: [UInt8] = []
    /// Secret used for tickets and obfuscation (the hierarchy's "proof").
    var proof: [UInt8] = []
    var authValue = TPM2BAuth()
    var authPolicy = TPM2BDigest()
    var policyAlg = TPMAlgID.null
    init() {}
    mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.sizedBytes(&seed, max: 64, "seed")
        try c.sizedBytes(&proof, max: 64, "proof")
        try c.nested(&authValue, "authValue")
        try c.nested(&authPolicy, "authPolicy")
        try c.value(&policyAlg, "policyAlg")
    }
}

/// Everything that survives a power cycle.
struct PersistentState: TPMStructure, Hashable {
    static var tpmName: String { "VTPM_STATE" }
    static let currentVersion: UInt32 = 1
    var version: UInt32 = PersistentState.currentVersion
    var platform = HierarchyRecord()
    var owner = HierarchyRecord()
    var endorsement = HierarchyRecord()
    /// The lockout hierarchy has no seed; its auth and policy live here.
    var lockout = HierarchyRecord()
    var nv: [NVIndexRecord] = []
    var persistentObjects: [PersistentObjectRecord] = []
    var primaryCache: [PrimaryCacheRecord] = []
    /// Milliseconds of TPM time accumulated across power cycles (TPMS_CLOCK_INFO.clock).
    var clock: UInt64 = 0
    var resetCount: UInt32 = 0
    var restartCount: UInt32 = 0
    /// Whether the last shutdown was orderly (TPM2_Shutdown before power loss).
    var orderly = false
    /// Dictionary-attack protection (Part 1, 19.8).
    var failedTries: UInt32 = 0
    /// The reference implementation's defaults (as swtpm/libtpms ship them).
    var maxTries: UInt32 = 3
    var recoveryTime: UInt32 = 1000
    var lockoutRecovery: UInt32 = 1000
    var lockoutAuthFailed = false
    var disableClear = false
    /// The highest value any NV counter has had: new counters start there (Part 1, 37.2.3).
    var maxCounter: UInt64 = 0

    init() {}

    mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.constant(0x544C_5654, "magic", name: "TLVT")
        try c.u32(&version, "version")
        try c.nested(&platform, "platform")
        try c.nested(&owner, "owner")
        try c.nested(&endorsement, "endorsement")
        try c.nested(&lockout, "lockout")
        try c.list(&nv, max: 256, "nv")
        try c.list(&persistentObjects, max: 64, "persistentObjects")
        try c.list(&primaryCache, max: 64, "primaryCache")
        try c.u64(&clock, "clock")
        try c.u32(&resetCount, "resetCount")
        try c.u32(&restartCount, "restartCount")
        try c.bool(&orderly, "orderly")
        try c.u32(&failedTries, "failedTries")
        try c.u32(&maxTries, "maxTries")
        try c.u32(&recoveryTime, "recoveryTime")
        try c.u32(&lockoutRecovery, "lockoutRecovery")
        try c.bool(&lockoutAuthFailed, "lockoutAuthFailed")
        try c.bool(&disableClear, "disableClear")
        try c.u64(&maxCounter, "maxCounter")
    }

    /// A new TPM's state: fresh seeds and proofs, empty auths.
    static func manufacture() -> PersistentState {
        var s = PersistentState()
        for h in [\PersistentState.platform, \.owner, \.endorsement] {
            s[keyPath: h].seed = TPMCrypto.random(32)
            s[keyPath: h].proof = TPMCrypto.random(32)
        }
        s.lockout.proof = TPMCrypto.random(32)
        return s
    }
}

/// A journal record holding the new contents of the NV indices one command changed.
struct NVDelta: TPMStructure, Hashable {
    static var tpmName: String { "VTPM_NV_DELTA" }
    var indices: [NVIndexRecord] = []
    init() {}
    init(indices: [NVIndexRecord]) { self.indices = indices }
    mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.list(&indices, max: 256, "indices")
    }
}
