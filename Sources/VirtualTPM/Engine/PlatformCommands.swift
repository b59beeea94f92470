import TPM2

// Start-up, capabilities, randomness, hashing, PCRs, hierarchy authorization and Clear.

extension EngineCore {
    /// TPM2_Startup (Part 3, 9.3).
    mutating func startup(_ cmd: TPM2Startup) throws(TPMRC) -> TPMEmptyResponse {
        guard !started else { throw TPMRC.initialize }
        switch cmd.startupType {
        case .clear:
            // TPM Reset: a new null seed and context key, fresh PCRs; counted as a reset.
            nullHierarchy = HierarchyRecord()
            nullHierarchy.seed = TPMCrypto.random(32)
            nullHierarchy.proof = TPMCrypto.random(32)
            contextKey = TPMCrypto.random(32)
            resetPCRs()
            state.resetCount &+= 1
            state.restartCount = 0
            clearSTClearLocks()
            phEnable = true; shEnable = true; ehEnable = true
        case .state:
            // TPM Restart/Resume needs the state saved by Shutdown(STATE).
            guard state.orderly, let saved = savedPCRs else { throw TPMRC.value.with(.parameter(1)) }
            pcrs = saved
            state.restartCount &+= 1
            if contextKey.isEmpty { contextKey = TPMCrypto.random(32) }
        default:
            throw TPMRC.value.with(.parameter(1))
        }
        state.orderly = false
        savedPCRs = nil
        started = true
        dirty = true
        return TPMEmptyResponse()
    }

    /// TPM2_Shutdown (Part 3, 9.4).
    mutating func shutdown(_ cmd: TPM2Shutdown) throws(TPMRC) -> TPMEmptyResponse {
        switch cmd.shutdownType {
        case .clear: savedPCRs = nil
        case .state: savedPCRs = pcrs
        default: throw TPMRC.value.with(.parameter(1))
        }
        state.orderly = true
        dirty = true
        return TPMEmptyResponse()
    }

    func getRandom(_ cmd: TPM2GetRandom) -> TPM2GetRandom.Response {
        var r = TPM2GetRandom.Response()
        r.randomBytes = TPM2BDigest(TPMCrypto.random(min(Int(cmd.bytesRequested), 64)))
        return r
    }

    func testParms(_ cmd: TPM2TestParms) throws(TPMRC) -> TPMEmptyResponse {
        var t = TPMTPublic()
        t.nameAlg = .sha256
        t.parameters = cmd.publicParms
        switch cmd.publicParms {
        case .rsa(let r):
            guard [1024, 2048, 3072, 4096].contains(Int(r.keyBits)) else { throw TPMRC.keySize.with(.parameter(1)) }
        case .ecc(let e):
            guard [TPMECCCurve.nistP256, .nistP384, .nistP521].contains(e.curveID) else { throw TPMRC.curve.with(.parameter(1)) }
        case .symCipher(let s):
            guard s.sym.algorithm == .aes, [128, 256].contains(s.sym.keyBits) else { throw TPMRC.symmetric.with(.parameter(1)) }
        case .keyedHash:
            break
        }
        return TPMEmptyResponse()
    }

    /// TPM2_Hash (Part 3, 15.4).
    func hash(_ cmd: TPM2Hash) throws(TPMRC) -> TPM2Hash.Response {
        guard Self.implementedHashes.contains(cmd.hashAlg) else { throw TPMRC.hash.with(.parameter(2)) }
        var r = TPM2Hash.Response()
        let d = try rc { try TPMCrypto.hash(cmd.hashAlg, cmd.data.bytes) }
        r.outHash = TPM2BDigest(d)
        // No ticket for data that could pass for a TPM-generated structure.
        let generated = cmd.data.bytes.count >= 4 && Array(cmd.data.bytes.prefix(4)) == [0xFF, 0x54, 0x43, 0x47]
        if generated || cmd.hierarchy == .null {
            r.validation = TPMTTicket(tag: .hashcheck, hierarchy: .null)
        } else {
            guard validateHandle(cmd.hierarchy, kind: .hierarchyOrNull) == nil else { throw TPMRC.value.with(.parameter(3)) }
            r.validation = try ticket(.hashcheck, hierarchy: cmd.hierarchy, d)
        }
        return r
    }

    // MARK: PCRs (Part 3, 22)

    func pcrRead(_ cmd: TPM2PCRRead) throws(TPMRC) -> TPM2PCRRead.Response {
        var r = TPM2PCRRead.Response()
        r.pcrUpdateCounter = pcrUpdateCounter
        var out: [TPMSPCRSelection] = []
        var values: [TPM2BDigest] = []
        for sel in cmd.pcrSelectionIn.pcrSelections {
            var picked: [Int] = []
            if allocatedBanks.contains(sel.hash), let bank = pcrs[sel.hash] {
                for p in sel.pcrs where p < Limits.pcrCount && values.count < 8 {
                    picked.append(p)
                    values.append(TPM2BDigest(bank[p]))
                }
            }
            out.append(TPMSPCRSelection(hash: sel.hash, pcrs: picked, selectSize: max(3, sel.pcrSelect.count)))
        }
        r.pcrSelectionOut = TPMLPCRSelection(out)
        r.pcrValues = TPMLDigest(values)
        return r
    }

    /// PC Client localities (PC Client Platform TPM Profile, PCR attributes).
    func canExtend(_ pcr: Int, locality: UInt8) -> Bool {
        switch pcr {
        case 17, 18, 19: locality >= 2 && locality <= 4
        case 20: (1...3).contains(locality)
        case 21, 22: locality == 2
        default: true
        }
    }

    func canReset(_ pcr: Int, locality: UInt8) -> Bool {
        switch pcr {
        case 16, 23: true
        case 17, 18, 19: locality == 4
        case 20, 21, 22: locality == 2
        default: false
        }
    }

    mutating func extend(_ pcr: Int, alg: TPMAlgID, digest: [UInt8]) throws(TPMRC) {
        guard let old = pcrs[alg]?[pcr] else { return }
        let new = try rc { try TPMCrypto.hash(alg, old, digest) }
        pcrs[alg]![pcr] = new
    }

    mutating func pcrExtend(_ cmd: TPM2PCRExtend, _ ctx: CommandContext) throws(TPMRC) -> TPMEmptyResponse {
        let pcr = Int(cmd.pcrHandle.rawValue)
        guard canExtend(pcr, locality: ctx.locality) else { throw TPMRC.locality }
        for d in cmd.digests.digests {
            guard Self.implementedHashes.contains(d.hashAlg) else { throw TPMRC.hash.with(.parameter(1)) }
        }
        for d in cmd.digests.digests where allocatedBanks.contains(d.hashAlg) {
            try extend(pcr, alg: d.hashAlg, digest: d.digest)
        }
        pcrUpdateCounter &+= 1
        return TPMEmptyResponse()
    }

    mutating func pcrEvent(_ cmd: TPM2PCREvent, _ ctx: CommandContext) throws(TPMRC) -> TPM2PCREvent.Response {
        let pcr = Int(cmd.pcrHandle.rawValue)
        guard canExtend(pcr, locality: ctx.locality) else { throw TPMRC.locality }
        var r = TPM2PCREvent.Response()
        var digests: [TPMTHA] = []
        for alg in Self.implementedHashes {
            let d = try rc { try TPMCrypto.hash(alg, cmd.eventData.bytes) }
            digests.append(TPMTHA(hashAlg: alg, digest: d))
            if allocatedBanks.contains(alg) { try extend(pcr, alg: alg, digest: d) }
        }
        pcrUpdateCounter &+= 1
        r.digests = TPMLDigestValues(digests)
        return r
    }

    mutating func pcrReset(_ cmd: TPM2PCRReset, _ ctx: CommandContext) throws(TPMRC) -> TPMEmptyResponse {
        let pcr = Int(cmd.pcrHandle.rawValue)
        guard canReset(pcr, locality: ctx.locality) else { throw TPMRC.locality }
        for alg in Self.implementedHashes {
            pcrs[alg]![pcr] = [UInt8](repeating: 0, count: alg.digestSize!)
        }
        pcrUpdateCounter &+= 1
        return TPMEmptyResponse()
    }

    // MARK: Hierarchies (Part 3, 24)

    mutating func hierarchyChangeAuth(_ cmd: TPM2HierarchyChangeAuth) throws(TPMRC) -> TPMEmptyResponse {
        guard cmd.newAuth.count <= 32 else { throw TPMRC.size.with(.parameter(1)) }
        switch cmd.authHandle {
        case .owner: state.owner.authValue = cmd.newAuth
        case .endorsement: state.endorsement.authValue = cmd.newAuth
        case .platform: state.platform.authValue = cmd.newAuth
        case .lockout: state.lockout.authValue = cmd.newAuth
        default: throw TPMRC.hierarchy.with(.handle(1))
        }
        dirty = true
        return TPMEmptyResponse()
    }

    /// TPM2_Clear (Part 3, 24.6): new owner seed and proof, owner NV and objects gone, owner,
    /// endorsement and lockout auths emptied.
    mutating func clear(_ cmd: TPM2Clear) throws(TPMRC) -> TPMEmptyResponse {
        guard !state.disableClear else { throw TPMRC.disabled }
        state.owner.seed = TPMCrypto.random(32)
        state.owner.proof = TPMCrypto.random(32)
        state.endorsement.proof = TPMCrypto.random(32)
        for h in [\PersistentState.owner, \.endorsement, \.lockout] {
            state[keyPath: h].authValue = TPM2BAuth()
            state[keyPath: h].authPolicy = TPM2BDigest()
            state[keyPath: h].policyAlg = .null
        }
        state.nv.removeAll { !$0.publicArea.attributes.contains(.platformCreate) }
        let ownerPersistent = state.persistentObjects.filter { $0.hierarchy != .platform }.map(\.handle)
        state.persistentObjects.removeAll { $0.hierarchy != .platform }
        for h in ownerPersistent { persistentCache[h] = nil }
        for (h, o) in objects where o.hierarchy == .owner || o.hierarchy == .endorsement { objects[h] = nil }
        state.failedTries = 0
        state.lockoutAuthFailed = false
        dirty = true
        return TPMEmptyResponse()
    }
}
