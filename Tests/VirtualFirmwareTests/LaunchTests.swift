import Foundation
import MeasuredBoot
import SecureBoot
import TLaunchTestSupport
import TPM2
import Testing
import VirtualFirmware
import VirtualTPM

/// Reads the vTPM's sha256 PCRs (in groups of 8, as PCR_Read returns at most 8 digests).
func readPCRs(_ tpm: VirtualTPM, _ pcrs: [UInt32]) throws -> [UInt32: [UInt8]] {
    var out: [UInt32: [UInt8]] = [:]
    for group in stride(from: 0, to: pcrs.count, by: 8).map({ Array(pcrs[$0..<min($0 + 8, pcrs.count)]) }) {
        var read = TPM2PCRRead()
        read.pcrSelectionIn = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: group.map { Int($0) })])
        let response = tpm.handle(try TPMCommandPacket(code: .pcrRead, handles: [], sessions: [],
                                                       parameters: read.parameterBytes()).encode())
        let packet = try TPMResponsePacket.decode(response, handleCount: 0, sessionCount: 0)
        let values = try TPM2PCRRead.Response(handles: [], parameters: packet.parameters).pcrValues.digests
        for (p, v) in zip(group, values) { out[p] = v.bytes }
    }
    return out
}

/// A Debian ESP in memory (no QEMU needed): shim, grub, a kernel, grub.cfg.
func debianESPInMemory(grubConfig: String = "set timeout=0\nlinux /vmlinuz console=ttyS0\ninitrd /initrd.img\nboot\n",
                       edit: (inout [String: [UInt8]]) -> Void = { _ in }) throws -> ESP? {
    guard let kernel = Debian.kernel, FileManager.default.fileExists(atPath: Debian.shim),
        FileManager.default.fileExists(atPath: Debian.grub)
    else {
        if Interop.required {
            Issue.record("Debian's shim-signed, grub-efi-amd64-signed and linux-image-amd64 are required (scripts/test.sh installs them)")
        }
        return nil
    }
    var files: [String: [UInt8]] = [
        "/EFI/BOOT/BOOTX64.EFI": Array(try Data(contentsOf: URL(fileURLWithPath: Debian.shim))),
        "/EFI/BOOT/grubx64.efi": Array(try Data(contentsOf: URL(fileURLWithPath: Debian.grub))),
        "/vmlinuz": Array(try Data(contentsOf: URL(fileURLWithPath: kernel))),
        "/initrd.img": Array("not really an initramfs".utf8),
        "/EFI/debian/grub.cfg": Array(grubConfig.utf8),
    ]
    edit(&files)
    return ESP(files: files)
}

func store(_ path: String) throws -> VariableStore { try VariableStore(Array(try Data(contentsOf: URL(fileURLWithPath: path)))) }

@Suite("Virtual firmware: launches into a vTPM, reference values, bad input")
struct LaunchTests {
    @Test func launchExtendsTheVTPMExactlyAsTheLogSays() throws {
        guard let esp = try debianESPInMemory() else { return }
        let tpm = VirtualTPM.ephemeral()
        let report = try VirtualFirmware(settings: FirmwareSettings(variables: try store(Debian.varsMS))).launch(esp: esp, tpm: tpm)
        #expect(report.succeeded, "\(report.failure.map { "\($0)" } ?? "")")
        #expect(report.stages.map(\.kind) == [.shim, .grub, .linux])
        #expect(report.kernel == "/vmlinuz" && report.kernelCommandLine == "console=ttyS0" && report.initrds == ["/initrd.img"])
        let pcrs: [UInt32] = Array(0...15)
        let read = try readPCRs(tpm, pcrs)
        let replay = report.pcrs
        for p in pcrs {
            #expect(read[p] == (replay[.sha256, p] ?? [UInt8](repeating: 0, count: 32)), "PCR \(p)")
        }
        // The log is what the measured-boot verifier reads: it parses back and replays the same.
        let reparsed = try EventLog(parsing: report.log.encoded())
        #expect(reparsed.replay() == replay)
        #expect(reparsed.events.count == report.log.events.count)
    }

    @Test func referenceValuesAreWhatTheFirmwareMeasures() throws {
        guard let esp = try debianESPInMemory() else { return }
        let report = try VirtualFirmware(settings: FirmwareSettings(variables: try store(Debian.varsMS),
                                                                    banks: [.sha1, .sha256])).predict(esp: esp)
        let published = try FirmwareReference.values(banks: [.sha1, .sha256])
        #expect(published.count == 12)
        for v in published {
            #expect(report.pcrs[v.bank, v.pcr] == v.value, "PCR \(v.pcr) \(v.bank)")
        }
        // …and they do not depend on the VM's keys or boot chain.
        let other = try VirtualFirmware(settings: FirmwareSettings(variables: try store(Debian.varsBlank),
                                                                   banks: [.sha1, .sha256])).predict(esp: esp)
        for v in published { #expect(other.pcrs[v.bank, v.pcr] == v.value) }
        #expect(other.pcrs[.sha256, 7] != report.pcrs[.sha256, 7])
    }

    @Test func grubsEmbeddedConfigurationIsReadFromItsMemdisk() throws {
        guard FileManager.default.fileExists(atPath: Debian.grub) else {
            if Interop.required { Issue.record("grub-efi-amd64-signed is required") }
            return
        }
        let grub = try BootImage(path: "/grubx64.efi", bytes: Array(try Data(contentsOf: URL(fileURLWithPath: Debian.grub))))
        #expect(grub.kind == .grub)
        #expect(grub.grubPrefix == "/EFI/debian")
        #expect(grub.grubEmbeddedConfig?.contains("source $prefix/grub.cfg") == true)
        let shim = try BootImage(path: "/shim", bytes: Array(try Data(contentsOf: URL(fileURLWithPath: Debian.shim))))
        #expect(shim.kind == .shim)
        #expect(shim.shimSbatLevel?.hasPrefix("sbat,1,") == true)
        #expect(shim.shimVendorCertificate.map { CertificateInfo(der: $0).subject }??.contains("Debian Secure Boot CA") == true)
    }

    @Test func secureBootOffBootsWhatSecureBootOnRefuses() throws {
        guard let esp = try debianESPInMemory(edit: { $0["/EFI/BOOT/grubx64.efi"]![0x1000] ^= 1 }) else { return }
        let ms = try store(Debian.varsMS)
        let on = try VirtualFirmware(settings: FirmwareSettings(variables: ms)).predict(esp: esp)
        #expect(on.failure?.code == .securityViolation)
        #expect(on.failure?.reason.contains("Verification failed") == true)
        let off = try VirtualFirmware(settings: FirmwareSettings(secureBoot: false, variables: ms)).predict(esp: esp)
        #expect(off.succeeded && !off.secureBootEnforced)
    }

    @Test func firmwareWithoutAVTPMMeasuresNothing() throws {
        guard let esp = try debianESPInMemory() else { return }
        let measured = try VirtualFirmware(settings: FirmwareSettings(secureBoot: false)).predict(esp: esp)
        #expect(measured.succeeded && measured.log.events.count > 10)
        let standard = try VirtualFirmware(settings: FirmwareSettings(secureBoot: false, vTPM: false)).predict(esp: esp)
        #expect(standard.succeeded && standard.log.events.count == 1)   // only the log header: nothing measured
    }

    /// Broken inputs fail the launch with a reason; the vTPM holds exactly what was measured up to then.
    @Test(arguments: [
        ("missing grub.cfg", "notFound"),
        ("unterminated quote", "grubScript"),
        ("loop", "unsupported"),
        ("corrupt grub", "invalidImage"),
        ("missing kernel", "notFound"),
        ("no boot", "grubScript"),
        ("no shim", "notFound"),
    ])
    func brokenESPsFailWithAReason(_ c: (String, String)) throws {
        let config: String
        switch c.0 {
        case "unterminated quote": config = "linux \"/vmlinuz console=ttyS0\nboot\n"
        case "loop": config = "for f in a b; do echo $f; done\nlinux /vmlinuz\nboot\n"
        case "missing kernel": config = "linux /boot/vmlinuz-none\nboot\n"
        case "no boot": config = "linux /vmlinuz\n"
        default: config = "linux /vmlinuz\nboot\n"
        }
        guard let esp = try debianESPInMemory(grubConfig: config, edit: { files in
            switch c.0 {
            case "missing grub.cfg": files["/EFI/debian/grub.cfg"] = nil
            case "corrupt grub": files["/EFI/BOOT/grubx64.efi"] = Array(files["/EFI/BOOT/grubx64.efi"]!.prefix(700))
            case "no shim": files["/EFI/BOOT/BOOTX64.EFI"] = nil
            default: break
            }
        }) else { return }
        let tpm = VirtualTPM.ephemeral()
        let report = try VirtualFirmware(settings: FirmwareSettings(variables: try store(Debian.varsMS))).launch(esp: esp, tpm: tpm)
        let f = try #require(report.failure)
        let codes: [String: FirmwareError.Code] = ["notFound": .notFound, "grubScript": .grubScript, "unsupported": .unsupported,
                                                   "invalidImage": .invalidImage]
        #expect(f.code == codes[c.1], "\(c.0): \(f)")
        #expect(!f.reason.isEmpty && !f.stage.isEmpty)
        let read = try readPCRs(tpm, Array(0...15))
        for p: UInt32 in 0...15 { #expect(read[p] == (report.pcrs[.sha256, p] ?? [UInt8](repeating: 0, count: 32)), "\(c.0): PCR \(p)") }
    }

    /// A menu as grub-mkconfig writes one: functions, assignments, menuentry and submenu blocks;
    /// the default entry runs after the configuration.
    @Test func menusRunTheirDefaultEntry() throws {
        guard let esp = try debianESPInMemory(grubConfig: FidelityTests.menuConfig) else { return }
        let report = try VirtualFirmware(settings: FirmwareSettings(variables: try store(Debian.varsMS))).predict(esp: esp)
        #expect(report.succeeded, "\(report.failure.map { "\($0)" } ?? "")")
        #expect(report.kernelCommandLine == "console=ttyS0 panic=-1 no_timer_check" && report.initrds == ["/initrd.img"])
        let commands = report.log.events.filter { $0.pcrIndex == 8 }.map { String(decoding: $0.data.dropLast(), as: UTF8.self) }
        #expect(commands.contains("grub_cmd: setparams Debian GNU/Linux gnulinux-simple-1234"))
        #expect(commands.contains("grub_cmd: insmod all_video"), "the function's body ran")
        #expect(commands.contains("grub_cmd: font=unicode"), "the assignment in the taken branch ran")
        #expect(!commands.contains { $0.contains("linux /vmlinuz single") && !$0.hasPrefix("grub_cmd: submenu") },
                "the submenu's entry did not run")
        // `set default=1` picks the second top-level entry.
        guard
            let second = try debianESPInMemory(
                grubConfig: FidelityTests.menuConfig.replacingOccurrences(of: "set default=0", with: "set default=1"))
        else { return }
        let r2 = try VirtualFirmware(settings: FirmwareSettings(variables: try store(Debian.varsMS))).predict(esp: second)
        #expect(r2.kernelCommandLine == "console=ttyS0 quiet", "\(r2.failure.map { "\($0)" } ?? "")")
    }

    /// `search --file --set=VAR NAME` finds files on the ESP (the only disk) and names its device.
    @Test func searchFindsFilesOnTheESP() throws {
        let config = """
            if search --file --set=found /vmlinuz; then linux /vmlinuz root=$found; fi\nif search -f --set=other /nope; then set x=1; \
            else initrd /initrd.img; fi\nboot\n
            """
        guard let esp = try debianESPInMemory(grubConfig: config) else { return }
        let report = try VirtualFirmware(settings: FirmwareSettings(variables: try store(Debian.varsMS))).predict(esp: esp)
        #expect(report.kernelCommandLine == "root=hd0,msdos1", "\(report.failure.map { "\($0)" } ?? "")")
        #expect(report.initrds == ["/initrd.img"], "a search for a missing file fails")
    }

    @Test func brokenBootEntriesAndStores() throws {
        guard let esp = try debianESPInMemory() else { return }
        var s = try store(Debian.varsMS)
        try s.set("BootOrder", .globalVariable, attributes: 7, data: [1, 0, 2])
        let odd = try VirtualFirmware(settings: FirmwareSettings(variables: s)).predict(esp: esp)
        #expect(odd.failure?.code == .invalidVariableStore)
        try s.set("BootOrder", .globalVariable, attributes: 7, data: [5, 0])
        try s.set("Boot0005", .globalVariable, attributes: 7, data: [1, 0, 0, 0, 0xFF, 0x7F])
        let bad = try VirtualFirmware(settings: FirmwareSettings(variables: s)).predict(esp: esp)
        #expect(bad.failure?.code == .invalidVariableStore && bad.failure?.reason.contains("Boot0005") == true)
        #expect(throws: SecureBootError.self) { _ = try VariableStore([UInt8](repeating: 0xFF, count: 4096)) }
    }

    @Test func fatImagesAreRead() throws {
        // grub's memdisk is a real FAT12 image made by mkfs.fat.
        guard FileManager.default.fileExists(atPath: Debian.grub) else { return }
        let grub = Array(try Data(contentsOf: URL(fileURLWithPath: Debian.grub)))
        let start = try #require(
            grub.indices.first {
                grub[$0] == 0xEB && grub[$0 + 1] == 0x3C && grub[$0 + 3] == 0x6D && Array(grub[$0 + 3..<$0 + 11]) == Array("mkfs.fat".utf8)
            })
        let esp = try ESP.image(Array(grub[start...]))
        #expect(esp.file("/GRUB.CFG") != nil && esp.file("/grub.cfg") != nil)
        #expect(String(decoding: esp.file("/grub.cfg") ?? [], as: UTF8.self).contains("$prefix"))
        #expect(throws: FirmwareError.self) { _ = try ESP.image([UInt8](repeating: 0, count: 4096)) }
    }
}

@Suite("Virtual firmware: the published reference values")
struct PublishedReferenceValuesTests {
    @Test func theDocumentedFileIsWhatTheCodeComputes() throws {
        let file = Built.packageRoot.appendingPathComponent("docs/firmware/reference-values-\(VirtualFirmware.version).json")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any],
                                "\(file.path) must exist for this version")
        #expect(json["version"] as? String == VirtualFirmware.version)
        let pcrs = try #require(json["pcrs"] as? [String: [String: String]])
        let computed = try FirmwareReference.values(banks: [.sha1, .sha256, .sha384])
        #expect(computed.count == 18)
        for v in computed {
            #expect(pcrs[PCRValues.bankName(v.bank)]?[String(v.pcr)] == hexString(v.value), "PCR \(v.pcr) \(v.bank)")
        }
    }
}
