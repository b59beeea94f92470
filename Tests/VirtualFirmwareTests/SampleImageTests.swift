import Foundation
import MeasuredBoot
import SecureBoot
import TLaunchTestSupport
import TPM2
import Testing
import VirtualFirmware
import VirtualTPM

@Suite("Virtual firmware: sample images for the embedded default")
struct SampleImageTests {
    static func keys() throws -> (PlatformKeys, URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-keys-\(UUID().uuidString)")
        return (try PlatformKeys.loadOrCreate(directory: dir), dir)
    }

    @Test func blankStoreIsOVMFsOwn() throws {
        let ours = SampleImages.blankVariableStore()
        let store = try VariableStore(ours)
        #expect(store.variables.isEmpty && store.isAuthenticated && !store.secureBootWillBeEnabled)
        guard FileManager.default.fileExists(atPath: Debian.varsBlank) else {
            if Interop.required { Issue.record("ovmf is required") }
            return
        }
        #expect(ours == Array(try Data(contentsOf: URL(fileURLWithPath: Debian.varsBlank))), "byte for byte OVMF_VARS_4M.fd")
    }

    @Test func sampleLinuxBootsWithSecureBootAndMeasuredBoot() throws {
        let (keys, dir) = try Self.keys()
        defer { try? FileManager.default.removeItem(at: dir) }
        // The keys persist: a second load gives the same certificates.
        let again = try PlatformKeys.loadOrCreate(directory: dir)
        #expect(again.vendor.certificate == keys.vendor.certificate && again.set.keys.map(\.certificate) == keys.set.keys.map(\.certificate))
        let (esp, vars) = try SampleImages.sampleLinux(keys: keys)
        #expect(vars.secureBootWillBeEnabled)
        let tpm = VirtualTPM.ephemeral()
        let report = try VirtualFirmware(settings: FirmwareSettings(variables: vars)).launch(esp: esp, tpm: tpm)
        #expect(report.succeeded, "\(report.failure.map { "\($0)" } ?? "")")
        #expect(report.secureBootEnforced)
        #expect(report.stages.map(\.kind) == [.shim, .grub, .linux])
        #expect(report.stages.map(\.verifiedBy) == ["db", "MokListRT", "MokListRT"])
        // Every image is a valid PE/COFF image whose signature our verifier and the firmware accept.
        for path in ["/EFI/BOOT/BOOTX64.EFI", "/EFI/BOOT/grubx64.efi", "/vmlinuz"] {
            let pe = try PEImage(try #require(esp.file(path)))
            #expect(pe.isSigned && pe.isPE32Plus && pe.subsystem == 10, "\(path)")
        }
        let read = try readPCRs(tpm, Array(0...15))
        for p: UInt32 in 0...15 { #expect(read[p] == (report.pcrs[.sha256, p] ?? [UInt8](repeating: 0, count: 32)), "PCR \(p)") }
        // The log explains itself with the Measured Boot module: Secure Boot on, the chain, the authorities.
        let explained = try EventLog(parsing: report.log.encoded())
        #expect(explained.replay() == report.pcrs)
    }

    @Test func aSampleSignedWithAnotherKeyIsRefused() throws {
        let (keys, dir) = try Self.keys()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (other, dir2) = try Self.keys()
        defer { try? FileManager.default.removeItem(at: dir2) }
        let (esp, vars) = try SampleImages.sampleLinux(keys: keys)
        let (foreign, _) = try SampleImages.sampleLinux(keys: other)
        // Shim from another platform: the firmware refuses it.
        var files = esp.files
        files["/EFI/BOOT/BOOTX64.EFI"] = foreign.file("/EFI/BOOT/BOOTX64.EFI")
        let report = try VirtualFirmware(settings: FirmwareSettings(variables: vars)).predict(esp: ESP(files: files))
        #expect(report.failure?.code == .securityViolation && report.failure?.stage == "firmware")
        // A kernel from another platform: shim refuses it (it is not signed by its vendor key).
        files = esp.files
        files["/vmlinuz"] = foreign.file("/vmlinuz")
        let k = try VirtualFirmware(settings: FirmwareSettings(variables: vars)).predict(esp: ESP(files: files))
        #expect(k.failure?.code == .securityViolation && k.failure?.stage == "shim")
    }

    @Test func debian12ImageFromThePackages() throws {
        guard let (esp, vars) = try SampleImages.debian12() else {
            if Interop.required { Issue.record("Debian's shim-signed, grub-efi-amd64-signed, linux-image-amd64 and ovmf are required") }
            return
        }
        let report = try VirtualFirmware(settings: FirmwareSettings(variables: vars)).predict(esp: esp)
        #expect(report.succeeded && report.secureBootEnforced)
        #expect(report.stages.first?.authority?.contains("Microsoft Corporation UEFI CA 2011") == true)
    }
}
