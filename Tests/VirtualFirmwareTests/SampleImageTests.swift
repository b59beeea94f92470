import Foundation
import MeasuredBoot
import SecureBoot
import TLaunchTestSupport
import TPM2
import Testing
import VirtualFirmware
import VirtualTPM
import X509

@Suite("Virtual firmware: sample images for the embedded default")
struct SampleImageTests {
    static func keys() throws -> (PlatformKeys, URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-keys-\(UUID().uuidString)")
        return (try PlatformKeys.loadOrCreate(directory: dir), dir)
    }

    /// Two platforms' sample-linux: ours (ESP and store) and another's, whose shim, grub and
    /// kernel are signed with other keys; `body` runs with both, the keys removed afterwards.
    static func withTwoPlatforms(_ body: (_ ours: (esp: ESP, vars: VariableStore), _ foreign: ESP,
                                          _ other: PlatformKeys) throws -> Void) throws {
        let (keys, dir) = try Self.keys()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (other, dir2) = try Self.keys()
        defer { try? FileManager.default.removeItem(at: dir2) }
        let (foreign, _) = try SampleImages.sampleLinux(keys: other)
        try body(try SampleImages.sampleLinux(keys: keys), foreign, other)
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
        #expect(
            again.vendor.certificate == keys.vendor.certificate && again.set.keys.map(\.certificate) == keys.set.keys.map(\.certificate))
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

    @Test func aSampleSignedWithAnotherKeyIsRefused() throws { try Self.withTwoPlatforms { ours, foreign, _ in
        let (esp, vars) = ours
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
    } }

    /// One decision cache serves every VM of a host: shim's MOK database (its vendor certificate
    /// and the VM's MokList) is remembered by both, so each VM is decided by its own MokList —
    /// whatever order they launch in, and the same as without a cache. The authorities measured
    /// into PCR 7 are the ones that allowed each image.
    @Test func aSharedDecisionCacheDecidesEachVMByItsOwnMokList() throws { try Self.withTwoPlatforms { ours, foreign, other in
        let (esp, vars) = ours
        // A kernel signed by another vendor: shim allows it only where the MokList enrols that vendor.
        var files = esp.files
        files["/vmlinuz"] = foreign.file("/vmlinuz")
        let withForeignKernel = ESP(files: files)
        let otherVendor = try other.vendor.certificate.serializeAsPEM().derBytes
        let mok = SignatureDatabase(lists: [SignatureList(type: .certX509, signatureSize: 16 + otherVendor.count,
                                                          entries: [SignatureEntry(owner: .shimLock, type: .certX509, data: otherVendor)])])
        var enrolled = vars
        try enrolled.set("MokList", .shimLock, attributes: 0x3, data: mok.encoded)

        let shared = DecisionCache()
        func launch(_ store: VariableStore, cached: Bool) throws -> LaunchReport {
            var firmware = VirtualFirmware(settings: FirmwareSettings(variables: store, banks: [.sha256]))
            if cached { firmware.cache = shared }
            return try firmware.launch(esp: withForeignKernel, tpm: VirtualTPM.ephemeral())
        }
        for (store, allowed) in [(enrolled, true), (vars, false), (enrolled, true), (vars, false)] {
            let plain = try launch(store, cached: false), cached = try launch(store, cached: true)
            #expect(cached.succeeded == allowed && plain.succeeded == allowed, "\(String(describing: cached.failure))")
            if !allowed { #expect(cached.failure?.code == .securityViolation && cached.failure?.stage == "shim") }
            #expect(cached.log.events.map(\.data) == plain.log.events.map(\.data) && cached.pcrs == plain.pcrs)
        }
        // The kernel's authority in PCR 7 is the other vendor's certificate, from the MokList.
        let log = try launch(enrolled, cached: true).log
        let authorities = log.events.filter { $0.type == .efiVariableAuthority }.map { Array($0.data) }
        #expect(authorities.contains { $0.suffix(otherVendor.count).elementsEqual(otherVendor) })
    } }

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
