/// A UEFI device path (UEFI 2.10, clause 10): a sequence of nodes ending in an End node, rendered
/// in the specification's text form (clause 10.6), e.g.
/// `PciRoot(0x0)/Pci(0x1F,0x2)/Sata(0x0,0xFFFF,0x0)/HD(1,GPT,…)/\EFI\debian\shimx64.efi`.
public struct DevicePath: Hashable, Sendable, CustomStringConvertible {
    public struct Node: Hashable, Sendable {
        public var type: UInt8
        public var subType: UInt8
        public var data: [UInt8]
        public init(type: UInt8, subType: UInt8, data: [UInt8]) {
            self.type = type
            self.subType = subType
            self.data = data
        }
    }

    public var nodes: [Node]

    /// No real device path has this many nodes; a longer one is hostile.
    static let maxNodes = 512

    public init(nodes: [Node]) { self.nodes = nodes }

    /// Decodes a device path from bytes (stopping at the End Entire node; bytes after it are an
    /// error). `base` is added to offsets in errors.
    public init(bytes: ArraySlice<UInt8>, base: Int = 0) throws(EventLogError) {
        var r = LEReader(Array(bytes), base: base, field: "EFI_DEVICE_PATH_PROTOCOL")
        var nodes: [Node] = []
        while true {
            guard !r.isAtEnd else {
                // Some firmware logs a path without its End node; accept what is there.
                break
            }
            guard nodes.count < Self.maxNodes else {
                throw r.error(.tooDeep, "more than \(Self.maxNodes) device path nodes")
            }
            let type = try r.u8("Type")
            let sub = try r.u8("SubType")
            let len = Int(try r.u16("Length"))
            guard len >= 4 else {
                throw EventLogError(.invalidValue, "device path node length \(len) is less than its 4-byte header (a path that would loop)",
                                    offset: r.position - 2, field: "EFI_DEVICE_PATH_PROTOCOL.Length")
            }
            let data = try r.bytes(len - 4, "device path node data")
            if type == 0x7F && sub == 0xFF {
                try r.requireEnd("the End Entire Device Path node")
                break
            }
            nodes.append(Node(type: type, subType: sub, data: data))
        }
        self.nodes = nodes
    }

    public var encoded: [UInt8] {
        var out: [UInt8] = []
        for n in nodes {
            out += [n.type, n.subType]
            out.le16(UInt16(truncatingIfNeeded: n.data.count + 4))
            out += n.data
        }
        out += [0x7F, 0xFF, 4, 0]
        return out
    }

    public var description: String {
        var out = ""
        var needSlash = false
        for n in nodes {
            if n.type == 0x7F && n.subType == 0x01 { out += ","; needSlash = false; continue }
            if needSlash { out += "/" }
            out += Self.text(n)
            needSlash = true
        }
        return out
    }

    /// The file path of the last FilePath node (`\EFI\debian\shimx64.efi`), if any.
    public var filePath: String? {
        nodes.last(where: { $0.type == 4 && $0.subType == 4 }).map { ucs2String($0.data[...]) }
    }

    static func hex<T: BinaryInteger>(_ v: T) -> String { "0x" + String(v, radix: 16, uppercase: true) }

    static func text(_ n: Node) -> String {
        var r = LEReader(n.data)
        func u8() -> UInt8? { try? r.u8() }
        func u16() -> UInt16? { try? r.u16() }
        func u32() -> UInt32? { try? r.u32() }
        func u64() -> UInt64? { try? r.u64() }
        func guid() -> EFIGUID? { try? r.guid() }
        let generic = "Path(\(n.type),\(n.subType),\(hexString(n.data).uppercased()))"
        func vendor(_ name: String) -> String {
            guard let g = guid() else { return generic }
            let rest = n.data.dropFirst(16)
            return rest.isEmpty ? "\(name)(\(upper(g)))" : "\(name)(\(upper(g)),\(hexString(rest).uppercased()))"
        }
        switch (n.type, n.subType) {
        case (1, 1):
            guard n.data.count == 2, let f = u8(), let d = u8() else { return generic }
            return "Pci(\(hex(d)),\(hex(f)))"
        case (1, 2):
            guard n.data.count == 1, let f = u8() else { return generic }
            return "PcCard(\(hex(f)))"
        case (1, 3):
            guard n.data.count == 20, let t = u32(), let s = u64(), let e = u64() else { return generic }
            return "MemoryMapped(\(hex(t)),\(hex(s)),\(hex(e)))"
        case (1, 4): return vendor("VenHw")
        case (1, 5):
            guard n.data.count == 4, let c = u32() else { return generic }
            return "Ctrl(\(hex(c)))"
        case (2, 1):
            guard n.data.count == 8, let hid = u32(), let uid = u32() else { return generic }
            switch hid {
            case 0x0A03_41D0: return "PciRoot(\(hex(uid)))"
            case 0x0A08_41D0: return "PcieRoot(\(hex(uid)))"
            case 0x0604_41D0: return "Floppy(\(hex(uid)))"
            case 0x0301_41D0: return "Keyboard(\(hex(uid)))"
            case 0x0501_41D0: return "Serial(\(hex(uid)))"
            case 0x0401_41D0: return "ParallelPort(\(hex(uid)))"
            default: return "Acpi(\(eisaID(hid)),\(hex(uid)))"
            }
        case (2, 3):
            var adrs: [String] = []
            while let a = u32() { adrs.append(hex(a)) }
            return "AcpiAdr(\(adrs.joined(separator: ",")))"
        case (3, 1):
            guard n.data.count == 4, let p = u8(), let s = u8(), let lun = u16() else { return generic }
            return "Ata(\(p == 0 ? "Primary" : "Secondary"),\(s == 0 ? "Master" : "Slave"),\(hex(lun)))"
        case (3, 2):
            guard n.data.count == 4, let pun = u16(), let lun = u16() else { return generic }
            return "Scsi(\(hex(pun)),\(hex(lun)))"
        case (3, 5):
            guard n.data.count == 2, let port = u8(), let ifc = u8() else { return generic }
            return "USB(\(hex(port)),\(hex(ifc)))"
        case (3, 10): return vendor("VenMsg")
        case (3, 11):
            guard n.data.count == 33 else { return generic }
            let ifType = n.data[32]
            let len = ifType == 0 || ifType == 1 ? 6 : 32
            return "MAC(\(hexString(n.data.prefix(len)).uppercased()),\(hex(ifType)))"
        case (3, 12):
            guard n.data.count >= 15 else { return generic }
            let d = n.data
            let proto = d[12] == 6 ? "TCP" : d[12] == 17 ? "UDP" : hex(UInt16(d[12]) | UInt16(d[13]) << 8)
            return "IPv4(\(d[4]).\(d[5]).\(d[6]).\(d[7]),\(proto),\(d[14] == 0 ? "DHCP" : "Static"),\(d[0]).\(d[1]).\(d[2]).\(d[3]))"
        case (3, 17):
            guard n.data.count == 1 else { return generic }
            return "Unit(\(hex(n.data[0])))"
        case (3, 18):
            guard n.data.count == 6, let hba = u16(), let pm = u16(), let lun = u16() else { return generic }
            return "Sata(\(hex(hba)),\(hex(pm)),\(hex(lun)))"
        case (3, 23):
            guard n.data.count == 12, let ns = u32() else { return generic }
            let eui = n.data[4..<12].reversed().map { byteHex($0).uppercased() }.joined(separator: "-")
            return "NVMe(\(hex(ns)),\(eui))"
        case (3, 24):
            return "Uri(\(String(decoding: n.data, as: UTF8.self)))"
        case (3, 25):
            guard n.data.count == 2 else { return generic }
            return "UFS(\(hex(n.data[0])),\(hex(n.data[1])))"
        case (3, 26):
            guard n.data.count == 1 else { return generic }
            return "SD(\(hex(n.data[0])))"
        case (3, 29):
            guard n.data.count == 1 else { return generic }
            return "eMMC(\(hex(n.data[0])))"
        case (4, 1):
            guard n.data.count == 38, let part = u32(), let start = u64(), let size = u64() else { return generic }
            let sig = Array(n.data[20..<36])
            let mbrType = n.data[36], sigType = n.data[37]
            let signature: String
            switch sigType {
            case 2: signature = "GPT," + upper(EFIGUID(bytes: sig))
            case 1: signature = "MBR," + hex(UInt32(sig[0]) | UInt32(sig[1]) << 8 | UInt32(sig[2]) << 16 | UInt32(sig[3]) << 24)
            default: signature = "\(sigType),0"
            }
            _ = mbrType
            return "HD(\(part),\(signature),\(hex(start)),\(hex(size)))"
        case (4, 2):
            guard n.data.count == 20, let entry = u32(), let start = u64(), let size = u64() else { return generic }
            return "CDROM(\(hex(entry)),\(hex(start)),\(hex(size)))"
        case (4, 3): return vendor("VenMedia")
        case (4, 4): return ucs2String(n.data[...])
        case (4, 5):
            guard n.data.count == 16, let g = guid() else { return generic }
            return "Media(\(upper(g)))"
        case (4, 6):
            guard n.data.count == 16, let g = guid() else { return generic }
            return "FvFile(\(upper(g)))"
        case (4, 7):
            guard n.data.count == 16, let g = guid() else { return generic }
            return "Fv(\(upper(g)))"
        case (4, 8):
            guard n.data.count == 20, u32() != nil, let s = u64(), let e = u64() else { return generic }
            return "Offset(\(hex(s)),\(hex(e)))"
        case (5, 1):
            guard n.data.count >= 4, let t = u16(), let f = u16() else { return generic }
            let desc = String(decoding: n.data.dropFirst(4).prefix { $0 != 0 }, as: UTF8.self)
            return "BBS(\(hex(t)),\(desc),\(hex(f)))"
        default:
            return generic
        }
    }

    static func upper(_ g: EFIGUID) -> String { g.description.uppercased() }

    /// A compressed EISA id (`PNP0A03`).
    static func eisaID(_ v: UInt32) -> String {
        let lo = UInt16(v & 0xFFFF)
        let c1 = Character(UnicodeScalar(UInt8(((lo >> 10) & 0x1F) + 0x40)))
        let c2 = Character(UnicodeScalar(UInt8(((lo >> 5) & 0x1F) + 0x40)))
        let c3 = Character(UnicodeScalar(UInt8((lo & 0x1F) + 0x40)))
        let prod = String(v >> 16, radix: 16, uppercase: true)
        return String([c1, c2, c3]) + String(repeating: "0", count: max(0, 4 - prod.count)) + prod
    }
}

/// A UCS-2/UTF-16LE string up to its NUL (or the end); invalid code units become U+FFFD.
func ucs2String(_ bytes: ArraySlice<UInt8>) -> String {
    var units: [UInt16] = []
    units.reserveCapacity(bytes.count / 2)
    var i = bytes.startIndex
    while i + 1 < bytes.endIndex {
        let u = UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8
        if u == 0 { break }
        units.append(u)
        i += 2
    }
    return String(decoding: units, as: UTF16.self)
}

/// Encodes a string as UTF-16LE with a terminating NUL.
func ucs2Bytes(_ s: String, terminated: Bool = true) -> [UInt8] {
    var out: [UInt8] = []
    for u in s.utf16 { out.le16(u) }
    if terminated { out += [0, 0] }
    return out
}
