import TPM2

/// One implemented command: what its handles must be, how they are authorized, and the body.
struct CommandEntry: Sendable {
    let code: TPMCC
    let handleCount: Int
    let authHandleCount: Int
    let handleKinds: [HandleKind]
    let roles: [AuthRole]
    let decryptable: Bool
    let encryptable: Bool
    let allowsSessions: Bool
    let responseHandle: Bool
    /// TPMA_CC for TPM_CAP_COMMANDS.
    let attributes: TPMACC
    let run: @Sendable (inout EngineCore, [TPMHandle], [UInt8], CommandContext,
                        (inout EngineCore) throws(TPMRC) -> Void) throws(TPMRC) -> (handles: [TPMHandle], parameters: [UInt8])

    static func make<C: TPMCommand>(
        _: C.Type, kinds: [HandleKind] = [], roles: [AuthRole] = [], sessions: Bool = true,
        nv: Bool = false, extensive: Bool = false, flushed: Bool = false,
        _ body: @escaping @Sendable (inout EngineCore, C, CommandContext) throws(TPMRC) -> C.Response
    ) -> CommandEntry {
        precondition(kinds.count == C.handleCount && roles.count == C.authHandleCount, "table entry for \(C.code)")
        var attrs = TPMACC(rawValue: C.code.rawValue & 0xFFFF | UInt32(C.handleCount) << 25)
        if nv { attrs.insert(.nv) }
        if extensive { attrs.insert(.extensive) }
        if flushed { attrs.insert(.flushed) }
        if C.Response.handleCount > 0 { attrs.insert(.rHandle) }
        // The names of the top-level parameters, to number the parameter a decoding error is in.
        var recorder = TPMFieldNames()
        var blank = C()
        try? blank.parameters(&recorder)
        let fieldNames = recorder.names
        return CommandEntry(
            code: C.code, handleCount: C.handleCount, authHandleCount: C.authHandleCount, handleKinds: kinds, roles: roles,
            decryptable: C.decryptable, encryptable: C.Response.encryptable, allowsSessions: sessions,
            responseHandle: C.Response.handleCount > 0, attributes: attrs
        ) { (core: inout EngineCore, handles: [TPMHandle], params: [UInt8], ctx: CommandContext,
             authorize: (inout EngineCore) throws(TPMRC) -> Void) throws(TPMRC) in
            let command: C
            do throws(TPMWireError) {
                command = try C(handles: handles, parameters: params)
            } catch {
                let base = responseCode(for: error)
                if let field = error.outerField, let i = fieldNames.firstIndex(of: field) {
                    throw base.with(.parameter(i + 1))
                }
                throw base
            }
            try authorize(&core)
            let response = try body(&core, command, ctx)
            do {
                return (response.handleValues, try response.parameterBytes())
            } catch {
                throw TPMRC.failure
            }
        }
    }
}

enum CommandTable {
    static let hierarchies: [TPMHandle] = [.owner, .endorsement, .platform, .null]

    static let entries: [TPMCC: CommandEntry] = {
        let list: [CommandEntry] = [
            .make(TPM2Startup.self, sessions: false) { c, cmd, _ throws(TPMRC) in try c.startup(cmd) },
            .make(TPM2Shutdown.self, sessions: false) { c, cmd, _ throws(TPMRC) in try c.shutdown(cmd) },
            .make(TPM2SelfTest.self) { _, _, _ throws(TPMRC) in TPMEmptyResponse() },
            .make(TPM2GetCapability.self) { c, cmd, _ throws(TPMRC) in try c.getCapability(cmd) },
            .make(TPM2GetRandom.self) { c, cmd, _ throws(TPMRC) in c.getRandom(cmd) },
            .make(TPM2StirRandom.self) { _, _, _ throws(TPMRC) in TPMEmptyResponse() },
            .make(TPM2ReadClock.self) { c, _, _ throws(TPMRC) in
                var r = TPM2ReadClock.Response()
                r.currentTime = TPMSTimeInfo(time: c.timeMilliseconds, clockInfo: c.clockInfo)
                return r
            },
            .make(TPM2TestParms.self) { c, cmd, _ throws(TPMRC) in try c.testParms(cmd) },
            .make(TPM2Hash.self) { c, cmd, _ throws(TPMRC) in try c.hash(cmd) },
            .make(TPM2PCRRead.self) { c, cmd, _ throws(TPMRC) in try c.pcrRead(cmd) },
            .make(TPM2PCRExtend.self, kinds: [.pcr], roles: [.user]) { c, cmd, ctx throws(TPMRC) in try c.pcrExtend(cmd, ctx) },
            .make(TPM2PCREvent.self, kinds: [.pcr], roles: [.user]) { c, cmd, ctx throws(TPMRC) in try c.pcrEvent(cmd, ctx) },
            .make(TPM2PCRReset.self, kinds: [.pcr], roles: [.user]) { c, cmd, ctx throws(TPMRC) in try c.pcrReset(cmd, ctx) },
            .make(TPM2CreatePrimary.self, kinds: [.permanent(hierarchies)], roles: [.user]) { c, cmd, _ throws(TPMRC) in
                try c.createPrimary(cmd)
            },
            .make(TPM2Create.self, kinds: [.object], roles: [.user]) { c, cmd, _ throws(TPMRC) in try c.create(cmd) },
            .make(TPM2Load.self, kinds: [.object], roles: [.user]) { c, cmd, _ throws(TPMRC) in try c.load(cmd) },
            .make(TPM2LoadExternal.self) { c, cmd, _ throws(TPMRC) in try c.loadExternal(cmd) },
            .make(TPM2ReadPublic.self, kinds: [.object]) { c, cmd, _ throws(TPMRC) in try c.readPublic(cmd) },
            .make(TPM2ObjectChangeAuth.self, kinds: [.object, .object], roles: [.admin]) { c, cmd, _ throws(TPMRC) in
                try c.objectChangeAuth(cmd)
            },
            .make(TPM2Unseal.self, kinds: [.object], roles: [.user]) { c, cmd, _ throws(TPMRC) in try c.unseal(cmd) },
            .make(TPM2MakeCredential.self, kinds: [.object]) { c, cmd, _ throws(TPMRC) in try c.makeCredential(cmd) },
            .make(TPM2ActivateCredential.self, kinds: [.object, .object], roles: [.admin, .user]) { c, cmd, _ throws(TPMRC) in
                try c.activateCredential(cmd)
            },
            .make(TPM2FlushContext.self, sessions: false) { c, cmd, _ throws(TPMRC) in try c.flushContext(cmd) },
            .make(TPM2EvictControl.self, kinds: [.permanent([.owner, .platform]), .object], roles: [.user], nv: true) {
                c, cmd, _ throws(TPMRC) in try c.evictControl(cmd)
            },
            .make(TPM2ContextSave.self, kinds: [.any], sessions: false) { c, cmd, _ throws(TPMRC) in try c.contextSave(cmd) },
            .make(TPM2ContextLoad.self, sessions: false) { c, cmd, _ throws(TPMRC) in try c.contextLoad(cmd) },
            .make(TPM2Sign.self, kinds: [.object], roles: [.user]) { c, cmd, _ throws(TPMRC) in try c.signCommand(cmd) },
            .make(TPM2VerifySignature.self, kinds: [.object]) { c, cmd, _ throws(TPMRC) in try c.verifySignature(cmd) },
            .make(TPM2Quote.self, kinds: [.object], roles: [.user]) { c, cmd, _ throws(TPMRC) in try c.quote(cmd) },
            .make(TPM2Certify.self, kinds: [.object, .object], roles: [.admin, .user]) { c, cmd, _ throws(TPMRC) in try c.certify(cmd) },
            .make(TPM2StartAuthSession.self, kinds: [.objectOrNull, .entityOrNull]) { c, cmd, _ throws(TPMRC) in try c.startAuthSession(cmd)
            },
            .make(TPM2PolicyRestart.self, kinds: [.session]) { c, cmd, _ throws(TPMRC) in try c.policyRestart(cmd) },
            .make(TPM2PolicySecret.self, kinds: [.entity, .policySession], roles: [.user]) { c, cmd, ctx throws(TPMRC) in
                try c.policySecret(cmd, ctx)
            },
            .make(TPM2PolicyOR.self, kinds: [.policySession]) { c, cmd, _ throws(TPMRC) in try c.policyOR(cmd) },
            .make(TPM2PolicyPCR.self, kinds: [.policySession]) { c, cmd, _ throws(TPMRC) in try c.policyPCR(cmd) },
            .make(TPM2PolicyCommandCode.self, kinds: [.policySession]) { c, cmd, _ throws(TPMRC) in try c.policyCommandCode(cmd) },
            .make(TPM2PolicyAuthValue.self, kinds: [.policySession]) { c, cmd, _ throws(TPMRC) in
                try c.policyAuthValue(cmd.policySession, password: false)
            },
            .make(TPM2PolicyPassword.self, kinds: [.policySession]) { c, cmd, _ throws(TPMRC) in
                try c.policyAuthValue(cmd.policySession, password: true)
            },
            .make(TPM2PolicyGetDigest.self, kinds: [.policySession]) { c, cmd, _ throws(TPMRC) in try c.policyGetDigest(cmd) },
            .make(TPM2NVDefineSpace.self, kinds: [.permanent([.owner, .platform])], roles: [.user], nv: true) { c, cmd, _ throws(TPMRC) in
                try c.nvDefineSpace(cmd)
            },
            .make(TPM2NVUndefineSpace.self, kinds: [.permanent([.owner, .platform]), .nvIndex], roles: [.user], nv: true) {
                c, cmd, _ throws(TPMRC) in try c.nvUndefineSpace(cmd)
            },
            .make(TPM2NVReadPublic.self, kinds: [.nvIndex]) { c, cmd, _ throws(TPMRC) in try c.nvReadPublic(cmd) },
            .make(TPM2NVWrite.self, kinds: [.nvAuth, .nvIndex], roles: [.nvWrite], nv: true) { c, cmd, _ throws(TPMRC) in try c.nvWrite(cmd)
            },
            .make(TPM2NVRead.self, kinds: [.nvAuth, .nvIndex], roles: [.nvRead]) { c, cmd, _ throws(TPMRC) in try c.nvRead(cmd) },
            .make(TPM2NVIncrement.self, kinds: [.nvAuth, .nvIndex], roles: [.nvWrite], nv: true) { c, cmd, _ throws(TPMRC) in
                try c.nvIncrement(cmd)
            },
            .make(TPM2NVExtend.self, kinds: [.nvAuth, .nvIndex], roles: [.nvWrite], nv: true) { c, cmd, _ throws(TPMRC) in
                try c.nvExtend(cmd)
            },
            .make(TPM2NVSetBits.self, kinds: [.nvAuth, .nvIndex], roles: [.nvWrite], nv: true) { c, cmd, _ throws(TPMRC) in
                try c.nvSetBits(cmd)
            },
            .make(TPM2NVWriteLock.self, kinds: [.nvAuth, .nvIndex], roles: [.nvWrite], nv: true) { c, cmd, _ throws(TPMRC) in
                try c.nvWriteLock(cmd)
            },
            .make(TPM2NVReadLock.self, kinds: [.nvAuth, .nvIndex], roles: [.nvRead]) { c, cmd, _ throws(TPMRC) in try c.nvReadLock(cmd) },
            .make(TPM2HierarchyChangeAuth.self, kinds: [.permanent([.owner, .endorsement, .platform, .lockout])], roles: [.user],
                  nv: true) { c, cmd, _ throws(TPMRC) in try c.hierarchyChangeAuth(cmd) },
            .make(TPM2Clear.self, kinds: [.permanent([.lockout, .platform])], roles: [.user], nv: true) { c, cmd, _ throws(TPMRC) in
                try c.clear(cmd)
            },
            .make(TPM2DictionaryAttackLockReset.self, kinds: [.permanent([.lockout])], roles: [.user], nv: true) { c, _, _ throws(TPMRC) in
                c.state.failedTries = 0
                c.dirty = true
                return TPMEmptyResponse()
            },
            .make(TPM2DictionaryAttackParameters.self, kinds: [.permanent([.lockout])], roles: [.user], nv: true) {
                c, cmd, _ throws(TPMRC) in
                c.state.maxTries = cmd.newMaxTries
                c.state.recoveryTime = cmd.newRecoveryTime
                c.state.lockoutRecovery = cmd.lockoutRecovery
                c.state.failedTries = 0
                c.dirty = true
                return TPMEmptyResponse()
            },
        ]
        return Dictionary(uniqueKeysWithValues: list.map { ($0.code, $0) })
    }()
}
