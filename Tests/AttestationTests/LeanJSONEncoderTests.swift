import AttestationAPI
import Foundation
import Testing
@testable import Attestation

/// The service's JSON encoder writes what Foundation's does (same JSON values, readable by
/// JSONDecoder into the same values) for everything the service encodes.
@Suite struct LeanJSONEncoderTests {
    enum Colour: String, Codable, Equatable { case red, green }
    struct Inner: Codable, Equatable {
        var name: String
        var digests: [String: String]
        var bytes: Data
        var when: Date
        var link: URL
        var maybe: Int?
    }
    struct Sample: Codable, Equatable {
        var text: String
        var tricky: String
        var flags: [Bool]
        var ints: [Int64]
        var big: UInt64
        var small: Int8
        var doubles: [Double]
        var colour: Colour
        var nothing: String?
        var nested: [Inner]
        var grid: [[Int]]
        var byNumber: [Int: String]
        var empty: [String: Int]
    }
    class Base: Codable { var base = 1 }
    final class Derived: Base, @unchecked Sendable {
        var own = "x"
        enum K: CodingKey { case own }
        override init() { super.init() }
        required init(from decoder: any Decoder) throws { try super.init(from: decoder) }
        override func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: K.self)
            try c.encode(own, forKey: .own)
            try super.encode(to: c.superEncoder())
        }
    }

    static let sample = Sample(
        text: "plain", tricky: "quote \" backslash \\ slash / newline \n tab \t nul \u{0} bell \u{7} ünïcødé ✓ 𝄞 \u{2028}",
        flags: [true, false], ints: [0, -1, .max, .min], big: .max, small: -128,
        doubles: [0, 2, -2.5, 0.1, 1e300, .leastNonzeroMagnitude, 123456789.125],
        colour: .green, nothing: nil,
        nested: [Inner(name: "a", digests: ["sha256": "00ff", "sha1": "aa", "sha384": "bb"], bytes: Data([0, 1, 0xfb, 0xff]),
                       when: Date(timeIntervalSinceReferenceDate: 12.5),
                       link: URL(string: "https://example.test/a/b?c=d")!, maybe: 3),
                 Inner(name: "b", digests: [:], bytes: Data(), when: Date(timeIntervalSinceReferenceDate: -1),
                       link: URL(string: "file:///tmp/x")!, maybe: nil)],
        grid: [[], [1], [2, 3]], byNumber: [1: "one", 20: "twenty"], empty: [:])

    func jsonValue(_ data: Data) throws -> NSObject {
        try #require(JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) as? NSObject)
    }

    /// A value handed over already encoded (a boot's components, reused by every attestation of
    /// that boot) writes the same bytes as the value encoded in place — and an encoder that does
    /// not know pre-encoded JSON (Foundation's) encodes the value itself.
    @Test func preEncodedValuesWriteTheSameBytes() throws {
        struct Holder: Encodable {
            var first: String
            var nested: [Inner]?
            var json: [UInt8]?
            enum CodingKeys: String, CodingKey { case first, nested }
            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(first, forKey: .first)
                if let nested, let json { try c.encode(PreEncoded(value: nested, json: json), forKey: .nested) }
                else { try c.encodeIfPresent(nested, forKey: .nested) }
            }
        }
        let inner = Self.sample.nested
        let plain = try LeanJSONEncoder().encodeBytes(Holder(first: "x", nested: inner, json: nil))
        let pre = try LeanJSONEncoder().encodeBytes(Holder(first: "x", nested: inner, json: try LeanJSONEncoder().encodeBytes(inner)))
        #expect(pre == plain)
        // The bytes are taken as given: a different pre-encoding shows (this is what the cache's
        // key must guard — the components are the verified boot's, made from that same boot).
        let other = try LeanJSONEncoder().encodeBytes(Holder(first: "x", nested: inner, json: Array("[]".utf8)))
        #expect(other != plain && String(decoding: other, as: UTF8.self).contains("\"nested\":[]"))
        let foundation = JSONEncoder()
        foundation.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let viaFoundation = try foundation.encode(Holder(first: "x", nested: inner, json: Array("[]".utf8)))
        #expect(try jsonValue(viaFoundation) == (try jsonValue(Data(plain))))
    }

    @Test func sameJSONAsFoundation() throws {
        let foundation = JSONEncoder()
        foundation.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        for sorted in [true, false] {
            let lean = try LeanJSONEncoder(sortedKeys: sorted).encode(Self.sample)
            #expect(try jsonValue(lean) == jsonValue(try foundation.encode(Self.sample)))
            #expect(try JSONDecoder().decode(Sample.self, from: lean) == Self.sample)
        }
        // Top-level scalars, optionals and arrays.
        #expect(String(decoding: try LeanJSONEncoder().encode(42), as: UTF8.self) == "42")
        #expect(String(decoding: try LeanJSONEncoder().encode("a\"b"), as: UTF8.self) == #""a\"b""#)
        #expect(String(decoding: try LeanJSONEncoder().encode(Optional<Int>.none), as: UTF8.self) == "null")
        #expect(String(decoding: try LeanJSONEncoder().encode([1, 2]), as: UTF8.self) == "[1,2]")
        // Sorted keys are sorted; otherwise the type's own order is kept.
        struct Order: Encodable { var b = 1; var a = 2; var c = 3 }
        #expect(String(decoding: try LeanJSONEncoder().encode(Order()), as: UTF8.self) == #"{"a":2,"b":1,"c":3}"#)
        #expect(String(decoding: try LeanJSONEncoder(sortedKeys: false).encode(Order()), as: UTF8.self) == #"{"b":1,"a":2,"c":3}"#)
        // A superclass's fields through superEncoder().
        let derived = try LeanJSONEncoder().encode(Derived())
        #expect(try jsonValue(derived) == jsonValue(try foundation.encode(Derived())))
    }

    /// Strings are scanned eight bytes at a time: escapes at every position and length read back
    /// as the same string.
    @Test func everyStringReadsBackTheSame() throws {
        var g = SystemRandomNumberGenerator()
        let pieces: [String] = ["a", "\"", "\\", "\n", "\u{1}", "\u{1f}", " ", "~", "é", "✓", "𝄞", "/", "\u{7f}"]
        for length in 0..<120 {
            for _ in 0..<8 {
                let s = (0..<length).map { _ in pieces.randomElement(using: &g)! }.joined()
                let bytes = try LeanJSONEncoder().encode(s)
                #expect(try JSONDecoder().decode(String.self, from: bytes) == s)
                #expect(!bytes.dropFirst().dropLast().contains(where: { $0 < 0x20 }), "a control character left unescaped")
            }
        }
    }

    @Test func notANumberIsRefusedWithItsPath() throws {
        struct Bad: Encodable { var values: [Double] }
        #expect { _ = try LeanJSONEncoder().encode(Bad(values: [1, .nan])) } throws: { e in
            guard case EncodingError.invalidValue(_, let c) = e else { return false }
            return c.codingPath.map(\.stringValue) == ["values", "Index 1"]
        }
        #expect(throws: EncodingError.self) { _ = try LeanJSONEncoder().encode([Double.infinity]) }
    }

    /// A value encoded through its `Encodable` conformance only (the wrapper is not self-writing):
    /// the generic path a `JSONSelfWriting` value's own bytes are compared with.
    struct ThroughEncodable<T: Encodable>: Encodable {
        let value: T
        func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
    }

    /// A check writes itself (`JSONSelfWriting`): the same bytes as the generic path through its
    /// `Encodable` conformance, in both key orders, for every name, outcome and awkward reason.
    @Test func aCheckWritesTheBytesItsEncodableConformanceWrites() throws {
        let names: [CheckName] = [.evidence, .nonce, .akCertificate, .quote, .coverage, .counters, .replay, .imaReplay,
                                  .bootApplications, .authority, .bootChain, .revoked, .secureBoot, .anomalies,
                                  .kernelCommandLine, .dbx, .pcr("7"), .ima, .baseline, "not-a-known-check"]
        let reasons = ["", "plain words", "quote \" backslash \\ slash / tab\t newline\n return\r ctrl \u{01}\u{1f} del \u{7f}",
                       "é ü 😀 — and more than eight bytes before the end: \"", String(repeating: "x", count: 200)]
        var compared = 0
        for name in names {
            for outcome in CheckOutcome.allCases {
                for reason in reasons {
                    let checks = [Check(name, outcome: outcome, reason), Check(.quote, passed: true, "second")]
                    for sorted in [true, false] {
                        let own = try LeanJSONEncoder(sortedKeys: sorted).encodeBytes(checks)
                        let generic = try LeanJSONEncoder(sortedKeys: sorted).encodeBytes(checks.map { ThroughEncodable(value: $0) })
                        #expect(own == generic, "\(name) \(outcome) \(reason.prefix(20)) sorted \(sorted)")
                        #expect(try JSONDecoder().decode([Check].self, from: Data(own)) == checks)
                        compared += 1
                    }
                }
            }
        }
        #expect(compared == names.count * CheckOutcome.allCases.count * reasons.count * 2)
        // Foundation's encoder, which knows nothing of self-writing, agrees with the sorted bytes.
        let foundation = JSONEncoder()
        foundation.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let sample = [Check(.secureBoot, passed: false, "disabled / \"off\"")]
        #expect(try foundation.encode(sample) == Data(try LeanJSONEncoder().encodeBytes(sample)))
    }

    /// The token's claims write their checks and boot stages themselves: the generic path's bytes.
    @Test func theTokensChecksAndStagesWriteTheBytesTheirEncodableConformancesWrite() throws {
        typealias Claims = EARClaims.TrustedLaunchClaims
        let words = ["", "secure-boot", "quote \" back \\ /slash\n\u{01}", "é 😀 longer than eight bytes", "\\EFI\\BOOT\\BOOTX64.EFI"]
        var checks: [Claims.Check] = [], stages: [Claims.Stage] = []
        for a in words {
            for b in words {
                checks.append(.init(name: a, category: b, outcome: a + b))
                stages.append(.init(path: a, sha256: b))
            }
        }
        for sorted in [true, false] {
            let encoder = LeanJSONEncoder(sortedKeys: sorted)
            #expect(try encoder.encodeBytes(checks) == encoder.encodeBytes(checks.map { ThroughEncodable(value: $0) }))
            #expect(try encoder.encodeBytes(stages) == encoder.encodeBytes(stages.map { ThroughEncodable(value: $0) }))
        }
    }

    /// Awkward text for the self-writing tests: empty, escapes, multi-byte, long.
    static let awkward = ["", "plain", "quote \" back \\ /slash\n\u{01}\u{1f}", "é 😀 longer than eight bytes",
                          "\\EFI\\BOOT\\BOOTX64.EFI", String(repeating: "y", count: 90)]

    /// `value`'s own bytes against the generic path's, in both key orders, and read back equal.
    func expectSameBytes<T: Encodable & Decodable & Equatable>(_ value: T, _ what: String) throws {
        for sorted in [true, false] {
            let own = try LeanJSONEncoder(sortedKeys: sorted).encodeBytes(value)
            let generic = try LeanJSONEncoder(sortedKeys: sorted).encodeBytes(ThroughEncodable(value: value))
            #expect(own == generic, "\(what), sorted \(sorted)")
            #expect(try JSONDecoder().decode(T.self, from: Data(own)) == value, "\(what) reads back")
        }
    }

    /// An outcome writes itself, with its policy, baseline source, facts, changes and checks: the
    /// generic path's bytes in both key orders for every combination of its optional fields left out
    /// or present (and theirs), with awkward text in each.
    @Test func anOutcomeWritesTheBytesItsEncodableConformanceWrites() throws {
        let words = Self.awkward
        var compared = 0
        for mask in 0..<(1 << 12) {
            func on(_ bit: Int) -> Bool { mask & (1 << bit) != 0 }
            let w = { (k: Int) in words[(mask + k) % words.count] }
            var facts = try JSONDecoder().decode(AttestationOutcome.FactsSummary.self, from: Data(#"{"bootChain":[]}"#.utf8))
            facts.secureBoot = on(6) ? on(7) : nil
            facts.bootChain = on(8) ? [w(1), w(2)] : []
            facts.kernelCommandLine = on(9) ? w(3) : nil
            facts.pcrDigest = on(10) ? w(4) : nil
            let change = BaselineChange(change: on(11) ? .changed : .removed, key: w(0), pcr: UInt32(mask % 24),
                                        kind: .init(rawValue: w(5)), name: w(1), from: on(0) ? w(2) : nil, to: on(1) ? w(3) : nil,
                                        fromSigner: on(2) ? w(4) : nil, toSigner: on(3) ? w(5) : nil)
            let outcome = AttestationOutcome(
                id: w(0), vm: w(1), time: w(2), passed: on(4), status: w(3),
                checks: on(5) ? [Check(.quote, passed: true, w(4)), Check(.baseline, outcome: .unknown, w(5))] : [],
                baseline: on(0) ? BaselineStatus.allCases[mask % BaselineStatus.allCases.count] : nil,
                baselineSource: on(1) ? .init(source: BaselineSource.allCases[mask % BaselineSource.allCases.count], since: w(3),
                                              attestationId: on(2) ? w(4) : nil) : nil,
                changes: on(3) ? [change, change] : [], rebooted: on(7) ? on(8) : nil, token: on(9) ? w(5) : nil,
                tokenID: on(10) ? w(0) : nil, policy: .init(id: w(1), version: mask - 100), facts: on(11) ? facts : nil)
            try expectSameBytes(outcome, "outcome \(mask)")
            try expectSameBytes(change, "change \(mask)")
            try expectSameBytes(facts, "facts \(mask)")
            try expectSameBytes(outcome.policy, "policy \(mask)")
            if let source = outcome.baselineSource { try expectSameBytes(source, "baseline source \(mask)") }
            try expectSameBytes(BaselineComponent(key: w(0), pcr: UInt32(mask), kind: .init(rawValue: w(1)), name: w(2), value: w(3),
                                                  signer: on(5) ? w(4) : nil), "component \(mask)")
            compared += 1
        }
        #expect(compared == 4096)
    }

    /// A stored result writes itself: the outcome, the components (from their JSON made once when
    /// the keys are sorted, as the generic path takes them) and the AK's name.
    @Test func aStoredResultWritesTheBytesItsEncodableConformanceWrites() throws {
        let outcome = AttestationOutcome(
            id: "id", vm: "web-01", time: "2026-12-08T00:00:00Z", passed: true, status: "affirming",
            checks: [Check(.quote, passed: true, "signed")], baseline: .matches, baselineSource: nil, changes: [], rebooted: false,
            token: nil, tokenID: "t", policy: .init(id: "default", version: 1), facts: nil)
        let components = Self.awkward.enumerated().map { i, w in
            BaselineComponent(key: "PCR \(i) \(w)", pcr: UInt32(i), kind: .bootApplication, name: w, value: w + w,
                              signer: i % 2 == 0 ? w : nil)
        }
        let componentsJSON = try LeanJSONEncoder().encodeBytes(components.map { ThroughEncodable(value: $0) })
        for akName in [nil, "000b" + String(repeating: "ab", count: 32)] {
            for parts in [nil, components] {
                let plain = StoredResult(outcome: outcome, components: parts, akName: akName)
                let withJSON = StoredResult(outcome: outcome, components: parts, akName: akName, componentsJSON: componentsJSON)
                for sorted in [true, false] {
                    let encoder = LeanJSONEncoder(sortedKeys: sorted)
                    let generic = try encoder.encodeBytes(ThroughEncodable(value: plain))
                    #expect(try encoder.encodeBytes(plain) == generic)
                    // The components' JSON made once is the sorted form: unsorted, they are written anew.
                    #expect(try encoder.encodeBytes(withJSON) == generic)
                }
            }
        }
    }

    /// A token's claims write themselves: the generic path's bytes in both key orders for every
    /// combination of the optional claims, and the EAR's member order (RFC-style `iss` first;
    /// the verifier's developer before its build) in every process, not a dictionary's.
    @Test func aTokensClaimsWriteTheBytesTheirEncodableConformanceWrites() throws {
        typealias Claims = EARClaims.TrustedLaunchClaims
        let words = Self.awkward
        for mask in 0..<(1 << 7) {
            func on(_ bit: Int) -> Bool { mask & (1 << bit) != 0 }
            let w = { (k: Int) in words[(mask + k) % words.count] }
            let claims = EARClaims(
                iss: w(0), sub: w(1), aud: w(2), iat: 1_700_000_000 + mask, nbf: -mask, exp: mask * 300, jti: w(3), eatNonce: w(4),
                earStatus: w(5),
                submods: .init(trustedLaunch: .init(earStatus: w(1), vector: .init(instanceIdentity: 2, hardware: 96, executables: 0,
                                                                                  configuration: mask, fileSystem: -1))),
                tlaunch: Claims(
                    secureboot: on(0), bootChain: on(1) ? [.init(path: w(2), sha256: w(3))] : [], kernelCommandLine: w(4), pcrDigest: w(5),
                    policy: .init(id: w(0), version: mask), checks: [.init(name: w(1), category: w(2), outcome: w(3))],
                    vtpm: .init(ekCertificateSubject: w(4), ekCertificateSha256: w(5), akName: w(0)),
                    baseline: on(2) ? w(1) : nil,
                    baselineSource: on(3) ? .init(source: w(2), since: w(3), firstUse: on(4), attestationId: on(5) ? w(4) : nil) : nil,
                    rebooted: on(6) ? on(0) : nil, attestationId: on(4) ? w(5) : nil))
            for sorted in [true, false] {
                let encoder = LeanJSONEncoder(sortedKeys: sorted)
                #expect(try encoder.encodeBytes(claims) == encoder.encodeBytes(ThroughEncodable(value: claims)), "claims \(mask) \(sorted)")
            }
            let text = String(decoding: try LeanJSONEncoder(sortedKeys: false).encodeBytes(claims), as: UTF8.self)
            #expect(text.hasPrefix("{\"iss\":"))
            #expect(text.contains("\"ear.verifier-id\":{\"developer\":\"TrustedLaunch\",\"build\":\"tlaunch attestation 1\"}"))
            #expect(text.contains("\"submods\":{\"trusted-launch\":{\"ear.status\":"))
        }
        let header = JWSHeader(alg: "ES256", typ: "JWT", kid: "k \"1\"")
        for sorted in [true, false] {
            let encoder = LeanJSONEncoder(sortedKeys: sorted)
            #expect(try encoder.encodeBytes(header) == encoder.encodeBytes(ThroughEncodable(value: header)))
        }
    }

    /// Evidence writes itself (what the service digests and keeps when it was handed no bytes):
    /// the generic path's bytes in both key orders, PCR maps of every size included.
    @Test func evidenceWritesTheBytesItsEncodableConformanceWrites() throws {
        let words = Self.awkward
        for n in 0..<24 {
            var pcrs: [String: [String: String]] = [:]
            for bank in ["sha1", "sha256", "sha384", words[n % words.count]].prefix(n % 5) {
                pcrs[bank] = Dictionary(uniqueKeysWithValues: (0..<n).map { (String($0), String(repeating: "ab", count: $0 + 1)) })
            }
            let evidence = Evidence(quote: words[n % 6], signature: words[(n + 1) % 6], pcrs: pcrs, eventLog: words[(n + 2) % 6],
                                    nonce: words[(n + 3) % 6], imaLog: n % 2 == 0 ? nil : words[(n + 4) % 6])
            try expectSameBytes(evidence, "evidence \(n)")
        }
    }
}

