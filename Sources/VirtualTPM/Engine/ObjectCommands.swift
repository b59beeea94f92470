import Crypto
import Foundation
import TPM2

// Object commands (Part 3, 12), CreatePrimary (24.1), contexts and EvictControl (28).

extension EngineCore {
    /// The object behind the command's `index`th handle (0-based). A transient handle that is
    /// not loaded is TPM_RC_REFERENCE_H0 + index (Part 2, 6.6.3; what the reference
    /// implementation answers, and what Linux's resource manager takes as "gone" when it saves
    /// contexts after a command); any other unknown handle is TPM_RC_HANDLE.
    func loadedObject(_ h: TPMHandle, index: UInt32 = 0) throws(TPMRC) -> LoadedObject {
        if let o = objects[h] { return o }
        if let o = persistentCache[h] { return o }
        if h.type == .transient { throw TPMRC(rawValue: TPMRC.referenceH0 + index) }
        throw TPMRC.handle.with(.handle(Int(index) + 1))
    }

    /// Builds the loaded form of a persistent object (key material reconstructed).
    func materialize(_ rec: PersistentObjectRecord) throws(TPMRC) -> LoadedObject {
        let (rsa, ecc) = try keyMaterial(public: rec.publicArea, sensitive: rec.sensitive)
        let name = try rc { try rec.publicArea.name() }
        return LoadedObject(publicArea: rec.publicArea, sensitive: rec.sensitive, name: name,
                            qualifiedName: try qualifiedName(parentQN: rec.hierarchy.handleName, name: name, alg: rec.publicArea.nameAlg),
                            hierarchy: rec.hierarchy, isPrimary: rec.isPrimary, rsa: rsa, ecc: ecc)
    }

    mutating func rebuildPersistentCache() {
        persistentCache = [:]
        for rec in state.persistentObjects {
            if let o = try? materialize(rec) { persistentCache[rec.handle] = o }
        }
    }

    func qualifiedName(parentQN: [UInt8], name: [UInt8], alg: TPMAlgID) throws(TPMRC) -> [UInt8] {
        guard alg != .null else { return name }
        return withUnsafeBytes(of: alg.rawValue.bigEndian, Array.init) + (try rc { try TPMCrypto.hash(alg, parentQN, name) })
    }

    /// A free transient handle, or TPM_RC_OBJECT_MEMORY.
    func freeTransientHandle() throws(TPMRC) -> TPMHandle {
        for i in 0..<UInt32(Limits.transientSlots) where objects[TPMHandle(0x8000_0000 + i)] == nil {
            return TPMHandle(0x8000_0000 + i)
        }
        throw TPMRC.objectMemory
    }

    func creationData(nameAlg: TPMAlgID, pcrSelect: TPMLPCRSelection, parentName: [UInt8], parentQN: [UInt8], parentNameAlg: TPMAlgID,
                      outsideInfo: TPM2BData, locality: UInt8) throws(TPMRC) -> (TPMSCreationData, [UInt8]) {
        var cd = TPMSCreationData()
        var values: [[UInt8]] = []
        for sel in pcrSelect.pcrSelections {
            guard Self.implementedHashes.contains(sel.hash) else { throw TPMRC.hash.with(.parameter(4)) }
            guard allocatedBanks.contains(sel.hash), let bank = pcrs[sel.hash] else { continue }
            for p in sel.pcrs where p < Limits.pcrCount { values.append(bank[p]) }
        }
        cd.pcrSelect = pcrSelect
        cd.pcrDigest = TPM2BDigest(try rc { try TPMCrypto.hash(nameAlg, parts: values) })
        cd.locality = TPMALocality(rawValue: 1 << min(locality, 4))
        cd.parentNameAlg = parentNameAlg
        cd.parentName = TPM2BName(parentName)
        cd.parentQualifiedName = TPM2BName(parentQN)
        cd.outsideInfo = outsideInfo
        let bytes: [UInt8]
        do { bytes = try cd.tpmBytes() } catch { throw TPMRC.failure }
        return (cd, try rc { try TPMCrypto.hash(nameAlg, bytes) })
    }

    mutating func createPrimary(_ cmd: TPM2CreatePrimary) throws(TPMRC) -> TPM2CreatePrimary.Response {
        let hierarchy = cmd.primaryHandle
        let template = cmd.inPublic.content
        try validateTemplate(template, sensitive: cmd.inSensitive.content, parent: nil, param: 2)
        let handle = try freeTransientHandle()
        let seed = hierarchy == .null ? nullHierarchy.seed : hierarchyRecord(hierarchy).seed
        let (pub, sens, rsa, ecc) = try makeObject(template: template, sensitive: cmd.inSensitive.content, primarySeed: seed)
        let name = try rc { try pub.name() }
        let (cd, creationHash) = try creationData(nameAlg: pub.nameAlg, pcrSelect: cmd.creationPCR, parentName: hierarchy.handleName,
                                                  parentQN: hierarchy.handleName, parentNameAlg: .null, outsideInfo: cmd.outsideInfo,
                                                  locality: currentLocality)
        objects[handle] = LoadedObject(publicArea: pub, sensitive: sens, name: name,
                                       qualifiedName: try qualifiedName(parentQN: hierarchy.handleName, name: name, alg: pub.nameAlg),
                                       hierarchy: hierarchy, isPrimary: true, rsa: rsa, ecc: ecc)
        var r = TPM2CreatePrimary.Response()
        r.objectHandle = handle
        r.outPublic = TPM2BPublic(pub)
        r.creationData = TPM2BCreationData(cd)
        r.creationHash = TPM2BDigest(creationHash)
        r.creationTicket = try ticket(.creation, hierarchy: hierarchy, name, creationHash)
        r.name = TPM2BName(name)
        return r
    }

    mutating func create(_ cmd: TPM2Create) throws(TPMRC) -> TPM2Create.Response {
        let parent = try loadedObject(cmd.parentHandle)
        guard parent.isStorageParent else { throw TPMRC.type.with(.handle(1)) }
        let template = cmd.inPublic.content
        try validateTemplate(template, sensitive: cmd.inSensitive.content, parent: parent, param: 2)
        let (pub, sens, _, _) = try makeObject(template: template, sensitive: cmd.inSensitive.content, primarySeed: nil)
        let name = try rc { try pub.name() }
        let (cd, creationHash) = try creationData(nameAlg: pub.nameAlg, pcrSelect: cmd.creationPCR, parentName: parent.name,
                                                  parentQN: parent.qualifiedName, parentNameAlg: parent.publicArea.nameAlg,
                                                  outsideInfo: cmd.outsideInfo, locality: currentLocality)
        var r = TPM2Create.Response()
        r.outPrivate = try wrap(sens, name: name, parent: parent)
        r.outPublic = TPM2BPublic(pub)
        r.creationData = TPM2BCreationData(cd)
        r.creationHash = TPM2BDigest(creationHash)
        r.creationTicket = try ticket(.creation, hierarchy: parent.hierarchy, name, creationHash)
        return r
    }

    mutating func load(_ cmd: TPM2Load) throws(TPMRC) -> TPM2Load.Response {
        let parent = try loadedObject(cmd.parentHandle)
        guard parent.isStorageParent else { throw TPMRC.type.with(.handle(1)) }
        let pub = cmd.inPublic.content
        guard Self.implementedHashes.contains(pub.nameAlg) else { throw TPMRC.hash.with(.parameter(2)) }
        if pub.objectAttributes.contains(.fixedTPM) && !parent.attributes.contains(.fixedTPM) { throw TPMRC.attributes.with(.parameter(2)) }
        let name = try rc { try pub.name() }
        let sens = try unwrap(cmd.inPrivate, name: name, parent: parent, param: 1)
        let (rsa, ecc) = try keyMaterial(public: pub, sensitive: sens)
        let handle = try freeTransientHandle()
        objects[handle] = LoadedObject(publicArea: pub, sensitive: sens, name: name,
                                       qualifiedName: try qualifiedName(parentQN: parent.qualifiedName, name: name, alg: pub.nameAlg),
                                       hierarchy: parent.hierarchy, isPrimary: false, rsa: rsa, ecc: ecc)
        var r = TPM2Load.Response()
        r.objectHandle = handle
        r.name = TPM2BName(name)
        return r
    }

    mutating func loadExternal(_ cmd: TPM2LoadExternal) throws(TPMRC) -> TPM2Load.Response {
        let pub = cmd.inPublic.content
        guard Self.implementedHashes.contains(pub.nameAlg) || pub.nameAlg == .null else { throw TPMRC.hash.with(.parameter(2)) }
        guard validateHandle(cmd.hierarchy, kind: .hierarchyOrNull) == nil else { throw TPMRC.hierarchy.with(.parameter(3)) }
        var rsa: RSAKeyPair?, ecc: ECCPrivateKey?
        if let sens = cmd.inPrivate {
            // A loaded private part must not claim TPM protection (Part 3, 12.3).
            guard !pub.objectAttributes.contains(.fixedTPM), !pub.objectAttributes.contains(.fixedParent), cmd.hierarchy == .null else {
                throw TPMRC.attributes.with(.parameter(2))
            }
            (rsa, ecc) = try keyMaterial(public: pub, sensitive: sens)
        } else {
            switch (pub.parameters, pub.unique) {
            case (.rsa, .rsa(let n)): guard !n.isEmpty else { throw TPMRC.key.with(.parameter(2)) }
            case (.ecc(let p), .ecc(let q)): _ = try eccPublicX963(p.curveID, q)
            case (.keyedHash, _), (.symCipher, _): break
            default: throw TPMRC.type.with(.parameter(2))
            }
        }
        let name = try rc { try pub.name() }
        let handle = try freeTransientHandle()
        objects[handle] = LoadedObject(publicArea: pub, sensitive: cmd.inPrivate, name: name,
                                       qualifiedName: try qualifiedName(parentQN: cmd.hierarchy.handleName, name: name, alg: pub.nameAlg),
                                       hierarchy: cmd.hierarchy, isPrimary: false, rsa: rsa, ecc: ecc)
        var r = TPM2Load.Response()
        r.objectHandle = handle
        r.name = TPM2BName(name)
        return r
    }

    func readPublic(_ cmd: TPM2ReadPublic) throws(TPMRC) -> TPM2ReadPublic.Response {
        let o = try loadedObject(cmd.objectHandle)
        var r = TPM2ReadPublic.Response()
        r.outPublic = TPM2BPublic(o.publicArea)
        r.name = TPM2BName(o.name)
        r.qualifiedName = TPM2BName(o.qualifiedName)
        return r
    }

    mutating func objectChangeAuth(_ cmd: TPM2ObjectChangeAuth) throws(TPMRC) -> TPM2ObjectChangeAuth.Response {
        let o = try loadedObject(cmd.objectHandle)
        let parent = try loadedObject(cmd.parentHandle, index: 1)
        guard var sens = o.sensitive, cmd.objectHandle.type == .transient else { throw TPMRC.handle.with(.handle(1)) }
        guard cmd.newAuth.count <= (o.publicArea.nameAlg.digestSize ?? 0) else { throw TPMRC.size.with(.parameter(1)) }
        sens.authValue = cmd.newAuth
        var r = TPM2ObjectChangeAuth.Response()
        r.outPrivate = try wrap(sens, name: o.name, parent: parent)
        return r
    }

    func unseal(_ cmd: TPM2Unseal) throws(TPMRC) -> TPM2Unseal.Response {
        let o = try loadedObject(cmd.itemHandle)
        guard o.publicArea.type == .keyedHash, !o.attributes.contains(.signEncrypt), !o.attributes.contains(.decrypt),
              !o.attributes.contains(.restricted), case .bits(let data)? = o.sensitive?.sensitive else {
            throw TPMRC.attributes.with(.handle(1))
        }
        var r = TPM2Unseal.Response()
        r.outData = data
        return r
    }

    func makeCredential(_ cmd: TPM2MakeCredential) throws(TPMRC) -> TPM2MakeCredential.Response {
        let o = try loadedObject(cmd.handle)
        guard o.attributes.contains(.decrypt), o.attributes.contains(.restricted) else { throw TPMRC.type.with(.handle(1)) }
        let made: (blob: TPM2BIDObject, secret: TPM2BEncryptedSecret)
        do { made = try TPMCredential.make(credential: cmd.credential.bytes, objectName: cmd.objectName.bytes,
                                           ekPublic: o.publicArea) } catch {
            throw error.code == .invalidArgument ? TPMRC.size.with(.parameter(1)) : TPMRC.key.with(.handle(1))
        }
        var r = TPM2MakeCredential.Response()
        r.credentialBlob = made.blob
        r.secret = made.secret
        return r
    }

    func activateCredential(_ cmd: TPM2ActivateCredential) throws(TPMRC) -> TPM2ActivateCredential.Response {
        let object = try loadedObject(cmd.activateHandle)
        let key = try loadedObject(cmd.keyHandle, index: 1)
        guard key.attributes.contains([.restricted, .decrypt]) else { throw TPMRC.type.with(.handle(2)) }
        let seed = try decryptSecret(key, secret: cmd.secret.bytes, label: "IDENTITY", param: 2)
        var r = TPM2ActivateCredential.Response()
        do {
            r.certInfo = TPM2BDigest(try TPMCredential.recover(blob: cmd.credentialBlob, objectName: object.name, seed: seed,
                                                               ekPublic: key.publicArea))
        } catch {
            throw TPMRC.integrity.with(.parameter(1))
        }
        return r
    }

    // MARK: Contexts (Part 3, 28)

    mutating func flushContext(_ cmd: TPM2FlushContext) throws(TPMRC) -> TPMEmptyResponse {
        let h = cmd.flushHandle
        switch h.type {
        case .transient:
            guard objects.removeValue(forKey: h) != nil else { throw TPMRC.handle.with(.parameter(1)) }
        case .hmacSession, .policySession:
            guard sessions.removeValue(forKey: h) != nil else { throw TPMRC.handle.with(.parameter(1)) }
        default:
            throw TPMRC.handle.with(.parameter(1))
        }
        return TPMEmptyResponse()
    }

    mutating func evictControl(_ cmd: TPM2EvictControl) throws(TPMRC) -> TPMEmptyResponse {
        let auth = cmd.auth
        let target = cmd.persistentHandle
        let ownerRange: ClosedRange<UInt32> = 0x8100_0000...0x817F_FFFF
        let platformRange: ClosedRange<UInt32> = 0x8180_0000...0x81FF_FFFF
        let allowed = auth == .owner ? ownerRange : platformRange
        guard allowed.contains(target.rawValue) else { throw TPMRC.range.with(.parameter(1)) }
        if cmd.objectHandle.type == .persistent {
            guard cmd.objectHandle == target else { throw TPMRC.handle.with(.handle(2)) }
            guard let rec = state.persistentObjects.first(where: { $0.handle == target }) else { throw TPMRC.handle.with(.handle(2)) }
            if auth == .owner && rec.hierarchy == .platform { throw TPMRC.hierarchy.with(.handle(2)) }
            state.persistentObjects.removeAll { $0.handle == target }
            persistentCache[target] = nil
        } else {
            let o = try loadedObject(cmd.objectHandle, index: 1)
            guard let sens = o.sensitive else { throw TPMRC.attributes.with(.handle(2)) }
            guard !o.attributes.contains(.stClear), o.hierarchy != .null else { throw TPMRC.attributes.with(.handle(2)) }
            if auth == .owner && o.hierarchy == .platform { throw TPMRC.hierarchy.with(.handle(2)) }
            if auth == .platform && o.hierarchy != .platform { throw TPMRC.hierarchy.with(.handle(2)) }
            guard !state.persistentObjects.contains(where: { $0.handle == target }) else { throw TPMRC.nvDefined }
            guard state.persistentObjects.count < Limits.persistentObjects else { throw TPMRC.nvSpace }
            var rec = PersistentObjectRecord()
            rec.handle = target
            rec.hierarchy = o.hierarchy
            rec.publicArea = o.publicArea
            rec.sensitive = sens
            rec.isPrimary = o.isPrimary
            state.persistentObjects.append(rec)
            var copy = o
            copy.qualifiedName = o.qualifiedName
            persistentCache[target] = copy
        }
        dirty = true
        return TPMEmptyResponse()
    }

    /// The key protecting saved contexts: objects under their hierarchy's proof (they stay
    /// loadable across resets), sessions under a key that changes at each reset.
    func contextProtectionKey(hierarchy: TPMHandle, session: Bool) -> SymmetricKey {
        let secret = session ? contextKey : hierarchyRecord(hierarchy).proof
        let k = (try? TPMCrypto.hmac(.sha256, key: secret, Array("TrustedLaunch context".utf8))) ?? secret
        return SymmetricKey(data: k)
    }

    mutating func contextSave(_ cmd: TPM2ContextSave) throws(TPMRC) -> TPM2ContextSave.Response {
        let h = cmd.saveHandle
        var r = TPM2ContextSave.Response()
        contextSequence &+= 1
        var payload: [UInt8]
        let hierarchy: TPMHandle
        let savedHandle: TPMHandle
        switch h.type {
        case .transient:
            guard let o = objects[h], let sens = o.sensitive ?? Optional(TPMTSensitive()) else { throw TPMRC(rawValue: TPMRC.referenceH0) }
            var rec = SavedObjectRecord()
            rec.publicArea = o.publicArea
            rec.sensitive = sens
            rec.hasSensitive = o.sensitive != nil
            rec.hierarchy = o.hierarchy
            rec.isPrimary = o.isPrimary
            rec.qualifiedName = o.qualifiedName
            do { payload = try rec.tpmBytes() } catch { throw TPMRC.failure }
            hierarchy = o.hierarchy
            savedHandle = TPMHandle(o.attributes.contains(.stClear) ? 0x8000_0002 : 0x8000_0000)
        case .hmacSession, .policySession:
            guard var s = sessions[h], s.isLoaded else { throw TPMRC(rawValue: TPMRC.referenceH0) }
            s.isLoaded = false
            s.savedSequence = contextSequence
            sessions[h] = s
            do { payload = try SavedSessionRecord(s).tpmBytes() } catch { throw TPMRC.failure }
            hierarchy = .null
            savedHandle = h
        default:
            throw TPMRC.handle.with(.handle(1))
        }
        let aad = withUnsafeBytes(of: contextSequence.bigEndian, Array.init) + savedHandle.handleName + hierarchy.handleName
        let key = contextProtectionKey(hierarchy: hierarchy, session: h.type != .transient)
        do {
            payload = Array(try AES.GCM.seal(payload, using: key, authenticating: aad).combined!)
        } catch { throw TPMRC.failure }
        r.context = TPMSContext(sequence: contextSequence, savedHandle: savedHandle, hierarchy: hierarchy,
                                contextBlob: TPM2BContextData(payload))
        return r
    }

    mutating func contextLoad(_ cmd: TPM2ContextLoad) throws(TPMRC) -> TPM2ContextLoad.Response {
        let c = cmd.context
        let isSession = c.savedHandle.type == .hmacSession || c.savedHandle.type == .policySession
        let aad = withUnsafeBytes(of: c.sequence.bigEndian, Array.init) + c.savedHandle.handleName + c.hierarchy.handleName
        let key = contextProtectionKey(hierarchy: c.hierarchy, session: isSession)
        let plain: [UInt8]
        do {
            plain = Array(try AES.GCM.open(AES.GCM.SealedBox(combined: c.contextBlob.bytes), using: key, authenticating: aad))
        } catch {
            throw TPMRC.integrity.with(.parameter(1))
        }
        var r = TPM2ContextLoad.Response()
        if isSession {
            guard var s = sessions[c.savedHandle], !s.isLoaded, s.savedSequence == c.sequence else {
                throw TPMRC.handle.with(.parameter(1))
            }
            guard sessions.values.filter(\.isLoaded).count < Limits.loadedSessions else { throw TPMRC.sessionMemory }
            guard let saved = try? SavedSessionRecord(tpmBytes: plain) else { throw TPMRC.integrity.with(.parameter(1)) }
            s = saved.session(handle: c.savedHandle)
            s.isLoaded = true
            sessions[c.savedHandle] = s
            r.loadedHandle = c.savedHandle
        } else {
            guard c.savedHandle.type == .transient else { throw TPMRC.handle.with(.parameter(1)) }
            guard let rec = try? SavedObjectRecord(tpmBytes: plain) else { throw TPMRC.integrity.with(.parameter(1)) }
            let name = try rc { try rec.publicArea.name() }
            var rsa: RSAKeyPair?, ecc: ECCPrivateKey?
            if rec.hasSensitive { (rsa, ecc) = try keyMaterial(public: rec.publicArea, sensitive: rec.sensitive) }
            let handle = try freeTransientHandle()
            objects[handle] = LoadedObject(publicArea: rec.publicArea, sensitive: rec.hasSensitive ? rec.sensitive : nil, name: name,
                                           qualifiedName: rec.qualifiedName, hierarchy: rec.hierarchy, isPrimary: rec.isPrimary, rsa: rsa,
                                           ecc: ecc)
            r.loadedHandle = handle
        }
        return r
    }
}

/// What a saved object context holds (inside its encryption).
struct SavedObjectRecord: TPMStructure, Hashable {
    static var tpmName: String { "VTPM_SAVED_OBJECT" }
    var publicArea = TPMTPublic()
    var sensitive = TPMTSensitive()
    var hasSensitive = true
    var hierarchy = TPMHandle.null
    var isPrimary = false
    var qualifiedName: [UInt8] = []
    init() {}
    mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.sized(&publicArea, max: TPMTPublic.sizedMaxSize, "publicArea")
        try c.sized(&sensitive, max: TPMTSensitive.sizedMaxSize, "sensitive")
        try c.bool(&hasSensitive, "hasSensitive")
        try c.value(&hierarchy, "hierarchy")
        try c.bool(&isPrimary, "isPrimary")
        try c.sizedBytes(&qualifiedName, max: 66, "qualifiedName")
    }
}

/// What a saved session context holds.
struct SavedSessionRecord: TPMStructure, Hashable {
    static var tpmName: String { "VTPM_SAVED_SESSION" }
    var type = TPMSE.hmac
    var authHash = TPMAlgID.sha256
    var symmetric = TPMTSymDef()
    var sessionKey: [UInt8] = []
    var nonceTPM: [UInt8] = []
    var hasBind = false
    var bindName: [UInt8] = []
    var policyDigest: [UInt8] = []
    var commandCode: UInt32 = 0
    var hasCommandCode = false
    var flags: UInt8 = 0
    var pcrCounter: UInt32 = 0
    var hasPCRCounter = false
    init() {}
    init(_ s: ServerSession) {
        type = s.type; authHash = s.authHash; symmetric = s.symmetric; sessionKey = s.sessionKey; nonceTPM = s.nonceTPM
        hasBind = s.bindName != nil; bindName = s.bindName ?? []; policyDigest = s.policyDigest
        hasCommandCode = s.commandCode != nil; commandCode = s.commandCode?.rawValue ?? 0
        flags = (s.isAuthValueNeeded ? 1 : 0) | (s.isPasswordNeeded ? 2 : 0)
        hasPCRCounter = s.pcrCounter != nil; pcrCounter = s.pcrCounter ?? 0
    }
    func session(handle: TPMHandle) -> ServerSession {
        var s = ServerSession(handle: handle, type: type, authHash: authHash, symmetric: symmetric, sessionKey: sessionKey,
                              nonceTPM: nonceTPM,
                              bindName: hasBind ? bindName : nil, policyDigest: policyDigest,
                              commandCode: hasCommandCode ? TPMCC(rawValue: commandCode) : nil)
        s.isAuthValueNeeded = flags & 1 != 0
        s.isPasswordNeeded = flags & 2 != 0
        s.pcrCounter = hasPCRCounter ? pcrCounter : nil
        return s
    }
    mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&type, "type")
        try c.value(&authHash, "authHash")
        try c.nested(&symmetric, "symmetric")
        try c.sizedBytes(&sessionKey, max: 64, "sessionKey")
        try c.sizedBytes(&nonceTPM, max: 64, "nonceTPM")
        try c.bool(&hasBind, "hasBind")
        try c.sizedBytes(&bindName, max: 66, "bindName")
        try c.sizedBytes(&policyDigest, max: 64, "policyDigest")
        try c.bool(&hasCommandCode, "hasCommandCode")
        try c.u32(&commandCode, "commandCode")
        try c.u8(&flags, "flags")
        try c.bool(&hasPCRCounter, "hasPCRCounter")
        try c.u32(&pcrCounter, "pcrCounter")
    }
}
