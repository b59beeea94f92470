import Foundation
import MeasuredBoot
import SecureBoot
import SwiftASN1
import X509

extension Certificate {
    var derBytes: [UInt8] {
        get throws {
            var s = DER.Serializer()
            try s.serialize(self)
            return s.serializedBytes
        }
    }
}

/// Minimal PE32+ EFI images: a header, sections (long names through the COFF string table,
/// as GNU toolchains write them), optionally the "HdrS" Linux setup-header magic.
enum PEWriter {
    static func image(sections: [(name: String, data: [UInt8])], linuxHeader: Bool = false) -> [UInt8] {
        let fileAlign = 0x200, sectionAlign = 0x1000, headers = 0x400
        func align(_ v: Int, _ a: Int) -> Int { (v + a - 1) / a * a }
        var strings: [UInt8] = []
        var out = [UInt8](repeating: 0, count: headers)
        func put16(_ o: Int, _ v: Int) { out[o] = UInt8(v & 0xFF); out[o + 1] = UInt8((v >> 8) & 0xFF) }
        func put32(_ o: Int, _ v: Int) { put16(o, v & 0xFFFF); put16(o + 2, (v >> 16) & 0xFFFF) }
        func put64(_ o: Int, _ v: Int) { put32(o, v & 0xFFFF_FFFF); put32(o + 4, v >> 32) }
        out[0] = 0x4D; out[1] = 0x5A                      // "MZ"
        put32(0x3C, 0x40)                                  // e_lfanew
        out[0x40] = 0x50; out[0x41] = 0x45                // "PE\0\0"
        let coff = 0x44, opt = coff + 20, table = opt + 240
        put16(coff, 0x8664)                                // x86-64
        put16(coff + 2, sections.count)
        put16(coff + 16, 240)                              // SizeOfOptionalHeader (PE32+, 16 directories)
        put16(coff + 18, 0x0206)                           // executable, line numbers stripped, debug stripped
        put16(opt, 0x20B)                                  // PE32+
        put32(opt + 32, sectionAlign); put32(opt + 36, fileAlign)
        put16(opt + 68, 10)                                // EFI application
        put32(opt + 60, headers)
        put32(opt + 108, 16)
        if linuxHeader { out[0x202] = 0x48; out[0x203] = 0x64; out[0x204] = 0x72; out[0x205] = 0x53 }   // "HdrS"
        var raw: [UInt8] = []
        var va = sectionAlign
        for (i, s) in sections.enumerated() {
            let h = table + 40 * i
            let nameBytes = Array(s.name.utf8)
            if nameBytes.count > 8 {
                let ref = Array("/\(4 + strings.count)".utf8)
                for (k, b) in ref.enumerated() { out[h + k] = b }
                strings += nameBytes + [0]
            } else {
                for (k, b) in nameBytes.enumerated() { out[h + k] = b }
            }
            let rawSize = align(max(s.data.count, 1), fileAlign)
            put32(h + 8, max(s.data.count, 1)); put32(h + 12, va)
            put32(h + 16, rawSize); put32(h + 20, headers + raw.count)
            put32(h + 36, s.name == ".text" ? 0x6000_0020 : 0x4000_0040)
            if s.name == ".text" { put32(opt + 16, va); put32(opt + 4, rawSize) }
            raw += s.data + [UInt8](repeating: 0, count: rawSize - s.data.count)
            va += align(max(s.data.count, 1), sectionAlign)
        }
        put32(opt + 56, va)                                // SizeOfImage
        put64(opt + 24, 0x1_0000_0000)                     // ImageBase
        out += raw
        if !strings.isEmpty {
            put32(coff + 8, out.count)                     // PointerToSymbolTable (no symbols: the string table follows)
            let size = strings.count + 4
            out += [UInt8(size & 0xFF), UInt8((size >> 8) & 0xFF), UInt8((size >> 16) & 0xFF), UInt8(size >> 24)] + strings
        }
        while out.count % 8 != 0 { out.append(0) }       // the certificate table is 8-byte aligned
        return out
    }

    /// `xor eax, eax; ret`: returns EFI_SUCCESS.
    static let returnSuccess: [UInt8] = [0x31, 0xC0, 0xC3]
}

/// The platform's Secure Boot keys: PK, KEK and db (the VM's store trusts them) and a vendor key
/// that the sample shim carries as its built-in certificate (it signs grub and the kernel).
public struct PlatformKeys: Sendable {
    public var set: SecureBootKeySet
    public var vendor: SecureBootKeySet.Key

    /// Loads the keys from `directory`, creating them the first time.
    public static func loadOrCreate(directory: URL) throws -> PlatformKeys {
        let fm = FileManager.default
        let roles = ["PK", "KEK", "db", "vendor"]
        func path(_ r: String, _ ext: String) -> String { directory.appendingPathComponent("\(r).\(ext)").path }
        let owner = EFIGUID("6c1d7d80-4b4e-4c1f-9a41-54524c41554e")!   // TrustedLaunch's owner GUID for its entries
        if roles.allSatisfy({ fm.fileExists(atPath: path($0, "key")) && fm.fileExists(atPath: path($0, "pem")) }) {
            var keys: [SecureBootKeySet.Key] = []
            for r in roles {
                let key = try String(contentsOfFile: path(r, "key"), encoding: .utf8)
                let pem = try String(contentsOfFile: path(r, "pem"), encoding: .utf8)
                keys.append(SecureBootKeySet.Key(name: r, privateKeyPEM: key, certificate: try Certificate(pemEncoded: pem),
                                                 certificatePEM: pem))
            }
            return PlatformKeys(set: SecureBootKeySet(owner: owner, keys: Array(keys.prefix(3))), vendor: keys[3])
        }
        try fm.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let set = try SecureBootKeySet.generate(commonName: "TrustedLaunch platform", owner: owner)
        var vendor = try SecureBootKeySet.generate(commonName: "TrustedLaunch vendor", owner: owner).keys[2]
        vendor.name = "vendor"
        for k in set.keys + [vendor] {
            _ = fm.createFile(atPath: path(k.name, "key"), contents: Data(k.privateKeyPEM.utf8), attributes: [.posixPermissions: 0o600])
            try Data(k.certificatePEM.utf8).write(to: URL(fileURLWithPath: path(k.name, "pem")))
        }
        return PlatformKeys(set: set, vendor: vendor)
    }
}

/// Images for the embedded default: a VM's ESP and variable store, ready to launch.
public enum SampleImages {
    public static let names = ["sample-linux", "debian-12"]

    /// An empty OVMF 4 MiB variable store (the layout of OVMF_VARS_4M.fd: a firmware volume of
    /// 0x84 blocks of 4 KiB; an authenticated variable store of 0x3FFB8 bytes at 0x48; the
    /// fault-tolerant-write working block header at 0x41000), byte for byte what OVMF ships.
    public static func blankVariableStore() -> [UInt8] {
        var b = [UInt8](repeating: 0xFF, count: 0x84000)
        var h = [UInt8](repeating: 0, count: 0x48)
        h.replaceSubrange(16..<32, with: VariableStore.nvDataFVGUID.bytes)
        h.replaceSubrange(32..<40, with: [0x00, 0x40, 0x08, 0, 0, 0, 0, 0])   // FvLength 0x84000
        h.replaceSubrange(40..<44, with: Array("_FVH".utf8))
        h.replaceSubrange(44..<48, with: [0xFF, 0xFE, 0x04, 0x00])             // Attributes 0x0004FEFF
        h.replaceSubrange(48..<50, with: [0x48, 0x00])                         // HeaderLength
        h[55] = 2                                                              // Revision
        h.replaceSubrange(56..<64, with: [0x84, 0, 0, 0, 0x00, 0x10, 0, 0])   // 0x84 blocks of 0x1000, then the terminator
        var sum: UInt32 = 0
        for i in stride(from: 0, to: 0x48, by: 2) { sum &+= UInt32(h[i]) | UInt32(h[i + 1]) << 8 }
        let checksum = UInt16(truncatingIfNeeded: 0x10000 &- (sum & 0xFFFF))
        h[50] = UInt8(checksum & 0xFF); h[51] = UInt8(checksum >> 8)
        b.replaceSubrange(0..<0x48, with: h)
        var store = VariableStore.authenticatedVariableGUID.bytes
        store += [0xB8, 0xFF, 0x03, 0x00, 0x5A, 0xFE, 0, 0, 0, 0, 0, 0]
        b.replaceSubrange(0x48..<0x64, with: store)
        // EDKII_WORKING_BLOCK_HEADER: signature GUID, its CRC32 (constant for this layout), valid, WriteQueueSize.
        let ftw: [UInt8] = EFIGUID("9e58292b-7c68-497d-a0ce-6500fd9f1b95")!.bytes + [0x2C, 0xAF, 0x2C, 0x64, 0xFE, 0xFF, 0xFF, 0xFF, 0xE0,
                                                                                     0x0F, 0, 0, 0, 0, 0, 0]
        b.replaceSubrange(0x41000..<0x41000 + ftw.count, with: ftw)
        return b
    }

    /// `sample-linux`: shim → grub → kernel, each a minimal valid PE/COFF image built here and
    /// signed with the platform's keys (shim by db, grub and the kernel by the vendor key shim
    /// carries), and a store with PK/KEK/db enrolled. No download, no packages.
    public static func sampleLinux(
        keys: PlatformKeys, commandLine: String = "console=ttyS0 root=/dev/vda2 ro"
    ) throws -> (esp: ESP, vars: VariableStore) {
        let (shim, grub, kernel) = unsignedChain(vendorCertificate: try keys.vendor.certificate.derBytes)
        let db = keys.set.keys[2], vendor = keys.vendor
        func sign(_ image: [UInt8], _ key: SecureBootKeySet.Key) throws -> [UInt8] {
            try AuthenticodeSigner(keyPEM: key.privateKeyPEM, certificate: try key.certificate.derBytes).sign(try PEImage(image))
        }
        let initrd = Array("TrustedLaunch sample initramfs\n".utf8)
        let esp = ESP(files: [
            "/EFI/BOOT/BOOTX64.EFI": try sign(shim, db),
            "/EFI/BOOT/grubx64.efi": try sign(grub, vendor),
            "/EFI/tlaunch/grub.cfg": Array("set timeout=0\nlinux /vmlinuz \(commandLine)\ninitrd /initrd.img\nboot\n".utf8),
            "/vmlinuz": try sign(kernel, vendor),
            "/initrd.img": initrd,
        ])
        var vars = try VariableStore(blankVariableStore())
        let (pk, kek, dbList) = try keys.set.databases()
        try vars.enroll(pk: pk, kek: kek, db: dbList, dbx: SignatureDatabase())
        return (esp, vars)
    }

    /// Another build of sample-linux's grub (`version` in its SBAT data), signed with the vendor
    /// key shim trusts: Secure Boot lets it run, only measurement shows it is not the one deployed
    /// (an older, vulnerable but still signed boot loader is the classic rollback).
    public static func signedGrub(keys: PlatformKeys, version: String) throws -> [UInt8] {
        let grub = unsignedChain(vendorCertificate: try keys.vendor.certificate.derBytes, grubVersion: version).grub
        return try AuthenticodeSigner(keyPEM: keys.vendor.privateKeyPEM,
                                      certificate: try keys.vendor.certificate.derBytes).sign(try PEImage(grub))
    }

    /// Another sample kernel build (an OS update), signed with the vendor key.
    public static func signedKernel(keys: PlatformKeys, build: UInt8) throws -> [UInt8] {
        let kernel = unsignedChain(vendorCertificate: try keys.vendor.certificate.derBytes, kernelFill: build).kernel
        return try AuthenticodeSigner(keyPEM: keys.vendor.privateKeyPEM,
                                      certificate: try keys.vendor.certificate.derBytes).sign(try PEImage(kernel))
    }

    /// Another sample kernel build that nobody signed (what shim refuses under Secure Boot).
    public static func unsignedKernel(keys: PlatformKeys, build: UInt8) throws -> [UInt8] {
        unsignedChain(vendorCertificate: try keys.vendor.certificate.derBytes, kernelFill: build).kernel
    }

    /// The sample chain before signing: shim (carrying `vendorCertificate`), grub (prefix
    /// /EFI/tlaunch, embedded `source $prefix/grub.cfg`) and a kernel.
    static func unsignedChain(vendorCertificate vendorDER: [UInt8], grubVersion: String = "2.12",
                              kernelFill: UInt8 = 0x90) -> (shim: [UInt8], grub: [UInt8], kernel: [UInt8]) {
        // shim: SBAT metadata, its built-in certificate (cert_table header then the DER), SBAT levels.
        var certTable: [UInt8] = []
        certTable.le32(UInt32(vendorDER.count)); certTable.le32(0); certTable.le32(16); certTable.le32(UInt32(16 + vendorDER.count))
        certTable += vendorDER
        let previous = Array("sbat,1,2024010900\nshim,4\ngrub,4\n".utf8) + [0]
        let latest = Array("sbat,1,2024010900\nshim,4\ngrub,4\n".utf8) + [0]
        var level: [UInt8] = []
        level.le32(0); level.le32(8); level.le32(UInt32(8 + previous.count))
        level += previous + latest
        let shim = PEWriter.image(sections: [
            (".text", PEWriter.returnSuccess),
            (".sbat", Array("""
                sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\nshim,4,TrustedLaunch sample \
                shim,shim,1,https://trustedlaunch.invalid\n
                """.utf8)),
            (".vendor_cert", certTable),
            (".sbatlevel", level),
        ])
        // grub: the module area with an embedded configuration and the prefix.
        let config = Array("source $prefix/grub.cfg\n".utf8) + [0]
        let prefix = Array("/EFI/tlaunch".utf8) + [0]
        var mods: [UInt8] = Array("mimg".utf8) + [0, 0, 0, 0]
        let total = 24 + 8 + config.count + 8 + prefix.count
        mods.le64(24); mods.le64(UInt64(total))
        mods.le32(2); mods.le32(UInt32(8 + config.count)); mods += config
        mods.le32(3); mods.le32(UInt32(8 + prefix.count)); mods += prefix
        let grub = PEWriter.image(sections: [
            (".text", PEWriter.returnSuccess),
            (".sbat", Array("""
                sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\ngrub,4,TrustedLaunch sample \
                grub,grub,\(grubVersion),https://trustedlaunch.invalid\n
                """.utf8)),
            ("mods", mods),
        ])
        let kernel = PEWriter.image(sections: [(".text", PEWriter.returnSuccess), (".linux", [UInt8](repeating: kernelFill, count: 4096))],
                                    linuxHeader: true)
        return (shim, grub, kernel)
    }

    /// `debian-12`: Debian's signed shim, grub and newest kernel from the installed packages,
    /// with OVMF's store holding Microsoft's keys (OVMF_VARS_4M.ms.fd). Nil when they are not installed.
    public static func debian12(commandLine: String = "console=ttyS0 root=/dev/vda2 ro") throws -> (esp: ESP, vars: VariableStore)? {
        let fm = FileManager.default
        let shim = "/usr/lib/shim/shimx64.efi.signed", grub = "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
            vars = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
        let kernels = ((try? fm.contentsOfDirectory(atPath: "/boot")) ?? []).filter { $0.hasPrefix("vmlinuz-") }.sorted()
        guard let k = kernels.last, fm.fileExists(atPath: shim), fm.fileExists(atPath: grub), fm.fileExists(atPath: vars) else {
            return nil
        }
        let initrd = "/boot/" + k.replacingOccurrences(of: "vmlinuz-", with: "initrd.img-")
        func read(_ p: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: p))) }
        let esp = ESP(files: [
            "/EFI/BOOT/BOOTX64.EFI": try read(shim),
            "/EFI/BOOT/grubx64.efi": try read(grub),
            "/EFI/debian/grub.cfg": Array("set timeout=0\nlinux /vmlinuz \(commandLine)\ninitrd /initrd.img\nboot\n".utf8),
            "/vmlinuz": try read("/boot/" + k),
            "/initrd.img": fm.fileExists(atPath: initrd) ? try read(initrd) : Array("initramfs".utf8),
        ])
        return (esp, try VariableStore(try read(vars)))
    }
}

/// Entry points for fuzzing the parsers of untrusted bytes (the libFuzzer targets in `Fuzz/`
/// call these; the test suite replays their corpora). Each returns invariant violations.
public enum VirtualFirmwareFuzzing {
    /// FAT file systems and GPT disks as ESPs: reading never traps.
    public static func espImage(_ bytes: [UInt8]) -> [String] {
        guard let esp = try? ESP.image(bytes) else { return [] }
        return esp.files.values.reduce(0) { $0 + $1.count } > bytes.count * 4096 ? ["files larger than the image could hold"] : []
    }

    static let chain = SampleImages.unsignedChain(vendorCertificate: [0x30, 0x00])

    /// grub.cfg: a launch of the sample chain (Secure Boot off) with these bytes as grub.cfg never
    /// traps; a failure has a stage and a reason; the log replays.
    public static func grubConfig(_ bytes: [UInt8]) -> [String] {
        let esp = ESP(files: ["/EFI/BOOT/BOOTX64.EFI": chain.shim, "/EFI/BOOT/grubx64.efi": chain.grub, "/vmlinuz": chain.kernel,
                              "/initrd.img": [1, 2, 3], "/EFI/tlaunch/grub.cfg": bytes])
        guard let report = try? VirtualFirmware(settings: FirmwareSettings(secureBoot: false, banks: [.sha256])).predict(esp: esp) else {
            return ["the launch threw instead of reporting"]
        }
        var v: [String] = []
        if let f = report.failure, f.reason.isEmpty || f.stage.isEmpty { v.append("a failure without a reason") }
        if report.failure == nil && report.kernel == nil { v.append("success without a kernel") }
        if (try? EventLog(parsing: report.log.encoded()))?.replay() != report.pcrs { v.append("the log does not replay to its PCRs") }
        return v
    }
}
