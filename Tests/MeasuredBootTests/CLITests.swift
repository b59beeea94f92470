import Foundation
import MeasuredBoot
import TLaunchTestSupport
import Testing

/// `tlaunch eventlog …` and `tlaunch ima replay` as a user runs them (the debug build of the
/// package's executable; `swift build --build-tests` builds it).
@Suite("Measured Boot: the tlaunch eventlog and ima commands")
struct CLITests {
    static var tlaunch: String { Built.tlaunch }

    func run(_ args: [String]) async throws -> (Int32, String, String) { try await Interop.run(Self.tlaunch, args) }

    func tempFile(_ contents: String) throws -> String {
        let path = NSTemporaryDirectory() + "tlaunch-test-\(UUID().uuidString).json"
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test(.corpus) func replayPrintsEveryBankExactly() async throws {
        guard Corpus.require() else { return }
        let (status, out, _) = try await run(["eventlog", "replay", Corpus.url("eventlogs/fragment_uefiaction_tpm2-tools.bin").path])
        #expect(status == 0)
        #expect(out == "sha1     4   ee01a03529a6b38b5ded18ab6ae8d771aaac1925\n"
                     + "sha256   4   3f263b96ccbc33bb53d808771f9ab1e02d4dec8854f9530f749cde853a723273\n")
    }

    @Test(.corpus) func replayAgainstPCRsSetsTheExitStatus() async throws {
        guard Corpus.require() else { return }
        let log = Corpus.url("eventlogs/gce_ubuntu2104_nodbx_go-tpm-tools.bin").path
        let good = Corpus.url("eventlogs/gce_ubuntu2104_nodbx_go-tpm-tools.expected_pcrs.json").path
        let (s1, o1, e1) = try await run(["eventlog", "replay", log, "--pcrs", good])
        #expect(s1 == 0, "\(e1)")
        #expect(o1.contains("PCRs match") && !o1.contains("MISMATCH"))
        let object = try Corpus.json("eventlogs/gce_ubuntu2104_nodbx_go-tpm-tools.expected_pcrs.json") as? [String: Any]
        var pcrs = object?["pcrs"] as? [String: [String: String]] ?? [:]
        pcrs["sha256"]?["4"] = String(repeating: "00", count: 32)
        let bad = try tempFile(String(decoding: try JSONSerialization.data(withJSONObject: pcrs), as: UTF8.self))
        defer { try? FileManager.default.removeItem(atPath: bad) }
        let (s2, o2, _) = try await run(["eventlog", "replay", log, "--pcrs", bad])
        #expect(s2 == 1)
        #expect(o2.contains("sha256   4   MISMATCH"))
        let (s3, j3, _) = try await run(["eventlog", "replay", log, "--pcrs", bad, "--json"])
        #expect(s3 == 1)
        let report = try JSONSerialization.jsonObject(with: Data(j3.utf8)) as? [String: Any]
        #expect(report?["allMatch"] as? Bool == false)
        let rows = report?["pcrs"] as? [[String: Any]] ?? []
        #expect(rows.contains { $0["pcr"] as? Int == 4 && $0["status"] as? String == "mismatch" && $0["lastEvent"] is Int })
    }

    @Test(.corpus) func showAndExplainJSON() async throws {
        guard Corpus.require() else { return }
        let log = Corpus.url("eventlogs/gce_rhel8_secureboot_go-tpm-tools.bin").path
        let (s1, o1, _) = try await run(["eventlog", "show", log, "--json", "--pcr", "7"])
        #expect(s1 == 0)
        let shown = try JSONSerialization.jsonObject(with: Data(o1.utf8)) as? [String: Any]
        let events = shown?["events"] as? [[String: Any]] ?? []
        #expect(!events.isEmpty && events.allSatisfy { $0["pcr"] as? Int == 7 })
        #expect(events.contains { ($0["data"] as? [String: Any])?["name"] as? String == "SecureBoot" })
        let (s2, o2, _) = try await run(["eventlog", "explain", log, "--json", "--pcrs",
                                         Corpus.url("eventlogs/gce_rhel8_secureboot_go-tpm-tools.expected_pcrs.json").path])
        #expect(s2 == 0)
        let facts = try JSONSerialization.jsonObject(with: Data(o2.utf8)) as? [String: Any]
        #expect((facts?["secureBoot"] as? [String: Any])?["enabled"] as? Bool == true)
        #expect(facts?["comparedWithTPM"] as? Bool == true)
        let (_, text, _) = try await run(["eventlog", "explain", log])
        #expect(text.hasPrefix("NOT verified against a TPM"))
        #expect(text.contains("Secure Boot: enabled"))
    }

    @Test func badInputGivesAClearErrorAndFailure() async throws {
        let path = try tempFile("")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data([0, 0, 0, 0, 3, 0, 0, 0, 1, 2]).write(to: URL(fileURLWithPath: path))
        let (status, _, err) = try await run(["eventlog", "show", path])
        #expect(status != 0)
        #expect(err.contains("event 0") && err.contains("byte offset") && err.contains("truncated"))
    }

    @Test(.corpus) func imaReplay() async throws {
        guard Corpus.require() else { return }
        let (status, out, _) = try await run(["ima", "replay",
                                              Corpus.url("ima/ascii_runtime_measurements_ima-ng_sha1_rust-keylime.txt").path, "--json"])
        #expect(status == 0)
        let o = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
        #expect(o?["entries"] as? Int ?? 0 > 800)
        #expect(((o?["pcr10"] as? [String: String])?["sha1"])?.count == 40)
        #expect((o?["inconsistentEntries"] as? [Int])?.isEmpty == true)
    }
}

/// The TPM story (`tlaunch tpm demo`) end to end against a swtpm it starts.
@Suite("tlaunch tpm demo")
struct DemoTests {
    @Test func demoTellsTheWholeStory() async throws {
        guard Interop.tool("swtpm") != nil, Interop.tool("swtpm_setup") != nil else { return }
        let (status, out, err) = try await Interop.run(CLITests.tlaunch, ["tpm", "demo"])
        #expect(status == 0, "\(err)")
        for line in ["replay against the TPM's PCRs 0, 4, 7, 8: all 8 match",
                     "Secure Boot enabled; boot chain: \\EFI\\debian\\shimx64.efi → \\EFI\\debian\\grubx64.efi",
                     "is not the hash of its data", "Secure Boot unknown",
                     "the AK is bound to this EK", "signature, nonce and PCR digest verified",
                     "a forged PCR 16 value is rejected", "unseal is refused",
                     "shim /EFI/BOOT/BOOTX64.EFI: verified by db", "linux /vmlinuz: verified by MokListRT",
            "PCRs 0–7 predicted before the boot equal the vTPM's after it", "a modified kernel is refused: shim: Verification failed",
                     "==> Done"] {
            #expect(out.contains(line), "missing: \(line)")
        }
        #expect(!out.contains("this is a bug") && !out.contains("a bug") && !out.contains("MISMATCH"))
    }
}
