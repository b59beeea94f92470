import AttestationAPI
import Crypto
import Foundation
import MeasuredBoot
import TLaunchTestSupport
import TPM2
import Testing
import VirtualFirmware
import VirtualTPM
@testable import Attestation

/// A VM booted by the virtual firmware into our vTPM; the agent's side done with the TPM2 client.
struct BootedVM {
    let tpm: VirtualTPM
    let client: TPMClient
    let ak: TPMAttestationKey
    let log: [UInt8]

    static let quoted = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14]

    static func boot(secureBoot: Bool = true, keysDir: URL) async throws -> BootedVM {
        let keys = try PlatformKeys.loadOrCreate(directory: keysDir)
        let (esp, vars) = try SampleImages.sampleLinux(keys: keys)
        let tpm = VirtualTPM.ephemeral()
        let report = try VirtualFirmware(settings: FirmwareSettings(secureBoot: secureBoot, variables: vars,
                                                                    banks: [.sha1, .sha256])).launch(esp: esp, tpm: tpm)
        #expect(report.succeeded)
        let client = TPMClient(transport: InProcessTransport(tpm))
        let ek = try await client.createEK(.eccP256)
        let ak = try await client.createAK(ek: ek, template: TPMTemplates.akECCP256)
        try await client.flushContext(ek.handle)
        return BootedVM(tpm: tpm, client: client, ak: ak, log: try report.log.encoded())
    }

    func evidence(nonce: [UInt8], log: [UInt8]? = nil) async throws -> Evidence {
        let sel = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: Self.quoted)])
        let quote = try await client.quote(ak.object.handle, qualifyingData: nonce, pcrs: sel)
        var values: [Int: [UInt8]] = [:]
        for group in [Array(Self.quoted.prefix(8)), Array(Self.quoted.dropFirst(8))] {
            for bank in try await client.pcrRead(TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: group)])) {
                values.merge(bank.values) { a, _ in a }
            }
        }
        return try Evidence(quote: quote, pcrs: [TPMPCRBank(hashAlg: .sha256, values: values)], eventLog: log ?? self.log, nonce: nonce)
    }
}

@Suite("Attestation: evidence from a trusted launch, verified; failures with their own reasons")
struct AttestationTests {
    static func keysDir() -> URL { FileManager.default.temporaryDirectory.appendingPathComponent("tl-att-keys-\(UUID().uuidString)") }

    @Test func aHealthyTrustedLaunchPassesAndItsTokenVerifies() async throws {
        let dir = Self.keysDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let vm = try await BootedVM.boot(keysDir: dir)
        let nonce = Array(SHA256.hash(data: Data("nonce-1".utf8)))
        let evidence = try await vm.evidence(nonce: nonce)
        // The evidence travels as JSON.
        let wire = try JSONDecoder().decode(Evidence.self, from: JSONEncoder().encode(evidence))
        let result = AttestationVerifier.verify(wire, akPublic: vm.ak.publicArea, expectedNonce: nonce)
        #expect(result.passed, "\(result.failure.map { "\($0.name): \($0.reason)" } ?? "")")
        #expect(result.checks.map(\.name) == ["nonce", "quote", "coverage", "replay", "secure-boot", "boot-applications", "anomalies"])
        #expect(result.facts?.secureBoot.enabled == true)

        // A token: ES256, verified by PyJWT (an ordinary JWT library) against the published JWK Set.
        let issuer = TokenIssuer(issuer: "https://attest.tlaunch.test")
        let token = try issuer.token(for: result, vm: "vm-1", nonce: evidence.nonce, policy: .default)
        #expect(token.split(separator: ".").count == 3)
        // Debian's Python with python3-jwt and python3-cryptography (the test command installs them).
        let python = "/usr/bin/python3"
        guard FileManager.default.fileExists(atPath: python) else {
            if Interop.required { Issue.record("/usr/bin/python3 (python3-jwt, python3-cryptography) is required") }
            return
        }
        let jwksFile = dir.appendingPathComponent("jwks.json")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: issuer.jwks()).write(to: jwksFile)
        let script = """
        import json, sys, jwt
        jwks = json.load(open(sys.argv[1]))
        token = sys.argv[2]
        kid = jwt.get_unverified_header(token)["kid"]
        key = jwt.PyJWK([k for k in jwks["keys"] if k["kid"] == kid][0])
        claims = jwt.decode(token, key.key, algorithms=["ES256"], issuer="https://attest.tlaunch.test", audience="urn:tlaunch:platform")
        print(json.dumps({"status": claims["ear.status"], "secureboot": claims["x-tlaunch"]["secureboot"], "nonce": claims["eat_nonce"]}))
        """
        let (status, out, err) = try await Interop.run(python, ["-c", script, jwksFile.path, token])
        #expect(status == 0, "PyJWT: \(err)")
        #expect(out.contains("\"status\": \"affirming\"") && out.contains("\"secureboot\": true") && out.contains(evidence.nonce), "\(out)")
        // A token whose payload was changed does not verify.
        var parts = token.split(separator: ".").map(String.init)
        parts[1] = TokenIssuer.base64url(Data("{\"iss\":\"https://attest.tlaunch.test\",\"ear.status\":\"affirming\"}".utf8))
        let (forged, _, _) = try await Interop.run(python, ["-c", script, jwksFile.path, parts.joined(separator: ".")])
        #expect(forged != 0)
    }

    @Test func eachFailureHasItsOwnReason() async throws {
        let dir = Self.keysDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let vm = try await BootedVM.boot(keysDir: dir)
        let nonce = Array(SHA256.hash(data: Data("nonce-2".utf8)))
        let good = try await vm.evidence(nonce: nonce)

        // A replayed answer to an earlier nonce.
        let replayed = AttestationVerifier.verify(good, akPublic: vm.ak.publicArea,
                                                  expectedNonce: Array(SHA256.hash(data: Data("nonce-3".utf8))))
        #expect(replayed.failure?.name == "nonce")

        // A quote signed by another AK.
        let otherEK = try await vm.client.createEK(.eccP256)
        let other = try await vm.client.createAK(ek: otherEK, template: TPMTemplates.akECCP256)
        try await vm.client.flushContext(otherEK.handle)
        try await vm.client.flushContext(other.object.handle)
        let wrongKey = AttestationVerifier.verify(good, akPublic: other.publicArea, expectedNonce: nonce)
        #expect(wrongKey.failure?.name == "quote")

        // PCR values that are not the quoted ones.
        var edited = good
        edited.pcrs["sha256"]?["7"] = String(repeating: "00", count: 32)
        #expect(AttestationVerifier.verify(edited, akPublic: vm.ak.publicArea, expectedNonce: nonce).failure?.name == "quote")

        // A tampered event log (one digest changed): it no longer replays to the quote.
        var log = try EventLog(parsing: vm.log)
        let i = try #require(log.events.lastIndex { $0.pcrIndex == 4 })
        log.events[i].digests = log.events[i].digests.map { TaggedDigest($0.algorithm,
                                                                         [UInt8](repeating: 0xAB, count: $0.digest.count)[...]) }
        let tampered = try await vm.evidence(nonce: nonce, log: try log.encoded())
        let r = AttestationVerifier.verify(tampered, akPublic: vm.ak.publicArea, expectedNonce: nonce)
        #expect(r.failure?.name == "replay" && r.failure?.reason.contains("PCR 4") == true, "\(r.failure?.reason ?? "")")

        // Garbage evidence.
        var garbage = good
        garbage.quote = "zz"
        #expect(AttestationVerifier.verify(garbage, akPublic: vm.ak.publicArea, expectedNonce: nonce).failure?.name == "evidence")

        // A policy expecting other PCR values (e.g. a baseline) names the PCR.
        let policy = AttestationPolicy(expectedPCRs: ["4": String(repeating: "11", count: 32)])
        let changed = AttestationVerifier.verify(good, akPublic: vm.ak.publicArea, expectedNonce: nonce, policy: policy)
        #expect(changed.failure?.name == "pcr-4" && changed.checks.first { $0.name == "replay" }?.passed == true)
    }

    @Test func secureBootOffFailsThePolicyNotTheEvidence() async throws {
        let dir = Self.keysDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let vm = try await BootedVM.boot(secureBoot: false, keysDir: dir)
        let nonce = [UInt8](repeating: 5, count: 32)
        let result = AttestationVerifier.verify(try await vm.evidence(nonce: nonce), akPublic: vm.ak.publicArea, expectedNonce: nonce)
        #expect(!result.passed)
        #expect(result.checks.first { $0.name == "replay" }?.passed == true)
        #expect(result.failure?.name == "secure-boot" && result.failure?.reason.contains("off") == true)
        #expect(result.checks.first { $0.name == "boot-applications" }?.passed == false)
    }
}

/// The token's base64url (RFC 4648 §5, unpadded) agrees with Foundation's base64 mapped by hand,
/// for every length remainder and every byte value, from arrays, slices and Data.
@Test func base64urlAgreesWithFoundation() {
    var g = SystemRandomNumberGenerator()
    for n in 0..<200 {
        let bytes = (0..<n).map { i in n < 3 ? UInt8(truncatingIfNeeded: i &* 97) : UInt8.random(in: 0...255, using: &g) }
        let expected = Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        #expect(TokenIssuer.base64url(bytes) == expected)
        #expect(TokenIssuer.base64url(Data(bytes)) == expected)
    }
    let all = (0...255).map(UInt8.init)
    #expect(TokenIssuer.base64url(all[1...]) == Data(all[1...]).base64EncodedString().replacingOccurrences(of: "+", with: "-")
        .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: ""))
}

/// Attestation and token ids: RFC 9562 version-4 UUIDs that Foundation reads back, all distinct.
@Test func attestationIDsAreVersion4UUIDs() {
    var seen = Set<String>()
    for _ in 0..<2000 {
        let s = randomUUIDString()
        #expect(UUID(uuidString: s)?.uuidString.lowercased() == s)
        let chars = Array(s)
        #expect(chars.count == 36 && chars[14] == "4" && "89ab".contains(chars[19]))
        seen.insert(s)
    }
    #expect(seen.count == 2000)
}
