import Attestation
import AttestationAPI
import Foundation
import GuestAgent
import MeasuredBoot
import Synchronization
import TPM2
import VirtualFirmware
import VirtualTPM

/// The built-in hypervisor: a VM is its boot disk and vTPM; starting it runs the virtual UEFI
/// firmware over the disk with the VM's security settings, measuring into its vTPM, and the
/// Linux chain after it — the boot a real VM does up to the kernel. No guest CPU runs: the
/// platform runs the guest's attestation agent in this process, against the VM's vTPM and log.
public final class SimulatedHypervisor: Hypervisor {
    public static let name = "simulated"
    public var name: String { Self.name }
    public var firmwareModel: VirtualFirmware.Model { .tlaunch }
    public var predictedPCRs: [UInt32] { [0, 1, 2, 3, 4, 5, 7, 8, 9] }
    public var guestRunsAgent: Bool { false }

    let context: HypervisorContext
    /// A running simulated VM: its open vTPM (nil without one) and its boot's event log.
    struct Running { var tpm: VirtualTPM?; var log: [UInt8]? }
    let running = Mutex<[String: Running]>([:])

    init(context: HypervisorContext) { self.context = context }

    public func boot(_ vm: VMRecord, image: ImageDisk, esp: ESP?) async throws -> BootSummary {
        let time = Time.now()
        let number = vm.bootCount + 1
        guard let esp else {
            // Generation 1: BIOS boot, no UEFI, nothing measured.
            running.withLock { $0[vm.name] = Running(tpm: nil, log: nil) }
            return BootSummary(number: number, time: time, firmware: "BIOS (simulated)", succeeded: true, failure: nil,
                               secureBootEnforced: false, measured: false, events: 0,
                stages: [
                    BootStageSummary(
                        kind: "mbr", path: "MBR boot sector",
                        sha256: hexString((try? TPMCrypto.hash(.sha256, image.bootSector ?? [])) ?? []), verifiedBy: nil, authority: nil)
                ],
                               kernel: nil, kernelCommandLine: nil)
        }
        var tpm: VirtualTPM?
        if vm.firmwareVTPM {
            // A restart power-cycles the open vTPM; otherwise it is opened from its state file.
            if let open = running.withLock({ $0[vm.name]?.tpm }) { tpm = open } else { tpm = try await context.openVTPM(vm.name) }
        }
        let settings = FirmwareSettings(secureBoot: vm.firmwareSecureBoot, vTPM: vm.firmwareVTPM, variables: image.variables)
        let firmware = "TrustedLaunch UEFI \(VirtualFirmware.version)"
        let report: LaunchReport
        do { report = try VirtualFirmware(settings: settings, cache: context.cache).launch(esp: esp, tpm: tpm) } catch {
            running.withLock { $0[vm.name] = nil }
            return BootSummary(number: number, time: time, firmware: firmware, succeeded: false, failure: error.description,
                               secureBootEnforced: false, measured: false, events: 0, stages: [], kernel: nil, kernelCommandLine: nil)
        }
        let measured = settings.vTPM
        let log = measured ? try report.log.encoded() : nil
        running.withLock { $0[vm.name] = report.succeeded ? Running(tpm: tpm, log: log) : nil }
        if report.succeeded, let log { try? Data(log).write(to: context.folder(vm.name).eventLog) }
        return BootSummary(number: number, time: time, firmware: firmware, succeeded: report.succeeded,
                           failure: report.failure.map { "\($0.stage)\($0.path.map { " \($0)" } ?? ""): \($0.reason)" },
            secureBootEnforced: report.secureBootEnforced, measured: measured, events: measured ? report.log.events.count : 0,
                           stages: report.stages.map(BootStageSummary.init), kernel: report.kernel,
                           kernelCommandLine: report.kernelCommandLine)
    }

    /// The simulated firmware reads the ESP itself.
    public func firmwareView(_ vm: VMRecord, esp: ESP) throws -> ESP { esp }

    public func stop(_ vm: String, timeout: Duration?) async { running.withLock { $0[vm] = nil } }
    public func isRunning(_ vm: String) -> Bool { running.withLock { $0[vm] != nil } }
    public func reclaim(_ vm: String) async -> String? { nil }
    public func delete(_ vm: String) async { running.withLock { $0[vm] = nil } }
    public func powerOffAll() async { running.withLock { $0.removeAll() } }

    public func attest(_ vm: String) async throws -> AttestationOutcome {
        guard let r = running.withLock({ $0[vm] }), let tpm = r.tpm, let log = r.log else {
            throw FleetError(.conflict, "\(vm) is not running with a vTPM in this process")
        }
        guard let client = context.service(for: vm) else { throw FleetError(.failed, "the attestation service is not attached") }
        return try await GuestAgent(tpm: TPMClient(transport: InProcessTransport(tpm)), service: client, vm: vm, eventLog: log).attest()
    }

    /// The guest's own view, computed inside the simulated guest (its vTPM and event log).
    public func guestStatus(_ vm: String) async -> GuestStatus? {
        guard let r = running.withLock({ $0[vm] }) else { return nil }
        guard let tpm = r.tpm else {
            return GuestStatus(
                vm: vm, secureBootState: "Unsupported",
                tpm: .init(
                    present: false, specVersion: nil, manufacturer: nil, firmwareVersion: nil, pcrBanks: [], ekCertificate: nil,
                    error: "no TPM device: the VM has no vTPM"),
                               measuredBootLog: .init(present: false, path: nil, events: 0, matchesTPM: nil,
                                                      error: "no measured boot without a TPM"), lastAttestation: nil, serviceError: nil)
        }
        let client = context.service(for: vm) ?? ServiceClient(baseURL: "http://127.0.0.1:1", token: nil)
        return await GuestAgent(tpm: TPMClient(transport: InProcessTransport(tpm)), service: client, vm: vm, eventLog: r.log).status()
    }

    public func console(_ vm: String, previous: Bool) throws -> String {
        throw FleetError(.invalid, "\(vm) runs on the simulated hypervisor, which has no console: deploy with --hypervisor qemu for a "
                                 + "real VM", field: "name")
    }

    public func accelerator(_ vm: String) -> String? { nil }
    public func observe(_ handler: @escaping @Sendable (HypervisorEvent) async -> Void) {}
}
