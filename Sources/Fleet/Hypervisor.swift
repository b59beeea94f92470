import Attestation
import AttestationAPI
import Foundation
import ServiceTLS
import GuestAgent
import Logging
import MeasuredBoot
import Synchronization
import TPM2
import VirtualFirmware
import VirtualTPM
import SecureBoot

/// A VM's files: DATA/vms/NAME/ — its vTPM state (encrypted with the host key), the files
/// written to its boot disk over the image (a differencing disk), its last event log.
public struct VMFolder: Sendable {
    public let url: URL
    public init(url: URL) { self.url = url }
    public init(root: URL, vm: String) { url = root.appendingPathComponent("vms").appendingPathComponent(vm) }
    public var vtpmState: URL { url.appendingPathComponent("vtpm.state") }
    public var overlay: URL { url.appendingPathComponent("disk") }
    public var eventLog: URL { url.appendingPathComponent("eventlog.bin") }
    public var agentToken: URL { url.appendingPathComponent("agent.token") }

    /// The VM's ESP: the image's files with the VM's own writes over them (nil: a BIOS disk).
    public func esp(over image: ImageDisk) throws -> ESP? {
        guard var esp = image.esp else { return nil }
        guard FileManager.default.fileExists(atPath: overlay.path) else { return esp }
        let written: ESP
        do { written = try ESP.folder(overlay) } catch { throw FleetError(.failed, "the VM's disk overlay: \(error)") }
        if written.files.isEmpty { return esp }
        var files = esp.files
        for (path, bytes) in written.files {
            // Replace the image's file of the same name (FAT is case-insensitive).
            if let existing = esp.storedPath(path) { files[existing] = bytes } else { files[path] = bytes }
        }
        esp = ESP(files: files, partitioning: esp.partitioning)
        return esp
    }
}

/// Something that happened to a VM without the fleet asking.
public enum HypervisorEvent: Sendable {
    /// The VM's machine ended on its own (killed, crashed): `how`, and the console's last lines.
    case crashed(vm: String, how: String, console: String)
}

/// What every hypervisor driver is given: where VMs keep their files, the keys their vTPMs are
/// sealed and certified with, the decision cache of the firmware, where the attestation service
/// is, and where progress goes.
public final class HypervisorContext: Sendable {
    public let root: URL
    public let hostKey: [UInt8]
    public let authority: VTPMCertificateAuthority
    public let cache = DecisionCache()
    public let logger: Logger
    let progress: @Sendable (String) -> Void
    let serviceURL = Mutex<(url: String, tls: ClientTLS?)?>(nil)

    init(root: URL, hostKey: [UInt8], authority: VTPMCertificateAuthority, logger: Logger, progress: @escaping @Sendable (String) -> Void) {
        self.root = root; self.hostKey = hostKey; self.authority = authority; self.logger = logger; self.progress = progress
    }

    func folder(_ vm: String) -> VMFolder { VMFolder(root: root, vm: vm) }

    /// The attestation service as the VM's agent reaches it (the VM's own agent token).
    func service(for vm: String) -> ServiceClient? {
        guard let (url, tls) = serviceURL.withLock({ $0 }) else { return nil }
        var client = ServiceClient.pinned(baseURL: url, token: (try? String(contentsOf: folder(vm).agentToken, encoding: .utf8)) ?? "",
                                          tls: tls)
        client.patient = true   // the service is in this process; under load it answers late, not never
        return client
    }

    /// Opens (and on first use manufactures, with an EK certificate from the platform's vTPM CA) the VM's vTPM.
    func openVTPM(_ vm: String) async throws -> VirtualTPM {
        try FileManager.default.createDirectory(at: folder(vm).url, withIntermediateDirectories: true)
        return try await VirtualTPM.open(stateFile: folder(vm).vtpmState.path, hostKey: hostKey, authority: authority)
    }
}

/// What runs VMs. The fleet's lifecycle, monitoring and views talk to this protocol, never to a
/// driver: the built-in simulated hypervisor and QEMU are two implementations, chosen per VM by
/// its record's `hypervisor`.
public protocol Hypervisor: AnyObject, Sendable {
    /// The name VM records carry (`VMRecord.hypervisor`).
    var name: String { get }
    /// The firmware the predictor models for this hypervisor's VMs, and the PCRs a prediction
    /// from the disk fixes (the rest depend on the firmware build and are learnt).
    var firmwareModel: VirtualFirmware.Model { get }
    var predictedPCRs: [UInt32] { get }
    /// Whether the guest runs its own attestation agent (a real VM) or the platform runs one for
    /// it in this process (the simulated guest).
    var guestRunsAgent: Bool { get }

    /// The VM's ESP as its firmware finds it on the VM's boot disk (for a real VM: on the GPT disk
    /// image, built or brought up to date from `esp`, with that disk's partitioning).
    func firmwareView(_ vm: VMRecord, esp: ESP) throws -> ESP
    /// Boots the VM once: a power-on, or for a VM this process runs a power cycle (a TPM reset and
    /// a new measured boot). Returns when the boot succeeded or failed (and why).
    func boot(_ vm: VMRecord, image: ImageDisk, esp: ESP?) async throws -> BootSummary
    /// Powers the VM off: ACPI shutdown, then power off after `timeout` (nil: at once).
    func stop(_ vm: String, timeout: Duration?) async
    /// Whether this process runs the VM now.
    func isRunning(_ vm: String) -> Bool
    /// Before a VM that the database says is running is booted again after a platform restart:
    /// what was left of its previous run, and what was done about it (nil: nothing).
    func reclaim(_ vm: String) async -> String?
    /// Stops the VM at once and removes its runtime files (the fleet removes the VM's folder).
    func delete(_ vm: String) async
    /// Everything this process runs is powered off (the platform stops).
    func powerOffAll() async

    /// Runs the platform's in-process agent once (hypervisors whose guests run their own agent throw).
    func attest(_ vm: String) async throws -> AttestationOutcome
    /// The guest's own view: what its agent reports, or computes inside the simulated guest.
    func guestStatus(_ vm: String) async -> GuestStatus?
    /// The serial console (this boot's, or the previous one's), as printable text.
    func console(_ vm: String, previous: Bool) throws -> String
    /// The accelerator the VM runs with ("tcg", "kvm"), nil where that means nothing.
    func accelerator(_ vm: String) -> String?
    /// Where events the fleet did not ask for go (a crash).
    func observe(_ handler: @escaping @Sendable (HypervisorEvent) async -> Void)
}
