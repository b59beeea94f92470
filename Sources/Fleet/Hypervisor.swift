import Foundation
import MeasuredBoot
import TPM2
import VirtualFirmware
import VirtualTPM
import SecureBoot

/// A VM's files: DATA/vms/NAME/ — its vTPM state (encrypted with the host key), the files
/// written to its boot disk over the image (a differencing disk), its last event log.
public struct VMFolder: Sendable {
    public let url: URL
    public var vtpmState: URL { url.appendingPathComponent("vtpm.state") }
    public var overlay: URL { url.appendingPathComponent("disk") }
    public var eventLog: URL { url.appendingPathComponent("eventlog.bin") }
    public var agentToken: URL { url.appendingPathComponent("agent.token") }
}

/// What a boot produced: the summary kept with the VM, the TCG event log, the VM's vTPM.
public struct BootResult: Sendable {
    public var summary: BootSummary
    public var eventLog: [UInt8]?
    public var tpm: VirtualTPM?
}

/// The built-in hypervisor: a VM is its boot disk and vTPM; starting it runs the virtual UEFI
/// firmware over the disk with the VM's security settings, measuring into its vTPM, and the
/// Linux chain after it — the boot a real VM does up to the kernel.
public struct SimulatedHypervisor: Sendable {
    public static let name = "simulated"
    public let hostKey: [UInt8]
    public let authority: VTPMCertificateAuthority
    public let cache = DecisionCache()

    public init(hostKey: [UInt8], authority: VTPMCertificateAuthority) { self.hostKey = hostKey; self.authority = authority }

    /// The VM's ESP: the image's files with the VM's own writes over them.
    public static func disk(_ image: ImageDisk, folder: VMFolder) throws -> ESP? {
        guard var esp = image.esp else { return nil }
        let fm = FileManager.default
        guard fm.fileExists(atPath: folder.overlay.path) else { return esp }
        let overlay: ESP
        do { overlay = try ESP.folder(folder.overlay) } catch { throw FleetError(.failed, "the VM's disk overlay: \(error)") }
        if overlay.files.isEmpty { return esp }
        var files = esp.files
        for (path, bytes) in overlay.files {
            // Replace the image's file of the same name (FAT is case-insensitive).
            if let existing = esp.storedPath(path) { files[existing] = bytes } else { files[path] = bytes }
        }
        esp = ESP(files: files, partitioning: esp.partitioning)
        return esp
    }

    /// Boots the VM once (a new measured boot). `tpm` is the VM's vTPM when it is already open
    /// (a restart power-cycles it); otherwise it is opened from its state file (created, with an
    /// EK certificate from the platform's vTPM CA, on first boot).
    public func boot(_ vm: VMRecord, image: ImageDisk, folder: VMFolder, tpm open: VirtualTPM?, number: Int) async throws -> BootResult {
        let time = Time.now()
        guard let esp = try Self.disk(image, folder: folder) else {
            // Generation 1: BIOS boot, no UEFI, nothing measured.
            return BootResult(summary: BootSummary(number: number, time: time, firmware: "BIOS (simulated)", succeeded: true, failure: nil,
                                                   secureBootEnforced: false, measured: false, events: 0,
                                                   stages: [BootStageSummary(kind: "mbr", path: "MBR boot sector", sha256: hexString((try? TPMCrypto.hash(.sha256, image.bootSector ?? [])) ?? []), verifiedBy: nil, authority: nil)],
                                                   kernel: nil, kernelCommandLine: nil))
        }
        var tpm: VirtualTPM?
        if vm.securityType == .trustedLaunch && vm.vTPM {
            if let open {
                open.powerOn()
                tpm = open
            } else {
                try FileManager.default.createDirectory(at: folder.url, withIntermediateDirectories: true)
                tpm = try await VirtualTPM.open(stateFile: folder.vtpmState.path, hostKey: hostKey, authority: authority)
            }
        }
        let settings = FirmwareSettings(securityType: vm.securityType, secureBoot: vm.securityType == .trustedLaunch && vm.secureBoot,
                                        vTPM: vm.securityType == .trustedLaunch && vm.vTPM, variables: image.variables)
        let report: LaunchReport
        do { report = try VirtualFirmware(settings: settings, cache: cache).launch(esp: esp, tpm: tpm) } catch {
            return BootResult(summary: BootSummary(number: number, time: time, firmware: "TrustedLaunch UEFI \(VirtualFirmware.version)", succeeded: false,
                                                   failure: error.description, secureBootEnforced: false, measured: false, events: 0, stages: [],
                                                   kernel: nil, kernelCommandLine: nil), eventLog: nil, tpm: tpm)
        }
        let measured = settings.vTPM
        let log = measured ? try report.log.encoded() : nil
        let summary = BootSummary(number: number, time: time, firmware: "TrustedLaunch UEFI \(VirtualFirmware.version)", succeeded: report.succeeded,
                                  failure: report.failure.map { "\($0.stage)\($0.path.map { " \($0)" } ?? ""): \($0.reason)" },
                                  secureBootEnforced: report.secureBootEnforced, measured: measured, events: measured ? report.log.events.count : 0,
                                  stages: report.stages.map(BootStageSummary.init), kernel: report.kernel, kernelCommandLine: report.kernelCommandLine)
        return BootResult(summary: summary, eventLog: log, tpm: tpm)
    }
}
