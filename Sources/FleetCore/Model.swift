import AttestationAPI
import Foundation

/// Why a fleet operation was refused or failed: what kind (mapped to an HTTP status), what went
/// wrong, the field or flag it concerns, and what to do instead.
public struct FleetError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: String, Sendable, Codable {
        case invalid, notFound, conflict, failed
        public var status: Int {
            switch self {
            case .invalid: 400
            case .notFound: 404
            case .conflict: 409
            case .failed: 500
            }
        }
    }
    public var kind: Kind
    public var message: String
    public var field: String?
    public init(_ kind: Kind, _ message: String, field: String? = nil) { self.kind = kind; self.message = message; self.field = field }
    public var description: String { message }
}

/// A VM's security type (ARM's `securityProfile.securityType`): chosen at deployment, fixed for
/// the VM's life. The fleet's word: the firmware knows only the switches derived from it
/// (`VMRecord.firmwareSecureBoot`, `firmwareVTPM`).
public enum SecurityType: String, Sendable, Codable, CaseIterable {
    /// UEFI with Secure Boot, a vTPM and Measured Boot (the default).
    case trustedLaunch = "TrustedLaunch"
    /// UEFI without a vTPM or Secure Boot; chosen explicitly.
    case standard = "Standard"
}

/// Power state of a VM (ARM's PowerState/running and PowerState/stopped, shortened).
public enum PowerState: String, Sendable, Codable, CaseIterable {
    case running = "Running"
    case stopped = "Stopped"
    case failed = "Failed"
    /// Its host does not answer: the platform cannot tell whether it runs.
    case unknown = "Unknown"
}

/// Boot integrity as integrity monitoring last saw it.
public enum BootIntegrity: String, Sendable, Codable, CaseIterable {
    case healthy = "Healthy"
    case unhealthy = "Unhealthy"
    case pending = "Pending"
    case notMonitored = "NotMonitored"

    public var display: String {
        switch self {
        case .healthy: "Healthy"
        case .unhealthy: "Unhealthy"
        case .pending: "Pending"
        case .notMonitored: "Not monitored"
        }
    }
}

/// What the simulated guest's attestation agent is doing (a guest administrator can stop it).
public enum GuestAgentState: String, Sendable, Codable, CaseIterable {
    case running, stopped
}

/// One boot stage as the VM's last boot ran it.
public struct BootStageSummary: Sendable, Codable, Hashable {
    public var kind: String
    public var path: String
    public var sha256: String
    public var verifiedBy: String?
    public var authority: String?
    public init(kind: String, path: String, sha256: String, verifiedBy: String?, authority: String?) {
        self.kind = kind; self.path = path; self.sha256 = sha256; self.verifiedBy = verifiedBy; self.authority = authority
    }
}

/// What the VM's last boot did.
public struct BootSummary: Sendable, Codable, Hashable {
    public var number: Int
    public var time: String
    public var firmware: String
    public var succeeded: Bool
    public var failure: String?
    public var secureBootEnforced: Bool
    public var measured: Bool
    public var events: Int
    public var stages: [BootStageSummary]
    public var kernel: String?
    public var kernelCommandLine: String?
    public init(number: Int, time: String, firmware: String, succeeded: Bool, failure: String?, secureBootEnforced: Bool, measured: Bool,
                events: Int, stages: [BootStageSummary], kernel: String?, kernelCommandLine: String?) {
        self.number = number; self.time = time; self.firmware = firmware; self.succeeded = succeeded; self.failure = failure;
        self.secureBootEnforced = secureBootEnforced; self.measured = measured; self.events = events; self.stages = stages;
        self.kernel = kernel; self.kernelCommandLine = kernelCommandLine
    }
}

extension VMRecord {
    /// Whether it runs as a real QEMU VM (its own agent attests from inside) rather than on the
    /// simulated hypervisor.
    public var isRealVM: Bool { hypervisor == FleetRules.qemu || hypervisor == FleetRules.libvirt }
}

/// A VM as the fleet stores it.
public struct VMRecord: Sendable, Codable, Hashable {
    public var name: String
    public var image: String
    public var hypervisor: String
    public var securityType: SecurityType
    public var secureBoot: Bool
    public var vTPM: Bool
    public var integrityMonitoring: Bool
    public var powerState: PowerState
    public var bootIntegrity: BootIntegrity
    public var lastAttestation: Int64?
    public var lastAttestationID: String?
    public var created: Int64
    public var updated: Int64
    /// Bumped by every change; an update names the version it read (optimistic concurrency).
    public var version: Int64
    public var bootCount: Int
    public var lastBoot: BootSummary?
    public var guestAgent: GuestAgentState
    /// Seconds between periodic attestations.
    public var attestationInterval: Int
    /// The libvirt host it is placed on (`tlaunch host list`) and that host's URI; nil for VMs
    /// of the simulated hypervisor, of QEMU, or of the platform's own libvirt connection.
    public var host: String?
    public var hostURI: String?
    public init(
        name: String, image: String, hypervisor: String, securityType: SecurityType, secureBoot: Bool, vTPM: Bool,
        integrityMonitoring: Bool, powerState: PowerState, bootIntegrity: BootIntegrity, lastAttestation: Int64?,
        lastAttestationID: String?, created: Int64, updated: Int64, version: Int64, bootCount: Int, lastBoot: BootSummary?,
        guestAgent: GuestAgentState, attestationInterval: Int, host: String? = nil, hostURI: String? = nil
    ) {
        self.host = host; self.hostURI = hostURI
        self.name = name; self.image = image; self.hypervisor = hypervisor; self.securityType = securityType; self.secureBoot = secureBoot;
        self.vTPM = vTPM; self.integrityMonitoring = integrityMonitoring; self.powerState = powerState; self.bootIntegrity = bootIntegrity;
        self.lastAttestation = lastAttestation; self.lastAttestationID = lastAttestationID; self.created = created; self.updated = updated;
        self.version = version; self.bootCount = bootCount; self.lastBoot = lastBoot; self.guestAgent = guestAgent;
        self.attestationInterval = attestationInterval
    }
}

extension VMRecord {
    /// Whether the VM's firmware enforces Secure Boot: only a TrustedLaunch VM has it, whatever a
    /// Standard VM's record says (the rules never store one with it on; a record from elsewhere may).
    public var firmwareSecureBoot: Bool { securityType == .trustedLaunch && secureBoot }
    /// Whether the VM's firmware measures into a vTPM: only a TrustedLaunch VM has one.
    public var firmwareVTPM: Bool { securityType == .trustedLaunch && vTPM }
}

public enum AlertSeverity: String, Sendable, Codable, CaseIterable {
    case high = "High", medium = "Medium", low = "Low"
}

public enum AlertStatus: String, Sendable, Codable, CaseIterable {
    case active = "Active", resolved = "Resolved", dismissed = "Dismissed"
}

/// What a piece of alert evidence is about, as a person groups it: a boot component (from the
/// attestation's baseline changes, `ComponentKind`, grouped coarser: shim and grub are both the
/// boot loader), what failed verification, or the platform part that failed. Stored in alerts
/// and sent to webhooks as its text; a component another version stored reads back as it was.
public struct AlertComponent: RawRepresentable, Sendable, Codable, Hashable, Comparable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    // The boot's components (a baseline change).
    public static let firmware = Self(rawValue: "firmware")
    public static let secureBootConfiguration = Self(rawValue: "secure-boot-configuration")
    public static let bootLoader = Self(rawValue: "boot-loader")
    public static let kernel = Self(rawValue: "kernel")
    public static let initrd = Self(rawValue: "initrd")
    public static let kernelCommandLine = Self(rawValue: "kernel-command-line")
    public static let bootLoaderConfiguration = Self(rawValue: "boot-loader-configuration")
    /// A predicted PCR value that differs (a predicted baseline).
    public static let pcrValue = Self(rawValue: "pcr-value")
    // What a failed check is about.
    public static let attestationEvidence = Self(rawValue: "attestation-evidence")
    public static let imaFile = Self(rawValue: "ima-file")
    public static let baseline = Self(rawValue: "baseline")
    public static let policy = Self(rawValue: "policy")
    // The platform's parts.
    public static let bootFailure = Self(rawValue: "boot-failure")
    public static let storage = Self(rawValue: "storage")
    public static let hypervisor = Self(rawValue: "hypervisor")
    public static let host = Self(rawValue: "host")
    public static let agent = Self(rawValue: "agent")
    public static let vtpmIdentity = Self(rawValue: "vtpm-identity")

    /// As a person names it in a sentence ("boot loader", "Secure Boot configuration").
    public var title: String {
        switch self {
        case .secureBootConfiguration: "Secure Boot configuration"
        case .bootLoader: "boot loader"
        case .initrd: "initial RAM disk"
        case .kernelCommandLine: "kernel command line"
        case .bootLoaderConfiguration: "boot loader configuration"
        case .pcrValue: "measured boot (PCR values)"
        case .imaFile: "file measured by IMA"
        default: rawValue
        }
    }
}

/// One piece of evidence: which component changed, from what to what, where it was measured.
public struct AlertEvidence: Sendable, Codable, Hashable {
    public var component: AlertComponent
    public var name: String
    public var change: String
    public var from: String?
    public var to: String?
    public var fromSigner: String?
    public var toSigner: String?
    public var pcr: Int?
    public var detail: String
    public init(component: AlertComponent, name: String, change: String, from: String?, to: String?, fromSigner: String?, toSigner: String?,
                pcr: Int?, detail: String) {
        self.component = component; self.name = name; self.change = change; self.from = from; self.to = to; self.fromSigner = fromSigner;
        self.toSigner = toSigner; self.pcr = pcr; self.detail = detail
    }
}

/// What an alert is about. Its raw value is what the API and webhooks carry; a kind this build
/// does not know (from a newer one sharing the database) is kept as it is.
public struct AlertKind: RawRepresentable, Sendable, Codable, Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
    public func encode(to encoder: any Encoder) throws { var c = encoder.singleValueContainer(); try c.encode(rawValue) }
    public var description: String { rawValue }

    /// The measured boot differs from the baseline, or the evidence is incomplete or unverifiable.
    public static let bootIntegrity: AlertKind = "boot-integrity"
    /// The boot failed (the firmware or shim refused an image, the kernel died).
    public static let bootFailure: AlertKind = "boot-failure"
    /// A storage failure interrupted an operation on the VM.
    public static let storageFailure: AlertKind = "storage-failure"
    /// QEMU stopped without the platform asking.
    public static let vmFailed: AlertKind = "vm-failed"
    /// The VM's libvirt host does not answer.
    public static let hostUnreachable: AlertKind = "host-unreachable"
    /// A monitored VM's agent has not attested for too long.
    public static let notReporting: AlertKind = "not-reporting"
    /// The VM may present another TPM at its next enrolment (an admin allowed a rebind).
    public static let identity: AlertKind = "identity"
}

/// An integrity-monitoring alert.
public struct Alert: Sendable, Codable, Hashable {
    public var id: String
    public var vm: String
    public var kind: AlertKind
    public var severity: AlertSeverity
    public var status: AlertStatus
    public var title: String
    public var description: String
    public var evidence: [AlertEvidence]
    public var recommendations: [String]
    public var mitigations: [String]
    /// The attestation that raised it (and the latest that repeated it).
    public var attestationID: String?
    public var created: String
    public var updated: String
    /// How many attestations or checks saw the same problem while it was active.
    public var occurrences: Int
    public var resolution: String?
    /// Identifies "the same problem" so a repeat updates the active alert instead of adding one.
    public var fingerprint: String
    public init(
        id: String, vm: String, kind: AlertKind, severity: AlertSeverity, status: AlertStatus, title: String, description: String,
        evidence: [AlertEvidence], recommendations: [String], mitigations: [String], attestationID: String?, created: String,
        updated: String, occurrences: Int, resolution: String?, fingerprint: String
    ) {
        self.id = id; self.vm = vm; self.kind = kind; self.severity = severity; self.status = status; self.title = title;
        self.description = description; self.evidence = evidence; self.recommendations = recommendations; self.mitigations = mitigations;
        self.attestationID = attestationID; self.created = created; self.updated = updated; self.occurrences = occurrences;
        self.resolution = resolution; self.fingerprint = fingerprint
    }
}

/// A change in a VM's life, for its timeline.
public struct VMEvent: Sendable, Codable, Hashable {
    public var time: String
    public var kind: TimelineKind
    public var message: String
    public init(time: String, kind: TimelineKind, message: String) {
        self.time = time; self.kind = kind; self.message = message
    }
}

/// What a timeline event records. Stored and sent as its text; the kinds named here are the ones this
/// build writes — a kind written by another version reads back as it was.
public struct TimelineKind: RawRepresentable, Sendable, Codable, Hashable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// An alert was raised.
    public static let alert = Self(rawValue: "alert")
    /// A person dismissed an alert.
    public static let alertDismissed = Self(rawValue: "alert-dismissed")
    /// An alert was resolved.
    public static let alertResolved = Self(rawValue: "alert-resolved")
    /// The agent could not attest.
    public static let attestationError = Self(rawValue: "attestation-error")
    /// Its baseline was set, approved or predicted.
    public static let baseline = Self(rawValue: "baseline")
    /// A boot reached its OS.
    public static let boot = Self(rawValue: "boot")
    /// A boot did not reach its OS.
    public static let bootFailed = Self(rawValue: "boot-failed")
    /// Its QEMU ended, or its host lost it.
    public static let crashed = Self(rawValue: "crashed")
    /// The VM was created.
    public static let deployed = Self(rawValue: "deployed")
    /// A file on its disk was written.
    public static let disk = Self(rawValue: "disk")
    /// Its host answers again.
    public static let hostReachable = Self(rawValue: "host-reachable")
    /// Its host stopped answering.
    public static let hostUnreachable = Self(rawValue: "host-unreachable")
    /// Its vTPM binding changed (a rebind allowed).
    public static let identity = Self(rawValue: "identity")
    /// Something the platform lost in a crash was put back.
    public static let repaired = Self(rawValue: "repaired")
    /// It was started again after the platform restarted.
    public static let resumed = Self(rawValue: "resumed")
    /// It was stopped.
    public static let stopped = Self(rawValue: "stopped")
    /// The platform could not record something about it.
    public static let storageFailure = Self(rawValue: "storage-failure")
    /// Its settings changed.
    public static let updated = Self(rawValue: "updated")
    /// An attestation passed (only when something changed).
    public static let attested = Self(rawValue: "attested")
    /// An attestation failed.
    public static let attestationFailed = Self(rawValue: "attestation-failed")
}

/// An image VMs are deployed from.
public struct ImageInfo: Sendable, Codable, Hashable {
    public var name: String
    /// 2: UEFI (can be Trusted Launch); 1: BIOS only (Standard only).
    public var generation: Int
    public var source: String
    public var description: String
    public var builtIn: Bool
    public init(name: String, generation: Int, source: String, description: String, builtIn: Bool) {
        self.name = name; self.generation = generation; self.source = source; self.description = description; self.builtIn = builtIn
    }
}

public enum Time {
    public static func millis(_ d: Date = Date()) -> Int64 { Int64((d.timeIntervalSince1970 * 1000).rounded()) }
    /// RFC 3339 in UTC with milliseconds.
    public static func rfc3339(_ ms: Int64) -> String {
        let secs = ms / 1000, milli = Int(ms % 1000)
        var t = time_t(secs)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        func pad(_ v: Int32, _ n: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, n - s.count)) + s }
        let date = "\(pad(tmv.tm_year + 1900, 4))-\(pad(tmv.tm_mon + 1, 2))-\(pad(tmv.tm_mday, 2))"
        return "\(date)T\(pad(tmv.tm_hour, 2)):\(pad(tmv.tm_min, 2)):\(pad(tmv.tm_sec, 2)).\(pad(Int32(milli), 3))Z"
    }
    public static func now() -> String { rfc3339(millis()) }
}
