/// A read-only FAT12/16/32 file system (an ESP image, or the memdisk inside a grub image).
/// Every offset is checked: a hostile image gives a `FirmwareError`, never a crash.
public struct FATFileSystem: Sendable {
    public let bytes: [UInt8]
    let bytesPerSector: Int
    let sectorsPerCluster: Int
    let fatOffset: Int
    let fatBits: Int
    let rootDirOffset: Int
    let rootDirEntries: Int
    let rootCluster: UInt32
    let dataOffset: Int
    let clusterCount: Int

    public init(_ bytes: [UInt8]) throws(FirmwareError) {
        self.bytes = bytes
        func bad(_ why: String) -> FirmwareError { FirmwareError(.invalidImage, stage: "FAT", why) }
        guard bytes.count >= 512, bytes[510] == 0x55, bytes[511] == 0xAA else { throw bad("no boot sector signature (0x55AA at byte 510)") }
        func u16(_ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        bytesPerSector = u16(11)
        sectorsPerCluster = Int(bytes[13])
        let reserved = u16(14), fats = Int(bytes[16])
        rootDirEntries = u16(17)
        let total = u16(19) != 0 ? u16(19) : u32(32)
        let fatSize = u16(22) != 0 ? u16(22) : u32(36)
        guard [512, 1024, 2048,
               4096].contains(bytesPerSector) else { throw bad("BytesPerSector \(bytesPerSector) at byte 11 is not 512–4096") }
        guard sectorsPerCluster > 0, sectorsPerCluster & (sectorsPerCluster - 1) == 0 else {
            throw bad("SectorsPerCluster \(sectorsPerCluster) at byte 13 is not a power of two")
        }
        guard reserved > 0, fats > 0, fatSize > 0, total > 0 else { throw bad("reserved sectors, FAT count, FAT size and total sectors "
                                                                            + "must be non-zero") }
        fatOffset = reserved * bytesPerSector
        rootDirOffset = (reserved + fats * fatSize) * bytesPerSector
        let rootSectors = (rootDirEntries * 32 + bytesPerSector - 1) / bytesPerSector
        dataOffset = rootDirOffset + rootSectors * bytesPerSector
        let dataSectors = total - (reserved + fats * fatSize + rootSectors)
        guard dataSectors > 0 else { throw bad("no data sectors") }
        clusterCount = dataSectors / sectorsPerCluster
        fatBits = clusterCount < 4085 ? 12 : clusterCount < 65525 ? 16 : 32
        rootCluster = fatBits == 32 ? UInt32(truncatingIfNeeded: u32(44)) : 0
        guard fatOffset + fatSize * bytesPerSector <= bytes.count else { throw bad("the FAT (\(fatSize) sectors at \(fatOffset)) extends "
                                                                                 + "past the image (\(bytes.count) bytes)") }
    }

    func next(_ cluster: UInt32) -> UInt32? {
        let c = Int(cluster)
        switch fatBits {
        case 12:
            let o = fatOffset + c + c / 2
            guard o + 1 < bytes.count else { return nil }
            let v = Int(bytes[o]) | Int(bytes[o + 1]) << 8
            let n = c & 1 == 1 ? v >> 4 : v & 0xFFF
            return n >= 0xFF8 ? nil : UInt32(n)
        case 16:
            let o = fatOffset + c * 2
            guard o + 1 < bytes.count else { return nil }
            let n = Int(bytes[o]) | Int(bytes[o + 1]) << 8
            return n >= 0xFFF8 ? nil : UInt32(n)
        default:
            let o = fatOffset + c * 4
            guard o + 3 < bytes.count else { return nil }
            let n = (UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24) & 0x0FFF_FFFF
            return n >= 0x0FFF_FFF8 ? nil : n
        }
    }

    /// The bytes of a cluster chain (at most `limit` bytes; loops and bad clusters end it with an error).
    func chain(_ first: UInt32, limit: Int?) throws(FirmwareError) -> [UInt8] {
        var out: [UInt8] = []
        var c: UInt32? = first
        let clusterBytes = bytesPerSector * sectorsPerCluster
        var seen = 0
        while let cl = c, cl >= 2 {
            guard Int(cl) - 2 < clusterCount else {
                throw FirmwareError(.invalidImage, stage: "FAT", "cluster \(cl) is outside the data area (\(clusterCount) clusters)")
            }
            seen += 1
            guard seen <= clusterCount else {
                throw FirmwareError(.invalidImage, stage: "FAT", "the cluster chain starting at \(first) loops")
            }
            let o = dataOffset + (Int(cl) - 2) * clusterBytes
            guard o + clusterBytes <= bytes.count else {
                throw FirmwareError(.invalidImage, stage: "FAT", "cluster \(cl) lies past the end of the image")
            }
            out += bytes[o..<o + clusterBytes]
            if let l = limit, out.count >= l { return Array(out.prefix(l)) }
            c = next(cl)
        }
        if let l = limit, out.count < l {
            throw FirmwareError(.invalidImage, stage: "FAT", "a file of \(l) bytes has only \(out.count) bytes of clusters")
        }
        return out
    }

    public struct Entry: Sendable {
        public var name: String
        public var isDirectory: Bool
        public var cluster: UInt32
        public var size: Int
    }

    func entries(_ raw: [UInt8]) -> [Entry] {
        var out: [Entry] = []
        var lfn: [Int: [UInt16]] = [:]
        var i = 0
        while i + 32 <= raw.count {
            let e = raw[i..<i + 32]
            defer { i += 32 }
            let b0 = e[e.startIndex]
            if b0 == 0 { break }
            if b0 == 0xE5 { lfn = [:]; continue }
            let attr = e[e.startIndex + 11]
            if attr == 0x0F {
                let seq = Int(b0 & 0x1F)
                var units: [UInt16] = []
                for (a, n) in [(1, 5), (14, 6), (28, 2)] {
                    for k in 0..<n {
                        let o = e.startIndex + a + 2 * k
                        units.append(UInt16(raw[o]) | UInt16(raw[o + 1]) << 8)
                    }
                }
                lfn[seq] = units
                continue
            }
            if attr & 0x08 != 0 { lfn = [:]; continue }   // volume label
            var name: String
            if !lfn.isEmpty {
                let units = lfn.keys.sorted().flatMap { lfn[$0]! }.prefix { $0 != 0 && $0 != 0xFFFF }
                name = String(decoding: Array(units), as: UTF16.self)
            } else {
                // Windows NT's case flags (byte 12): 0x08 base name lower case, 0x10 extension lower case.
                let flags = e[e.startIndex + 12]
                var base = String(decoding: e.prefix(8), as: UTF8.self).trimmingSuffixSpaces
                var ext = String(decoding: e.dropFirst(8).prefix(3), as: UTF8.self).trimmingSuffixSpaces
                if flags & 0x08 != 0 { base = base.lowercased() }
                if flags & 0x10 != 0 { ext = ext.lowercased() }
                name = ext.isEmpty ? base : base + "." + ext
            }
            lfn = [:]
            if name == "." || name == ".." { continue }
            let s = e.startIndex
            let hi = UInt32(raw[s + 20]) | UInt32(raw[s + 21]) << 8
            let lo = UInt32(raw[s + 26]) | UInt32(raw[s + 27]) << 8
            let size = Int(raw[s + 28]) | Int(raw[s + 29]) << 8 | Int(raw[s + 30]) << 16 | Int(raw[s + 31]) << 24
            out.append(Entry(name: name, isDirectory: attr & 0x10 != 0, cluster: hi << 16 | lo, size: size))
        }
        return out
    }

    /// Every file, by path ("/EFI/BOOT/BOOTX64.EFI"), read into memory.
    public func files(maxDepth: Int = 16) throws(FirmwareError) -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        var total = 0
        func walk(_ raw: [UInt8], _ prefix: String, _ depth: Int) throws(FirmwareError) {
            guard depth <= maxDepth else {
                throw FirmwareError(.invalidImage, stage: "FAT", "directories nest deeper than \(maxDepth) at \(prefix)")
            }
            for e in entries(raw) {
                let path = prefix + "/" + e.name
                if e.isDirectory {
                    guard e.cluster >= 2 else { continue }
                    try walk(try chain(e.cluster, limit: nil), path, depth + 1)
                } else {
                    total += e.size
                    guard total <= bytes.count * 2 + 1 << 20 else {
                        throw FirmwareError(.invalidImage, stage: "FAT", "the files claim more bytes than the image holds", path: path)
                    }
                    out[path] = e.size == 0 ? [] : try chain(e.cluster, limit: e.size)
                }
            }
        }
        let root: [UInt8]
        if fatBits == 32 {
            root = try chain(rootCluster, limit: nil)
        } else {
            guard rootDirOffset + rootDirEntries * 32 <= bytes.count else {
                throw FirmwareError(.invalidImage, stage: "FAT", "the root directory lies past the end of the image")
            }
            root = Array(bytes[rootDirOffset..<rootDirOffset + rootDirEntries * 32])
        }
        try walk(root, "", 0)
        return out
    }
}

extension String {
    var trimmingSuffixSpaces: String {
        var s = self
        while s.last == " " { s.removeLast() }
        return s
    }
}
