import AttestationAPI
import Foundation

/// A VM as the API and `--json` show it: the Azure Resource Manager shape cloud users know.
public struct VMView: Sendable, Codable, Hashable {
    public struct SecurityProfile: Sendable, Codable, Hashable {
        public struct UEFISettings: Sendable, Codable, Hashable { public var secureBootEnabled: Bool; public var vTpmEnabled: Bool }
        public var securityType: String
        public var uefiSettings: UEFISettings
    }
    public struct Monitoring: Sendable, Codable, Hashable {
        public var enabled: Bool
        public var bootIntegrity: BootIntegrity
        public var lastAttestation: String?
        public var attestationIntervalSeconds: Int
        public var guestAgent: String
        enum CodingKeys: String, CodingKey { case enabled, bootIntegrity, lastAttestation, attestationIntervalSeconds, guestAgent }
        /// `lastAttestation` is null (not absent) before the first attestation, as ARM writes it.
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(enabled, forKey: .enabled)
            try c.encode(bootIntegrity, forKey: .bootIntegrity)
            try c.encode(lastAttestation, forKey: .lastAttestation)
            try c.encode(attestationIntervalSeconds, forKey: .attestationIntervalSeconds)
            try c.encode(guestAgent, forKey: .guestAgent)
        }
    }
    public struct AlertRef: Sendable, Codable, Hashable {
        public var id: String; public var severity: String; public var status: String; public var title: String; public var created: String
    }
    /// The ARM resource shape beside the platform's own fields, so tools written against an
    /// Azure VM's JSON find what they look for: `id`, `type`, `location` and `properties`.
    public static let resourceType = "TrustedLaunch.Compute/virtualMachines"
    /// `/providers/TrustedLaunch.Compute/virtualMachines/NAME` (one platform, no subscriptions or
    /// resource groups: the path ARM would give below them).
    public var id: String
    public var type: String
    /// Where it runs: its libvirt host, else `local` (the platform's own machine).
    public var location: String
    public var properties: Properties

    /// What an Azure VM's `properties` holds that this platform has: the same facts as the
    /// fields beside them, in ARM's names.
    public struct Properties: Sendable, Codable, Hashable {
        public struct StorageProfile: Sendable, Codable, Hashable {
            public struct ImageReference: Sendable, Codable, Hashable { public var id: String }
            public var imageReference: ImageReference
        }
        public struct InstanceView: Sendable, Codable, Hashable {
            public struct Status: Sendable, Codable, Hashable { public var code: String; public var displayStatus: String }
            public var statuses: [Status]
        }
        /// Succeeded, or Failed when an interrupted operation is not yet recorded.
        public var provisioningState: String
        public var timeCreated: String
        public var securityProfile: SecurityProfile
        public var storageProfile: StorageProfile
        /// `PowerState/running` and its words, as `az vm get-instance-view` shows them.
        public var instanceView: InstanceView
    }

    public var name: String
    public var image: String
    public var hypervisor: String
    public var powerState: PowerState
    public var securityProfile: SecurityProfile
    public var integrityMonitoring: Monitoring
    public var alerts: [AlertRef]
    public var version: Int64
    public var created: String
    public var bootCount: Int
    public var lastBoot: BootSummary?
    /// A storage failure that interrupted an operation on the VM and is not yet recorded (the
    /// record may be behind the VM's vTPM and disk); absent when there is none.
    public var storageInterruption: String? {
        didSet { properties.provisioningState = Self.provisioningState(storageInterruption) }
    }
    /// The libvirt host it runs on (absent when the platform runs it itself).
    public var host: String? {
        didSet { location = Self.location(host) }
    }

    /// The record as the API shows it, with its active alerts among `alerts`.
    public init(_ vm: VMRecord, alerts active: [Alert]) {
        self.init(name: vm.name, image: vm.image, hypervisor: vm.hypervisor, powerState: vm.powerState,
                          securityProfile: .init(securityType: vm.securityType.rawValue,
                                                 uefiSettings: .init(secureBootEnabled: vm.secureBoot, vTpmEnabled: vm.vTPM)),
                          integrityMonitoring: .init(enabled: vm.integrityMonitoring, bootIntegrity: vm.bootIntegrity,
                lastAttestation: vm.lastAttestation.map(Time.rfc3339), attestationIntervalSeconds: vm.attestationInterval,
                                                     guestAgent: vm.guestAgent.rawValue),
            alerts: active.filter { $0.vm == vm.name && $0.status == .active }.map {
                .init(id: $0.id, severity: $0.severity.rawValue, status: $0.status.rawValue, title: $0.title, created: $0.created)
            },
                          version: vm.version, created: Time.rfc3339(vm.created), bootCount: vm.bootCount, lastBoot: vm.lastBoot,
                          host: vm.host)
    }

    public init(name: String, image: String, hypervisor: String, powerState: PowerState, securityProfile: SecurityProfile,
                integrityMonitoring: Monitoring,
                alerts: [AlertRef], version: Int64, created: String, bootCount: Int, lastBoot: BootSummary?, host: String? = nil) {
        self.name = name; self.image = image; self.hypervisor = hypervisor; self.powerState = powerState;
        self.securityProfile = securityProfile
        self.integrityMonitoring = integrityMonitoring; self.alerts = alerts; self.version = version; self.created = created;
        self.bootCount = bootCount; self.lastBoot = lastBoot
        self.host = host
        id = "/providers/\(Self.resourceType)/\(name)"
        type = Self.resourceType
        location = Self.location(host)
        properties = Properties(provisioningState: Self.provisioningState(nil), timeCreated: created, securityProfile: securityProfile,
                                storageProfile: .init(imageReference: .init(id: image)),
                                instanceView: .init(statuses: [Self.powerStatus(powerState)]))
    }

    /// ARM's location: the libvirt host, else `local`. Kept in step with `host` (set at init, then by its didSet).
    static func location(_ host: String?) -> String { host ?? "local" }

    /// ARM's provisioning state: Failed while an interrupted operation is unrecorded. Kept in step
    /// with `storageInterruption`.
    static func provisioningState(_ interruption: String?) -> String { interruption == nil ? "Succeeded" : "Failed" }

    /// ARM's power-state status for ours (Stopped is ARM's deallocated: nothing of it runs).
    static func powerStatus(_ p: PowerState) -> Properties.InstanceView.Status {
        switch p {
        case .running: .init(code: "PowerState/running", displayStatus: "VM running")
        case .stopped: .init(code: "PowerState/deallocated", displayStatus: "VM deallocated")
        case .failed: .init(code: "PowerState/stopped", displayStatus: "VM stopped (failed)")
        case .unknown: .init(code: "PowerState/unknown", displayStatus: "VM status unknown (its host does not answer)")
        }
    }
}

/// One line of the Secured-core-style readiness checklist.
public struct ChecklistItem: Sendable, Codable, Hashable {
    public enum State: String, Sendable, Codable { case met = "Met", notMet = "Not met", notApplicable = "Not applicable" }
    public var requirement: String
    public var state: State
    public var why: String
}

/// Where a VM's baseline comes from, in words: trust on first use is shown, never silent.
public struct BaselineSummary: Sendable, Codable, Hashable {
    /// How the first baseline is set.
    public var mode: BaselineMode
    /// Nil when the VM has none yet.
    public var source: BaselineSource?
    public var since: String?
    public var attestationId: String?
    public var components: Int?
    public var description: String
    public init(mode: BaselineMode, source: BaselineSource?, since: String?, attestationId: String?, components: Int?,
                description: String) {
        self.mode = mode; self.source = source; self.since = since; self.attestationId = attestationId; self.components = components;
        self.description = description
    }
}

/// The VM's overview: its view, the checklist, recommendations, timeline and attestations.
public struct VMOverview: Sendable, Codable, Hashable {
    public var vm: VMView
    /// The VM's boot baseline: how the first one is set, where the current one came from.
    public var baseline: BaselineSummary?
    public var checklist: [ChecklistItem]
    public var recommendations: [String]
    public var timeline: [VMEvent]
    public var attestations: [AttestationOutcome]
    public init(vm: VMView, baseline: BaselineSummary?, checklist: [ChecklistItem], recommendations: [String], timeline: [VMEvent],
                attestations: [AttestationOutcome]) {
        self.vm = vm; self.baseline = baseline; self.checklist = checklist; self.recommendations = recommendations;
        self.timeline = timeline; self.attestations = attestations
    }
}

/// What the overview recommends and checks for a VM: pure functions of its record.
extension VMRecord {
    public var recommendations: [String] {
        let vm = self
        var out: [String] = []
        if vm.securityType == .standard {
            out.append("Standard VMs have no Secure Boot, vTPM or integrity monitoring. Trusted Launch can only be chosen at deployment: "
                     + "deploy a new VM (Trusted Launch is the default) and move the workload.")
            return out
        }
        if !vm.secureBoot { out.append("Turn Secure Boot on so only signed boot loaders and kernels run: `tlaunch vm stop \(vm.name)`; "
                                     + "`tlaunch vm update \(vm.name) --secure-boot true`") }
        if !vm.vTPM { out.append("Turn the vTPM on for measured boot and attestation: `tlaunch vm stop \(vm.name)`; `tlaunch vm update "
                               + "\(vm.name) --vtpm true`") }
        if vm.vTPM, !vm.integrityMonitoring { out.append("Turn on integrity monitoring to be alerted when the boot changes: `tlaunch vm "
                                                       + "update \(vm.name) --integrity-monitoring true`") }
        if vm.integrityMonitoring, vm.bootIntegrity == .unhealthy { out.append("Boot integrity is unhealthy: read the active alert "
                                                                             + "(`tlaunch alert list --vm \(vm.name)`)") }
        return out
    }

    /// A Secured-core-style readiness checklist for the VM, each item with why.
    /// A Secured-core-style readiness checklist, each item with why.
    public var checklist: [ChecklistItem] {
        let vm = self
        let tl = vm.securityType == .trustedLaunch
        let booted = vm.lastBoot
        var out: [ChecklistItem] = []
        out.append(tl && vm.vTPM
            ? ChecklistItem(requirement: "TPM 2.0", state: .met,
                            why: "a vTPM (TPM 2.0, EK certificate from the platform's vTPM CA, state encrypted at rest)")
                : ChecklistItem(
                    requirement: "TPM 2.0", state: .notMet,
                    why: tl
                        ? "the vTPM is off: stop the VM and turn it on (--vtpm true)"
                        : "Standard VMs have no vTPM: redeploy as TrustedLaunch"))
        if tl && vm.secureBoot {
            if let b = booted, b.succeeded, !b.secureBootEnforced {
                out.append(ChecklistItem(requirement: "Secure Boot", state: .notMet,
                                         why: "on in the settings, but the last boot ran without enforcement (no PK in the VM's store)"))
            } else {
                out.append(
                    ChecklistItem(
                        requirement: "Secure Boot", state: .met,
                        why: booted?.secureBootEnforced == true
                            ? "enforced at the last boot: every boot image was verified against db and dbx"
                            : "on (enforced from the first boot)"))
            }
        } else {
            let why =
                tl ? "off: stop the VM and turn it on (--secure-boot true)" : "Standard VMs have no Secure Boot: redeploy as TrustedLaunch"
            out.append(ChecklistItem(requirement: "Secure Boot", state: .notMet, why: why))
        }
        if tl && vm.vTPM {
            if let b = booted, b.measured {
                out.append(ChecklistItem(requirement: "Measured boot", state: .met,
                                         why: "boot \(b.number) measured \(b.events) events into the vTPM's PCRs with a TCG event log"))
            } else {
                out.append(ChecklistItem(requirement: "Measured boot", state: .met,
                                         why: "the firmware will measure every boot into the vTPM (not booted yet)"))
            }
        } else {
            out.append(ChecklistItem(requirement: "Measured boot", state: .notMet, why: "nothing is measured without a vTPM"))
        }
        switch (vm.integrityMonitoring, vm.bootIntegrity) {
        case (true, .healthy):
            out.append(
                ChecklistItem(
                    requirement: "Boot integrity monitored", state: .met,
                    why: "the last attestation (\(vm.lastAttestation.map(Time.rfc3339) ?? "-")) passed"))
        case (true, .unhealthy): out.append(ChecklistItem(requirement: "Boot integrity monitored", state: .notMet,
                                                          why: "monitored, but the last attestation failed: see the active alert"))
        case (true, _): out.append(ChecklistItem(requirement: "Boot integrity monitored", state: .notMet,
                                                 why: "monitored; waiting for the first attestation of this boot"))
        case (false, _):
            out.append(
                ChecklistItem(
                    requirement: "Boot integrity monitored", state: .notMet,
                    why: tl && vm.vTPM
                        ? "integrity monitoring is off: tlaunch vm update \(vm.name) --integrity-monitoring true"
                        : "needs Trusted Launch with a vTPM"))
        }
        out.append(ChecklistItem(requirement: "DMA protection", state: .notApplicable, why: """
            the \(vm.hypervisor) hypervisor gives the guest no DMA-capable (passed-through) devices; with device passthrough a virtual \
            IOMMU would be required
            """))
        out.append(ChecklistItem(requirement: "System Guard (DRTM)", state: .notMet, why: """
            the virtual firmware provides a static root of trust (SRTM: firmware → boot loader → kernel measured from reset); no \
            dynamic launch (Intel TXT / AMD SKINIT) is offered to guests
            """))
        return out
    }
}

/// What the platform is doing to a VM right now, step by step (building its disk, starting QEMU,
/// the guest's agent up, attested): the progress the CLI and the dashboard show while a deploy,
/// start or restart runs, and the steps of the last one after it ended.
public struct VMActivity: Sendable, Codable, Hashable {
    public struct Step: Sendable, Codable, Hashable {
        public var time: String
        public var message: String
        public init(time: String, message: String) { self.time = time; self.message = message }
    }
    public var vm: String
    /// The operation ("deploy", "start", "restart", "resume"), nil before the first.
    public var operation: String?
    /// True while it runs.
    public var busy: Bool
    public var steps: [Step]
    /// Why the operation did not run to its end (refused, or an error), once it ended so.
    public var error: String?
    public init(vm: String, operation: String?, busy: Bool, steps: [Step], error: String? = nil) {
        self.vm = vm; self.operation = operation; self.busy = busy; self.steps = steps; self.error = error
    }
}
