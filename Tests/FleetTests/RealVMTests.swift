import AttestationAPI
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Attestation
import Fleet
import GuestAgent
import TLaunchTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Real VMs: QEMU + Debian's OVMF (Secure Boot, SMM; TCG here), our vTPM over the swtpm
/// protocol, Debian's signed shim → grub → kernel, and the guest attestation agent running in
/// the guest's initramfs, reaching the service through the host's virtio-serial relay. One VM
/// lives through the whole story (each boot under TCG takes tens of seconds).
@Suite("Real VMs: QEMU + OVMF guests with their own attestation agent", .serialized)
struct RealVMTests {
    /// QEMU, OVMF and the guest kit, or nil (a failure when interop is required).
    static func available() async -> QEMUInstallation? {
        let q = await QEMUInstallation.detect()
        var missing: [String] = []
        if q == nil { missing.append("qemu-system-x86_64 and Debian's OVMF (qemu-system-x86, ovmf)") }
        if case .failure(let e) = GuestKit.detect() { missing.append(e.message) }
        if !ImageCatalog.available("debian-12") { missing.append("Debian's shim-signed, grub-efi-amd64-signed, linux-image-amd64") }
        guard missing.isEmpty, let q else {
            if Interop.required { Issue.record("real VMs need: \(missing.joined(separator: "; ")) (scripts/test.sh installs them)") }
            return nil
        }
        return q
    }

    static func waitFor<T>(_ what: String, seconds: Int = 300, _ probe: () async throws -> T?) async throws -> T {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if let v = try await probe() { return v }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw FleetError(.failed, "gave up waiting for \(what) after \(seconds) s")
    }

    @Test(.timeLimit(.minutes(20)))
    func aTrustedLaunchVMBootsAttestsItselfRestartsCrashesAndRefusesATamperedBootLoader() async throws {
        guard let qemu = await Self.available() else { return }
        let p = try await TestPlatform.start(qemu: qemu)
        try await withTeardown({ await p.stop() }) {
            let name = uniqueName("real")
            // Deploy with a predicted baseline: the virtual firmware's prediction from the disk
            // must be what the real boot measures, or the first attestation fails.
            var vm = try await p.fleet.deploy(DeployRequest(name: name, image: "debian-12", integrityMonitoring: true, hypervisor: "qemu",
                                                            baseline: "predicted"))
            let console1 = try await p.fleet.console(name)
            #expect(vm.powerState == .running, "boot 1: \(vm.lastBoot?.failure ?? "") — console: \(console1.suffix(1500))")
            #expect(vm.hypervisor == "qemu" && vm.lastBoot?.firmware.contains("OVMF (QEMU, \(qemu.accelerator))") == true)
            #expect(vm.lastBoot?.secureBootEnforced == true)
            #expect(p.fleet.accelerator(name) == qemu.accelerator)
            // The deploy's progress, step by step, as `vm create` and the dashboard show it.
            let activity = try await p.fleet.activity(name)
            #expect(activity.operation == "deploy" && !activity.busy)
            for step in ["building its boot disk (GPT, FAT32 ESP)", "starting QEMU (\(qemu.accelerator)", "the guest's agent is up"] {
                #expect(activity.steps.contains { $0.message.hasPrefix(step) }, "\(step): \(activity.steps.map(\.message))")
            }
            #expect(activity.steps.last?.message.hasPrefix("Running — boot 1") == true, "\(activity.steps.map(\.message))")

            // The guest's own agent attested through the relay: healthy, against the predicted baseline.
            let history = try await p.service.history(vm: name, limit: 5)
            let first = try #require(history.last, "the guest's agent attested")
            #expect(first.passed, "\(first.checks.filter { !$0.passed }.map { "\($0.name): \($0.reason)" })")
            #expect(first.baseline == .matches,
                    "the predicted baseline equals the real boot's PCRs 4, 5, 7, 8, 9, 14 (\(first.baseline?.rawValue ?? "-"))")
            vm = try await p.fleet.require(name)
            #expect(vm.bootIntegrity == .healthy)
            // The agent prints its verdict after the service answered it: wait for the line.
            let verdict = try? await Self.waitFor("the agent's verdict on the console", seconds: 120) { () async throws -> String? in
                let text = try await p.fleet.console(name)
                return text.contains("tlaunch-agent: Attestation PASSED for \(name)") ? text : nil
            }
            let consoleNow = try await p.fleet.console(name)
            #expect(verdict != nil, "the agent in the guest printed its verdict: \(consoleNow.suffix(800))")
            #expect(console1.contains("TLAUNCH-GUEST: up"))
            // The agent attests at the VM's interval, which the platform told it through the relay.
            #expect(consoleNow.contains("attesting \(name) every \(vm.attestationInterval) s through the host's relay"),
                    "\(consoleNow.suffix(800))")

            // The dashboard's VM page shows the console: the agent's lines, escaped, no escape sequences.
            var page = URLRequest(url: URL(string: "\(p.server.url)/vms/\(name)")!)
            page.setValue("tlaunch_session=\(p.admin)", forHTTPHeaderField: "Cookie")
            page.timeoutInterval = 600
            let html = String(decoding: try await URLSession.shared.data(for: page).0, as: UTF8.self)
            #expect(html.contains("<pre id=\"console\">") && html.contains("tlaunch-agent: Attestation PASSED for \(name)"),
                    "\(html.suffix(600))")
            #expect(!html.contains("\u{1B}"))

            // The guest's view is the real agent's: Secure Boot on, a TPM, a log that replays.
            let status = try await Self.waitFor("the guest's status") { await p.fleet.guestStatus(name) }
            #expect(status.vm == name && status.secureBootState == "On")
            #expect(status.tpm.present && status.tpm.ekCertificate?.contains("TrustedLaunch vTPM EK") == true, "\(status.tpm)")
            #expect(status.measuredBootLog.present && status.measuredBootLog.matchesTPM == true, "\(status.measuredBootLog)")

            // The guest cannot use the relay for anything but its own attestation API.
            #expect(!AgentRelayProbe.allowed("GET", "/v1/vms", vm: name))
            #expect(!AgentRelayProbe.allowed("POST", "/v1/vms/\(name)/baseline/approve", vm: name))
            #expect(!AgentRelayProbe.allowed("GET", "/v1/vms/other/enrolment", vm: name))
            #expect(AgentRelayProbe.allowed("POST", "/v1/vms/\(name)/attestations", vm: name))

            // Restart: a power cycle, a TPM reset, a new measured boot, attested as a reboot.
            vm = try await p.fleet.restart(name)
            #expect(vm.powerState == .running && vm.bootCount == 2, "boot 2: \(vm.lastBoot?.failure ?? "")")
            let second = try #require(try await p.service.history(vm: name, limit: 1).first)
            #expect(second.passed && second.rebooted == true, "\(second.checks.filter { !$0.passed }.map(\.reason))")
            #expect(FileManager.default.fileExists(atPath: p.dir.appendingPathComponent("vms/\(name)/console.1.log").path),
                    "the previous boot's console is kept")

            // grub.cfg edited on the disk (Secure Boot does not cover it): a new boot disk with
            // the same GPT; the guest boots, its agent attests the change, and the alert names the
            // kernel command line — and only that: PCR 5 (the GPT) did not move.
            let alert = try await SampleFleet.weakenKernelCommandLine(p.fleet, vm: name, say: { _ in })
            vm = try await p.fleet.require(name)
            #expect(vm.powerState == .running && vm.bootCount == 3 && vm.bootIntegrity == .unhealthy,
                    "boot 3: \(vm.lastBoot?.failure ?? "") \(vm.bootIntegrity)")
            let changed = try #require(alert, "an alert for the edited kernel command line")
            #expect(changed.kind == "boot-integrity" && changed.title.lowercased().contains("kernel command line"), "\(changed.title)")
            #expect(changed.evidence.contains { $0.detail.contains("apparmor=0") }, "\(changed.evidence.map(\.detail))")
            #expect(!changed.title.contains("PCR 5") && !changed.evidence.contains { $0.detail.contains("PCR 5") },
                    "the disk's GPT kept its identity: \(changed.evidence.map(\.detail))")
            _ = try await p.fleet.approveBaseline(name)

            // kill -9 of QEMU: power state Failed, and an alert that says so.
            let pid = try #require(Int32((try String(contentsOf: p.dir.appendingPathComponent("vms/\(name)/qemu.pid"),
                                                     encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
            #expect(kill(pid, SIGKILL) == 0)
            let failed = try await Self.waitFor("power state Failed") { () async throws -> VMRecord? in
                let v = try await p.fleet.require(name)
                return v.powerState == .failed ? v : nil
            }
            #expect(failed.powerState == .failed)
            // The alert follows the power state: wait for it too.
            let crash = try? await Self.waitFor("the vm-failed alert", seconds: 60) { () async throws -> Alert? in
                try await p.fleet.store.alerts(vm: name).first { $0.kind == "vm-failed" && $0.status == .active }
            }
            #expect(crash?.severity == .high && crash?.evidence.first?.detail.contains("signal 9") == true, "\(String(describing: crash))")

            // A tampered boot loader: Secure Boot (shim) refuses it; the alert carries the console.
            var grub = Array(try Data(contentsOf: URL(fileURLWithPath: "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")))
            grub[grub.count / 2] ^= 0x01
            _ = try await p.fleet.putFile(name, path: "/EFI/BOOT/grubx64.efi", bytes: grub)
            vm = try await p.fleet.start(name)
            #expect(vm.powerState == .failed && vm.lastBoot?.succeeded == false, "boot 3 must fail: \(vm.lastBoot?.failure ?? "")")
            let refused = try await p.fleet.store.alerts(vm: name).first { $0.kind == "boot-failure" && $0.status == .active }
            #expect(refused?.evidence.first?.detail.contains("console") == true, "\(String(describing: refused?.evidence))")
            #expect(refused?.evidence.first?.detail.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" && $0 != "\t" } == false,
                    "no escape sequences from the guest in the alert")

            // Delete: QEMU, the vTPM state, the variable store, the disk are gone.
            try await p.fleet.delete(name)
            #expect(!FileManager.default.fileExists(atPath: p.dir.appendingPathComponent("vms/\(name)").path))
        }
    }
}

extension RealVMTests {
    /// Standard VMs on QEMU: a UEFI one (OVMF without SMM or keys, no TPM device; its agent starts,
    /// finds no TPM and says so in the guest's own view) and a BIOS one (SeaBIOS, its MBR boot sector).
    @Test(.timeLimit(.minutes(10)))
    func aStandardVMBootsWithoutATPM() async throws {
        guard let qemu = await Self.available() else { return }
        let p = try await TestPlatform.start(qemu: qemu)
        try await withTeardown({ await p.stop() }) {
            let name = uniqueName("plain")
            let vm = try await p.fleet.deploy(DeployRequest(name: name, image: "debian-12", securityType: "Standard", hypervisor: "qemu"))
            let console = try await p.fleet.console(name)
            #expect(vm.powerState == .running && vm.lastBoot?.measured == false && vm.lastBoot?.secureBootEnforced == false,
                    "\(vm.lastBoot?.failure ?? "") — \(console.suffix(1200))")
            let status = try await Self.waitFor("the guest's status") { await p.fleet.guestStatus(name) }
            #expect(!status.tpm.present && status.secureBootState != "On", "\(status)")
            #expect(!FileManager.default.fileExists(atPath: p.dir.appendingPathComponent("vms/\(name)/vtpm.state").path),
                    "no vTPM was created")
            try await p.fleet.delete(name)

            // A Generation 1 image: SeaBIOS boots its MBR boot sector, whose own line reaches the console.
            let old = uniqueName("bios")
            var bios = try await p.fleet.deploy(DeployRequest(name: old, image: "legacy-bios", securityType: "Standard",
                                                              hypervisor: "qemu"))
            var text = try await p.fleet.console(old)
            #expect(
                bios.powerState == .running && bios.lastBoot?.firmware.hasPrefix("SeaBIOS (QEMU") == true
                    && bios.lastBoot?.measured == false,
                    "\(bios.lastBoot?.failure ?? "") — \(text.suffix(600))")
            #expect(text.contains("SeaBIOS (version") && text.contains("TLAUNCH-GUEST: up (BIOS boot sector)"), "\(text.suffix(600))")
            bios = try await p.fleet.restart(old)
            text = try await p.fleet.console(old)
            #expect(bios.powerState == .running && bios.bootCount == 2 && text.contains("TLAUNCH-GUEST: up (BIOS boot sector)"))
            try await p.fleet.delete(old)
        }
    }
}

@Suite("Real VMs: what the guest's console may put in front of a person")
struct ConsoleTextTests {
    @Test func escapeSequencesAndControlCharactersAreRemoved() {
        let raw = """
            \u{1B}[2J\u{1B}[01;01H\u{1B}[=3hBdsDxe: loading\r\n\u{1B}[0m\u{1B}[30m\u{1B}[47mWelcome to \
            GRUB!\u{7}\u{1B}]0;title\u{7}\n\u{9B}x\tend\u{1B}
            """
        let text = ConsoleText.printable(raw)
        #expect(text == "BdsDxe: loading\nWelcome to GRUB!\nx\tend", "\(text.debugDescription)")
        #expect(!text.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" && $0 != "\t" })
    }
}

/// The relay's rule, as a test sees it.
enum AgentRelayProbe {
    static func allowed(_ method: String, _ path: String, vm: String) -> Bool {
        RelayRules.allowed(RelayFrame.Request(id: 1, method: method, path: path, contentType: nil, body: nil), vm: vm)
    }
}
