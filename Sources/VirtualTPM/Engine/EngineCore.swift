import TPM2

/// The TPM 2.0 engine as a value: persistent state, volatile state (PCRs, loaded objects,
/// sessions) and the command processing of Part 3's "Detailed Actions", one command at a
/// time. `VirtualTPM` wraps it in a lock.
struct EngineCore {
    var state: PersistentState
    let store: StateStore?
    /// Persistent state changed during this command: save it before answering.
    var dirty = false
    /// Only these NV indices' contents changed (a small journal record suffices).
    var changedNV: Set<TPMHandle> = []

    // Volatile state.
    var powered = true
    var started = false
    var pcrs: [TPMAlgID: [[UInt8]]] = [:]
    var allocatedBanks: [TPMAlgID] = [.sha1, .sha256]
    var pcrUpdateCounter: UInt32 = 0
    var objects: [TPMHandle: LoadedObject] = [:]
    /// Persistent objects in loaded form (rebuilt when the set changes).
    var persistentCache: [TPMHandle: LoadedObject] = [:]
    var currentLocality: UInt8 = 0
    var sessions: [TPMHandle: ServerSession] = [:]
    var nullHierarchy = HierarchyRecord()
    var contextKey: [UInt8] = []
    var contextSequence: UInt64 = 0
    var bootTime = ContinuousClock.now
    var clockAtBoot: UInt64 = 0
    /// Shutdown(STATE) saved these for a Startup(STATE).
    var savedPCRs: [TPMAlgID: [[UInt8]]]?
    var phEnable = true
    var shEnable = true
    var ehEnable = true
    var lockoutTime: ContinuousClock.Instant?
    var lastFailure: ContinuousClock.Instant?
    /// The command being processed and its authorization area.
    var commandInProgress: TPMCC?
    var authArea: [TPMSAuthCommand] = []
    /// Per authorizing session slot: whether its HMAC key includes the authValue, and that value.
    var slotAuth: [Int: (include: Bool, authValue: [UInt8])] = [:]

    static let implementedHashes: [TPMAlgID] = [.sha1, .sha256, .sha384, .sha512]
    let firmwareVersion: UInt64 = 0x0001_0000_0000_0000

    init(state: PersistentState, store: StateStore?) {
        self.state = state
        self.store = store
        powerOn()
    }

    /// _TPM_Init (Part 1, 12.2.2): volatile state is lost.
    mutating func powerOn() {
        powered = true
        started = false
        objects = [:]
        sessions = [:]
        bootTime = .now
        clockAtBoot = state.clock
        resetPCRs()
        rebuildPersistentCache()
    }

    mutating func resetPCRs() {
        pcrs = Self.initialPCRs
        pcrUpdateCounter = 0
    }

    /// Every bank's PCRs at reset, built once: each TPM's copy shares these buffers until it
    /// extends a PCR. PC Client: PCRs 17–22 start at all ones until a dynamic launch resets them.
    static let initialPCRs: [TPMAlgID: [[UInt8]]] = Dictionary(uniqueKeysWithValues: implementedHashes.map { alg in
        (alg, (0..<Limits.pcrCount).map { i in [UInt8](repeating: (17...22).contains(i) ? 0xFF : 0x00, count: alg.digestSize!) })
    })

    /// TPM time since _TPM_Init, and Clock (Part 1, 36).
    var timeMilliseconds: UInt64 {
        let d = ContinuousClock.now - bootTime
        return UInt64(d.components.seconds) * 1000 + UInt64(d.components.attoseconds / 1_000_000_000_000_000)
    }
    var clock: UInt64 { clockAtBoot + timeMilliseconds }

    var clockInfo: TPMSClockInfo {
        TPMSClockInfo(clock: clock, resetCount: state.resetCount, restartCount: state.restartCount, safe: true)
    }

    // MARK: Execute

    /// Processes one command and returns the response bytes; never traps on any input.
    mutating func execute(_ bytes: [UInt8], locality: UInt8) -> [UInt8] {
        dirty = false
        changedNV = []
        var response: TPMResponsePacket
        do {
            response = try process(bytes, locality: locality)
        } catch {
            response = TPMResponsePacket(responseCode: error)
        }
        if let store, dirty || !changedNV.isEmpty {
            do {
                if dirty {
                    state.clock = clock
                    try store.save(state)
                } else {
                    try store.saveNV(state.nv.filter { changedNV.contains($0.publicArea.nvIndex) }, full: state)
                }
            } catch {
                // The change is not durable: do not acknowledge it.
                response = TPMResponsePacket(responseCode: .failure)
            }
        }
        return (try? response.encode()) ?? [0x80, 0x01, 0, 0, 0, 10, 0, 0, 1, 1]
    }

    mutating func process(_ bytes: [UInt8], locality: UInt8) throws(TPMRC) -> TPMResponsePacket {
        guard bytes.count >= 10 else { throw TPMRC.commandSize }
        let tag = TPMST(rawValue: UInt16(bytes[0]) << 8 | UInt16(bytes[1]))
        guard tag == .noSessions || tag == .sessions else { throw TPMRC.badTag }
        let size = Int(readBE32(bytes, 2))
        guard size == bytes.count, size <= Limits.maxCommandSize else { throw TPMRC.commandSize }
        let code = TPMCC(rawValue: readBE32(bytes, 6))
        guard let entry = CommandTable.entries[code] else { throw TPMRC.commandCode }
        if !started && code != .startup { throw TPMRC.initialize }

        // Handle area.
        var offset = 10
        var handles: [TPMHandle] = []
        for _ in 0..<entry.handleCount {
            guard offset + 4 <= bytes.count else { throw TPMRC.insufficient }
            handles.append(TPMHandle(readBE32(bytes, offset)))
            offset += 4
        }
        for (i, h) in handles.enumerated() {
            if let bad = validateHandle(h, kind: entry.handleKinds[i]) { throw bad.with(.handle(i + 1)) }
        }

        // Authorization area.
        var auths: [TPMSAuthCommand] = []
        if tag == .sessions {
            guard entry.allowsSessions else { throw TPMRC.authContext }
            guard offset + 4 <= bytes.count else { throw TPMRC.insufficient }
            let authSize = Int(readBE32(bytes, offset))
            offset += 4
            guard authSize >= 9, offset + authSize <= bytes.count else { throw TPMRC.authSize }
            var d = TPMDecoder(bytes, range: offset..<(offset + authSize))
            while d.remaining > 0 {
                guard auths.count < 3 else { throw TPMRC.authSize }
                var a = TPMSAuthCommand()
                do { try d.nested(&a, "auth") } catch { throw TPMRC.authSize }
                auths.append(a)
            }
            offset += authSize
        }
        guard auths.count >= entry.authHandleCount else { throw TPMRC.authMissing }
        var params = Array(bytes[offset...])
        commandInProgress = code
        authArea = auths
        currentLocality = locality
        slotAuth = [:]
        defer { commandInProgress = nil; authArea = []; slotAuth = [:] }

        let plan = try planSessions(auths, entry: entry, handles: handles)
        // Names are needed for cpHash (sessions other than the password session) and PolicySecret.
        let needNames = code == .policySecret || auths.contains { $0.sessionHandle != .password }
        let names = needNames ? try handles.map { (h) throws(TPMRC) -> [UInt8] in try nameOf(h) } : []

        // Parameter decryption (after the HMAC check input is fixed: cpHash covers the ciphertext).
        let cpParams = params
        if let d = plan.decrypt {
            params = try cryptFirstParameter(params, session: d, plan: plan, encrypt: false, nonceNewer: auths[d].nonce.bytes,
                                             nonceOlder: sessions[auths[d].sessionHandle]!.nonceTPM, handles: handles)
        }

        let context = CommandContext(code: code, locality: locality, handleNames: names)
        let result = try entry.run(&self, handles, params, context) { (core: inout EngineCore) throws(TPMRC) in
            try core.authorize(plan: plan, auths: auths, entry: entry, handles: handles, names: names, cpParams: cpParams, code: code)
        }

        // Response sessions: new nonces, encryption, HMACs.
        var responseParams = result.parameters
        var responseAuths: [TPMSAuthResponse] = []
        if !auths.isEmpty {
            for (i, a) in auths.enumerated() where a.sessionHandle != .password {
                if var s = sessions[a.sessionHandle] {
                    s.nonceTPM = TPMCrypto.random(s.nonceTPM.count)
                    sessions[a.sessionHandle] = s
                }
                _ = i
            }
            if let e = plan.encrypt {
                let s = sessions[auths[e].sessionHandle]!
                responseParams = try cryptFirstParameter(responseParams, session: e, plan: plan, encrypt: true, nonceNewer: s.nonceTPM,
                                                         nonceOlder: auths[e].nonce.bytes, handles: handles)
            }
            var rpHashes: [TPMAlgID: [UInt8]] = [:]
            for alg in Set(auths.compactMap { sessions[$0.sessionHandle]?.authHash }) {
                rpHashes[alg] = try rc { try tpmResponseParameterHash(alg, code: code, parameters: responseParams) }
            }
            for (i, a) in auths.enumerated() {
                guard a.sessionHandle != .password, let s = sessions[a.sessionHandle] else {
                    responseAuths.append(
                        TPMSAuthResponse(
                            nonce: TPM2BNonce(), sessionAttributes: a.sessionAttributes.intersection(.continueSession), hmac: TPM2BAuth()))
                    continue
                }
                let attrs = a.sessionAttributes
                var hmac: [UInt8] = []
                if !(s.type == .policy && plan.passwordSessions.contains(i)) {
                    var key = s.sessionKey
                    if let record = slotAuth[i], record.include {
                        key += trimZeros(currentAuthValue(slot: i, handles: handles, fallback: record.authValue))
                    }
                    hmac = try rc { try TPMCrypto.hmac(s.authHash, key: key, rpHashes[s.authHash]!, s.nonceTPM, a.nonce.bytes,
                                                       [attrs.rawValue]) }
                }
                responseAuths.append(TPMSAuthResponse(nonce: TPM2BNonce(s.nonceTPM), sessionAttributes: attrs, hmac: TPM2BAuth(hmac)))
            }
            // Sessions end or continue; policy sessions used for authorization start over.
            for (i, a) in auths.enumerated() where a.sessionHandle != .password {
                guard var s = sessions[a.sessionHandle] else { continue }
                if !a.sessionAttributes.contains(.continueSession) {
                    sessions[a.sessionHandle] = nil
                } else {
                    if s.type == .policy && i < entry.authHandleCount { s.resetPolicy() }
                    sessions[a.sessionHandle] = s
                }
            }
        }
        var packet = TPMResponsePacket(responseCode: .success, handles: result.handles, parameters: responseParams, sessions: responseAuths)
        packet.tag = tag
        return packet
    }
}

@inline(__always)
func readBE32(_ b: [UInt8], _ at: Int) -> UInt32 {
    UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
}
