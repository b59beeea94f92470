import TPM2

// The vTPM's volatile state — what a running TPM holds between _TPM_Init and the next power
// loss: PCRs, loaded objects, sessions, the null hierarchy, the context key, TPM time — encoded
// for swtpm's CMD_GET_STATEBLOB/CMD_SET_STATEBLOB with blob type 2 (PTM_BLOB_TYPE_VOLATILE).
// QEMU moves it when a VM is saved, restored or migrated, so the guest finds its TPM exactly as
// it left it: same PCRs (its event log still replays), same loaded keys and sessions.

/// One PCR bank: its algorithm and every PCR's value.
struct PCRBankRecord: TPMStructure, Hashable {
    static var tpmName: String { "VTPM_PCR_BANK" }
    var hash = TPMAlgID.null
    var values: [[UInt8]] = []
    init() {}
    init(hash: TPMAlgID, values: [[UInt8]]) { self.hash = hash; self.values = values }
    mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&hash, "hash")
        var count = UInt8(truncatingIfNeeded: values.count)
        try c.u8(&count, "count")
        guard Int(count) <= Limits.pcrCount, let size = hash.digestSize else {
            throw TPMWireError(.invalidValue, offset: c.offset, field: "count",
                               reason: "\(count) PCRs of \(hash) (at most \(Limits.pcrCount), of a hash this TPM knows)")
        }
        if values.count != Int(count) { values = Array(repeating: [], count: Int(count)) }
        for i in 0..<Int(count) { try c.fixedBytes(&values[i], count: size, "value") }
    }
}

/// A loaded transient object.
struct TransientObjectRecord: TPMStructure, Hashable {
    static var tpmName: String { "VTPM_TRANSIENT_OBJECT" }
    var handle = TPMHandle(0)
    var hierarchy = TPMHandle.null
    var publicArea = TPMTPublic()
    var sensitive: TPMTSensitive?
    var qualifiedName: [UInt8] = []
    var isPrimary = false
    init() {}
    mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&handle, "handle")
        try c.value(&hierarchy, "hierarchy")
        try c.sized(&publicArea, max: TPMTPublic.sizedMaxSize, "publicArea")
        try c.sizedOptional(&sensitive, max: TPMTSensitive.sizedMaxSize, "sensitive")
        try c.sizedBytes(&qualifiedName, max: 66, "qualifiedName")
        try c.bool(&isPrimary, "isPrimary")
    }
}

/// One session (loaded, or saved by ContextSave).
struct SessionRecord: TPMStructure, Hashable {
    static var tpmName: String { "VTPM_SESSION" }
    var handle = TPMHandle(0)
    var type = TPMSE.hmac
    var authHash = TPMAlgID.null
    var symmetric = TPMTSymDef()
    var sessionKey: [UInt8] = []
    var nonceTPM: [UInt8] = []
    var bindName: [UInt8]?
    var policyDigest: [UInt8] = []
    var commandCode: TPMCC?
    var isAuthValueNeeded = false
    var isPasswordNeeded = false
    var pcrCounter: UInt32?
    var cpHash: [UInt8]?
    var isLoaded = true
    var savedSequence: UInt64 = 0
    init() {}

    init(_ s: ServerSession) {
        handle = s.handle; type = s.type; authHash = s.authHash; symmetric = s.symmetric; sessionKey = s.sessionKey; nonceTPM = s.nonceTPM
        bindName = s.bindName; policyDigest = s.policyDigest; commandCode = s.commandCode; isAuthValueNeeded = s.isAuthValueNeeded
        isPasswordNeeded = s.isPasswordNeeded; pcrCounter = s.pcrCounter; cpHash = s.cpHash; isLoaded = s.isLoaded;
        savedSequence = s.savedSequence
    }

    var session: ServerSession {
        ServerSession(handle: handle, type: type, authHash: authHash, symmetric: symmetric, sessionKey: sessionKey, nonceTPM: nonceTPM,
                      bindName: bindName, policyDigest: policyDigest, commandCode: commandCode, isAuthValueNeeded: isAuthValueNeeded,
                      isPasswordNeeded: isPasswordNeeded, pcrCounter: pcrCounter, cpHash: cpHash, isLoaded: isLoaded,
                      savedSequence: savedSequence)
    }

    mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&handle, "handle")
        try c.value(&type, "type")
        try c.value(&authHash, "authHash")
        try c.nested(&symmetric, "symmetric")
        try c.sizedBytes(&sessionKey, max: 64, "sessionKey")
        try c.sizedBytes(&nonceTPM, max: 64, "nonceTPM")
        try Self.optionalBytes(&c, &bindName, "bindName")
        try c.sizedBytes(&policyDigest, max: 64, "policyDigest")
        var hasCC = commandCode != nil
        try c.bool(&hasCC, "hasCommandCode")
        if hasCC {
            var cc = commandCode ?? TPMCC(rawValue: 0)
            try c.value(&cc, "commandCode")
            commandCode = cc
        } else { commandCode = nil }
        try c.bool(&isAuthValueNeeded, "isAuthValueNeeded")
        try c.bool(&isPasswordNeeded, "isPasswordNeeded")
        var hasCounter = pcrCounter != nil
        try c.bool(&hasCounter, "hasPCRCounter")
        if hasCounter {
            var v = pcrCounter ?? 0
            try c.u32(&v, "pcrCounter")
            pcrCounter = v
        } else { pcrCounter = nil }
        try Self.optionalBytes(&c, &cpHash, "cpHash")
        try c.bool(&isLoaded, "isLoaded")
        try c.u64(&savedSequence, "savedSequence")
    }

    static func optionalBytes<C: TPMCoder>(_ c: inout C, _ v: inout [UInt8]?, _ field: StaticString) throws(TPMWireError) {
        var present = v != nil
        try c.bool(&present, field)
        if present {
            var bytes = v ?? []
            try c.sizedBytes(&bytes, max: 130, field)
            v = bytes
        } else { v = nil }
    }
}

/// Everything a power cycle would lose, as one blob.
struct VolatileState: TPMStructure, Hashable {
    static var tpmName: String { "VTPM_VOLATILE" }
    static let currentVersion: UInt32 = 1
    var version: UInt32 = VolatileState.currentVersion
    var started = false
    var phEnable = true
    var shEnable = true
    var ehEnable = true
    var locality: UInt8 = 0
    var pcrUpdateCounter: UInt32 = 0
    /// TPM time (milliseconds since _TPM_Init) when saved: it goes on from there.
    var time: UInt64 = 0
    var clockAtBoot: UInt64 = 0
    var contextKey: [UInt8] = []
    var contextSequence: UInt64 = 0
    var nullHierarchy = HierarchyRecord()
    var allocatedBanks: [TPMAlgID] = []
    var pcrs: [PCRBankRecord] = []
    var hasSavedPCRs = false
    var savedPCRs: [PCRBankRecord] = []
    var objects: [TransientObjectRecord] = []
    var sessions: [SessionRecord] = []
    init() {}

    mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.constant(0x544C_5656, "magic", name: "TLVV")
        try c.u32(&version, "version")
        guard version == Self.currentVersion else {
            throw TPMWireError(.invalidValue, offset: c.offset, field: "version",
                               reason: "volatile state version \(version); this vTPM reads \(Self.currentVersion)")
        }
        try c.bool(&started, "started")
        try c.bool(&phEnable, "phEnable")
        try c.bool(&shEnable, "shEnable")
        try c.bool(&ehEnable, "ehEnable")
        try c.u8(&locality, "locality")
        try c.u32(&pcrUpdateCounter, "pcrUpdateCounter")
        try c.u64(&time, "time")
        try c.u64(&clockAtBoot, "clockAtBoot")
        try c.sizedBytes(&contextKey, max: 64, "contextKey")
        try c.u64(&contextSequence, "contextSequence")
        try c.nested(&nullHierarchy, "nullHierarchy")
        try c.valueList(&allocatedBanks, max: 8, "allocatedBanks")
        try c.list(&pcrs, max: 8, "pcrs")
        try c.bool(&hasSavedPCRs, "hasSavedPCRs")
        try c.list(&savedPCRs, max: 8, "savedPCRs")
        try c.list(&objects, max: 64, "objects")
        try c.list(&sessions, max: 64, "sessions")
    }
}

extension EngineCore {
    /// The volatile state as it is now.
    func volatileState() -> VolatileState {
        func banks(_ p: [TPMAlgID: [[UInt8]]]) -> [PCRBankRecord] {
            p.keys.sorted { $0.rawValue < $1.rawValue }.map { PCRBankRecord(hash: $0, values: p[$0]!) }
        }
        var v = VolatileState()
        v.started = started
        v.phEnable = phEnable; v.shEnable = shEnable; v.ehEnable = ehEnable
        v.locality = currentLocality
        v.pcrUpdateCounter = pcrUpdateCounter
        v.time = timeMilliseconds
        v.clockAtBoot = clockAtBoot
        v.contextKey = contextKey
        v.contextSequence = contextSequence
        v.nullHierarchy = nullHierarchy
        v.allocatedBanks = allocatedBanks
        v.pcrs = banks(pcrs)
        if let savedPCRs { v.hasSavedPCRs = true; v.savedPCRs = banks(savedPCRs) }
        v.objects = objects.keys.sorted { $0.rawValue < $1.rawValue }.map { h in
            let o = objects[h]!
            var r = TransientObjectRecord()
            r.handle = h; r.hierarchy = o.hierarchy; r.publicArea = o.publicArea; r.sensitive = o.sensitive
            r.qualifiedName = o.qualifiedName; r.isPrimary = o.isPrimary
            return r
        }
        v.sessions = sessions.keys.sorted { $0.rawValue < $1.rawValue }.map { SessionRecord(sessions[$0]!) }
        return v
    }

    /// Resumes from a saved volatile state (instead of the power-on reset).
    mutating func restore(_ v: VolatileState) throws(VTPMError) {
        var loaded: [TPMHandle: LoadedObject] = [:]
        for r in v.objects {
            guard (0x8000_0000..<0x8000_0000 + UInt32(Limits.transientSlots)).contains(r.handle.rawValue) else {
                throw VTPMError(.corruptState, "the volatile state holds object handle \(r.handle) outside the transient range")
            }
            do {
                let (rsa, ecc) = r.sensitive.map { s in (try? keyMaterial(public: r.publicArea, sensitive: s)) ?? (nil, nil) } ?? (nil, nil)
                if r.sensitive != nil, rsa == nil, ecc == nil, r.publicArea.type == .rsa || r.publicArea.type == .ecc {
                    throw VTPMError(.corruptState, "the volatile state's object \(r.handle) has a key that does not load")
                }
                let name = try r.publicArea.name()
                loaded[r.handle] = LoadedObject(publicArea: r.publicArea, sensitive: r.sensitive, name: name,
                                                qualifiedName: r.qualifiedName,
                                                hierarchy: r.hierarchy, isPrimary: r.isPrimary, rsa: rsa, ecc: ecc)
            } catch let e as VTPMError {
                throw e
            } catch {
                throw VTPMError(.corruptState, "the volatile state's object \(r.handle) does not load: \(error)")
            }
        }
        func banks(_ records: [PCRBankRecord]) throws(VTPMError) -> [TPMAlgID: [[UInt8]]] {
            var out: [TPMAlgID: [[UInt8]]] = [:]
            for b in records {
                guard Self.implementedHashes.contains(b.hash), b.values.count == Limits.pcrCount else {
                    throw VTPMError(.corruptState,
                                    "the volatile state's PCR bank \(b.hash) is not one this TPM implements with \(Limits.pcrCount) PCRs")
                }
                out[b.hash] = b.values
            }
            return out
        }
        let restoredPCRs = try banks(v.pcrs)
        guard Set(restoredPCRs.keys) == Set(Self.implementedHashes) else {
            throw VTPMError(.corruptState, "the volatile state lacks PCR banks (has \(restoredPCRs.keys.map(\.description).sorted()))")
        }
        powerOn()
        started = v.started
        phEnable = v.phEnable; shEnable = v.shEnable; ehEnable = v.ehEnable
        currentLocality = v.locality
        pcrs = restoredPCRs
        pcrUpdateCounter = v.pcrUpdateCounter
        bootTime = .now - .milliseconds(Int64(clamping: v.time))
        clockAtBoot = v.clockAtBoot
        contextKey = v.contextKey
        contextSequence = v.contextSequence
        nullHierarchy = v.nullHierarchy
        if !v.allocatedBanks.isEmpty { allocatedBanks = v.allocatedBanks }
        savedPCRs = v.hasSavedPCRs ? try banks(v.savedPCRs) : nil
        objects = loaded
        sessions = Dictionary(uniqueKeysWithValues: v.sessions.map { ($0.handle, $0.session) })
    }
}

extension VirtualTPM {
    /// The volatile state, encoded (unencrypted) — CMD_GET_STATEBLOB with type 2.
    public func exportVolatileState() -> [UInt8] {
        core.withLock { (try? $0.volatileState().tpmBytes()) ?? [] }
    }

    /// Resumes the TPM from a volatile state blob (CMD_SET_STATEBLOB type 2, applied at CMD_INIT).
    public func resumeVolatileState(_ bytes: [UInt8]) throws(VTPMError) {
        let v: VolatileState
        do { v = try VolatileState(tpmBytes: bytes) } catch {
            throw VTPMError(.corruptState, "the volatile state blob does not parse: \(error)")
        }
        try core.withLock { (c: inout EngineCore) throws(VTPMError) in try c.restore(v) }
    }
}
