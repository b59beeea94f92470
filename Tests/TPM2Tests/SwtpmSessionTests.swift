import Foundation
import TPM2
import Testing
import TLaunchTestSupport

@Suite("swtpm: sessions and policies")
struct SwtpmSessionTests {
    @Test(arguments: TPMKind.allCases)
    func sealUnderPCRPolicyAndRefuseAfterChange(kind: TPMKind) async throws {
        try await withTPM(kind) { tpm in
            let srk = try await tpm.createPrimary(.owner, template: TPMTemplates.storageECCP256).object
            let sel = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: [16])])
            try await tpm.pcrReset(16)
            _ = try await tpm.pcrEvent(16, data: Array("boot".utf8))
            let current = try await tpm.pcrRead(sel)[0].values[16]!
            var policy = try TPMPolicyDigest()
            try policy.policyPCR(sel, values: [current])

            let secret = Array("disk key".utf8)
            let sealed = try await tpm.create(parent: srk.handle, template: TPMTemplates.sealedObject(authPolicy: policy.digest),
                                              sensitive: TPMSSensitiveCreate(data: secret))
            let item = try await tpm.load(parent: srk.handle, privateBlob: sealed.privateBlob, publicArea: sealed.publicArea)

            let s = try await tpm.startAuthSession(type: .policy)
            try await tpm.policyPCR(s, pcrs: sel)
            #expect(try await tpm.policyGetDigest(s) == policy.digest)
            #expect(try await tpm.unseal(item.handle, auth: .session(s)) == secret)

            _ = try await tpm.pcrEvent(16, data: Array("tampered".utf8))
            try await tpm.policyRestart(s)
            try await tpm.policyPCR(s, pcrs: sel)
            let e = await #expect(throws: TPMError.self) { _ = try await tpm.unseal(item.handle, auth: .session(s)) }
            #expect(e?.responseCode?.base == .policyFail)
            #expect(e?.responseCode?.subject == .session(1))
        }
    }

    @Test(arguments: TPMKind.allCases)
    func trialSessionsMatchOfflinePolicyAlgebra(kind: TPMKind) async throws {
        try await withTPM(kind) { tpm in
            func trial(_ steps: (TPMSession) async throws -> Void) async throws -> [UInt8] {
                let s = try await tpm.startAuthSession(type: .trial, attributes: [])
                try await steps(s)
                let d = try await tpm.policyGetDigest(s)
                try await tpm.flush(s)
                return d
            }
            var a = try TPMPolicyDigest()
            try a.policyAuthValue()
            #expect(try await trial { try await tpm.policyAuthValue($0) } == a.digest)

            var p = try TPMPolicyDigest()
            try p.policyPassword()
            #expect(try await trial { try await tpm.policyPassword($0) } == p.digest)
            #expect(p.digest == a.digest)

            var cc = try TPMPolicyDigest()
            try cc.policyCommandCode(.unseal)
            #expect(try await trial { try await tpm.policyCommandCode($0, .unseal) } == cc.digest)

            var sec = try TPMPolicyDigest()
            try sec.policySecret(authObjectName: TPMHandle.endorsement.handleName)
            #expect(sec.digest == TPMTemplates.ekPolicy)
            #expect(try await trial { _ = try await tpm.policySecret($0, authHandle: .endorsement) } == sec.digest)

            var or = try TPMPolicyDigest()
            try or.policyOR([a.digest, cc.digest])
            #expect(try await trial { try await tpm.policyOR($0, branches: [a.digest, cc.digest]) } == or.digest)
        }
    }

    @Test(arguments: TPMKind.allCases)
    func policyORWithPasswordAndAuthValueBranches(kind: TPMKind) async throws {
        try await withTPM(kind) { tpm in
            let srk = try await tpm.createPrimary(.owner, template: TPMTemplates.storageECCP256).object
            var pw = try TPMPolicyDigest(); try pw.policyPassword()
            var cc = try TPMPolicyDigest(); try cc.policyCommandCode(.unseal); try cc.policyAuthValue()
            var or = try TPMPolicyDigest(); try or.policyOR([pw.digest, cc.digest])
            let secret = Array("sealed".utf8)
            let auth = Array("item-password".utf8)
            let blob = try await tpm.create(parent: srk.handle, template: TPMTemplates.sealedObject(authPolicy: or.digest),
                                            sensitive: TPMSSensitiveCreate(userAuth: auth, data: secret))
            let item = try await tpm.load(parent: srk.handle, privateBlob: blob.privateBlob, publicArea: blob.publicArea)

            // Branch 1: PolicyPassword — the password travels in clear in the hmac field.
            let s1 = try await tpm.startAuthSession(type: .policy)
            try await tpm.policyPassword(s1)
            try await tpm.policyOR(s1, branches: [pw.digest, cc.digest])
            #expect(try await tpm.unseal(item.handle, auth: .session(s1, authValue: auth)) == secret)
            // Branch 2: PolicyCommandCode + PolicyAuthValue — the authValue keys the HMAC.
            let s2 = try await tpm.startAuthSession(type: .policy)
            try await tpm.policyCommandCode(s2, .unseal)
            try await tpm.policyAuthValue(s2)
            try await tpm.policyOR(s2, branches: [pw.digest, cc.digest])
            #expect(try await tpm.unseal(item.handle, auth: .session(s2, authValue: auth)) == secret)
            // Wrong authValue: refused by the TPM.
            try await tpm.policyRestart(s2)
            try await tpm.policyCommandCode(s2, .unseal)
            try await tpm.policyAuthValue(s2)
            try await tpm.policyOR(s2, branches: [pw.digest, cc.digest])
            let e = await #expect(throws: TPMError.self) { _ = try await tpm.unseal(item.handle,
                                                                                    auth: .session(s2, authValue: Array("wrong".utf8))) }
            #expect(e?.responseCode?.base == .authFail)
        }
    }

    @Test(arguments: TPMKind.allCases, [TPMTSymDef.aes128CFB, .xor(.sha256)])
    func saltedHMACSessionsWithParameterEncryption(kind: TPMKind, symmetric: TPMTSymDef) async throws {
        try await withTPM(kind) { tpm in
            for template in [TPMTemplates.storageRSA2048, TPMTemplates.storageECCP256] {
                let saltKey = try await tpm.createPrimary(.owner, template: template).object
                let s = try await tpm.startAuthSession(type: .hmac, symmetric: symmetric, salt: saltKey,
                                                       attributes: [.continueSession, .decrypt, .encrypt])
                #expect(await tpm.state(of: s)?.sessionKey.count == 32)

                // A response parameter encrypted by the TPM and decrypted here.
                let r = try await tpm.execute(TPM2GetRandom.with(bytes: 32), extraSessions: [s])
                #expect(r.randomBytes.count == 32)

                // NV data encrypted here, decrypted by the TPM, and read back encrypted the other way.
                let index = TPMHandle(0x0150_0010)
                let auth = Array("nv-auth".utf8)
                try await tpm.nvDefineSpace(TPMSNVPublic(nvIndex: index, attributes: [.authWrite, .authRead, .noDA], dataSize: 64),
                                            authValue: auth)
                let data = Array("parameter-encrypted NV content".utf8)
                try await tpm.nvWrite(index, data: data, auth: .session(s, authValue: auth))
                #expect(try await tpm.nvRead(index, size: data.count, auth: .session(s, authValue: auth)) == data)
                // With the password session the same data is read in clear: the encryption was real.
                #expect(try await tpm.nvRead(index, size: data.count, auth: .password(auth)) == data)
                // A wrong authValue in an HMAC session is refused.
                let e = await #expect(throws: TPMError.self) { _ = try await tpm.nvRead(index, size: 4,
                                                                                        auth: .session(s, authValue: Array("nope".utf8))) }
                // noDA index: a failed HMAC is BAD_AUTH, without dictionary-attack consequences.
                #expect(e?.responseCode?.base == .badAuth)
                try await tpm.nvUndefineSpace(index)
                try await tpm.flush(s)
                try await tpm.flushContext(saltKey.handle)
            }
        }
    }

    @Test(arguments: TPMKind.allCases)
    func boundSessionAuthorizesItsEntityAndOthers(kind: TPMKind) async throws {
        try await withTPM(kind) { tpm in
            let a = TPMHandle(0x0150_0020), b = TPMHandle(0x0150_0021)
            let authA = Array("alpha".utf8), authB = Array("beta".utf8)
            try await tpm.nvDefineSpace(TPMSNVPublic(nvIndex: a, attributes: [.authWrite, .authRead, .noDA], dataSize: 8), authValue: authA)
            try await tpm.nvDefineSpace(TPMSNVPublic(nvIndex: b, attributes: [.authWrite, .authRead, .noDA], dataSize: 8), authValue: authB)
            let s = try await tpm.startAuthSession(type: .hmac, symmetric: .aes128CFB, bind: (a, authA),
                                                   attributes: [.continueSession, .decrypt])
            // The bind entity: its authValue is already in the session key.
            try await tpm.nvWrite(a, data: [1, 2, 3, 4], auth: .session(s, authValue: authA))
            // Another entity: its authValue is added to the HMAC key.
            try await tpm.nvWrite(b, data: [5, 6, 7, 8], auth: .session(s, authValue: authB))
            #expect(try await tpm.nvRead(a, size: 4, auth: .password(authA)) == [1, 2, 3, 4])
            #expect(try await tpm.nvRead(b, size: 4, auth: .password(authB)) == [5, 6, 7, 8])
        }
    }

    @Test(arguments: TPMKind.allCases)
    func sessionNotContinuedIsGone(kind: TPMKind) async throws {
        try await withTPM(kind) { tpm in
            // A session that authorizes nothing must encrypt, decrypt or audit (else TPM_RC_ATTRIBUTES).
            let s = try await tpm.startAuthSession(type: .hmac, symmetric: .aes128CFB, attributes: [.encrypt])
            _ = try await tpm.execute(TPM2GetRandom.with(bytes: 8), extraSessions: [s])
            #expect(await tpm.state(of: s) == nil)
            let e = await #expect(throws: TPMError.self) { _ = try await tpm.execute(TPM2GetRandom.with(bytes: 8), extraSessions: [s]) }
            #expect(e?.code == .session)
        }
    }
}

extension TPM2GetRandom {
    static func with(bytes: UInt16) -> TPM2GetRandom {
        var c = TPM2GetRandom()
        c.bytesRequested = bytes
        return c
    }
}
