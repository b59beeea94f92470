import Crypto
import Foundation
import MeasuredBoot
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where a libvirt domain's vTPM comes from.
public enum LibvirtTPMBackend: String, Sendable, CaseIterable {
    /// `<backend type='external'>`: QEMU connects to the platform's own vTPM of the VM (the same
    /// state the platform keeps for `--hypervisor qemu`).
    case external
    /// `<backend type='emulator'>`: libvirt runs `swtpm_setup` and `swtpm` by name; with
    /// `tlaunch vtpm install-swtpm` those are this project's vTPM, its EK certified by the
    /// platform's vTPM CA. The state is libvirt's (/var/lib/libvirt/swtpm/UUID).
    case emulator
}

/// A libvirt connection, driven through `virsh` (every libvirt host has it; the C API would tie
/// every installation of tlaunch to libvirt's library).
public struct LibvirtConnection: Sendable, Hashable {
    public var uri: String
    public var virsh: String
    /// The host does not see the platform's files: a VM's disk and variable store are copied to
    /// the host's `tlaunch` storage pool over this connection, its console is read back from
    /// there, and its agent channel is a TCP port on the host the platform's relay connects to.
    /// Always so for a host on another machine.
    public var ship: Bool

    public init(uri: String = "qemu:///system", virsh: String = "/usr/bin/virsh",
                ship: Bool = false) { self.uri = uri; self.virsh = virsh; self.ship = ship }

    /// The address the platform reaches the host's QEMU at (the URI's host; this machine's loopback for local URIs).
    var address: String {
        guard let u = URLComponents(string: uri), let h = u.host, !h.isEmpty else { return "127.0.0.1" }
        return h
    }

    /// Whether the URI is this host's system or session daemon (its files and QEMU's log are here).
    var isLocal: Bool { uri.hasPrefix("qemu:///") }

    /// The connection when `virsh -c URI version` answers, with libvirt's and QEMU's versions; nil otherwise.
    public static func probe(uri: String) async -> (LibvirtConnection, String)? {
        let c = LibvirtConnection(uri: uri)
        guard FileManager.default.isExecutableFile(atPath: c.virsh), let out = try? await c.run(["version"]) else { return nil }
        let summary = out.split(separator: "\n").filter { $0.contains("Running hypervisor") || $0.contains("Using library") }
            .map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: "; ")
        return (c, summary)
    }

    /// Runs `virsh -c URI args…`; its standard output, or an error with what virsh said.
    @discardableResult
    func run(_ args: [String], timeout: Duration = .seconds(120)) async throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: virsh)
        p.arguments = ["-q", "-c", uri] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { throw FleetError(.failed, "cannot run \(virsh): \(error)") }
        let collected = Mutex((Data(), Data()))
        let readers = DispatchGroup()
        for (i, pipe) in [out, err].enumerated() {
            readers.enter()
            Thread.detachNewThread {
                let d = pipe.fileHandleForReading.readDataToEndOfFile()
                collected.withLock { if i == 0 { $0.0 = d } else { $0.1 = d } }
                readers.leave()
            }
        }
        let killer = Task {
            try await Task.sleep(for: timeout)
            if p.isRunning { Glibc.kill(p.processIdentifier, SIGKILL) }
        }
        await ProcessWait.exit(p)
        killer.cancel()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in readers.notify(queue: .global()) { c.resume() } }
        let (o, e) = collected.withLock { $0 }
        guard p.terminationStatus == 0 else {
            let said = String(decoding: e, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw FleetError(.failed, "virsh -c \(uri) \(args.first ?? ""): \(said.isEmpty ? "exit status \(p.terminationStatus)" : said)")
        }
        return String(decoding: o, as: UTF8.self)
    }

    /// The domain's state (`running`, `shut off`, …), or nil when libvirt has no such domain (or does not answer).
    func state(_ domain: String) async -> String? {
        if case .state(let s) = await lookup(domain) { return s }
        return nil
    }

    /// What libvirt says of a domain — telling "no such domain" from "libvirt does not answer".
    enum DomainLookup: Equatable {
        case state(String)
        case absent
        case unreachable(String)
    }

    func lookup(_ domain: String) async -> DomainLookup {
        do {
            return .state(try await run(["domstate", domain], timeout: .seconds(30)).trimmingCharacters(in: .whitespacesAndNewlines))
        } catch {
            let said = (error as? FleetError)?.message ?? "\(error)"
            // virsh: "error: failed to get domain 'NAME'" when the daemon answered and has none.
            return said.contains("failed to get domain") || said.contains("Domain not found") ? .absent : .unreachable(said)
        }
    }

    /// Starts a transient domain (gone from libvirt once it stops: the platform is the VM's record).
    func create(domain: String, xml: String, paths: QEMUPaths, shipped: ShippedFiles? = nil) async throws -> LibvirtDomain {
        if let s = await state(domain), s != "shut off" {
            // A domain of this VM left running by an earlier run of the platform: never two.
            _ = try? await run(["destroy", domain])
        }
        let file = paths.run.appendingPathComponent("domain.xml")
        try xml.write(to: file, atomically: true, encoding: .utf8)
        do { try await run(["create", file.path]) } catch let e as FleetError {
            throw FleetError(.failed, "libvirt refused \(domain): \(e.message)")
        }
        return LibvirtDomain(connection: self, name: domain, shipped: shipped, console: paths.console)
    }

    // MARK: Files on a host that does not see the platform's (`ship`)

    /// The storage pool (a directory pool) the platform's files go to on a host.
    static let pool = "tlaunch"

    /// The pool's directory on the host; the pool is made (`/var/lib/libvirt/tlaunch`) and
    /// started when it is not there.
    func ensurePool() async throws -> String {
        if (try? await run(["pool-info", Self.pool], timeout: .seconds(30))) == nil {
            try await run(["pool-define-as", Self.pool, "dir", "--target", "/var/lib/libvirt/tlaunch"])
            try await run(["pool-build", Self.pool])
            _ = try? await run(["pool-autostart", Self.pool])
        }
        let info = try await run(["pool-info", Self.pool])
        if !info.contains("running") { try await run(["pool-start", Self.pool]) }
        let xml = try await run(["pool-dumpxml", Self.pool])
        guard let a = xml.range(of: "<path>"), let b = xml.range(of: "</path>", range: a.upperBound..<xml.endIndex) else {
            throw FleetError(.failed, "libvirt's pool \(Self.pool) on \(uri) has no target path")
        }
        return String(xml[a.upperBound..<b.lowerBound])
    }

    /// Copies `file` to volume `name` of the pool (replacing it); its path on the host.
    @discardableResult
    func upload(_ file: URL, as name: String) async throws -> String {
        let size = (try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int) ?? 0
        _ = try? await run(["vol-delete", "--pool", Self.pool, name])
        try await run(["vol-create-as", Self.pool, name, String(max(size, 1)), "--format", "raw"])
        try await run(["vol-upload", "--pool", Self.pool, name, file.path], timeout: .seconds(600))
        return try await volumePath(name)
    }

    func volumePath(_ name: String) async throws -> String {
        try await run(["vol-path", "--pool", Self.pool, name]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func volumeExists(_ name: String) async -> Bool { (try? await run(["vol-info", "--pool", Self.pool, name],
                                                                      timeout: .seconds(30))) != nil }

    /// Copies volume `name` to `file` (atomically); false when the host has no such volume.
    func download(_ name: String, to file: URL) async -> Bool {
        _ = try? await run(["pool-refresh", Self.pool], timeout: .seconds(30))
        let tmp = file.appendingPathExtension("part")
        guard (try? await run(["vol-download", "--pool", Self.pool, name, tmp.path], timeout: .seconds(60))) != nil else { return false }
        return rename(tmp.path, file.path) == 0
    }

    func deleteVolume(_ name: String) async { _ = try? await run(["vol-delete", "--pool", Self.pool, name]) }

    /// Removes the state libvirt keeps for a transient domain's emulator vTPM on the host (by the
    /// domain's UUID): a stub definition with that UUID, undefined with `--tpm`.
    func deleteEmulatorState(domain: String, uuid: String) async {
        let stub = """
            <domain type='qemu'><name>\(domain)</name><uuid>\(uuid)</uuid><memory unit='MiB'>64</memory>
            <os><type arch='x86_64' machine='q35'>hvm</type></os>
            <devices><tpm model='tpm-crb'><backend type='emulator' version='2.0' persistent_state='yes'/></tpm></devices></domain>
            """
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tlaunch-stub-\(uuid).xml")
        defer { try? FileManager.default.removeItem(at: file) }
        guard (try? stub.write(to: file, atomically: true, encoding: .utf8)) != nil, (try? await run(["define", file.path])) != nil else {
            return
        }
        _ = try? await run(["undefine", "--tpm", domain])
    }
}

/// A VM's files on a host that does not see the platform's: paths on the host, and the TCP port
/// its QEMU listens on for the agent relay.
struct ShippedFiles: Sendable {
    var disk: String
    var variables: String
    var console: String
    /// The console's volume name (read back into the platform's console file).
    var consoleVolume: String
    var agentPort: Int

    static func volumes(_ vm: String) -> (disk: String, variables: String, console: String) {
        ("tlaunch-\(vm).img", "tlaunch-\(vm).vars", "tlaunch-\(vm).console")
    }

    /// Copies the VM's disk (when it changed since the last copy) and, on its first boot on the
    /// host, its variable store (the host's copy is the VM's from then on, as a local one is).
    static func ship(_ vm: String, paths: QEMUPaths, to c: LibvirtConnection, progress: (String) -> Void) async throws -> ShippedFiles {
        let dir = try await c.ensurePool()
        let names = volumes(vm)
        let disk = paths.folder.url.appendingPathComponent("disk.img")
        let marker = paths.folder.url.appendingPathComponent("shipped-disk")
        let attrs = try FileManager.default.attributesOfItem(atPath: disk.path)
        let stamp = "\(c.uri) \((attrs[.size] as? Int) ?? 0) \(((attrs[.modificationDate] as? Date) ?? Date()).timeIntervalSince1970)"
        let diskPath: String
        if (try? String(contentsOf: marker, encoding: .utf8)) == stamp, await c.volumeExists(names.disk) {
            diskPath = try await c.volumePath(names.disk)
        } else {
            progress("\(vm): copying its disk to \(c.uri) (pool \(LibvirtConnection.pool))")
            diskPath = try await c.upload(disk, as: names.disk)
            try stamp.write(to: marker, atomically: true, encoding: .utf8)
        }
        let varsPath =
            await c.volumeExists(names.variables)
            ? try await c.volumePath(names.variables) : try await c.upload(paths.variables, as: names.variables)
        // QEMU (as libvirt's qemu user) writes the console into the pool's folder.
        return ShippedFiles(disk: diskPath, variables: varsPath, console: dir + "/" + names.console, consoleVolume: names.console,
                            agentPort: Int.random(in: 20000...32000))
    }
}

/// A running libvirt domain: its lifecycle events come from `virsh event --loop`.
final class LibvirtDomain: MachineRunner {
    let connection: LibvirtConnection
    let name: String
    let pid: Int32
    private let state = Mutex<(running: Bool, how: String?, waiters: [CheckedContinuation<String, Never>])>((true, nil, []))
    private let events = Mutex<Process?>(nil)

    init(connection: LibvirtConnection, name: String, shipped: ShippedFiles? = nil, console: URL? = nil) {
        self.connection = connection
        self.name = name
        let pidFile = "/run/libvirt/qemu/\(name).pid"
        pid =
            connection.isLocal
            ? (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
                ?? 0 : 0
        watch()
        if let shipped, let console { followConsole(shipped.consoleVolume, into: console) }
    }

    /// The console of a domain on a host that does not see the platform's files: read back every
    /// two seconds while it runs, and once more when it ended.
    private func followConsole(_ volume: String, into file: URL) {
        Task { [self] in
            while isRunning {
                _ = await connection.download(volume, to: file)
                try? await Task.sleep(for: .seconds(2))
            }
            _ = await connection.download(volume, to: file)
        }
    }

    var isRunning: Bool { state.withLock { $0.running } }

    /// Follows the domain's lifecycle events; a stop (shutdown, destroy, crash, failure) ends it.
    /// When the event stream breaks, the domain is looked up: gone or off ends it; running (libvirtd
    /// was restarted: domains outlive it) follows its events again; libvirt not answering (the
    /// daemon is down, the host unreachable) is not a stop — it is asked again until it answers.
    private func watch() {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: connection.virsh)
        p.arguments = ["-q", "-c", connection.uri, "event", "--domain", name, "--event", "lifecycle", "--loop"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        try? p.run()
        events.withLock { $0 = p }
        Thread.detachNewThread { [self] in
            var pending = ""
            let handle = out.fileHandleForReading
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending += String(decoding: chunk, as: UTF8.self)
                while let nl = pending.firstIndex(of: "\n") {
                    let line = String(pending[..<nl])
                    pending = String(pending[pending.index(after: nl)...])
                    // "event 'lifecycle' for domain 'NAME': Stopped Shutdown"
                    if let r = line.range(of: ": Stopped ") { finish("stopped (libvirt event: Stopped \(line[r.upperBound...]))") }
                    else if let r = line.range(of: ": Crashed ") { finish("crashed (libvirt event: Crashed \(line[r.upperBound...]))") }
                }
                if !isRunning { break }
            }
            // virsh's event loop ignores SIGTERM.
            if p.isRunning { Glibc.kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
            guard isRunning else { return }
            Task { [self] in
                while isRunning {
                    switch await connection.lookup(name) {
                    case .absent:
                        finish("stopped (libvirt: the domain is gone)")
                    case .state(let s) where s == "shut off" || s == "crashed":
                        finish("stopped (libvirt: \(s))")
                    case .state:
                        watch()   // running: libvirtd came back; follow its events again,
                        // and look once more for a stop between the lookup and the subscription.
                        try? await Task.sleep(for: .seconds(2))
                        let again = await connection.lookup(name)
                        if again == .absent || again == .state("shut off") {
                            finish("stopped (libvirt: \(again == .absent ? "the domain is gone" : "shut off"))")
                        }
                        return
                    case .unreachable:
                        try? await Task.sleep(for: .seconds(2))
                    }
                }
            }
        }
    }

    private func finish(_ how: String) {
        let waiters = state.withLock { s -> [CheckedContinuation<String, Never>] in
            guard s.running else { return [] }
            s.running = false
            s.how = how
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(returning: how) }
        if let p = events.withLock({ $0 }), p.isRunning { Glibc.kill(p.processIdentifier, SIGKILL) }
    }

    func ended() async -> String {
        await withCheckedContinuation { c in
            let done = state.withLock { s -> String? in
                if !s.running { return s.how ?? "stopped" }
                s.waiters.append(c)
                return nil
            }
            if let done { c.resume(returning: done) }
        }
    }

    func powerButton() async { _ = try? await connection.run(["shutdown", name, "--mode", "acpi"]) }

    func forceOff() async {
        guard isRunning else { return }
        _ = try? await connection.run(["destroy", name])
        let deadline = ContinuousClock.now + .seconds(30)
        while isRunning, ContinuousClock.now < deadline {
            if await connection.state(name) ?? "shut off" == "shut off" { finish("destroyed by the platform") }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    func log() -> String {
        guard connection.isLocal else { return "" }
        return String((try? String(contentsOfFile: "/var/log/libvirt/qemu/\(name).log", encoding: .utf8))?.suffix(2000) ?? "")
    }
}

/// The libvirt domain of a VM: q35, OVMF (Secure Boot code with SMM when the VM has Secure
/// Boot) with the VM's own variable store, its boot disk read-only, the console to a file, the
/// agent's virtio-serial port, and a TPM 2.0 CRB device on the chosen backend.
struct LibvirtDomainXML {
    let plan: QEMULauncher.Plan
    let paths: QEMUPaths
    let installation: QEMUInstallation
    let tpm: LibvirtTPMBackend
    /// Where the files are on a host that does not see the platform's (nil: the platform's paths).
    var shipped: ShippedFiles? = nil

    /// The address the host's QEMU binds the agent's port to.
    var connectionAddress = "127.0.0.1"

    static func domainName(_ vm: String) -> String { "tlaunch-\(vm)" }

    /// Where libvirt keeps an emulator vTPM's state on this host (`swtpm_setup --tpm-state`).
    static func emulatorState(_ paths: QEMUPaths) -> URL { URL(fileURLWithPath: "/var/lib/libvirt/swtpm/\(uuid(paths))") }

    /// A UUID fixed for the VM's life (libvirt keys an emulator vTPM's state by it).
    var uuid: String { Self.uuid(paths) }

    static func uuid(_ paths: QEMUPaths) -> String {
        let d = Array(SHA256.hash(data: Data(paths.folder.url.standardizedFileURL.path.utf8)))
        var b = Array(d.prefix(16))
        b[6] = (b[6] & 0x0F) | 0x50   // version 5 layout (name-based)
        b[8] = (b[8] & 0x3F) | 0x80
        let h = hexString(b)
        let c = Array(h)
        return "\(String(c[0..<8]))-\(String(c[8..<12]))-\(String(c[12..<16]))-\(String(c[16..<20]))-\(String(c[20..<32]))"
    }

    var document: String {
        let secure = plan.secureBoot
        let uid = getuid(), gid = getgid()
        // The agent's port: a socket in the platform's run folder, or a TCP port on the host
        // (bound to the address the platform reaches it at) when the host is elsewhere.
        let channel = shipped.map { s in
            """
                <channel type='tcp'>
                  <source mode='bind' host='\(x(connectionAddress))' service='\(s.agentPort)'/>
                  <protocol type='raw'/>
                  <target type='virtio' name='org.tlaunch.agent.0'/>
                </channel>
            """
        } ?? """
                <channel type='unix'>
                  <source mode='bind' path='\(x(paths.agent))'/>
                  <target type='virtio' name='org.tlaunch.agent.0'/>
                </channel>
            """
        var devices = """
            <disk type='file' device='disk'>
              <driver name='qemu' type='raw'/>
              <source file='\(x(shipped?.disk ?? paths.folder.url.appendingPathComponent("disk.img").path))'/>
              <target dev='vda' bus='virtio'/>
              <readonly/>
            </disk>
            <serial type='file'>
              <source path='\(x(shipped?.console ?? paths.console.path))'/>
              <target port='0'/>
            </serial>
        \(channel)
            <memballoon model='none'/>

        """
        if plan.vTPM {
            switch tpm {
            case .external:
                devices += """
                    <tpm model='tpm-crb'>
                      <backend type='external'>
                        <source type='unix' mode='connect' path='\(x(paths.tpmControl))'/>
                      </backend>
                    </tpm>

                """
            case .emulator:
                devices += """
                    <tpm model='tpm-crb'>
                      <backend type='emulator' version='2.0' persistent_state='yes'/>
                    </tpm>

                """
            }
        }
        // The platform's files are its user's: QEMU runs as that user, nothing relabelled. Shipped
        // files are the host's: libvirt's own labelling (its qemu user) applies.
        let seclabel = shipped != nil ? "" : """
              <seclabel type='static' model='dac' relabel='no'>
                <label>+\(uid):+\(gid)</label>
              </seclabel>
            """
        return """
        <domain type='\(installation.accelerator == "kvm" ? "kvm" : "qemu")'>
          <name>\(x(Self.domainName(plan.name)))</name>
          <uuid>\(uuid)</uuid>
          <title>TrustedLaunch VM \(x(plan.name))</title>
          <memory unit='MiB'>\(plan.memoryMiB)</memory>
          <vcpu>1</vcpu>
          <os>
            <type arch='x86_64' machine='q35'>hvm</type>
            <loader readonly='yes' secure='\(secure ? "yes" : "no")' \
        type='pflash'>\(x(secure ? installation.secureCode : installation.code))</loader>
            <nvram>\(x(shipped?.variables ?? paths.variables.path))</nvram>
          </os>
          <features>
            <acpi/>
            <smm state='\(secure ? "on" : "off")'/>
          </features>
          <on_poweroff>destroy</on_poweroff>
          <on_reboot>restart</on_reboot>
          <on_crash>destroy</on_crash>
        \(seclabel)
          <devices>
        \(devices)  </devices>
        </domain>

        """
    }

    /// XML-escaped text or attribute value.
    func x(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "'": out += "&apos;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }
}
