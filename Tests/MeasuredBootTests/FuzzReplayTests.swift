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

    @Test(.corpus) func realLogsKeepTheFuzzInvariants() throws {
        guard Corpus.require() else { return }
        for name in Corpus.eventLogs {
            let bytes = try Corpus.bytes("eventlogs/\(name)")
            #expect(MeasuredBootFuzzing.eventLog(bytes).isEmpty, "\(name)")
        }
        for name in try FileManager.default.contentsOfDirectory(atPath: Corpus.url("ima").path)
        where name.contains("runtime_measurements") || name.hasPrefix("ima_log") {
            #expect(MeasuredBootFuzzing.imaLog(try Corpus.bytes("ima/\(name)")).isEmpty, "\(name)")
        }
    }
}
