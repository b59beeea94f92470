import Foundation
import GuestAgent
import Logging
import MeasuredBoot
import SecureBoot
import TPM2
import VirtualFirmware
import VirtualTPM
#if canImport(Glibc)
import Glibc
#endif

/// Real VMs: QEMU + OVMF guests whose own attestation agent (in their initramfs) attests
/// through the host's relay. The fleet's lifecycle calls in here for VMs deployed with
/// `--hypervisor qemu`.
extension Fleet {
    /// What the console shows when the firmware or shim refused an image, or the kernel died.
    static let consoleFailures = ["Security Violation", "Access Denied", "Verification failed", "Failed to load image", "Kernel panic", "shim_init() failed",
                                  "Could not create MokListRT", "Failed to read header"]

    func paths(_ name: String) -> QEMUPaths { QEMUPaths(folder: folder(name)) }

    /// The VM's ESP as QEMU exports it (read-only FAT): the image's files with the VM's writes over them.
    func materializeESP(_ esp: ESP, at url: URL) throws {
        let fm = FileManager.default
        try? fm.removeItem(at: url)
        try fm.createDirectory(at: url, withIntermediateDirectories: true)
        for (path, bytes) in esp.files {
            let dest = url.appendingPathComponent(String(path.drop { $0 == "/" }))
            try fm.createDirectory(at: dest.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(bytes).write(to: dest)
        }
    }

    /// Boots the VM on QEMU and waits until its agent attested (success), the console shows a
    /// refusal or QEMU exits (failure), or `bootTimeout` passes (failure: the agent never came).
    func bootQEMU(_ vm: VMRecord, image: ImageDisk, verb: String) async throws -> BootResult {
        guard let installation = qemu else {
            throw FleetError(.failed, "\(vm.name) runs on QEMU, which this platform did not find (qemu-system-x86 and ovmf); start it on a host that has them")
        }
        let time = Time.now()
        let number = vm.bootCount + 1
        let p = paths(vm.name)
        await stopMachine(vm.name, timeout: nil)
        guard let esp = try SimulatedHypervisor.disk(image, folder: folder(vm.name)) else {
            throw FleetError(.invalid, "\(vm.name)'s image \(vm.image) is a BIOS disk: QEMU VMs of this platform boot UEFI (Generation 2) images", field: "image")
        }
        try? FileManager.default.removeItem(at: p.guestStatus)   // the previous boot's view is not this one's
        progress("\(vm.name): writing its disk")
        try materializeESP(esp, at: p.esp)
        let fm = FileManager.default
        let secureBoot = vm.securityType == .trustedLaunch && vm.secureBoot
        if !fm.fileExists(atPath: p.variables.path) {
            // The VM's own variable store: the image's (its keys) with Secure Boot, OVMF's blank one without.
            let bytes: Data
            if secureBoot, let store = image.variables { bytes = Data(store.bytes) } else { bytes = try Data(contentsOf: URL(fileURLWithPath: installation.blankVariables)) }
            try bytes.write(to: p.variables)
        }
        var tpm: VirtualTPM?
        let vtpm = vm.securityType == .trustedLaunch && vm.vTPM
        if vtpm { tpm = try await VirtualTPM.open(stateFile: folder(vm.name).vtpmState.path, hostKey: hypervisor.hostKey, authority: hypervisor.authority) }
        let prediction = try? VirtualFirmware(settings: FirmwareSettings(securityType: vm.securityType, secureBoot: secureBoot, vTPM: vtpm, variables: image.variables),
                                             model: .ovmf(reference: nil), cache: hypervisor.cache).predict(esp: esp)
        progress("\(vm.name): starting QEMU (\(installation.accelerator), OVMF\(secureBoot ? " with Secure Boot" : ""))")
        let name = vm.name
        let machine = try QEMULauncher(installation: installation).launch(
            .init(name: name, secureBoot: secureBoot, vTPM: vtpm, interval: vm.attestationInterval), paths: p, tpm: tpm,
            forward: { [weak self] r in await self?.relayForward(name, r) ?? RelayFrame.Response(id: r.id, status: 503, body: Data()) })
        machines.withLock { $0[name] = machine }
        watch(machine)
        logger.info("QEMU started", metadata: ["vm": .string(name), "pid": .stringConvertible(machine.process.processIdentifier), "accelerator": .string(installation.accelerator)])

        let firmware = "OVMF (QEMU, \(installation.accelerator))"
        func summary(_ ok: Bool, _ failure: String?) -> BootSummary {
            BootSummary(number: number, time: time, firmware: firmware, succeeded: ok, failure: failure,
                        secureBootEnforced: ok && secureBoot, measured: vtpm, events: vtpm ? prediction?.log.events.count ?? 0 : 0,
                        stages: prediction?.stages.map(BootStageSummary.init) ?? [], kernel: prediction?.kernel, kernelCommandLine: prediction?.kernelCommandLine)
        }
        let deadline = ContinuousClock.now + bootTimeout
        var said = false
        while ContinuousClock.now < deadline {
            let counters = machine.relay?.counters.withLock { $0 } ?? (requests: 0, attestations: 0)
            if counters.requests > 0, !said { progress("\(name): the guest's agent is up"); said = true }
            // Success: the guest ran its agent, which attested (or, without integrity
            // monitoring or a vTPM, at least reached the platform).
            if counters.attestations > 0 || (counters.requests > 0 && !(vtpm && vm.integrityMonitoring)) {
                return BootResult(summary: summary(true, nil), eventLog: nil, tpm: tpm)
            }
            let console = machine.console()
            if let marker = Self.consoleFailures.first(where: { console.contains($0) }) {
                await machine.kill()
                machines.withLock { if $0[name] === machine { $0[name] = nil } }
                return BootResult(summary: summary(false, "the firmware console says \"\(marker)\": \(Self.excerpt(console, around: marker))"), eventLog: nil, tpm: tpm)
            }
            if !machine.isRunning {
                let err = (try? String(contentsOf: p.folder.url.appendingPathComponent("qemu.log"), encoding: .utf8)) ?? ""
                await machine.kill()
                machines.withLock { if $0[name] === machine { $0[name] = nil } }
                return BootResult(summary: summary(false, "QEMU exited during boot: \(ConsoleText.printable(String(err.suffix(400))).trimmingCharacters(in: .whitespacesAndNewlines)) — console: \(String(console.suffix(400)))"), eventLog: nil, tpm: tpm)
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        let console = machine.console()
        await machine.kill()
        machines.withLock { if $0[name] === machine { $0[name] = nil } }
        return BootResult(summary: summary(false, "the guest's attestation agent did not reach the platform within \(bootTimeout) — console: \(String(console.suffix(400)))"), eventLog: nil, tpm: tpm)
    }

    /// Up to 8 lines of the console around `marker`.
    static func excerpt(_ console: String, around marker: String) -> String {
        let lines = console.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let i = lines.firstIndex(where: { $0.contains(marker) }) else { return String(console.suffix(400)) }
        return lines[max(0, i - 4)...min(lines.count - 1, i + 3)].map { $0.trimmingCharacters(in: .controlCharacters) }.filter { !$0.isEmpty }.joined(separator: " | ")
    }

    /// One guest request, as the VM's agent: its token, the service's HTTP API.
    func relayForward(_ name: String, _ r: RelayFrame.Request) async -> RelayFrame.Response {
        guard let url = serviceURL.withLock({ $0 }) else {
            return RelayFrame.Response(id: r.id, status: 503, body: Data("{\"error\":{\"message\":\"the attestation service is not attached\"}}".utf8))
        }
        let token = (try? String(contentsOf: folder(name).agentToken, encoding: .utf8)) ?? ""
        var client = ServiceClient(baseURL: url, token: token)
        client.patient = true
        do {
            let (status, body) = try await client.send(r.method, r.path, json: r.body, contentType: r.contentType ?? "application/json", step: "relay")
            return RelayFrame.Response(id: r.id, status: status, body: body)
        } catch {
            return RelayFrame.Response(id: r.id, status: 502, body: Data("{\"error\":{\"message\":\"the relay cannot reach the service: \(error)\"}}".utf8))
        }
    }

    /// A QEMU that exits without the platform asking is a crash: power state Failed, an alert.
    func watch(_ machine: QEMUMachine) {
        Task { [weak self] in
            await ProcessWait.exit(machine.process)
            guard let self, !machine.expectedExit.withLock({ $0 }) else { return }
            machine.relay?.stop()
            machine.tpmServer?.terminate()
            let still = self.machines.withLock { m -> Bool in
                guard m[machine.name] === machine else { return false }
                m[machine.name] = nil
                return true
            }
            guard still else { return }
            let status = machine.process.terminationReason == .uncaughtSignal ? "killed by signal \(machine.process.terminationStatus)" : "exited with status \(machine.process.terminationStatus)"
            self.logger.error("QEMU exited unexpectedly", metadata: ["vm": .string(machine.name), "status": .string(status)])
            guard let vm = try? await self.mutate(machine.name, { $0.powerState = .failed }) else { return }
            try? await self.store.appendEvent(vm: vm.name, kind: "crashed", message: "QEMU \(status); the VM is off (tlaunch vm start \(vm.name) boots it again)")
            let console = machine.console()
            try? await self.raise(AlertBuilder.crashed(vm, how: status, console: String(console.suffix(600))))
        }
    }

    /// Stops the VM's QEMU: ACPI power button, then power off after `timeout` (nil: at once).
    func stopMachine(_ name: String, timeout: Duration?) async {
        guard let m = machines.withLock({ $0.removeValue(forKey: name) }) else { return }
        if let timeout { await m.shutdown(timeout: timeout) } else { await m.kill() }
    }

    /// Kills a QEMU of this VM that a previous run of the platform left behind (its vTPM died
    /// with that run): the platform never runs two QEMUs for one VM. Returns what it did.
    func reapOrphan(_ name: String) -> String? {
        let p = paths(name)
        guard let text = try? String(contentsOf: p.pidFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1 else { return nil }
        let cmdline = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))).map { String(decoding: $0, as: UTF8.self) } ?? ""
        try? FileManager.default.removeItem(at: p.pidFile)
        guard cmdline.contains("tlaunch-\(name)\u{0}") else { return nil }
        Glibc.kill(pid, SIGKILL)
        return "killed QEMU \(pid) left by the previous run (its vTPM ended with that run)"
    }

    /// The VM's serial console (this boot's, or the previous one's).
    public func console(_ name: String, previous: Bool = false) async throws -> String {
        let vm = try await require(name)
        guard vm.isRealVM else {
            throw FleetError(.invalid, "\(name) runs on the \(vm.hypervisor) hypervisor, which has no console: deploy with --hypervisor qemu for a real VM", field: "name")
        }
        let p = paths(name)
        let text = (try? Data(contentsOf: previous ? p.previousConsole : p.console)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        return text.replacingOccurrences(of: "\r", with: "")
    }

    /// What the guest's own agent last reported of itself (`tlaunch-agent status`, sent after each attestation).
    func reportedGuestStatus(_ name: String) -> GuestStatus? {
        guard machines.withLock({ $0[name] }) != nil, let d = try? Data(contentsOf: paths(name).guestStatus) else { return nil }
        return try? JSONDecoder().decode(GuestStatus.self, from: d)
    }

    /// Powers off every real VM of this process (the platform is stopping: their vTPMs stop with
    /// it). Their records stay "running", so the next start boots them again.
    public func powerOffRealVMs() async {
        let all = machines.withLock { m -> [QEMUMachine] in defer { m.removeAll() }; return Array(m.values) }
        for m in all { await m.shutdown(timeout: .seconds(5)) }
    }

    /// The accelerator a running QEMU VM uses ("tcg" or "kvm"), nil for others.
    public func accelerator(_ name: String) -> String? { machines.withLock { $0[name]?.accelerator } }
}
