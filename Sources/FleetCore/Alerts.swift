import AttestationAPI
import Foundation

/// Turns what integrity monitoring saw into alerts a person can act on: which component changed,
/// from what to what, where it was measured, and what to do.
public enum AlertBuilder {
    /// The component a baseline change belongs to, as a person groups it.
    static func component(_ c: BaselineChange) -> AlertComponent {
        switch c.kind {
        case .firmware: return .firmware
        case .secureBootConfiguration, .secureBootAuthority, .mok: return .secureBootConfiguration
        case .bootLoader: return .bootLoader
        case .bootApplication:
            let n = c.name.lowercased()
            return n.contains("vmlinuz") || n.contains("bzimage") || n.contains("linux") ? .kernel : .bootLoader
        case .kernel: return .kernel
        case .initrd: return .initrd
        case .kernelCommandLine: return .kernelCommandLine
        case .bootLoaderCommand, .bootLoaderFile: return .bootLoaderConfiguration
        case .pcr: return .pcrValue
        default: return AlertComponent(rawValue: c.kind.rawValue)
        }
    }

    /// The authorities that verified an image, without shim's SBAT level (not a signer).
    static func signer(_ s: String?) -> String? {
        guard let s else { return nil }
        let parts = s.components(separatedBy: "; ").filter { !$0.hasPrefix("SbatLevel") }.map {
            $0.replacingOccurrences(of: "\n", with: " ")
        }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }

    static func short(_ s: String?) -> String? {
        guard let s else { return nil }
        return s.count == 64 && s.allSatisfy(\.isHexDigit) ? "sha256:" + s.prefix(16) + "…" : s
    }

    /// The alert for a failed attestation of `vm` (nil when it passed).
    public static func attestation(_ o: AttestationOutcome, vm: VMRecord, now: String = Time.now()) -> Alert? {
        guard !o.passed else { return nil }
        // Images the boot ran, by Authenticode digest (the PCR 4 event digest): names an image
        // load whose event carries no file path (e.g. a kernel loaded from memory).
        let stages = Dictionary((vm.lastBoot?.stages ?? []).map { ($0.sha256, $0) }, uniquingKeysWith: { a, _ in a })
        var seen = Set<String>()
        var evidence: [AlertEvidence] = o.changes.compactMap { change -> AlertEvidence? in
            var c = change
            c.fromSigner = signer(c.fromSigner)
            c.toSigner = signer(c.toSigner)
            var comp = component(c)
            if c.pcr == 4, let stage = c.to.flatMap({ stages[$0] }) {
                comp = stage.kind == "linux" ? .kernel : (["shim", "grub"].contains(stage.kind) ? .bootLoader : comp)
                if c.name.isEmpty || c.name.hasPrefix("image ") { c.name = stage.path }
            }
            guard seen.insert("\(comp)|\(c.name)|\(c.from ?? "")|\(c.to ?? "")").inserted else { return nil }
            let detail: String
            switch c.change {
            case .changed: detail = "\(comp.title) \(c.name) (PCR \(c.pcr)) changed from "
                                  + "\(short(c.from) ?? "?")\(c.fromSigner.map { " signed by \($0)" } ?? "") to "
                                  + "\(short(c.to) ?? "?")\(c.toSigner.map { " signed by \($0)" } ?? "")"
            case .added: detail = "\(comp.title) \(c.name) (PCR \(c.pcr)) was not in the baseline: "
                                + "\(short(c.to) ?? "?")\(c.toSigner.map { " signed by \($0)" } ?? "")"
            case .removed: detail = "\(comp.title) \(c.name) (PCR \(c.pcr)) from the baseline did not run (was \(short(c.from) ?? "?"))"
            }
            return AlertEvidence(component: comp, name: c.name, change: c.change.rawValue, from: c.from, to: c.to, fromSigner: c.fromSigner,
                                 toSigner: c.toSigner, pcr: Int(c.pcr), detail: detail)
        }
        for check in o.checks where !check.passed && (check.category != .baseline || o.changes.isEmpty) {
            let comp: AlertComponent
            switch check.category {
            case .evidence: comp = .attestationEvidence
            case .fileSystem: comp = .imaFile
            case .baseline: comp = .baseline
            case .executables, .configuration: comp = .policy
            }
            evidence.append(AlertEvidence(component: comp, name: check.name.rawValue,
                                          change: check.outcome == .unknown ? "unknown" : "failed", from: nil, to: nil,
                                          fromSigner: nil, toSigner: nil, pcr: nil, detail: "\(check.name): \(check.reason)"))
        }
        let components = Array(Set(evidence.map(\.component))).sorted()
        let severe: Set<AlertComponent> = [.firmware, .secureBootConfiguration, .bootLoader, .attestationEvidence, .policy, .imaFile]
        let severity: AlertSeverity = components.contains(where: severe.contains) ? .high : (components == [.baseline] ? .low : .medium)
        let title: String
        let changed = evidence.filter { $0.change != "failed" && $0.change != "unknown" }
        if changed.count == 1, let e = changed.first, evidence.count == 1 {
            title = "\(e.component.title.prefix(1).uppercased() + e.component.title.dropFirst()) changed: \(e.name)"
        } else if !changed.isEmpty {
            title = "Boot changed: " + Array(Set(changed.map { $0.component.title })).sorted().joined(separator: ", ")
        } else if evidence.contains(where: { $0.component == .attestationEvidence }) {
            title = "Attestation evidence failed verification"
        } else if components == [.baseline] {
            title = "No baseline yet: the boot waits for approval"
        } else {
            title = "Boot violates the attestation policy: " + evidence.map(\.name).joined(separator: ", ")
        }
        let boot = vm.lastBoot.map { "boot \($0.number) at \($0.time)" } ?? "its boot"
        var description = "Integrity monitoring found that \(boot) of \(vm.name) is not what it should be (attestation \(o.id), "
                        + "\(o.status))."
        if let b = o.baseline { description += " Baseline: \(b)." }
        description += " " + evidence.map(\.detail).joined(separator: "; ") + "."

        var recommendations: [String] = [], mitigations: [String] = []
        let paths = changed.filter { [.bootLoader, .kernel, .initrd].contains($0.component) }.map(\.name)
        if components.contains(where: { [.kernel, .initrd, .kernelCommandLine, .bootLoader, .bootLoaderConfiguration].contains($0) }) {
            let what = components.contains(.bootLoader)
                ? "a boot loader update (shim or grub package)" : "an OS update (new kernel, initrd or command line)"
            recommendations.append("If you installed \(what), approve this boot as the new baseline: `tlaunch vm baseline approve "
                                 + "\(vm.name)`.")
            recommendations.append("Otherwise stop the VM, keep its disk for investigation, and check who changed "
                                 + "\(paths.isEmpty ? "the boot configuration" : paths.joined(separator: ", ")).")
        }
        if components.contains(.firmware) {
            recommendations.append("The firmware is the platform's, not the guest's: unless the platform was updated, report this to the "
                                 + "platform operator and move the VM to another host.")
        }
        if components.contains(.secureBootConfiguration) {
            recommendations.append("Compare the VM's Secure Boot databases with the image's (`tlaunch vm show \(vm.name)`); a dbx update "
                                 + "is expected after revocations, a new db or KEK entry is not.")
        }
        if components.contains(.policy) {
            recommendations.append("Read the failed policy checks above: the boot ran something the policy does not allow. Fix the VM, or "
                                 + "if the policy is wrong, change it (`PUT /v1/policy`) after checking it with `POST /v1/what-if`.")
        }
        if components.contains(.attestationEvidence) {
            recommendations.append("The evidence itself did not verify (quote, log or counters): treat the VM as compromised until it "
                                 + "attests again from a clean boot.")
        }
        if components.contains(.baseline) {
            recommendations.append("Check the boot (`tlaunch vm show \(vm.name)`, its boot chain and Secure Boot state) and approve it as "
                                 + "the VM's first baseline: `tlaunch vm baseline approve \(vm.name)`; or set one from its disk: `tlaunch "
                                 + "vm baseline predict \(vm.name)`.")
        }
        if o.baselineSource?.source == .predicted && !changed.isEmpty {
            recommendations.append("The baseline was set from predicted PCR values: if the disk changed on purpose, predict again from it "
                                 + "(`tlaunch vm baseline predict \(vm.name)`) or approve this boot: `tlaunch vm baseline approve "
                                 + "\(vm.name)`.")
        }
        let signers = Set(changed.compactMap(\.toSigner))
        if !signers.isEmpty, components.contains(.bootLoader) {
            mitigations.append("The new boot loader is signed by \(signers.sorted().joined(separator: "; ")), which the VM's db trusts: "
                             + "if it is an older, vulnerable build, revoke it (dbx or SBAT update) so no VM can boot it.")
        }
        mitigations.append("Stop the VM until the change is explained: `tlaunch vm stop \(vm.name)`.")
        mitigations.append("Do not release secrets to this VM: tokens for it are no longer issued while it fails attestation.")
        let fingerprint =
            "boot-integrity:" + evidence.map { "\($0.component)|\($0.name)|\($0.to ?? $0.detail)" }.sorted().joined(separator: ",")
        return Alert(id: newID(), vm: vm.name, kind: .bootIntegrity, severity: severity, status: .active, title: title,
                     description: description,
                     evidence: evidence, recommendations: recommendations, mitigations: mitigations, attestationID: o.id,
                     created: now, updated: now, occurrences: 1, resolution: nil, fingerprint: String(fingerprint.prefix(2000)))
    }

    /// A boot the firmware refused (e.g. a boot loader Secure Boot does not trust).
    public static func bootFailure(_ b: BootSummary, vm: VMRecord, now: String = Time.now()) -> Alert {
        let reason = b.failure ?? "unknown"
        let secureBoot =
            reason.lowercased().contains("secure boot") || reason.lowercased().contains("not signed")
            || reason.lowercased().contains("signature") || reason.lowercased().contains("dbx")
        let ev = AlertEvidence(component: .bootFailure, name: "boot \(b.number)", change: "failed", from: nil, to: nil, fromSigner: nil,
                               toSigner: nil,
                               pcr: nil, detail: reason)
        var recs = ["Read the console of boot \(b.number): the firmware stopped at \(reason)."]
        if secureBoot {
            recs.append("Secure Boot refused an image that is not signed by a key in the VM's db, or that dbx revokes. If you replaced "
                      + "it, restore the signed file (`tlaunch vm disk put \(vm.name) PATH FILE`); if the change was not yours, keep the "
                      + "disk for investigation.")
        }
        return Alert(id: newID(), vm: vm.name, kind: .bootFailure, severity: .high, status: .active,
                     title: "Boot failed\(secureBoot ? ": Secure Boot violation" : "")",
                     description: "Boot \(b.number) of \(vm.name) at \(b.time) did not reach the operating system: \(reason).",
                     evidence: [ev], recommendations: recs, mitigations: ["The VM is not running: nothing the refused image would have "
                                                                        + "done has happened."],
                     attestationID: nil, created: now, updated: now, occurrences: 1, resolution: nil, fingerprint: "boot-failure:" + reason)
    }

    /// A storage failure (full or read-only data folder, database down) interrupted an operation
    /// on the VM: what was interrupted, and that its record may be behind its vTPM and disk.
    public static func storageInterrupted(_ vm: VMRecord, operation: String, reason: String, at: String,
                                          now: String = Time.now()) -> Alert {
        let ev = AlertEvidence(component: .storage, name: operation, change: "interrupted", from: nil, to: nil, fromSigner: nil,
                               toSigner: nil, pcr: nil, detail: reason)
        return Alert(id: newID(), vm: vm.name, kind: .storageFailure, severity: .medium, status: .active,
                     title: "Storage failure interrupted \(operation)",
                     description: "At \(at) the platform could not write its data folder or database while it ran \(operation) on "
                                + "\(vm.name): \(reason). What the record says may be behind what happened to the VM's vTPM and disk.",
                     evidence: [ev],
                     recommendations: ["Free space on (or make writable) the disk that holds the data folder; `curl /readyz` answers 200 "
                                     + "again when the platform can write.",
                                       "Read the VM's last attestation (it was attested again when storage came back, if it runs with "
                                     + "monitoring), and restart it (`tlaunch vm restart \(vm.name)`) for a boot the platform has "
                                     + "recorded from start to end."],
                     mitigations: ["While storage failed, every change was refused with an error: no operation reported success that was "
                                 + "not recorded."],
                     attestationID: nil, created: now, updated: now, occurrences: 1, resolution: nil,
                     fingerprint: "storage-failure:" + operation)
    }

    /// A real VM's QEMU exited without the platform asking (killed, crashed, out of memory).
    public static func crashed(_ vm: VMRecord, how: String, console: String, now: String = Time.now()) -> Alert {
        let ev = AlertEvidence(component: .hypervisor, name: "QEMU of \(vm.name)", change: "exited", from: nil, to: nil, fromSigner: nil,
                               toSigner: nil, pcr: nil,
                               detail: "QEMU \(how); the console's last lines: \(console.isEmpty ? "(empty)" : console)")
        return Alert(id: newID(), vm: vm.name, kind: .vmFailed, severity: .high, status: .active, title: "VM stopped unexpectedly",
                     description: "\(vm.name)'s QEMU \(how) while it ran boot \(vm.lastBoot?.number ?? 0); the VM is off (power state "
                                + "Failed).",
                     evidence: [ev],
                     recommendations: ["Read the console (`tlaunch vm console \(vm.name)`) and the host's log (dmesg: the OOM killer?) "
                                     + "for why it stopped.",
                                       "Start it again when the cause is understood: `tlaunch vm start \(vm.name)` (a new measured boot, "
                                     + "attested as any other)."],
                     mitigations: ["Nothing runs in the VM now; its vTPM state is kept, encrypted, for its next boot."],
                     attestationID: nil, created: now, updated: now, occurrences: 1, resolution: nil, fingerprint: "vm-failed")
    }

    /// The VM's libvirt host stopped answering: whether the VM runs, and what runs in it, is unknown.
    public static func hostUnreachable(_ vm: VMRecord, host: LibvirtHost, now: String = Time.now()) -> Alert {
        let ev = AlertEvidence(component: .host, name: "libvirt host \(host.name)", change: "unreachable", from: "Reachable",
                               to: "Unreachable", fromSigner: nil, toSigner: nil, pcr: nil,
                               detail: "\(host.uri): \(host.detail); last answered \(host.lastSeen.map(Time.rfc3339) ?? "never")")
        return Alert(id: newID(), vm: vm.name, kind: .hostUnreachable, severity: .high, status: .active,
                     title: "Host unreachable: VM state unknown",
                     description: "\(vm.name) runs on libvirt host \(host.name), which does not answer since \(Time.rfc3339(host.since)). "
                                + "The platform cannot see, stop or attest the VM: its power state is Unknown and its boot integrity "
                                + "unverified until the host answers again.",
                     evidence: [ev],
                     recommendations: ["Check the host and its libvirtd (`virsh -c \(host.uri) version`): network, TLS/SSH credentials, "
                                     + "the daemon.",
                                       "When the host answers, the platform looks the VM up again: Running if its domain kept running, "
                                     + "Failed (with an alert) if not."],
                     mitigations: ["Treat the VM as unverified: do not release secrets to it until it attests again.",
                                   "If the host is gone for good, delete the VM (`tlaunch vm delete \(vm.name)`) and deploy it again on "
                                 + "another host."],
                     attestationID: nil, created: now, updated: now, occurrences: 1, resolution: nil,
                     fingerprint: "host-unreachable:\(host.name)")
    }

    /// A monitored VM whose agent has not attested for longer than it should.
    public static func notReporting(_ vm: VMRecord, silentSeconds: Int, now: String = Time.now()) -> Alert {
        let last = vm.lastAttestation.map { Time.rfc3339($0) } ?? "never (since boot \(vm.lastBoot?.number ?? 0))"
        let ev = AlertEvidence(component: .agent, name: "guest attestation agent", change: "silent", from: nil, to: nil, fromSigner: nil,
                               toSigner: nil, pcr: nil,
                               detail: "last attestation \(last); nothing for \(silentSeconds) s while it should attest every "
                                     + "\(vm.attestationInterval) s")
        return Alert(id: newID(), vm: vm.name, kind: .notReporting, severity: .medium, status: .active, title: "VM stopped reporting",
                     description: "\(vm.name) is running with integrity monitoring but its guest attestation agent has not attested for "
                                + "\(silentSeconds) s (last: \(last)). Its boot integrity is unknown.",
                     evidence: [ev],
                     recommendations: ["Check the agent inside the guest (`tlaunch agent status`; the tlaunch-agent service) and that the "
                                     + "guest reaches the attestation service.",
                                       "If the agent was stopped on purpose, switch integrity monitoring off: `tlaunch vm update "
                                     + "\(vm.name) --integrity-monitoring false`."],
                     mitigations: ["Treat the VM as unverified: do not release secrets to it until it attests again."],
                     attestationID: nil, created: now, updated: now, occurrences: 1, resolution: nil, fingerprint: "not-reporting")
    }

    /// An admin allowed the VM to bind another TPM: whoever enrols next with a trusted EK
    /// becomes the VM's identity, so a person should know it happened.
    public static func rebind(_ vm: VMRecord, by who: String, now: String = Time.now()) -> Alert {
        let ev = AlertEvidence(component: .vtpmIdentity, name: "vTPM binding", change: "rebind-allowed", from: nil, to: nil,
                               fromSigner: nil, toSigner: nil, pcr: nil,
                               detail: "\(who) allowed \(vm.name)'s next enrolment to present another TPM (EK) than the one it is bound to")
        return Alert(id: newID(), vm: vm.name, kind: .identity, severity: .medium, status: .active, title: "vTPM identity may change",
                     description: "\(vm.name) will accept a different TPM at its next enrolment (allowed by \(who)); its baseline is "
                                + "reset when that TPM enrols, and its next boot is learned or approved again.",
                     evidence: [ev],
                     recommendations: ["If the VM's vTPM was not replaced on purpose, delete the VM's agent token and deploy it again: an "
                                     + "unexpected TPM is an attacker's.",
                                       "After the new TPM enrolled, check its first boot (`tlaunch vm show \(vm.name)`) and dismiss this "
                                     + "alert."],
                     mitigations: ["Do not release secrets to the VM until its new TPM attests a boot you approved."],
                     attestationID: nil, created: now, updated: now, occurrences: 1, resolution: nil, fingerprint: "identity:rebind")
    }

    static func newID() -> String { "alert-" + UUID().uuidString.lowercased().prefix(13).replacingOccurrences(of: "-", with: "") }
}
