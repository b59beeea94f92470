import AttestationAPI
import Crypto
import _CryptoExtras
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import GuestAgent
import MeasuredBoot
import SecureBoot
import TLaunchTestSupport
import TPM2
import Testing
import VirtualFirmware
import VirtualTPM
import X509
@testable import Attestation

// Attacks on the attestation service, each as a guest with root (or a thief of an agent token)
// would run it: through the HTTP API, against our vTPM and against swtpm. Each asserts the
// refusal and its reason, and that the genuine case still passes. docs/SECURITY.md names them.

/// A guest's TPM, booted by the virtual firmware: our vTPM (the firmware measures into it), or
/// swtpm manufactured by swtpm_setup (the same boot's events extended into it). "Root in the
/// guest" can extend PCRs and write the log the agent sends.
final class AttackedGuest: @unchecked Sendable {
    let kind: TPMKind
    private(set) var client: TPMClient
    var log: [UInt8]
    let keys: PlatformKeys
    private(set) var swtpm: SwtpmProcess?
    private(set) var vtpm: VirtualTPM?
    let stateFile: String
    var secureBoot: Bool
    var commandLine: String

    static let defaultCommandLine = "console=ttyS0 root=/dev/vda2 ro"

    private init(kind: TPMKind, client: TPMClient, keys: PlatformKeys, swtpm: SwtpmProcess?, vtpm: VirtualTPM?, stateFile: String,
                 secureBoot: Bool, commandLine: String) {
        self.kind = kind; self.client = client; self.log = []; self.keys = keys; self.swtpm = swtpm; self.vtpm = vtpm
        self.stateFile = stateFile; self.secureBoot = secureBoot; self.commandLine = commandLine
    }

    /// The CA certificates of swtpm's local CA (created by swtpm_setup on first use).
    static func swtpmCAs() throws -> [Certificate] {
        let dir = "/var/lib/swtpm-localca"
        return try ["swtpm-localca-rootca-cert.pem",
                    "issuercert.pem"].map { try Certificate(pemEncoded: String(contentsOfFile: "\(dir)/\($0)", encoding: .utf8)) }
    }

    /// A platform (SQLite) that trusts our vTPM CA and swtpm's local CA, and a booted guest.
    static func setUp(
        _ kind: TPMKind, secureBoot: Bool = true, commandLine: String = defaultCommandLine
    ) async throws -> (Platform, AttackedGuest)? {
        var first: SwtpmProcess?
        if kind == .swtpm {
            guard let sw = try await Interop.swtpm(manufacture: true) else { return nil }
            first = sw
        }
        let trust = kind == .swtpm ? try swtpmCAs() : []
        guard let p = try await Platform.start(.sqlite, trust: trust) else { return nil }
        let g = try await boot(p, kind, swtpm: first, secureBoot: secureBoot, commandLine: commandLine)
        return (p, g)
    }

    /// Another guest on the platform (its own TPM).
    static func boot(_ p: Platform, _ kind: TPMKind, swtpm: SwtpmProcess? = nil, secureBoot: Bool = true,
                     commandLine: String = defaultCommandLine) async throws -> AttackedGuest {
        let keys = try PlatformKeys.loadOrCreate(directory: p.folder.secureBootKeys)
        let state = p.dir.appendingPathComponent("tpm-\(UUID().uuidString)").path
        let g: AttackedGuest
        switch kind {
        case .vtpm:
            let tpm = try await VirtualTPM.open(stateFile: state, hostKey: [UInt8](repeating: 7, count: 32), authority: p.authority)
            g = AttackedGuest(kind: kind, client: TPMClient(transport: InProcessTransport(tpm)), keys: keys, swtpm: nil, vtpm: tpm,
                              stateFile: state, secureBoot: secureBoot, commandLine: commandLine)
        case .swtpm:
            var sw = swtpm
            if sw == nil { sw = try await SwtpmProcess.start(manufacture: true) }
            let process = try #require(sw)
            g = AttackedGuest(kind: kind, client: try TPMClient(tcti: process.tcti), keys: keys, swtpm: process, vtpm: nil,
                              stateFile: process.stateDirectory.path, secureBoot: secureBoot, commandLine: commandLine)
        }
        try await g.measureBoot()
        return g
    }

    /// The virtual firmware's boot of sample-linux (shim → grub → kernel) with these settings.
    func firmwareLog(secureBoot: Bool, commandLine: String, into tpm: VirtualTPM) throws -> EventLog {
        let (esp, vars) = try SampleImages.sampleLinux(keys: keys, commandLine: commandLine)
        let report = try VirtualFirmware(settings: FirmwareSettings(secureBoot: secureBoot, variables: vars,
                                                                    banks: [.sha1, .sha256])).launch(esp: esp, tpm: tpm)
        return report.log
    }

    private func measureBoot() async throws {
        switch kind {
        case .vtpm:
            log = try firmwareLog(secureBoot: secureBoot, commandLine: commandLine, into: try #require(vtpm)).encoded()
        case .swtpm:
            let boot = try firmwareLog(secureBoot: secureBoot, commandLine: commandLine, into: VirtualTPM.ephemeral())
            for e in boot.events where e.type != .noAction {
                try await client.pcrExtend(Int(e.pcrIndex),
                                           digests: e.digests.map { TPMTHA(hashAlg: $0.algorithm, digest: Array($0.digest)) })
            }
            log = try boot.encoded()
        }
    }

    /// A power cycle and a new boot: a TPM reset (swtpm: the process restarts on its state).
    func reboot() async throws {
        switch kind {
        case .vtpm:
            try #require(vtpm).powerOn()
        case .swtpm:
            await client.close()
            let old = try #require(swtpm)
            old.stop()
            let sw = try await SwtpmProcess.start(stateDirectory: old.stateDirectory)
            swtpm = sw
            client = try TPMClient(tcti: sw.tcti)
        }
        try await measureBoot()
    }

    /// A copy of the TPM's state as it is now (what an attacker keeps to roll back to).
    func snapshot() throws -> URL {
        let copy = URL(fileURLWithPath: stateFile + ".snapshot-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: stateFile), to: copy)
        return copy
    }

    /// Runs the TPM from an old snapshot and boots it: the vTPM state rolled back.
    func rollBack(to snapshot: URL) async throws {
        switch kind {
        case .vtpm:
            let tpm = try await VirtualTPM.open(stateFile: snapshot.path, hostKey: [UInt8](repeating: 7, count: 32), authority: nil)
            vtpm = tpm
            client = TPMClient(transport: InProcessTransport(tpm))
        case .swtpm:
            await client.close()
            swtpm?.stop()
            let sw = try await SwtpmProcess.start(stateDirectory: snapshot)
            swtpm = sw
            client = try TPMClient(tcti: sw.tcti)
        }
        try await measureBoot()
    }

    /// Root in the guest: extends a measurement into a PCR of every bank and appends its event.
    func extend(pcr: UInt32, type: EventType, data: [UInt8], measured: [UInt8]? = nil) async throws {
        var parsed = try EventLog(parsing: log)
        let banks: [TPMAlgID] = [.sha1, .sha256]
        let digests = banks.map { TaggedDigest($0, (EventLogHash.hash($0, measured ?? data) ?? [])[...]) }
        try await client.pcrExtend(Int(pcr), digests: digests.map { TPMTHA(hashAlg: $0.algorithm, digest: Array($0.digest)) })
        parsed.events.append(Event(index: parsed.events.count, pcrIndex: pcr, type: type, digests: digests, data: data))
        log = try parsed.encoded()
    }

    /// Root in the guest: rewrites the log (not the TPM).
    func editLog(_ edit: (inout EventLog) throws -> Void) throws {
        var parsed = try EventLog(parsing: log)
        try edit(&parsed)
        log = try parsed.encoded()
    }

    func agent(_ p: Platform, vm: String, token: String) -> GuestAgent {
        GuestAgent(tpm: client, service: p.client(token), vm: vm, eventLog: log)
    }

    func stop() async {
        await client.close()
        swtpm?.stop()
        swtpm?.removeState()
    }
}

/// Evidence for `nonce` as the guest's agent makes it (quoting what the agent quotes).
extension Platform {
    func nonce(_ vm: String, token: String, audience: String? = nil) async throws -> NonceGrant {
        try await client(token).call("POST", "/v1/vms/\(vm)/nonce", body: audience.map { NonceRequest(audience: $0) }, as: NonceGrant.self,
                                     step: "nonce")
    }

    func post(_ vm: String, _ e: Evidence, token: String) async throws -> AttestationOutcome {
        try await client(token).call("POST", "/v1/vms/\(vm)/attestations", body: e, as: AttestationOutcome.self, step: "attest")
    }

    func putPolicy(_ policy: AttestationPolicy) async throws {
        let (status, body) = try await client(admin).send("PUT", "/v1/policy", json: try JSONEncoder().encode(policy), step: "policy")
        #expect(status == 201, "\(String(decoding: body, as: UTF8.self))")
    }

    /// Sends a request; the status and the error message.
    func status(
        _ method: String, _ path: String, body: (some Encodable)? = Optional<Int>.none, token: String?
    ) async throws -> (Int, String) {
        let (s, data) = try await client(token).send(method, path, json: try body.map { try JSONEncoder().encode($0) }, step: "test")
        let message = (try? JSONSerialization.jsonObject(with: data) as? [String: Any]).flatMap {
            ($0["error"] as? [String: Any])?["message"] as? String
        }
        return (s, message ?? String(decoding: data, as: UTF8.self))
    }
}

extension AttestationOutcome {
    func check(_ name: CheckName) -> Check? { checks.first { $0.name == name } }
    var failures: [Check] { checks.filter { !$0.passed } }
}

@Suite("Attestation soundness: attacks through the API, against our vTPM and swtpm")
struct SoundnessTests {
    // MARK: 1. Enrolment accepts only the key the EK certificate certifies, in the EK template

    @Test(arguments: TPMKind.allCases)
    func enrolmentAcceptsOnlyTheCertifiedEndorsementKey(_ kind: TPMKind) async throws {
        guard let (p, guest) = try await AttackedGuest.setUp(kind) else { return }
        try await withTeardown({ await guest.stop(); await p.stop() }) {
            let vm = vmName()
            let token = try await p.token(.agent, vm: vm)
            // The victim's public EK certificate (anyone who reads the TPM's NV or the VM's records has it).
            let rsaCert = try #require(try await guest.client.readEKCertificate(.rsa2048), "\(kind) has no RSA EK certificate")
            let rsaEK = try await guest.client.createEK(.rsa2048)
            try await guest.client.flushContext(rsaEK.handle)
            // The attacker's AK: a software key dressed as a restricted, fixedTPM signing key.
            let soft = P256.Signing.PrivateKey()
            var softAK = TPMTemplates.akECCP256
            let raw = Array(soft.publicKey.rawRepresentation)
            softAK.unique = .ecc(TPMSECCPoint(x: Array(raw.prefix(32)), y: Array(raw.suffix(32))))

            func enrol(_ ek: TPMTPublic, cert: [UInt8]) async throws -> (Int, String) {
                try await p.status(
                    "POST", "/v1/vms/\(vm)/enrolments",
                    body: EnrolmentRequest(
                        ekPublic: hexString(try ek.tpmBytes()), akPublic: hexString(try softAK.tpmBytes()),
                                                                                        ekCertificate: Data(cert).base64EncodedString()),
                                                                                        token: token)
            }
            func withParameters(_ edit: (inout TPMSRSAParms) -> Void) -> TPMTPublic {
                var ek = rsaEK.publicArea
                if case .rsa(var parms) = ek.parameters { edit(&parms); ek.parameters = .rsa(parms) }
                return ek
            }
            // The class of attack: the certificate's modulus with exponent 1 (encryption becomes the
            // identity, so MakeCredential's seed can be read without the EK's private key); and kin.
            var (s, m) = try await enrol(withParameters { $0.exponent = 1 }, cert: rsaCert)
            #expect(s == 403 && m.contains("exponent"), "\(s) \(m)")
            (s, m) = try await enrol(withParameters { $0.exponent = 3 }, cert: rsaCert)
            #expect(s == 403 && m.contains("exponent"), "\(s) \(m)")
            (s, m) = try await enrol(withParameters { $0.keyBits = 1024 }, cert: rsaCert)
            #expect(s == 403 && m.contains("RSA 2048"), "\(s) \(m)")
            // A key outside the EK template: a signing key, a key usable with a password, another policy.
            var signing = rsaEK.publicArea
            signing.objectAttributes = [.fixedTPM, .fixedParent, .sensitiveDataOrigin, .userWithAuth, .signEncrypt]
            (s, m) = try await enrol(signing, cert: rsaCert)
            #expect(s == 403 && m.contains("TCG EK template"), "\(s) \(m)")
            var policyless = rsaEK.publicArea
            policyless.authPolicy = TPM2BDigest([])
            (s, m) = try await enrol(policyless, cert: rsaCert)
            #expect(s == 403 && m.contains("TCG EK template") && m.contains("authPolicy"), "\(s) \(m)")
            // Another modulus (the attacker's own RSA key) under the victim's certificate.
            var otherModulus = rsaEK.publicArea
            otherModulus.unique = .rsa(
                TPM2BPublicKeyRSA(
                    Array(try _RSA.Signing.PrivateKey(keySize: .bits2048).publicKey.getKeyPrimitives().modulus.drop { $0 == 0 })))
            (s, m) = try await enrol(otherModulus, cert: rsaCert)
            #expect(s == 403 && m.contains("certifies another key"), "\(s) \(m)")
            // ECC: the attacker's point with the victim's ECC certificate (where the TPM has one).
            if let eccCert = try await guest.client.readEKCertificate(.eccP256) {
                var eccEK = TPMTemplates.ekECCP256
                eccEK.unique = softAK.unique
                (s, m) = try await enrol(eccEK, cert: eccCert)
                #expect(s == 403 && m.contains("certifies another key"), "\(s) \(m)")
                // The curve must be the certificate's too.
                (s, m) = try await enrol(TPMTemplates.ekRSA2048, cert: eccCert)
                #expect(s == 403, "\(s) \(m)")
            } else if kind == .vtpm {
                Issue.record("our vTPM provisions an ECC EK certificate")
            }
            // Nothing was enrolled, nothing is pending for the attacker to answer.
            (s, _) = try await p.status("GET", "/v1/vms/\(vm)/enrolment", token: p.admin)
            #expect(s == 404)
            // The genuine TPM enrols and attests.
            let o = try await guest.agent(p, vm: vm, token: token).attest()
            #expect(o.passed, "\(o.failures)")
        }
    }

    // MARK: 2. Facts only from banks the quote covers

    @Test(arguments: TPMKind.allCases)
    func factsComeOnlyFromQuotedBanks(_ kind: TPMKind) async throws {
        guard let (p, guest) = try await AttackedGuest.setUp(kind) else { return }
        try await withTeardown({ await guest.stop(); await p.stop() }) {
            let vm = vmName()
            let token = try await p.token(.agent, vm: vm)
            _ = try await guest.agent(p, vm: vm, token: token).enroll()
            // The relying party allows one boot chain (by Authenticode SHA-256); this VM runs another.
            let allowed = String(repeating: "ab", count: 32)
            // The attack: write the allowed digest into the log's sha256 bank, quote only sha1.
            try guest.editLog { log in
                for i in log.events.indices where log.events[i].pcrIndex == 4 && log.events[i].type == .efiBootServicesApplication {
                    log.events[i].digests = log.events[i].digests.map {
                        $0.algorithm == .sha256 ? TaggedDigest(.sha256, [UInt8](hex: allowed)![...]) : $0
                    }
                }
            }
            var sha1Only = guest.agent(p, vm: vm, token: token)
            sha1Only.banks = [.sha1]
            // Under the default policy the quote must cover sha256.
            try await p.putPolicy(AttestationPolicy(allowedBootDigests: [allowed]))
            var n = try #require([UInt8](hex: try await p.nonce(vm, token: token).nonce))
            var o = try await p.post(vm, try await sha1Only.evidence(nonce: n), token: token)
            #expect(!o.passed && o.failures.first?.name == .coverage && o.failures.first?.reason.contains("sha256") == true,
                    "\(o.failures)")
            #expect(o.token == nil)
            // A policy that settles for sha1: the sha256 facts are then no facts at all.
            try await p.putPolicy(AttestationPolicy(allowedBootDigests: [allowed], requiredBanks: ["sha1"]))
            n = try #require([UInt8](hex: try await p.nonce(vm, token: token).nonce))
            o = try await p.post(vm, try await sha1Only.evidence(nonce: n), token: token)
            #expect(!o.passed && o.check(.bootChain)?.outcome == .unknown, "\(o.failures)")
            #expect(o.check(.replay)?.passed == true)
            // Quoting sha256 too: the lie no longer replays.
            var both = sha1Only
            both.banks = [.sha1, .sha256]
            n = try #require([UInt8](hex: try await p.nonce(vm, token: token).nonce))
            o = try await p.post(vm, try await both.evidence(nonce: n), token: token)
            #expect(!o.passed && o.failures.first?.name == .replay && o.failures.first?.reason.contains("sha256 PCR 4") == true,
                    "\(o.failures)")
        }
    }

    // MARK: 3. Event text that was never verified feeds no fact

    @Test(arguments: TPMKind.allCases)
    func eventTextThatDoesNotHashFeedsNoFact(_ kind: TPMKind) async throws {
        guard let (p, guest) = try await AttackedGuest.setUp(kind,
                                                             commandLine: "console=ttyS0 root=/dev/vda2 ro init=/bin/sh") else { return }
        try await withTeardown({ await guest.stop(); await p.stop() }) {
            let vm = vmName()
            let token = try await p.token(.agent, vm: vm)
            try await p.putPolicy(AttestationPolicy(forbiddenKernelArguments: ["init="]))
            let agent = guest.agent(p, vm: vm, token: token)
            // Honest: the boot says init=/bin/sh, and fails for it.
            var o = try await agent.attest()
            #expect(
                !o.passed && o.check(.kernelCommandLine)?.outcome == .fail
                    && o.check(.kernelCommandLine)?.reason.contains("init=/bin/sh") == true, "\(o.failures)")
            let original = guest.log
            // The attack: benign text in grub's PCR 8 events, digests untouched (the replay still matches).
            try guest.editLog { log in
                for i in log.events.indices where log.events[i].pcrIndex == 8 {
                    let text = String(decoding: log.events[i].data, as: UTF8.self)
                    if text.contains("init=/bin/sh") {
                        log.events[i].data = Array(text.replacingOccurrences(of: " init=/bin/sh", with: "").utf8)[...]
                    }
                }
            }
            o = try await guest.agent(p, vm: vm, token: token).attest()
            #expect(o.check(.replay)?.passed == true)
            #expect(!o.passed && o.check(.kernelCommandLine)?.outcome == .unknown, "\(o.checks)")
            #expect(o.check(.anomalies)?.reason.contains("not the hash of its data") == true)
            #expect(o.facts?.kernelCommandLine == nil && o.token == nil)
            // Relabelling: grub's digest covers the string, not its label; a command line that is not
            // bound to grub's linux command is no command line.
            guest.log = original
            try guest.editLog { log in
                for i in log.events.indices where log.events[i].pcrIndex == 8 {
                    let text = String(decoding: log.events[i].data, as: UTF8.self)
                    if text.hasPrefix("kernel_cmdline: ") {
                        log.events[i].data = Array(("grub_cmd: " + text.dropFirst("kernel_cmdline: ".count)).utf8)[...]
                    }
                }
            }
            o = try await guest.agent(p, vm: vm, token: token).attest()
            #expect(
                !o.passed && o.check(.kernelCommandLine)?.outcome == .unknown
                    && o.check(.anomalies)?.reason.contains("kernel command line is unknown") == true, "\(o.checks)")
            // The same for Secure Boot's variable: a boot with Secure Boot off whose log says on.
            let off = try await AttackedGuest.boot(p, kind, secureBoot: false)
            try await withTeardown({ await off.stop() }) {
                try off.editLog { log in
                    for i in log.events.indices where log.events[i].pcrIndex == 7 {
                        if case .variable(let v) = log.events[i].decoded, v.name == "SecureBoot" {
                            log.events[i].data = UEFIVariableData(vendorGUID: v.vendorGUID, name: v.name, data: [1]).encoded[...]
                        }
                    }
                }
                try await p.putPolicy(AttestationPolicy())
                let vm2 = vmName()
                o = try await off.agent(p, vm: vm2, token: try await p.token(.agent, vm: vm2)).attest()
                #expect(!o.passed && o.check(.secureBoot)?.passed == false && o.facts?.secureBoot != true, "\(o.checks)")
            }
        }
    }

    // MARK: 4. Secure Boot configuration after PCR 7's separator

    @Test(arguments: TPMKind.allCases)
    func secureBootConfigurationAfterTheSeparatorIsRefused(_ kind: TPMKind) async throws {
        guard let (p, guest) = try await AttackedGuest.setUp(kind, secureBoot: false) else { return }
        try await withTeardown({ await guest.stop(); await p.stop() }) {
            let vm = vmName()
            // What a Secure Boot boot measures into PCR 7 (the attacker copies it from any such VM).
            let genuine = try guest.firmwareLog(secureBoot: true, commandLine: AttackedGuest.defaultCommandLine,
                                                into: VirtualTPM.ephemeral())
            let copied = genuine.events.filter {
                $0.pcrIndex == 7
                    && ($0.type == .efiVariableAuthority
                        || ($0.type == .efiVariableDriverConfig
                            && {
                if case .variable(let v) = $0.decoded { return v.name == "SecureBoot" } else { return false } }($0))) }
            #expect(copied.count >= 2)
            // Root in the booted guest extends them after the separator and appends them to the log.
            for e in copied { try await guest.extend(pcr: 7, type: e.type, data: Array(e.data)) }
            let o = try await guest.agent(p, vm: vm, token: try await p.token(.agent, vm: vm)).attest()
            #expect(o.check(.replay)?.passed == true)
            #expect(!o.passed && o.facts?.secureBoot == false, "\(o.checks)")
            #expect(o.check(.secureBoot)?.passed == false && o.check(.anomalies)?.reason.contains("after its separator") == true,
                    "\(o.checks)")
            // Even a policy that tolerates anomalies reads Secure Boot from before the separator.
            try await p.putPolicy(AttestationPolicy(forbidAnomalies: false))
            let again = try await guest.agent(p, vm: vm, token: try await p.token(.agent, vm: vm)).attest()
            #expect(!again.passed && again.check(.secureBoot)?.passed == false, "\(again.checks)")
        }
    }

    // MARK: 5. Missing evidence is never a pass

    @Test(arguments: TPMKind.allCases)
    func missingEvidenceIsNeverAPass(_ kind: TPMKind) async throws {
        guard let (p, guest) = try await AttackedGuest.setUp(kind,
                                                             commandLine: "console=ttyS0 root=/dev/vda2 ro init=/bin/sh") else { return }
        try await withTeardown({ await guest.stop(); await p.stop() }) {
            let vm = vmName()
            let token = try await p.token(.agent, vm: vm)
            try await p.putPolicy(AttestationPolicy(forbiddenKernelArguments: ["init="]))
            var agent = guest.agent(p, vm: vm, token: token)
            _ = try await agent.enroll()
            // A quote that leaves out PCR 8, where grub measured the command line.
            agent.pcrs = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15]
            var n = try #require([UInt8](hex: try await p.nonce(vm, token: token).nonce))
            var o = try await p.post(vm, try await agent.evidence(nonce: n), token: token)
            #expect(!o.passed && o.failures.first?.name == .coverage && o.failures.first?.reason.contains("sha256 PCR 8") == true,
                    "\(o.failures)")
            // The nonce grant says what to quote; the real agent quotes it.
            let grant = try await p.nonce(vm, token: token)
            #expect(grant.quote?.banks == ["sha256"] && grant.quote?.pcrs.contains(8) == true)
            // An IMA allowlist with no IMA log sent: unknown, not a pass.
            try await p.putPolicy(AttestationPolicy(imaAllowlist: ["/usr/bin/true": [String(repeating: "00", count: 32)]]))
            agent.pcrs = Array(0...15)
            n = try #require([UInt8](hex: try await p.nonce(vm, token: token).nonce))
            o = try await p.post(vm, try await agent.evidence(nonce: n), token: token)
            #expect(!o.passed && o.check(.ima)?.outcome == .unknown && o.check(.ima)?.reason.contains("no IMA log") == true, "\(o.checks)")
            // Required PCRs of a policy: quoting fewer fails.
            try await p.putPolicy(AttestationPolicy(requiredPCRs: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14, 15]))
            agent.pcrs = Array(0...14)
            n = try #require([UInt8](hex: try await p.nonce(vm, token: token).nonce))
            o = try await p.post(vm, try await agent.evidence(nonce: n), token: token)
            #expect(o.failures.first?.name == .coverage && o.failures.first?.reason.contains("PCR 15") == true, "\(o.failures)")
        }
    }

    /// A real Linux guest's kernel extends PCR 10 (IMA) with a log of its own: the boot's event
    /// log is not compared there, and PCR 10 proves nothing unless the IMA log replays to it. The
    /// boot's PCRs stay compared, and an event the log does claim for PCR 10 is compared too.
    @Test(arguments: TPMKind.allCases)
    func theKernelsOwnPCRsAreProvedOnlyByTheirOwnLogs(_ kind: TPMKind) async throws {
        guard let (p, guest) = try await AttackedGuest.setUp(kind) else { return }
        try await withTeardown({ await guest.stop(); await p.stop() }) {
            let vm = vmName()
            let token = try await p.token(.agent, vm: vm)
            var agent = guest.agent(p, vm: vm, token: token)
            _ = try await agent.enroll()
            // The kernel (root) extends PCR 10 as IMA does; the TCG log has no PCR 10 event.
            let measured = try TPMCrypto.hash(.sha256, Array("boot_aggregate".utf8))
            try await guest.client.pcrExtend(
                10,
                digests: [TPMTHA(hashAlg: .sha256, digest: measured), TPMTHA(hashAlg: .sha1, digest: try TPMCrypto.hash(.sha1, measured))])
            var n = try #require([UInt8](hex: try await p.nonce(vm, token: token).nonce))
            var o = try await p.post(vm, try await agent.evidence(nonce: n), token: token)
            #expect(o.check(.replay)?.passed == true, "PCR 10 is IMA's, not the boot log's: \(o.checks)")
            #expect(o.check(.imaReplay) == nil, "no IMA log, no claim about PCR 10")
            // An IMA log that is not what was extended: refused.
            agent.imaLogPath = nil
            let fakeIMA = FileManager.default.temporaryDirectory.appendingPathComponent("ima-\(UUID().uuidString)")
            try Data("10 \(String(repeating: "ab", count: 20)) ima-ng sha256:\(String(repeating: "cd", count: 32)) /usr/bin/true\n".utf8)
                .write(to: fakeIMA)
            defer { try? FileManager.default.removeItem(at: fakeIMA) }
            agent.imaLogPath = fakeIMA.path
            n = try #require([UInt8](hex: try await p.nonce(vm, token: token).nonce))
            o = try await p.post(vm, try await agent.evidence(nonce: n), token: token)
            #expect(!o.passed && o.check(.imaReplay)?.passed == false, "\(o.checks)")
            agent.imaLogPath = nil
            // A boot PCR extended outside the log is still a mismatch.
            try await guest.client.pcrExtend(
                4,
                digests: [TPMTHA(hashAlg: .sha256, digest: measured), TPMTHA(hashAlg: .sha1, digest: try TPMCrypto.hash(.sha1, measured))])
            n = try #require([UInt8](hex: try await p.nonce(vm, token: token).nonce))
            o = try await p.post(vm, try await agent.evidence(nonce: n), token: token)
            #expect(!o.passed && o.failures.first?.name == .replay && o.failures.first?.reason.contains("sha256 PCR 4") == true,
                    "\(o.failures)")
        }
    }

    /// The service remembers what a matched replay proved, keyed by the log's bytes and every
    /// value it was compared with. A PCR extended beside an unchanged log — right after the same
    /// log and values passed on the same service — is a new key: replayed, and refused.
    @Test(arguments: TPMKind.allCases)
    func aRememberedBootVouchesForNothingOnceAPCRMoves(_ kind: TPMKind) async throws {
        guard let (p, guest) = try await AttackedGuest.setUp(kind) else { return }
        try await withTeardown({ await guest.stop(); await p.stop() }) {
            let vm = vmName()
            let token = try await p.token(.agent, vm: vm)
            let first = try await guest.agent(p, vm: vm, token: token).attest()
            #expect(first.passed, "\(first.failures)")
            let again = try await guest.agent(p, vm: vm, token: token).attest()
            #expect(again.passed && again.baseline == .matches && again.check(.replay)?.reason == first.check(.replay)?.reason,
                    "\(again.checks)")
            // Root measures something into PCR 4 (the boot loaders') and leaves the log as it was.
            let hidden = try TPMCrypto.hash(.sha256, Array("hidden loader".utf8))
            try await guest.client.pcrExtend(
                4, digests: [TPMTHA(hashAlg: .sha256, digest: hidden), TPMTHA(hashAlg: .sha1, digest: try TPMCrypto.hash(.sha1, hidden))])
            let after = try await guest.agent(p, vm: vm, token: token).attest()
            #expect(!after.passed && after.failures.first?.name == .replay && after.failures.first?.reason.contains("PCR 4") == true,
                    "\(after.failures)")
            // After a clean reboot (the remembered boot passes again), only the quoted bank of
            // PCR 7 moves: a new key still, refused still.
            try await guest.reboot()
            #expect(try await guest.agent(p, vm: vm, token: token).attest().passed)
            try await guest.client.pcrExtend(7, digests: [TPMTHA(hashAlg: .sha256, digest: hidden)])
            let oneBank = try await guest.agent(p, vm: vm, token: token).attest()
            #expect(
                !oneBank.passed && oneBank.failures.first?.name == .replay
                    && oneBank.failures.first?.reason.contains("sha256 PCR 7") == true, "\(oneBank.failures)")
        }
    }

    // MARK: 6. Identity: a VM is bound to its TPM

    @Test(arguments: TPMKind.allCases)
    func aRolledBackTPMIsCaughtEvenAfterReEnrolling(_ kind: TPMKind) async throws {
        guard let (p, guest) = try await AttackedGuest.setUp(kind) else { return }
        try await withTeardown({ await guest.stop(); await p.stop() }) {
            let vm = vmName()
            let token = try await p.token(.agent, vm: vm)
            #expect(try await guest.agent(p, vm: vm, token: token).attest().passed)
            let old = try guest.snapshot()
            try await guest.reboot()
            try await guest.reboot()
            let later = try await guest.agent(p, vm: vm, token: token).attest()
            #expect(later.passed && later.rebooted == true, "\(later.failures)")
            // The attacker runs the old state and enrols again (the same EK): the counters stay.
            try await guest.rollBack(to: old)
            let agent = guest.agent(p, vm: vm, token: token)
            _ = try await agent.enroll()
            let o = try await agent.attest(enrollIfNeeded: false)
            #expect(!o.passed && o.check(.counters)?.passed == false && o.check(.counters)?.reason.contains("rolled back") == true,
                    "\(o.checks)")
        }
    }

    @Test(arguments: TPMKind.allCases)
    func anotherTPMIsRefusedUntilAnAdminRebinds(_ kind: TPMKind) async throws {
        guard let (p, guest) = try await AttackedGuest.setUp(kind) else { return }
        try await withTeardown({ await guest.stop(); await p.stop() }) {
            let vm = vmName()
            let token = try await p.token(.agent, vm: vm)
            let first = try await guest.agent(p, vm: vm, token: token).attest()
            #expect(first.passed && first.baseline == .learned)
            // The VM's agent token in the hands of another TPM (an attacker's VM).
            let thief = try await AttackedGuest.boot(p, kind)
            try await withTeardown({ await thief.stop() }) {
                await #expect { _ = try await thief.agent(p, vm: vm, token: token).attest() } throws: { e in
                    (e as? AgentError)?.status == 409 && (e as? AgentError)?.message.contains("bound to another TPM") == true
                }
                // Only an admin can allow it; an agent or a reader cannot.
                var (s, _) = try await p.status("POST", "/v1/vms/\(vm)/enrolment/rebind", token: token)
                #expect(s == 403)
                (s, _) = try await p.status("POST", "/v1/vms/\(vm)/enrolment/rebind", token: try await p.token(.reader))
                #expect(s == 403)
                (s, _) = try await p.status("POST", "/v1/vms/\(vm)/enrolment/rebind", token: p.admin)
                #expect(s == 200)
                // The new TPM enrols; the baseline of the old one is gone; its counters start afresh.
                let rebound = try await thief.agent(p, vm: vm, token: token).attest()
                #expect(rebound.passed && rebound.baseline == .learned && rebound.rebooted == nil, "\(rebound.checks)")
                // The old TPM is now the foreign one.
                await #expect { _ = try await guest.agent(p, vm: vm,
                                                          token: token).attest() } throws: { e in (e as? AgentError)?.status == 409 }
            }
        }
    }

    @Test(arguments: TPMKind.allCases)
    func noncesAndEnrolmentsBelongToTheirVM(_ kind: TPMKind) async throws {
        guard let (p, a) = try await AttackedGuest.setUp(kind) else { return }
        try await withTeardown({ await a.stop(); await p.stop() }) {
            let b = try await AttackedGuest.boot(p, kind)
            try await withTeardown({ await b.stop() }) {
                let vmA = vmName(), vmB = vmName()
                let tokenA = try await p.token(.agent, vm: vmA), tokenB = try await p.token(.agent, vm: vmB)
                #expect(try await a.agent(p, vm: vmA, token: tokenA).attest().passed)
                #expect(try await b.agent(p, vm: vmB, token: tokenB).attest().passed)
                // B presents A's nonce: refused, and A's nonce stays A's to use.
                let grantA = try await p.nonce(vmA, token: tokenA)
                let nonceA = try #require([UInt8](hex: grantA.nonce))
                let stolen = try await p.post(vmB, try await b.agent(p, vm: vmB, token: tokenB).evidence(nonce: nonceA), token: tokenB)
                #expect(!stolen.passed && stolen.failures.first?.reason.contains("issued for \(vmA)") == true, "\(stolen.failures)")
                let own = try await p.post(vmA, try await a.agent(p, vm: vmA, token: tokenA).evidence(nonce: nonceA), token: tokenA)
                #expect(own.passed, "\(own.failures)")
                // B answers A's pending enrolment: not found for B, still there for A.
                let ek = try await a.agent(p, vm: vmA, token: tokenA).endorsementKey()
                let ak = try await a.agent(p, vm: vmA, token: tokenA).attestationKey()
                let request = EnrolmentRequest(ekPublic: hexString(try ek.ek.publicArea.tpmBytes()),
                                               akPublic: hexString(try ak.publicArea.tpmBytes()),
                                               ekCertificate: Data(ek.certificate).base64EncodedString())
                let challenge = try await p.client(tokenA).call("POST", "/v1/vms/\(vmA)/enrolments", body: request,
                                                                as: EnrolmentChallenge.self, step: "enrol")
                let (s, m) = try await p.status("POST", "/v1/vms/\(vmB)/enrolments/\(challenge.id)/activation",
                                                body: ActivationAnswer(secret: String(repeating: "00", count: 32)), token: tokenB)
                #expect(s == 404 && m.contains(vmB), "\(s) \(m)")
                let blob = try TPM2BIDObject(tpmBytes: try #require([UInt8](hex: challenge.credentialBlob)))
                let enc = try TPM2BEncryptedSecret(tpmBytes: try #require([UInt8](hex: challenge.encryptedSecret)))
                let secret = try await a.client.activateCredential(ak: ak, ek: ek.ek, blob: blob, secret: enc)
                try await a.client.flushContext(ak.handle); try await a.client.flushContext(ek.ek.handle)
                let receipt = try await p.client(tokenA).call("POST", "/v1/vms/\(vmA)/enrolments/\(challenge.id)/activation",
                                                              body: ActivationAnswer(secret: hexString(secret)),
                                                              as: EnrolmentReceipt.self, step: "activate")
                #expect(receipt.vm == vmA)
            }
        }
    }

    @Test(arguments: TPMKind.allCases)
    func aDeletedVMLeavesNothingToItsNamesake(_ kind: TPMKind) async throws {
        guard let (p, guest) = try await AttackedGuest.setUp(kind) else { return }
        try await withTeardown({ await guest.stop(); await p.stop() }) {
            let vm = vmName()
            let token = try await p.token(.agent, vm: vm)
            let old = try await guest.agent(p, vm: vm, token: token).attest()
            #expect(old.passed)
            let spareNonce = try await p.nonce(vm, token: token)
            // Forget the VM (DELETE /v1/vms/VM/enrolment for a VM the service alone knows).
            var (s, _) = try await p.status("DELETE", "/v1/vms/\(vm)/enrolment", token: token)
            #expect(s == 403)
            (s, _) = try await p.status("DELETE", "/v1/vms/\(vm)/enrolment", token: p.admin)
            #expect(s == 204)
            // The old agent token is gone with it; the history is archived, not the new VM's.
            (s, _) = try await p.status("GET", "/v1/vms/\(vm)/attestations", token: token)
            #expect(s == 401)
            #expect(try await p.service.history(vm: vm).isEmpty)
            // A new VM of the same name (another TPM) enrols freshly and cannot adopt the old boot.
            let newcomer = try await AttackedGuest.boot(p, kind)
            try await withTeardown({ await newcomer.stop() }) {
                let newToken = try await p.token(.agent, vm: vm)
                let agent = newcomer.agent(p, vm: vm, token: newToken)
                _ = try await agent.enroll()
                (s, _) = try await p.status("POST", "/v1/vms/\(vm)/baseline/approve", body: ["attestationId": old.id], token: p.admin)
                #expect(s == 404)
                let reused = try await p.post(vm, try await agent.evidence(nonce: try #require([UInt8](hex: spareNonce.nonce))),
                                              token: newToken)
                #expect(!reused.passed && reused.failures.first?.reason.contains("never issued") == true, "\(reused.failures)")
                let fresh = try await agent.attest(enrollIfNeeded: false)
                #expect(fresh.passed && fresh.baseline == .learned, "\(fresh.failures)")
            }
        }
    }

    // MARK: 7. Trust on first use is visible, and only from complete evidence

    @Test(arguments: TPMKind.allCases)
    func firstUseLearnsOnlyFromCompleteEvidenceAndSaysSo(_ kind: TPMKind) async throws {
        guard let (p, guest) = try await AttackedGuest.setUp(kind) else { return }
        try await withTeardown({ await guest.stop(); await p.stop() }) {
            // A policy that tolerates anomalies, and a boot with one (a second separator in PCR 5).
            try await p.putPolicy(AttestationPolicy(forbidAnomalies: false))
            try await guest.extend(pcr: 5, type: .separator, data: [0, 0, 0, 0])
            let vm = vmName()
            let token = try await p.token(.agent, vm: vm)
            let o = try await guest.agent(p, vm: vm, token: token).attest()
            #expect(!o.passed && o.check(.baseline)?.outcome == .unknown && o.check(.baseline)?.reason.contains("incomplete") == true,
                    "\(o.checks)")
            #expect(o.baseline == .pending && o.token == nil)
            var (s, _) = try await p.status("GET", "/v1/vms/\(vm)/baseline", token: p.admin)
            #expect(s == 404)
            // A person can decide to approve it; then it passes, and the token says who set the baseline.
            (s, _) = try await p.status("POST", "/v1/vms/\(vm)/baseline/approve", token: p.admin)
            #expect(s == 200)
            let approved = try await guest.agent(p, vm: vm, token: token).attest()
            #expect(approved.passed && approved.baselineSource?.source == .approved, "\(approved.failures)")
            if let claims = try await verifyWithPyJWT(try #require(approved.token), jwksURL: "\(p.server.url)/.well-known/jwks.json") {
                let b = (claims["x-tlaunch"] as? [String: Any])?["baselineSource"] as? [String: Any]
                #expect(b?["source"] as? String == "approved" && b?["firstUse"] as? Bool == false)
            }

            // A clean boot of another VM is learned on first use, and says so.
            let clean = try await AttackedGuest.boot(p, kind)
            try await withTeardown({ await clean.stop() }) {
                let vm2 = vmName()
                let learned = try await clean.agent(p, vm: vm2, token: try await p.token(.agent, vm: vm2)).attest()
                #expect(learned.passed && learned.baseline == .learned && learned.baselineSource?.source == .learned)
                #expect(learned.check(.baseline)?.reason.contains("learned on first use") == true)
                if let claims = try await verifyWithPyJWT(try #require(learned.token), jwksURL: "\(p.server.url)/.well-known/jwks.json") {
                    let b = (claims["x-tlaunch"] as? [String: Any])?["baselineSource"] as? [String: Any]
                    #expect(b?["firstUse"] as? Bool == true && (b?["since"] as? String)?.hasSuffix("Z") == true)
                }

                // A VM whose first baseline waits for a person: healthy evidence is not enough.
                let waiting = try await AttackedGuest.boot(p, kind)
                try await withTeardown({ await waiting.stop() }) {
                    let vm3 = vmName()
                    (s, _) = try await p.status("PUT", "/v1/vms/\(vm3)/baseline/mode", body: ["mode": "approve"], token: p.admin)
                    #expect(s == 200)
                    (s, _) = try await p.status("PUT", "/v1/vms/\(vm3)/baseline/mode", body: ["mode": "whatever"], token: p.admin)
                    #expect(s == 400)
                    let token3 = try await p.token(.agent, vm: vm3)
                    let pending = try await waiting.agent(p, vm: vm3, token: token3).attest()
                    #expect(
                        !pending.passed && pending.baseline == .pending
                            && pending.check(.baseline)?.reason.contains("waits for a person") == true, "\(pending.checks)")
                    (s, _) = try await p.status("POST", "/v1/vms/\(vm3)/baseline/approve", token: p.admin)
                    #expect(s == 200)
                    #expect(try await waiting.agent(p, vm: vm3, token: token3).attest().passed)
                }
            }
        }
    }

    // MARK: 8. Tokens: audience, short life, the trust vector from typed checks

    @Test func tokensCarryTheirAudienceAShortLifeAndTheTrustVector() async throws {
        guard let (p, guest) = try await AttackedGuest.setUp(.vtpm) else { return }
        try await withTeardown({ await guest.stop(); await p.stop() }) {
            let vm = vmName()
            let token = try await p.token(.agent, vm: vm)
            let agent = guest.agent(p, vm: vm, token: token)
            _ = try await agent.enroll()
            // A relying party asks for a token for itself.
            let grant = try await p.nonce(vm, token: token, audience: "https://keys.example.test")
            #expect(grant.audience == "https://keys.example.test")
            let o = try await p.post(vm, try await agent.evidence(nonce: try #require([UInt8](hex: grant.nonce))), token: token)
            #expect(o.passed, "\(o.failures)")
            let jwt = try #require(o.token)
            let jwks = "\(p.server.url)/.well-known/jwks.json"
            if let claims = try await verifyWithPyJWT(jwt, jwksURL: jwks, audience: "https://keys.example.test") {
                #expect(claims["aud"] as? String == "https://keys.example.test")
                #expect((claims["exp"] as? Int ?? 0) - (claims["iat"] as? Int ?? 0) == 300)
                let vector =
                    ((claims["submods"] as? [String: Any])?["trusted-launch"] as? [String: Any])?["ear.trustworthiness-vector"]
                    as? [String: Any]
                #expect(
                    vector?["instance-identity"] as? Int == 2 && vector?["executables"] as? Int == 2
                        && vector?["configuration"] as? Int == 2)
                #expect(vector?["file-system"] as? Int == 0, "no IMA: no claim about files")
                let checks = (claims["x-tlaunch"] as? [String: Any])?["checks"] as? [[String: Any]]
                #expect(
                    checks?.contains {
                        $0["name"] as? String == "coverage" && $0["category"] as? String == "evidence" && $0["outcome"] as? String == "pass"
                    } == true)
            }
            // Another relying party's audience does not verify it (PyJWT refuses it).
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("jwks-\(UUID().uuidString).json")
            try (try await p.client(nil).send("GET", "/.well-known/jwks.json", step: "jwks")).body.write(to: file)
            defer { try? FileManager.default.removeItem(at: file) }
            let script = """
            import json, sys, jwt
            jwks = json.load(open(sys.argv[1]))
            key = jwt.PyJWK([k for k in jwks["keys"] if k["kid"] == jwt.get_unverified_header(sys.argv[2])["kid"]][0])
            jwt.decode(sys.argv[2], key.key, algorithms=["ES256"], issuer="https://attest.tlaunch.test", \
            audience="https://other.example.test")
            """
            let (code, _, err) = try await Interop.run("/usr/bin/python3", ["-c", script, file.path, jwt])
            #expect(code != 0 && err.contains("Audience"), "\(err)")
            // A bad audience is refused at the nonce.
            let (s, m) = try await p.status("POST", "/v1/vms/\(vm)/nonce", body: NonceRequest(audience: "two words"), token: token)
            #expect(s == 400 && m.contains("audience"))
            // Every check of the outcome has its category; the history keeps them.
            #expect(o.checks.allSatisfy { $0.category == $0.name.category })
            let history = try await p.service.history(vm: vm)
            #expect(history.first?.checks.map(\.category) == o.checks.map(\.category))
        }
    }
}
