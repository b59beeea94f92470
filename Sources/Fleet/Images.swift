import Foundation
import SecureBoot
import Synchronization
import VirtualFirmware

/// A deployable image's boot disk: the ESP and the variable store a new VM starts with (Gen 2),
/// or a BIOS boot sector (Gen 1).
public struct ImageDisk: Sendable {
    public var info: ImageInfo
    public var esp: ESP?
    public var variables: VariableStore?
    public var bootSector: [UInt8]?
}

/// What `tlaunch image show` prints: generation, the boot chain the firmware will run and who
/// signed each stage, the db authorities.
public struct ImageDetails: Sendable, Codable, Hashable {
    public var image: ImageInfo
    public var files: Int
    public var bytes: Int
    public var bootChain: [BootStageSummary]
    public var signers: [String]
    public var dbAuthorities: [String]
    public var kernelCommandLine: String?
    public var bootable: Bool
    public var bootFailure: String?
}

/// The images VMs are deployed from: built in (`sample-linux`, `debian-12` where Debian's
/// signed packages are installed, `legacy-bios` — a Generation 1 image) and imported ones (an
/// ESP folder copied into DATA/images/NAME).
public final class ImageCatalog: Sendable {
    public let root: URL
    public let keysDirectory: URL
    let cache = Mutex<[String: ImageDisk]>([:])
    let progress: @Sendable (String) -> Void

    public init(dataFolder: URL, keysDirectory: URL, progress: @escaping @Sendable (String) -> Void = { _ in }) {
        root = dataFolder.appendingPathComponent("images")
        self.keysDirectory = keysDirectory
        self.progress = progress
    }

    public static let builtIn: [ImageInfo] = [
        ImageInfo(name: "sample-linux", generation: 2, source: "built in",
                  description: "shim → grub → Linux kernel, built here and signed with this platform's Secure Boot keys",
                  builtIn: true),
        ImageInfo(name: "debian-12", generation: 2,
                  source: "Debian's signed shim, grub and kernel (shim-signed, grub-efi-amd64-signed, linux-image-amd64)",
                  description: "Debian 12 boot chain signed by Microsoft's UEFI CA and Debian; OVMF's store with Microsoft's keys",
                  builtIn: true),
        ImageInfo(name: "legacy-bios", generation: 1, source: "built in",
                  description: "a BIOS (MBR) boot disk: Generation 1 only, so it can be deployed only as Standard", builtIn: true),
    ]

    /// Whether a built-in image can be used here (debian-12 needs Debian's packages).
    public static func available(_ name: String) -> Bool {
        name != "debian-12" || ((try? SampleImages.debian12()) ?? nil) != nil
    }

    /// The disk of `info`, built or read once and kept.
    public func disk(_ info: ImageInfo) throws -> ImageDisk {
        if let d = cache.withLock({ $0[info.name] }) { return d }
        let d: ImageDisk
        switch info.builtIn ? info.name : "" {
        case "sample-linux":
            progress("building image sample-linux (shim, grub, kernel signed with the platform's keys)")
            let keys = try PlatformKeys.loadOrCreate(directory: keysDirectory)
            let (esp, vars) = try SampleImages.sampleLinux(keys: keys)
            d = ImageDisk(info: info, esp: esp, variables: vars)
        case "debian-12":
            progress("reading image debian-12 from Debian's signed packages")
            guard let (imageESP, vars) = try SampleImages.debian12() else {
                throw FleetError(.invalid, "debian-12 needs Debian's shim-signed, grub-efi-amd64-signed, linux-image-amd64 and ovmf "
                                         + "packages: install them, or use sample-linux", field: "image")
            }
            // Its initramfs is the guest kit (busybox, the attestation agent), so that a real VM
            // booted from it runs its own agent; the host's initramfs would look for a root disk.
            var esp = imageESP
            if case .success(let kit) = GuestKit.detect() {
                progress("building the guest's initramfs (busybox, tlaunch-agent)")
                var files = esp.files
                files["/initrd.img"] = try kit.initramfs(cache: root.deletingLastPathComponent().appendingPathComponent("guest"))
                esp = ESP(files: files, partitioning: esp.partitioning)
            }
            d = ImageDisk(info: info, esp: esp, variables: vars)
        case "legacy-bios":
            d = ImageDisk(info: info, bootSector: Self.legacyBootSector)
        default:
            let folder = root.appendingPathComponent(info.name).appendingPathComponent("esp")
            if info.generation == 1 {
                guard
                    let sector = FileManager.default.contents(
                        atPath: root.appendingPathComponent(info.name).appendingPathComponent("boot.img").path)
                else {
                    throw FleetError(.notFound, "image \(info.name): its boot sector is missing from \(root.path)")
                }
                d = ImageDisk(info: info, bootSector: Array(sector))
            } else {
                let esp: ESP
                do { esp = try ESP.folder(folder) } catch { throw FleetError(.failed, "image \(info.name): \(error)") }
                let varsFile = root.appendingPathComponent(info.name).appendingPathComponent("OVMF_VARS.fd")
                let vars = try VariableStore(Array(try Data(contentsOf: varsFile)))
                d = ImageDisk(info: info, esp: esp, variables: vars)
            }
        }
        cache.withLock { $0[info.name] = d }
        return d
    }

    /// Copies `folder` (an ESP: /EFI/BOOT/BOOTX64.EFI …) or a BIOS boot sector into the catalog.
    /// Gen 2 images get the platform's Secure Boot keys (`keys: platform`) or Microsoft's (`microsoft`).
    /// legacy-bios's MBR boot sector: real-mode code that writes one line to COM1 and halts — on
    /// QEMU with SeaBIOS the console shows the guest came up.
    static let legacyBootSector: [UInt8] = {
        let message = Array("TLAUNCH-GUEST: up (BIOS boot sector)\r\n".utf8) + [0]
        var code: [UInt8] = [
            0xFA,                   // cli
            0x31, 0xC0,             // xor ax, ax
            0x8E, 0xD8,             // mov ds, ax
            0xBE, 0x00, 0x00,       // mov si, message (address below)
            0xBA, 0xF8, 0x03,       // mov dx, 0x3F8 (COM1)
            0xAC,                   // next: lodsb
            0x84, 0xC0,             // test al, al
            0x74, 0x03,             // jz done
            0xEE,                   // out dx, al
            0xEB, 0xF8,             // jmp next
            0xF4,                   // done: hlt
            0xEB, 0xFD,             // jmp done
        ]
        let address = 0x7C00 + code.count
        code[6] = UInt8(address & 0xFF); code[7] = UInt8(address >> 8)
        var sector = [UInt8](repeating: 0, count: 512)
        sector.replaceSubrange(0..<code.count, with: code)
        sector.replaceSubrange(code.count..<code.count + message.count, with: message)
        sector[510] = 0x55; sector[511] = 0xAA
        return sector
    }()

    public func importFiles(name: String, from source: URL, generation: Int, keys: String, description: String?) throws -> ImageInfo {
        let fm = FileManager.default
        let dest = root.appendingPathComponent(name)
        guard !fm.fileExists(atPath: dest.path) else {
            throw FleetError(.conflict, "image \(name) exists: choose another name", field: "name")
        }
        let tmp = root.appendingPathComponent(".import-\(UUID().uuidString)")
        try fm.createDirectory(at: tmp, withIntermediateDirectories: true)
        do {
            if generation == 1 {
                let bytes: [UInt8]
                do { bytes = Array(try Data(contentsOf: source)) } catch {
                    throw FleetError(.invalid, "cannot read \(source.path): give a 512-byte MBR boot sector file", field: "from")
                }
                guard bytes.count >= 512, bytes[510] == 0x55, bytes[511] == 0xAA else {
                    throw FleetError(.invalid, "\(source.path) is not a BIOS boot sector (it must end in 55 AA at offset 510)",
                                     field: "from")
                }
                try Data(bytes.prefix(512)).write(to: tmp.appendingPathComponent("boot.img"))
            } else {
                let esp: ESP
                do { esp = try ESP.folder(source) } catch {
                    throw FleetError(.invalid, "\(source.path): \(error.reason) — give the folder of an EFI System Partition (with "
                                             + "/EFI/BOOT/BOOTX64.EFI)", field: "from")
                }
                guard esp.exists("/EFI/BOOT/BOOTX64.EFI") else {
                    throw FleetError(.invalid, "\(source.path) has no /EFI/BOOT/BOOTX64.EFI, so UEFI firmware would find nothing to boot",
                                     field: "from")
                }
                for (path, bytes) in esp.files {
                    let f = tmp.appendingPathComponent("esp").appendingPathComponent(String(path.dropFirst()))
                    try fm.createDirectory(at: f.deletingLastPathComponent(), withIntermediateDirectories: true)
                    try Data(bytes).write(to: f)
                }
                let vars: VariableStore
                switch keys {
                case "platform":
                    let k = try PlatformKeys.loadOrCreate(directory: keysDirectory)
                    var v = try VariableStore(SampleImages.blankVariableStore())
                    let (pk, kek, db) = try k.set.databases()
                    try v.enroll(pk: pk, kek: kek, db: db, dbx: SignatureDatabase())
                    vars = v
                case "microsoft":
                    guard let data = fm.contents(atPath: "/usr/share/OVMF/OVMF_VARS_4M.ms.fd") else {
                        throw FleetError(.invalid, "Microsoft's keys come from OVMF's /usr/share/OVMF/OVMF_VARS_4M.ms.fd: install the "
                                                 + "ovmf package", field: "keys")
                    }
                    vars = try VariableStore(Array(data))
                default:
                    throw FleetError(.invalid, "--keys must be platform or microsoft", field: "keys")
                }
                try Data(vars.bytes).write(to: tmp.appendingPathComponent("OVMF_VARS.fd"))
            }
            try fm.moveItem(at: tmp, to: dest)
        } catch {
            try? fm.removeItem(at: tmp)
            throw error
        }
        return ImageInfo(name: name, generation: generation, source: "imported from \(source.path)",
                         description: description ?? (generation == 1 ? "imported BIOS boot disk" : "imported EFI System Partition "
                                                                                                  + "(\(keys) keys)"), builtIn: false)
    }

    public func remove(_ name: String) {
        try? FileManager.default.removeItem(at: root.appendingPathComponent(name)); cache.withLock { $0[name] = nil }
    }

    /// Generation, boot chain (as the firmware would run it, Secure Boot on) and signers.
    public func details(_ info: ImageInfo) throws -> ImageDetails {
        let d = try disk(info)
        guard let esp = d.esp else {
            return ImageDetails(image: info, files: 1, bytes: d.bootSector?.count ?? 0, bootChain: [], signers: [], dbAuthorities: [],
                                kernelCommandLine: nil, bootable: true, bootFailure: nil)
        }
        let report: LaunchReport
        do { report = try VirtualFirmware(settings: FirmwareSettings(variables: d.variables)).predict(esp: esp) } catch {
            throw FleetError(.failed, "image \(info.name): \(error)")
        }
        let stages = report.stages.map(BootStageSummary.init)
        var signers: [String] = []
        for s in report.stages {
            if let a = s.authority, !signers.contains(a) { signers.append(a) }
        }
        let db = d.variables?.db.certificates.map { $0.certificate.subject.description } ?? []
        return ImageDetails(image: info, files: esp.files.count, bytes: esp.files.values.reduce(0) { $0 + $1.count }, bootChain: stages,
                            signers: signers, dbAuthorities: db, kernelCommandLine: report.kernelCommandLine,
                            bootable: report.succeeded, bootFailure: report.failure?.description)
    }
}

extension BootStageSummary {
    init(_ s: BootStage) {
        self.init(kind: s.kind.rawValue, path: s.path, sha256: s.authenticodeSHA256, verifiedBy: s.verifiedBy, authority: s.authority)
    }
}
