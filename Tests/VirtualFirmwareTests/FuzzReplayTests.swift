import Foundation
import Testing
import VirtualFirmware

@Suite("Virtual firmware: fuzz corpora replayed")
struct VirtualFirmwareFuzzReplayTests {
    static var fuzz: URL {
        var dir = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { dir.deleteLastPathComponent() }
        return dir.appendingPathComponent("Fuzz")
    }

    func replay(_ target: String, _ body: ([UInt8]) -> [String]) throws -> Int {
        var count = 0
        for sub in ["corpus/\(target)", "crashers/\(target)"] {
            let dir = Self.fuzz.appendingPathComponent(sub)
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else { continue }
            for n in names.sorted() where !n.hasPrefix(".") {
                let v = body([UInt8](try Data(contentsOf: dir.appendingPathComponent(n))))
                #expect(v.isEmpty, "\(sub)/\(n): \(v)")
                count += 1
            }
        }
        return count
    }

    @Test func espImageCorpus() throws { #expect(try replay("esp", VirtualFirmwareFuzzing.espImage) >= 2) }
    @Test func grubConfigCorpus() throws { #expect(try replay("grubcfg", VirtualFirmwareFuzzing.grubConfig) >= 6) }
}
