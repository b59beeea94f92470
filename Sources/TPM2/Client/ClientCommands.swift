/// A loaded object: its handle, public area and Name.
public struct TPMObject: Sendable, Hashable {
    public var handle: TPMHandle
    public var publicArea: TPMTPublic
    public var name: [UInt8]
    public init(handle: TPMHandle, publicArea: TPMTPublic, name: [UInt8]) {
        self.handle = handle; self.publicArea = publicArea; self.name = name
    }
}

/// What TPM2_CreatePrimary returns.
public struct TPMCreatedPrimary: Sendable {
    public var object: TPMObject
    public var creationData: TPMSCreationData
    public var creationHash: [UInt8]
    public var creationTicket: TPMTTicket
}

/// What TPM2_Create returns: the key blob to load later and its creation record.
public struct TPMCreatedObject: Sendable {
    public var privateBlob: TPM2BPrivate
    public var publicArea: TPMTPublic
    public var creationData: TPMSCreationData
    public var creationHash: [UInt8]
    public var creationTicket: TPMTTicket
}

/// A TPMS_ATTEST as signed: the original bytes, their parse and the signature.
public struct TPMSignedAttest: Sendable, Hashable {
    public var attestBytes: [UInt8]
    public var attest: TPMSAttest
    public var signature: TPMTSignature
    public init(attestBytes: [UInt8], attest: TPMSAttest, signature: TPMTSignature) {
        self.attestBytes = attestBytes; self.attest = attest; self.signature = signature
    }
}

/// PCR values of one bank, by PCR index.
public struct TPMPCRBank: Sendable, Hashable {
    public var hashAlg: TPMAlgID
    public var values: [Int: [UInt8]]
    public init(hashAlg: TPMAlgID, values: [Int: [UInt8]]) { self.hashAlg = hashAlg; self.values = values }
}

extension TPMClient {
    // MARK: Start-up and testing

    public func startup(_ type: TPMSU = .clear) async throws(TPMError) {
        var c = TPM2Startup(); c.startupType = type
        _ = try await execute(c)
    }

    public func shutdown(_ type: TPMSU = .clear) async throws(TPMError) {
        var c = TPM2Shutdown(); c.shutdownType = type
        _ = try await execute(c)
    }

    public func selfTest(full: Bool = true) async throws(TPMError) {
        var c = TPM2SelfTest(); c.fullTest = full
        _ = try await execute(c)
    }

    // MARK: Capabilities and randomness

    public func getCapability(
        _ capability: TPMCap, property: UInt32 = 0, count: UInt32 = 256
    ) async throws(TPMError) -> (moreData: Bool, data: TPMUCapabilities) {
        var c = TPM2GetCapability(); c.capability = capability; c.property = property; c.propertyCount = count
        let r = try await execute(c)
        return (r.moreData, r.capabilityData.data)
    }

    /// All TPM properties from `first` on, following moreData.
    public func tpmProperties(from first: TPMPT = .familyIndicator) async throws(TPMError) -> [TPMPT: UInt32] {
        var out: [TPMPT: UInt32] = [:]
        var next = first.rawValue
        while true {
            let (more, data) = try await getCapability(.tpmProperties, property: next, count: 127)
            guard case .tpmProperties(let props) = data, let last = props.last else { break }
            for p in props { out[p.property] = p.value }
            guard more, last.property.rawValue < UInt32.max else { break }
            next = last.property.rawValue + 1
        }
        return out
    }

    /// The PCR banks the TPM has allocated, with their selected PCRs.
    public func pcrBanks() async throws(TPMError) -> TPMLPCRSelection {
        let (_, data) = try await getCapability(.pcrs)
        guard case .assignedPCR(let l) = data else {
            throw TPMError(.malformedResponse, command: .getCapability, reason: "TPM_CAP_PCRS answered with another capability")
        }
        return l
    }

    /// Every handle of a type (`TPM_HT` in the top byte of `first`), following moreData.
    public func handles(from first: TPMHandle) async throws(TPMError) -> [TPMHandle] {
        var out: [TPMHandle] = []
        var next = first.rawValue
        while true {
            let (more, data) = try await getCapability(.handles, property: next, count: 254)
            guard case .handles(let hs) = data, let last = hs.last else { break }
            out += hs
            guard more else { break }
            next = last.rawValue + 1
        }
        return out
    }

    public func getRandom(_ count: Int) async throws(TPMError) -> [UInt8] {
        var out: [UInt8] = []
        while out.count < count {
            var c = TPM2GetRandom(); c.bytesRequested = UInt16(min(count - out.count, 64))
            let got = try await execute(c).randomBytes.bytes
            if got.isEmpty { throw TPMError(.malformedResponse, command: .getRandom, reason: "the TPM returned no random bytes") }
            out += got
        }
        return Array(out.prefix(count))
    }

    public func stirRandom(_ data: [UInt8]) async throws(TPMError) {
        var c = TPM2StirRandom(); c.inData = TPM2BSensitiveData(data)
        _ = try await execute(c)
    }

    public func readClock() async throws(TPMError) -> TPMSTimeInfo {
        try await execute(TPM2ReadClock()).currentTime
    }

    // MARK: PCRs

    /// Reads every selected PCR, issuing as many PCR_Read commands as needed (a TPM returns
    /// at most 8 digests per response).
    public func pcrRead(_ selection: TPMLPCRSelection) async throws(TPMError) -> [TPMPCRBank] {
        var banks: [TPMPCRBank] = []
        for sel in selection.pcrSelections {
            var values: [Int: [UInt8]] = [:]
            var remaining = sel.pcrs
            while !remaining.isEmpty {
                var c = TPM2PCRRead()
                c.pcrSelectionIn = TPMLPCRSelection([TPMSPCRSelection(hash: sel.hash, pcrs: remaining,
                                                                      selectSize: max(3, sel.pcrSelect.count))])
                let r = try await execute(c)
                let got = r.pcrSelectionOut.pcrSelections.first?.pcrs ?? []
                guard !got.isEmpty, got.count == r.pcrValues.digests.count else {
                    throw TPMError(.malformedResponse, command: .pcrRead,
                                   reason: "bank \(sel.hash): the TPM returned no values for PCRs \(remaining)")
                }
                for (p, d) in zip(got, r.pcrValues.digests) { values[p] = d.bytes }
                remaining.removeAll { got.contains($0) }
            }
            banks.append(TPMPCRBank(hashAlg: sel.hash, values: values))
        }
        return banks
    }

    public func pcrExtend(_ pcr: Int, digests: [TPMTHA], auth: TPMAuth = .emptyPassword) async throws(TPMError) {
        var c = TPM2PCRExtend(); c.pcrHandle = .pcr(pcr); c.digests = TPMLDigestValues(digests)
        _ = try await execute(c, auths: [auth])
    }

    /// Hashes `data` in every bank and extends PCR `pcr`; returns the digests used.
    public func pcrEvent(_ pcr: Int, data: [UInt8], auth: TPMAuth = .emptyPassword) async throws(TPMError) -> [TPMTHA] {
        var c = TPM2PCREvent(); c.pcrHandle = .pcr(pcr); c.eventData = TPM2BEvent(data)
        return try await execute(c, auths: [auth]).digests.digests
    }

    public func pcrReset(_ pcr: Int, auth: TPMAuth = .emptyPassword) async throws(TPMError) {
        var c = TPM2PCRReset(); c.pcrHandle = .pcr(pcr)
        _ = try await execute(c, auths: [auth])
    }

    // MARK: Objects

    public func createPrimary(_ hierarchy: TPMHandle, template: TPMTPublic, sensitive: TPMSSensitiveCreate = TPMSSensitiveCreate(),
                              outsideInfo: [UInt8] = [], creationPCR: TPMLPCRSelection = TPMLPCRSelection(),
                              auth: TPMAuth = .emptyPassword) async throws(TPMError) -> TPMCreatedPrimary {
        var c = TPM2CreatePrimary()
        c.primaryHandle = hierarchy
        c.inSensitive = TPM2BSensitiveCreate(sensitive)
        c.inPublic = TPM2BPublic(template)
        c.outsideInfo = TPM2BData(outsideInfo)
        c.creationPCR = creationPCR
        let r = try await execute(c, auths: [auth])
        remember(r.objectHandle, name: r.name.bytes)
        return TPMCreatedPrimary(object: TPMObject(handle: r.objectHandle, publicArea: r.outPublic.content, name: r.name.bytes),
                                 creationData: r.creationData.content, creationHash: r.creationHash.bytes, creationTicket: r.creationTicket)
    }

    public func create(parent: TPMHandle, template: TPMTPublic, sensitive: TPMSSensitiveCreate = TPMSSensitiveCreate(),
                       outsideInfo: [UInt8] = [], creationPCR: TPMLPCRSelection = TPMLPCRSelection(),
                       auth: TPMAuth = .emptyPassword) async throws(TPMError) -> TPMCreatedObject {
        var c = TPM2Create()
        c.parentHandle = parent
        c.inSensitive = TPM2BSensitiveCreate(sensitive)
        c.inPublic = TPM2BPublic(template)
        c.outsideInfo = TPM2BData(outsideInfo)
        c.creationPCR = creationPCR
        let r = try await execute(c, auths: [auth])
        return TPMCreatedObject(privateBlob: r.outPrivate, publicArea: r.outPublic.content, creationData: r.creationData.content,
                                creationHash: r.creationHash.bytes, creationTicket: r.creationTicket)
    }

    public func load(parent: TPMHandle, privateBlob: TPM2BPrivate, publicArea: TPMTPublic,
                     auth: TPMAuth = .emptyPassword) async throws(TPMError) -> TPMObject {
        var c = TPM2Load()
        c.parentHandle = parent
        c.inPrivate = privateBlob
        c.inPublic = TPM2BPublic(publicArea)
        let r = try await execute(c, auths: [auth])
        remember(r.objectHandle, name: r.name.bytes)
        return TPMObject(handle: r.objectHandle, publicArea: publicArea, name: r.name.bytes)
    }

    public func loadExternal(publicArea: TPMTPublic, sensitive: TPMTSensitive? = nil,
                             hierarchy: TPMHandle = .null) async throws(TPMError) -> TPMObject {
        var c = TPM2LoadExternal()
        c.inPrivate = sensitive
        c.inPublic = TPM2BPublic(publicArea)
        c.hierarchy = hierarchy
        let r = try await execute(c)
        remember(r.objectHandle, name: r.name.bytes)
        return TPMObject(handle: r.objectHandle, publicArea: publicArea, name: r.name.bytes)
    }

    public func readPublic(_ handle: TPMHandle) async throws(TPMError) -> (publicArea: TPMTPublic, name: [UInt8], qualifiedName: [UInt8]) {
        var c = TPM2ReadPublic(); c.objectHandle = handle
        let r = try await execute(c)
        remember(handle, name: r.name.bytes)
        return (r.outPublic.content, r.name.bytes, r.qualifiedName.bytes)
    }

    public func flushContext(_ handle: TPMHandle) async throws(TPMError) {
        var c = TPM2FlushContext(); c.flushHandle = handle
        _ = try await execute(c)
        forget(handle)
    }

    /// Makes a transient object persistent at `persistentHandle`, or (given a persistent
    /// object and its own handle) removes it.
    public func evictControl(_ object: TPMHandle, persistentHandle: TPMHandle, hierarchy: TPMHandle = .owner,
                             auth: TPMAuth = .emptyPassword) async throws(TPMError) {
        var c = TPM2EvictControl(); c.auth = hierarchy; c.objectHandle = object; c.persistentHandle = persistentHandle
        _ = try await execute(c, auths: [auth])
        if object == persistentHandle { forget(object) }
    }

    public func contextSave(_ handle: TPMHandle) async throws(TPMError) -> TPMSContext {
        var c = TPM2ContextSave(); c.saveHandle = handle
        let r = try await execute(c)
        if handle.type == .hmacSession || handle.type == .policySession { /* the session stays known for reload */ }
        return r.context
    }

    public func contextLoad(_ context: TPMSContext) async throws(TPMError) -> TPMHandle {
        var c = TPM2ContextLoad(); c.context = context
        return try await execute(c).loadedHandle
    }

    public func unseal(_ item: TPMHandle, auth: TPMAuth = .emptyPassword) async throws(TPMError) -> [UInt8] {
        var c = TPM2Unseal(); c.itemHandle = item
        return try await execute(c, auths: [auth]).outData.bytes
    }

    // MARK: Signing and attestation

    public func sign(_ key: TPMHandle, digest: [UInt8], scheme: TPMTSigScheme = .null,
        validation: TPMTTicket = .nullTicket(.hashcheck), auth: TPMAuth = .emptyPassword
    ) async throws(TPMError) -> TPMTSignature {
        var c = TPM2Sign(); c.keyHandle = key; c.digest = TPM2BDigest(digest); c.inScheme = scheme; c.validation = validation
        return try await execute(c, auths: [auth]).signature
    }

    public func verifySignature(_ key: TPMHandle, digest: [UInt8], signature: TPMTSignature) async throws(TPMError) -> TPMTTicket {
        var c = TPM2VerifySignature(); c.keyHandle = key; c.digest = TPM2BDigest(digest); c.signature = signature
        return try await execute(c).validation
    }

    public func quote(_ key: TPMHandle, qualifyingData: [UInt8], pcrs: TPMLPCRSelection, scheme: TPMTSigScheme = .null,
                      auth: TPMAuth = .emptyPassword) async throws(TPMError) -> TPMSignedAttest {
        var c = TPM2Quote(); c.signHandle = key; c.qualifyingData = TPM2BData(qualifyingData); c.inScheme = scheme; c.pcrSelect = pcrs
        return try Self.signedAttest(try await execute(c, auths: [auth]), command: .quote)
    }

    public func certify(_ object: TPMHandle, signingKey: TPMHandle, qualifyingData: [UInt8], scheme: TPMTSigScheme = .null,
                        objectAuth: TPMAuth = .emptyPassword, keyAuth: TPMAuth = .emptyPassword) async throws(TPMError) -> TPMSignedAttest {
        var c = TPM2Certify(); c.objectHandle = object; c.signHandle = signingKey; c.qualifyingData = TPM2BData(qualifyingData);
        c.inScheme = scheme
        return try Self.signedAttest(try await execute(c, auths: [objectAuth, keyAuth]), command: .certify)
    }

    static func signedAttest(_ r: TPMAttestResponse, command: TPMCC) throws(TPMError) -> TPMSignedAttest {
        do {
            return TPMSignedAttest(attestBytes: r.attest.bytes, attest: try TPMSAttest(tpmBytes: r.attest.bytes), signature: r.signature)
        } catch {
            throw TPMError(.malformedResponse, command: command, wire: error, reason: "the TPMS_ATTEST the TPM signed does not parse")
        }
    }

    // MARK: Credentials

    public func makeCredential(
        _ key: TPMHandle, credential: [UInt8], objectName: [UInt8]
    ) async throws(TPMError) -> (blob: TPM2BIDObject, secret: TPM2BEncryptedSecret) {
        var c = TPM2MakeCredential(); c.handle = key; c.credential = TPM2BDigest(credential); c.objectName = TPM2BName(objectName)
        let r = try await execute(c)
        return (r.credentialBlob, r.secret)
    }

    public func activateCredential(_ object: TPMHandle, key: TPMHandle, blob: TPM2BIDObject, secret: TPM2BEncryptedSecret,
        objectAuth: TPMAuth = .emptyPassword, keyAuth: TPMAuth = .emptyPassword
    ) async throws(TPMError) -> [UInt8] {
        var c = TPM2ActivateCredential(); c.activateHandle = object; c.keyHandle = key; c.credentialBlob = blob; c.secret = secret
        return try await execute(c, auths: [objectAuth, keyAuth]).certInfo.bytes
    }

    // MARK: Sessions and policy

    /// Starts a session. `salt` (a loaded RSA or ECC decryption key) makes it salted; `bind`
    /// (an entity and its authValue) makes it bound. `attributes` apply to every use
    /// (add `.decrypt`/`.encrypt` for parameter encryption; `symmetric` must then be set).
    public func startAuthSession(type: TPMSE = .hmac, authHash: TPMAlgID = .sha256, symmetric: TPMTSymDef = .null,
                                 salt: TPMObject? = nil, bind: (handle: TPMHandle, authValue: [UInt8])? = nil,
                                 attributes: TPMASession = [.continueSession]) async throws(TPMError) -> TPMSession {
        let digestSize = try TPMCrypto.digestSize(authHash)
        var c = TPM2StartAuthSession()
        c.sessionType = type
        c.authHash = authHash
        c.symmetric = symmetric
        c.nonceCaller = TPM2BNonce(TPMCrypto.random(digestSize))
        var saltValue: [UInt8] = []
        if let salt {
            let (seed, encrypted) = try TPMSecretSharing.makeSeed(for: salt.publicArea, label: "SECRET")
            saltValue = seed
            c.tpmKey = salt.handle
            c.encryptedSalt = TPM2BEncryptedSecret(encrypted)
            remember(salt.handle, name: salt.name)
        }
        var bindName: [UInt8]?
        if let bind {
            c.bind = bind.handle
            bindName = try await name(of: bind.handle)
        }
        let r = try await execute(c)
        let session = TPMSession(handle: r.sessionHandle, type: type, authHash: authHash)
        var bindAuth = bind?.authValue ?? []
        while bindAuth.last == 0 { bindAuth.removeLast() }
        let key = try TPMSessionState.sessionKey(authHash: authHash, bindAuth: bindAuth, salt: saltValue,
                                                 nonceTPM: r.nonceTPM.bytes, nonceCaller: c.nonceCaller.bytes)
        addSession(TPMSessionState(session: session, symmetric: symmetric, sessionKey: key, nonceCaller: c.nonceCaller.bytes,
                                   nonceTPM: r.nonceTPM.bytes, bindName: bindName, attributes: attributes))
        return session
    }

    /// Flushes a session (or any other context).
    public func flush(_ session: TPMSession) async throws(TPMError) {
        try await flushContext(session.handle)
    }

    public func policyPCR(_ session: TPMSession, pcrs: TPMLPCRSelection, pcrDigest: [UInt8] = []) async throws(TPMError) {
        var c = TPM2PolicyPCR(); c.policySession = session.handle; c.pcrs = pcrs; c.pcrDigest = TPM2BDigest(pcrDigest)
        _ = try await execute(c)
    }

    /// Satisfies PolicySecret with `authHandle`'s authorization (password by default).
    public func policySecret(_ session: TPMSession, authHandle: TPMHandle, policyRef: [UInt8] = [], expiration: Int32 = 0,
                             includeNonce: Bool = false, auth: TPMAuth = .emptyPassword) async throws(TPMError) -> (timeout: [UInt8],
                             ticket: TPMTTicket) {
        var c = TPM2PolicySecret()
        c.authHandle = authHandle
        c.policySession = session.handle
        if includeNonce, let st = state(of: session) { c.nonceTPM = TPM2BNonce(st.nonceTPM) }
        c.policyRef = TPM2BNonce(policyRef)
        c.expiration = expiration
        let r = try await execute(c, auths: [auth])
        return (r.timeout.bytes, r.policyTicket)
    }

    public func policyAuthValue(_ session: TPMSession) async throws(TPMError) {
        var c = TPM2PolicyAuthValue(); c.policySession = session.handle
        _ = try await execute(c)
        updateSession(session.handle) { $0.isAuthValueNeeded = true; $0.isPasswordNeeded = false }
    }

    public func policyPassword(_ session: TPMSession) async throws(TPMError) {
        var c = TPM2PolicyPassword(); c.policySession = session.handle
        _ = try await execute(c)
        updateSession(session.handle) { $0.isPasswordNeeded = true; $0.isAuthValueNeeded = false }
    }

    public func policyOR(_ session: TPMSession, branches: [[UInt8]]) async throws(TPMError) {
        var c = TPM2PolicyOR(); c.policySession = session.handle; c.pHashList = TPMLDigest(branches.map { TPM2BDigest($0) })
        _ = try await execute(c)
    }

    public func policyCommandCode(_ session: TPMSession, _ code: TPMCC) async throws(TPMError) {
        var c = TPM2PolicyCommandCode(); c.policySession = session.handle; c.commandCode = code
        _ = try await execute(c)
    }

    public func policyGetDigest(_ session: TPMSession) async throws(TPMError) -> [UInt8] {
        var c = TPM2PolicyGetDigest(); c.policySession = session.handle
        return try await execute(c).policyDigest.bytes
    }

    public func policyRestart(_ session: TPMSession) async throws(TPMError) {
        var c = TPM2PolicyRestart(); c.sessionHandle = session.handle
        _ = try await execute(c)
        updateSession(session.handle) { $0.isPasswordNeeded = false; $0.isAuthValueNeeded = false }
    }

    // MARK: NV

    public func nvDefineSpace(_ publicInfo: TPMSNVPublic, authValue: [UInt8] = [], hierarchy: TPMHandle = .owner,
                              auth: TPMAuth = .emptyPassword) async throws(TPMError) {
        var c = TPM2NVDefineSpace(); c.authHandle = hierarchy; c.auth = TPM2BAuth(authValue); c.publicInfo = TPM2BNVPublic(publicInfo)
        _ = try await execute(c, auths: [auth])
    }

    public func nvUndefineSpace(_ index: TPMHandle, hierarchy: TPMHandle = .owner, auth: TPMAuth = .emptyPassword) async throws(TPMError) {
        var c = TPM2NVUndefineSpace(); c.authHandle = hierarchy; c.nvIndex = index
        _ = try await execute(c, auths: [auth])
    }

    public func nvReadPublic(_ index: TPMHandle) async throws(TPMError) -> (nvPublic: TPMSNVPublic, name: [UInt8]) {
        var c = TPM2NVReadPublic(); c.nvIndex = index
        let r = try await execute(c)
        return (r.nvPublic.content, r.nvName.bytes)
    }

    /// Writes `data` at `offset`, in chunks of at most `chunk` bytes (TPM_PT_NV_BUFFER_MAX).
    public func nvWrite(_ index: TPMHandle, data: [UInt8], offset: Int = 0, authHandle: TPMHandle? = nil,
                        auth: TPMAuth = .emptyPassword, chunk: Int = 1024) async throws(TPMError) {
        var done = 0
        repeat {
            let n = min(chunk, data.count - done)
            var c = TPM2NVWrite(); c.authHandle = authHandle ?? index; c.nvIndex = index
            c.data = TPM2BMaxNVBuffer(data[done..<done + n]); c.offset = UInt16(offset + done)
            _ = try await execute(c, auths: [auth])
            done += n
        } while done < data.count
    }

    /// Reads `size` bytes at `offset` (the whole index when `size` is nil), in chunks.
    public func nvRead(_ index: TPMHandle, size: Int? = nil, offset: Int = 0, authHandle: TPMHandle? = nil,
                       auth: TPMAuth = .emptyPassword, chunk: Int = 1024) async throws(TPMError) -> [UInt8] {
        let total: Int
        if let size { total = size } else { total = Int(try await nvReadPublic(index).nvPublic.dataSize) - offset }
        var out: [UInt8] = []
        while out.count < total {
            var c = TPM2NVRead(); c.authHandle = authHandle ?? index; c.nvIndex = index
            c.size = UInt16(min(chunk, total - out.count)); c.offset = UInt16(offset + out.count)
            let got = try await execute(c, auths: [auth]).data.bytes
            if got.isEmpty { break }
            out += got
        }
        return out
    }

    public func nvExtend(_ index: TPMHandle, data: [UInt8], authHandle: TPMHandle? = nil,
                         auth: TPMAuth = .emptyPassword) async throws(TPMError) {
        var c = TPM2NVExtend(); c.authHandle = authHandle ?? index; c.nvIndex = index; c.data = TPM2BMaxNVBuffer(data)
        _ = try await execute(c, auths: [auth])
    }

    public func nvIncrement(_ index: TPMHandle, authHandle: TPMHandle? = nil, auth: TPMAuth = .emptyPassword) async throws(TPMError) {
        var c = TPM2NVIncrement(); c.authHandle = authHandle ?? index; c.nvIndex = index
        _ = try await execute(c, auths: [auth])
    }

    // MARK: Hierarchies

    public func hierarchyChangeAuth(_ hierarchy: TPMHandle, newAuth: [UInt8], auth: TPMAuth = .emptyPassword) async throws(TPMError) {
        var c = TPM2HierarchyChangeAuth(); c.authHandle = hierarchy; c.newAuth = TPM2BAuth(newAuth)
        _ = try await execute(c, auths: [auth], extraSessions: [], authValuesAfter: [0: newAuth])
    }

    public func clear(_ authHandle: TPMHandle = .lockout, auth: TPMAuth = .emptyPassword) async throws(TPMError) {
        var c = TPM2Clear(); c.authHandle = authHandle
        _ = try await execute(c, auths: [auth])
        objectNames.removeAll()
    }
}
