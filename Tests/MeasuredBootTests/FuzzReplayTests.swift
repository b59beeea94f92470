import Foundation
import MeasuredBoot
import Testing

@Suite("Measured Boot: fuzz corpora and real logs through the fuzz entry points")
struct FuzzReplayTests {
    static var fuzzDirectory: URL {
        var dir = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { dir.deleteLastPathComponent() }
        return dir.appendingPathComponent("Fuzz")
    }

    func replay(_ target: String, _ body: ([UInt8]) -> [String]) throws -> Int {
        var count = 0
        for sub in ["corpus/\(target)", "crashers/\(target)"] {
            let dir = Self.fuzzDirectory.appendingPathComponent(sub)
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else { continue }
            for n in names.sorted() where !n.hasPrefix(".") {
                let violations = body([UInt8](try Data(contentsOf: dir.appendingPathComponent(n))))
                #expect(violations.isEmpty, "\(sub)/\(n): \(violations)")
                count += 1
            }
        }
        return count
    }

    @Test func eventLogCorpus() throws {
        #expect(try replay("eventlog", MeasuredBootFuzzing.eventLog) >= 10, "the corpus is committed")
    }

    @Test func imaCorpus() throws {
        #expect(try replay("ima", MeasuredBootFuzzing.imaLog) >= 10, "the corpus is committed")
    }

    @Test func realLogsKeepTheFuzzInvariants() throws {
        guard SharedData.require() else { return }
        for name in SharedData.eventLogs {
            let bytes = try SharedData.bytes("eventlogs/\(name)")
            #expect(MeasuredBootFuzzing.eventLog(bytes).isEmpty, "\(name)")
        }
        for name in try FileManager.default.contentsOfDirectory(atPath: SharedData.url("ima").path) where name.contains("runtime_measurements") || name.hasPrefix("ima_log") {
            #expect(MeasuredBootFuzzing.imaLog(try SharedData.bytes("ima/\(name)")).isEmpty, "\(name)")
        }
    }
}
