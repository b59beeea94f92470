import Crypto
import Foundation
import TPM2
import Testing
import TLaunchTestSupport

let sha256All24 = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: 0..<24)])

@Suite("swtpm: keys, quotes, certify, signatures, contexts")
struct SwtpmObjectTests {
    @Test(arguments: TPMKind.allCases, [false, true])
    func quoteVerifiesOfflineAndTamperingIsCaught(kind: TPMKind, ecc: Bool) async throws {
        try await withTPM(kind) { tpm in
            let ek = try await tpm.createEK(ecc ? .eccP256 : .rsa2048)
            let ak = try await tpm.createAK(ek: ek.self, template: ecc ? TPMTemplates.akECCP256 : TPMTemplates.akRSA2048)
            #expect(ak.publicArea.objectAttributes.contains([.restricted, .signEncrypt]))
            _ = try await tpm.pcrEvent(16, data: Array("measured".utf8))
            let nonce = TPMCrypto.random(20)
            let sel = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: [0, 1, 7, 16]), TPMSPCRSelection(hash: .sha1, pcrs: [16])])
            let quote = try await tpm.quote(ak.object.handle, qualifyingData: nonce, pcrs: sel)
            let pcrs = try await tpm.pcrRead(sel)
            let verified = try TPMQuoteVerifier.verify(quote, akPublic: ak.publicArea, nonce: nonce, pcrs: pcrs)
            #expect(verified.pcrs.count == 2)
            #expect(verified.attest.qualifiedSigner.bytes.count == 34)
            #expect(quote.attest.type == .attestQuote)

            // Wrong nonce, altered PCR value, altered signed bytes: each rejected.
            #expect(throws: TPMError.self) { try TPMQuoteVerifier.verify(quote, akPublic: ak.publicArea, nonce: TPMCrypto.random(20),
                                                                         pcrs: pcrs) }
            var forged = pcrs
            forged[0].values[16]![0] ^= 1
            #expect(throws: TPMError.self) { try TPMQuoteVerifier.verify(quote, akPublic: ak.publicArea, nonce: nonce, pcrs: forged) }
            var tampered = quote
            tampered.attestBytes[tampered.attestBytes.count - 1] ^= 1
            let e = #expect(throws: TPMError.self) { try TPMQuoteVerifier.verify(tampered, akPublic: ak.publicArea, nonce: nonce,
                                                                                 pcrs: pcrs) }
            #expect(e?.code == .verification)
        }
    }

    @Test(arguments: TPMKind.allCases)
    func certifyAndSignAndVerifySignatureAndLoadExternal(kind: TPMKind) async throws {
        try await withTPM(kind) { tpm in
            let srk = try await tpm.createPrimary(.owner, template: TPMTemplates.storageECCP256).object
            let keyBlob = try await tpm.create(parent: srk.handle, template: TPMTemplates.signingKey(ecc: true))
            let key = try await tpm.load(parent: srk.handle, privateBlob: keyBlob.privateBlob, publicArea: keyBlob.publicArea)
            #expect(key.name == (try keyBlob.publicArea.name()))

            // Sign a digest; verify offline with swift-crypto and on the TPM.
            let digest = Array(SHA256.hash(data: Array("hello".utf8)))
            let sig = try await tpm.sign(key.handle, digest: digest, scheme: .ecdsa(.sha256))
            try TPMSignatureVerifier.verify(sig, digest: digest, key: keyBlob.publicArea)
            let ticket = try await tpm.verifySignature(key.handle, digest: digest, signature: sig)
            #expect(ticket.tag == .verified)
            var bad = digest
            bad[0] ^= 0xFF
            await #expect(throws: TPMError.self) { _ = try await tpm.verifySignature(key.handle, digest: bad, signature: sig) }

            // The same check through a public key loaded from outside.
            let external = try await tpm.loadExternal(publicArea: keyBlob.publicArea, hierarchy: .owner)
            #expect(external.name == key.name)
            let t2 = try await tpm.verifySignature(external.handle, digest: digest, signature: sig)
            #expect(t2.tag == .verified)
            try await tpm.flushContext(external.handle)

            // Certify the SRK with the signing key.
            let nonce = TPMCrypto.random(16)
            let cert = try await tpm.certify(srk.handle, signingKey: key.handle, qualifyingData: nonce, scheme: .ecdsa(.sha256))
            try TPMSignatureVerifier.verify(cert.signature, message: cert.attestBytes, key: keyBlob.publicArea)
            guard case .certify(let info) = cert.attest.attested else { Issue.record("not a certify attestation"); return }
            #expect(info.name.bytes == srk.name)
            #expect(cert.attest.extraData.bytes == nonce)

            try await tpm.flushContext(key.handle)
            // An RSA key signs with RSASSA and RSAPSS.
            var anyScheme = TPMTemplates.signingKey(ecc: false)
            anyScheme.parameters = .rsa(TPMSRSAParms(symmetric: .null, scheme: .null, keyBits: 2048))
            let rsaBlob = try await tpm.create(parent: srk.handle, template: anyScheme)
            let rsa = try await tpm.load(parent: srk.handle, privateBlob: rsaBlob.privateBlob, publicArea: rsaBlob.publicArea)
            for scheme in [TPMTScheme.rsassa(.sha256), .rsapss(.sha256)] {
                let s = try await tpm.sign(rsa.handle, digest: digest, scheme: scheme)
                #expect(s.sigAlg == scheme.scheme)
                try TPMSignatureVerifier.verify(s, digest: digest, key: rsaBlob.publicArea)
                try TPMSignatureVerifier.verify(s, message: Array("hello".utf8), key: rsaBlob.publicArea)
                var broken = s
                if case .rsassa(var x) = broken { x.sig.bytes[5] ^= 1; broken = .rsassa(x) }
                if case .rsapss(var x) = broken { x.sig.bytes[5] ^= 1; broken = .rsapss(x) }
                #expect(throws: TPMError.self) { try TPMSignatureVerifier.verify(broken, digest: digest, key: rsaBlob.publicArea) }
                #expect(throws: TPMError.self) { try TPMSignatureVerifier.verify(broken, message: Array("hello".utf8),
                                                                                 key: rsaBlob.publicArea) }
            }
        }
    }

    @Test(arguments: TPMKind.allCases)
    func contextsPersistenceAndFlush(kind: TPMKind) async throws {
        try await withTPM(kind) { tpm in
            let srk = try await tpm.createPrimary(.owner, template: TPMTemplates.storageRSA2048).object
            // Deterministic primaries: the same template gives the same key.
            let again = try await tpm.createPrimary(.owner, template: TPMTemplates.storageRSA2048).object
            #expect(again.name == srk.name)
            try await tpm.flushContext(again.handle)

            let saved = try await tpm.contextSave(srk.handle)
            try await tpm.flushContext(srk.handle)
            await #expect(throws: TPMError.self) { _ = try await tpm.readPublic(srk.handle) }
            let reloaded = try await tpm.contextLoad(saved)
            let (pub, name, _) = try await tpm.readPublic(reloaded)
            #expect(name == srk.name)
            #expect(pub == srk.publicArea)

            let persistent = TPMHandle(0x8100_0001)
            try await tpm.evictControl(reloaded, persistentHandle: persistent)
            let listed = try await tpm.handles(from: TPMHandle(0x8100_0000))
            #expect(listed.contains(persistent))
            #expect(try await tpm.readPublic(persistent).name == srk.name)
            try await tpm.evictControl(persistent, persistentHandle: persistent)
            #expect(!(try await tpm.handles(from: TPMHandle(0x8100_0000))).contains(persistent))

            // A saved session context comes back too.
            let s = try await tpm.startAuthSession(type: .hmac)
            let sctx = try await tpm.contextSave(s.handle)
            let back = try await tpm.contextLoad(sctx)
            #expect(back == s.handle)
            try await tpm.flush(s)
        }
    }

    @Test(arguments: TPMKind.allCases)
    func credentialMadeHostSideActivatesOnSwtpm(kind: TPMKind) async throws {
        try await withTPM(kind) { tpm in
            for kind in TPMEKKind.allCases {
                let ek = try await tpm.createEK(kind)
                let ak = try await tpm.createAK(ek: ek)
                let secret = TPMCrypto.random(32)
                // Our host-side MakeCredential …
                let (blob, enc) = try TPMCredential.make(credential: secret, objectName: ak.object.name, ekPublic: ek.publicArea)
                let got = try await tpm.activateCredential(ak: ak.object, ek: ek, blob: blob, secret: enc)
                #expect(got == secret, "host-side credential for \(kind)")
                // … and the TPM's own MakeCredential, activated the same way.
                let (blob2, enc2) = try await tpm.makeCredential(ek.handle, credential: secret, objectName: ak.object.name)
                #expect(try await tpm.activateCredential(ak: ak.object, ek: ek, blob: blob2, secret: enc2) == secret)
                // Bound to another name: the TPM refuses (integrity check fails).
                var otherName = ak.object.name
                otherName[otherName.count - 1] ^= 1
                let (blob3, enc3) = try TPMCredential.make(credential: secret, objectName: otherName, ekPublic: ek.publicArea)
                let e = await #expect(throws: TPMError.self) {
                    _ = try await tpm.activateCredential(ak: ak.object, ek: ek, blob: blob3, secret: enc3)
                }
                #expect(e?.responseCode?.base == .integrity)
                try await tpm.flushContext(ak.object.handle)
                try await tpm.flushContext(ek.handle)
            }
        }
    }
}
