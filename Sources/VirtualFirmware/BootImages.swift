import MeasuredBoot
import SecureBoot

/// What a loaded EFI application is, as far as the boot chain is concerned. The kind is read
/// from the image itself (its sections and headers), never from its file name.
public enum BootImageKind: String, Sendable, Codable {
    case shim, grub, linux, application
}

/// A section's bytes by name.
struct PESections {
    let image: PEImage

    /// The section's bytes in the file (its virtual size when smaller than the raw size).
    func data(_ wanted: String) -> [UInt8]? {
        guard let s = image.sections.first(where: { $0.name == wanted }) else { return nil }
        let n = s.virtualSize > 0 ? min(Int(s.virtualSize), s.sizeOfRawData) : s.sizeOfRawData
        guard s.pointerToRawData + n <= image.bytes.count else { return nil }
        return Array(image.bytes[s.pointerToRawData..<s.pointerToRawData + n])
    }
}

/// One image of the boot chain, parsed once: its kind, its Authenticode digests, and what
/// the chain's next stage needs from it.
public struct BootImage: Sendable {
    public let path: String
    public let pe: PEImage
    public let kind: BootImageKind
    /// shim: its built-in certificate (DER) and revocations (an EFI signature list), and the
    /// SBAT level it writes ("previous" policy: what a fresh VM gets).
    public let shimVendorCertificate: [UInt8]?
    public let shimVendorDbx: [UInt8]?
    public let shimSbatLevel: String?
    /// grub: its prefix and embedded configuration (from its memdisk when it has one).
    public let grubPrefix: String?
    public let grubEmbeddedConfig: String?

    public init(path: String, bytes: [UInt8]) throws(FirmwareError) {
        self.path = path
        do { pe = try PEImage(bytes) } catch {
            throw FirmwareError(.invalidImage, stage: "LoadImage", "not a loadable PE/COFF image: \(error)", path: path)
        }
        let s = PESections(image: pe)
        var vendorCert: [UInt8]?, vendorDbx: [UInt8]?, sbat: String?, prefix: String?, config: String?
        if let vc = s.data(".vendor_cert") {
            // struct cert_table { u32 authorized_size, deauthorized_size, authorized_offset, deauthorized_offset }
            func u32(_ o: Int) -> Int {
                o + 4 <= vc.count ? Int(vc[o]) | Int(vc[o + 1]) << 8 | Int(vc[o + 2]) << 16 | Int(vc[o + 3]) << 24 : -1
            }
            let aSize = u32(0), dSize = u32(4), aOff = u32(8), dOff = u32(12)
            if aSize >= 0, aOff >= 0, aOff + aSize <= vc.count { vendorCert = aSize > 0 ? Array(vc[aOff..<aOff + aSize]) : nil }
            if dSize >= 0, dOff >= 0, dOff + dSize <= vc.count { vendorDbx = dSize > 0 ? Array(vc[dOff..<dOff + dSize]) : nil }
        }
        if let sl = s.data(".sbatlevel"), sl.count >= 12 {
            // u32 version, u32 previous offset, u32 latest offset (from byte 4), NUL-terminated texts.
            let prev = 4 + (Int(sl[4]) | Int(sl[5]) << 8 | Int(sl[6]) << 16 | Int(sl[7]) << 24)
            if prev >= 12, prev < sl.count {
                let end = sl[prev...].firstIndex(of: 0) ?? sl.count
                sbat = String(decoding: sl[prev..<end], as: UTF8.self)
            }
        }
        if let mods = s.data("mods") ?? s.data(".mods") {
            (prefix, config) = Self.grubModules(mods)
        }
        let sbatText = s.data(".sbat").map { String(decoding: $0, as: UTF8.self) } ?? ""
        if s.data(".vendor_cert") != nil || sbatText.contains("\nshim,") {
            kind = .shim
        } else if prefix != nil || sbatText.contains("\ngrub,") {
            kind = .grub
        } else if bytes.count > 0x206, Array(bytes[0x202..<0x206]) == Array("HdrS".utf8) {
            kind = .linux
        } else {
            kind = .application
        }
        shimVendorCertificate = vendorCert; shimVendorDbx = vendorDbx; shimSbatLevel = sbat
        grubPrefix = prefix; grubEmbeddedConfig = config
    }

    /// grub's module area: `struct grub_module_info64 { u32 magic "mimg", u32 pad, u64 offset, u64 size }`
    /// then `{ u32 type, u32 size }` headers: 1 memdisk, 2 config, 3 prefix.
    static func grubModules(_ m: [UInt8]) -> (prefix: String?, config: String?) {
        guard m.count >= 24, Array(m[0..<4]) == [0x6D, 0x69, 0x6D, 0x67] else { return (nil, nil) }
        func u32(_ o: Int) -> Int { Int(m[o]) | Int(m[o + 1]) << 8 | Int(m[o + 2]) << 16 | Int(m[o + 3]) << 24 }
        var o = u32(8)
        let end = min(m.count, u32(16))
        var prefix: String?, config: String?, memdisk: [UInt8]?
        while o >= 0, o + 8 <= end {
            let type = u32(o), size = u32(o + 4)
            guard size >= 8, o + size <= end else { break }
            let body = Array(m[o + 8..<o + size])
            let text = String(decoding: body.prefix { $0 != 0 }, as: UTF8.self)
            switch type {
            case 1: memdisk = body
            case 2: config = text
            case 3: prefix = text
            default: break
            }
            o += size
        }
        // Debian's signed grub embeds `normal (memdisk)/grub.cfg`: the real script is in the memdisk.
        if let c = config, c.contains("(memdisk)/grub.cfg"), let md = memdisk,
           let fat = try? FATFileSystem(md), let files = try? fat.files(),
           let cfg = files.first(where: { $0.key.lowercased() == "/grub.cfg" })?.value {
            config = String(decoding: cfg, as: UTF8.self)
        }
        return (prefix, config)
    }
}
