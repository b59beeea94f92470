import TPM2

// Sessions and policies (Part 3, 11 and 23).

extension EngineCore {
    mutating func startAuthSession(_ cmd: TPM2StartAuthSession) throws(TPMRC) -> TPM2StartAuthSession.Response {
        guard (16...64).contains(cmd.nonceCaller.count) else { throw TPMRC.size.with(.parameter(1)) }
        guard [TPMSE.hmac, .policy, .trial].contains(cmd.sessionType) else { throw TPMRC.value.with(.parameter(3)) }
        guard Self.implementedHashes.contains(cmd.authHash), let digestSize = cmd.authHash.digestSize else {
            throw TPMRC.hash.with(.parameter(5))
        }
        switch cmd.symmetric.algorithm {
        case .null: break
        case .aes:
            guard [128, 256].contains(cmd.symmetric.keyBits) else { throw TPMRC.symmetric.with(.parameter(4)) }
            guard cmd.symmetric.mode == .cfb else { throw TPMRC.mode.with(.parameter(4)) }
        case .xor:
            guard Self.implementedHashes.contains(TPMAlgID(rawValue: cmd.symmetric.keyBits)) else { throw TPMRC.hash.with(.parameter(4)) }
        default:
            throw TPMRC.symmetric.with(.parameter(4))
        }
        var salt: [UInt8] = []
        if cmd.tpmKey == .null {
            guard cmd.encryptedSalt.isEmpty else { throw TPMRC.value.with(.parameter(2)) }
        } else {
            let key = try loadedObject(cmd.tpmKey)
            guard key.attributes.contains(.decrypt) else { throw TPMRC.attributes.with(.handle(1)) }
            salt = try decryptSecret(key, secret: cmd.encryptedSalt.bytes, label: "SECRET", param: 2)
        }
        var bindAuth: [UInt8] = []
        var bindName: [UInt8]?
        if cmd.bind != .null {
            let e = try entity(cmd.bind, role: .user)
            bindAuth = trimZeros(e.authValue)
            bindName = e.name
        }
        guard sessions.count < Limits.activeSessions else { throw TPMRC.sessionHandles }
        guard sessions.values.filter(\.isLoaded).count < Limits.loadedSessions else { throw TPMRC.sessionMemory }
        let used = Set(sessions.keys.map { $0.rawValue & 0x00FF_FFFF })
        let index = (0..<UInt32(Limits.activeSessions)).first { !used.contains($0) }!
        let handle = TPMHandle((cmd.sessionType == .hmac ? 0x0200_0000 : 0x0300_0000) | index)
        let nonceTPM = TPMCrypto.random(digestSize)
        let key = try rc {
            try TPMSessionState.sessionKey(authHash: cmd.authHash, bindAuth: bindAuth, salt: salt, nonceTPM: nonceTPM,
                                           nonceCaller: cmd.nonceCaller.bytes)
        }
        sessions[handle] = ServerSession(handle: handle, type: cmd.sessionType, authHash: cmd.authHash, symmetric: cmd.symmetric,
                                         sessionKey: key, nonceTPM: nonceTPM, bindName: bindName,
                                         policyDigest: [UInt8](repeating: 0, count: digestSize), commandCode: nil)
        var r = TPM2StartAuthSession.Response()
        r.sessionHandle = handle
        r.nonceTPM = TPM2BNonce(nonceTPM)
        return r
    }

    mutating func policyRestart(_ cmd: TPM2PolicyRestart) throws(TPMRC) -> TPMEmptyResponse {
        guard var s = sessions[cmd.sessionHandle], s.type != .hmac else { throw TPMRC.handle.with(.handle(1)) }
        s.resetPolicy()
        sessions[cmd.sessionHandle] = s
        return TPMEmptyResponse()
    }

    /// policyDigest ← H(policyDigest ‖ parts).
    mutating func policyUpdate(_ h: TPMHandle, _ parts: [UInt8]...) throws(TPMRC) {
        guard var s = sessions[h] else { throw TPMRC.handle.with(.handle(1)) }
        s.policyDigest = try rc { try TPMCrypto.hash(s.authHash, parts: [s.policyDigest] + parts) }
        sessions[h] = s
    }

    mutating func policySecret(_ cmd: TPM2PolicySecret, _ ctx: CommandContext) throws(TPMRC) -> TPM2PolicySecret.Response {
        guard let s = sessions[cmd.policySession] else { throw TPMRC.handle.with(.handle(2)) }
        if !cmd.nonceTPM.isEmpty && cmd.nonceTPM.bytes != s.nonceTPM { throw TPMRC.nonce.with(.parameter(1)) }
        if cmd.expiration != 0 && s.type != .trial {
            // Expiring authorizations need a nonce to count from (Part 3, 23.2).
            if cmd.expiration > 0 && cmd.nonceTPM.isEmpty { throw TPMRC.expired.with(.parameter(4)) }
        }
        let authName = ctx.handleNames[0]
        try policyUpdate(cmd.policySession, be32(TPMCC.policySecret.rawValue), authName)
        try policyUpdate(cmd.policySession, cmd.policyRef.bytes)
        if !cmd.cpHashA.isEmpty {
            guard var s2 = sessions[cmd.policySession], cmd.cpHashA.count == s2.authHash.digestSize else {
                throw TPMRC.size.with(.parameter(2))
            }
            if let existing = s2.cpHash, existing != cmd.cpHashA.bytes { throw TPMRC.cpHash.with(.parameter(2)) }
            s2.cpHash = cmd.cpHashA.bytes
            sessions[cmd.policySession] = s2
        }
        var r = TPM2PolicySecret.Response()
        r.policyTicket = TPMTTicket(tag: .authSecret, hierarchy: .null)
        return r
    }

    mutating func policyOR(_ cmd: TPM2PolicyOR) throws(TPMRC) -> TPMEmptyResponse {
        guard var s = sessions[cmd.policySession] else { throw TPMRC.handle.with(.handle(1)) }
        let list = cmd.pHashList.digests.map(\.bytes)
        guard (2...8).contains(list.count) else { throw TPMRC.size.with(.parameter(1)) }
        guard list.allSatisfy({ $0.count == s.authHash.digestSize }) else { throw TPMRC.size.with(.parameter(1)) }
        if s.type != .trial && !list.contains(s.policyDigest) { throw TPMRC.value.with(.parameter(1)) }
        s.policyDigest = try rc {
            try TPMCrypto.hash(
                s.authHash, parts: [[UInt8](repeating: 0, count: s.policyDigest.count), be32(TPMCC.policyOR.rawValue)] + list)
        }
        sessions[cmd.policySession] = s
        return TPMEmptyResponse()
    }

    mutating func policyPCR(_ cmd: TPM2PolicyPCR) throws(TPMRC) -> TPMEmptyResponse {
        guard var s = sessions[cmd.policySession] else { throw TPMRC.handle.with(.handle(1)) }
        var values: [[UInt8]] = []
        for sel in cmd.pcrs.pcrSelections {
            guard Self.implementedHashes.contains(sel.hash) else { throw TPMRC.hash.with(.parameter(2)) }
            guard allocatedBanks.contains(sel.hash), let bank = pcrs[sel.hash] else { throw TPMRC.pcr }
            for p in sel.pcrs where p < Limits.pcrCount { values.append(bank[p]) }
        }
        let current = try rc { try TPMCrypto.hash(s.authHash, parts: values) }
        let digest: [UInt8]
        if cmd.pcrDigest.isEmpty {
            digest = current
        } else {
            guard cmd.pcrDigest.count == s.authHash.digestSize else { throw TPMRC.size.with(.parameter(1)) }
            if s.type != .trial && cmd.pcrDigest.bytes != current { throw TPMRC.value.with(.parameter(1)) }
            digest = cmd.pcrDigest.bytes
        }
        let sel: [UInt8]
        do { sel = try cmd.pcrs.tpmBytes() } catch { throw TPMRC.failure }
        s.policyDigest = try rc { try TPMCrypto.hash(s.authHash, s.policyDigest, be32(TPMCC.policyPCR.rawValue), sel, digest) }
        if s.type != .trial { s.pcrCounter = pcrUpdateCounter }
        sessions[cmd.policySession] = s
        return TPMEmptyResponse()
    }

    mutating func policyCommandCode(_ cmd: TPM2PolicyCommandCode) throws(TPMRC) -> TPMEmptyResponse {
        guard var s = sessions[cmd.policySession] else { throw TPMRC.handle.with(.handle(1)) }
        guard CommandTable.entries[cmd.commandCode] != nil else { throw TPMRC.policyCC.with(.parameter(1)) }
        if let existing = s.commandCode, existing != cmd.commandCode { throw TPMRC.value.with(.parameter(1)) }
        s.commandCode = cmd.commandCode
        s.policyDigest = try rc { try TPMCrypto.hash(s.authHash, s.policyDigest, be32(TPMCC.policyCommandCode.rawValue),
                                                     be32(cmd.commandCode.rawValue)) }
        sessions[cmd.policySession] = s
        return TPMEmptyResponse()
    }

    /// PolicyAuthValue and PolicyPassword both extend with TPM_CC_PolicyAuthValue (Part 3, 23.17–18).
    mutating func policyAuthValue(_ h: TPMHandle, password: Bool) throws(TPMRC) -> TPMEmptyResponse {
        guard var s = sessions[h] else { throw TPMRC.handle.with(.handle(1)) }
        s.policyDigest = try rc { try TPMCrypto.hash(s.authHash, s.policyDigest, be32(TPMCC.policyAuthValue.rawValue)) }
        s.isPasswordNeeded = password
        s.isAuthValueNeeded = !password
        sessions[h] = s
        return TPMEmptyResponse()
    }

    func policyGetDigest(_ cmd: TPM2PolicyGetDigest) throws(TPMRC) -> TPM2PolicyGetDigest.Response {
        guard let s = sessions[cmd.policySession] else { throw TPMRC.handle.with(.handle(1)) }
        var r = TPM2PolicyGetDigest.Response()
        r.policyDigest = TPM2BDigest(s.policyDigest)
        return r
    }
}

@inline(__always)
func be32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.bigEndian, Array.init) }
