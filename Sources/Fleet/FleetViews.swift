import Attestation
import Foundation
import GuestAgent
import Logging
import MeasuredBoot
import Storage
import Synchronization
import TPM2
import VirtualFirmware
import VirtualTPM

/// What the API, dashboard and CLI show of VMs: the ARM-shaped view, the overview.
extension Fleet {
    /// The fleet's alerts, newest first, filtered as the API filters them.
    public func alerts(vm: String? = nil, status: AlertStatus? = nil, limit: Int = 500) async throws -> [Alert] {
        try await store.alerts(vm: vm, status: status, limit: limit)
    }

    public func alert(_ id: String) async throws -> Alert? { try await store.alert(id) }
    public func vmCount() async throws -> Int { try await store.vmCount() }

    /// Whether `name` is one of the fleet's VMs (the attestation API acts through the fleet for
    /// those: its baselines and identities have the fleet's records and alerts beside them).
    public func has(_ name: String) async throws -> Bool { try await store.vm(name) != nil }

    public func view(_ vm: VMRecord, alerts: [Alert]? = nil) async throws -> VMView {
        let active: [Alert]
        if let alerts { active = alerts } else { active = try await store.alerts(vm: vm.name, status: .active) }
        var v = VMView(vm, alerts: active)
        v.storageInterruption = interruption(vm.name)
        return v
    }

    /// The fleet by name: all of it, or a page of `limit` VMs after `after`.
    public func list(after: String? = nil, limit: Int? = nil) async throws -> [VMView] {
        let vms = limit == nil && after == nil ? try await store.vms() : try await store.vms(after: after, limit: limit ?? 1000)
        // One query for the active alerts, not one per VM.
        let byVM = Dictionary(grouping: try await store.alerts(status: .active, limit: 10000), by: \.vm)
        var out: [VMView] = []
        for vm in vms { out.append(try await view(vm, alerts: byVM[vm.name] ?? [])) }
        return out
    }

    public func overview(_ name: String) async throws -> VMOverview {
        let vm = try await require(name)
        let history = (try? await service.history(vm: name, limit: 20)) ?? []
        return VMOverview(vm: try await view(vm), baseline: vm.vTPM ? try await baselineSummary(name) : nil, checklist: vm.checklist,
                          recommendations: vm.recommendations, timeline: try await store.events(vm: name, limit: 50), attestations: history)
    }

    func baselineSummary(_ name: String) async throws -> BaselineSummary {
        let mode = try await service.baselineMode(vm: name)
        guard let b = try await service.currentBaseline(vm: name) else {
            let description = switch mode {
            case .learn: "none yet: the first boot with complete evidence that passes the policy becomes it (trust on first use)"
            case .approve: "none yet: the first baseline waits for a person (tlaunch vm baseline approve \(name))"
            case .predicted: "none yet: predicted from the disk (tlaunch vm baseline predict \(name))"
            }
            return BaselineSummary(mode: mode, source: nil, since: nil, attestationId: nil, components: nil, description: description)
        }
        let since = Time.rfc3339(b.updated)
        let description = switch b.source {
        case .learned:
            "learned on first use at \(since) from attestation \(b.attestationID ?? "?") — approve or predict one to replace it"
        case .approved: "approved at \(since) from attestation \(b.attestationID ?? "?")"
        case .predicted: "predicted from the disk at \(since) (\(b.components.filter { $0.kind == .pcr }.count) PCR values, "
                       + "\(b.components.filter { $0.kind != .pcr }.count) events that explain changes)"
        }
        return BaselineSummary(mode: mode, source: b.source, since: since, attestationId: b.attestationID, components: b.components.count,
                               description: description)
    }
}
