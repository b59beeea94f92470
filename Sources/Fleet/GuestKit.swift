import Crypto
import Foundation
import MeasuredBoot
import TPM2
import VirtualFirmware

/// What a real VM of the platform runs after its kernel: an initramfs with busybox, the guest
/// attestation agent (`tlaunch-agent`, with the shared libraries it links), the kernel modules
/// for virtio-serial and the power button, and an init that mounts securityfs, starts the agent
/// and powers off on an ACPI power-button press. Built from the host's files (the same Debian
/// kernel the image boots), once per combination, and kept in DATA/guest/.
public struct GuestKit: Sendable {
    public var agent: String
    public var busybox: String
    public var kernelRelease: String
    public var modulesDirectory: String

    /// Modules the guest loads, in order (Debian builds them as modules; a kernel that has them
    /// built in simply has no file for them).
    public static let modules = ["virtio", "virtio_ring", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
                                 "virtio_console", "evdev", "button"]

    /// The agent binary: `TLAUNCH_GUEST_AGENT`, else `tlaunch-agent` next to the running program.
    public static func agentBinary(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let p = environment["TLAUNCH_GUEST_AGENT"], FileManager.default.isExecutableFile(atPath: p) { return p }
        let me = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
        var dirs = [me.deletingLastPathComponent()]
        // The test runner lives in .build/debug/X.xctest (a file or a bundle folder).
        dirs.append(me.deletingLastPathComponent().deletingLastPathComponent())
        if let exe = Bundle.main.executableURL { dirs.append(exe.deletingLastPathComponent()) }
        for d in dirs {
            let p = d.appendingPathComponent("tlaunch-agent").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    /// The kit for the newest kernel in /boot, or nil with the reason.
    public static func detect() -> Result<GuestKit, FleetError> {
        guard let agent = agentBinary() else {
            return .failure(FleetError(.failed,
                                       "tlaunch-agent is not built next to tlaunch (swift build builds it; or set TLAUNCH_GUEST_AGENT)"))
        }
        let busybox = "/bin/busybox"
        guard FileManager.default.isExecutableFile(atPath: busybox) else {
            return .failure(FleetError(.failed, "\(busybox) is missing: install Debian's busybox-static"))
        }
        let kernels = ((try? FileManager.default.contentsOfDirectory(atPath: "/boot")) ?? []).filter { $0.hasPrefix("vmlinuz-") }.sorted()
        guard let k = kernels.last else { return .failure(FleetError(.failed, "no kernel in /boot: install Debian's linux-image-amd64")) }
        let release = String(k.dropFirst("vmlinuz-".count))
        return .success(GuestKit(agent: agent, busybox: busybox, kernelRelease: release, modulesDirectory: "/lib/modules/\(release)"))
    }

    /// The init script: PID 1 of the guest.
    public static let initScript = """
    #!/bin/busybox sh
    /bin/busybox --install -s /bin
    export PATH=/bin
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev
    mount -t securityfs securityfs /sys/kernel/security
    mount -t tmpfs tmpfs /tmp
    echo 1 > /proc/sys/kernel/printk
    for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m"; done
    hostname tlaunch-guest
    echo "TLAUNCH-GUEST: up, kernel $(uname -r), modules: $(cut -d' ' -f1 /proc/modules | tr '\\n' ' ')ports: $(ls /sys/class/virtio-ports \
    2>/dev/null | tr '\\n' ' ')"
    # ACPI power button (QMP system_powerdown): power off at once.
    for e in /sys/class/input/event*; do
      if grep -q "Power Button" "$e/device/name" 2>/dev/null; then
        ( head -c 1 "/dev/input/${e##*/}" > /dev/null && echo "TLAUNCH-GUEST: power button, powering off" && poweroff -f ) &
      fi
    done
    # The interval is the platform's (the relay tells the agent), unless the command line sets one.
    interval=""
    for a in $(cat /proc/cmdline); do case "$a" in tlaunch.interval=*) interval="--interval ${a#tlaunch.interval=}";; esac; done
    ( while true; do /bin/tlaunch-agent run $interval; echo "TLAUNCH-GUEST: agent exited, restarting"; sleep 5; done ) &
    while true; do sleep 3600; done

    """

    /// The files of the initramfs: the agent and every library it loads at their own paths (so
    /// its run path works unchanged), busybox, the modules, /init.
    public func entries() throws -> [CPIO.Entry] {
        let fm = FileManager.default
        func read(_ p: String) throws -> [UInt8] {
            guard let d = fm.contents(atPath: p) else { throw FleetError(.failed, "guest kit: cannot read \(p)") }
            return Array(d)
        }
        var dirs: Set<String> = ["bin", "dev", "proc", "sys", "tmp", "etc", "lib", "lib/modules", "root"]
        var files: [CPIO.Entry] = []
        files.append(.file("init", Array(Self.initScript.utf8), executable: true))
        files.append(.file("bin/busybox", try read(busybox), executable: true))
        files.append(.file("bin/tlaunch-agent", try Self.withoutDebugInfo(agent) ?? read(agent), executable: true))
        files.append(.file("etc/passwd", Array("root:x:0:0:root:/root:/bin/sh\n".utf8)))
        for lib in try Self.sharedLibraries(of: agent) {
            let path = String(lib.dropFirst())   // relative in the archive
            var parts = path.split(separator: "/").dropLast()
            while !parts.isEmpty { dirs.insert(parts.joined(separator: "/")); parts = parts.dropLast() }
            let real = URL(fileURLWithPath: lib).resolvingSymlinksInPath().path
            files.append(.file(path, try read(real), executable: true))
        }
        // Debian's loader path is /lib64/ld-linux-x86-64.so.2 (a link to /lib/x86_64-linux-gnu/…).
        if !files.contains(where: { $0.path == "lib64/ld-linux-x86-64.so.2" }), fm.fileExists(atPath: "/lib64/ld-linux-x86-64.so.2") {
            dirs.insert("lib64")
            files.append(
                .file(
                    "lib64/ld-linux-x86-64.so.2",
                    try read(URL(fileURLWithPath: "/lib64/ld-linux-x86-64.so.2").resolvingSymlinksInPath().path), executable: true))
        }
        // The modules and what they need, in load order (modules.dep lists a module's
        // dependencies with the deepest last: they load last to first).
        let deps = (try? String(contentsOfFile: "\(modulesDirectory)/modules.dep", encoding: .utf8)) ?? ""
        var needs: [String: [String]] = [:]
        for line in deps.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard let path = parts.first else { continue }
            needs[String(path)] = parts.count > 1 ? parts[1].split(separator: " ").map(String.init) : []
        }
        var order: [String] = []
        func add(_ path: String, depth: Int = 0) {
            guard depth < 16, !order.contains(path) else { return }
            for d in (needs[path] ?? []).reversed() { add(d, depth: depth + 1) }
            order.append(path)
        }
        for m in Self.modules {
            if let path = needs.keys.sorted().first(where: { $0.split(separator: "/").last.map(String.init) == "\(m).ko" }) { add(path) }
        }
        for path in order {
            let file = String(path.split(separator: "/").last ?? "")
            files.append(.file("lib/modules/\(file)", try read("\(modulesDirectory)/\(path)")))
        }
        files.append(.file("lib/modules/order",
                           Array(order.map { String($0.split(separator: "/").last ?? "") }.joined(separator: "\n").utf8)))
        return dirs.sorted().map(CPIO.Entry.directory) + files
    }

    /// The initramfs, cached in `cache` under a name that changes with its inputs.
    public func initramfs(cache: URL) throws -> [UInt8] {
        let fm = FileManager.default
        var key = SHA256()
        for p in [agent, busybox, "\(modulesDirectory)/modules.dep"] {
            let a = (try? fm.attributesOfItem(atPath: p)) ?? [:]
            key.update(data: Data("\(p)|\(a[.size] ?? 0)|\((a[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)".utf8))
        }
        key.update(data: Data(Self.initScript.utf8))
        key.update(data: Data("gzip -1; agent without debug info".utf8))
        let name = "initramfs-" + hexString(Array(key.finalize()).prefix(8)) + ".img"
        let file = cache.appendingPathComponent(name)
        if let d = fm.contents(atPath: file.path) { return Array(d) }
        var bytes = CPIO.newc(try entries())
        try fm.createDirectory(at: cache, withIntermediateDirectories: true)
        let tmp = cache.appendingPathComponent(name + ".\(getpid()).tmp")
        try Data(bytes).write(to: tmp)
        // Compressed (the kernel unpacks gzip): a third of the bytes for OVMF and grub to read
        // and to hash into PCR 9 in every bank, which under TCG is most of a boot's time.
        if Self.run("/bin/gzip", ["-1", "-n", "-f", tmp.path]), let packed = fm.contents(atPath: tmp.path + ".gz") {
            bytes = Array(packed)
            try? fm.removeItem(atPath: tmp.path + ".gz")
            try Data(bytes).write(to: tmp)
        }
        _ = try? fm.removeItem(at: file)
        try fm.moveItem(at: tmp, to: file)
        return bytes
    }

    /// The agent without its debug information (`strip --strip-debug`; nil where strip is missing).
    static func withoutDebugInfo(_ binary: String) -> [UInt8]? {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("tlaunch-agent-\(getpid())-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: out) }
        guard run("/usr/bin/strip", ["--strip-debug", "-o", out.path, binary]) else { return nil }
        return FileManager.default.contents(atPath: out.path).map(Array.init)
    }

    /// Runs a tool to completion: true when it exited 0.
    static func run(_ tool: String, _ args: [String]) -> Bool {
        guard FileManager.default.isExecutableFile(atPath: tool) else { return false }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    /// The shared libraries `binary` loads, as the dynamic loader resolves them (`ldd`).
    static func sharedLibraries(of binary: String) throws -> [String] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/ldd")
        p.arguments = [binary]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { throw FleetError(.failed, "guest kit: cannot run ldd: \(error)") }
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw FleetError(.failed, "guest kit: ldd \(binary) failed") }
        var libs: [String] = []
        for line in text.split(separator: "\n") {
            // "libx.so => /path/libx.so (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
            let fields = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            if let arrow = fields.firstIndex(of: "=>"), arrow + 1 < fields.count, fields[arrow + 1].hasPrefix("/") {
                libs.append(fields[arrow + 1])
            }
            else if let first = fields.first, first.hasPrefix("/") { libs.append(first) }
        }
        return libs
    }
}
