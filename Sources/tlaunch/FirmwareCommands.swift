import ArgumentParser
import Foundation
import MeasuredBoot
import SecureBoot
import TPM2
import VirtualFirmware
import VirtualTPM

extension FirmwareError: LocalizedError {
    public var errorDescription: String? { description }
}

/// Options that describe a VM to boot or predict.
struct VMOptions: ParsableArguments {
    @Option(help: """
        A built-in image instead of --vars/--esp: sample-linux (built at first use, signed with the platform's keys in \
        ~/.tlaunch/secureboot) or debian-12 (from the installed Debian packages).
        """) var image: String?
    @Option(help: "The VM's variable store (OVMF_VARS*.fd): PK, KEK, db, dbx, boot entries. Default: an empty store.") var vars: String?
    @Option(help: "The boot disk's EFI System Partition: a folder, a FAT image, or a GPT disk image.") var esp: String?
    @Option(help: "Kernel command line when the boot entry is a kernel (direct kernel boot).") var cmdline: String?
    @Flag(help: "Secure Boot off (it is on by default, enforced when the store has a PK).") var noSecureBoot = false
    @Option(help: "PCR banks of the vTPM, comma-separated.") var banks: String = "sha1,sha256"

    func resolve() throws -> (FirmwareSettings, ESP) {
        var store: VariableStore?
        let disk: ESP
        if let image {
            guard vars == nil, esp == nil else { throw ValidationError("--image replaces --vars and --esp") }
            switch image {
            case "sample-linux":
                let keys = try PlatformKeys.loadOrCreate(
                    directory: URL(fileURLWithPath: NSHomeDirectory()).appendingPathComponent(".tlaunch/secureboot"))
                (disk, store) = try SampleImages.sampleLinux(keys: keys)
            case "debian-12":
                guard let d = try SampleImages.debian12() else {
                    throw ValidationError("debian-12 needs Debian's shim-signed, grub-efi-amd64-signed, linux-image-amd64 and ovmf "
                                        + "packages installed")
                }
                (disk, store) = d
            default: throw ValidationError("--image must be one of \(SampleImages.names.joined(separator: ", "))")
            }
        } else {
            guard let esp else { throw ValidationError("give --esp (and --vars), or --image") }
            store = try vars.map { try VariableStore(readFile($0)) }
            disk = try ESP.load(esp)
        }
        if let c = cmdline {
            // A direct kernel boot: Boot0000 names the kernel with the command line as its options.
            var s = try store ?? VariableStore(SampleImages.blankVariableStore())
            try s.setDirectBoot(commandLine: c)
            store = s
        }
        let b = try banks.split(separator: ",").map { name -> TPMAlgID in
            guard let a = PCRValues.bankNames[name.trimmingCharacters(in: .whitespaces).lowercased()] else {
                throw ValidationError("unknown bank \(name)")
            }
            return a
        }
        return (FirmwareSettings(secureBoot: !noSecureBoot, variables: store, banks: b), disk)
    }
}

extension VariableStore {
    /// Boot0000 = \EFI\BOOT\BOOTX64.EFI with `commandLine` (UTF-16) as its optional data; BootOrder = 0000.
    mutating func setDirectBoot(commandLine: String, path: String = "\\EFI\\BOOT\\BOOTX64.EFI") throws {
        var options: [UInt8] = []
        for u in commandLine.utf16 { options.append(UInt8(u & 0xFF)); options.append(UInt8(u >> 8)) }
        options += [0, 0]
        let entry = LoadOption(description: "Linux (direct kernel boot)",
                               filePathList: [DevicePath(nodes: [DevicePath.filePathNode(path)])], optionalData: options)
        try set("Boot0000", .globalVariable, attributes: 0x07, data: entry.encoded)
        try set("BootOrder", .globalVariable, attributes: 0x07, data: [0, 0])
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "The event log and PCR values a VM will have, without booting it.",
        discussion: """
        --firmware tlaunch (the default) predicts a VM booted by TrustedLaunch's virtual firmware: every PCR.
        --firmware ovmf predicts OVMF: PCRs 4, 5, 7, 8, 9 and 14 from the disk, the images and the store; PCRs 0–3, 6
        from --reference (the event log of a recorded boot of the same OVMF build), or left out.
        """)
    @OptionGroup var vm: VMOptions
    @Option(help: "tlaunch or ovmf.") var firmware: String = "tlaunch"
    @Option(help: "With --firmware ovmf: the event log of a reference boot of that OVMF.") var reference: String?
    @Option(help: "Write the predicted event log (binary, as the kernel exposes it) to this file.") var logOut: String?
    @Flag(help: "JSON output.") var json = false

    func run() throws {
        let model: VirtualFirmware.Model
        switch firmware {
        case "tlaunch": model = .tlaunch
        case "ovmf": model = .ovmf(reference: try reference.map { try EventLog(parsing: readFile($0)) })
        default: throw ValidationError("--firmware must be tlaunch or ovmf")
        }
        let (settings, esp) = try vm.resolve()
        let report = try VirtualFirmware(settings: settings, model: model).predict(esp: esp)
        let known: Set<UInt32> = {
            if case .ovmf(let r) = model, r == nil { return [4, 5, 7, 8, 9, 14] }
            return Set(0...23)
        }()
        if let logOut { try Data(try report.log.encoded()).write(to: URL(fileURLWithPath: logOut)) }
        let pcrs = report.pcrs
        if json {
            var values: [String: [String: String]] = [:]
            for (bank, m) in pcrs.banks {
                values[PCRValues.bankName(bank)] = Dictionary(
                    uniqueKeysWithValues: m.filter { known.contains($0.key) }.map { (String($0.key), hexString($0.value)) })
            }
            var object: [String: Any] = [
                "firmware": firmware, "secureBootEnforced": report.secureBootEnforced, "pcrs": values,
                "stages": report.stages.map { s -> [String: Any] in
                    var o: [String: Any] = ["kind": s.kind.rawValue, "path": s.path, "loadedBy": s.loadedBy,
                                            "authenticodeSHA256": s.authenticodeSHA256]
                    if let v = s.verifiedBy { o["verifiedBy"] = v }
                    if let a = s.authority { o["authority"] = a }
                    return o
                },
                "eventLog": report.log.jsonObject(),
            ]
            if let k = report.kernel { object["kernel"] = k }
            if let c = report.kernelCommandLine { object["kernelCommandLine"] = c }
            object["initrds"] = report.initrds
            if let f = report.failure { object["failure"] = ["code": f.code.rawValue, "stage": f.stage, "reason": f.reason,
                                                             "path": f.path ?? ""] }
            print(jsonText(object))
        } else {
            print("Secure Boot: \(report.secureBootEnforced ? "enforced" : "off")")
            for s in report.stages {
                print("  \(s.kind.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) \(s.path)  (loaded by "
                    + "\(s.loadedBy)\(s.verifiedBy.map { "; verified by \($0): \(s.authority ?? "")" } ?? ""))")
            }
            if let k = report.kernel { print("""
                kernel: \(k) \
                \(report.kernelCommandLine ?? "")\(report.initrds.isEmpty ? "" : "  initrd: " + report.initrds.joined(separator: " "))
                """) }
            if let f = report.failure { print("THE LAUNCH FAILS: \(f)") }
            print("events: \(report.log.events.count)")
            for e in report.log.events where e.type != .noAction {
                print("#\(e.index)  PCR \(e.pcrIndex)  \(e.type)  \(EventLogCommand.summary(e.decoded))")
            }
            for bank in settings.banks {
                for p in (pcrs.banks[bank] ?? [:]).keys.sorted() where known.contains(p) {
                    print("\(PCRValues.bankName(bank).padding(toLength: 8, withPad: " ", startingAt: 0)) "
                        + "\(String(p).padding(toLength: 3, withPad: " ", startingAt: 0)) \(hexString(pcrs[bank, p] ?? []))")
                }
            }
        }
        if report.failure != nil { throw ExitCode(1) }
    }
}

struct FirmwareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "firmware",
        abstract: "The virtual UEFI firmware: launch a VM's boot into a vTPM, publish reference values.",
        subcommands: [ReferenceValues.self, Launch.self, BootEntry.self])

    struct ReferenceValues: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reference-values",
            abstract: "PCRs 0, 1, 2, 3, 5 and 6 that this firmware version produces (default boot entry, ESP without GPT).")
        @Flag(help: "JSON output.") var json = false
        @Option(help: "PCR banks, comma-separated.") var banks: String = "sha1,sha256,sha384"

        func run() throws {
            let b = banks.split(separator: ",").compactMap { PCRValues.bankNames[String($0).lowercased()] }
            let values = try FirmwareReference.values(banks: b)
            if json {
                var out: [String: [String: String]] = [:]
                for v in values { out[PCRValues.bankName(v.bank), default: [:]][String(v.pcr)] = hexString(v.value) }
                print(jsonText(["firmware": "\(VirtualFirmware.vendor) virtual UEFI firmware", "version": VirtualFirmware.version,
                                "pcrs": out] as [String: Any]))
            } else {
                print("\(VirtualFirmware.vendor) virtual UEFI firmware \(VirtualFirmware.version)")
                for v in values { print("\(PCRValues.bankName(v.bank).padding(toLength: 8, withPad: " ", startingAt: 0)) "
                                      + "\(String(v.pcr).padding(toLength: 3, withPad: " ", startingAt: 0)) \(hexString(v.value))") }
            }
        }
    }

    struct BootEntry: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "boot-entry",
            abstract: "Write a variable store whose only boot entry (Boot0000, BootOrder 0000) starts a file on the ESP with a command "
                    + "line (a direct kernel boot).")
        @Option(help: "The variable store to start from (OVMF_VARS*.fd).") var vars: String
        @Option(help: "The file on the ESP.") var path: String = "\\EFI\\BOOT\\BOOTX64.EFI"
        @Option(help: "The options passed to it (the kernel command line).") var cmdline: String = ""
        @Option(help: "Where to write the new store.") var output: String

        func run() throws {
            var store = try VariableStore(readFile(vars))
            try store.setDirectBoot(commandLine: cmdline, path: path)
            try Data(store.bytes).write(to: URL(fileURLWithPath: output))
        }
    }

    struct Launch: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "launch",
            abstract:
                "Boot a VM's ESP with the virtual firmware into a vTPM (its state file, or a fresh in-memory one) and write the event log.")
        @OptionGroup var vm: VMOptions
        @Option(help: "The vTPM's state file (created if missing; encrypted with ~/.tlaunch/host.key).") var vtpmState: String?
        @Option(help: "Write the event log here.") var logOut: String?

        func run() throws {
            let tpm: VirtualTPM
            if let path = vtpmState {
                tpm = try VirtualTPM(stateFile: path, hostKey: try HostKey.loadOrCreate())
            } else {
                tpm = VirtualTPM.ephemeral()
            }
            let (settings, esp) = try vm.resolve()
            let report = try VirtualFirmware(settings: settings).launch(esp: esp, tpm: tpm)
            if let logOut { try Data(try report.log.encoded()).write(to: URL(fileURLWithPath: logOut)) }
            for s in report.stages {
                print("\(s.kind.rawValue): \(s.path)\(s.verifiedBy.map { " (verified by \($0): \(s.authority ?? ""))" } ?? "")")
            }
            if let f = report.failure {
                print("launch failed: \(f)")
                throw ExitCode(1)
            }
            print("""
                booted \(report.kernel ?? "?") \(report.kernelCommandLine ?? ""); \(report.log.events.count) events measured into the \
                vTPM (Secure Boot \(report.secureBootEnforced ? "enforced" : "off"))
                """)
        }
    }
}
