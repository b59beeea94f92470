import Foundation
import TPM2
import Testing
import VirtualTPM

@Suite("vTPM engine: smoke")
struct EngineSmokeTests {
    @Test func basics() async throws {
        let tpm = TPMClient(transport: InProcessTransport(VirtualTPM.ephemeral()))
        #expect(try await tpm.getRandom(32).count == 32)
        let props = try await tpm.tpmProperties()
        #expect(props[.pcrCount] == 24)
        _ = try await tpm.pcrEvent(16, data: [1, 2, 3])
        let v = try await tpm.pcrRead(TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: [16])]))
        #expect(v[0].values[16]!.count == 32)
        let c = ContinuousClock()
        var t = c.now
        let ek = try await tpm.createEK(.eccP256)
        print("ECC EK", c.now - t); t = c.now
        let ek2 = try await tpm.createEK(.eccP256)
        #expect(ek.name == ek2.name)
        try await tpm.flushContext(ek2.handle)
        let rsa = try await tpm.createEK(.rsa2048)
        print("RSA EK (derive)", c.now - t); t = c.now
        try await tpm.flushContext(rsa.handle)
        let rsa2 = try await tpm.createEK(.rsa2048)
        print("RSA EK (cached)", c.now - t); t = c.now
        #expect(rsa.name == rsa2.name)
        try await tpm.flushContext(rsa2.handle)
        let ak = try await tpm.createAK(ek: ek, template: TPMTemplates.akECCP256)
        let nonce = TPMCrypto.random(16)
        let sel = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: [0, 16])])
        let q = try await tpm.quote(ak.object.handle, qualifyingData: nonce, pcrs: sel)
        _ = try TPMQuoteVerifier.verify(q, akPublic: ak.publicArea, nonce: nonce, pcrs: try await tpm.pcrRead(sel))
    }
}
