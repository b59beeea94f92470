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
}
