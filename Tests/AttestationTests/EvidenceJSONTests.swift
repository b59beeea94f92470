import AttestationAPI
import Foundation
import Testing
@testable import Attestation

/// The service reads evidence with its own JSON reader: the same values as Foundation's decoder
/// for every well-formed body, and for a malformed one a typed error that says where and what.
@Suite struct EvidenceJSONTests {
    static let evidence = MutationFixture.shared.evidence

    @Test func readsWhatFoundationReads() throws {
        let plain = try JSONEncoder().encode(Self.evidence)
        #expect(try Evidence(json: plain) == Self.evidence)
        let pretty = JSONEncoder()
        pretty.outputFormatting = [.prettyPrinted, .sortedKeys]
        #expect(try Evidence(json: try pretty.encode(Self.evidence)) == Self.evidence)
        var withIMA = Self.evidence
        withIMA.imaLog = "10 abc ima-ng sha256:00 /init\n\"quoted\" \\ tab\t é ✓ 𝄞"
        #expect(try Evidence(json: try JSONEncoder().encode(withIMA)) == withIMA)
        // Escapes, null imaLog, and members this build does not know (read, then ignored).
        let body = #"""
            {"quote":"0a\u0062","signature":"\/x","pcrs":{"sha256":{"0":"00"}},"eventLog":"AA==","nonce":"\uD834\uDD1E",
             "imaLog":null,"agentVersion":{"v":[1,2.5e-3,-0,true,false,null,"s",{}],"w":[]}}
            """#
        let e = try Evidence(json: Data(body.utf8))
        #expect(e == (try JSONDecoder().decode(Evidence.self, from: Data(body.utf8))))
        #expect(e.quote == "0ab" && e.signature == "/x" && e.nonce == "𝄞" && e.imaLog == nil && e.pcrs == ["sha256": ["0": "00"]])
    }

    func refusal(_ body: String) -> EvidenceJSONError? {
        do throws(EvidenceJSONError) { _ = try Evidence(json: Data(body.utf8)); return nil } catch { return error }
    }

    @Test func malformedBodiesSayWhereAndWhat() throws {
        let good = String(decoding: try JSONEncoder().encode(Self.evidence), as: UTF8.self)
        let cases: [(String, Int?, String?, String)] = [
            ("", 0, nil, "expected an object"),
            ("[]", 0, nil, "expected an object"),
            (#"{"quote":"a","quote":"b"}"#, 13, nil, "appears twice"),
            (#"{"quote":1}"#, 9, "quote", "expected a string"),
            (#"{"quote":"abc}"#, 9, "quote", "not closed"),
            ("{\"quote\":\"a\u{1}b\"}", 11, "quote", "control character"),
            (#"{"quote":"\x"}"#, 10, "quote", "unknown escape"),
            (#"{"quote":"\uD800"}"#, 10, "quote", "high surrogate"),
            (#"{"quote":"\uDC00"}"#, 10, "quote", "low surrogate"),
            (#"{"quote":"\u12"}"#, nil, "quote", "four hex digits"),
            (#"{"x":01}"#, 5, "x", "leading zero"),
            (#"{"x":1.}"#, 5, "x", "digits after"),
            (#"{"x":tru}"#, 5, "x", "expected true"),
            (#"{"pcrs":{"sha256":{"0":5}}}"#, 23, "pcrs.sha256.0", "expected a string"),
            (#"{"quote":"a"} x"#, 14, nil, "text after"),
            (#"{"quote":"a", }"#, 14, nil, "trailing comma"),
            (#"{"x":[1,2,]}"#, 10, "x", "trailing comma"),
            (#"{"quote":"a""#, 12, nil, "not closed"),
            (
                String(good.dropLast()) + #","x":"# + String(repeating: "[", count: 70) + String(repeating: "]", count: 70) + "}", nil, "x",
                "deeper than 64"
            ),
            (#"{"quote":"a","signature":"b","pcrs":{},"eventLog":"c"}"#, 54, "nonce", "missing field nonce"),
        ]
        for (body, offset, field, reason) in cases {
            let e = try #require(refusal(body), "accepted: \(body)")
            #expect(e.reason.contains(reason), "\(body): \(e)")
            if let offset { #expect(e.offset == offset, "\(body): \(e)") }
            #expect(e.field == field, "\(body): \(e)")
            #expect(e.description.contains("byte \(e.offset)"))
        }
        // Invalid UTF-8 inside a string.
        var bytes = Array(#"{"quote":"ab"}"#.utf8)
        bytes[10] = 0xff
        do throws(EvidenceJSONError) { _ = try Evidence(json: bytes); Issue.record("invalid UTF-8 accepted") } catch {
            #expect(error.reason.contains("UTF-8") && error.offset == 10)
        }
    }

    /// A string's plain runs are scanned a word at a time: every byte that ends a run (quote,
    /// backslash, each control character) and bytes that are not ASCII, at every position across
    /// three words and with the body shifted so the words fall differently, read as Foundation reads
    /// them; a control character is refused at its own offset.
    @Test func everyRunEndingByteAtEveryPositionAgreesWithFoundation() throws {
        let specials: [[UInt8]] = (0..<0x20).map { [UInt8($0)] } + [[0x22], [0x5C], [0x5C, 0x22], [0x7F], [0x80], [0xC3, 0xA9],
                                                                    [0xF0, 0x9D, 0x84, 0x9E], [0xFF], [0x21], [0x5B], [0x5D]]
        for shift in 0..<8 {
            let prefix = Array(("{" + String(repeating: " ", count: shift) + #""quote":""#).utf8)
            for special in specials {
                for position in 0...24 {
                    var text = Array("ABCDEFGHIJKLMNOPQRSTUVWX".utf8)
                    text.insert(contentsOf: special, at: position)
                    let body = prefix + text + Array(#"","signature":"","pcrs":{},"eventLog":"","nonce":""}"#.utf8)
                    let ours: Evidence?
                    do throws(EvidenceJSONError) { ours = try Evidence(json: body) } catch {
                        ours = nil
                        if special.count == 1, special[0] < 0x20 {
                            #expect(error.offset == prefix.count + position && error.reason.contains("control"),
                                    "\(special) at \(position)")
                        }
                    }
                    let foundation = try? JSONDecoder().decode(Evidence.self, from: Data(body))
                    #expect(ours == foundation, "\(special) at \(position), shift \(shift)")
                    if special == [0x21] || special == [0xC3, 0xA9] { #expect(ours != nil, "\(special) at \(position) refused") }
                }
            }
        }
    }

    /// Every prefix of a real body is refused (never read as something else), and every
    /// one-byte change is either refused or read exactly as Foundation reads it.
    @Test func everyCutAndEveryByteFlipAgreesWithFoundation() throws {
        let body = Array(try JSONEncoder().encode(Self.evidence))
        for n in stride(from: 0, to: body.count, by: max(1, body.count / 400)) {
            do throws(EvidenceJSONError) {
                _ = try Evidence(json: Array(body[..<n])); Issue.record("a body cut at \(n) was accepted")
            } catch {
                #expect(error.offset <= n)
            }
        }
        var g = SystemRandomNumberGenerator()
        for _ in 0..<600 {
            var b = body
            b[Int.random(in: 0..<b.count, using: &g)] = UInt8.random(in: 0...255, using: &g)
            #expect(AttestationFuzzing.evidence(b).filter { $0.contains("JSONDecoder") }.isEmpty)
        }
    }
}
