import Attestation
import AttestationAPI
import Foundation
import GuestAgent
import Logging
import MeasuredBoot
import SecureBoot
import Synchronization
import TPM2
import VirtualFirmware
import VirtualTPM
#if canImport(Glibc)
import Glibc
#endif

/// Real VMs: QEMU + OVMF guests whose own attestation agent (in their initramfs) attests
/// through the host's relay; their vTPM is the platform's engine served over the swtpm protocol
/// (or, for libvirt's `emulator` backend, the swtpm libvirt runs). QEMU runs as the platform's
/// child (`qemu`) or as a libvirt domain (`libvirt`); everything else is the same.
public final class QEMUHypervisor: Hypervisor {
    public let name: String
    /// How QEMU runs.
    let engine: QEMULauncher.Engine
    /// OVMF's own measurements (PCRs 0–3, 6) depend on its build: a prediction models it and fixes
    /// what the disk and keys decide (and PCR 14, shim's MOK state).
    public var firmwareModel: VirtualFirmware.Model { .ovmf(reference: nil) }
    public var predictedPCRs: [UInt32] { [4, 5, 7, 8, 9, 14] }
    public var guestRunsAgent: Bool { true }

    /// QEMU and OVMF as found on this host (nil: this host cannot run real VMs).
    public let installation: QEMUInstallation?
    /// How long a boot may take until the guest's agent attested.
    let bootTimeout: Duration
    let context: HypervisorContext
    /// The machines this process runs.
    let machines = Mutex<[String: QEMUMachine]>([:])
    let observer = Mutex<(@Sendable (HypervisorEvent) async -> Void)?>(nil)

    /// What the console shows when the firmware or shim refused an image, or the kernel died.
    static let consoleFailures = ["Security Violation", "Access Denied", "Verification failed", "Failed to load image", "Kernel panic",
                                  "shim_init() failed",
        "Could not create MokListRT", "Failed to read header", "Boot failed: not a bootable disk", "No bootable device"
    ]

    init(installation: QEMUInstallation?, bootTimeout: Duration, context: HypervisorContext, engine: QEMULauncher.Engine = .direct) {
        self.installation = installation; self.bootTimeout = bootTimeout; self.context = context; self.engine = engine
        if case .libvirt = engine { name = FleetRules.libvirt } else { name = FleetRules.qemu }
    }

    /// libvirt's connection, for VMs that run as libvirt domains.
    public var libvirt: LibvirtConnection? { if case .libvirt(let c, _) = engine { c } else { nil } }

    func paths(_ vm: String) -> QEMUPaths { QEMUPaths(folder: context.folder(vm)) }
    func progress(_ s: String) { context.progress(s) }

    /// The VM's boot disk (a GPT disk image, rebuilt when its files changed) and its ESP as OVMF finds it there.
    public func firmwareView(_ vm: VMRecord, esp: ESP) throws -> ESP {
        guard let installation else {
            throw FleetError(.failed, "\(vm.name) runs on QEMU, which this platform did not find (qemu-system-x86, ovmf, fdisk, "
                                    + "dosfstools, mtools); use a host that has them")
        }
        try? FileManager.default.removeItem(at: paths(vm.name).legacyESPFolder)
        return try BootDisk(tools: installation.diskTools, folder: context.folder(vm.name)).prepare(esp) { progress("\(vm.name): \($0)") }
    }

    /// Boots the VM on QEMU and waits until its agent attested (success), the console shows a
    /// refusal or QEMU exits (failure), or `bootTimeout` passes (failure: the agent never came).
    public func boot(_ vm: VMRecord, image: ImageDisk, esp: ESP?) async throws -> BootSummary {
        guard let installation else {
            throw FleetError(.failed, "\(vm.name) runs on QEMU, which this platform did not find (qemu-system-x86 and ovmf); start it on "
                                    + "a host that has them")
        }
        let time = Time.now()
        let number = vm.bootCount + 1
        let p = paths(vm.name)
        await stop(vm.name, timeout: nil)
        guard let files = esp else { return try await bootBIOS(vm, image: image, installation: installation, time: time, number: number) }
        try? FileManager.default.removeItem(at: p.guestStatus)   // the previous boot's view is not this one's
        let esp = try firmwareView(vm, esp: files)
        let fm = FileManager.default
        let secureBoot = vm.firmwareSecureBoot
        if !fm.fileExists(atPath: p.variables.path) {
            // The VM's own variable store: the image's (its keys) with Secure Boot, OVMF's blank one without.
            let bytes: Data
            if secureBoot, let store = image.variables {
                bytes = Data(store.bytes)
            } else {
                bytes = try Data(contentsOf: URL(fileURLWithPath: installation.blankVariables))
            }
            try bytes.write(to: p.variables)
        }
        var tpm: VirtualTPM?
        let vtpm = vm.firmwareVTPM
        var platformTPM = true
        if case .libvirt(_, .emulator) = engine { platformTPM = false }
        if vtpm, platformTPM { tpm = try await context.openVTPM(vm.name) }
        let prediction = try? VirtualFirmware(settings: FirmwareSettings(secureBoot: secureBoot, vTPM: vtpm, variables: image.variables),
                                             model: firmwareModel, cache: context.cache).predict(esp: esp)
        progress("\(vm.name): starting \(libvirt.map { "a libvirt domain (\($0.uri)): QEMU" } ?? "QEMU") (\(installation.accelerator), "
               + "OVMF\(secureBoot ? " with Secure Boot" : ""))")
        let name = vm.name
        let machine = try await QEMULauncher(installation: installation).launch(
            .init(name: name, secureBoot: secureBoot, vTPM: vtpm, interval: vm.attestationInterval), paths: p, tpm: tpm, engine: engine,
            progress: { [weak self] in self?.progress($0) },
            forward: { [weak self] r in await self?.relayForward(name, r) ?? RelayFrame.Response(id: r.id, status: 503, body: Data()) })
        adopt(machine, firmware: "OVMF")

        let firmware = "OVMF (\(libvirt == nil ? "QEMU" : "libvirt/QEMU"), \(installation.accelerator))"
        func summary(_ ok: Bool, _ failure: String?) -> BootSummary {
            BootSummary(number: number, time: time, firmware: firmware, succeeded: ok, failure: failure,
                        secureBootEnforced: ok && secureBoot, measured: vtpm, events: vtpm ? prediction?.log.events.count ?? 0 : 0,
                        stages: prediction?.stages.map(BootStageSummary.init) ?? [], kernel: prediction?.kernel,
                        kernelCommandLine: prediction?.kernelCommandLine)
        }
        func end(_ failure: String) async -> BootSummary {
            await abandon(machine)
            return summary(false, failure)
        }
        let deadline = ContinuousClock.now + bootTimeout
        var said = false
        while ContinuousClock.now < deadline {
            let counters = machine.relay?.counters.withLock { $0 } ?? (requests: 0, attestations: 0)
            if counters.requests > 0, !said { progress("\(name): the guest's agent is up"); said = true }
            // Success: the guest ran its agent, which attested (or, without integrity
            // monitoring or a vTPM, at least reached the platform).
            if counters.attestations > 0 || (counters.requests > 0 && !(vtpm && vm.integrityMonitoring)) { return summary(true, nil) }
            let console = machine.console()
            if let marker = Self.consoleFailures.first(where: { console.contains($0) }) {
                return await end("the firmware console says \"\(marker)\": \(Self.excerpt(console, around: marker))")
            }
            if !machine.isRunning {
                let err = machine.runner.log()
                return await end("QEMU exited during boot: "
                               + "\(ConsoleText.printable(String(err.suffix(400))).trimmingCharacters(in: .whitespacesAndNewlines)) — "
                               + "console: \(String(console.suffix(400)))")
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        return await end("the guest's attestation agent did not reach the platform within \(bootTimeout) — console: "
                       + "\(String(machine.console().suffix(400)))")
    }

    /// A Generation 1 (BIOS) VM: SeaBIOS boots its MBR boot sector from a raw disk; nothing is
    /// measured (no TPM, no UEFI). It has booted when SeaBIOS handed over to the disk and the
    /// guest ran on for two seconds without SeaBIOS saying it could not boot.
    func bootBIOS(_ vm: VMRecord, image: ImageDisk, installation: QEMUInstallation, time: String, number: Int) async throws -> BootSummary {
        if let libvirt {
            throw FleetError(.invalid, "\(vm.name) is a Generation 1 (BIOS) VM: those run on --hypervisor qemu, not as libvirt domains "
                                     + "(\(libvirt.uri))")
        }
        guard let sector = image.bootSector, sector.count >= 512 else {
            throw FleetError(.failed, "\(vm.name)'s image \(vm.image) has neither an ESP nor a boot sector")
        }
        let p = paths(vm.name)
        var disk = Data(sector.prefix(512))
        disk.append(Data(count: (1 << 20) - 512))
        try disk.write(to: p.biosDisk)
        try Data([0xF8, 0x03]).write(to: p.seabiosConsolePort)
        let stage = BootStageSummary(
            kind: "mbr", path: "MBR boot sector", sha256: hexString((try? TPMCrypto.hash(.sha256, Array(sector.prefix(512)))) ?? []),
            verifiedBy: nil, authority: nil)
        let firmware = "SeaBIOS (QEMU, \(installation.accelerator))"
        func summary(_ ok: Bool, _ failure: String?) -> BootSummary {
            BootSummary(number: number, time: time, firmware: firmware, succeeded: ok, failure: failure, secureBootEnforced: false,
                        measured: false, events: 0,
                        stages: [stage], kernel: nil, kernelCommandLine: nil)
        }
        progress("\(vm.name): starting QEMU (\(installation.accelerator), SeaBIOS)")
        let name = vm.name
        let machine = try await QEMULauncher(installation: installation).launch(
            .init(name: name, bios: true, secureBoot: false, vTPM: false, interval: vm.attestationInterval), paths: p, tpm: nil,
            forward: { r in RelayFrame.Response(id: r.id, status: 404, body: Data()) })
        adopt(machine, firmware: "SeaBIOS")
        func end(_ failure: String) async -> BootSummary {
            await abandon(machine)
            return summary(false, failure)
        }
        let deadline = ContinuousClock.now + bootTimeout
        var handedOver: ContinuousClock.Instant?
        while ContinuousClock.now < deadline {
            let console = machine.console()
            if let marker = Self.consoleFailures.first(where: { console.contains($0) }) {
                return await end("SeaBIOS says \"\(marker)\": \(Self.excerpt(console, around: marker))")
            }
            if !machine.isRunning { return await end("QEMU exited during boot — console: \(String(console.suffix(400)))") }
            if handedOver == nil, console.contains("Booting from Hard Disk") {
                handedOver = .now
                progress("\(name): SeaBIOS started the boot sector")
            }
            if let t = handedOver, ContinuousClock.now - t >= .seconds(2) { return summary(true, nil) }
            try? await Task.sleep(for: .milliseconds(250))
        }
        let console = String(machine.console().suffix(400))
        return await end("SeaBIOS did not start the boot sector within \(bootTimeout) — console: \(console)")
    }

    /// A started machine is this VM's now: tracked, and watched for exits nobody asked for.
    func adopt(_ machine: QEMUMachine, firmware: String) {
        machines.withLock { $0[machine.name] = machine }
        watch(machine)
        context.logger.info("QEMU started", metadata: ["vm": .string(machine.name), "pid": .stringConvertible(machine.runner.pid),
                                                       "firmware": .string(firmware), "accelerator": .string(machine.accelerator)])
    }

    /// A boot that failed: its machine is killed and no longer the VM's.
    func abandon(_ machine: QEMUMachine) async {
        await machine.kill()
        machines.withLock { if $0[machine.name] === machine { $0[machine.name] = nil } }
    }

    /// Up to 8 lines of the console around `marker`.
    static func excerpt(_ console: String, around marker: String) -> String {
        let lines = console.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let i = lines.firstIndex(where: { $0.contains(marker) }) else { return String(console.suffix(400)) }
        return lines[max(0, i - 4)...min(lines.count - 1, i + 3)].map { $0.trimmingCharacters(in: .controlCharacters) }.filter {
            !$0.isEmpty
        }.joined(separator: " | ")
    }

    /// One guest request, as the VM's agent: its token, the service's HTTP API.
    func relayForward(_ name: String, _ r: RelayFrame.Request) async -> RelayFrame.Response {
        guard let client = context.service(for: name) else {
            return RelayFrame.Response(id: r.id, status: 503,
                                       body: Data("{\"error\":{\"message\":\"the attestation service is not attached\"}}".utf8))
        }
        do {
            let (status, body) = try await client.send(r.method, r.path, json: r.body, contentType: r.contentType ?? "application/json",
                                                       step: "relay")
            return RelayFrame.Response(id: r.id, status: status, body: body)
        } catch {
            return RelayFrame.Response(id: r.id, status: 502,
                                       body: Data("{\"error\":{\"message\":\"the relay cannot reach the service: \(error)\"}}".utf8))
        }
    }

    /// A QEMU that exits without the platform asking is a crash: the observer hears of it.
    func watch(_ machine: QEMUMachine) {
        Task { [weak self] in
            let status = await machine.runner.ended()
            guard let self, !machine.expectedExit.withLock({ $0 }) else { return }
            machine.relay?.stop()
            machine.tpmServer?.terminate()
            let still = self.machines.withLock { m -> Bool in
                guard m[machine.name] === machine else { return false }
                m[machine.name] = nil
                return true
            }
            guard still else { return }
            self.context.logger.error("QEMU exited unexpectedly", metadata: ["vm": .string(machine.name), "status": .string(status)])
            await self.observer.withLock({ $0 })?(.crashed(vm: machine.name, how: status, console: String(machine.console().suffix(600))))
        }
    }

    public func observe(_ handler: @escaping @Sendable (HypervisorEvent) async -> Void) { observer.withLock { $0 = handler } }

    public func stop(_ vm: String, timeout: Duration?) async {
        guard let m = machines.withLock({ $0.removeValue(forKey: vm) }) else { return }
        if let timeout { await m.shutdown(timeout: timeout) } else { await m.kill() }
    }

    public func isRunning(_ vm: String) -> Bool { machines.withLock { $0[vm] != nil } }

    /// Kills a QEMU of this VM that a previous run of the platform left behind (its vTPM died
    /// with that run): the platform never runs two QEMUs for one VM.
    public func reclaim(_ vm: String) async -> String? {
        if let libvirt {
            // A domain of this VM left by the previous run: destroyed (its platform vTPM ended with that run).
            let domain = LibvirtDomainXML.domainName(vm)
            guard let s = await libvirt.state(domain), s != "shut off" else { return nil }
            _ = try? await libvirt.run(["destroy", domain])
            return "destroyed libvirt domain \(domain) left by the previous run (its vTPM ended with that run)"
        }
        let p = paths(vm)
        guard let text = try? String(contentsOf: p.pidFile, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1
        else { return nil }
        let cmdline =
            (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))).map { String(decoding: $0, as: UTF8.self) } ?? ""
        try? FileManager.default.removeItem(at: p.pidFile)
        guard cmdline.contains("tlaunch-\(vm)\u{0}") else { return nil }
        Glibc.kill(pid, SIGKILL)
        return "killed QEMU \(pid) left by the previous run (its vTPM ended with that run)"
    }

    public func delete(_ vm: String) async {
        await stop(vm, timeout: nil)
        try? FileManager.default.removeItem(at: paths(vm).run)
        // An emulator vTPM's state is libvirt's (kept across the transient domain's boots): it goes with the VM.
        guard case .libvirt(let c, let backend) = engine else { return }
        if backend == .emulator {
            if c.isLocal { try? FileManager.default.removeItem(at: LibvirtDomainXML.emulatorState(paths(vm))) }
            else { await c.deleteEmulatorState(domain: LibvirtDomainXML.domainName(vm), uuid: LibvirtDomainXML.uuid(paths(vm))) }
        }
        // The copies on a host that does not see the platform's files.
        if c.ship {
            let v = ShippedFiles.volumes(vm)
            for name in [v.disk, v.variables, v.console] { await c.deleteVolume(name) }
        }
    }

    /// Powers off every real VM of this process (the platform is stopping: their vTPMs stop with
    /// it). Their records stay "running", so the next start boots them again.
    public func powerOffAll() async {
        let all = machines.withLock { m -> [QEMUMachine] in defer { m.removeAll() }; return Array(m.values) }
        for m in all { await m.shutdown(timeout: .seconds(5)) }
    }

    public func attest(_ vm: String) async throws -> AttestationOutcome {
        throw FleetError(.conflict, "\(vm) is a real VM: its own agent attests at every boot and every interval (tlaunch vm console \(vm) "
                                  + "shows it); restart it for a new measured boot")
    }

    /// What the guest's own agent last reported of itself (`tlaunch-agent status`, sent after each attestation).
    public func guestStatus(_ vm: String) async -> GuestStatus? {
        guard isRunning(vm), let d = try? Data(contentsOf: paths(vm).guestStatus) else { return nil }
        return try? JSONDecoder().decode(GuestStatus.self, from: d)
    }

    public func console(_ vm: String, previous: Bool) throws -> String {
        let p = paths(vm)
        let text = (try? Data(contentsOf: previous ? p.previousConsole : p.console)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        return text.replacingOccurrences(of: "\r", with: "")
    }

    public func accelerator(_ vm: String) -> String? { machines.withLock { $0[vm]?.accelerator } }
}
