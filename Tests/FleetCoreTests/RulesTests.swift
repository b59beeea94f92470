import FleetCore
import Foundation
import Testing

/// The fleet's rules on their own — what a deployment or an update may do, and what each refusal
/// says — without a database, a hypervisor or a server (the platform's own tests go through the API).
@Suite("FleetCore: the deployment and update rules, pure")
struct RulesTests {
    static let gen2 = ImageInfo(name: "sample-linux", generation: 2, source: "built-in", description: "UEFI", builtIn: true)
    static let gen1 = ImageInfo(name: "legacy-bios", generation: 1, source: "built-in", description: "BIOS", builtIn: true)

    /// The refusal `body` throws: its kind and field, and its message (what to do).
    static func refusal(_ body: () throws -> Any) -> FleetError? {
        do { _ = try body(); return nil } catch let e as FleetError { return e } catch { return nil }
    }

    @Test func trustedLaunchIsTheDefaultWithSecureBootAndVTPMOn() throws {
        let vm = try FleetRules.deploy(DeployRequest(name: "web-01"), image: Self.gen2, now: 42)
        #expect(vm.securityType == .trustedLaunch && vm.secureBoot && vm.vTPM)
        #expect(!vm.integrityMonitoring && vm.bootIntegrity == .notMonitored && vm.powerState == .stopped)
        #expect(
            vm.version == 1 && vm.created == 42 && vm.bootCount == 0 && vm.attestationInterval == 300
                && vm.hypervisor == FleetRules.hypervisor)
        let monitored = try FleetRules.deploy(DeployRequest(name: "db-01", integrityMonitoring: true), image: Self.gen2)
        #expect(monitored.integrityMonitoring && monitored.bootIntegrity == .pending)
        let standard = try FleetRules.deploy(DeployRequest(name: "old-01", image: "legacy-bios", securityType: "standard"),
                                             image: Self.gen1)
        #expect(standard.securityType == .standard && !standard.secureBoot && !standard.vTPM)
        // Secure Boot off is a choice a Trusted Launch VM may make; its vTPM stays.
        let noSB = try FleetRules.deploy(DeployRequest(name: "dev-01", secureBoot: false), image: Self.gen2)
        #expect(!noSB.secureBoot && noSB.vTPM)
        // What the firmware is told comes from the security type: a Standard VM's firmware has
        // neither, even from a record (written by hand or another version) that says otherwise.
        #expect(vm.firmwareSecureBoot && vm.firmwareVTPM && !noSB.firmwareSecureBoot && noSB.firmwareVTPM)
        var forged = standard
        forged.secureBoot = true; forged.vTPM = true
        #expect(!forged.firmwareSecureBoot && !forged.firmwareVTPM)
        #expect(SecurityType.allCases.map(\.rawValue) == ["TrustedLaunch", "Standard"])
    }

    /// Every rule a deployment can break, with the field it names and the words that say what to do.
    @Test func everyDeploymentRefusalNamesItsFieldAndWhatToDo() {
        let cases: [(DeployRequest, ImageInfo, Set<String>, String, String)] = [
            (DeployRequest(name: "a"), Self.gen1, [FleetRules.hypervisor], "image", "--security-type Standard"),
            (DeployRequest(name: "a", securityType: "Standard", secureBoot: true), Self.gen2, [FleetRules.hypervisor], "secureBoot",
             "only for TrustedLaunch"),
            (DeployRequest(name: "a", securityType: "Standard", vTpm: true), Self.gen2, [FleetRules.hypervisor], "vTpm",
             "only for TrustedLaunch"),
            (DeployRequest(name: "a", securityType: "Standard", integrityMonitoring: true), Self.gen2, [FleetRules.hypervisor],
             "integrityMonitoring", "--security-type TrustedLaunch"),
            (DeployRequest(name: "a", vTpm: false, integrityMonitoring: true), Self.gen2, [FleetRules.hypervisor], "integrityMonitoring",
             "keep --vtpm true"),
            (DeployRequest(name: "a", securityType: "Confidential"), Self.gen2, [FleetRules.hypervisor], "securityType",
             "TrustedLaunch, Standard"),
            (DeployRequest(name: "a", hypervisor: "xen"), Self.gen2, [FleetRules.hypervisor], "hypervisor", "simulated, qemu, libvirt"),
            (DeployRequest(name: "a", hypervisor: "qemu"), Self.gen2, [FleetRules.hypervisor], "hypervisor",
             "apt-get install qemu-system-x86 ovmf"),
            (DeployRequest(name: "a", hypervisor: "libvirt"), Self.gen2, [FleetRules.hypervisor, FleetRules.qemu], "hypervisor",
             "--hypervisor libvirt"),
            (DeployRequest(name: "a", attestationInterval: 0), Self.gen2, [FleetRules.hypervisor], "attestationInterval", "1 to 86400"),
            (DeployRequest(name: "a", attestationInterval: 86_401), Self.gen2, [FleetRules.hypervisor], "attestationInterval",
             "1 to 86400"),
            (DeployRequest(name: "a", baseline: "guess"), Self.gen2, [FleetRules.hypervisor], "baseline", "learn (trust on first use)"),
            (DeployRequest(name: "a", vTpm: false, baseline: "learn"), Self.gen2, [FleetRules.hypervisor], "baseline", "without a vTPM"),
            (DeployRequest(name: "../etc"), Self.gen2, [FleetRules.hypervisor], "name", "VM name"),
            (DeployRequest(name: ""), Self.gen2, [FleetRules.hypervisor], "name", "VM name"),
        ]
        for (request, image, available, field, says) in cases {
            let e = Self.refusal { try FleetRules.deploy(request, image: image, hypervisors: available) }
            #expect(e?.kind == .invalid && e?.field == field && e?.message.contains(says) == true,
                    "\(request): \(String(describing: e))")
        }
        // Where a hypervisor is available, the same request deploys.
        #expect((try? FleetRules.deploy(DeployRequest(name: "a", hypervisor: "qemu"), image: Self.gen2,
                                        hypervisors: [FleetRules.hypervisor, FleetRules.qemu]))?.hypervisor == "qemu")
    }

    @Test func securityTypeImageAndHypervisorAreFixedAtDeployment() throws {
        let vm = try FleetRules.deploy(DeployRequest(name: "web-01"), image: Self.gen2)
        var e = Self.refusal { try FleetRules.update(UpdateRequest(securityType: "Standard"), vm: vm) }
        #expect(e?.kind == .invalid && e?.field == "securityType" && e?.message.contains("cannot be changed after deployment") == true)
        e = Self.refusal { try FleetRules.update(UpdateRequest(image: "other"), vm: vm) }
        #expect(e?.field == "image" && e?.message.contains("tlaunch vm disk put") == true)
        e = Self.refusal { try FleetRules.update(UpdateRequest(hypervisor: "qemu"), vm: vm) }
        #expect(e?.field == "hypervisor")
        // Naming what it already is changes nothing and is no error.
        let same = try FleetRules.update(UpdateRequest(securityType: "trustedlaunch", image: "sample-linux"), vm: vm)
        #expect(same.changes.isEmpty && same.record == vm)
        // A stale version is a conflict that says to read again.
        e = Self.refusal { try FleetRules.update(UpdateRequest(version: vm.version + 1), vm: vm) }
        #expect(e?.kind == .conflict && e?.message.contains("read it again") == true)
    }

    @Test func firmwareSettingsChangeOnlyWhileStoppedAndMonitoringNeedsTheVTPM() throws {
        var vm = try FleetRules.deploy(DeployRequest(name: "web-01"), image: Self.gen2)
        vm.powerState = .running
        var e = Self.refusal { try FleetRules.update(UpdateRequest(secureBoot: false), vm: vm) }
        #expect(e?.kind == .conflict && e?.field == "secureBoot" && e?.message.contains("tlaunch vm stop web-01") == true)
        e = Self.refusal { try FleetRules.update(UpdateRequest(vTpm: false), vm: vm) }
        #expect(e?.kind == .conflict && e?.field == "vTpm")
        // Monitoring may be switched on while it runs: pending until the agent attests.
        let on = try FleetRules.update(UpdateRequest(integrityMonitoring: true), vm: vm)
        #expect(on.monitoringOn && !on.monitoringOff && on.record.bootIntegrity == .pending && on.record.integrityMonitoring)
        #expect(on.changes == ["integrity monitoring on (guest attestation agent enabled)"])
        // With monitoring on, the vTPM cannot go (even stopped): monitoring off first.
        var monitored = on.record
        monitored.powerState = .stopped
        e = Self.refusal { try FleetRules.update(UpdateRequest(vTpm: false), vm: monitored) }
        #expect(e?.kind == .invalid && e?.field == "vTpm" && e?.message.contains("--integrity-monitoring false") == true)
        let off = try FleetRules.update(UpdateRequest(vTpm: false, integrityMonitoring: false), vm: monitored)
        #expect(off.monitoringOff && !off.record.vTPM && off.record.bootIntegrity == .notMonitored)
        #expect(off.changes.contains("vTPM off (from the next boot)") && off.changes.contains("integrity monitoring off"))
        // A Standard VM has no Secure Boot, vTPM or monitoring to switch.
        let standard = try FleetRules.deploy(DeployRequest(name: "old-01", securityType: "Standard"), image: Self.gen1)
        for u in [UpdateRequest(secureBoot: true), UpdateRequest(vTpm: true), UpdateRequest(integrityMonitoring: true)] {
            let r = Self.refusal { try FleetRules.update(u, vm: standard) }
            #expect(r?.kind == .invalid && r?.message.contains("Standard VM") == true, "\(u)")
        }
        e = Self.refusal { try FleetRules.update(UpdateRequest(guestAgent: "paused"), vm: vm) }
        #expect(e?.field == "guestAgent")
    }

    @Test func aSilentVMsAlertSaysWhatToCheckAndWhatNotToTrust() throws {
        var vm = try FleetRules.deploy(DeployRequest(name: "db-01", integrityMonitoring: true, attestationInterval: 60), image: Self.gen2)
        vm.lastAttestation = 0
        let a = AlertBuilder.notReporting(vm, silentSeconds: 180, now: "2026-12-07T10:00:00.000Z")
        #expect(a.kind == .notReporting && a.vm == "db-01" && a.status == .active && a.severity == .medium)
        #expect(
            a.evidence.first?.component == .agent
                && a.evidence.first?.detail.contains("nothing for 180 s while it should attest every 60 s") == true)
        #expect(a.recommendations.contains { $0.contains("`tlaunch vm update db-01 --integrity-monitoring false`") })
        #expect(a.mitigations.contains { $0.contains("do not release secrets") })
        #expect(a.created == "2026-12-07T10:00:00.000Z" && a.fingerprint == "not-reporting")
    }
}
