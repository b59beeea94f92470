import AttestationAPI
import Crypto
import Foundation
import MeasuredBoot
import GuestAgent
import Logging
import Synchronization
import TPM2
import VirtualTPM
#if canImport(Glibc)
import Glibc
#endif

/// QEMU and Debian's OVMF as this host has them, and the accelerator that really works here.
public struct QEMUInstallation: Sendable, Hashable {
    public var qemu: String
    /// OVMF built with SMM and Secure Boot (the code Trusted Launch VMs with Secure Boot run).
    public var secureCode: String
    /// OVMF without SMM (Secure Boot off, or Standard VMs).
    public var code: String
    /// OVMF's blank variable store (no keys: Secure Boot off).
    public var blankVariables: String
    /// "kvm" when an SMM machine starts under KVM here, else "tcg".
    public var accelerator: String
    /// What builds the VMs' GPT boot disks.
    var diskTools: BootDisk.Tools

    /// Finds QEMU, OVMF and the disk tools (sfdisk, mkfs.fat, mcopy), and test-starts an SMM machine under KVM: an existing /dev/kvm proves
    /// nothing (nested KVM may refuse SMM, which OVMF's Secure Boot needs).
    public static func detect() async -> QEMUInstallation? {
        let fm = FileManager.default
        let qemu = ["/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"].first { fm.isExecutableFile(atPath: $0) }
        let secure = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", code = "/usr/share/OVMF/OVMF_CODE_4M.fd",
            blank = "/usr/share/OVMF/OVMF_VARS_4M.fd"
        guard let qemu, [secure, code, blank].allSatisfy({ fm.fileExists(atPath: $0) }), let tools = BootDisk.Tools.find() else {
            return nil
        }
        var accel = "tcg"
        if fm.isReadableFile(atPath: "/dev/kvm"), await probeKVM(qemu) { accel = "kvm" }
        return QEMUInstallation(qemu: qemu, secureCode: secure, code: code, blankVariables: blank, accelerator: accel, diskTools: tools)
    }

    /// Starts a paused q35 machine with SMM under KVM: one that is still running after two
    /// seconds works; QEMU exits at once with "System Management Mode not supported" otherwise.
    static func probeKVM(_ qemu: String) async -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: qemu)
        p.arguments = ["-machine", "q35,smm=on", "-accel", "kvm", "-nodefaults", "-display", "none", "-S", "-monitor", "none", "-serial",
                       "none"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return false }
        for _ in 0..<20 {
            try? await Task.sleep(for: .milliseconds(100))
            if !p.isRunning { return false }
        }
        kill(p.processIdentifier, SIGKILL)
        await ProcessWait.exit(p)
        return true
    }
}

/// Waiting for a child process without blocking the cooperative pool.
enum ProcessWait {
    static func exit(_ p: Process) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread { p.waitUntilExit(); c.resume() }
        }
    }
}

/// A VM's runtime files: sockets live under a short per-VM folder in /tmp (a UNIX socket path
/// has at most 107 bytes), everything else in the VM's folder.
public struct QEMUPaths: Sendable {
    public let folder: VMFolder
    public let run: URL
    init(folder: VMFolder) {
        self.folder = folder
        let digest = hexString(Array(SHA256.hash(data: Data(folder.url.standardizedFileURL.path.utf8))).prefix(6))
        run = URL(fileURLWithPath: "/tmp/tlaunch-vm-\(digest)")
    }
    public var variables: URL { folder.url.appendingPathComponent("OVMF_VARS.fd") }
    /// Where earlier versions exported the ESP as a folder (removed when found).
    var legacyESPFolder: URL { folder.url.appendingPathComponent("esp") }
    public var console: URL { folder.url.appendingPathComponent("console.log") }
    /// A Generation 1 VM's disk: its MBR boot sector on a 1 MiB raw disk.
    var biosDisk: URL { folder.url.appendingPathComponent("bios-disk.img") }
    var seabiosConsolePort: URL { folder.url.appendingPathComponent("seabios-console-port") }
    public var previousConsole: URL { folder.url.appendingPathComponent("console.1.log") }
    public var guestStatus: URL { folder.url.appendingPathComponent("guest-status.json") }
    public var pidFile: URL { folder.url.appendingPathComponent("qemu.pid") }
    public var qmp: String { run.appendingPathComponent("qmp.sock").path }
    public var agent: String { run.appendingPathComponent("agent.sock").path }
    public var tpmControl: String { run.appendingPathComponent("tpm-ctrl.sock").path }
    public var tpmData: String { run.appendingPathComponent("tpm-data.sock").path }
}

/// A UNIX stream socket client, blocking, for QMP and the agent relay.
final class UnixStream: Sendable {
    let fd: Int32
    init(path: String, timeout: Duration) throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw FleetError(.failed, "socket(): \(String(cString: strerror(errno)))") }
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
                close(fd); throw FleetError(.failed, "socket path too long: \(path)")
            }
            withUnsafeMutableBytes(of: &addr.sun_path) { p in p.copyBytes(from: bytes); p[bytes.count] = 0 }
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if rc == 0 { self.fd = fd; return }
            close(fd)
            if ContinuousClock.now >= deadline {
                throw FleetError(.failed, "cannot connect to \(path): \(String(cString: strerror(errno)))")
            }
            usleep(50_000)
        }
    }
    /// A TCP connection to `host:port` (a VM's agent port on a libvirt host elsewhere).
    init(host: String, port: Int, timeout: Duration) throws {
        let deadline = ContinuousClock.now + timeout
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        while true {
            var list: UnsafeMutablePointer<addrinfo>?
            if getaddrinfo(host, String(port), &hints, &list) == 0, let first = list {
                defer { freeaddrinfo(list) }
                var entry: UnsafeMutablePointer<addrinfo>? = first
                while let a = entry {
                    let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
                    if fd >= 0 {
                        if connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { self.fd = fd; return }
                        close(fd)
                    }
                    entry = a.pointee.ai_next
                }
            }
            if ContinuousClock.now >= deadline { throw FleetError(.failed, "cannot connect to \(host):\(port): "
                                                                         + "\(String(cString: strerror(errno)))") }
            usleep(100_000)
        }
    }

    deinit { close(fd) }

    func write(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 { if errno == EINTR { continue }; throw FleetError(.failed, "write: \(String(cString: strerror(errno)))") }
            sent += n
        }
    }

    /// Up to 64 KiB, or nil at end of stream; waits at most `timeout`.
    func read(timeout: Duration) throws -> [UInt8]? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        let r = poll(&p, 1, max(1, ms))
        if r == 0 { return [] }
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { return nil }
        return Array(buf[0..<n])
    }
}

/// QMP, QEMU's JSON control protocol: one connection per command (QEMU allows one client).
enum QMP {
    static func execute(_ path: String, _ command: String, timeout: Duration = .seconds(10)) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            Thread.detachNewThread {
                c.resume(with: Result {
                    let s = try UnixStream(path: path, timeout: timeout)
                    var text = ""
                    func expect(_ key: String) throws {
                        let deadline = ContinuousClock.now + timeout
                        while !text.contains(key) {
                            guard ContinuousClock.now < deadline, let chunk = try s.read(timeout: .milliseconds(200)) else {
                                throw FleetError(.failed, "QMP \(command): no \(key) from QEMU")
                            }
                            text += String(decoding: chunk, as: UTF8.self)
                        }
                    }
                    try expect("\"QMP\"")
                    text = ""
                    try s.write(Array("{\"execute\":\"qmp_capabilities\"}\n".utf8))
                    try expect("\"return\"")
                    text = ""
                    try s.write(Array("{\"execute\":\"\(command)\"}\n".utf8))
                    try expect("\"return\"")
                })
            }
        }
    }
}

/// The host's end of a VM's agent channel: it reads the guest agent's requests from the VM's
/// virtio-serial port and forwards them to the attestation service with the VM's own agent
/// token — the guest holds no credential, and can reach nothing but its own VM's API.
/// What the relay tells the guest's agent about itself: its VM, and how often to attest.
struct RelayIdentity: Codable, Sendable {
    var vm: String
    var interval: Int
}

final class AgentRelay: Sendable {
    let vm: String
    /// Seconds between the agent's attestations (the VM's setting when it booted).
    let interval: Int
    let paths: QEMUPaths
    /// QEMU's end of the agent's port: the socket in the VM's run folder, or a TCP port on the host.
    let endpoint: Endpoint
    let forward: @Sendable (RelayFrame.Request) async -> RelayFrame.Response
    let stopped = Mutex(false)
    /// Requests seen (the first one says the guest's agent runs) and attestations answered.
    let counters = Mutex((requests: 0, attestations: 0))

    enum Endpoint: Sendable {
        case unix(String)
        case tcp(host: String, port: Int)
    }

    init(vm: String, interval: Int, paths: QEMUPaths, endpoint: Endpoint? = nil,
         forward: @escaping @Sendable (RelayFrame.Request) async -> RelayFrame.Response) {
        self.vm = vm; self.interval = interval; self.paths = paths; self.forward = forward
        self.endpoint = endpoint ?? .unix(paths.agent)
    }

    func connect() -> UnixStream? {
        switch endpoint {
        case .unix(let path): try? UnixStream(path: path, timeout: .seconds(2))
        case .tcp(let host, let port): try? UnixStream(host: host, port: port, timeout: .seconds(2))
        }
    }

    func start() {
        Thread.detachNewThread { [self] in self.loop() }
    }

    func stop() { stopped.withLock { $0 = true } }

    func loop() {
        while !stopped.withLock({ $0 }) {
            guard let stream = connect() else { usleep(200_000); continue }
            var reader = RelayFrame.Reader()
            while !stopped.withLock({ $0 }) {
                guard let chunk = try? stream.read(timeout: .milliseconds(500)) else { break }   // QEMU went away
                for frame in reader.feed(chunk) {
                    guard let request = try? JSONDecoder().decode(RelayFrame.Request.self, from: Data(frame)) else { continue }
                    counters.withLock { $0.requests += 1 }
                    let vm = self.vm, paths = self.paths, forward = self.forward
                    Task { [self] in
                        let answer: RelayFrame.Response
                        if request.path == "/relay/identity" {
                            answer = RelayFrame.Response(
                                id: request.id, status: 200,
                                body: (try? JSONEncoder().encode(RelayIdentity(vm: vm, interval: interval))) ?? Data())
                        } else if request.path == "/relay/status", request.method == "POST", let body = request.body, body.count < 1 << 20,
                                  (try? JSONDecoder().decode(GuestStatus.self, from: body)) != nil {
                            try? body.write(to: paths.guestStatus, options: .atomic)
                            answer = RelayFrame.Response(id: request.id, status: 204, body: Data())
                        } else if RelayRules.allowed(request, vm: vm) {
                            answer = await forward(request)
                            if request.method == "POST", request.path.hasSuffix("/attestations") {
                                self.counters.withLock { $0.attestations += 1 }
                            }
                        } else {
                            answer = RelayFrame.Response(
                                id: request.id, status: 403,
                                body: Data(("{\"error\":{\"message\":\"the relay forwards only this VM's enrolment, nonce and "
                                             + "attestation requests\"}}").utf8))
                        }
                        try? stream.write(try RelayFrame.encode(answer))
                    }
                }
            }
        }
    }
}

/// A guest's console as text that is safe to show anywhere (an alert, `vm show`, a terminal):
/// ANSI escape sequences removed, other control characters dropped; newlines and tabs kept.
public enum ConsoleText {
    public static func printable(_ s: String) -> String {
        var out = String.UnicodeScalarView()
        var it = s.unicodeScalars.makeIterator()
        while let c = it.next() {
            switch c.value {
            case 0x1B:
                guard let n = it.next() else { break }
                if n == "[" {   // CSI: parameters and intermediates, then one final byte 0x40–0x7E
                    while let k = it.next(), !(0x40...0x7E).contains(k.value) {}
                } else if n == "]" {   // OSC: up to BEL or ESC \
                    while let k = it.next(), k.value != 0x07, k.value != 0x1B {}
                }
            case 0x0A, 0x09: out.append(c)
            case 0x00..<0x20, 0x7F, 0x80...0x9F: continue
            default: out.append(c)
            }
        }
        return String(out)
    }
}

/// How a VM's QEMU runs: as a child process of the platform, or as a libvirt domain.
protocol MachineRunner: Sendable {
    /// QEMU's process id (0 when the host does not say, e.g. a remote libvirt).
    var pid: Int32 { get }
    var isRunning: Bool { get }
    /// The ACPI power button.
    func powerButton() async
    /// Power off now; returns once QEMU is gone.
    func forceOff() async
    /// Returns once QEMU has ended, saying how.
    func ended() async -> String
    /// What QEMU itself said (its stderr or libvirt's log of it), for failures.
    func log() -> String
}

/// QEMU as a child process of the platform, controlled over QMP.
final class ChildQEMU: MachineRunner {
    let process: Process
    let qmp: String
    let logFile: URL
    init(process: Process, qmp: String, logFile: URL) { self.process = process; self.qmp = qmp; self.logFile = logFile }
    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    func powerButton() async { try? await QMP.execute(qmp, "system_powerdown") }
    func forceOff() async {
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        await ProcessWait.exit(process)
    }
    func ended() async -> String {
        await ProcessWait.exit(process)
        return process.terminationReason == .uncaughtSignal
            ? "killed by signal \(process.terminationStatus)" : "exited with status \(process.terminationStatus)"
    }
    func log() -> String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }
}

/// One running QEMU of a VM, with its vTPM server and agent relay.
final class QEMUMachine: Sendable {
    let name: String
    let runner: any MachineRunner
    let tpmServer: VTPMServer?
    let relay: AgentRelay?
    let paths: QEMUPaths
    let accelerator: String
    /// Set before the platform stops or kills it: an exit then is not a crash.
    let expectedExit = Mutex(false)

    init(name: String, runner: any MachineRunner, tpmServer: VTPMServer?, relay: AgentRelay?, paths: QEMUPaths, accelerator: String) {
        self.name = name; self.runner = runner; self.tpmServer = tpmServer; self.relay = relay; self.paths = paths;
        self.accelerator = accelerator
    }

    var isRunning: Bool { runner.isRunning }

    /// The console as printable text (what alerts and boot summaries quote).
    func console() -> String {
        ConsoleText.printable(String(decoding: (try? Data(contentsOf: paths.console)) ?? Data(), as: UTF8.self))
    }

    /// ACPI power button, then (after `timeout`) power off; the vTPM server and relay end with it.
    func shutdown(timeout: Duration) async {
        expectedExit.withLock { $0 = true }
        if runner.isRunning {
            await runner.powerButton()
            let deadline = ContinuousClock.now + timeout
            while runner.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(200)) }
        }
        await kill()
    }

    func kill() async {
        expectedExit.withLock { $0 = true }
        await runner.forceOff()
        relay?.stop()
        tpmServer?.terminate()
        try? FileManager.default.removeItem(at: paths.pidFile)
    }
}

/// Launches QEMU for a VM: OVMF (with SMM and Secure Boot for Trusted Launch with Secure Boot),
/// the VM's own variable store, its ESP, its vTPM served over the swtpm protocol (QEMU's
/// `emulator` backend: power-on and reset arrive as control commands, so every boot is a TPM
/// reset and a new measured boot), a virtio-serial port to the agent relay, QMP, the console.
struct QEMULauncher: Sendable {
    let installation: QEMUInstallation

    struct Plan: Sendable {
        var name: String
        /// A Generation 1 VM: SeaBIOS (QEMU's default firmware) with its console on COM1, the MBR disk.
        var bios = false
        var secureBoot: Bool
        var vTPM: Bool
        var memoryMiB = 1024
        var interval: Int
    }

    func arguments(_ plan: Plan, paths: QEMUPaths) -> [String] {
        let secure = plan.secureBoot
        var a = ["-name", "tlaunch-\(plan.name)", "-nodefaults", "-machine", "q35,smm=\(secure ? "on" : "off")", "-accel",
                 installation.accelerator,
                 "-m", "\(plan.memoryMiB)", "-smp", "1", "-display", "none", "-net", "none", "-no-user-config",
                 "-serial", "file:\(paths.console.path)", "-monitor", "none",
                 "-qmp", "unix:\(paths.qmp),server=on,wait=off",
                 "-pidfile", paths.pidFile.path]
        if plan.bios {
            // SeaBIOS writes to the serial console when told its port (2 bytes, little endian).
            a += ["-fw_cfg", "name=etc/sercon-port,file=\(paths.seabiosConsolePort.path)",
                  "-drive", "file=\(paths.biosDisk.path),format=raw,if=virtio,readonly=on"]
            return a
        }
        if secure { a += ["-global", "driver=cfi.pflash01,property=secure,value=on"] }
        a += ["-drive", "if=pflash,format=raw,unit=0,readonly=on,file=\(secure ? installation.secureCode : installation.code)",
              "-drive", "if=pflash,format=raw,unit=1,file=\(paths.variables.path)",
              "-drive", "file=\(paths.folder.url.appendingPathComponent("disk.img").path),format=raw,if=virtio,readonly=on",
              "-chardev", "socket,id=agent,path=\(paths.agent),server=on,wait=off",
              "-device", "virtio-serial-pci", "-device", "virtserialport,chardev=agent,name=org.tlaunch.agent.0"]
        if plan.vTPM {
            a += ["-chardev", "socket,id=chrtpm,path=\(paths.tpmControl)", "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device",
                  "tpm-crb,tpmdev=tpm0"]
        }
        return a
    }

    /// Where the VM's QEMU runs.
    enum Engine: Sendable {
        /// A child process of the platform.
        case direct
        /// A transient libvirt domain; its vTPM is the platform's (`external`: QEMU connects to
        /// the platform's vTPM socket) or the swtpm libvirt starts (`emulator`: with
        /// `tlaunch vtpm install-swtpm`, ours, its EK certified by the platform's vTPM CA).
        case libvirt(LibvirtConnection, tpm: LibvirtTPMBackend)
    }

    func launch(_ plan: Plan, paths: QEMUPaths, tpm: VirtualTPM?, engine: Engine = .direct, progress: (String) -> Void = { _ in },
                forward: @escaping @Sendable (RelayFrame.Request) async -> RelayFrame.Response) async throws -> QEMUMachine {
        let fm = FileManager.default
        try fm.createDirectory(at: paths.run, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        for s in [paths.qmp, paths.agent, paths.tpmControl, paths.tpmData] { try? fm.removeItem(atPath: s) }
        // The console of the previous boot is kept once.
        if fm.fileExists(atPath: paths.console.path) {
            try? fm.removeItem(at: paths.previousConsole)
            try? fm.moveItem(at: paths.console, to: paths.previousConsole)
        }
        _ = fm.createFile(atPath: paths.console.path, contents: nil, attributes: [.posixPermissions: 0o600])
        var server: VTPMServer?
        let platformServesTPM: Bool
        if case .libvirt(_, .emulator) = engine { platformServesTPM = false } else { platformServesTPM = true }
        if plan.vTPM, platformServesTPM, let tpm {
            do {
                // QEMU passes the data channel over the control channel (CMD_SET_DATAFD).
                let s = try VTPMServer(tpm: tpm, options: VTPMServer.Options(data: nil, control: .unix(path: paths.tpmControl)))
                s.start()
                server = s
            } catch { throw FleetError(.failed, "the vTPM of \(plan.name) cannot listen for QEMU: \(error)") }
        }
        let runner: any MachineRunner
        var endpoint: AgentRelay.Endpoint?
        do {
            switch engine {
            case .direct:
                runner = try startChild(plan, paths: paths)
            case .libvirt(let connection, let backend) where connection.ship:
                // A host that does not see the platform's files: they are copied there; the agent's
                // port is TCP on the host (another port when the one drawn is taken there).
                var files = try await ShippedFiles.ship(plan.name, paths: paths, to: connection, progress: progress)
                var attempt = 0
                while true {
                    var xml = LibvirtDomainXML(plan: plan, paths: paths, installation: installation, tpm: backend, shipped: files)
                    xml.connectionAddress = connection.address
                    do {
                        runner = try await connection.create(domain: LibvirtDomainXML.domainName(plan.name), xml: xml.document,
                                                             paths: paths, shipped: files)
                        endpoint = .tcp(host: connection.address, port: files.agentPort)
                        break
                    } catch let e as FleetError where e.message.contains("Address already in use") && attempt < 5 {
                        attempt += 1
                        files.agentPort = Int.random(in: 20000...32000)
                    }
                }
            case .libvirt(let connection, let backend):
                let xml = LibvirtDomainXML(plan: plan, paths: paths, installation: installation, tpm: backend).document
                runner = try await connection.create(domain: LibvirtDomainXML.domainName(plan.name), xml: xml, paths: paths)
            }
        } catch {
            server?.terminate()
            throw error
        }
        // A BIOS guest has no agent port: nothing to relay.
        let relay = plan.bios ? nil : AgentRelay(vm: plan.name, interval: plan.interval, paths: paths, endpoint: endpoint, forward: forward)
        relay?.start()
        return QEMUMachine(name: plan.name, runner: runner, tpmServer: server, relay: relay, paths: paths,
                           accelerator: installation.accelerator)
    }

    func startChild(_ plan: Plan, paths: QEMUPaths) throws -> ChildQEMU {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: installation.qemu)
        p.arguments = arguments(plan, paths: paths)
        let err = Pipe()
        p.standardOutput = FileHandle.nullDevice
        p.standardError = err
        do { try p.run() } catch { throw FleetError(.failed, "cannot run \(installation.qemu): \(error)") }
        // QEMU's own complaints go to the console file's neighbour, for `vm console`.
        let errFile = paths.folder.url.appendingPathComponent("qemu.log")
        Thread.detachNewThread {
            let data = err.fileHandleForReading.readDataToEndOfFile()
            try? data.write(to: errFile)
        }
        return ChildQEMU(process: p, qmp: paths.qmp, logFile: errFile)
    }
}
