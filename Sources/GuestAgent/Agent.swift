import AttestationAPI
import Foundation
import MeasuredBoot
import TPM2
#if canImport(Glibc)
import Glibc
#endif

/// The guest attestation agent: proves its AK lives in the VM's vTPM (enrolment), then answers
/// the service's nonces with quotes, PCR values and the event log.
///
/// The AK is a primary key in the endorsement hierarchy from a fixed template: the TPM derives
/// the same key from its endorsement seed every time, so the agent keeps no key files and a
/// new AK appears only when the vTPM's identity changes.
public struct GuestAgent: Sendable {
    public let tpm: TPMClient
    public let service: ServiceClient
    public let vm: String
    /// The TCG event log: a file path (read at each attestation) or bytes.
    public var eventLogPath: String?
    public var eventLog: [UInt8]?
    public var imaLogPath: String?
    /// PCRs quoted in each bank: 0–15 (10 is IMA's), plus what a nonce grant asks for.
    public var pcrs: [Int] = Array(0...15)
    /// Banks quoted: SHA-256, plus what a nonce grant asks for.
    public var banks: [TPMAlgID] = [.sha256]

    public init(tpm: TPMClient, service: ServiceClient, vm: String, eventLogPath: String? = nil, eventLog: [UInt8]? = nil,
                imaLogPath: String? = nil) {
        self.tpm = tpm; self.service = service; self.vm = vm; self.eventLogPath = eventLogPath; self.eventLog = eventLog;
        self.imaLogPath = imaLogPath
    }

    /// The AK template: ECC P-256 restricted signing key, with a TrustedLaunch label as its
    /// unique value so it does not collide with other software's primaries.
    public static var akTemplate: TPMTPublic {
        var t = TPMTemplates.akECCP256
        t.unique = .ecc(TPMSECCPoint(x: Array("TrustedLaunch attestation key".utf8), y: []))
        return t
    }

    func withTPM<T>(_ step: String, _ body: () async throws(TPMError) -> T) async throws -> T {
        do { return try await body() } catch { throw AgentError(step, "the TPM refused: \(error)") }
    }

    /// The EK (the kind whose certificate is in NV; ECC preferred) and its certificate.
    public func endorsementKey() async throws -> (ek: TPMObject, certificate: [UInt8]) {
        for kind in [TPMEKKind.eccP256, .rsa2048] {
            if let cert = try await withTPM("read EK certificate", { () async throws(TPMError) in try await tpm.readEKCertificate(kind) }) {
                let ek = try await withTPM("create EK", { () async throws(TPMError) in try await tpm.createEK(kind) })
                return (ek, cert)
            }
        }
        throw AgentError("read EK certificate", "the TPM has no EK certificate in NV (0x01C0000A for ECC, 0x01C00002 for RSA): it was not "
                                              + "provisioned by a CA the service can trust")
    }

    public func attestationKey() async throws -> TPMObject {
        try await withTPM("create AK",
                          { () async throws(TPMError) in try await tpm.createPrimary(.endorsement, template: Self.akTemplate).object })
    }

    func flush(_ o: TPMObject) async { try? await tpm.flushContext(o.handle) }

    /// Enrols: EK certificate and AK to the service, ActivateCredential on its challenge.
    public func enroll() async throws -> EnrolmentReceipt {
        let (ek, cert) = try await endorsementKey()
        let ak: TPMObject
        do { ak = try await attestationKey() } catch { await flush(ek); throw error }
        do {
            let receipt = try await enroll(ek: ek, certificate: cert, ak: ak)
            await flush(ek); await flush(ak)
            return receipt
        } catch {
            await flush(ek); await flush(ak)
            throw error
        }
    }

    func enroll(ek: TPMObject, certificate cert: [UInt8], ak: TPMObject) async throws -> EnrolmentReceipt {
        let request = EnrolmentRequest(ekPublic: hexString(try ek.publicArea.tpmBytes()), akPublic: hexString(try ak.publicArea.tpmBytes()),
                                       ekCertificate: Data(cert).base64EncodedString())
        let challenge = try await service.call("POST", "/v1/vms/\(vm)/enrolments", body: request, as: EnrolmentChallenge.self,
                                               step: "enrol")
        guard let blobBytes = [UInt8](hex: challenge.credentialBlob), let secretBytes = [UInt8](hex: challenge.encryptedSecret),
              let blob = try? TPM2BIDObject(tpmBytes: blobBytes), let enc = try? TPM2BEncryptedSecret(tpmBytes: secretBytes) else {
            throw AgentError("enrol", "the service's credential challenge does not decode")
        }
        let secret = try await withTPM(
            "activate credential",
            { () async throws(TPMError) in try await tpm.activateCredential(ak: ak, ek: ek, blob: blob, secret: enc) })
        return try await service.call("POST", "/v1/vms/\(vm)/enrolments/\(challenge.id)/activation",
                                      body: ActivationAnswer(secret: hexString(secret)),
                                      as: EnrolmentReceipt.self, step: "enrol")
    }

    /// Whether the service has this TPM's AK enrolled for the VM.
    public func isEnrolled() async throws -> Bool {
        let ak = try await attestationKey()
        await flush(ak)
        return try await isEnrolled(akName: try ak.publicArea.name())
    }

    func isEnrolled(akName: [UInt8]) async throws -> Bool {
        let (status, body) = try await service.send("GET", "/v1/vms/\(vm)/enrolment", step: "look up enrolment")
        if status == 404 { return false }
        guard status == 200, let obj = try JSONSerialization.jsonObject(with: body) as? [String: Any] else {
            throw AgentError("look up enrolment", "the service answered \(status): \(String(decoding: body.prefix(300), as: UTF8.self))",
                             status: status)
        }
        return (obj["akName"] as? String) == hexString(akName)
    }

    /// Gathers evidence for `nonce`: quote over sha256 PCRs, their values, the logs. The PCRs are
    /// read after the quote; if something extended them in between, the agent quotes again.
    public func evidence(nonce: [UInt8]) async throws -> Evidence {
        let ak = try await attestationKey()
        do {
            let e = try await evidence(nonce: nonce, ak: ak)
            await flush(ak)
            return e
        } catch {
            await flush(ak)
            throw error
        }
    }

    /// Evidence quoted by `ak`, an AK the caller holds loaded (it is not flushed).
    public func evidence(nonce: [UInt8], ak: TPMObject) async throws -> Evidence {
        let log: [UInt8]
        if let eventLog { log = eventLog } else {
            let path = eventLogPath ?? "/sys/kernel/security/tpm0/binary_bios_measurements"
            guard let data = GuestFiles.read(path) else {
                throw AgentError("read event log", "cannot read \(path) (is securityfs mounted, and is the agent root?)")
            }
            log = Array(data)
        }
        let ima = imaLogPath.flatMap { GuestFiles.read($0) }.map { String(decoding: $0, as: UTF8.self) }
        let sel = TPMLPCRSelection(banks.map { TPMSPCRSelection(hash: $0, pcrs: pcrs) })
        for _ in 0..<4 {
            let quote = try await withTPM("quote",
                                          { () async throws(TPMError) in try await tpm.quote(ak.handle, qualifyingData: nonce, pcrs: sel) })
            let banks = try await withTPM("read PCRs", { () async throws(TPMError) in try await tpm.pcrRead(sel) })
            var e = try Evidence(quote: quote, pcrs: banks, eventLog: log, nonce: nonce)
            e.imaLog = ima
            // Consistent when the quoted digest is the digest of the values read.
            if (try? TPMQuoteVerifier.verify(quote, akPublic: ak.publicArea, nonce: nonce, pcrs: banks)) != nil { return e }
        }
        throw AgentError("quote", "the PCRs kept changing between quote and read")
    }

    /// One attestation: enrol if needed, get a nonce, send evidence, return the outcome.
    /// The AK is derived once for both the enrolment check and the quote (a hardware TPM takes
    /// tens of milliseconds per primary key); enrolment, when needed, uses its own handles.
    public func attest(enrollIfNeeded: Bool = true) async throws -> AttestationOutcome {
        var ak = try await attestationKey()
        do {
            if enrollIfNeeded, try await !isEnrolled(akName: try ak.publicArea.name()) {
                await flush(ak)
                _ = try await enroll()
                ak = try await attestationKey()
            }
            // The nonce and the evidence over one connection (over HTTPS, one handshake).
            let attesting = ak
            return try await service.session { service in
                let grant = try await service.call("POST", "/v1/vms/\(vm)/nonce", as: NonceGrant.self, step: "get nonce")
                guard let nonce = [UInt8](hex: grant.nonce) else { throw AgentError("get nonce", "the nonce is not hex") }
                // Quote at least what the service's policy reads.
                var me = self
                if let q = grant.quote {
                    me.banks += q.banks.compactMap { PCRValues.bankNames[$0] }.filter { !me.banks.contains($0) }
                    me.pcrs = Array(Set(me.pcrs).union(q.pcrs.filter { (0..<24).contains($0) })).sorted()
                }
                let e = try await me.evidence(nonce: nonce, ak: attesting)
                await flush(attesting)
                return try await service.call("POST", "/v1/vms/\(vm)/attestations", body: e, as: AttestationOutcome.self, step: "attest")
            }
        } catch {
            await flush(ak)
            throw error
        }
    }

    /// Attests at start and every `interval`; failures to reach the service back off (1 s, 2 s,
    /// … up to the interval) and retry. Runs until the task is cancelled.
    public func run(interval: Duration, report: @Sendable (Result<AttestationOutcome, any Error>) -> Void) async {
        var backoff: Duration = .seconds(1)
        while !Task.isCancelled {
            do {
                report(.success(try await attest()))
                backoff = .seconds(1)
                try? await Task.sleep(for: interval)
            } catch {
                report(.failure(error))
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, interval)
            }
        }
    }
}

/// The guest's own view of its security (as Windows shows "Secure Boot State" in msinfo32 and
/// "Device security"): Secure Boot as the firmware measured it, the TPM and its versions, the
/// measured boot log, and the last attestation.
public struct GuestStatus: Sendable, Codable, Hashable {
    public struct TPM: Sendable, Codable, Hashable {
        public var present: Bool
        public var specVersion: String?
        public var manufacturer: String?
        public var firmwareVersion: String?
        public var pcrBanks: [String]
        public var ekCertificate: String?
        public var error: String?
        public init(present: Bool, specVersion: String?, manufacturer: String?, firmwareVersion: String?, pcrBanks: [String],
                    ekCertificate: String?, error: String?) {
            self.present = present; self.specVersion = specVersion; self.manufacturer = manufacturer; self.firmwareVersion = firmwareVersion
            self.pcrBanks = pcrBanks; self.ekCertificate = ekCertificate; self.error = error
        }
    }
    public struct MeasuredBootLog: Sendable, Codable, Hashable {
        public var present: Bool
        public var path: String?
        public var events: Int
        public var matchesTPM: Bool?
        public var error: String?
        public init(present: Bool, path: String?, events: Int, matchesTPM: Bool?, error: String?) {
            self.present = present; self.path = path; self.events = events; self.matchesTPM = matchesTPM; self.error = error
        }
    }
    public struct LastAttestation: Sendable, Codable, Hashable {
        public var time: String
        public var passed: Bool
        public var status: String
        public var id: String
    }
    public var vm: String
    /// "On", "Off" or "Unknown" (no measured SecureBoot variable).
    public var secureBootState: String
    public var tpm: TPM
    public var measuredBootLog: MeasuredBootLog
    public var lastAttestation: LastAttestation?
    public var serviceError: String?
    public init(vm: String, secureBootState: String, tpm: TPM, measuredBootLog: MeasuredBootLog, lastAttestation: LastAttestation?,
                serviceError: String?) {
        self.vm = vm; self.secureBootState = secureBootState; self.tpm = tpm; self.measuredBootLog = measuredBootLog
        self.lastAttestation = lastAttestation; self.serviceError = serviceError
    }
}

extension GuestAgent {
    /// What the guest can see of its own security; nothing here fails as a whole (each part
    /// says what it could not read).
    public func status() async -> GuestStatus {
        var tpmStatus = GuestStatus.TPM(present: false, specVersion: nil, manufacturer: nil, firmwareVersion: nil, pcrBanks: [],
                                        ekCertificate: nil, error: nil)
        do {
            let info = try await tpm.info()
            tpmStatus = GuestStatus.TPM(present: true,
                                        specVersion: "\(info.specFamily) (level \(info.specLevel), revision \(info.specRevision))",
                                        manufacturer: "\(info.manufacturer) \(info.vendorString)".trimmingCharacters(in: .whitespaces),
                firmwareVersion: info.firmwareVersion, pcrBanks: info.pcrBanks.filter { !$0.value.isEmpty }.keys.sorted(),
                ekCertificate: info.ekCertificates.first.map {
                    "\($0.kind)\($0.subject.isEmpty ? "" : " \($0.subject)"), issued by \($0.issuer)"
                }, error: nil)
        } catch {
            tpmStatus.error = "\(error)"
        }
        var logStatus = GuestStatus.MeasuredBootLog(present: false, path: eventLog == nil ? eventLogPath : nil, events: 0, matchesTPM: nil,
                                                    error: nil)
        var secureBoot = "Unknown"
        let bytes: [UInt8]? = eventLog ?? (eventLogPath.flatMap { GuestFiles.read($0) }.map { Array($0) })
        if let bytes {
            do {
                let log = try EventLog(parsing: bytes)
                logStatus.present = true
                logStatus.events = log.events.count
                var verifiedFacts: BootFacts?
                if tpmStatus.present {
                    let sel = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: Array(0...15))])
                    if let banks = try? await tpm.pcrRead(sel) {
                        // Compared as the verifier compares them (IMA's PCR 10 has its own log).
                        let report = log.replay(against: log.comparable(PCRValues(banks)))
                        logStatus.matchesTPM = report.allMatch
                        verifiedFacts = report.verified.explain()
                    }
                }
                let facts = verifiedFacts ?? log.replay(against: log.replay()).verified.explain()
                secureBoot = facts.secureBoot.enabled.map { $0 ? "On" : "Off" } ?? "Unknown"
            } catch {
                logStatus.error = "\(error)"
            }
        } else {
            logStatus.error = "no event log at \(eventLogPath ?? "-")"
        }
        var last: GuestStatus.LastAttestation?
        var serviceError: String?
        do {
            struct History: Decodable { var attestations: [AttestationOutcome] }
            let h = try await service.call("GET", "/v1/vms/\(vm)/attestations?limit=1", as: History.self, step: "last attestation")
            last = h.attestations.first.map { .init(time: $0.time, passed: $0.passed, status: $0.status, id: $0.id) }
        } catch {
            serviceError = "\(error)"
        }
        return GuestStatus(vm: vm, secureBootState: secureBoot, tpm: tpmStatus, measuredBootLog: logStatus, lastAttestation: last,
                           serviceError: serviceError)
    }
}

extension GuestStatus {
    /// As `tlaunch agent status` prints it.
    public var text: String {
        var out = "Device security of \(vm)\n"
        out += "  Secure Boot State:     \(secureBootState)\n"
        if tpm.present {
            out += "  TPM 2.0:               present — \(tpm.specVersion ?? "?"), \(tpm.manufacturer ?? "?"), firmware "
                 + "\(tpm.firmwareVersion ?? "?")\n"
            out += "  PCR banks:             \(tpm.pcrBanks.joined(separator: ", "))\n"
            if let ek = tpm.ekCertificate { out += "  EK certificate:        \(ek)\n" }
        } else {
            out += "  TPM 2.0:               not present\(tpm.error.map { " (\($0))" } ?? "")\n"
        }
        if measuredBootLog.present {
            let replay = measuredBootLog.matchesTPM.map { $0 ? ", replays to the TPM's PCRs" : ", DOES NOT replay to the TPM's PCRs" } ?? ""
            out += "  Measured boot log:     present, \(measuredBootLog.events) events\(replay)\n"
        } else {
            out += "  Measured boot log:     not present\(measuredBootLog.error.map { " (\($0))" } ?? "")\n"
        }
        if let a = lastAttestation {
            out += "  Last attestation:      \(a.time) \(a.passed ? "passed" : "FAILED") (\(a.status), \(a.id))\n"
        } else {
            out += "  Last attestation:      none\(serviceError.map { " (\($0))" } ?? "")\n"
        }
        return out
    }
}

extension GuestAgent {
    /// An attestation's outcome as the agent prints it: the verdict, each check, what changed.
    public static func describe(_ o: AttestationOutcome, showToken: Bool = true) -> String {
        var out = "Attestation \(o.passed ? "PASSED" : "FAILED") for \(o.vm) at \(o.time) (policy \(o.policy.id) v\(o.policy.version), id "
                + "\(o.id))\n"
        for c in o.checks { out += "  \(c.passed ? "✓" : "✗") \(c.name): \(c.reason)\n" }
        for ch in o.changes { out += "    · \(ch.summary)\n" }
        if let t = o.token { out += showToken ? "Token: \(t)\n" : "Token: issued (\(o.tokenID ?? "?"))\n" }
        return out
    }
}

/// Reading the kernel's logs: securityfs files report size 0 and hand out their contents a
/// page at a time, so they are read until read(2) says the end (Foundation's whole-file
/// readers stop after the first chunk on them).
enum GuestFiles {
    static func read(_ path: String, limit: Int = 64 << 20) -> Data? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out = Data()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }
}
