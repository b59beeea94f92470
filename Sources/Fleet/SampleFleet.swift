import Foundation
import VirtualFirmware

/// The sample fleet `tlaunch up` deploys on first start and `tlaunch demo` walks through: a
/// healthy Trusted Launch VM with integrity monitoring, one whose boot loader is then replaced
/// by another signed grub (Secure Boot lets it run; measurement catches it), and a Standard VM.
public enum SampleFleet {
    public static let healthy = "web-01"
    public static let tampered = "app-02"
    public static let standard = "legacy-03"
    public static let grubPath = "/EFI/BOOT/grubx64.efi"

    /// Deploys the three VMs and replaces app-02's boot loader; returns the alert that raised.
    /// With `realVMs`, web-01 and app-02 are real QEMU VMs from debian-12 (their own agents
    /// attest from inside), and app-02's story is a weakened kernel command line instead.
    @discardableResult
    public static func deploy(_ fleet: Fleet, interval: Int = 300, realVMs: Bool = false, realHypervisor: String = FleetRules.qemu,
                              say: @Sendable (String) -> Void) async throws -> Alert? {
        if realVMs {
            say("deploying \(healthy): a real VM (QEMU + OVMF Secure Boot, debian-12), Trusted Launch with integrity monitoring")
            _ = try await fleet.deploy(DeployRequest(name: healthy, image: "debian-12", integrityMonitoring: true,
                                                     hypervisor: realHypervisor, attestationInterval: interval))
            say("deploying \(tampered): a real VM, Trusted Launch with integrity monitoring")
            _ = try await fleet.deploy(DeployRequest(name: tampered, image: "debian-12", integrityMonitoring: true,
                                                     hypervisor: realHypervisor, attestationInterval: interval))
            say("deploying \(standard): security type Standard (chosen explicitly), a Generation 1 image (simulated: BIOS)")
            _ = try await fleet.deploy(DeployRequest(name: standard, image: "legacy-bios", securityType: "Standard",
                                                     attestationInterval: interval))
            return try await weakenKernelCommandLine(fleet, say: say)
        }
        say("deploying \(healthy): Trusted Launch (the default) with integrity monitoring")
        _ = try await fleet.deploy(DeployRequest(name: healthy, integrityMonitoring: true, attestationInterval: interval))
        say("deploying \(tampered): Trusted Launch with integrity monitoring")
        _ = try await fleet.deploy(DeployRequest(name: tampered, integrityMonitoring: true, attestationInterval: interval))
        say("deploying \(standard): security type Standard (chosen explicitly), a Generation 1 image")
        _ = try await fleet.deploy(DeployRequest(name: standard, image: "legacy-bios", securityType: "Standard",
                                                 attestationInterval: interval))
        try await learnBaseline(fleet, vm: tampered, say: say)
        return try await replaceBootLoader(fleet, say: say)
    }

    /// The story compares app-02's changed boot with its good one: that boot must have been
    /// attested (its baseline learned) before the change. An attestation that did not run at
    /// deployment (a service too slow to answer) is tried again; otherwise the changed boot
    /// would be learned on first use and nothing would be caught.
    static func learnBaseline(_ fleet: Fleet, vm: String, say: @Sendable (String) -> Void) async throws {
        for attempt in 1...5 {
            if try await fleet.service.currentBaseline(vm: vm) != nil { return }
            say("\(vm) has no baseline yet (its attestation did not complete): attesting again (\(attempt))")
            if case .failure(let error) = await fleet.attestNow(vm) { say("  \(error)") }
            try await Task.sleep(for: .seconds(attempt))
        }
        if try await fleet.service.currentBaseline(vm: vm) == nil {
            throw FleetError(.failed, "\(vm) could not be attested, so it has no baseline to compare a change with")
        }
    }

    /// Puts an older grub build — still signed by the vendor key shim trusts — on app-02's disk
    /// and restarts it: the boot succeeds under Secure Boot, and the attestation shows the change.
    @discardableResult
    public static func replaceBootLoader(_ fleet: Fleet, vm tampered: String = tampered,
                                         say: @Sendable (String) -> Void) async throws -> Alert? {
        let keys = try PlatformKeys.loadOrCreate(directory: fleet.images.keysDirectory)
        let grub = try SampleImages.signedGrub(keys: keys, version: "2.06")
        say("replacing \(grubPath) on \(tampered) with an older grub (2.06) that is still signed by the vendor key, and restarting it")
        _ = try await fleet.putFile(tampered, path: grubPath, bytes: grub)
        _ = try await fleet.restart(tampered)
        return try await fleet.store.alerts(vm: tampered, status: .active).first
    }
}

extension SampleFleet {
    public static let grubConfigPath = "/EFI/debian/grub.cfg"

    /// Edits app-02's grub.cfg — not covered by Secure Boot — to switch AppArmor off on the
    /// kernel command line, and restarts it: the VM boots, and measured boot shows the change.
    @discardableResult
    public static func weakenKernelCommandLine(_ fleet: Fleet, vm tampered: String = tampered,
                                               say: @Sendable (String) -> Void) async throws -> Alert? {
        let config = "set timeout=0\nlinux /vmlinuz console=ttyS0 root=/dev/vda2 ro apparmor=0 security=none\ninitrd /initrd.img\nboot\n"
        say("editing \(grubConfigPath) on \(tampered) (apparmor=0 security=none: Secure Boot does not cover grub.cfg) and restarting it")
        _ = try await fleet.putFile(tampered, path: grubConfigPath, bytes: Array(config.utf8))
        _ = try await fleet.restart(tampered)
        return try await fleet.store.alerts(vm: tampered, status: .active).first
    }
}

/// The older signed grub the sample fleet's story uses, for tests and tools.
public enum SampleFleetGrub {
    public static func make(_ keysDirectory: URL, version: String = "2.06") throws -> [UInt8] {
        try SampleImages.signedGrub(keys: try PlatformKeys.loadOrCreate(directory: keysDirectory), version: version)
    }
}
