/// A typed TPM 2.0 client over any ``TPMTransport``. It builds commands from their single
/// definition, runs the authorization protocol (password, HMAC, salted and policy sessions,
/// parameter encryption, response HMAC checks) and decodes responses into typed values.
///
/// An actor: a TPM connection executes one command at a time and sessions evolve with each.
public actor TPMClient {
    public nonisolated let transport: any TPMTransport
    /// Session state by session handle.
    var sessions: [TPMHandle: TPMSessionState] = [:]
    /// Names of loaded objects by handle (learned from CreatePrimary, Load, ReadPublic …).
    var objectNames: [TPMHandle: [UInt8]] = [:]

    /// How often a command is re-sent when the TPM answers RETRY, YIELDED or TESTING.
    public var retryLimit = 20

    public init(transport: any TPMTransport) {
        self.transport = transport
    }

    /// Connects with a TCTI string (tpm2-tools syntax).
    public init(tcti: String) throws(TPMError) {
        self.init(transport: try TCTIConfiguration(parsing: tcti).makeTransport())
    }

    /// Closes the transport's connection (swtpm then accepts other clients).
    public func close() async {
        await transport.close()
    }

    /// The state of a session this client started (nil once flushed or not continued).
    public func state(of session: TPMSession) -> TPMSessionState? { sessions[session.handle] }

    /// Forgets cached names (e.g. after another process changed the TPM).
    public func forgetNames() { objectNames.removeAll() }

    // MARK: Raw

    /// Sends raw command bytes and returns the raw response.
    public func sendRaw(_ bytes: [UInt8]) async throws(TPMError) -> [UInt8] {
        try await transport.send(bytes)
    }

    // MARK: Execute

    /// Executes a command. `auths` authorizes the command's first `authHandleCount` handles
    /// (missing ones use the empty password); `extraSessions` are added after them, e.g. a
    /// session with `decrypt`/`encrypt` attributes used only for parameter encryption.
    public func execute<C: TPMCommand>(_ command: C, auths: [TPMAuth] = [],
                                       extraSessions: [TPMSession] = []) async throws(TPMError) -> C.Response {
        try await execute(command, auths: auths, extraSessions: extraSessions, authValuesAfter: [:])
    }

    /// `authValuesAfter`: an entity's authValue once the command has run, for commands that
    /// change it (TPM2_HierarchyChangeAuth): the TPM keys the response HMAC with the new value.
    func execute<C: TPMCommand>(_ command: C, auths: [TPMAuth], extraSessions: [TPMSession],
                                authValuesAfter: [Int: [UInt8]]) async throws(TPMError) -> C.Response {
        let code = C.code
        let handles = command.handleValues
        var parameters: [UInt8]
        do { parameters = try command.parameterBytes() } catch {
            throw TPMError(.invalidCommand, command: code, wire: error, reason: "the command's parameters cannot be encoded")
        }

        // Which session does what.
        var slots: [AuthSlot] = []
        for i in 0..<C.authHandleCount {
            slots.append(AuthSlot(auth: i < auths.count ? auths[i] : .emptyPassword, entityIndex: i))
        }
        for s in extraSessions { slots.append(AuthSlot(auth: .session(s), entityIndex: nil)) }
        guard slots.count <= 3 else { throw TPMError(.invalidArgument, command: code, reason: "a command carries at most three sessions") }

        var states: [TPMSessionState?] = []
        for slot in slots {
            if case .session(let s, _) = slot.auth {
                guard var st = sessions[s.handle] else {
                    throw TPMError(.session, command: code,
                                   reason: "session \(s.handle) is not active (flushed, or not continued by an earlier command)")
                }
                st.nonceCaller = TPMCrypto.random(st.nonceCaller.count)
                states.append(st)
            } else {
                states.append(nil)
            }
        }
        let usesSessions = states.contains { $0 != nil }

        // Attributes for this command: decrypt/encrypt only where the command allows them.
        var attrs: [TPMASession] = states.map { st in
            guard var a = st?.attributes else { return [.continueSession] }
            if !C.decryptable { a.remove(.decrypt) }
            if !C.Response.encryptable { a.remove(.encrypt) }
            return a
        }
        let decryptIndex = attrs.firstIndex { $0.contains(.decrypt) }
        let encryptIndex = attrs.firstIndex { $0.contains(.encrypt) }
        if let d = decryptIndex { for i in attrs.indices where i != d { attrs[i].remove(.decrypt) } }
        if let e = encryptIndex { for i in attrs.indices where i != e { attrs[i].remove(.encrypt) } }

        for (i, slot) in slots.enumerated() where slot.entityIndex == nil && attrs[i].isDisjoint(with: [.decrypt, .encrypt, .audit]) {
            throw TPMError(.session, command: code, reason: "session \(states[i]?.session.handle.description ?? "?") authorizes nothing "
                                                          + "and has no decrypt, encrypt or audit role in \(code) (its first "
                                                          + "parameter\(C.decryptable ? "" : " is not a TPM2B") / first response "
                                                          + "parameter\(C.Response.encryptable ? "" : " is not a TPM2B"))")
        }

        // Names of all handles, when any session needs cpHash.
        var names: [[UInt8]] = []
        if usesSessions {
            for h in handles { names.append(try await name(of: h)) }
        }
        func entity(_ i: Int) -> (name: [UInt8], authValue: [UInt8])? {
            guard let e = slots[i].entityIndex, case .session(_, let auth) = slots[i].auth else { return nil }
            return (names.count > e ? names[e] : handles[e].handleName, auth)
        }

        // Parameter encryption of the first parameter (a TPM2B): its data, not its size.
        if let d = decryptIndex, let st = states[d] {
            guard parameters.count >= 2 else { throw TPMError(.invalidCommand, command: code, reason: "no parameter to encrypt") }
            let size = Int(parameters[0]) << 8 | Int(parameters[1])
            guard parameters.count >= 2 + size else {
                throw TPMError(.invalidCommand, command: code, reason: "first parameter is not a TPM2B")
            }
            let plain = Array(parameters[2..<2 + size])
            let key = st.encryptionKey(entity: entity(d))
            let enc = try st.crypt(plain, key: key, nonceNewer: st.nonceCaller, nonceOlder: st.nonceTPM, encrypt: true)
            parameters.replaceSubrange(2..<2 + size, with: enc)
        }

        // Authorization area.
        var authArea: [TPMSAuthCommand] = []
        for (i, slot) in slots.enumerated() {
            switch slot.auth {
            case .password(let pw):
                authArea.append(TPMSAuthCommand(sessionHandle: .password, nonce: TPM2BNonce(), sessionAttributes: [.continueSession],
                                                hmac: TPM2BAuth(pw)))
            case .session(let s, let authValue):
                let st = states[i]!
                if st.session.type == .policy && st.isPasswordNeeded && slot.entityIndex != nil {
                    authArea.append(TPMSAuthCommand(sessionHandle: s.handle, nonce: TPM2BNonce(st.nonceCaller), sessionAttributes: attrs[i],
                                                    hmac: TPM2BAuth(authValue)))
                    continue
                }
                let cpHash = try tpmCommandParameterHash(s.authHash, code: code, names: names, parameters: parameters)
                // The first session's HMAC covers the nonces of separate decrypt/encrypt sessions.
                var nonceDecrypt: [UInt8] = [], nonceEncrypt: [UInt8] = []
                if i == 0 {
                    if let d = decryptIndex, d != 0 { nonceDecrypt = states[d]?.nonceTPM ?? [] }
                    if let e = encryptIndex, e != 0, e != decryptIndex { nonceEncrypt = states[e]?.nonceTPM ?? [] }
                }
                let key = st.sessionValue(entity: entity(i))
                let hmac = try st.commandHMAC(key: key, cpHash: cpHash, nonceDecrypt: nonceDecrypt, nonceEncrypt: nonceEncrypt,
                                              attributes: attrs[i])
                authArea.append(TPMSAuthCommand(sessionHandle: s.handle, nonce: TPM2BNonce(st.nonceCaller), sessionAttributes: attrs[i],
                                                hmac: TPM2BAuth(hmac)))
            }
        }

        let packet = TPMCommandPacket(code: code, handles: handles, sessions: authArea, parameters: parameters)
        let bytes: [UInt8]
        do { bytes = try packet.encode() } catch {
            throw TPMError(.invalidCommand, command: code, wire: error, reason: "the command cannot be framed")
        }
        var response: TPMResponsePacket
        var attempt = 0
        while true {
            let responseBytes = try await transport.send(bytes)
            do {
                response = try TPMResponsePacket.decode(responseBytes, handleCount: C.Response.handleCount, sessionCount: authArea.count)
            } catch {
                throw TPMError(.malformedResponse, command: code, wire: error, reason: "the response does not parse")
            }
            // The TPM did not start the command (Part 2, TPM_RC_RETRY/YIELDED/TESTING): send the
            // same bytes again; no session state has moved.
            let base = response.responseCode.base
            guard base == .retry || base == .yielded || base == .testing, attempt < retryLimit else { break }
            attempt += 1
            try? await Task.sleep(for: .milliseconds(min(100, 1 << attempt)))
        }
        guard response.responseCode.isSuccess else {
            throw TPMError(.tpm, command: code, responseCode: response.responseCode, reason: response.responseCode.decoded)
        }

        // Verify each session's response HMAC and roll its nonces.
        var responseParameters = response.parameters
        for (i, slot) in slots.enumerated() {
            guard case .session(let s, _) = slot.auth, var st = states[i] else { continue }
            let r = response.sessions[i]
            st.nonceTPM = r.nonce.bytes
            let passwordOnly = st.session.type == .policy && st.isPasswordNeeded && slot.entityIndex != nil
            if !passwordOnly {
                let rpHash = try tpmResponseParameterHash(s.authHash, code: code, parameters: responseParameters)
                var after = entity(i)
                if let newAuth = authValuesAfter[i], after != nil { after!.authValue = newAuth }
                let expected = try st.responseHMAC(key: st.sessionValue(entity: after), rpHash: rpHash, attributes: r.sessionAttributes)
                guard constantTimeEqual(expected, r.hmac.bytes) else {
                    throw TPMError(.integrity, command: code, reason: "the response HMAC of session \(s.handle) does not verify: the "
                                                                    + "response was altered or the authValue is wrong")
                }
            }
            states[i] = st
        }
        if let e = encryptIndex, let st = states[e] {
            guard responseParameters.count >= 2 else {
                throw TPMError(.malformedResponse, command: code, reason: "no response parameter to decrypt")
            }
            let size = Int(responseParameters[0]) << 8 | Int(responseParameters[1])
            guard responseParameters.count >= 2 + size else {
                throw TPMError(.malformedResponse, command: code, reason: "first response parameter is not a TPM2B")
            }
            let plain = try st.crypt(Array(responseParameters[2..<2 + size]), key: st.encryptionKey(entity: entity(e)),
                                     nonceNewer: st.nonceTPM, nonceOlder: st.nonceCaller, encrypt: false)
            responseParameters.replaceSubrange(2..<2 + size, with: plain)
        }
        for (i, st) in states.enumerated() {
            guard let st else { continue }
            if attrs[i].contains(.continueSession) { sessions[st.session.handle] = st } else { sessions[st.session.handle] = nil }
        }

        let typed: C.Response
        do {
            typed = try C.Response(handles: response.handles, parameters: responseParameters)
        } catch {
            throw TPMError(.malformedResponse, command: code, wire: error, reason: "the response parameters do not parse")
        }
        return typed
    }

    /// The Name of a handle: its own value for PCRs, permanent handles and sessions; the
    /// digest Name for objects (cached, else ReadPublic) and NV indices (always read afresh:
    /// it changes when the index is first written).
    public func name(of handle: TPMHandle) async throws(TPMError) -> [UInt8] {
        switch handle.type {
        case .transient, .persistent:
            if let n = objectNames[handle] { return n }
            var cmd = TPM2ReadPublic()
            cmd.objectHandle = handle
            let r = try await execute(cmd)
            objectNames[handle] = r.name.bytes
            return r.name.bytes
        case .nvIndex:
            var cmd = TPM2NVReadPublic()
            cmd.nvIndex = handle
            return try await execute(cmd).nvName.bytes
        default:
            return handle.handleName
        }
    }

    func remember(_ handle: TPMHandle, name: [UInt8]) { objectNames[handle] = name }
    func forget(_ handle: TPMHandle) {
        objectNames[handle] = nil
        sessions[handle] = nil
    }
    func addSession(_ state: TPMSessionState) { sessions[state.session.handle] = state }
    func updateSession(_ handle: TPMHandle, _ body: (inout TPMSessionState) -> Void) {
        if var st = sessions[handle] {
            body(&st)
            sessions[handle] = st
        }
    }
}

/// One session of a command's authorization area: how it authorizes, and which handle (if any).
struct AuthSlot {
    var auth: TPMAuth
    var entityIndex: Int?
}

/// Byte equality in time independent of where the bytes differ (nonces, secrets, MACs).
public func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for i in a.indices { diff |= a[i] ^ b[i] }
    return diff == 0
}
