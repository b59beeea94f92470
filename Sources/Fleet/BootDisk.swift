import Crypto
import Foundation
import MeasuredBoot
#if canImport(Glibc)
import Glibc
#endif
import VirtualFirmware

/// A real VM's boot disk: a raw GPT disk image with one EFI System Partition (FAT32) holding the
/// VM's ESP — the image's files with the VM's own writes over them — as a cloud's OS disk is.
///
/// The disk keeps its identity for the VM's life: its size (a fixed, sparse 512 MiB while the
/// files fit) and its GUIDs (chosen at the VM's first boot, kept in `disk.ids`) never change, so
/// the GPT that OVMF measures into PCR 5 changes only when the disk's layout does, not when a file
/// on it does. It is rebuilt only when its files changed (`disk.stamp`: a digest of every path and
/// file), into a new file renamed into place: a QEMU still running keeps the disk it booted.
/// sfdisk writes the GPT, mkfs.fat the file system and mtools the files (Debian's fdisk,
/// dosfstools and mtools); the prediction reads the GPT back with the firmware's own parser.
struct BootDisk: Sendable {
    struct Tools: Sendable, Hashable {
        var sfdisk: String
        var mkfsFat: String
        var mcopy: String

        static func find() -> Tools? {
            let fm = FileManager.default
            func first(_ names: [String]) -> String? { names.first { fm.isExecutableFile(atPath: $0) } }
            guard let sfdisk = first(["/usr/sbin/sfdisk", "/sbin/sfdisk"]), let mkfs = first(["/usr/sbin/mkfs.fat", "/sbin/mkfs.fat"]),
                  let mcopy = first(["/usr/bin/mcopy", "/bin/mcopy"]) else { return nil }
            return Tools(sfdisk: sfdisk, mkfsFat: mkfs, mcopy: mcopy)
        }
    }

    static let espType = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    /// The partition starts at 1 MiB (LBA 2048) and ends 1 MiB before the end of the disk.
    static let startLBA = 2048

    let tools: Tools
    let folder: VMFolder
    var image: URL { folder.url.appendingPathComponent("disk.img") }
    var stamp: URL { folder.url.appendingPathComponent("disk.stamp") }
    var ids: URL { folder.url.appendingPathComponent("disk.ids") }

    /// The disk's size for `bytes` of files: 512 MiB, doubled until the files fit with room for
    /// FAT32's tables and cluster slack.
    static func size(for bytes: Int, files: Int) -> Int {
        var size = 512 << 20
        while size - 4 << 20 < bytes + bytes / 16 + files * 4096 + (16 << 20) { size *= 2 }
        return size
    }

    /// A digest of the ESP's paths and contents: the disk is rebuilt when it changes.
    static func digest(_ esp: ESP) -> String {
        var h = SHA256()
        for path in esp.files.keys.sorted() {
            h.update(data: Data(path.utf8)); h.update(data: [0])
            h.update(data: Data(SHA256.hash(data: esp.files[path]!)))
        }
        return hexString(Array(h.finalize()))
    }

    /// The disk's GUIDs (disk, partition), chosen once.
    func identity() throws -> (disk: String, partition: String) {
        if let text = try? String(contentsOf: ids, encoding: .utf8) {
            let parts = text.split(whereSeparator: \.isWhitespace).map(String.init)
            if parts.count == 2, parts.allSatisfy({ UUID(uuidString: $0) != nil }) { return (parts[0], parts[1]) }
        }
        let made = (UUID().uuidString, UUID().uuidString)
        try "\(made.0) \(made.1)\n".write(to: ids, atomically: true, encoding: .utf8)
        return made
    }

    /// Makes the disk hold `esp` (building it when its files changed) and returns the ESP as the
    /// VM's firmware sees it: the same files, on partition 1 of this GPT.
    func prepare(_ esp: ESP, progress: (String) -> Void) throws -> ESP {
        let digest = Self.digest(esp)
        let fm = FileManager.default
        let current = (try? String(contentsOf: stamp, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        if current != digest || !fm.fileExists(atPath: image.path) {
            progress("building its boot disk (GPT, FAT32 ESP)")
            try build(esp)
            try digest.write(to: stamp, atomically: true, encoding: .utf8)
        }
        return try Self.firmwareView(of: esp, disk: image)
    }

    /// The files of `esp` with the partitioning read from the disk's first MiB (the protective
    /// MBR, the GPT header and its partition entries) by the firmware's own parser.
    static func firmwareView(of esp: ESP, disk: URL) throws -> ESP {
        guard let h = try? FileHandle(forReadingFrom: disk) else { throw FleetError(.failed, "cannot read the boot disk \(disk.path)") }
        defer { try? h.close() }
        let head = [UInt8](try h.read(upToCount: startLBA * 512) ?? Data())
        let table: ESP.Partitioning
        do { table = try ESP.gptPartitioning(head) } catch {
            throw FleetError(.failed, "the boot disk \(disk.path) has no usable GPT: \(error)")
        }
        return ESP(files: esp.files, partitioning: table)
    }

    func build(_ esp: ESP) throws {
        let fm = FileManager.default
        let (diskID, partitionID) = try identity()
        let total = esp.files.values.reduce(0) { $0 + $1.count }
        let size = Self.size(for: total, files: esp.files.count)
        let sectors = size / 512
        let partitionSectors = sectors - Self.startLBA - 2048
        let temporary = folder.url.appendingPathComponent("disk.img.new")
        let staging = folder.url.appendingPathComponent("disk.files")
        try? fm.removeItem(at: temporary)
        try? fm.removeItem(at: staging)
        defer { try? fm.removeItem(at: staging); try? fm.removeItem(at: temporary) }
        guard fm.createFile(atPath: temporary.path, contents: nil, attributes: [.posixPermissions: 0o600]) else {
            throw FleetError(.failed, "cannot create \(temporary.path)")
        }
        let h = try FileHandle(forWritingTo: temporary)
        try h.truncate(atOffset: UInt64(size))   // sparse: only what is written takes space
        try h.close()
        try run(tools.sfdisk, ["--no-reread", "--no-tell-kernel", "-q", temporary.path],
                stdin: "label: gpt\nlabel-id: \(diskID)\nstart=\(Self.startLBA), size=\(partitionSectors), type=\(Self.espType), "
                     + "uuid=\(partitionID), name=\"EFI System Partition\"\n")
        try run(tools.mkfsFat,
                ["-F", "32", "-s", "8", "-n", "ESP", "--offset", String(Self.startLBA), temporary.path, String(partitionSectors / 2)])
        // The files, laid out in a folder mcopy copies recursively.
        for (path, bytes) in esp.files {
            let dest = staging.appendingPathComponent(String(path.drop { $0 == "/" }))
            try fm.createDirectory(at: dest.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(bytes).write(to: dest)
        }
        let top = try fm.contentsOfDirectory(atPath: staging.path).sorted().map { staging.appendingPathComponent($0).path }
        if !top.isEmpty {
            try run(tools.mcopy, ["-s", "-Q", "-i", "\(temporary.path)@@\(Self.startLBA * 512)"] + top + ["::/"])
        }
        guard rename(temporary.path, image.path) == 0 else { throw FleetError(.failed, "cannot move the new boot disk into place at "
                                                                                     + "\(image.path): errno \(errno)") }
    }

    func run(_ tool: String, _ args: [String], stdin: String? = nil) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        p.environment = ["MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"]
        let input = Pipe(), errors = Pipe()
        p.standardInput = input
        p.standardOutput = FileHandle.nullDevice
        p.standardError = errors
        do { try p.run() } catch { throw FleetError(.failed, "cannot run \(tool): \(error)") }
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try? input.fileHandleForWriting.close()
        let said = errors.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let text = String(decoding: said, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw FleetError(.failed, "building the boot disk: \((tool as NSString).lastPathComponent) \(args.joined(separator: " ")) "
                                    + "exited with \(p.terminationStatus): \(text.suffix(400))")
        }
    }
}
