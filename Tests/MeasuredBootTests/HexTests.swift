import Foundation
import MeasuredBoot
import TPM2
import Testing

@Suite("Hex: hexString and Array(hex:) agree with Foundation's formatting")
struct HexTests {
    @Test func everyByteAtEveryLength() throws {
        let all = (0...255).map { UInt8($0) }
        let reference = all.map { String(format: "%02x", $0) }.joined()
        #expect(hexString(all) == reference)
        #expect(hexString([UInt8]()) == "")
        #expect(hexString(all[17..<18]) == "11", "a slice")
        #expect(hexString(Data(all)) == reference, "Data")
        for n in 0...70 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 5) }
            let hex = hexString(bytes)
            #expect(hex.utf8.count == 2 * n && hex == bytes.map { String(format: "%02x", $0) }.joined())
            #expect([UInt8](hex: hex) == bytes, "reads back")
            #expect([UInt8](hex: "0x" + hex.uppercased()) == bytes, "prefix and upper case")
        }
        #expect([UInt8](hex: "abc") == nil, "odd length")
        #expect([UInt8](hex: "zz") == nil, "not hex")
    }

    /// The reading the parser promised before it had a fast path: every character looked up, the
    /// separators skipped, anything else refused, digits paired in order.
    static func referenceRead(_ text: String) -> [UInt8]? {
        var body = Substring(text)
        if body.hasPrefix("0x") || body.hasPrefix("0X") { body = body.dropFirst(2) }
        var out: [UInt8] = []
        var high: UInt8?
        for c in body.unicodeScalars {
            if " \n\t\r:".unicodeScalars.contains(c) { continue }
            guard c.isASCII, let v = UInt8(String(c), radix: 16) else { return nil }
            if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
        }
        return high == nil ? out : nil
    }

    @Test func everyCharacterInEveryPositionReadsAsTheReferenceReadsIt() throws {
        // Every byte value (and some non-ASCII) in each position of short inputs, with and without the
        // prefix: the fast path's digit arithmetic must refuse exactly what the table refuses
        // ("g", "G", "@", "`", "/", ":" border the digit ranges; ":" and the spaces are separators).
        var alphabet = (0..<128).map { String(UnicodeScalar(UInt8($0))) }
        alphabet += ["é", "\u{FF10}", "\u{0660}"]
        var inputs: [String] = ["", "0x", "0X", "x0", "0x0", "00", "0x00", " ", "0:1", "a b", "ab\n", "\u{FEFF}ab"]
        for c in alphabet {
            for template in ["?0", "0?", "?a", "F?", "??", "0x?f", "0X0?", "?", "a?b", "ab?", "0x?"] {
                inputs.append(template.replacingOccurrences(of: "?", with: c))
            }
        }
        for text in inputs {
            #expect([UInt8](hex: text) == Self.referenceRead(text), "\(text.debugDescription)")
        }
        // Long inputs: a bad digit at the end, separators late, an odd count late.
        let long = String(repeating: "0123456789abcdefABCDEF", count: 10)
        for tail in ["", "g0", "0", " 00", ":ff", "\n", "0g", "é0"] {
            #expect([UInt8](hex: long + tail) == Self.referenceRead(long + tail), "\(tail.debugDescription)")
        }
        #expect([UInt8](hex: long)?.count == long.utf8.count / 2)
    }
}
