import Foundation
import MeasuredBoot
import SecureBoot
import TLaunchTestSupport
import TPM2
import Testing
import VirtualFirmware
import VirtualTPM

/// The virtual firmware's prediction against real firmware: QEMU + Debian's OVMF (Secure Boot
/// build, SMM) + swtpm (or our vTPM, whose command trace shows every measurement), booting
/// Debian's signed shim → grub → kernel into an initramfs that prints the kernel's event log and
/// PCRs. PCRs 4, 7, 8, 9 and 14 do not depend on OVMF's own build: they must be equal, and so
/// must their events (type, order, digests, and the data that has a defined meaning).
@Suite("Virtual firmware: predictions equal real OVMF boots", .serialized)
struct FidelityTests {
    static let comparedPCRs: [UInt32] = [4, 5, 7, 8, 9, 14]

    /// An ESP folder as a Debian installation lays it out for the removable path: shim as
    /// BOOTX64.EFI, grub beside it, grub.cfg where Debian's signed grub looks ($prefix = /EFI/debian).
    static func debianESP(kernel: String, in dir: URL, grubConfig: String? = nil, tamperGrub: Bool = false) throws -> URL {
        let esp = dir.appendingPathComponent("esp")
        try FileManager.default.createDirectory(at: esp.appendingPathComponent("EFI/BOOT"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: esp.appendingPathComponent("EFI/debian"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Debian.shim, toPath: esp.appendingPathComponent("EFI/BOOT/BOOTX64.EFI").path)
        var grub = Array(try Data(contentsOf: URL(fileURLWithPath: Debian.grub)))
        if tamperGrub { grub[grub.count / 2] ^= 0x01 }   // inside grub's module area: the digest changes, the signature does not
        try Data(grub).write(to: esp.appendingPathComponent("EFI/BOOT/grubx64.efi"))
        try FileManager.default.copyItem(atPath: kernel, toPath: esp.appendingPathComponent("vmlinuz").path)
        try Data(try reportingInitramfs()).write(to: esp.appendingPathComponent("initrd.img"))
        let cfg = grubConfig ?? "set timeout=0\nlinux /vmlinuz console=ttyS0 panic=-1 no_timer_check\ninitrd /initrd.img\nboot\n"
        try Data(cfg.utf8).write(to: esp.appendingPathComponent("EFI/debian/grub.cfg"))
        return esp
    }

    /// A configuration shaped like grub-mkconfig's: a function, a feature test with an
    /// assignment, menu entries with options, a submenu.
    static let menuConfig = """
    set default=0
    set timeout=0
    function load_video {
      insmod all_video
    }
    insmod part_gpt
    if [ x$feature_default_font_path = xy ] ; then
       font=unicode
    else
       font=/usr/share/grub/unicode.pf2
    fi
    menuentry 'Debian GNU/Linux' --class debian --class gnu-linux $menuentry_id_option 'gnulinux-simple-1234' {
    \tload_video
    \tinsmod gzio
    \techo\t'Loading Linux ...'
    \tlinux\t/vmlinuz console=ttyS0 panic=-1 no_timer_check
    \tinitrd\t/initrd.img
    }
    menuentry 'Debian GNU/Linux (quiet)' --class debian {
    \tlinux\t/vmlinuz console=ttyS0 quiet
    \tinitrd\t/initrd.img
    }
    submenu 'Advanced options' $menuentry_id_option 'gnulinux-advanced' {
    \tmenuentry 'Debian (recovery)' {
    \t\tlinux /vmlinuz single
    \t}
    }

    """

    static func tempDir() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("tl-fid-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    static func predict(vars: String, esp: URL) throws -> LaunchReport {
        let store = try VariableStore(Array(try Data(contentsOf: URL(fileURLWithPath: vars))))
        let fw = VirtualFirmware(settings: FirmwareSettings(variables: store, banks: [.sha256]), model: .ovmf(reference: nil))
        return try fw.predict(esp: ESP.load(esp.path))
    }

    /// What an event's data means, with what does not (load addresses) left out.
    static func meaning(_ e: Event) -> String {
        switch e.decoded {
        case .imageLoad(let i): return "image \(i.devicePath?.filePath ?? "")"
        default: return hexString(e.data)
        }
    }

    static func digest(_ e: Event) -> [UInt8] { Array(e.digests.first { $0.algorithm == .sha256 }?.digest ?? []) }

    /// PCR values, and the events of each compared PCR from the guest's log and/or our vTPM's trace.
    static func compare(_ predicted: LaunchReport, _ real: RealBoot, sourceLocation: SourceLocation = #_sourceLocation) {
        let zeros = [UInt8](repeating: 0, count: 32)
        for p in comparedPCRs {
            let want = real.pcrs[p]
            #expect(want != nil, "the guest printed PCR \(p)", sourceLocation: sourceLocation)
            #expect(predicted.pcrs[.sha256, p] ?? zeros == want ?? [],
                    "PCR \(p): predicted \(hexString(predicted.pcrs[.sha256, p] ?? zeros)) real \(hexString(want ?? []))",
                    sourceLocation: sourceLocation)
            let ours = predicted.log.events.filter { $0.pcrIndex == p && $0.type != .noAction }
            if let log = real.log {
                let theirs = log.events.filter { $0.pcrIndex == p && $0.type != .noAction }
                #expect(ours.count == theirs.count, "PCR \(p): \(ours.count) predicted events, \(theirs.count) real",
                        sourceLocation: sourceLocation)
                for (a, b) in zip(ours, theirs) {
                    #expect(a.type == b.type && digest(a) == digest(b) && meaning(a) == meaning(b),
                            """
                                PCR \(p) event: predicted \(a.type) \(meaning(a).prefix(80)) \(hexString(digest(a))) real \(b.type) \
                                \(meaning(b).prefix(80)) \(hexString(digest(b)))
                                """,
                            sourceLocation: sourceLocation)
                }
            }
            if !real.extends.isEmpty {
                let theirs = real.extends.filter { $0.pcr == p }.map(\.sha256)
                #expect(ours.map(digest) == theirs, "PCR \(p): the measurement sequence differs from what OVMF, shim and grub extended",
                        sourceLocation: sourceLocation)
            }
        }
    }

    @Test(.timeLimit(.minutes(5)))
    func microsoftKeysSecureBootOnDebianChain() async throws {
        guard let (qemu, kernel) = Debian.available() else { return }
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let esp = try Self.debianESP(kernel: kernel, in: dir)
        let predicted = try Self.predict(vars: Debian.varsMS, esp: esp)
        #expect(predicted.succeeded && predicted.secureBootEnforced)
        #expect(predicted.stages.map(\.verifiedBy) == ["db", "MokListRT", "MokListRT"])
        let real = try await bootRealVM(qemu: qemu, vars: Debian.varsMS, esp: esp, tpm: .swtpm)
        #expect(real.finished, "the VM booted to the initramfs: \(real.serial.suffix(600))")
        #expect(real.log != nil, "the guest exposed its event log")
        Self.compare(predicted, real)
        // With this boot's log as OVMF's reference (PCRs 0–3, 6), every PCR before the kernel runs is predicted.
        if let log = real.log {
            let store = try VariableStore(Array(try Data(contentsOf: URL(fileURLWithPath: Debian.varsMS))))
            let full = try VirtualFirmware(settings: FirmwareSettings(variables: store, banks: [.sha256]),
                                           model: .ovmf(reference: log)).predict(esp: ESP.load(esp.path))
            for p: UInt32 in Array(0...9) + [11, 12, 13, 14, 15] {   // PCR 10 is the kernel's IMA
                #expect(full.pcrs[.sha256, p] ?? [UInt8](repeating: 0, count: 32) == real.pcrs[p], "PCR \(p) with the reference")
            }
        }
    }

    /// The same chain on a GPT disk image with a FAT32 ESP (made by sfdisk, mkfs.fat and mtools):
    /// OVMF measures the GPT into PCR 5 and grub names the device (hd0,gpt1).
    @Test(.timeLimit(.minutes(5)))
    func gptDiskImage() async throws {
        guard let (qemu, kernel) = Debian.available(), let sfdisk = Interop.tool("sfdisk"), let mkfs = Interop.tool("mkfs.fat"),
              let mmd = Interop.tool("mmd"), let mcopy = Interop.tool("mcopy") else { return }
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let folder = try Self.debianESP(kernel: kernel, in: dir)
        let disk = dir.appendingPathComponent("disk.img")
        _ = FileManager.default.createFile(atPath: disk.path, contents: nil)
        let h = try FileHandle(forWritingTo: disk)
        try h.truncate(atOffset: 64 << 20)
        try h.close()
        func run(_ tool: String, _ args: [String], stdin: String? = nil) throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: tool)
            p.arguments = args
            p.environment = ["MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
            let input = Pipe()
            p.standardInput = input
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
            try input.fileHandleForWriting.close()
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "\(tool) \(args)")
        }
        try run(sfdisk, ["-q", disk.path], stdin: "label: gpt\nstart=2048, size=120832, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n")
        try run(mkfs, ["-F", "32", "--offset", "2048", disk.path, "60416"])
        let fat = "\(disk.path)@@1048576"
        try run(mmd, ["-i", fat, "::/EFI", "::/EFI/BOOT", "::/EFI/debian"])
        for (from, to) in [("EFI/BOOT/BOOTX64.EFI", "::/EFI/BOOT/"), ("EFI/BOOT/grubx64.efi", "::/EFI/BOOT/"),
                           ("EFI/debian/grub.cfg", "::/EFI/debian/"),
                           ("vmlinuz", "::/"), ("initrd.img", "::/")] {
            try run(mcopy, ["-i", fat, folder.appendingPathComponent(from).path, to])
        }
        let predicted = try Self.predict(vars: Debian.varsMS, esp: disk)
        #expect(predicted.succeeded)
        #expect(predicted.log.events.contains { $0.pcrIndex == 5 && $0.type == .efiGPTEvent })
        #expect(predicted.log.events.contains { String(decoding: $0.data, as: UTF8.self).contains("(hd0,gpt1)/EFI/debian/grub.cfg") })
        let real = try await bootRealVM(qemu: qemu, vars: Debian.varsMS, esp: disk, tpm: .swtpm)
        #expect(real.finished, "the VM booted to the initramfs: \(real.serial.suffix(600))")
        #expect(real.log != nil, "the guest exposed its event log")
        Self.compare(predicted, real)
    }

    /// A grub-mkconfig-shaped menu: definitions measured as written, the default entry run.
    @Test(.timeLimit(.minutes(5)))
    func grubMenuAsGrubMkconfigWritesIt() async throws {
        guard let (qemu, kernel) = Debian.available() else { return }
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let esp = try Self.debianESP(kernel: kernel, in: dir, grubConfig: Self.menuConfig)
        let predicted = try Self.predict(vars: Debian.varsMS, esp: esp)
        #expect(predicted.succeeded)
        let real = try await bootRealVM(qemu: qemu, vars: Debian.varsMS, esp: esp, tpm: .swtpm)
        #expect(real.finished, "the VM booted to the initramfs: \(real.serial.suffix(600))")
        #expect(real.log != nil, "the guest exposed its event log")
        Self.compare(predicted, real)
    }

    @Test(.timeLimit(.minutes(5)))
    func noKeysSecureBootOffDebianChain() async throws {
        guard let (qemu, kernel) = Debian.available() else { return }
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let esp = try Self.debianESP(kernel: kernel, in: dir)
        let predicted = try Self.predict(vars: Debian.varsBlank, esp: esp)
        #expect(predicted.succeeded && !predicted.secureBootEnforced)
        // With Secure Boot off grub starts the kernel without its EFI stub, so the guest has no
        // event log: the swtpm boot gives the PCRs, our vTPM's trace the measurement sequence.
        let real = try await bootRealVM(qemu: qemu, vars: Debian.varsBlank, esp: esp, tpm: .swtpm)
        #expect(real.finished, "the VM booted to the initramfs: \(real.serial.suffix(600))")
        Self.compare(predicted, real)
        let traced = try await bootRealVM(qemu: qemu, vars: Debian.varsBlank, esp: esp, tpm: .ours)
        #expect(traced.finished && !traced.extends.isEmpty)
        Self.compare(predicted, traced)
    }

    @Test(.timeLimit(.minutes(5)))
    func snakeoilKeysDirectKernelBoot() async throws {
        guard let (qemu, kernel) = Debian.available(), let openssl = Interop.tool("openssl") else { return }
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        // The kernel signed with the snakeoil key by `tlaunch secureboot sign`, booted by firmware
        // directly from a boot entry whose options are the command line.
        let key = dir.appendingPathComponent("snakeoil.key").path
        let (ks, _, ke) = try await Interop.run(openssl, ["pkcs8", "-in", Debian.snakeoilKey, "-passin", "pass:snakeoil", "-out", key])
        #expect(ks == 0, "\(ke)")
        let esp = dir.appendingPathComponent("esp")
        try FileManager.default.createDirectory(at: esp.appendingPathComponent("EFI/BOOT"), withIntermediateDirectories: true)
        let tlaunch = Built.tlaunch
        let (ss, _, se) = try await Interop.run(tlaunch, ["secureboot", "sign", kernel, "--key", key, "--cert", Debian.snakeoilCert,
                                                    "--output", esp.appendingPathComponent("EFI/BOOT/BOOTX64.EFI").path])
        #expect(ss == 0, "\(se)")
        try Data(try reportingInitramfs()).write(to: esp.appendingPathComponent("initrd.img"))
        let vars = dir.appendingPathComponent("vars.fd").path
        let (bs, _, be) = try await Interop.run(tlaunch, ["firmware", "boot-entry", "--vars", Debian.varsSnakeoil, "--cmdline",
                                                    "console=ttyS0 initrd=\\initrd.img panic=-1 no_timer_check", "--output", vars])
        #expect(bs == 0, "\(be)")
        let predicted = try Self.predict(vars: vars, esp: esp)
        #expect(predicted.succeeded && predicted.secureBootEnforced && predicted.stages.map(\.kind) == [.linux])
        #expect(predicted.stages.first?.authority?.contains("SnakeOil") == true)
        let real = try await bootRealVM(qemu: qemu, vars: vars, esp: esp, tpm: .swtpm)
        #expect(real.finished, "the VM booted to the initramfs: \(real.serial.suffix(600))")
        #expect(real.log != nil, "the guest exposed its event log")
        Self.compare(predicted, real)
    }

    @Test(.timeLimit(.minutes(5)))
    func tamperedGrubIsRefusedByBoth() async throws {
        guard let (qemu, kernel) = Debian.available() else { return }
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let esp = try Self.debianESP(kernel: kernel, in: dir, tamperGrub: true)
        let predicted = try Self.predict(vars: Debian.varsMS, esp: esp)
        #expect(predicted.failure?.code == .securityViolation && predicted.failure?.stage == "shim")
        #expect(predicted.kernel == nil)
        // OVMF runs shim, and shim refuses grub with the same reason.
        let real = try await bootRealVM(qemu: qemu, vars: Debian.varsMS, esp: esp, tpm: .ours,
                                        until: ["Security Violation", "TLAUNCH-PCRS-END"], timeout: .seconds(180))
        #expect(real.serial.contains("Security Violation"), "shim refused the tampered grub: \(real.serial.suffix(600))")
        #expect(!real.serial.contains("TLAUNCH-PCRS-END"))
        // Up to the refusal, the measurements are the predicted ones.
        for p: UInt32 in [7, 14] {
            #expect(
                predicted.log.events.filter { $0.pcrIndex == p && $0.type != .noAction }.map(Self.digest)
                    == real.extends.filter { $0.pcr == p }.map(\.sha256),
                    "PCR \(p) up to the refusal")
        }
    }
}
