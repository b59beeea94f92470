import AttestationAPI
import Crypto
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Fleet
import GuestAgent
import MeasuredBoot
import SecureBoot
import Server
import Storage
import TLaunchTestSupport
import TPM2
import Testing
import VirtualFirmware
import VirtualTPM
import X509
@testable import Attestation

/// The two store implementations every service test runs against.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { rawValue }

    /// A fresh store: a SQLite file, or a new database on the test PostgreSQL (started by the
    /// test command; its URL in TLAUNCH_TEST_POSTGRES). Nil: PostgreSQL absent and not required.
    func makeStore(dir: URL) async throws -> SQLStore? {
        switch self {
        case .sqlite:
            return try await StorageLocation.open(dir.appendingPathComponent("tlaunch.sqlite").path)
        case .postgres:
            guard let url = Self.postgresURL() else { return nil }
            return try await StorageLocation.open(try await Self.freshDatabase(url))
        }
    }

    static func postgresURL(sourceLocation: SourceLocation = #_sourceLocation) -> String? {
        if let url = ProcessInfo.processInfo.environment["TLAUNCH_TEST_POSTGRES"], !url.isEmpty { return url }
        if Interop.required { Issue.record("TLAUNCH_TEST_POSTGRES is not set: scripts/test.sh starts PostgreSQL (scripts/postgres.sh)",
                                           sourceLocation: sourceLocation) }
        return nil
    }

    /// A new, empty database next to the one in `url`; returns its URL.
    static func freshDatabase(_ url: String) async throws -> String {
        let admin = try PostgresBackend(url: url)
        let name = "tl_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20)
        _ = try await admin.query("CREATE DATABASE \(name)", [])
        await admin.close()
        var c = try #require(URLComponents(string: url))
        c.path = "/\(name)"
        return try #require(c.string)
    }
}

/// A platform: data folder (vTPM CA, attestation CA), a store, the service on a free port.
struct Platform {
    let dir: URL
    let folder: DataFolder
    let authority: VTPMCertificateAuthority
    let service: AttestationService
    let server: RunningServer
    let admin: String

    static func start(_ backend: Backend, store: SQLStore? = nil, dir: URL? = nil,
                      trust extra: [Certificate] = []) async throws -> Platform? {
        let dir = dir ?? FileManager.default.temporaryDirectory.appendingPathComponent("tl-svc-\(UUID().uuidString)")
        let folder = DataFolder(root: dir)
        try folder.create()
        var chosen = store
        if chosen == nil { chosen = try await backend.makeStore(dir: dir) }
        guard let store = chosen else { return nil }
        let authority = try VTPMCertificateAuthority.loadOrCreate(directory: folder.vtpmCA)
        let service = AttestationService(store: store,
                                         anchors: TrustAnchors(roots: [authority.root] + extra.filter { $0.subject == $0.issuer },
                intermediates: [authority.intermediate] + extra.filter { $0.subject != $0.issuer }),
                                         akCA: try AKCertificateAuthority.loadOrCreate(directory: folder.attestationCA),
                                         issuer: "https://attest.tlaunch.test")
        let server = try await RunningServer.start(service: service)
        let admin = try await AttestationService.createAPIToken(store: store, role: .admin, vm: nil)
        return Platform(dir: dir, folder: folder, authority: authority, service: service, server: server, admin: admin)
    }

    /// Clients wait up to 10 minutes: the suite runs QEMU, swtpm and builds next to these
    /// in-process servers on two cores, so an answer comes late under load, not never.
    func client(_ token: String?) -> ServiceClient { var c = ServiceClient.pinned(baseURL: server.url, token: token,
                                                                                  tls: nil); c.patient = true; return c }
    func token(_ role: APITokenRecord.Role, vm: String? = nil) async throws -> String {
        try await AttestationService.createAPIToken(store: service.store, role: role, vm: vm)
    }

    func stop() async {
        await server.stop()
        await (service.store as? SQLStore)?.backend.close()
        try? FileManager.default.removeItem(at: dir)
    }

    /// GET with the admin token, as JSON.
    func get(_ path: String, token: String? = nil) async throws -> (Int, [String: Any]) {
        let (status, body) = try await client(token ?? admin).send("GET", path, step: "test")
        return (status, (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:])
    }
}

/// A guest: a vTPM manufactured under the platform's CA (EK certificate in NV), booted by the
/// virtual firmware (sample-linux), its log; reboots power-cycle the same vTPM.
final class Guest: @unchecked Sendable {
    let tpm: VirtualTPM
    let client: TPMClient
    var log: [UInt8]
    let keys: PlatformKeys

    init(tpm: VirtualTPM, client: TPMClient, log: [UInt8],
         keys: PlatformKeys) { self.tpm = tpm; self.client = client; self.log = log; self.keys = keys }

    static func boot(_ platform: Platform, secureBoot: Bool = true, commandLine: String = "console=ttyS0 root=/dev/vda2 ro",
                     editVariables: (inout VariableStore, ESP) throws -> Void = { _, _ in }) async throws -> Guest {
        let state = platform.dir.appendingPathComponent("vm-\(UUID().uuidString).state").path
        let tpm = try await VirtualTPM.open(stateFile: state, hostKey: [UInt8](repeating: 7, count: 32), authority: platform.authority)
        let keys = try PlatformKeys.loadOrCreate(directory: platform.folder.secureBootKeys)
        let g = Guest(tpm: tpm, client: TPMClient(transport: InProcessTransport(tpm)), log: [], keys: keys)
        try g.reboot(secureBoot: secureBoot, commandLine: commandLine, editVariables: editVariables, first: true)
        return g
    }

    /// Power-cycles the vTPM and boots again (a new TPM reset count, a new log).
    func reboot(secureBoot: Bool = true, commandLine: String = "console=ttyS0 root=/dev/vda2 ro",
                editVariables: (inout VariableStore, ESP) throws -> Void = { _, _ in }, first: Bool = false) throws {
        var (esp, vars) = try SampleImages.sampleLinux(keys: keys, commandLine: commandLine)
        try editVariables(&vars, esp)
        if !first { tpm.powerOn() }
        let report = try VirtualFirmware(settings: FirmwareSettings(secureBoot: secureBoot, variables: vars,
                                                                    banks: [.sha1, .sha256])).launch(esp: esp, tpm: tpm)
        log = try report.log.encoded()
    }

    func agent(_ platform: Platform, vm: String, token: String) -> GuestAgent {
        GuestAgent(tpm: client, service: platform.client(token), vm: vm, eventLog: log)
    }
}

func vmName() -> String { "vm-" + UUID().uuidString.prefix(8).lowercased() }

/// Verifies a token with PyJWT (an ordinary JWT library) against the service's JWKS. The JWKS is
/// fetched here over HTTP and handed to Python as a file: a Python process calling back into this
/// process's server while a test thread waits for it could starve Swift's cooperative pool.
func verifyWithPyJWT(_ token: String, jwksURL: String, audience: String = AttestationService.defaultAudience,
                     sourceLocation: SourceLocation = #_sourceLocation) async throws -> [String: Any]? {
    let python = "/usr/bin/python3"
    guard FileManager.default.fileExists(atPath: python) else {
        if Interop.required { Issue.record("/usr/bin/python3 with python3-jwt is required", sourceLocation: sourceLocation) }
        return nil
    }
    var jwksClient = ServiceClient.pinned(baseURL: jwksURL, token: nil, tls: nil)
    jwksClient.patient = true
    let (status, jwks) = try await jwksClient.send("GET", "", step: "jwks")
    #expect(status == 200, sourceLocation: sourceLocation)
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("jwks-\(UUID().uuidString).json")
    try jwks.write(to: file)
    defer { try? FileManager.default.removeItem(at: file) }
    let script = """
    import json, sys, jwt
    jwks = json.load(open(sys.argv[1]))
    token = sys.argv[2]
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWK([k for k in jwks["keys"] if k["kid"] == header["kid"]][0])
    claims = jwt.decode(token, key.key, algorithms=["ES256", "RS256"], issuer="https://attest.tlaunch.test", audience=sys.argv[3])
    claims["_alg"] = header["alg"]
    print(json.dumps(claims))
    """
    let (code, out, err) = try await Interop.run(python, ["-c", script, file.path, token, audience])
    guard code == 0 else {
        Issue.record("PyJWT refused the token: \(err.suffix(400))", sourceLocation: sourceLocation)
        return nil
    }
    return try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
}

@Suite("Attestation service: enrolment, evidence, baselines, tokens over HTTP, on SQLite and PostgreSQL")
struct ServiceTests {
    @Test(arguments: Backend.allCases)
    func enrolAttestLearnAReboothAndABaselineChange(_ backend: Backend) async throws {
        guard let p = try await Platform.start(backend) else { return }
        try await withTeardown({ await p.stop() }) {
            let vm = vmName()
            let guest = try await Guest.boot(p)
            let agent = guest.agent(p, vm: vm, token: try await p.token(.agent, vm: vm))

            // First attestation: enrols (EK certificate → MakeCredential → ActivateCredential), passes, learns the baseline.
            let first = try await agent.attest()
            #expect(first.passed, "\(first.checks.filter { !$0.passed })")
            #expect(first.baseline == .learned)
            #expect(first.checks.map(\.name).starts(with: ["nonce", "ak-certificate", "quote", "counters", "coverage", "replay"]))
            let second = try await agent.attest()
            #expect(second.passed && second.baseline == .matches && second.rebooted == false)

            // The token verifies with PyJWT against /.well-known/jwks.json and says what the EAR profile says.
            let token = try #require(second.token)
            if let claims = try await verifyWithPyJWT(token, jwksURL: "\(p.server.url)/.well-known/jwks.json") {
                #expect(claims["sub"] as? String == vm)
                #expect(claims["ear.status"] as? String == "affirming")
                #expect(claims["jti"] as? String == second.tokenID)
                let x = claims["x-tlaunch"] as? [String: Any]
                #expect(x?["secureboot"] as? Bool == true && x?["baseline"] as? String == "matches")
                #expect(
                    ((x?["vtpm"] as? [String: Any])?["ekCertificateSubject"] as? String)?.contains("TrustedLaunch vTPM EK Issuing CA")
                        == true)
                #expect(claims["exp"] as? Int ?? 0 > claims["iat"] as? Int ?? 0)
            }
            // Discovery names the JWKS.
            let (_, discovery) = try await p.get("/.well-known/openid-configuration")
            #expect(discovery["jwks_uri"] as? String == "\(p.server.url)/.well-known/jwks.json")

            // A reboot of the same VM: detected from the TPM reset count; the boot still matches.
            try guest.reboot()
            let afterReboot = try await guest.agent(p, vm: vm, token: try await p.token(.agent, vm: vm)).attest()
            #expect(afterReboot.passed && afterReboot.rebooted == true, "\(afterReboot.checks.filter { !$0.passed })")

            // A boot with another kernel command line: the baseline change is reported event by event.
            try guest.reboot(commandLine: "console=ttyS0 root=/dev/vda2 ro init=/bin/sh")
            let changed = try await guest.agent(p, vm: vm, token: try await p.token(.agent, vm: vm)).attest()
            #expect(!changed.passed && changed.checks.filter { !$0.passed }.map(\.name) == ["baseline"])
            let change = try #require(changed.changes.first { $0.kind == .kernelCommandLine })
            #expect(change.from?.contains("init=/bin/sh") == false && change.to?.contains("init=/bin/sh") == true && change.pcr == 8)
            #expect(changed.token == nil)

            // An admin approves this boot; the next attestation of the same boot passes.
            let (status, _) = try await p.client(p.admin).send("POST", "/v1/vms/\(vm)/baseline/approve", step: "approve")
            #expect(status == 200)
            let approved = try await guest.agent(p, vm: vm, token: try await p.token(.agent, vm: vm)).attest()
            #expect(approved.passed && approved.baseline == .matches)

            // Everything is history, newest first.
            let (hs, history) = try await p.get("/v1/vms/\(vm)/attestations", token: try await p.token(.reader))
            #expect(hs == 200)
            let items = try #require(history["attestations"] as? [[String: Any]])
            #expect(items.count == 5 && items.first?["id"] as? String == approved.id && items[1]["passed"] as? Bool == false)
        }
    }

    @Test(arguments: Backend.allCases)
    func eachFailureHasItsOwnReason(_ backend: Backend) async throws {
        guard let p = try await Platform.start(backend) else { return }
        try await withTeardown({ await p.stop() }) {
            let vm = vmName()
            let guest = try await Guest.boot(p)
            let agent = guest.agent(p, vm: vm, token: try await p.token(.agent, vm: vm))
            #expect(try await agent.attest().passed)
            let client = p.client(try await p.token(.agent, vm: vm))
            func nonce() async throws -> [UInt8] {
                try #require([UInt8](hex: try await client.call("POST", "/v1/vms/\(vm)/nonce", as: NonceGrant.self, step: "nonce").nonce))
            }
            func post(_ e: Evidence) async throws -> AttestationOutcome {
                try await client.call("POST", "/v1/vms/\(vm)/attestations", body: e, as: AttestationOutcome.self, step: "attest")
            }
            func failed(_ o: AttestationOutcome) -> Check? { o.checks.first { !$0.passed } }

            // A replayed nonce: the same evidence twice.
            let good = try await agent.evidence(nonce: try await nonce())
            #expect(try await post(good).passed)
            let replay = try await post(good)
            #expect(failed(replay)?.name == "nonce" && failed(replay)?.reason.contains("already used") == true, "\(replay.checks)")

            // An expired nonce (issued ten minutes ago with a two-minute lifetime).
            let old = try await p.service.issueNonce(vm: vm, now: Date().addingTimeInterval(-600))
            let expired = try await post(try await agent.evidence(nonce: try #require([UInt8](hex: old.nonce))))
            #expect(failed(expired)?.name == "nonce" && failed(expired)?.reason.contains("expired") == true)

            // A nonce this service never issued, and one issued for another VM.
            let unknown = try await post(try await agent.evidence(nonce: [UInt8](repeating: 0x5A, count: 32)))
            #expect(failed(unknown)?.reason.contains("never issued") == true)
            let foreign = try await p.service.issueNonce(vm: "other-vm")
            let stolen = try await post(try await agent.evidence(nonce: try #require([UInt8](hex: foreign.nonce))))
            #expect(failed(stolen)?.reason.contains("issued for other-vm") == true)

            // A tampered event log: one PCR 4 digest changed; it no longer replays to the quote.
            var log = try EventLog(parsing: guest.log)
            let i = try #require(log.events.lastIndex { $0.pcrIndex == 4 })
            log.events[i].digests = log.events[i].digests.map { TaggedDigest($0.algorithm,
                                                                             [UInt8](repeating: 0xAB, count: $0.digest.count)[...]) }
            var tamperedAgent = agent
            tamperedAgent.eventLog = try log.encoded()
            let tampered = try await post(try await tamperedAgent.evidence(nonce: try await nonce()))
            #expect(failed(tampered)?.name == "replay" && failed(tampered)?.reason.contains("PCR 4") == true)

            // A quote signed by another AK (a key of the same TPM that was never enrolled).
            let ek = try await guest.client.createEK(.eccP256)
            let otherAK = try await guest.client.createAK(ek: ek, template: TPMTemplates.akECCP256)
            try await guest.client.flushContext(ek.handle)
            let n = try await nonce()
            let sel = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: Array(0...15))])
            let otherQuote = try await guest.client.quote(otherAK.object.handle, qualifyingData: n, pcrs: sel)
            try await guest.client.flushContext(otherAK.object.handle)
            let wrongKey = try await post(try Evidence(quote: otherQuote, pcrs: try await guest.client.pcrRead(sel), eventLog: guest.log,
                                                       nonce: n))
            #expect(failed(wrongKey)?.name == "quote" && failed(wrongKey)?.reason.contains("enrolled attestation key") == true)

            // PCR values that are not the quoted ones.
            var edited = try await agent.evidence(nonce: try await nonce())
            edited.pcrs["sha256"]?["7"] = String(repeating: "00", count: 32)
            let mismatch = try await post(edited)
            #expect(failed(mismatch)?.name == "quote" && failed(mismatch)?.reason.lowercased().contains("digest") == true,
                    "\(mismatch.checks)")

            // None of these yielded a token; all are in history with their reasons.
            let (_, history) = try await p.get("/v1/vms/\(vm)/attestations?limit=100")
            let items = try #require(history["attestations"] as? [[String: Any]])
            #expect(items.count == 9 && items.filter { $0["passed"] as? Bool == true }.count == 2)
        }
    }

    @Test func enrolmentRefusals() async throws {
        guard let p = try await Platform.start(.sqlite) else { return }
        try await withTeardown({ await p.stop() }) {
            // An EK certificate from a CA the service does not trust.
            let strangers = try await Platform.start(.sqlite)
            let stranger = try await Guest.boot(try #require(strangers))
            await strangers?.stop()
            let vm = vmName()
            await #expect { _ = try await stranger.agent(p, vm: vm, token: p.admin).enroll() } throws: { e in
                (e as? AgentError)?.status == 403 && (e as? AgentError)?.message.contains("does not chain to a trusted EK root") == true
            }
            // An AK that is not in the EK's TPM: A's EK and certificate, B's AK. B cannot activate the
            // credential made for A's EK, and a guessed answer is refused (once: the challenge is spent).
            let a = try await Guest.boot(p), b = try await Guest.boot(p)
            let agentA = a.agent(p, vm: vm, token: p.admin), agentB = b.agent(p, vm: vm, token: p.admin)
            let (ekA, certA) = try await agentA.endorsementKey()
            let akB = try await agentB.attestationKey()
            let request = EnrolmentRequest(ekPublic: hexString(try ekA.publicArea.tpmBytes()),
                                           akPublic: hexString(try akB.publicArea.tpmBytes()),
                                           ekCertificate: Data(certA).base64EncodedString())
            let challenge = try await p.client(p.admin).call("POST", "/v1/vms/\(vm)/enrolments", body: request, as: EnrolmentChallenge.self,
                                                             step: "enrol")
            let ekB = try await agentB.endorsementKey().ek
            let blob = try TPM2BIDObject(tpmBytes: try #require([UInt8](hex: challenge.credentialBlob)))
            let enc = try TPM2BEncryptedSecret(tpmBytes: try #require([UInt8](hex: challenge.encryptedSecret)))
            await #expect(throws: TPMError.self) { _ = try await b.client.activateCredential(ak: akB, ek: ekB, blob: blob, secret: enc) }
            let guess = ActivationAnswer(secret: String(repeating: "42", count: 32))
            await #expect { _ = try await p.client(p.admin).call("POST", "/v1/vms/\(vm)/enrolments/\(challenge.id)/activation", body: guess,
                                                                 as: EnrolmentReceipt.self, step: "activate") } throws: { e in
                (e as? AgentError)?.status == 403 && (e as? AgentError)?.message.contains("activation") == true
            }
            await #expect { _ = try await p.client(p.admin).call("POST", "/v1/vms/\(vm)/enrolments/\(challenge.id)/activation", body: guess,
                                                                 as: EnrolmentReceipt.self, step: "activate") } throws: { e in
                (e as? AgentError)?.status == 404
            }
            // Nothing was enrolled: attestation for the VM is refused as not enrolled.
            let (status, _) = try await p.get("/v1/vms/\(vm)/enrolment")
            #expect(status == 404)
        }
    }

    @Test func policyFailuresSecureBootOffUnverifiedAndRevokedBootApplications() async throws {
        guard let p = try await Platform.start(.sqlite) else { return }
        try await withTeardown({ await p.stop() }) {
            // Secure Boot off: the evidence is sound, the policy is not met, and the boot applications
            // were verified by no authority.
            let vm = vmName()
            let off = try await Guest.boot(p, secureBoot: false)
            let o = try await off.agent(p, vm: vm, token: p.admin).attest()
            #expect(!o.passed && o.checks.first { $0.name == "replay" }?.passed == true)
            #expect(o.checks.first { $0.name == "secure-boot" }.map { !$0.passed && $0.reason.contains("off") } == true)
            #expect(
                o.checks.first { $0.name == "boot-applications" }.map {
                    !$0.passed && $0.reason.contains("not verified by any Secure Boot authority")
                } == true)
            #expect(o.baseline == .pending && o.baselineSource == nil, "an unhealthy boot is not learned")
            #expect(try await p.service.store.baseline(vm: vm) == nil)

            // A boot loader revoked in dbx that ran anyway (Secure Boot off): named as revoked.
            let vm2 = vmName()
            var grubDigest = ""
            let revoked = try await Guest.boot(p, secureBoot: false) { vars, esp in
                let grub = try PEImage(try #require(esp.files["/EFI/BOOT/grubx64.efi"]))
                let digest = try grub.authenticodeDigest(.sha256)
                grubDigest = hexString(digest)
                var dbx = vars.dbx
                dbx.lists.append(SignatureList(type: .certSHA256, signatureSize: 16 + 32,
                                               entries: [SignatureEntry(owner: .globalVariable, type: .certSHA256, data: digest)]))
                try vars.set("dbx", .imageSecurityDatabase, attributes: VariableStore.authenticatedAttributes, data: dbx.encoded)
            }
            let r = try await revoked.agent(p, vm: vm2, token: p.admin).attest()
            let check = try #require(r.checks.first { $0.name == "revoked" })
            #expect(!check.passed && check.reason.contains("grubx64.efi") && check.reason.contains(grubDigest), "\(check.reason)")

            // What-if: a draft policy evaluated without a nonce and without storing anything.
            let healthy = try await Guest.boot(p)
            let vm3 = vmName()
            let agent = healthy.agent(p, vm: vm3, token: p.admin)
            #expect(try await agent.attest().passed)
            let before = try await p.service.history(vm: vm3).count
            struct WhatIf: Encodable { var vm: String; var evidence: Evidence; var policy: AttestationPolicy }
            let draft = AttestationPolicy(forbiddenKernelArguments: ["console=ttyS0"],
                                          allowedBootDigests: [String(repeating: "ab", count: 32)])
            let e = try await agent.evidence(nonce: [UInt8](repeating: 1, count: 32))
            let w = try await p.client(try await p.token(.reader)).call(
                "POST", "/v1/what-if", body: WhatIf(vm: vm3, evidence: e, policy: draft), as: AttestationOutcome.self, step: "what-if")
            #expect(!w.passed && Set(w.checks.filter { !$0.passed }.map(\.name)) == ["kernel-command-line", "boot-chain"])
            #expect(try await p.service.history(vm: vm3).count == before)
        }
    }

    @Test func badInputIsRefusedWithReasonsAndChangesNothing() async throws {
        guard let p = try await Platform.start(.sqlite) else { return }
        try await withTeardown({ await p.stop() }) {
            let vm = vmName()
            let guest = try await Guest.boot(p)
            let agentToken = try await p.token(.agent, vm: vm)
            let agent = guest.agent(p, vm: vm, token: agentToken)
            _ = try await agent.enroll()
            let c = p.client(agentToken)
            let grant = try await c.call("POST", "/v1/vms/\(vm)/nonce", as: NonceGrant.self, step: "nonce")
            let good = try await agent.evidence(nonce: try #require([UInt8](hex: grant.nonce)))
            func status(_ method: String, _ path: String, _ body: Data?, token: String?,
                        contentType: String = "application/json") async throws -> (Int, String) {
                var r = URLRequest(url: try #require(URL(string: p.server.url + path)))
                r.timeoutInterval = 600   // an in-process server on a loaded machine answers late, not never
                r.httpMethod = method
                if let token { r.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
                if let body { r.httpBody = body; r.setValue(contentType, forHTTPHeaderField: "Content-Type") }
                let (data, response) = try await URLSession.shared.data(for: r)
                return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
            }
            let path = "/v1/vms/\(vm)/attestations"
            var (s, body) = try await status("POST", path, Data("{not json".utf8), token: agentToken)
            #expect(s == 400 && body.contains("not valid JSON"))
            (s, body) = try await status("POST", path, try JSONEncoder().encode(good), token: agentToken, contentType: "text/plain")
            #expect(s == 415 && body.contains("application/json"))
            (s, body) = try await status("POST", path, Data(repeating: 0x20, count: 25 << 20), token: agentToken)
            #expect(s == 413)
            (s, body) = try await status("POST", path, Data("{\"quote\":\"00\"}".utf8), token: agentToken)
            #expect(s == 400 && body.contains("missing field"))
            var garbage = good
            garbage.quote = "ff00ff00"
            (s, body) = try await status("POST", path, try JSONEncoder().encode(garbage), token: agentToken)
            #expect(s == 400 && body.contains("\"field\":\"quote\""), "\(body)")
            garbage = good
            garbage.eventLog = Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) }).base64EncodedString()
            (s, body) = try await status("POST", path, try JSONEncoder().encode(garbage), token: agentToken)
            #expect(s == 400 && body.contains("\"field\":\"eventLog\""), "\(body)")
            // Credentials: none, a bad one, another VM's agent, a reader trying to act.
            (s, _) = try await status("POST", path, try JSONEncoder().encode(good), token: nil)
            #expect(s == 401)
            (s, _) = try await status("POST", path, try JSONEncoder().encode(good), token: "tlt_forged")
            #expect(s == 401)
            (s, body) = try await status("POST", path, try JSONEncoder().encode(good), token: try await p.token(.agent, vm: "someone-else"))
            #expect(s == 403 && body.contains("someone-else"))
            (s, _) = try await status("GET", path, nil, token: try await p.token(.agent, vm: "someone-else"))
            #expect(s == 403)
            (s, _) = try await status("POST", path, try JSONEncoder().encode(good), token: try await p.token(.reader))
            #expect(s == 403)
            (s, _) = try await status("POST", "/v1/vms/\(vm)/baseline/approve", nil, token: agentToken)
            #expect(s == 403)
            (s, _) = try await status("GET", "/v1/agents", nil, token: nil)
            #expect(s == 401)
            (s, body) = try await status("POST", "/v1/vms/..%2Fetc/nonce", nil, token: p.admin)
            #expect(s == 400 || s == 404)
            // Nothing was written: no history, and the nonce is still fresh for the good evidence.
            #expect(try await p.service.history(vm: vm).isEmpty)
            let o = try await c.call("POST", path, body: good, as: AttestationOutcome.self, step: "attest")
            #expect(o.passed, "\(o.checks.filter { !$0.passed })")
            // Health, readiness, metrics and the OpenAPI document need no token.
            (s, body) = try await status("GET", "/readyz", nil, token: nil)
            #expect(s == 200 && body.contains("sqlite"))
            (s, body) = try await status("GET", "/metrics", nil, token: nil)
            #expect(
                s == 200 && body.contains("tlaunch_attestations_total{outcome=\"pass\"} 1")
                    && body.contains("tlaunch_http_responses_total{code=\"413\"} 1"))
            (s, body) = try await status("GET", "/openapi.json", nil, token: nil)
            let doc = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
            #expect(
                s == 200 && doc?["openapi"] as? String == "3.1.0" && (doc?["paths"] as? [String: Any])?["/v1/vms/{vm}/attestations"] != nil)
            // Every baseline status an outcome can carry is in the document (it once lacked pending).
            let outcome = ((doc?["components"] as? [String: Any])?["schemas"] as? [String: Any])?["AttestationOutcome"] as? [String: Any]
            let baseline = (outcome?["properties"] as? [String: Any])?["baseline"] as? [String: Any]
            #expect(Set(baseline?["enum"] as? [String] ?? []) == ["learned", "matches", "changed", "pending"],
                    "\(String(describing: baseline))")
        }
    }

    @Test func keyRotationKeepsIssuedTokensVerifiable() async throws {
        guard let p = try await Platform.start(.sqlite) else { return }
        try await withTeardown({ await p.stop() }) {
            let vm = vmName()
            let agent = try await Guest.boot(p).agent(p, vm: vm, token: p.admin)
            let before = try #require(try await agent.attest().token)
            let rotated = try await p.client(p.admin).call("POST", "/v1/keys/rotate", body: ["algorithm": "RS256"],
                                                           as: [String: String].self, step: "rotate")
            // Instances read keys through a short cache; this one was told directly.
            let after = try #require(try await agent.attest().token)
            let jwks = "\(p.server.url)/.well-known/jwks.json"
            let old = try await verifyWithPyJWT(before, jwksURL: jwks)
            let new = try await verifyWithPyJWT(after, jwksURL: jwks)
            #expect(old?["_alg"] as? String == "ES256" && new?["_alg"] as? String == "RS256")
            let (_, keys) = try await p.get("/.well-known/jwks.json")
            #expect((keys["keys"] as? [[String: Any]])?.count == 2)
            #expect(
                (keys["keys"] as? [[String: Any]])?.contains { $0["kid"] as? String == rotated["kid"] && $0["kty"] as? String == "RSA" }
                    == true)
        }
    }

    @Test func twoInstancesOnOnePostgreSQLServeOneFleet() async throws {
        guard let url = Backend.postgresURL() else { return }
        let db = try await Backend.freshDatabase(url)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-two-\(UUID().uuidString)")
        // One data folder (CAs) and one database; two processes' worth of service each.
        guard let a = try await Platform.start(.postgres, store: try await StorageLocation.open(db), dir: dir),
              let b = try await Platform.start(.postgres, store: try await StorageLocation.open(db), dir: dir) else { return }
        try await withTeardown({ await a.stop(); await b.stop() }) {
            let vm = vmName()
            let guest = try await Guest.boot(a)
            let token = try await a.token(.agent, vm: vm)
            // Enrol on A; nonce from A, evidence to B.
            _ = try await guest.agent(a, vm: vm, token: token).enroll()
            let grant = try await a.client(token).call("POST", "/v1/vms/\(vm)/nonce", as: NonceGrant.self, step: "nonce")
            let evidence = try await guest.agent(b, vm: vm, token: token).evidence(nonce: try #require([UInt8](hex: grant.nonce)))
            let onB = try await b.client(token).call("POST", "/v1/vms/\(vm)/attestations", body: evidence, as: AttestationOutcome.self,
                                                     step: "attest")
            #expect(onB.passed, "\(onB.checks.filter { !$0.passed })")
            // The same evidence replayed to A: the nonce was used, whichever instance saw it.
            let onA = try await a.client(token).call("POST", "/v1/vms/\(vm)/attestations", body: evidence, as: AttestationOutcome.self,
                                                     step: "attest")
            #expect(onA.checks.first { !$0.passed }?.reason.contains("already used") == true)
            // B's token verifies against A's JWKS (one key set in the database).
            if let claims = try await verifyWithPyJWT(try #require(onB.token), jwksURL: "\(a.server.url)/.well-known/jwks.json") {
                #expect(claims["sub"] as? String == vm)
            }
            // Both see the whole history.
            let seenByA = try await a.service.history(vm: vm).count, seenByB = try await b.service.history(vm: vm).count
            #expect(seenByA == 2 && seenByB == 2)
        }
    }

    @Test func swtpmAsTheGuestTPMEnrolsAndAttests() async throws {
        // swtpm manufactured by swtpm_setup (EK certificate from swtpm's local CA, trusted here
        // with --trust-ek-ca's equivalent); the virtual firmware's log extended into it.
        guard let sw = try await Interop.swtpm(manufacture: true) else { return }
        defer { sw.stop(); sw.removeState() }
        let caDir = "/var/lib/swtpm-localca"
        let pems = try ["swtpm-localca-rootca-cert.pem",
                        "issuercert.pem"].map { try String(contentsOfFile: "\(caDir)/\($0)", encoding: .utf8) }
        let cas = try pems.map { try Certificate(pemEncoded: $0) }
        guard let p = try await Platform.start(.sqlite, trust: cas) else { return }
        try await withTeardown({ await p.stop() }) {
            let boot = try await Guest.boot(p)
            let client = try TPMClient(tcti: sw.tcti)
            let log = try EventLog(parsing: boot.log)
            for e in log.events where e.type != .noAction {
                let digests = e.digests.filter { $0.algorithm == .sha256 || $0.algorithm == .sha1 }.map {
                    TPMTHA(hashAlg: $0.algorithm, digest: Array($0.digest))
                }
                try await client.pcrExtend(Int(e.pcrIndex), digests: digests)
            }
            let vm = vmName()
            let o = try await GuestAgent(tpm: client, service: p.client(try await p.token(.agent, vm: vm)), vm: vm,
                                         eventLog: boot.log).attest()
            #expect(o.passed, "\(o.checks.filter { !$0.passed })")
            #expect(o.baseline == .learned)
            await client.close()
        }
    }
}
