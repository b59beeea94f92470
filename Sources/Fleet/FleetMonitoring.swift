import Attestation
import AttestationAPI
import Foundation
import GuestAgent
import Logging
import MeasuredBoot
import Storage
import Synchronization
import TPM2
import VirtualFirmware
import VirtualTPM

/// Integrity monitoring: attestations (the platform's in-process agent, or a real guest's own),
/// their outcomes recorded with alerts, baselines, silent VMs, and resuming after a restart.
extension Fleet {
    /// Runs the VM's guest attestation agent once (it enrols first if needed). The outcome
    /// reaches `record` through the service's API, as any agent's does.
    @discardableResult
    public func attestNow(_ name: String) async -> Result<AttestationOutcome, any Error> {
        let vm: VMRecord
        do { vm = try await require(name) } catch { return .failure(error) }
        do {
            return .success(try await hypervisor(for: vm).attest(name))
        } catch let refused as FleetError {
            return .failure(refused)   // the VM cannot be attested this way now (not running, a real VM): nothing ran
        } catch {
            logger.warning("attestation did not run", metadata: ["vm": .string(name), "error": .string("\(error)")])
            try? await store.appendEvent(vm: name, kind: .attestationError, message: "the guest agent could not attest: \(error)")
            return .failure(error)
        }
    }

    /// Records an attestation outcome (called by the API for every attestation, from any agent):
    /// boot integrity, the VM's timeline, and alerts raised or resolved.
    public func record(vm name: String, outcome o: AttestationOutcome) async throws {
        var before: BootIntegrity = .notMonitored
        let vm: VMRecord
        do {
            vm = try await mutate(name) { v in
                before = v.bootIntegrity
                v.lastAttestation = Time.millis()
                v.lastAttestationID = o.id
                let waiting = !o.passed && o.checks.allSatisfy { $0.passed || ($0.category == .baseline && $0.outcome == .unknown) }
                v.bootIntegrity = v.integrityMonitoring ? (o.passed ? .healthy : (waiting ? .pending : .unhealthy)) : .notMonitored
            }
        } catch let e as FleetError where e.kind == .notFound || e.kind == .invalid {
            return   // not a VM of this fleet
        }
        // The timeline says what changed: a monitored VM that was healthy and attests healthy
        // again adds nothing to it (its attestation history has every one). Every 5 minutes for
        // each VM of a fleet, those would bury its boots, alerts and changes.
        if !(o.passed && before == .healthy && vm.integrityMonitoring) {
            try await store.appendEvent(vm: name, kind: o.passed ? .attested : .attestationFailed,
                                        message: o.passed ? "attestation \(o.id) passed (\(o.baseline?.rawValue ?? o.status))"
                    : "attestation \(o.id) failed: "
                        + o.checks.filter { !$0.passed }.map { "\($0.name): \($0.reason)" }.joined(separator: "; "))
        }
        // The VM's active alerts, read once for both resolutions (most VMs have none).
        let active = try await store.alerts(vm: name, status: .active)
        if !active.isEmpty {
            try await resolve(vm: name, among: active, kinds: [.notReporting], resolution: "the agent reported again (attestation \(o.id))")
        }
        if o.passed {
            if !active.isEmpty {
                try await resolve(vm: name, among: active, kinds: [.bootIntegrity],
                                  resolution: "boot \(vm.lastBoot?.number ?? 0) attested healthy (attestation \(o.id))")
            }
        } else if vm.integrityMonitoring, let alert = AlertBuilder.attestation(o, vm: vm) {
            try await raise(alert)
        }
    }

    /// Lets the VM's next enrolment bind another TPM (its vTPM was replaced on purpose): an alert
    /// says so, and the baseline is reset when the new TPM enrols.
    public func allowRebind(_ name: String, by who: String) async throws {
        let vm = try await require(name)
        try await service.allowRebind(vm: name)
        try await store.appendEvent(vm: name, kind: .identity,
                                    message: "\(who) allowed the next enrolment to bind another TPM; the baseline is reset when it enrols")
        try await raise(AlertBuilder.rebind(vm, by: who))
    }

    /// Approves the VM's last boot as its baseline; its boot-integrity alerts are resolved and,
    /// when it runs with monitoring, it attests again at once.
    public func approveBaseline(_ name: String, attestationID: String? = nil) async throws -> BaselineRecord {
        let vm = try await require(name)
        let b = try await service.approveBaseline(vm: name, attestationID: attestationID)
        try await store.appendEvent(vm: name, kind: .baseline, message: "baseline approved from attestation \(b.attestationID ?? "?") "
                                                                      + "(\(b.components.count) components)")
        try await resolve(vm: name, kinds: [.bootIntegrity],
                          resolution: "the boot was approved as the new baseline (attestation \(b.attestationID ?? "?"))")
        if vm.powerState == .running, vm.integrityMonitoring, vm.guestAgent == .running, !hypervisor(for: vm).guestRunsAgent,
            hypervisor(for: vm).isRunning(name)
        {
            await attestNow(name)
        } else if vm.integrityMonitoring {
            try await mutate(name) { $0.bootIntegrity = .pending }
        }
        return b
    }

    /// Sets the VM's baseline from the PCR values the virtual firmware predicts for its disk and
    /// settings, before (or instead of) learning it from a boot: PCRs 0–5, 7 (firmware, boot
    /// applications, Secure Boot policy) and 8, 9 (grub's commands and files, the kernel command line).
    public func predictBaseline(_ name: String) async throws -> BaselineRecord {
        let vm = try await require(name)
        guard vm.firmwareVTPM else {
            throw FleetError(.invalid, "\(name) has no vTPM: nothing is measured, so there is no baseline to predict", field: "name")
        }
        let image = try images.disk(try await image(vm.image))
        let hypervisor = hypervisor(for: vm)
        guard let files = try folder(name).esp(over: image) else {
            throw FleetError(.invalid, "\(name)'s image is a BIOS disk: nothing to predict")
        }
        // Under the VM's lock: a real VM's disk may be (re)built, as a boot would.
        let esp = try await locks.with(name) { try hypervisor.firmwareView(vm, esp: files) }
        let report: LaunchReport
        do {
            // The hypervisor's firmware, modelled: what the disk and keys decide is predicted.
            report = try VirtualFirmware(settings: FirmwareSettings(secureBoot: vm.firmwareSecureBoot, vTPM: true,
                                                                    variables: image.variables),
                                         model: hypervisor.firmwareModel, cache: context.cache).predict(esp: esp)
        } catch { throw FleetError(.failed, "prediction failed: \(error)") }
        guard report.succeeded else {
            throw FleetError(.conflict,
                             "the firmware would not boot \(name)'s disk (\(report.failure.map { "\($0)" } ?? "?")): fix the disk first")
        }
        let values = report.pcrs
        var pcrs: [String: String] = [:]
        for p in hypervisor.predictedPCRs { if let v = values[.sha256, p] { pcrs[String(p)] = hexString(v) } }
        let b = try await service.setPredictedBaseline(vm: name, pcrs: pcrs, log: report.log)
        try await store.appendEvent(
            vm: name, kind: .baseline,
            message: "baseline set from predicted PCRs \(pcrs.keys.compactMap(Int.init).sorted().map(String.init).joined(separator: ", "))")
        return b
    }

    public func resetBaseline(_ name: String) async throws {
        _ = try await require(name)
        try await service.resetBaseline(vm: name)
        try await store.appendEvent(vm: name, kind: .baseline, message: "baseline reset: the next healthy boot becomes the baseline")
    }

    /// One pass of the monitor: periodic attestations that are due, and silent VMs.
    public func monitorOnce(now: Int64 = Time.millis()) async {
        await recordInterruptions()
        if !webhooks.urls.isEmpty { await deliverDue() }
        if now - lastHostCheck.withLock({ $0 }) >= hostCheckInterval { await checkHosts(now: now) }
        guard let vms = try? await store.monitoredRunning(dueBy: now) else { return }
        for vm in vms {
            let since = vm.lastAttestation ?? vm.lastBoot.flatMap { Self.parse($0.time) } ?? vm.updated
            let silentFor = Int((now - since) / 1000)
            let hypervisor = hypervisor(for: vm)
            if vm.guestAgent == .running, !hypervisor.guestRunsAgent, hypervisor.isRunning(vm.name),
                now - since >= Int64(vm.attestationInterval) * 1000
            {
                await attestNow(vm.name)
                continue
            }
            if now - since >= Int64(vm.attestationInterval * silentIntervals) * 1000 {
                // Once per silence: not while its alert is active, nor again after a person
                // dismissed it (an alert raised since the last report) — every pass used to count
                // a repeat and send an "alert.repeated" webhook, once a second per silent VM.
                let silentSince = Time.rfc3339(since)
                let told = (try? await store.alerts(vm: vm.name))?.contains {
                    $0.kind == .notReporting && ($0.status == .active || $0.created >= silentSince)
                } ?? false
                if !told { try? await raise(AlertBuilder.notReporting(vm, silentSeconds: silentFor)) }
            }
        }
    }

    /// Runs the monitor every `tick` until cancelled.
    public func monitor(tick: Duration = .seconds(1)) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: tick)
            await monitorOnce()
        }
    }

    /// Boots again the VMs the database says are running but this process has not booted
    /// (after a restart of the platform, its VMs restart).
    public func resume() async {
        await refreshHosts()
        guard let vms = try? await store.vms() else { return }
        for vm in vms { await repair(vm) }
        // Running, or Unknown on a host that answers now (the run that booted it is gone): booted again.
        let answering = Set(hostCache.withLock { $0.values.filter { $0.state == .reachable }.map(\.name) })
        for vm in vms where (vm.powerState == .running || (vm.powerState == .unknown && vm.host.map(answering.contains) == true))
                              && !hypervisor(for: vm).isRunning(vm.name) {
            if let done = await hypervisor(for: vm).reclaim(vm.name) {
                logger.notice("\(done)", metadata: ["vm": .string(vm.name)])
                try? await store.appendEvent(vm: vm.name, kind: .resumed, message: "\(done); booting it again")
            }
            _ = try? await tracked(vm.name, "resume") { try await bootNow(vm.name, verb: "resume after platform restart") }
            if vm.powerState == .unknown {
                try? await resolve(vm: vm.name, kinds: [.hostUnreachable],
                                   resolution: "host \(vm.host ?? "") answers; the restarted platform booted the VM again")
            }
        }
    }

    static func parse(_ rfc3339: String) -> Int64? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: rfc3339).map { Time.millis($0) }
    }

    /// The guest's own view: what its agent reports (a real VM), or computes inside the simulated guest.
    public func guestStatus(_ name: String) async -> GuestStatus? {
        guard let vm = try? await require(name) else { return nil }
        return await hypervisor(for: vm).guestStatus(name)
    }
}
