import ArgumentParser
import Foundation
import TPM2

/// The main job, for now: start a TPM (swtpm, manufactured with EK certificates) and show the
/// TPM 2.0 library doing what the platform needs from it — identity, PCRs, measurement, an
/// attestation key proven by credential activation, a verified quote, and sealing to PCRs.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the TrustedLaunch story end to end against a TPM it starts itself."
    )

    @Option(help: "Use this TPM instead of starting swtpm (tpm2-tools TCTI syntax).")
    var tcti: String?

    func run() async throws {
        var swtpm: SwtpmProcess?
        let clock = ContinuousClock()
        let tpm: TPMClient
        if let tcti {
            tpm = try TPMClient(tcti: tcti)
            step("Using the TPM at \(tcti)")
        } else {
            step("Starting swtpm (a TPM 2.0 with EK certificates from swtpm's local CA)")
            let started = clock.now
            let sw = try await SwtpmProcess.start(manufacture: true)
            swtpm = sw
            detail("listening at \(sw.tcti) after \(ms(clock.now - started))")
            tpm = try TPMClient(tcti: sw.tcti)
        }
        defer {
            swtpm?.stop()
            swtpm?.removeState()
        }

        step("TPM identity")
        let info = try await tpm.info()
        detail("manufacturer \(info.manufacturer) \"\(info.vendorString)\", firmware \(info.firmwareVersion), TPM \(info.specFamily) rev \(info.specRevision)")
        detail("PCR banks: \(info.pcrBanks.keys.sorted().joined(separator: ", "))")
        for c in info.ekCertificates { detail("EK certificate (\(c.kind), NV \(c.nvIndex)): \(c.subject), issued by \(c.issuer)") }

        step("Measuring into PCR 16 (the debug PCR) as a boot component would")
        try await tpm.pcrReset(16)
        let measured = Array("shimx64.efi grubx64.efi vmlinuz".utf8)
        let digests = try await tpm.pcrEvent(16, data: measured)
        for d in digests { detail("extended with \(d.hashAlg.shortName) \(d.digest.hexString)") }
        let sel = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: [0, 1, 2, 3, 4, 5, 6, 7, 16])])
        let pcrs = try await tpm.pcrRead(sel)
        let expected16 = try TPMCrypto.hash(.sha256, [UInt8](repeating: 0, count: 32), TPMCrypto.hash(.sha256, measured))
        detail("sha256 PCR 16 = \(pcrs[0].values[16]!.hexString) (\(pcrs[0].values[16]! == expected16 ? "matches" : "DOES NOT match") the value computed here)")

        step("Endorsement key and attestation key")
        let ek = try await tpm.createEK(.eccP256)
        detail("EK (ECC P-256, TCG template L-2) name \(ek.name.hexString)")
        let ak = try await tpm.createAK(ek: ek, template: TPMTemplates.akECCP256)
        detail("AK (restricted ECDSA P-256 signing key) name \(ak.object.name.hexString)")

        step("Proving the AK lives in this TPM (MakeCredential here, ActivateCredential in the TPM)")
        let secret = TPMCrypto.random(32)
        let (blob, encSecret) = try TPMCredential.make(credential: secret, objectName: ak.object.name, ekPublic: ek.publicArea)
        let recovered = try await tpm.activateCredential(ak: ak.object, ek: ek, blob: blob, secret: encSecret)
        detail(recovered == secret ? "the TPM recovered the credential: the AK is bound to this EK" : "credential MISMATCH")

        step("Quote over sha256 PCRs 0–7 and 16, verified offline")
        let nonce = TPMCrypto.random(32)
        let started = clock.now
        let quote = try await tpm.quote(ak.object.handle, qualifyingData: nonce, pcrs: sel)
        let quoteTime = clock.now - started
        let verified = try TPMQuoteVerifier.verify(quote, akPublic: ak.publicArea, nonce: nonce, pcrs: pcrs)
        detail("quote (\(quote.attestBytes.count) bytes, \(quote.signature.sigAlg)) took \(ms(quoteTime)); signature, nonce and PCR digest verified")
        detail("clock \(verified.attest.clockInfo.clock) ms, resets \(verified.attest.clockInfo.resetCount), restarts \(verified.attest.clockInfo.restartCount), firmware 0x\(String(verified.attest.firmwareVersion, radix: 16))")
        var forged = pcrs
        forged[0].values[16]![0] ^= 0x01
        do {
            _ = try TPMQuoteVerifier.verify(quote, akPublic: ak.publicArea, nonce: nonce, pcrs: forged)
            detail("a forged PCR value was ACCEPTED — this is a bug")
        } catch {
            detail("a forged PCR 16 value is rejected: \(error.reason)")
        }
        try await tpm.flushContext(ak.object.handle)
        try await tpm.flushContext(ek.handle)

        step("Sealing a secret to PCR 16 (salted, encrypted session)")
        let srk = try await tpm.createPrimary(.owner, template: TPMTemplates.storageECCP256).object
        let pcr16 = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: [16])])
        var policy = try TPMPolicyDigest()
        try policy.policyPCR(pcr16, values: [pcrs[0].values[16]!])
        let diskKey = TPMCrypto.random(32)
        let sealed = try await tpm.create(parent: srk.handle, template: TPMTemplates.sealedObject(authPolicy: policy.digest),
                                          sensitive: TPMSSensitiveCreate(data: diskKey))
        let item = try await tpm.load(parent: srk.handle, privateBlob: sealed.privateBlob, publicArea: sealed.publicArea)
        let session = try await tpm.startAuthSession(type: .policy, symmetric: .aes128CFB, salt: srk, attributes: [.continueSession, .encrypt])
        try await tpm.policyPCR(session, pcrs: pcr16)
        let unsealed = try await tpm.unseal(item.handle, auth: .session(session))
        detail(unsealed == diskKey ? "unsealed while PCR 16 holds the measured value (response encrypted on the wire)" : "unseal returned WRONG data")
        _ = try await tpm.pcrEvent(16, data: Array("an unexpected boot loader".utf8))
        try await tpm.policyRestart(session)
        try await tpm.policyPCR(session, pcrs: pcr16)
        do {
            _ = try await tpm.unseal(item.handle, auth: .session(session))
            detail("unseal after the PCR changed SUCCEEDED — this is a bug")
        } catch {
            detail("after another measurement, unseal is refused: \(error.responseCode?.decoded ?? error.description)")
        }
        await tpm.close()
        step("Done")
    }

    func step(_ s: String) { print("==> \(s)") }
    func detail(_ s: String) { print("    \(s)") }
    func ms(_ d: Duration) -> String {
        let v = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        return String(format: "%.1f ms", v)
    }
}
