import Foundation
import MeasuredBoot
import SecureBoot
import TLaunchTestSupport
import Testing
import VirtualFirmware

/// `tlaunch predict` and `tlaunch firmware …` as a person runs them.
@Suite("Virtual firmware: the command line")
struct FirmwareCLITests {
    static var tlaunch: String { Built.tlaunch }

    @Test func launchIntoAStateFileThenTheLogExplainsTheBoot() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let log = dir.appendingPathComponent("boot.log").path
        let state = dir.appendingPathComponent("vm.state").path
        let (s, out, err) = try await Interop.run(
            Self.tlaunch, ["firmware", "launch", "--image", "sample-linux", "--vtpm-state", state, "--log-out", log])
        #expect(s == 0, "\(err)")
        #expect(out.contains("booted /vmlinuz") && out.contains("Secure Boot enforced"))
        #expect(FileManager.default.fileExists(atPath: state))
        let (es, explained, ee) = try await Interop.run(Self.tlaunch, ["eventlog", "explain", log])
        #expect(es == 0, "\(ee)")
        #expect(explained.contains("Secure Boot") && explained.contains("grubx64.efi"), "\(explained)")
        // The prediction is the launch's log, PCR for PCR.
        let (ps, json, pe) = try await Interop.run(Self.tlaunch, ["predict", "--image", "sample-linux", "--json"])
        #expect(ps == 0, "\(pe)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let predicted = try #require((object["pcrs"] as? [String: [String: String]])?["sha256"])
        let replayed = try EventLog(parsing: Array(try Data(contentsOf: URL(fileURLWithPath: log)))).replay()
        for (pcr, value) in predicted { #expect(hexString(replayed[.sha256, UInt32(pcr)!] ?? []) == value, "PCR \(pcr)") }
        #expect((object["stages"] as? [[String: Any]])?.compactMap { $0["verifiedBy"] as? String } == ["db", "MokListRT", "MokListRT"])
    }

    /// `tlaunch image sample-kernel`: where the README's "new kernel" and "tampered file" come
    /// from — another kernel build signed with the data folder's vendor key, or one nobody signed.
    @Test func sampleKernelsAreSignedByTheDataFoldersVendorKeyOrNotAtAll() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("data").path
        let signed = dir.appendingPathComponent("new-kernel.efi").path, unsigned = dir.appendingPathComponent("tampered.efi").path
        var (s, out, err) = try await Interop.run(Self.tlaunch, ["image", "sample-kernel", "--build", "3", "-o", signed, "--data", data])
        #expect(s == 0 && out.contains("signed with the platform's vendor key"), "\(err)")
        (s, _, err) = try await Interop.run(Self.tlaunch,
                                            ["image", "sample-kernel", "--build", "3", "--unsigned", "-o", unsigned, "--data", data])
        #expect(s == 0, "\(err)")
        let keys = try PlatformKeys.loadOrCreate(directory: URL(fileURLWithPath: data).appendingPathComponent("secureboot"))
        let vendorOnly = try SignatureDatabase(certificates: [keys.vendor.certificate])
        let update = try PEImage(Array(try Data(contentsOf: URL(fileURLWithPath: signed))))
        let decision = ImageVerifier.decide(update, db: vendorOnly, dbx: SignatureDatabase())
        #expect(decision.verdict == .allowed && decision.code == .allowedBySignature, "\(decision.reason)")
        let tampered = try PEImage(Array(try Data(contentsOf: URL(fileURLWithPath: unsigned))))
        #expect(ImageVerifier.decide(tampered, db: vendorOnly, dbx: SignatureDatabase()).code == .deniedUnsigned)
        // Not sample-linux's own kernel: another build is another file (measured boot tells them apart).
        let own = try SampleImages.sampleLinux(keys: keys).esp.file("/vmlinuz")
        #expect(try update.authenticodeDigest() != PEImage(try #require(own)).authenticodeDigest())
        (s, _, err) = try await Interop.run(Self.tlaunch, ["image", "sample-kernel", "--build", "144", "-o", signed, "--data", data])
        #expect(s != 0 && err.contains("not 144"), "\(err)")
    }

    @Test func refusalsAndBadInputExitNonZeroWithAReason() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("EFI/BOOT"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("MZ not really a PE".utf8).write(to: dir.appendingPathComponent("EFI/BOOT/BOOTX64.EFI"))
        let (s, out, err) = try await Interop.run(Self.tlaunch, ["predict", "--esp", dir.path])
        #expect(s != 0)
        #expect((out + err).contains("invalid-image") && (out + err).contains("BOOTX64.EFI"), "\(out)\(err)")
        let (s2, _, e2) = try await Interop.run(Self.tlaunch, ["predict", "--esp", dir.appendingPathComponent("missing").path])
        #expect(s2 != 0 && e2.contains("does not exist"), "\(e2)")
        let (s3, o3, _) = try await Interop.run(Self.tlaunch, ["firmware", "reference-values"])
        #expect(s3 == 0 && o3.contains("sha256   0"))
    }
}
