import Foundation

/// The boot disk's EFI System Partition as firmware, shim and grub see it: files looked up
/// case-insensitively (FAT), with the disk's partitioning (which grub names the device by and
/// which firmware measures into PCR 5 when it is GPT).
public struct ESP: Sendable {
    public enum Partitioning: Sendable, Hashable {
        /// A folder given to QEMU as `-drive file=fat:DIR`: QEMU presents an MBR disk.
        case mbr
        /// A GPT disk image: the header and the partitions in use (UEFI_GPT_DATA).
        case gpt(gptEvent: [UInt8], partition: Int)
        /// A bare FAT file system without a partition table.
        case none
    }

    /// Files by path with "/" separators and a leading "/", as stored.
    public private(set) var files: [String: [UInt8]]
    public var partitioning: Partitioning
    private var index: [String: String]

    public init(files: [String: [UInt8]], partitioning: Partitioning = .mbr) {
        var normalized: [String: [UInt8]] = [:]
        for (k, v) in files { normalized[Self.normalize(k)] = v }
        self.files = normalized
        self.partitioning = partitioning
        index = Dictionary(normalized.keys.map { ($0.lowercased(), $0) }, uniquingKeysWith: { a, _ in a })
    }

    static func normalize(_ path: String) -> String {
        var out = "/"
        out.reserveCapacity(path.utf8.count + 1)
        for c in path {
            let c: Character = c == "\\" ? "/" : c
            if c == "/" && out.last == "/" { continue }
            out.append(c)
        }
        return out
    }

    /// A file's bytes (path with / or \, any case), or nil.
    public func file(_ path: String) -> [UInt8]? {
        index[Self.normalize(path).lowercased()].flatMap { files[$0] }
    }

    /// The path as stored (its case), or nil.
    public func storedPath(_ path: String) -> String? { index[Self.normalize(path).lowercased()] }

    /// True when a file or a directory exists at `path`.
    public func exists(_ path: String) -> Bool {
        let p = Self.normalize(path).lowercased()
        if p == "/" || index[p] != nil { return true }
        let dir = p.hasSuffix("/") ? p : p + "/"
        return index.keys.contains { $0.hasPrefix(dir) }
    }

    /// grub's name for the ESP's device.
    public var grubDevice: String {
        switch partitioning {
        case .mbr: return "hd0,msdos1"
        case .gpt(_, let n): return "hd0,gpt\(n)"
        case .none: return "hd0"
        }
    }

    /// Reads a folder (every regular file below it).
    public static func folder(_ url: URL, maxBytes: Int = 1 << 30) throws(FirmwareError) -> ESP {
        var files: [String: [UInt8]] = [:]
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
            throw FirmwareError(.notFound, stage: "ESP", "\(url.path) is not a directory", path: url.path)
        }
        guard let walker = fm.enumerator(at: url, includingPropertiesForKeys: [.isRegularFileKey]) else {
            throw FirmwareError(.notFound, stage: "ESP", "cannot list \(url.path)", path: url.path)
        }
        var total = 0
        let base = url.standardizedFileURL.resolvingSymlinksInPath().path
        for case let f as URL in walker {
            guard (try? f.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true else { continue }
            let full = f.standardizedFileURL.resolvingSymlinksInPath().path
            guard full.hasPrefix(base + "/") else { continue }
            guard let data = fm.contents(atPath: full) else {
                throw FirmwareError(.notFound, stage: "ESP", "cannot read \(full)", path: full)
            }
            total += data.count
            guard total <= maxBytes else {
                throw FirmwareError(.invalidImage, stage: "ESP", "the folder holds more than \(maxBytes) bytes", path: url.path)
            }
            files[String(full.dropFirst(base.count))] = Array(data)
        }
        return ESP(files: files, partitioning: .mbr)
    }

    static let espType = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"

    /// A GPT disk's table from the disk's first sectors (the primary header at LBA 1 and its
    /// partition entries): the UEFI_GPT_DATA that firmware measures into PCR 5 (the header, the
    /// number of partitions in use, their entries in table order) and the EFI System Partition's
    /// number and first and last LBA.
    public static func gpt(_ bytes: [UInt8]) throws(FirmwareError) -> (event: [UInt8], partition: Int, start: Int, end: Int) {
        guard bytes.count >= 1024, Array(bytes[512..<520]) == Array("EFI PART".utf8) else {
            throw FirmwareError(.invalidImage, stage: "GPT", "no GPT header (\"EFI PART\") at LBA 1")
        }
        func u32(_ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 | Int(bytes[o + 2]) << 16 | Int(bytes[o + 3]) << 24 }
        func u64(_ o: Int) -> Int { u32(o) | u32(o + 4) << 32 }
        let headerSize = u32(512 + 12)
        let entriesLBA = u64(512 + 72), count = u32(512 + 80), entrySize = u32(512 + 84)
        guard (92...512).contains(headerSize), (128...4096).contains(entrySize), count <= 1024,
              entriesLBA > 0, entriesLBA < Int.max / 512, entriesLBA * 512 + count * entrySize <= bytes.count else {
            throw FirmwareError(.invalidImage, stage: "GPT", "the GPT header at LBA 1 is inconsistent (header \(headerSize) bytes, "
                                                           + "\(count) entries of \(entrySize) bytes at LBA \(entriesLBA))")
        }
        var used: [[UInt8]] = []
        var esp: (index: Int, start: Int, end: Int)?
        for i in 0..<count {
            let o = entriesLBA * 512 + i * entrySize
            let e = Array(bytes[o..<o + entrySize])
            if e[0..<16].allSatisfy({ $0 == 0 }) { continue }
            used.append(e)
            let type = EFIGUIDText.text(Array(e[0..<16]))
            if type == espType, esp == nil {
                let start = Int(e[32]) | Int(e[33]) << 8 | Int(e[34]) << 16 | Int(e[35]) << 24
                let end = Int(e[40]) | Int(e[41]) << 8 | Int(e[42]) << 16 | Int(e[43]) << 24
                esp = (i + 1, start, end)
            }
        }
        guard let p = esp else { throw FirmwareError(.notFound, stage: "GPT", "the disk has no EFI System Partition (type \(espType))") }
        guard p.start > 0, p.end >= p.start else {
            throw FirmwareError(.invalidImage, stage: "GPT", "the EFI System Partition's range (LBA \(p.start)–\(p.end)) is empty")
        }
        var event = Array(bytes[512..<512 + headerSize])
        var n = UInt64(used.count)
        for _ in 0..<8 { event.append(UInt8(truncatingIfNeeded: n)); n >>= 8 }
        for e in used { event += e }
        return (event, p.index, p.start, p.end)
    }

    /// The partitioning of a GPT disk from its first sectors (see `gpt`).
    public static func gptPartitioning(_ head: [UInt8]) throws(FirmwareError) -> Partitioning {
        let t = try gpt(head)
        return .gpt(gptEvent: t.event, partition: t.partition)
    }

    /// Reads a disk image: GPT with an EFI System Partition, or a bare FAT file system.
    public static func image(_ bytes: [UInt8]) throws(FirmwareError) -> ESP {
        if bytes.count >= 1024, Array(bytes[512..<520]) == Array("EFI PART".utf8) {
            let t = try gpt(bytes)
            guard (t.end + 1) * 512 <= bytes.count else {
                throw FirmwareError(.invalidImage, stage: "GPT",
                                    "the EFI System Partition (LBA \(t.start)–\(t.end)) is not inside the image")
            }
            let fat = try FATFileSystem(Array(bytes[t.start * 512..<(t.end + 1) * 512]))
            return ESP(files: try fat.files(), partitioning: .gpt(gptEvent: t.event, partition: t.partition))
        }
        let fat = try FATFileSystem(bytes)
        return ESP(files: try fat.files(), partitioning: .none)
    }

    /// A folder or a disk image, by what is at `path`.
    public static func load(_ path: String) throws(FirmwareError) -> ESP {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FirmwareError(.notFound, stage: "ESP", "\(path) does not exist", path: path)
        }
        if isDir.boolValue { return try folder(URL(fileURLWithPath: path)) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FirmwareError(.notFound, stage: "ESP", "cannot read \(path)", path: path)
        }
        return try image(Array(data))
    }
}

enum EFIGUIDText {
    static func text(_ b: [UInt8]) -> String {
        func h(_ r: [UInt8]) -> String { r.map { String(format: "%02X", $0) }.joined() }
        return """
            \(h(b[0..<4].reversed()))-\(h(b[4..<6].reversed()))-\(h(b[6..<8].reversed()))-\(h(Array(b[8..<10])))-\(h(Array(b[10..<16])))
            """
    }
}
