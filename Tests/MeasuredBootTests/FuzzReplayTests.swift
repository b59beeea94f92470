import Foundation
import MeasuredBoot
import TLaunchTestSupport
import Testing

@Suite("Measured Boot: fuzz corpora and real logs through the fuzz entry points")
struct FuzzReplayTests {
    @Test func eventLogCorpus() throws {
        #expect(try FuzzCorpus.replay("eventlog", MeasuredBootFuzzing.eventLog) >= 10, "the corpus is committed")
    }

    @Test func imaCorpus() throws {
        #expect(try FuzzCorpus.replay("ima", MeasuredBootFuzzing.imaLog) >= 10, "the corpus is committed")
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
