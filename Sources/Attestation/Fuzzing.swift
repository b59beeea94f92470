import AttestationAPI
import Crypto
import MeasuredBoot
import SwiftASN1
import Foundation
import TPM2

/// Entry points for fuzzing what the attestation service reads from the network: evidence (JSON
/// with hex/base64 TPM structures and an event log) and policy documents. The libFuzzer target
/// in `Fuzz/` calls these and the test suite replays the corpus. Each returns the invariant
/// violations found.
public enum AttestationFuzzing {
    /// A fixed attestation key (ECC P-256, restricted signing) that the evidence is checked against.
    static let akPublic: TPMTPublic = {
        let key = try! P256.Signing.PrivateKey(rawRepresentation: [UInt8](repeating: 0x11, count: 32))
        let raw = Array(key.publicKey.rawRepresentation)
        var t = TPMTemplates.akECCP256
        t.unique = .ecc(TPMSECCPoint(x: Array(raw.prefix(32)), y: Array(raw.suffix(32))))
        return t
    }()

    /// Evidence: decoding never traps; what decodes is verified to a result whose every check
    /// has a reason; a result never passes (nothing in the corpus is signed by the fixed AK).
    /// Policy documents: what decodes re-encodes and decodes to the same policy.
    public static func evidence(_ bytes: [UInt8]) -> [String] {
        var violations: [String] = []
        // The service's own reader agrees with Foundation's decoder: what one accepts the other
        // reads the same, except where ours is the stricter: a key given twice, a trailing comma
        // (which Foundation allows), and a string
        // inside a member neither reads that is not valid JSON (invalid UTF-8, RFC 8259 §8.1; an
        // unescaped control character or a bad escape, §7) — Foundation skips those unread.
        let foundation = try? JSONDecoder().decode(Evidence.self, from: Data(bytes))
        do throws(EvidenceJSONError) {
            let lean = try Evidence(json: bytes)
            if lean != foundation {
                violations.append("Evidence(json:) read \(lean), JSONDecoder \(foundation.map { "\($0)" } ?? "nothing")")
            }
        } catch {
            let stringFault = ["UTF-8", "control character", "escape", "surrogate", "hex digits"].contains { error.reason.contains($0) }
            let stricter =
                error.reason.contains("appears twice") || error.reason.contains("trailing comma") || (stringFault && error.inIgnoredMember)
            if foundation != nil, !stricter { violations.append("Evidence(json:) refused what JSONDecoder reads: \(error)") }
            if error.offset < 0 || error.offset > bytes.count { violations.append("error offset \(error.offset) outside the "
                                                                                + "\(bytes.count) bytes") }
        }
        if let e = foundation {
            if let d = try? DecodedEvidence(e) {
                let r = AttestationVerifier.verify(d, akPublic: akPublic, policy: .default)
                if r.checks.isEmpty { violations.append("verification produced no checks") }
                if r.checks.contains(where: { $0.reason.isEmpty }) { violations.append("a check has no reason") }
                if r.passed { violations.append("evidence passed without a valid signature by the fixed AK") }
            }
        }
        if let p = try? JSONDecoder().decode(AttestationPolicy.self, from: Data(bytes)) {
            do {
                let again = try JSONDecoder().decode(AttestationPolicy.self, from: try JSONEncoder().encode(p))
                if again != p { violations.append("a policy does not survive re-encoding") }
            } catch {
                violations.append("a decoded policy does not re-encode and decode: \(error)")
            }
        }
        return violations
    }
}

// MARK: Mutations of a passing attestation

/// A passing attestation made in software: a Secure Boot boot (firmware, PCR 7 configuration,
/// separators, shim → grub → kernel with a db authority, grub's commands and command line,
/// ExitBootServices) in SHA-1 and SHA-256, quoted over sha256 PCRs 0–15 by the fixed AK. The
/// mutation target changes it as an attacker without the AK's key can — the log, the PCR values
/// sent, the quote and signature bytes, the nonce — and checks that nothing but the same boot
/// passes.
public struct MutationFixture: Sendable {
    public let evidence: Evidence
    public let nonce: [UInt8]
    public let akPublic: TPMTPublic
    public let policy: AttestationPolicy
    /// What the genuine evidence verifies to.
    public let facts: BootFacts

    public static let shared: MutationFixture = make()

    static func make() -> MutationFixture {
        let key = try! P256.Signing.PrivateKey(rawRepresentation: [UInt8](repeating: 0x11, count: 32))
        let cert = try! AKCertificateAuthority.create(name: "Mutation db").certificate
        var der = SwiftASN1.DER.Serializer()
        try! der.serialize(cert)
        let certDER = der.serializedBytes
        let owner = [UInt8](repeating: 0x42, count: 16)
        func signatureList(_ type: EFIGUID, _ entries: [[UInt8]]) -> [UInt8] {
            let size = 16 + (entries.first?.count ?? 0)
            var out = type.bytes
            out += le32(UInt32(28 + size * entries.count)) + le32(0) + le32(UInt32(size))
            for e in entries { out += owner + e }
            return out
        }
        func imageLoad(_ path: String) -> [UInt8] {
            let name: [UInt8] = utf16LE(path) + [0, 0]
            let node: [UInt8] = [0x04, 0x04] + le16(UInt16(4 + name.count)) + name
            let dp: [UInt8] = node + [0x7F, 0xFF, 0x04, 0x00]
            var out: [UInt8] = le64(0x1000)
            out += le64(0x20000)
            out += le64(0)
            out += le64(UInt64(dp.count))
            return out + dp
        }
        var b = try! EventLogBuilder(banks: [.sha1, .sha256])
        b.measure(pcr: 0, type: .sCRTMVersion, data: utf16LE("1.0") + [0, 0])
        b.measure(pcr: 0, type: .efiPlatformFirmwareBlob, data: le64(0x80_0000) + le64(0x10_0000), measured: Array("firmware volume".utf8))
        b.measureVariable(pcr: 7, type: .efiVariableDriverConfig, guid: .globalVariable, name: "SecureBoot", data: [1])
        b.measureVariable(pcr: 7, type: .efiVariableDriverConfig, guid: .globalVariable, name: "PK",
                          data: signatureList(.certX509, [certDER]))
        b.measureVariable(pcr: 7, type: .efiVariableDriverConfig, guid: .globalVariable, name: "KEK",
                          data: signatureList(.certX509, [certDER]))
        b.measureVariable(pcr: 7, type: .efiVariableDriverConfig, guid: .imageSecurityDatabase, name: "db",
                          data: signatureList(.certX509, [certDER]))
        b.measureVariable(pcr: 7, type: .efiVariableDriverConfig, guid: .imageSecurityDatabase, name: "dbx",
                          data: signatureList(.certSHA256, [[UInt8](repeating: 0xDB, count: 32)]))
        b.measureVariable(pcr: 1, type: .efiVariableBoot, guid: .globalVariable, name: "BootOrder", data: [0, 0])
        b.separators(0...7)
        b.measureVariable(pcr: 7, type: .efiVariableAuthority, guid: .imageSecurityDatabase, name: "db", data: owner + certDER)
        for (i, path) in ["\\EFI\\BOOT\\BOOTX64.EFI", "\\EFI\\BOOT\\grubx64.efi"].enumerated() {
            b.append(pcr: 4, type: .efiBootServicesApplication,
                     digests: b.banks.map { TaggedDigest($0.algorithm, EventLogHash.hash($0.algorithm, Array("image \(i)".utf8))![...]) },
                     data: imageLoad(path))
        }
        b.measure(pcr: 8, type: .ipl, data: Array("grub_cmd: set root=(hd0,gpt1)".utf8) + [0], measured: Array("set root=(hd0,gpt1)".utf8))
        b.measure(pcr: 8, type: .ipl, data: Array("grub_cmd: linux /vmlinuz root=/dev/vda2 ro quiet".utf8) + [0],
                  measured: Array("linux /vmlinuz root=/dev/vda2 ro quiet".utf8))
        b.measure(pcr: 9, type: .ipl, data: Array("(hd0,gpt1)/vmlinuz".utf8) + [0], measured: Array("kernel".utf8))
        b.measure(pcr: 8, type: .ipl, data: Array("kernel_cmdline: /vmlinuz root=/dev/vda2 ro quiet".utf8) + [0],
                  measured: Array("/vmlinuz root=/dev/vda2 ro quiet".utf8))
        b.append(pcr: 4, type: .efiBootServicesApplication,
                 digests: b.banks.map { TaggedDigest($0.algorithm, EventLogHash.hash($0.algorithm, Array("kernel".utf8))![...]) },
                 data: imageLoad("\\vmlinuz"))
        b.measure(pcr: 14, type: .ipl, data: Array("MokList".utf8) + [0], measured: [1, 2, 3])
        b.measure(pcr: 5, type: .efiAction, data: Array("Exit Boot Services Invocation".utf8))
        let log = b.log
        let replayed = log.replay()
        let pcrs = Array(0...15)
        var values: [Int: [UInt8]] = [:]
        for p in pcrs { values[p] = replayed[.sha256, UInt32(p)] ?? log.initialValue(pcr: UInt32(p), size: 32) }
        let nonce = [UInt8](repeating: 0x5A, count: 32)
        let quote = sign(key: key, nonce: nonce, values: values)
        let evidence = try! Evidence(quote: quote, pcrs: [TPMPCRBank(hashAlg: .sha256, values: values)], eventLog: try! log.encoded(),
                                     nonce: nonce)
        let r = AttestationVerifier.verify(evidence, akPublic: akPublic, expectedNonce: nonce, policy: .default)
        precondition(r.passed, "the mutation fixture must pass: \(r.checks.filter { !$0.passed })")
        return MutationFixture(evidence: evidence, nonce: nonce, akPublic: akPublic, policy: .default, facts: r.facts!)
    }

    /// A quote of sha256 `values` (in PCR order) by `key`, as a TPM signs it.
    static func sign(key: P256.Signing.PrivateKey, nonce: [UInt8], values: [Int: [UInt8]]) -> TPMSignedAttest {
        let selection = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: values.keys.sorted())])
        let digest = Array(SHA256.hash(data: values.keys.sorted().flatMap { values[$0]! }))
        var clock = TPMSClockInfo()
        clock.clock = 1000; clock.resetCount = 1; clock.safe = true
        let attest = TPMSAttest(qualifiedSigner: TPM2BName(try! AttestationFuzzing.akPublic.name()), extraData: TPM2BData(nonce),
                                clockInfo: clock,
                                firmwareVersion: 1, attested: .quote(TPMSQuoteInfo(pcrSelect: selection, pcrDigest: TPM2BDigest(digest))))
        let bytes = try! attest.tpmBytes()
        let raw = Array(try! key.signature(for: bytes).rawRepresentation)
        return TPMSignedAttest(attestBytes: bytes, attest: attest,
                               signature: .ecdsa(TPMSSignatureECC(hash: .sha256, r: Array(raw.prefix(32)), s: Array(raw.suffix(32)))))
    }

    static var akPublic: TPMTPublic { AttestationFuzzing.akPublic }
    static func utf16LE(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        for u in s.utf16 { out.append(UInt8(u & 0xFF)); out.append(UInt8(u >> 8)) }
        return out
    }
    static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
}

extension AttestationFuzzing {
    /// What a mutation program did: whether the result passed and whether anything changed.
    public struct MutationReport: Sendable {
        public var passed: Bool
        public var changed: Bool
        public var violations: [String]
    }

    /// Reads `bytes` as a program of mutations of the fixture's evidence (each: an operation
    /// byte and its operands), verifies the result and reports a violation when it passes with
    /// other facts than the genuine boot's (claims and event positions aside). Nothing is
    /// re-signed: the attacker has no AK key, so the TPM's signed statement stays the fixture's.
    public static func evidenceMutation(_ bytes: [UInt8]) -> [String] { mutate(bytes).violations }

    public static func mutate(_ bytes: [UInt8]) -> MutationReport {
        let f = MutationFixture.shared
        var evidence = f.evidence
        var nonce = f.nonce
        guard var log = try? EventLog(parsing: [UInt8](Data(base64Encoded: evidence.eventLog)!)) else {
            return MutationReport(passed: false, changed: false, violations: ["the fixture's log does not parse"])
        }
        var rawLog: [UInt8]?
        var r = ByteCursor(bytes)
        let prefixes = ["grub_cmd: ", "kernel_cmdline: ", "grub_cmd ", "grub_kernel_cmdline ", ""]
        let types: [EventType] = [.ipl, .efiAction, .separator, .efiVariableDriverConfig, .efiVariableAuthority,
                                  .efiBootServicesApplication, .noAction, .eventTag, .action, .efiVariableBoot]
        while let op = r.next() {
            let n = max(log.events.count, 1)
            switch op % 16 {
            case 0:   // a byte of one event's data
                let i = Int(r.next() ?? 0) % n, at = Int(r.next() ?? 0), x = r.next() ?? 1
                guard i < log.events.count, !log.events[i].data.isEmpty else { continue }
                var d = Array(log.events[i].data); d[at % d.count] ^= x == 0 ? 1 : x
                log.events[i].data = d[...]
            case 1:   // a byte of one digest
                let i = Int(r.next() ?? 0) % n, bank = Int(r.next() ?? 0), at = Int(r.next() ?? 0)
                guard i < log.events.count, !log.events[i].digests.isEmpty else { continue }
                let k = bank % log.events[i].digests.count
                var d = Array(log.events[i].digests[k].digest); if !d.isEmpty { d[at % d.count] ^= 0x80 }
                log.events[i].digests[k] = TaggedDigest(log.events[i].digests[k].algorithm, d[...])
            case 2:   // the event type
                let i = Int(r.next() ?? 0) % n
                if i < log.events.count { log.events[i].type = types[Int(r.next() ?? 0) % types.count] }
            case 3:   // the PCR index
                let i = Int(r.next() ?? 0) % n
                if i < log.events.count { log.events[i].pcrIndex = UInt32((r.next() ?? 0) % 24) }
            case 4:   // drop an event
                let i = Int(r.next() ?? 0) % n
                if i > 0, i < log.events.count { log.events.remove(at: i) }
            case 5:   // repeat an event
                let i = Int(r.next() ?? 0) % n
                if i > 0, i < log.events.count { log.events.insert(log.events[i], at: i + 1) }
            case 6:   // swap two events
                let i = Int(r.next() ?? 0) % n, j = Int(r.next() ?? 0) % n
                if i > 0, j > 0, i < log.events.count, j < log.events.count { log.events.swapAt(i, j) }
            case 7:   // relabel a string event (grub's label is not in its digest)
                let i = Int(r.next() ?? 0) % n, p = Int(r.next() ?? 0) % prefixes.count
                guard i < log.events.count else { continue }
                var text = String(decoding: log.events[i].data, as: UTF8.self)
                for q in prefixes where !q.isEmpty && text.hasPrefix(q) { text.removeFirst(q.count); break }
                log.events[i].data = Array((prefixes[p] + text).utf8)[...]
            case 8:   // another event's data
                let i = Int(r.next() ?? 0) % n, j = Int(r.next() ?? 0) % n
                if i < log.events.count, j < log.events.count { log.events[i].data = log.events[j].data }
            case 9:   // a new event with the given bytes (not extended into any PCR)
                let pcr = UInt32((r.next() ?? 0) % 24), t = types[Int(r.next() ?? 0) % types.count]
                let len = Int(r.next() ?? 0) % 48
                let data = (0..<len).map { _ in r.next() ?? 0 }
                let at = 1 + Int(r.next() ?? 0) % n
                let digests = log.banks.map { TaggedDigest($0.algorithm, (EventLogHash.hash($0.algorithm, data) ?? [])[...]) }
                log.events.insert(Event(pcrIndex: pcr, type: t, digests: digests, data: data), at: min(at, log.events.count))
            case 10:  // a PCR value sent
                let p = String((r.next() ?? 0) % 16), at = Int(r.next() ?? 0) % 64
                if var hex = evidence.pcrs["sha256"]?[p], hex.count == 64 {
                    let idx = hex.index(hex.startIndex, offsetBy: at)
                    hex.replaceSubrange(idx...idx, with: hex[idx] == "0" ? "1" : "0")
                    evidence.pcrs["sha256"]?[p] = hex
                }
            case 11:  // a PCR value left out, or a bank added
                if (r.next() ?? 0) & 1 == 0 { evidence.pcrs["sha256"]?[String((r.next() ?? 0) % 16)] = nil }
                else { evidence.pcrs["sha1"] = ["0": String(repeating: "00", count: 20)] }
            case 12:  // a byte of the quote
                var q = [UInt8](hex: evidence.quote) ?? []
                if !q.isEmpty { q[Int(r.next() ?? 0) % q.count] ^= 0x01; evidence.quote = hexString(q) }
            case 13:  // a byte of the signature
                var s = [UInt8](hex: evidence.signature) ?? []
                if !s.isEmpty { s[Int(r.next() ?? 0) % s.count] ^= 0x01; evidence.signature = hexString(s) }
            case 14:  // the nonce answered
                nonce[Int(r.next() ?? 0) % nonce.count] ^= 0x01
                evidence.nonce = hexString(nonce)
            default:  // a raw byte of the encoded log
                var raw = rawLog ?? ((try? log.encoded()) ?? [])
                if !raw.isEmpty { raw[(Int(r.next() ?? 0) << 8 | Int(r.next() ?? 0)) % raw.count] ^= r.next() ?? 0xFF }
                rawLog = raw
            }
        }
        let encoded = rawLog ?? ((try? log.encoded()) ?? [])
        evidence.eventLog = Data(encoded).base64EncodedString()
        let changed = evidence != f.evidence
        let result = AttestationVerifier.verify(evidence, akPublic: f.akPublic, expectedNonce: f.nonce, policy: f.policy)
        var violations: [String] = []
        if result.checks.contains(where: { $0.reason.isEmpty }) { violations.append("a check has no reason") }
        if result.passed {
            if let facts = result.facts, !Self.sameOrFewer(facts, than: f.facts) {
                violations.append("a mutated evidence passed with other facts than the signed boot's (\(Self.differences(facts, f.facts)))")
            }
            if result.facts == nil { violations.append("a pass without facts") }
        }
        return MutationReport(passed: result.passed, changed: changed, violations: violations)
    }
}

extension AttestationFuzzing {
    /// Whether `mutated` says nothing the signed boot did not: every fact a verdict can depend on
    /// (Secure Boot state and configuration, authorities, the boot chain's digests, kernel command
    /// lines, grub's commands, anomalies) is equal; informational facts that rest on an event's
    /// type — a label the TPM does not sign — may be missing (BootOrder and boot options, shim's
    /// MOK state, systemd-stub records), never different. Claims and positions are set aside
    /// (`BootFacts.withoutClaims`).
    /// The facts that differ, by name (for a finding's report).
    static func differences(_ a: BootFacts, _ b: BootFacts) -> String {
        let x = Mirror(reflecting: a.withoutClaims()).children, y = Mirror(reflecting: b.withoutClaims()).children
        return zip(x, y).filter { String(describing: $0.value) != String(describing: $1.value) }
            .map {
                "\($0.label ?? "?"): \(String(describing: $0.value).prefix(300)) instead of \(String(describing: $1.value).prefix(300))"
            }.joined(separator: "; ")
    }

    public static func sameOrFewer(_ mutated: BootFacts, than genuine: BootFacts) -> Bool {
        var m = mutated.withoutClaims()
        let g = genuine.withoutClaims()
        if m.bootOrder == nil { m.bootOrder = g.bootOrder }
        if m.bootOptions.allSatisfy(g.bootOptions.contains) { m.bootOptions = g.bootOptions }
        if m.shim == nil { m.shim = g.shim }
        if m.uki.allSatisfy(g.uki.contains) { m.uki = g.uki }
        return m == g
    }
}

/// Reads a fuzz input byte by byte.
struct ByteCursor {
    let bytes: [UInt8]
    var at = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    mutating func next() -> UInt8? {
        guard at < bytes.count else { return nil }
        defer { at += 1 }
        return bytes[at]
    }
}
