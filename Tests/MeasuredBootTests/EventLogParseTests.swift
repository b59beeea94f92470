import Foundation
import MeasuredBoot
import TPM2
import TLaunchTestSupport
import Testing

@Suite("Measured Boot: every real log parses, re-encodes to its bytes and replays to its PCRs")
struct EventLogParseTests {
    @Test(.corpus) func everyRealLogParsesAndReencodesExactly() throws {
        guard Corpus.require() else { return }
        let logs = Corpus.eventLogs
        #expect(logs.count >= 50)
        for name in logs where !SharedData.malformed.contains(name) {
            let bytes = try Corpus.bytes("eventlogs/\(name)")
            let log: EventLog
            do { log = try EventLog(parsing: bytes) } catch {
                Issue.record("\(name): \(error)")
                continue
            }
            #expect(log.events.count > 1, "\(name)")
            let again = try log.encoded()
            #expect(again == bytes, "\(name): encode(parse(bytes)) differs")
        }
    }

    @Test(.corpus) func malformedLogsFailWithPreciseErrors() throws {
        guard Corpus.require() else { return }
        // go-attestation's "short EV_NO_ACTION" log is one well-framed TCG_PCR_EVENT (a
        // StartupLocality payload without a Spec ID header): it parses, as go-attestation expects.
        let short = try Corpus.bytes("eventlogs/edge_short_no_action_go-attestation.bin")
        let one = try EventLog(parsing: short)
        #expect(one.format == .sha1 && one.events.count == 1 && one.events[0].type == .noAction)
        #expect(try one.encoded() == short)
        // Cut anywhere inside, it fails with the offset where the bytes ran out.
        for cut in 1..<short.count {
            let e = #expect(throws: EventLogError.self) { try EventLog(parsing: Array(short.prefix(cut))) }
            #expect(e?.eventIndex == 0 && e?.code == .truncated, "cut at \(cut)")
        }
        // tpm2-tools' vendor-data fixture: the Spec ID event says 37 bytes but its vendorInfoSize
        // asks for 4 more, which lie outside the event.
        let vendor = try Corpus.bytes("eventlogs/fragment_specid_vendordata_tpm2-tools.bin")
        let e2 = #expect(throws: EventLogError.self) { try EventLog(parsing: vendor) }
        #expect(e2?.eventIndex == 0)
        #expect(e2?.offset == vendor.count - 4)
        #expect(e2?.code == .truncated)
        #expect(e2?.description.contains("vendorInfo") == true)
    }

    @Test(.corpus) func replayEqualsTheSourcesPCRs() throws {
        guard Corpus.require() else { return }
        let files = try FileManager.default.contentsOfDirectory(atPath: Corpus.url("eventlogs").path)
            .filter { $0.hasSuffix(".expected_pcrs.json") }.sorted()
        #expect(files.count >= 25)
        var compared = 0
        for file in files {
            let object = try Corpus.json("eventlogs/\(file)") as? [String: Any] ?? [:]
            guard let logName = object["log"] as? String else { Issue.record("\(file): no log"); continue }
            let log = try EventLog(parsing: Corpus.bytes("eventlogs/\(logName)"))
            var expected = try PCRValues(json: JSONSerialization.data(withJSONObject: object["pcrs"] ?? [:]))
            // PCR 10 of the TPM 1.2 machine is extended by Linux IMA, not by this firmware log.
            if (object["note"] as? String)?.contains("IMA") == true {
                for bank in expected.banks.keys { expected.banks[bank]?[10] = nil }
            }
            let report = log.replay(against: expected)
            for c in report.comparisons {
                compared += 1
                #expect(c.status == .match, """
                    \(logName): \(PCRValues.bankName(c.bank)) PCR \(c.pcr): replayed \(c.replayed.map { hexString($0) } ?? "-"), expected \
                    \(hexString(c.expected))
                    """)
            }
            #expect(report.allMatch, "\(logName)")
            #expect(!report.verified.events.isEmpty || report.comparisons.allSatisfy { $0.pcr > 23 }, "\(logName)")
        }
        #expect(compared >= 300)
    }
}

@Suite("Measured Boot: the fast replay equals the replay of parsed events")
struct FastReplayTests {
    @Test(.corpus) func everyRealLog() throws {
        guard Corpus.require() else { return }
        for name in Corpus.eventLogs {
            let bytes = try Corpus.bytes("eventlogs/\(name)")
            guard let log = try? EventLog(parsing: bytes) else {
                #expect(throws: EventLogError.self, "\(name)") { try EventLog.replay(parsing: bytes) }
                continue
            }
            let fast = try EventLog.replay(parsing: bytes)
            #expect(fast.pcrs == log.replay(), "\(name)")
            #expect(fast.events == log.events.count, "\(name)")
        }
    }

    @Test func errorsAreTheSame() throws {
        var b = try EventLogBuilder(banks: [.sha1, .sha256], startupLocality: 3)
        b.measure(pcr: 0, type: .sCRTMVersion, data: [1, 0, 0, 0])
        b.measure(pcr: 4, type: .efiAction, data: Array("x".utf8))
        let bytes = try b.encoded()
        for cut in 1..<bytes.count {
            let part = Array(bytes.prefix(cut))
            let slow: EventLogError?
            do { _ = try EventLog(parsing: part); slow = nil } catch { slow = error }
            let fast: EventLogError?
            do { _ = try EventLog.replay(parsing: part); fast = nil } catch { fast = error }
            #expect(slow == fast, "cut \(cut)")
        }
        // StartupLocality 3 shows in PCR 0 of both.
        #expect(try EventLog.replay(parsing: bytes).pcrs == EventLog(parsing: bytes).replay())
    }
}
