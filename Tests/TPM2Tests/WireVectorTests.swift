import Foundation
import TPM2
import Testing
import TLaunchTestSupport

/// Known-answer vectors (hex with a comment per field in Vectors/*.hex).
@Suite("wire: known-answer vectors")
struct WireVectorTests {
    @Test func quoteAttest() throws {
        let bytes = try vector("tpms_attest_quote")
        let a = try TPMSAttest(tpmBytes: bytes)
        #expect(a.type == .attestQuote)
        #expect(a.qualifiedSigner.bytes.prefix(2) == [0x00, 0x0B])
        #expect(a.extraData.bytes.hexString == "db1db298db6d60e6385b7231743e9c3056a18003")
        #expect(a.clockInfo == TPMSClockInfo(clock: 5994, resetCount: 0, restartCount: 0, safe: true))
        #expect(a.firmwareVersion == 0x2016_0511_0016_2800)
        guard case .quote(let q) = a.attested else { Issue.record("not a quote"); return }
        #expect(q.pcrSelect.pcrSelections.map(\.hash) == [.sha256])
        #expect(q.pcrSelect.pcrSelections[0].pcrs == [15, 16, 22])
        #expect(q.pcrDigest.bytes.count == 32)
        #expect(try a.tpmBytes() == bytes)
    }

    @Test func ekTemplateIsTheTCGDefault() throws {
        let bytes = try vector("tpmt_public_ek_rsa")
        let p = try TPMTPublic(tpmBytes: bytes)
        #expect(p == TPMTemplates.ekRSA2048)
        #expect(try TPMTemplates.ekRSA2048.tpmBytes() == bytes)
        #expect(p.objectAttributes.rawValue == 0x0003_00B2)
    }

    @Test func eccAttestationKey() throws {
        let bytes = try vector("tpmt_public_ak_ecc")
        let p = try TPMTPublic(tpmBytes: bytes)
        #expect(p.type == .ecc)
        guard case .ecc(let parms) = p.parameters else { Issue.record("not ECC"); return }
        #expect(parms.scheme == .ecdsa(.sha256))
        #expect(parms.curveID == .nistP256)
        #expect(parms.symmetric == .null)
        #expect(p.eccComponents?.x.count == 32)
        #expect(try p.tpmBytes() == bytes)
        // The point is on the curve: it has a PEM form.
        #expect(try p.publicKeyPEM().hasPrefix("-----BEGIN PUBLIC KEY-----"))
    }

    @Test func ecdsaSignature() throws {
        let bytes = try vector("tpmt_signature_ecdsa")
        let s = try TPMTSignature(tpmBytes: bytes)
        guard case .ecdsa(let e) = s else { Issue.record("not ECDSA"); return }
        #expect(e.hash == .sha256)
        #expect(e.signatureR.bytes.first == 1 && e.signatureS.bytes.last == 0x40)
        #expect(try s.tpmBytes() == bytes)
    }

    @Test func capabilityData() throws {
        let props = try TPMSCapabilityData(tpmBytes: try vector("tpms_capability_data_properties"))
        guard case .tpmProperties(let list) = props.data else { Issue.record("wrong capability"); return }
        #expect(list.map(\.property) == [.familyIndicator, .manufacturer, .pcrCount])
        #expect(list[2].value == 24)
        let pcrs = try TPMSCapabilityData(tpmBytes: try vector("tpms_capability_data_pcrs"))
        guard case .assignedPCR(let sel) = pcrs.data else { Issue.record("wrong capability"); return }
        #expect(sel.pcrSelections.map(\.hash) == [.sha1, .sha256])
        #expect(sel.pcrSelections[1].pcrs == Array(0..<24))
    }

    @Test func nvPublicContextCreationData() throws {
        let nv = try TPMSNVPublic(tpmBytes: try vector("tpms_nv_public"))
        #expect(nv.nvIndex == TPMHandle(0x01C0_0002))
        #expect(nv.dataSize == 1024)
        #expect(nv.attributes.indexType == .ordinary)
        let ctx = try TPMSContext(tpmBytes: try vector("tpms_context"))
        #expect(ctx.savedHandle == TPMHandle(0x8000_0000) && ctx.hierarchy == .owner && ctx.contextBlob.bytes == [0xDE, 0xAD, 0xBE, 0xEF])
        let cd = try TPMSCreationData(tpmBytes: try vector("tpms_creation_data"))
        #expect(cd.locality == .zero)
        #expect(cd.parentName.bytes == TPMHandle.owner.handleName)
    }

    @Test func commandAndResponseFraming() throws {
        // TPM2_GetRandom(8): tag NO_SESSIONS, size 12, TPM_CC_GetRandom, bytesRequested 8.
        var c = TPM2GetRandom()
        c.bytesRequested = 8
        let packet = TPMCommandPacket(code: TPM2GetRandom.code, handles: [], sessions: [], parameters: try c.parameterBytes())
        #expect(try packet.encode() == [UInt8](hex: "8001 0000000c 0000017b 0008"))
        // Its response: tag, size 20, success, TPM2B_DIGEST of 8 bytes.
        let resp = [UInt8](hex: "8001 00000014 00000000 0008 0102030405060708")!
        let r = try TPMResponsePacket.decode(resp, handleCount: 0, sessionCount: 0)
        let typed = try TPM2GetRandom.Response(handles: r.handles, parameters: r.parameters)
        #expect(typed.randomBytes.bytes == [1, 2, 3, 4, 5, 6, 7, 8])
        // An error response is the header alone.
        let err = try TPMResponsePacket.decode([UInt8](hex: "8001 0000000a 000001d5")!, handleCount: 0, sessionCount: 0)
        #expect(err.responseCode.base == .size && err.responseCode.subject == .parameter(1))
        // A command with a password session, as tpm2-tools frames PCR_Reset(16).
        let reset = TPMCommandPacket(code: .pcrReset, handles: [.pcr(16)], sessions: [TPMSAuthCommand(sessionHandle: .password)],
                                     parameters: [])
        #expect(try reset.encode() == [UInt8](hex: "8002 0000001b 0000013d 00000010 00000009 40000009 0000 00 0000")!)
        let back = try TPMCommandPacket.decode(try reset.encode()) { $0 == .pcrReset ? 1 : nil }
        #expect(back == reset)
    }

    @Test(.corpus) func realSwtpmQuoteFromSharedTestData() throws {
        // keylime's swtpm quote: TPMS_ATTEST, TPMT_SIGNATURE, the AK's TPM2B_PUBLIC and Name.
        let attest = [UInt8](try Corpus.data("quotes/swtpm_quote_keylime/quote.out"))
        let sig = try TPMTSignature(tpmBytes: [UInt8](try Corpus.data("quotes/swtpm_quote_keylime/quotesig.out")))
        let ak = try TPM2BPublic(tpmBytes: [UInt8](try Corpus.data("quotes/swtpm_quote_keylime/ak.pub"))).content
        let name = [UInt8](try Corpus.data("quotes/swtpm_quote_keylime/ak.name"))
        #expect(try ak.name() == name)
        #expect(sig.sigAlg == .rsassa && sig.hashAlg == .sha256)
        try TPMSignatureVerifier.verify(sig, message: attest, key: ak)
        var altered = attest
        altered[0x30] ^= 1
        #expect(throws: TPMError.self) { try TPMSignatureVerifier.verify(sig, message: altered, key: ak) }
        let parsed = try TPMSAttest(tpmBytes: attest)
        #expect(parsed.qualifiedSigner.bytes.count == 34)
        #expect(try parsed.tpmBytes() == attest)
        let ekPub = try TPM2BPublic(tpmBytes: [UInt8](try Corpus.data("quotes/swtpm_quote_keylime/ek.pub"))).content
        #expect(ekPub.objectAttributes.contains([.restricted, .decrypt]))
    }

    @Test(.corpus) func realAzureQuoteFromSharedTestData() throws {
        // An Azure confidential VM's vTPM quote: PCR digest over all 24 sha256 PCRs, RSASSA-SHA256.
        let attest = [UInt8](try Corpus.data("quotes/azure_cvm_vtpm_quote_azure-cvm-tooling.attest.bin"))
        let rawSig = [UInt8](try Corpus.data("quotes/azure_cvm_vtpm_quote_azure-cvm-tooling.sig.bin"))
        let parsed = try TPMSAttest(tpmBytes: attest)
        #expect(String(decoding: parsed.extraData.bytes, as: UTF8.self) == "challenge")
        guard case .quote(let q) = parsed.attested else { Issue.record("not a quote"); return }
        #expect(q.pcrSelect.pcrSelections.first?.pcrs == Array(0..<24))
        let json =
            try JSONSerialization.jsonObject(with: try Corpus.data("quotes/azure_cvm_vtpm_quote_azure-cvm-tooling.pcrs.json"))
            as! [String: Any]
        let pcrs = (json["pcrs"] as! [String: Any])["sha256"] as! [String: String]
        let bank = TPMPCRBank(hashAlg: .sha256,
                              values: Dictionary(uniqueKeysWithValues: pcrs.map { (Int($0.key)!, [UInt8](hex: $0.value)!) }))
        let pem = String(decoding: try Corpus.data("quotes/azure_cvm_vtpm_akpub_azure-cvm-tooling.pem"), as: UTF8.self)
        let ak = try TPMTPublic.fromRSAPublicKeyPEM(pem)
        let verified = try TPMQuoteVerifier.verify(TPMSignedAttest(attestBytes: attest, attest: parsed,
                                                                   signature: .rsassa(TPMSSignatureRSA(hash: .sha256, sig: rawSig))),
                                                   akPublic: ak, nonce: Array("challenge".utf8), pcrs: [bank])
        #expect(verified.pcrs[0].values.count == 24)
    }
}
