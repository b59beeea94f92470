import Foundation
@testable import Fleet
import TLaunchTestSupport
import Testing
import VirtualFirmware

/// A real VM's boot disk: built by sfdisk, mkfs.fat and mtools, read back by the firmware's own
/// GPT and FAT parsers — the files are all there, byte for byte, and the GPT that OVMF measures
/// into PCR 5 keeps its identity when a file changes.
@Suite("Real VMs: the GPT boot disk")
struct BootDiskTests {
    static func tools() -> BootDisk.Tools? {
        let t = BootDisk.Tools.find()
        if t == nil, Interop.required {
            Issue.record("boot disks need sfdisk, mkfs.fat and mcopy (fdisk, dosfstools, mtools; scripts/test.sh installs them)")
        }
        return t
    }

    @Test func theDiskHoldsTheFilesAndKeepsItsIdentity() throws {
        guard let tools = Self.tools() else { return }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-disk-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = BootDisk(tools: tools, folder: VMFolder(url: dir))
        let big = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 7) }
        var files: [String: [UInt8]] = ["/EFI/BOOT/BOOTX64.EFI": Array("shim".utf8), "/EFI/BOOT/grubx64.efi": big,
            "/EFI/debian/grub.cfg": Array("linux /vmlinuz console=ttyS0\n".utf8), "/vmlinuz": Array(repeating: 0x4D, count: 70_001),
                                        "/initrd.img": []]
        var seen: [String] = []
        let view1 = try disk.prepare(ESP(files: files)) { seen.append($0) }
        #expect(seen.count == 1, "the first boot builds the disk")
        guard case .gpt(let event1, let partition) = view1.partitioning else {
            Issue.record("the firmware's view is not a GPT disk: \(view1.partitioning)")
            return
        }
        #expect(partition == 1 && view1.grubDevice == "hd0,gpt1")

        // Read back with the firmware's parsers: every file, byte for byte; the same GPT.
        let back = try ESP.image([UInt8](try Data(contentsOf: disk.image)))
        #expect(Set(back.files.keys.map { $0.lowercased() }) == Set(files.keys.map { $0.lowercased() }))
        for (path, bytes) in files { #expect(back.file(path) == bytes, "\(path) on the disk") }
        #expect(back.partitioning == view1.partitioning)
        // Sparse: a 512 MiB disk that takes about what its files take.
        let size = try #require(try FileManager.default.attributesOfItem(atPath: disk.image.path)[.size] as? Int)
        #expect(size == 512 << 20)

        // Unchanged files: nothing is rebuilt (the running VM's disk stays as it is).
        let inode1 = try FileManager.default.attributesOfItem(atPath: disk.image.path)[.systemFileNumber] as? Int
        _ = try disk.prepare(ESP(files: files)) { seen.append($0) }
        #expect(seen.count == 1)
        #expect(try FileManager.default.attributesOfItem(atPath: disk.image.path)[.systemFileNumber] as? Int == inode1)

        // A changed file: a new disk (a new file: a QEMU that has the old one open keeps it),
        // with the new bytes, and the same GPT — PCR 5 does not change when grub.cfg does.
        files["/EFI/debian/grub.cfg"] = Array("linux /vmlinuz console=ttyS0 apparmor=0\n".utf8)
        let view2 = try disk.prepare(ESP(files: files)) { seen.append($0) }
        #expect(seen.count == 2)
        #expect(view2.partitioning == .gpt(gptEvent: event1, partition: 1))
        #expect(try FileManager.default.attributesOfItem(atPath: disk.image.path)[.systemFileNumber] as? Int != inode1)
        let again = try ESP.image([UInt8](try Data(contentsOf: disk.image)))
        #expect(again.file("/efi/debian/GRUB.CFG") == files["/EFI/debian/grub.cfg"])
    }

    @Test func aDiskWithoutAGPTIsRefusedWithItsReason() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-disk-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let image = dir.appendingPathComponent("disk.img")
        try Data(count: 1 << 20).write(to: image)
        #expect { try BootDisk.firmwareView(of: ESP(files: [:]), disk: image) } throws: { error in
            "\(error)".contains("no usable GPT") && "\(error)".contains("EFI PART")
        }
    }
}
