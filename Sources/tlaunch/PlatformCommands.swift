import ArgumentParser
@preconcurrency import Dispatch
import Attestation
import AttestationAPI
import Fleet
import Foundation
import MeasuredBoot
import GuestAgent
import Logging
import Server
import ServiceLifecycle
import UnixSignals
import ServiceTLS
import VirtualTPM
import VirtualFirmware
import Storage

/// Everything in one process: SQLite in the data folder, the attestation service, the fleet on
/// the simulated hypervisor with its vTPMs, the API and the dashboard on one port, the monitor.
struct EmbeddedPlatform {
    let folder: DataFolder
    let service: AttestationService
    let fleet: Fleet
    /// The API, the dashboard and the fleet's monitor: one service group.
    let server: RunningServer
    let admin: String
    /// This process's hold on the data folder (released when it ends).
    let lock: PlatformLock

    static func start(folder: DataFolder, host: String, port: Int, webhooks: [String], logLevel: Logger.Level, realVMs: Bool = true,
                      keepEvidence: Bool = true,
                      libvirt: (LibvirtConnection, LibvirtTPMBackend)? = nil, signals: [UnixSignal] = [],
                      tls: ServeTLSOptions, say: @escaping @Sendable (String) -> Void) async throws -> EmbeddedPlatform {
        try folder.create()
        let lock: PlatformLock
        do { lock = try PlatformLock(folder) } catch let e as FleetError { throw CLIError(e.message) }
        let (serverTLS, clientTLS) = try tls.resolve(folder: folder, host: host, warn: say)
        let storage = try DataOptions.parse(["--data", folder.root.path])
        let issuer = "\(serverTLS == nil ? "http" : "https")://\(host):\(port)"
        let service = try await Serve.makeService(storage: storage, trustEKCA: [], issuer: issuer, keepEvidence: keepEvidence)
        guard let sql = service.store as? SQLStore else { throw CLIError("the embedded platform needs a SQL store") }
        var urls: [URL] = []
        for w in webhooks {
            guard let u = URL(string: w), u.scheme == "http" || u.scheme == "https", u.host != nil else {
                throw ValidationError("--webhook \(w) is not an http(s) URL")
            }
            urls.append(u)
        }
        var logger = Logger(label: "tlaunch.platform")
        logger.logLevel = logLevel
        let fleet = Fleet(store: try await FleetStore(backend: sql.backend), service: service, dataFolder: folder,
                          hostKey: try HostKey.loadOrCreate(folder: folder),
                          authority: try VTPMCertificateAuthority.loadOrCreate(directory: folder.vtpmCA),
            webhooks: WebhookNotifier(urls: urls, key: try HostKey.webhookKey(folder: folder), logger: logger), logger: logger,
                          qemu: realVMs ? await QEMUInstallation.detect() : nil, libvirt: libvirt, progress: { say($0) })
        let admin = try await Serve.adminToken(folder: folder, service: service)
        var httpLog = Logger(label: "tlaunch.http")
        httpLog.logLevel = logLevel
        let server: RunningServer
        do {
            server = try await RunningServer.start(service: service, host: host, port: port, logger: httpLog, fleet: fleet, tls: serverTLS,
                                                   alongside: [StorageService(sql.backend), FleetMonitorService(fleet)], signals: signals)
        } catch {
            await sql.backend.close()
            if let e = error as? TLSSetupError { throw CLIError(e.message) }
            let why = (error as? AttestationServiceError)?.message ?? "\(error)"
            throw CLIError("\(why) — is another tlaunch (or another server) using the port? Use --listen HOST:PORT")
        }
        // The relay reaches the service as this host's CLI does.
        fleet.attach(serviceURL: recordLocalURL(folder, scheme: serverTLS == nil ? "http" : "https", host: host, port: server.port),
                     tls: clientTLS)
        // The platform's own libvirt connection is a host like the others (tlaunch host list).
        if let (connection, backend) = libvirt { await fleet.registerPlatformHost(uri: connection.uri, tpm: backend) }
        return EmbeddedPlatform(folder: folder, service: service, fleet: fleet, server: server, admin: admin, lock: lock)
    }

    /// Shuts the group down (when a signal has not already) and waits for it: the server first
    /// (requests under way answered), then the fleet (its real VMs powered off, deliveries under
    /// way written down), then the database.
    func stop() async {
        await server.stop()
    }
}


func parseListen(_ listen: String) throws -> (String, Int) {
    let parts = listen.split(separator: ":")
    guard parts.count == 2, let port = Int(parts[1]), (0...65535).contains(port) else {
        throw ValidationError("--listen must be HOST:PORT, e.g. 127.0.0.1:8080")
    }
    return (String(parts[0]), port)
}

/// The URL this host's clients reach a server listening on `host:port` by (a wildcard address:
/// loopback), written to the data folder as the CLI's default server (TLAUNCH_SERVER and
/// --server still win).
func recordLocalURL(_ folder: DataFolder, scheme: String, host: String, port: Int) -> String {
    let local = host == "0.0.0.0" ? "127.0.0.1" : host == "::" ? "[::1]" : host.contains(":") ? "[\(host)]" : host
    let url = "\(scheme)://\(local):\(port)"
    try? Data((url + "\n").utf8).write(to: folder.serverURL, options: .atomic)
    return url
}

func say(_ s: String) { emit("==> \(s)") }
func detail(_ s: String) { emit("    \(s)") }
/// Unbuffered output, so progress from other tasks stays in order with the story.
func emit(_ s: String, terminator: String = "\n") { FileHandle.standardOutput.write(Data((s + terminator).utf8)) }
func emitJSON(_ v: some Encodable) throws { emit(try prettyJSON(v)) }

/// `tlaunch webhook secret URL`: the secret a webhook receiver verifies deliveries with.
struct WebhookCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "webhook",
                                                    abstract: "Webhook receivers: the secret each one verifies its deliveries with.",
                                                    subcommands: [Secret.self])

    struct Secret: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "secret",
            abstract: "Print the signing secret (hex) of the webhook at URL.",
            discussion: """
            Every delivery carries X-TLaunch-Signature: t=UNIX-SECONDS,v1=HEX, where HEX is
            HMAC-SHA256 under this secret of "t.BODY" (the timestamp, a dot, the exact body bytes).
            Recompute it, compare in constant time, and refuse a timestamp more than 5 minutes
            from now. X-TLaunch-Delivery-Attempt numbers the attempts of one delivery.
            """)
        @Argument(help: "The webhook's URL, exactly as given to tlaunch up --webhook.") var url: String
        @Option(help: "The platform data folder. Default: $TLAUNCH_DATA, else ~/.tlaunch.") var data: String?
        func run() async throws {
            guard let u = URL(string: url), u.scheme == "http" || u.scheme == "https", u.host != nil else {
                throw ValidationError("\(url) is not an http(s) URL")
            }
            let notifier = WebhookNotifier(urls: [u], key: try HostKey.webhookKey(folder: DataFolder.resolve(data)))
            print(hexString(notifier.secret(for: u)))
        }
    }
}

struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Start everything embedded (SQLite, real QEMU VMs or the simulated hypervisor, vTPMs, attestation service, dashboard) "
                + "and deploy the sample fleet on first start.")
    @Option(help: "HOST:PORT for the API and the dashboard.") var listen = "127.0.0.1:8080"
    @Option(help: "The platform data folder. Default: $TLAUNCH_DATA, else ~/.tlaunch.") var data: String?
    @Option(help: "POST alerts to this URL (JSON; retried with backoff); repeatable.") var webhook: [String] = []
    @Flag(help: "Do not deploy the sample fleet on first start.") var noSampleFleet = false
    @Flag(help: "Keep only each attestation's evidence digest in history, not the evidence (a large fleet: ~20 KiB of log each).")
    var noKeepEvidence = false
    @Option(help: "Seconds between periodic attestations of the sample fleet.") var attestationInterval: Int = 300
    @Option(help: "Log level: trace, debug, info, notice, warning, error.") var logLevel: String = "notice"
    @Option(help: """
        The sample fleet's hypervisor: auto (real QEMU VMs where QEMU, OVMF and the guest kit are usable), qemu, libvirt (QEMU as libvirt \
        domains), or simulated.
        """) var hypervisor = "auto"
    @Option(help: "The libvirt connection for --hypervisor libvirt (and VMs created with --hypervisor libvirt).") var libvirtURI: String?
    @Option(help: """
        The vTPM of libvirt domains: external (the platform's vTPM, QEMU connects to it) or emulator (libvirt runs swtpm: install ours \
        with tlaunch vtpm install-swtpm).
        """) var libvirtTPM = "external"
    @OptionGroup(title: "TLS") var tls: ServeTLSOptions

    func run() async throws {
        let (host, port) = try parseListen(listen)
        guard ["auto", "qemu", "libvirt",
               "simulated"].contains(hypervisor) else { throw ValidationError("--hypervisor is auto, qemu, libvirt or simulated") }
        guard let backend = LibvirtTPMBackend(rawValue: libvirtTPM) else { throw ValidationError("--libvirt-tpm is external or emulator") }
        var libvirt: (LibvirtConnection, LibvirtTPMBackend)?
        if hypervisor == "libvirt" || libvirtURI != nil {
            let uri = libvirtURI ?? "qemu:///system"
            guard let (connection, versions) = await LibvirtConnection.probe(uri: uri) else {
                throw CLIError("libvirt at \(uri) does not answer (virsh -c \(uri) version fails): install libvirt-daemon-system and "
                             + "libvirt-clients, start libvirtd (and virtlogd), or give --libvirt-uri")
            }
            detail("libvirt \(uri): \(versions); vTPM backend \(backend.rawValue)")
            libvirt = (connection, backend)
        }
        let folder = DataFolder.resolve(data)
        say("Starting TrustedLaunch (data folder \(folder.root.path))")
        let p = try await EmbeddedPlatform.start(folder: folder, host: host, port: port, webhooks: webhook,
            logLevel: Logger.Level(rawValue: logLevel) ?? .notice, keepEvidence: !noKeepEvidence, libvirt: libvirt,
                                                 signals: [.sigterm, .sigint], tls: tls, say: { detail($0) })
        detail("attestation service, API and dashboard on \(p.server.url) (storage: \(p.service.storageKind))")
        if p.server.url.hasPrefix("https:") {
            detail("TLS: certificate from the platform CA \(folder.tls.appendingPathComponent("ca.pem").path) — the CLI pins it; import "
                 + "it in your browser" + (tls.mtls ? "; mutual TLS: clients need a certificate from tlaunch tls client NAME" : ""))
        }
        if try await p.fleet.store.vmCount() == 0 && !noSampleFleet {
            say("First start: deploying the sample fleet")
            let guestKit: Bool = if case .success = GuestKit.detect() { true } else { false }
            let real = hypervisor != "simulated" && p.fleet.qemu != nil && guestKit && ImageCatalog.available("debian-12")
            if (hypervisor == "qemu" || hypervisor == "libvirt") && !real {
                throw CLIError("""
                    --hypervisor \(hypervisor): real VMs need QEMU and Debian's OVMF, busybox-static, linux-image-amd64, shim-signed, \
                    grub-efi-amd64-signed and tlaunch-agent beside tlaunch (scripts/deps.sh installs the packages)
                    """)
            }
            if real { detail("real VMs: QEMU with \(p.fleet.qemu?.accelerator ?? "?") — each boot takes about a minute under TCG") }
            let realHypervisor = hypervisor == "libvirt" ? FleetRules.libvirt : FleetRules.qemu
            if let alert = try await SampleFleet.deploy(p.fleet, interval: attestationInterval, realVMs: real,
                                                        realHypervisor: realHypervisor, say: { detail($0) }) {
                detail("integrity monitoring raised \(alert.severity.rawValue) alert \(alert.id): \(alert.title)")
            }
        } else {
            say("Resuming the fleet (VMs that were running boot again)")
            await p.fleet.resume()
        }
        emit(Render.fleet(try await p.fleet.list()))
        say("Ready")
        // A one-time code, not a credential: the link is worth nothing once used or after 10 minutes.
        let code = try await p.service.createSignInCode()
        detail("Dashboard: \(p.server.url)/login?code=\(code)   (one-time sign-in link, valid 10 minutes)")
        detail("CLI:       tlaunch vm list · tlaunch vm show \(SampleFleet.tampered) · tlaunch alert list · tlaunch vm create NAME "
             + "--integrity-monitoring true")
        detail("Stop with Ctrl-C (the fleet's state stays in \(folder.root.path))")
        // Until SIGINT or SIGTERM: the group shuts down the server (requests under way are
        // answered) and the monitor; then the VMs and the database.
        do { try await p.server.wait() } catch { say("The platform's services stopped: \(error)") }
        say("Stopping")
        await p.stop()
    }
}

/// The platform story, non-interactively: deploy with the defaults, the rules refusing what
/// cannot be, a replaced boot loader caught and explained, an OS update approved, the guest's
/// own view — printed as a user sees it.
struct PlatformDemo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the TrustedLaunch platform story end to end (a temporary platform; prints the overviews and the alert).")
    @Option(help: "HOST:PORT (default: a free port on 127.0.0.1).") var listen = "127.0.0.1:0"
    @Option(help: "Keep the platform's data in this folder (default: a temporary folder, removed at the end).") var data: String?
    @Option(
        help: "End with a real VM (QEMU + OVMF, its own agent inside): auto (where QEMU, OVMF and the guest kit are usable), yes, or no.")
    var realVM = "auto"
    @OptionGroup(title: "TLS") var tls: ServeTLSOptions

    func run() async throws {
        let (host, port) = try parseListen(listen)
        guard ["auto", "yes", "no"].contains(realVM) else { throw ValidationError("--real-vm is auto, yes or no") }
        let root =
            data.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("tlaunch-demo-\(UUID().uuidString.prefix(8))")
        let folder = DataFolder(root: root)
        say("Starting an embedded platform (SQLite, simulated hypervisor, vTPMs, attestation service) in \(root.path)")
        let p = try await EmbeddedPlatform.start(folder: folder, host: host, port: port, webhooks: [], logLevel: .error, tls: tls,
                                                 say: { detail($0) })
        defer { if data == nil { try? FileManager.default.removeItem(at: root) } }
        do {
            try await story(p)
        } catch {
            await p.stop()
            throw error
        }
        await p.stop()
        say("Done")
    }

    func story(_ p: EmbeddedPlatform) async throws {
        let fleet = p.fleet
        detail("API and dashboard on \(p.server.url)")
        say("Images")
        for i in try await fleet.imageList() { detail("\(i.name): Generation \(i.generation) — \(i.description)") }

        say("tlaunch vm create \(SampleFleet.healthy) --integrity-monitoring true   (Trusted Launch is the default)")
        _ = try await fleet.deploy(DeployRequest(name: SampleFleet.healthy, integrityMonitoring: true))
        emit(Render.overview(try await fleet.overview(SampleFleet.healthy)), terminator: "")

        say("The deployment rules")
        func refused(_ what: String, _ body: () async throws -> Void) async {
            do { try await body(); detail("\(what): ACCEPTED — a bug") } catch let e as FleetError {
                detail("\(what): refused — \(e.message)")
            } catch { detail("\(what): \(error)") }
        }
        await refused("vm create old --image legacy-bios (Trusted Launch by default)") {
            _ = try await fleet.deploy(DeployRequest(name: "old", image: "legacy-bios"))
        }
        await refused("vm create plain --security-type Standard --vtpm true") {
            _ = try await fleet.deploy(DeployRequest(name: "plain", securityType: "Standard", vTpm: true))
        }
        await refused("vm create \(SampleFleet.healthy) (again)") { _ = try await fleet.deploy(DeployRequest(name: SampleFleet.healthy)) }

        say("tlaunch vm create \(SampleFleet.tampered) --integrity-monitoring true; tlaunch vm create \(SampleFleet.standard) --image "
          + "legacy-bios --security-type Standard")
        _ = try await fleet.deploy(DeployRequest(name: SampleFleet.tampered, integrityMonitoring: true))
        _ = try await fleet.deploy(DeployRequest(name: SampleFleet.standard, image: "legacy-bios", securityType: "Standard"))
        await refused("vm update \(SampleFleet.standard) --security-type TrustedLaunch") {
            _ = try await fleet.update(SampleFleet.standard, UpdateRequest(securityType: "TrustedLaunch"))
        }
        await refused("vm update \(SampleFleet.standard) --integrity-monitoring true") {
            _ = try await fleet.update(SampleFleet.standard, UpdateRequest(integrityMonitoring: true))
        }
        say("tlaunch vm list")
        emit(Render.fleet(try await fleet.list()))

        say("Someone replaces the boot loader of \(SampleFleet.tampered)")
        guard let alert = try await SampleFleet.replaceBootLoader(fleet, say: { detail($0) }) else {
            throw CLIError("no alert was raised for the replaced boot loader — a bug")
        }
        say("tlaunch alert show \(alert.id)")
        emit(Render.alert(alert), terminator: "")
        say("tlaunch vm show \(SampleFleet.tampered)")
        emit(Render.overview(try await fleet.overview(SampleFleet.tampered)), terminator: "")

        say("An OS update on \(SampleFleet.healthy): a new kernel, then the approval")
        let kernel = try SampleImages.signedKernel(keys: try PlatformKeys.loadOrCreate(directory: fleet.images.keysDirectory), build: 0x91)
        _ = try await fleet.putFile(SampleFleet.healthy, path: "/vmlinuz", bytes: kernel)
        let after = try await fleet.restart(SampleFleet.healthy)
        let kernelAlert = try await fleet.store.alerts(vm: SampleFleet.healthy, status: .active).first
        detail(
            "after the restart: boot integrity \(after.bootIntegrity.display)"
                + (kernelAlert.map { "; alert \($0.id) [\($0.severity.rawValue)] \($0.title)" } ?? ""))
        if let k = kernelAlert {
            for e in k.evidence { detail("evidence: [\(e.component)] \(e.detail)") }
            for r in k.recommendations.prefix(1) { detail("recommendation: \(r)") }
        }
        say("tlaunch vm baseline approve \(SampleFleet.healthy)")
        let b = try await fleet.approveBaseline(SampleFleet.healthy)
        let now = try await fleet.require(SampleFleet.healthy)
        var resolved: Alert?
        if let k = kernelAlert { resolved = try await fleet.store.alert(k.id) }
        detail("approved attestation \(b.attestationID ?? "?"); boot integrity \(now.bootIntegrity.display); the alert is "
             + "\(resolved?.status.rawValue.lowercased() ?? "-")\(resolved?.resolution.map { " (\($0))" } ?? "")")

        say("tlaunch agent status, inside \(SampleFleet.healthy)")
        if let s = await fleet.guestStatus(SampleFleet.healthy) { emit(AgentCommand.Status.render(s), terminator: "") }

        try await realGuest(fleet)

        say("tlaunch vm list")
        emit(Render.fleet(try await fleet.list()))
        say("tlaunch vm show \(SampleFleet.healthy) --json")
        try emitJSON(try await fleet.view(try await fleet.require(SampleFleet.healthy)))
    }

    /// A real VM: Debian's shim, grub and kernel under OVMF with Secure Boot, our vTPM over the
    /// swtpm protocol, and the guest's own agent, whose status is what the guest itself reports.
    func realGuest(_ fleet: Fleet) async throws {
        guard realVM != "no" else { return }
        let kit: Bool = if case .success = GuestKit.detect() { true } else { false }
        guard let qemu = fleet.qemu, kit, ImageCatalog.available("debian-12") else {
            if realVM == "yes" {
                throw CLIError("--real-vm yes: real VMs need QEMU and Debian's OVMF, fdisk, dosfstools, mtools, busybox-static, "
                             + "linux-image-amd64, shim-signed, grub-efi-amd64-signed and tlaunch-agent beside tlaunch (scripts/deps.sh "
                             + "installs the packages)")
            }
            say("A real VM: skipped (QEMU, OVMF or the guest kit is not usable here; --real-vm yes says what is missing)")
            return
        }
        let name = "real-01"
        say("tlaunch vm create \(name) --image debian-12 --hypervisor qemu --integrity-monitoring true --baseline predicted")
        let pace = qemu.accelerator == "tcg" ? ": about a minute" : ""
        detail("a real VM (QEMU \(qemu.accelerator)\(pace)): OVMF with Secure Boot, shim → grub → kernel, our vTPM, "
             + "the agent in its initramfs")
        let vm = try await fleet.deploy(DeployRequest(name: name, image: "debian-12", integrityMonitoring: true, hypervisor: "qemu",
                                                      baseline: "predicted"))
        guard vm.powerState == .running else { throw CLIError("\(name) did not boot: \(vm.lastBoot?.failure ?? "?")") }
        detail("boot \(vm.lastBoot?.number ?? 0): \(vm.lastBoot?.firmware ?? "?"); Secure Boot "
             + "\(vm.lastBoot?.secureBootEnforced == true ? "enforced" : "not enforced"); boot integrity \(vm.bootIntegrity.display)")
        say("tlaunch vm console \(name)   (the agent's own lines, inside the guest)")
        // The agent prints its verdict after the service answered: give it a moment to arrive.
        var lines: [String] = []
        for _ in 0..<120 {
            lines = ConsoleText.printable(try await fleet.console(name)).split(separator: "\n").map(String.init).filter {
                $0.contains("tlaunch-agent:") || $0.contains("TLAUNCH-GUEST: up")
            }
            if lines.contains(where: { $0.contains("Attestation PASSED") || $0.contains("Attestation FAILED") }) { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        // The guest's init, then its agent's last verdict with its checks.
        let verdict = lines.lastIndex { $0.contains("Attestation PASSED") || $0.contains("Attestation FAILED") }
        let shown =
            lines.filter { $0.contains("TLAUNCH-GUEST: up") }.prefix(1) + (verdict.map { lines[$0...].prefix(12) } ?? lines.suffix(8))
        for l in shown { detail(String(l.prefix(160))) }
        say("tlaunch vm guest \(name)   (what the agent inside the real guest reported of itself)")
        var status: GuestStatus?
        for _ in 0..<120 {
            status = await fleet.guestStatus(name)
            if status != nil { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        if let status { emit(AgentCommand.Status.render(status),
                             terminator: "") } else { detail("the guest has not reported its status yet") }
    }
}
