import TPM2

/// What a handle must refer to, checked before anything else (TPM_RC_HANDLE otherwise).
enum HandleKind: Sendable {
    /// A loaded transient or persistent object.
    case object
    /// An object or TPM_RH_NULL (StartAuthSession's tpmKey).
    case objectOrNull
    /// Any entity with an authValue, or TPM_RH_NULL (StartAuthSession's bind).
    case entityOrNull
    /// Any entity that can be authorized (PolicySecret's authHandle).
    case entity
    case pcr
    case nvIndex
    /// One of these permanent handles.
    case permanent([TPMHandle])
    /// TPM_RH_OWNER, TPM_RH_PLATFORM or the NV index itself (NV commands' authHandle).
    case nvAuth
    /// A loaded policy or trial session.
    case policySession
    /// Any loaded session (PolicyRestart).
    case session
    /// A persistent handle value, existing or not (EvictControl's parameter side).
    case any
    /// A primary hierarchy or TPM_RH_NULL.
    case hierarchyOrNull
}

/// How a handle is being authorized (Part 1, 19.2): USER, ADMIN and DUP roles for objects;
/// reading or writing for NV indices.
enum AuthRole: Sendable {
    case user, admin, dup, nvRead, nvWrite
}

/// Who decrypts, who encrypts, and which policy sessions carry a password.
struct SessionPlan {
    var decrypt: Int?
    var encrypt: Int?
    var passwordSessions: Set<Int> = []
}

/// An authorizable entity as the authorization checks see it.
struct Entity {
    var name: [UInt8]
    var authValue: [UInt8]
    var authPolicy: [UInt8]
    var allowsAuthValue: Bool
    var allowsPolicy: Bool
    var daProtected: Bool
    var isLockout = false
}

extension EngineCore {
    static let permanentHierarchies: [TPMHandle] = [.owner, .endorsement, .platform, .lockout]

    /// nil if `h` is acceptable for `kind`, else the base code to return.
    func validateHandle(_ h: TPMHandle, kind: HandleKind) -> TPMRC? {
        func objectExists() -> Bool {
            switch h.type {
            case .transient: objects[h] != nil
            case .persistent: state.persistentObjects.contains { $0.handle == h }
            default: false
            }
        }
        func nvExists() -> Bool { h.type == .nvIndex && state.nv.contains { $0.publicArea.nvIndex == h } }
        switch kind {
        case .any: return nil
        case .object: return objectExists() ? nil : .handle
        case .objectOrNull: return h == .null || objectExists() ? nil : .handle
        case .entityOrNull, .entity:
            if case .entityOrNull = kind, h == .null { return nil }
            if objectExists() || nvExists() || Self.permanentHierarchies.contains(h) { return nil }
            if h.type == .pcr && Int(h.rawValue) < Limits.pcrCount { return nil }
            return .handle
        case .pcr: return h.type == .pcr && Int(h.rawValue) < Limits.pcrCount ? nil : .value
        case .nvIndex: return nvExists() ? nil : .handle
        case .permanent(let allowed):
            guard allowed.contains(h) else { return .hierarchy }
            return nil
        case .nvAuth: return h == .owner || h == .platform || nvExists() ? nil : .handle
        case .policySession:
            guard let s = sessions[h], s.isLoaded, s.type != .hmac else { return .handle }
            return nil
        case .session:
            guard let s = sessions[h], s.isLoaded else { return .handle }
            return nil
        case .hierarchyOrNull:
            return [.owner, .endorsement, .platform, .null].contains(h) ? nil : .value
        }
    }

    // Name of a handle: objects and NV indices by digest, everything else by value.
    func nameOf(_ h: TPMHandle) throws(TPMRC) -> [UInt8] {
        switch h.type {
        case .transient, .persistent:
            if let o = try? loadedObject(h) { return o.name }
            return h.handleName
        case .nvIndex:
            guard let nv = state.nv.first(where: { $0.publicArea.nvIndex == h }) else { return h.handleName }
            return try rc { try nv.publicArea.name() }
        default:
            return h.handleName
        }
    }

    func entity(_ h: TPMHandle, role: AuthRole, withName: Bool = true) throws(TPMRC) -> Entity {
        let name = withName ? try nameOf(h) : []
        switch h.type {
        case .permanent:
            let rec: HierarchyRecord
            switch h {
            case .owner: rec = state.owner
            case .endorsement: rec = state.endorsement
            case .platform: rec = state.platform
            case .lockout: rec = state.lockout
            case .null: return Entity(name: name, authValue: [], authPolicy: [], allowsAuthValue: true, allowsPolicy: false,
                                      daProtected: false)
            default: throw TPMRC.handle
            }
            return Entity(name: name, authValue: rec.authValue.bytes, authPolicy: rec.authPolicy.bytes,
                          allowsAuthValue: true, allowsPolicy: !rec.authPolicy.isEmpty, daProtected: h == .lockout,
                          isLockout: h == .lockout)
        case .pcr:
            return Entity(name: name, authValue: [], authPolicy: [], allowsAuthValue: true, allowsPolicy: false, daProtected: false)
        case .transient, .persistent:
            let o = try loadedObject(h)
            let a = o.attributes
            let byValue: Bool
            switch role {
            case .user, .nvRead, .nvWrite: byValue = a.contains(.userWithAuth)
            case .admin: byValue = !a.contains(.adminWithPolicy)
            case .dup: byValue = false
            }
            return Entity(name: name, authValue: o.authValue, authPolicy: o.publicArea.authPolicy.bytes,
                          allowsAuthValue: byValue, allowsPolicy: true, daProtected: !a.contains(.noDA))
        case .nvIndex:
            guard let nv = state.nv.first(where: { $0.publicArea.nvIndex == h }) else { throw TPMRC.handle }
            let a = nv.publicArea.attributes
            let (byValue, byPolicy): (Bool, Bool) = switch role {
            case .nvRead: (a.contains(.authRead), a.contains(.policyRead))
            case .nvWrite: (a.contains(.authWrite), a.contains(.policyWrite))
            default: (true, true)
            }
            // Neither authValue nor policy may authorize this access (Part 3, 31.x).
            if !byValue && !byPolicy { throw TPMRC.nvAuthorization }
            return Entity(name: name, authValue: nv.authValue.bytes, authPolicy: nv.publicArea.authPolicy.bytes,
                          allowsAuthValue: byValue, allowsPolicy: byPolicy, daProtected: !a.contains(.noDA))
        default:
            throw TPMRC.handle
        }
    }

    /// Checks the authorization area's sessions against the command (before its parameters are used).
    func planSessions(_ auths: [TPMSAuthCommand], entry: CommandEntry, handles: [TPMHandle]) throws(TPMRC) -> SessionPlan {
        var plan = SessionPlan()
        for (i, a) in auths.enumerated() {
            let here = TPMRC.Subject.session(i + 1)
            let attrs = a.sessionAttributes
            if attrs.rawValue & 0x18 != 0 { throw TPMRC.reservedBits.with(here) }
            if a.sessionHandle == .password {
                guard i < entry.authHandleCount, attrs.isDisjoint(with: [.decrypt, .encrypt, .audit]) else {
                    throw TPMRC.attributes.with(here)
                }
                guard a.nonce.isEmpty else { throw TPMRC.nonce.with(here) }
                continue
            }
            guard let s = sessions[a.sessionHandle], s.isLoaded else { throw TPMRC(rawValue: TPMRC.referenceS0 + UInt32(i)) }
            if s.type == .trial && i < entry.authHandleCount { throw TPMRC.attributes.with(here) }
            if attrs.contains(.audit) { throw TPMRC.attributes.with(here) }
            guard a.nonce.count >= 16 else { throw TPMRC.nonce.with(here) }
            if attrs.contains(.decrypt) {
                guard entry.decryptable, plan.decrypt == nil else { throw TPMRC.attributes.with(here) }
                guard s.symmetric.algorithm != .null else { throw TPMRC.symmetric.with(here) }
                plan.decrypt = i
            }
            if attrs.contains(.encrypt) {
                guard entry.encryptable, plan.encrypt == nil else { throw TPMRC.attributes.with(here) }
                guard s.symmetric.algorithm != .null else { throw TPMRC.symmetric.with(here) }
                plan.encrypt = i
            }
            if i >= entry.authHandleCount && attrs.isDisjoint(with: [.decrypt, .encrypt]) { throw TPMRC.attributes.with(here) }
            if s.type == .policy && s.isPasswordNeeded && i < entry.authHandleCount { plan.passwordSessions.insert(i) }
        }
        return plan
    }

    /// Whether a session's HMAC key includes the entity's authValue (Part 1, 19.6.8): not for
    /// an HMAC session bound to that very entity, nor for a policy session without
    /// PolicyAuthValue. Decided when the command is authorized and kept for its response.
    func includesAuth(_ s: ServerSession, entity e: Entity?) -> Bool {
        guard let e else { return false }
        switch s.type {
        case .hmac:
            if let b = s.bindName, b == e.name { return false }
            return true
        default:
            return s.isAuthValueNeeded
        }
    }

    /// The authValue a slot's entity has now (after the command: a changed authValue is used
    /// for the response, as the reference implementation does), or `fallback` when the entity
    /// is gone.
    func currentAuthValue(slot: Int, handles: [TPMHandle], fallback: [UInt8]) -> [UInt8] {
        authEntityForSlot(slot, handles: handles)?.authValue ?? fallback
    }

    /// The entity a session slot authorizes (nil for sessions past the authorized handles).
    func authEntityForSlot(_ slot: Int, handles: [TPMHandle]) -> Entity? {
        guard let code = currentCommand, let entry = CommandTable.entries[code], slot < entry.authHandleCount, slot < handles.count else {
            return nil
        }
        return try? entity(handles[slot], role: entry.roles[slot])
    }

    var currentCommand: TPMCC? { commandInProgress }

    /// Encrypts or decrypts the first parameter's data (Part 1, 21).
    func cryptFirstParameter(_ params: [UInt8], session slot: Int, plan: SessionPlan, encrypt: Bool,
                             nonceNewer: [UInt8], nonceOlder: [UInt8], handles: [TPMHandle]) throws(TPMRC) -> [UInt8] {
        guard params.count >= 2 else { throw TPMRC.size.with(.parameter(1)) }
        let size = Int(params[0]) << 8 | Int(params[1])
        guard params.count >= 2 + size else { throw TPMRC.size.with(.parameter(1)) }
        guard let handle = sessionHandleForSlot(slot), let s = sessions[handle] else { throw TPMRC.failure }
        var key = s.sessionKey
        // The authValue of the entity this session authorizes, whether or not it is bound to it.
        if let e = authEntityForSlot(slot, handles: handles) {
            key += trimZeros(e.authValue)
        } else if let record = slotAuth[slot] {
            key += trimZeros(record.authValue)
        }
        let data = Array(params[2..<(2 + size)])
        let out: [UInt8]
        switch s.symmetric.algorithm {
        case .aes:
            guard s.symmetric.mode == .cfb else { throw TPMRC.mode }
            let keyBytes = Int(s.symmetric.keyBits) / 8
            let kiv = try rc { try TPMCrypto.kdfa(s.authHash, key: key, label: "CFB", contextU: nonceNewer, contextV: nonceOlder,
                                                  bits: Int(s.symmetric.keyBits) + 128) }
            out = try rc { try TPMCrypto.aesCFB(encrypt: encrypt, key: Array(kiv[0..<keyBytes]), iv: Array(kiv[keyBytes...]), data) }
        case .xor:
            if data.isEmpty { return params }
            let mask = try rc { try TPMCrypto.kdfa(TPMAlgID(rawValue: s.symmetric.keyBits), key: key, label: "XOR", contextU: nonceNewer,
                                                   contextV: nonceOlder, bits: data.count * 8) }
            out = zip(data, mask).map { $0 ^ $1 }
        default:
            throw TPMRC.symmetric
        }
        var result = params
        result.replaceSubrange(2..<(2 + size), with: out)
        return result
    }

    func sessionHandleForSlot(_ slot: Int) -> TPMHandle? {
        slot < authArea.count ? authArea[slot].sessionHandle : nil
    }

    /// Authorizes the command's handles (after its parameters decoded, before it acts).
    mutating func authorize(plan: SessionPlan, auths: [TPMSAuthCommand], entry: CommandEntry, handles: [TPMHandle],
                            names: [[UInt8]], cpParams: [UInt8], code: TPMCC) throws(TPMRC) {
        decayFailedTries()
        var cpHashes: [TPMAlgID: [UInt8]] = [:]
        func cpHash(_ alg: TPMAlgID) throws(TPMRC) -> [UInt8] {
            if let h = cpHashes[alg] { return h }
            let h = try rc { try tpmCommandParameterHash(alg, code: code, names: names, parameters: cpParams) }
            cpHashes[alg] = h
            return h
        }
        for (i, a) in auths.enumerated() {
            let here = TPMRC.Subject.session(i + 1)
            let authorizing = i < entry.authHandleCount
            let e: Entity? = authorizing ? try entity(handles[i], role: entry.roles[i], withName: a.sessionHandle != .password) : nil
            if let e, a.sessionHandle != .password {
                let include = sessions[a.sessionHandle].map { includesAuth($0, entity: e) } ?? false
                slotAuth[i] = (include: include, authValue: e.authValue)
            }
            if let e, e.daProtected, inLockout(e) { throw TPMRC.lockout }
            if a.sessionHandle == .password {
                guard let e else { throw TPMRC.attributes.with(here) }
                guard e.allowsAuthValue else { throw TPMRC.authUnavailable }
                guard authEquals(a.hmac.bytes, e.authValue) else {
                    throw authFailure(e, here)
                }
                continue
            }
            guard let s = sessions[a.sessionHandle] else { throw TPMRC(rawValue: TPMRC.referenceS0 + UInt32(i)) }
            if let e {
                switch s.type {
                case .hmac:
                    guard e.allowsAuthValue else { throw TPMRC.authUnavailable }
                case .policy:
                    guard e.allowsPolicy, constantTimeEqual(s.policyDigest, e.authPolicy) else { throw TPMRC.policyFail.with(here) }
                    if let cc = s.commandCode, cc != code { throw TPMRC.policyCC.with(here) }
                    if let counter = s.pcrCounter, counter != pcrUpdateCounter { throw TPMRC.pcrChanged }
                    if let bound = s.cpHash, bound != (try cpHash(s.authHash)) { throw TPMRC.policyFail.with(here) }
                    if s.isPasswordNeeded {
                        guard authEquals(a.hmac.bytes, e.authValue) else { throw authFailure(e, here) }
                        continue
                    }
                default:
                    throw TPMRC.attributes.with(here)
                }
            }
            // The HMAC (Part 1, 19.6.5); the first session also covers separate decrypt/encrypt nonces.
            var nonceDecrypt: [UInt8] = [], nonceEncrypt: [UInt8] = []
            if i == 0 {
                if let d = plan.decrypt, d != 0, let ds = sessions[auths[d].sessionHandle] { nonceDecrypt = ds.nonceTPM }
                if let en = plan.encrypt, en != 0, en != plan.decrypt, let es = sessions[auths[en].sessionHandle] {
                    nonceEncrypt = es.nonceTPM
                }
            }
            let include = includesAuth(s, entity: e)
            let key = include ? s.sessionKey + trimZeros(e?.authValue ?? []) : s.sessionKey
            let expected = try rc {
                try TPMCrypto.hmac(s.authHash, key: key, try cpHash(s.authHash), a.nonce.bytes, s.nonceTPM, nonceDecrypt, nonceEncrypt,
                                   [a.sessionAttributes.rawValue])
            }
            guard constantTimeEqual(expected, a.hmac.bytes) else {
                if let e { throw authFailure(e, here) }
                throw TPMRC.authFail.with(here)
            }
        }
        if plan.decrypt != nil || plan.encrypt != nil || !auths.isEmpty { /* checked */ }
    }

    /// Counts a failed authorization against dictionary-attack protection (Part 1, 19.8).
    mutating func authFailure(_ e: Entity, _ subject: TPMRC.Subject) -> TPMRC {
        guard e.daProtected else { return TPMRC.badAuth.with(subject) }
        if e.isLockout {
            state.lockoutAuthFailed = true
            lockoutTime = .now
        } else {
            decayFailedTries()
            state.failedTries += 1
            lastFailure = .now
        }
        dirty = true
        return TPMRC.authFail.with(subject)
    }

    /// Recovers one failed try per recoveryTime seconds since the last failure.
    mutating func decayFailedTries() {
        guard state.failedTries > 0, state.recoveryTime > 0, let last = lastFailure else { return }
        let elapsed = (ContinuousClock.now - last).components.seconds
        let recovered = UInt32(clamping: elapsed / Int64(state.recoveryTime))
        if recovered > 0 {
            state.failedTries -= min(recovered, state.failedTries)
            lastFailure = .now
        }
    }

    func inLockout(_ e: Entity) -> Bool {
        if e.isLockout {
            guard state.lockoutAuthFailed else { return false }
            if state.lockoutRecovery == 0 { return true }
            guard let t = lockoutTime else { return true }
            return (ContinuousClock.now - t) < .seconds(Int(state.lockoutRecovery))
        }
        return state.maxTries > 0 && state.failedTries >= state.maxTries
    }
}

/// Equal once trailing zero octets are ignored (authValue comparison, Part 1, 19.6.5), in
/// time that depends only on the lengths.
func authEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var la = a.count, lb = b.count
    while la > 0 && a[la - 1] == 0 { la -= 1 }
    while lb > 0 && b[lb - 1] == 0 { lb -= 1 }
    guard la == lb else { return false }
    var d: UInt8 = 0
    for i in 0..<la { d |= a[i] ^ b[i] }
    return d == 0
}

func trimZeros(_ a: [UInt8]) -> [UInt8] {
    var a = a
    while a.last == 0 { a.removeLast() }
    return a
}

extension TPMRC {
    /// TPM_RC_REFERENCE_S0 (Part 2, 6.6.3): the first session handle references no loaded session.
    static let referenceS0: UInt32 = 0x918
    /// TPM_RC_REFERENCE_H0: the first handle references a transient object or session that is not loaded.
    static let referenceH0: UInt32 = 0x910
}
