import Foundation
import MeasuredBoot
import TLaunchTestSupport
import TPM2
import Testing

@Suite("Measured Boot: same events and PCRs as tpm2_eventlog and the sources' parses")
struct ToolsDifferentialTests {
    @Test(.corpus) func recordedTpm2ToolsOutputAgrees() throws {
        guard Corpus.require() else { return }
        let dir = Corpus.url("eventlogs").path
        let yamls = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".tpm2-tools.yaml") }.sorted()
        #expect(yamls.count >= 8)
        for y in yamls {
            let logName = y.replacingOccurrences(of: ".tpm2-tools.yaml", with: ".bin")
            let tool = ToolEvents(yaml: try String(contentsOf: Corpus.url("eventlogs/\(y)"), encoding: .utf8))
            let bytes = try Corpus.bytes("eventlogs/\(logName)")
            guard let log = try? EventLog(parsing: bytes) else {
                // The vendor-data fixture is malformed: tpm2-tools reads vendorInfo past the event.
                #expect(SharedData.malformed.contains(logName), "\(logName) does not parse")
                continue
            }
            #expect(tool.differences(from: log).isEmpty, "\(logName): \(tool.differences(from: log))")
            comparePCRs(tool.pcrs, log: log, name: logName)
        }
    }

    @Test(.corpus) func keylimesTpm2Tools55ParsesAgree() throws {
        guard Corpus.require() else { return }
        let dir = Corpus.url("eventlogs").path
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".pue-tpm2-tools55.json") }.sorted()
        #expect(files.count >= 8)
        for f in files {
            let logName = f.replacingOccurrences(of: ".pue-tpm2-tools55.json", with: ".bin")
            let tool = ToolEvents(pueJSON: try Corpus.json("eventlogs/\(f)"))
            let log = try EventLog(parsing: Corpus.bytes("eventlogs/\(logName)"))
            // Known tpm2-tools 5.5 bug: it drops the Windows WBCL trailer (PCR index 0xFFFFFFFF).
            let trailers = Set(log.events.filter { $0.pcrIndex == 0xFFFF_FFFF }.map(\.index))
            #expect(tool.differences(from: log, skipping: trailers).isEmpty,
                    "\(logName): \(tool.differences(from: log, skipping: trailers))")
        }
    }

    /// tpm2_eventlog (tpm2-tools, installed by the test command) run on every shared log. Where
    /// they disagree, the test shows it is one of tpm2-tools 5.4's known bugs, by name.
    @Test(.corpus) func liveTpm2EventlogAgreesOnEveryLog() async throws {
        guard Corpus.require(), let tool = Interop.tool("tpm2_eventlog") else { return }
        var compared = 0
        for name in Corpus.eventLogs {
            let path = Corpus.url("eventlogs/\(name)").path
            let (status, out, err) = try await Interop.run(tool, [path])
            guard let log = try? EventLog(parsing: Corpus.bytes("eventlogs/\(name)")) else {
                #expect(SharedData.malformed.contains(name), "\(name) does not parse")
                continue
            }
            let parsed = ToolEvents(yaml: out)
            if status != 0 {
                // Known tpm2-tools 5.4 failures; each must be exactly the named bug.
                if err.contains("PCR Index -1 is out of bounds") || status == 139 || status == 11 {  // 11: SIGSEGV
                    // Bug: aborts (or segfaults, on SHA-1 logs) at the Windows WBCL trailer, an
                    // EV_NO_ACTION event with PCR index 0xFFFFFFFF. Everything before it agrees.
                    let next = log.events.count > parsed.events.count ? log.events[parsed.events.count] : nil
                    #expect(next?.pcrIndex == 0xFFFF_FFFF && next?.type == .noAction,
                            "\(name): tpm2_eventlog stopped at event \(parsed.events.count), which is not a trailer")
                    let prefix = EventLog(format: log.format, specID: log.specID, events: Array(log.events.prefix(parsed.events.count)))
                    #expect(parsed.differences(from: prefix).isEmpty, "\(name): \(parsed.differences(from: prefix))")
                } else if err.contains("bad pcrIndex for EV_NO_ACTION") {
                    // Bug: rejects a CC event log (Intel TDX CCEL), whose Spec ID event is in MR index 1.
                    #expect(log.events[0].pcrIndex != 0 && log.specID != nil, "\(name)")
                } else if err.contains("invalid eventDataSize in specid event") {
                    // Not a bug: a one-event log without a Spec ID header; tpm2-tools insists on one.
                    #expect(log.specID == nil && log.events.count == 1, "\(name)")
                } else {
                    Issue.record("tpm2_eventlog failed on \(name) (status \(status)): \(err.prefix(300))")
                }
                continue
            }
            #expect(parsed.differences(from: log).isEmpty, "\(name): \(parsed.differences(from: log))")
            comparePCRs(parsed.pcrs, log: log, name: name)
            compared += 1
        }
        #expect(compared >= 50)
    }

    /// tpm2-tools 5.4's replay, bugs included: every PCR starts at zero (no StartupLocality, no
    /// H-CRTM locality 4) and EV_NO_ACTION events after the header are extended too.
    static func tpm2Tools54Replay(_ log: EventLog, alg: TPMAlgID, pcr: UInt32) -> [UInt8]? {
        guard let size = log.banks.first(where: { $0.algorithm == alg })?.digestSize else { return nil }
        var v = [UInt8](repeating: pcr >= 17 && pcr <= 22 ? 0xFF : 0, count: size)
        var any = false
        for e in log.events.dropFirst(log.specID == nil ? 0 : 1) where e.pcrIndex == pcr {
            guard let d = e.digest(alg), let nv = EventLogHash.extend(alg, v, d) else { continue }
            v = nv
            any = true
        }
        return any ? v : nil
    }

    func comparePCRs(_ tool: [String: [UInt32: String]], log: EventLog, name: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let ours = log.replay()
        for (bank, pcrs) in tool {
            guard let alg = PCRValues.bankNames[bank] else { continue }
            for (pcr, hex) in pcrs {
                let mine = ours[alg, pcr].map { hexString($0) } ?? "none"
                if mine == hex.lowercased() { continue }
                // They may differ only where tpm2-tools 5.4's replay bugs apply (and then our
                // value is the one the sources' expected PCRs confirm).
                let model = Self.tpm2Tools54Replay(log, alg: alg, pcr: pcr).map { hexString($0) }
                let buggy = log.startupLocality != 0 || log.events.dropFirst().contains { $0.type == .noAction && $0.pcrIndex == pcr }
                #expect(buggy && model == hex.lowercased(),
                        "\(name): \(bank) PCR \(pcr): tpm2-tools \(hex), ours \(mine), not explained by a known tpm2-tools bug",
                        sourceLocation: sourceLocation)
            }
        }
    }
}
