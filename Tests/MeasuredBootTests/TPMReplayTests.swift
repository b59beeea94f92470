import Foundation
import MeasuredBoot
import TLaunchTestSupport
import TPM2
import Testing

/// A log measured into a real TPM (swtpm) as firmware does, then verified against the PCRs
/// read back — with our client and with tpm2_pcrread + `tlaunch eventlog replay`.
@Suite("Measured Boot: replay against a real TPM's PCRs")
struct TPMReplayTests {
    @Test func measuredIntoSwtpmAndVerified() async throws {
        guard let pcrread = Interop.tool("tpm2_pcrread") else { return }
        try await withSwtpm { tpm, sw in
            var b = try EventLogBuilder(banks: [.sha1, .sha256])
            b.measure(pcr: 0, type: .sCRTMVersion, data: Array("v\u{0}1\u{0}".utf8))
            b.measureVariable(pcr: 7, type: .efiVariableDriverConfig, guid: .globalVariable, name: "SecureBoot", data: [1])
            b.measure(pcr: 4, type: .efiAction, data: Array("Calling EFI Application from Boot Option".utf8))
            b.separators()
            b.measure(pcr: 4, type: .efiBootServicesApplication, data: [UInt8](repeating: 0, count: 32), measured: Array("shim".utf8))
            b.measure(pcr: 8, type: .ipl, data: Array("grub_cmd: linux /vmlinuz root=/dev/sda2".utf8) + [0],
                      measured: Array("linux /vmlinuz root=/dev/sda2".utf8))
            let log = try EventLog(parsing: b.encoded())
            // "Firmware": extend every measurement into the TPM.
            for e in log.events where e.type != .noAction {
                try await tpm.pcrExtend(Int(e.pcrIndex), digests: e.digests.map { TPMTHA(hashAlg: $0.algorithm, digest: Array($0.digest)) })
            }
            let pcrs: [Int] = [0, 1, 2, 3, 4, 5, 6, 7, 8]
            let selection = TPMLPCRSelection([TPMSPCRSelection(hash: .sha1, pcrs: pcrs), TPMSPCRSelection(hash: .sha256, pcrs: pcrs)])
            let report = log.replay(against: PCRValues(try await tpm.pcrRead(selection)))
            #expect(report.allMatch, "\(report.comparisons.filter { $0.status != .match })")
            #expect(report.verified.events.count == log.events.count - 1)
            #expect(report.verified.explain().kernelCommandLine == nil)
            #expect(report.verified.explain().grub?.commands == ["linux /vmlinuz root=/dev/sda2"])

            // The same through the tools a user has: tpm2_pcrread's output as --pcrs.
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tlaunch-replay-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let logPath = dir.appendingPathComponent("log.bin").path
            try Data(b.encoded()).write(to: URL(fileURLWithPath: logPath))
            // swtpm serves one client at a time: let go of ours while the tool runs.
            func pcrFile() async throws -> String {
                await tpm.close()
                let (s, out, err) = try await Interop.run(pcrread, ["-T", sw.tcti, "sha1:0,1,2,3,4,5,6,7,8+sha256:0,1,2,3,4,5,6,7,8"])
                #expect(s == 0, "tpm2_pcrread: \(err)")
                let path = dir.appendingPathComponent("pcrs-\(UUID().uuidString).yaml").path
                try out.write(toFile: path, atomically: true, encoding: .utf8)
                return path
            }
            let good = try await pcrFile()
            let (s1, o1, e1) = try await Interop.run(CLITests.tlaunch, ["eventlog", "replay", logPath, "--pcrs", good])
            #expect(s1 == 0, "\(o1) \(e1)")
            #expect(o1.contains("all 18 PCRs match"))

            // A measurement the log does not record: PCR 4 no longer replays, and the report
            // points at the last logged event of PCR 4.
            try await tpm.pcrExtend(4, digests: [TPMTHA(hashAlg: .sha1, digest: [UInt8](repeating: 1, count: 20)),
                                                 TPMTHA(hashAlg: .sha256, digest: [UInt8](repeating: 1, count: 32))])
            let after = log.replay(against: PCRValues(try await tpm.pcrRead(selection)))
            let last4 = log.events.last { $0.pcrIndex == 4 }!.index
            #expect(after.comparisons.filter { $0.status != .match }.map(\.pcr) == [4, 4])
            #expect(after.comparisons.first { $0.pcr == 4 }?.status == .mismatch(lastEvent: last4, matchedAfterEvent: nil))
            #expect(!after.verified.verifiedPCRs.contains(4) && after.verified.verifiedPCRs.contains(7))
            let (s2, o2, _) = try await Interop.run(CLITests.tlaunch, ["eventlog", "replay", logPath, "--pcrs", try await pcrFile()])
            #expect(s2 == 1)
            #expect(o2.contains("MISMATCH") && o2.contains("#\(last4)"))
        }
    }
}
