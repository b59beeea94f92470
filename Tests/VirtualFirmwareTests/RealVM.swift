import Foundation
import MeasuredBoot
import Synchronization
import TLaunchTestSupport
import TPM2
import Testing
import VirtualFirmware
import VirtualTPM
#if canImport(Glibc)
import Glibc
#endif

/// Debian's packaged boot chain and firmware (the test command installs them).
enum Debian {
    static let shim = "/usr/lib/shim/shimx64.efi.signed"
    static let grub = "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
    static let ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
    static let varsBlank = "/usr/share/OVMF/OVMF_VARS_4M.fd"
    static let varsMS = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
    static let varsSnakeoil = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
    static let snakeoilKey = "/usr/share/ovmf/PkKek-1-snakeoil.key"
    static let snakeoilCert = "/usr/share/ovmf/PkKek-1-snakeoil.pem"
    static let busybox = "/bin/busybox"
    static var kernel: String? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/boot")) ?? []
        return names.filter { $0.hasPrefix("vmlinuz-") }.sorted().last.map { "/boot/" + $0 }
    }

    /// Everything the real-VM tests need, or nil (recorded as a failure when interop is required).
    static func available(sourceLocation: SourceLocation = #_sourceLocation) -> (qemu: String, kernel: String)? {
        guard let qemu = Interop.tool("qemu-system-x86_64", sourceLocation: sourceLocation) else { return nil }
        let files = [shim, grub, ovmfCode, varsBlank, varsMS, varsSnakeoil, snakeoilKey, busybox]
        let missing = files.filter { !FileManager.default.fileExists(atPath: $0) }
        guard missing.isEmpty, let k = kernel else {
            if Interop.required {
                Issue.record("""
                    missing \(missing + (kernel == nil ? ["/boot/vmlinuz-*"] : [])) (Debian packages shim-signed, grub-efi-amd64-signed, \
                    ovmf, busybox-static, linux-image-amd64; scripts/test.sh installs them)
                    """,
                             sourceLocation: sourceLocation)
            }
            return nil
        }
        return (qemu, k)
    }
}

/// A "newc" cpio archive (the initramfs format): directories and files, root-owned.
func cpioNewc(_ entries: [(path: String, mode: UInt32, data: [UInt8])]) -> [UInt8] {
    CPIO.newc(entries.map { CPIO.Entry(path: $0.path, mode: $0.mode, data: $0.data) })
}

/// The initramfs the fidelity tests boot: prints the kernel's TCG event log (base64) and the
/// sha256 PCRs to the serial console, then powers off.
func reportingInitramfs() throws -> [UInt8] {
    let script = """
    #!/bin/busybox sh
    /bin/busybox mount -t proc proc /proc
    /bin/busybox mount -t sysfs sysfs /sys
    /bin/busybox mount -t securityfs securityfs /sys/kernel/security
    echo 0 > /proc/sys/kernel/printk
    echo TLAUNCH-EVENTLOG-BEGIN
    /bin/busybox base64 /sys/kernel/security/tpm0/binary_bios_measurements
    echo TLAUNCH-EVENTLOG-END
    echo TLAUNCH-PCRS-BEGIN
    for i in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do echo "PCR $i $(/bin/busybox cat /sys/class/tpm/tpm0/pcr-sha256/$i)"; done
    echo TLAUNCH-PCRS-END
    /bin/busybox poweroff -f

    """
    let busybox = Array(try Data(contentsOf: URL(fileURLWithPath: Debian.busybox)))
    return cpioNewc([("bin", 0o40755, []), ("proc", 0o40755, []), ("sys", 0o40755, []), ("dev", 0o40755, []),
                     ("bin/busybox", 0o100755, busybox), ("init", 0o100755, Array(script.utf8))])
}

/// What a real VM showed.
struct RealBoot {
    var serial: String
    /// The kernel's event log, when the guest exposed it.
    var log: EventLog?
    /// sha256 PCRs as the guest read them.
    var pcrs: [UInt32: [UInt8]]
    /// (PCR, sha256 digest) of every PCR_Extend the vTPM executed, when it was ours.
    var extends: [(pcr: UInt32, sha256: [UInt8])]
    var finished: Bool
}

enum TPMKind { case swtpm, ours }

/// Boots QEMU + Debian's Secure Boot OVMF (SMM, TCG) with `vars` and the ESP folder, on
/// swtpm or on our vTPM (whose command trace gives the measurement sequence).
func bootRealVM(qemu: String, vars: String, esp: URL, tpm kind: TPMKind, until markers: [String] = ["TLAUNCH-PCRS-END"],
                timeout: Duration = .seconds(240)) async throws -> RealBoot {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-vm-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let varsCopy = dir.appendingPathComponent("vars.fd")
    try FileManager.default.copyItem(at: URL(fileURLWithPath: vars), to: varsCopy)
    let ctrl = dir.appendingPathComponent("ctrl.sock").path

    var swtpm: Process?
    var server: VTPMServer?
    let extends = Mutex<[(UInt32, [UInt8])]>([])
    switch kind {
    case .swtpm:
        guard let path = Interop.tool("swtpm") else { throw CancellationError() }
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("tpm"), withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = ["socket", "--tpm2", "--tpmstate", "dir=\(dir.appendingPathComponent("tpm").path)", "--ctrl",
                       "type=unixio,path=\(ctrl)", "--terminate"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        swtpm = p
        let deadline = ContinuousClock.now + .seconds(10)
        while !FileManager.default.fileExists(atPath: ctrl), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
    case .ours:
        var options = VTPMServer.Options(data: .unix(path: dir.appendingPathComponent("data.sock").path), control: .unix(path: ctrl))
        options.trace = { command, response in
            // TPM2_PCR_Extend (0x182) that succeeded: handle, then TPML_DIGEST_VALUES after the auth area.
            guard command.count > 22, command[6..<10].elementsEqual([0, 0, 0x01, 0x82]), response.count >= 10,
                response[6..<10].allSatisfy({ $0 == 0 })
            else { return }
            func be32(_ o: Int) -> Int {
                Int(command[o]) << 24 | Int(command[o + 1]) << 16 | Int(command[o + 2]) << 8 | Int(command[o + 3])
            }
            let pcr = UInt32(be32(10))
            var p = 18 + be32(14)
            guard p + 4 <= command.count else { return }
            let n = be32(p); p += 4
            for _ in 0..<n {
                guard p + 2 <= command.count else { return }
                let alg = Int(command[p]) << 8 | Int(command[p + 1]); p += 2
                let size = [0x04: 20, 0x0B: 32, 0x0C: 48, 0x0D: 64, 0x12: 32][alg] ?? 0
                guard size > 0, p + size <= command.count else { return }
                if alg == 0x0B { extends.withLock { $0.append((pcr, Array(command[p..<p + size]))) } }
                p += size
            }
        }
        let s = try VTPMServer(tpm: VirtualTPM.ephemeral(), options: options)
        s.start()
        server = s
    }
    defer {
        server?.terminate()
        if let p = swtpm, p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
    }

    let serial = dir.appendingPathComponent("serial.log")
    _ = FileManager.default.createFile(atPath: serial.path, contents: nil)
    let q = Process()
    q.executableURL = URL(fileURLWithPath: qemu)
    q.arguments = ["-nodefaults", "-machine", "q35,smm=on", "-accel", "tcg", "-m", "512", "-display", "none", "-net", "none",
                   "-global", "driver=cfi.pflash01,property=secure,value=on",
                   "-serial", "file:\(serial.path)", "-monitor", "none", "-no-reboot",
                   "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=\(Debian.ovmfCode)",
                   "-drive", "if=pflash,format=raw,unit=1,file=\(varsCopy.path)",
                   "-drive", esp.hasDirectoryPath || (try? esp.resourceValues(forKeys: [.isDirectoryKey]).isDirectory) == true
                       ? "file=fat:rw:\(esp.path),format=raw,if=virtio" : "file=\(esp.path),format=raw,if=virtio",
                   "-chardev", "socket,id=chrtpm,path=\(ctrl)",
                   "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0"]
    q.standardOutput = FileHandle.nullDevice
    q.standardError = FileHandle.nullDevice
    try q.run()
    let deadline = ContinuousClock.now + timeout
    var text = ""
    var finished = false
    while ContinuousClock.now < deadline {
        text = String(decoding: (try? Data(contentsOf: serial)) ?? Data(), as: UTF8.self).replacingOccurrences(of: "\r", with: "")
        if markers.contains(where: { text.contains($0) }) { finished = true; break }
        if !q.isRunning { break }
        try await Task.sleep(for: .milliseconds(250))
    }
    if q.isRunning {
        if finished { try await Task.sleep(for: .milliseconds(300)) }
        kill(q.processIdentifier, SIGKILL)
    }
    q.waitUntilExit()

    var log: EventLog?
    if let b = text.range(of: "TLAUNCH-EVENTLOG-BEGIN\n"),
        let e = text.range(of: "TLAUNCH-EVENTLOG-END", range: b.upperBound..<text.endIndex)
    {
        let b64 = text[b.upperBound..<e.lowerBound].split(separator: "\n").filter { !$0.contains(" ") }.joined()
        if let data = Data(base64Encoded: b64), !data.isEmpty { log = try? EventLog(parsing: Array(data)) }
    }
    var pcrs: [UInt32: [UInt8]] = [:]
    for line in text.split(separator: "\n") where line.hasPrefix("PCR ") {
        let f = line.split(separator: " ")
        if f.count == 3, let n = UInt32(f[1]), let v = Array(hex: String(f[2]).lowercased()), v.count == 32 { pcrs[n] = v }
    }
    return RealBoot(serial: text, log: log, pcrs: pcrs, extends: extends.withLock { $0.map { (pcr: $0.0, sha256: $0.1) } },
                    finished: finished)
}
