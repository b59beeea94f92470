import ArgumentParser
import Foundation
import MeasuredBoot
import TPM2
import VirtualFirmware
import VirtualTPM

/// The main job, for now: start a TPM (swtpm, manufactured with EK certificates) and show the
/// TPM 2.0 library doing what the platform needs from it — identity, PCRs, measurement, an
/// attestation key proven by credential activation, a verified quote, and sealing to PCRs.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the TPM 2.0 story (identity, measured boot, AK, quote, sealing) against a TPM it starts itself."
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
        detail("manufacturer \(info.manufacturer) \"\(info.vendorString)\", firmware \(info.firmwareVersion), TPM \(info.specFamily) rev "
             + "\(info.specRevision)")
        detail("PCR banks: \(info.pcrBanks.keys.sorted().joined(separator: ", "))")
        for c in info.ekCertificates { detail("EK certificate (\(c.kind), NV \(c.nvIndex)): \(c.subject), issued by \(c.issuer)") }

        try await measuredBoot(tpm)

        step("Measuring into PCR 16 (the debug PCR) as a boot component would")
        try await tpm.pcrReset(16)
        let measured = Array("shimx64.efi grubx64.efi vmlinuz".utf8)
        let digests = try await tpm.pcrEvent(16, data: measured)
        for d in digests { detail("extended with \(d.hashAlg.shortName) \(d.digest.hexString)") }
        let sel = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: [0, 1, 2, 3, 4, 5, 6, 7, 16])])
        let pcrs = try await tpm.pcrRead(sel)
        let expected16 = try TPMCrypto.hash(.sha256, [UInt8](repeating: 0, count: 32), TPMCrypto.hash(.sha256, measured))
        detail("sha256 PCR 16 = \(pcrs[0].values[16]!.hexString) (\(pcrs[0].values[16]! == expected16 ? "matches" : "DOES NOT match") the "
             + "value computed here)")

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
        detail("quote (\(quote.attestBytes.count) bytes, \(quote.signature.sigAlg)) took \(ms(quoteTime)); signature, nonce and PCR "
             + "digest verified")
        detail("clock \(verified.attest.clockInfo.clock) ms, resets \(verified.attest.clockInfo.resetCount), restarts "
             + "\(verified.attest.clockInfo.restartCount), firmware 0x\(String(verified.attest.firmwareVersion, radix: 16))")
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
        let session = try await tpm.startAuthSession(type: .policy, symmetric: .aes128CFB, salt: srk,
                                                     attributes: [.continueSession, .encrypt])
        try await tpm.policyPCR(session, pcrs: pcr16)
        let unsealed = try await tpm.unseal(item.handle, auth: .session(session))
        detail(
            unsealed == diskKey
                ? "unsealed while PCR 16 holds the measured value (response encrypted on the wire)" : "unseal returned WRONG data")
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
        try trustedLaunch()
        step("Done")
    }

    /// Plays the firmware and boot loaders: a boot (Secure Boot on, shim → grub → kernel) is
    /// measured into the TPM and logged; the log is replayed against the TPM's PCRs and explained,
    /// and a log edited afterwards is caught.
    func measuredBoot(_ tpm: TPMClient) async throws {
        step("Measured Boot: firmware, shim, grub and the kernel command line measured into the TPM and logged")
        var b = try EventLogBuilder(banks: [.sha1, .sha256])
        b.measure(pcr: 0, type: .sCRTMVersion, data: utf16le("TrustedLaunch demo firmware") + [0, 0])
        b.measureVariable(pcr: 7, type: .efiVariableDriverConfig, guid: .globalVariable, name: "SecureBoot", data: [1])
        b.measure(pcr: 4, type: .efiAction, data: Array("Calling EFI Application from Boot Option".utf8))
        b.separators()
        b.measure(pcr: 4, type: .efiBootServicesApplication, data: imageLoad("\\EFI\\debian\\shimx64.efi"),
                  measured: Array("shimx64.efi".utf8))
        b.measure(pcr: 4, type: .efiBootServicesApplication, data: imageLoad("\\EFI\\debian\\grubx64.efi"),
                  measured: Array("grubx64.efi".utf8))
        let cmdline = "/boot/vmlinuz root=/dev/vda2 ro quiet"
        b.measure(pcr: 8, type: .ipl, data: Array("kernel_cmdline: \(cmdline)".utf8) + [0], measured: Array(cmdline.utf8))
        for e in b.log.events where e.type != .noAction {
            try await tpm.pcrExtend(Int(e.pcrIndex), digests: e.digests.map { TPMTHA(hashAlg: $0.algorithm, digest: Array($0.digest)) })
        }
        let logBytes = try b.encoded()
        let log = try EventLog(parsing: logBytes)
        detail("\(log.events.count) events, \(logBytes.count) bytes, banks sha1 + sha256")
        let selection = TPMLPCRSelection([TPMSPCRSelection(hash: .sha1, pcrs: [0, 4, 7, 8]),
                                          TPMSPCRSelection(hash: .sha256, pcrs: [0, 4, 7, 8])])
        let tpmPCRs = PCRValues(try await tpm.pcrRead(selection))
        let report = log.replay(against: tpmPCRs)
        detail("replay against the TPM's PCRs 0, 4, 7, 8: \(report.allMatch ? "all \(report.comparisons.count) match" : "MISMATCH")")
        let facts = report.verified.explain()
        let chain = facts.bootChain.compactMap(\.filePath).joined(separator: " → ")
        detail("Secure Boot \(facts.secureBoot.enabled == true ? "enabled" : "not enabled"); boot chain: \(chain); "
             + "kernel command line: \(facts.kernelCommandLine ?? "-")")

        // Someone edits the log afterwards to hide a boot with Secure Boot off.
        var edited = log
        let sb = edited.events.firstIndex { $0.type == .efiVariableDriverConfig }!
        edited.events[sb].data = UEFIVariableData(vendorGUID: .globalVariable, name: "SecureBoot", data: [0]).encoded[...]
        let editedFacts = edited.replay(against: tpmPCRs).verified.explain()
        detail("a log edited to say SecureBoot=0 still replays (the digest is unchanged), but: "
             + "\(editedFacts.anomalies.first?.message ?? "NOT caught — a bug")")
        detail("and the edited claim is not among the facts: Secure Boot "
             + "\(editedFacts.secureBoot.enabled.map { $0 ? "enabled" : "disabled" } ?? "unknown")")
    }

    /// The trusted launch itself: the virtual firmware boots the sample-linux image (shim → grub →
    /// kernel signed with the platform's keys) into a new vTPM with Secure Boot enforced; the
    /// PCRs predicted before the boot are the vTPM's after it; a kernel that is not signed by a
    /// trusted key is refused, as a real VM fails to boot.
    func trustedLaunch() throws {
        step("Trusted launch: the virtual firmware boots sample-linux into a new vTPM (Secure Boot, Measured Boot)")
        let keyDir = URL(fileURLWithPath: NSHomeDirectory()).appendingPathComponent(".tlaunch/secureboot")
        let keys = try PlatformKeys.loadOrCreate(directory: keyDir)
        let (esp, vars) = try SampleImages.sampleLinux(keys: keys)
        let firmware = VirtualFirmware(settings: FirmwareSettings(variables: vars))
        let predicted = try firmware.predict(esp: esp)
        let vtpm = VirtualTPM.ephemeral()
        let report = try firmware.launch(esp: esp, tpm: vtpm)
        for s in report.stages {
            detail("\(s.kind.rawValue) \(s.path): verified by \(s.verifiedBy ?? "-") (\(s.authority ?? "-"))")
        }
        detail(
            "launched: \(report.kernel ?? "-") \(report.kernelCommandLine ?? ""); \(report.log.events.count) events measured into the vTPM")
        var read = TPM2PCRRead()
        read.pcrSelectionIn = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: [0, 1, 2, 3, 4, 5, 6, 7])])
        let response = vtpm.handle(try TPMCommandPacket(code: .pcrRead, handles: [], sessions: [],
                                                        parameters: read.parameterBytes()).encode())
        let values = try TPM2PCRRead.Response(
            handles: [], parameters: TPMResponsePacket.decode(response, handleCount: 0, sessionCount: 0).parameters
        ).pcrValues.digests
        let same = zip(0..<8, values).allSatisfy { predicted.pcrs[.sha256, UInt32($0.0)] == $0.1.bytes }
        detail("PCRs 0–7 predicted before the boot \(same ? "equal" : "DIFFER FROM") the vTPM's after it (PCR 7 "
             + "\(hexString(values[7].bytes).prefix(16))…)")
        var files = esp.files
        files["/vmlinuz"]![files["/vmlinuz"]!.count / 3] ^= 1
        let tampered = try firmware.predict(esp: ESP(files: files))
        detail("a modified kernel is refused: \(tampered.failure.map { "\($0.stage): \($0.reason)" } ?? "NOT refused — a bug")")
    }

    /// UEFI_IMAGE_LOAD_EVENT whose device path is just the file path.
    func imageLoad(_ file: String) -> [UInt8] {
        let name = utf16le(file) + [0, 0]
        let nodeLength = name.count + 4
        var path: [UInt8] = [4, 4, UInt8(nodeLength & 0xFF), UInt8(nodeLength >> 8)]
        path += name
        path += [0x7F, 0xFF, 4, 0]
        var out: [UInt8] = []
        let header: [UInt64] = [0x7F00_0000, 0x10_0000, 0, UInt64(path.count)]
        for v in header {
            for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
        }
        return out + path
    }

    func utf16le(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        for u in s.utf16 { out += [UInt8(u & 0xFF), UInt8(u >> 8)] }
        return out
    }

    func step(_ s: String) { print("==> \(s)") }
    func detail(_ s: String) { print("    \(s)") }
    func ms(_ d: Duration) -> String {
        let v = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        return String(format: "%.1f ms", v)
    }
}
