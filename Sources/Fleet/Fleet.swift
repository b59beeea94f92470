import Attestation
import AttestationAPI
import Foundation
import ServiceTLS
import GuestAgent
@_exported import FleetCore
import MeasuredBoot
import Logging
import Storage
import Synchronization
import TPM2
import VirtualFirmware
import VirtualTPM

/// The fleet: deployment with security types and their rules, the lifecycle on the VMs'
/// hypervisors (the built-in simulated one, QEMU), integrity monitoring (an attestation at every
/// boot and periodically, alerts with evidence and what to do, silent VMs), webhooks. State lives
/// in the database and the data folder; what runs (vTPMs, QEMUs) is rebuilt by `resume()`.
public final class Fleet: Sendable {
    public let store: FleetStore
    public let service: AttestationService
    public let images: ImageCatalog
    public let root: URL
    public let webhooks: WebhookNotifier
    public let logger: Logger
    /// A monitored VM is "not reporting" after this many attestation intervals without one.
    public let silentIntervals: Int
    let locks = KeyedLocks()
    let progress: @Sendable (String) -> Void
    /// What each VM's current (or last) deploy, start or restart did, step by step.
    let activityLog: ActivityLog
    /// Storage failures the fleet could not write down, kept until it can.
    let storage = StorageWatch()
    /// Webhook deliveries this instance is sending now, and whether it still starts new ones
    /// (a stopping platform finishes what it claimed so no lease is left behind).
    let deliveryGate = Mutex<(stopped: Bool, inflight: Int)>((false, 0))
    /// Webhook delivery passes: one after each change, one waiting out each retry's backoff.
    let deliveryPassTasks = HeldTasks()
    /// What every hypervisor driver shares: folders, keys, the firmware's cache, the service's address.
    let context: HypervisorContext
    /// The drivers, by the name VM records carry.
    let simulated: SimulatedHypervisor
    let qemuDriver: QEMUHypervisor
    /// Real VMs as libvirt domains, when the platform has a libvirt connection (`--hypervisor libvirt`).
    let libvirtDriver: QEMUHypervisor?
    /// Drivers of the registered libvirt hosts (`tlaunch host add`), by host name, and the hosts
    /// as last read or checked.
    let hostDrivers = Mutex<[String: QEMUHypervisor]>([:])
    let hostCache = Mutex<[String: LibvirtHost]>([:])
    /// When the hosts were last checked (ms); they are checked every `hostCheckInterval` ms.
    let lastHostCheck = Mutex<Int64>(0)
    /// Operations that run on after their request answered (`inBackground`), by number: a
    /// shutdown ends them (`endBackgroundWork`) instead of leaving them to the process's exit.
    let background = HeldTasks()
    public var hostCheckInterval: Int64 { 10_000 }
    /// QEMU and OVMF, when this host runs real VMs (`--hypervisor qemu`).
    public var qemu: QEMUInstallation? { qemuDriver.installation }
    /// The libvirt connection VMs with hypervisor `libvirt` run on.
    public var libvirt: LibvirtConnection? { libvirtDriver?.libvirt }

    public init(store: FleetStore, service: AttestationService, dataFolder: DataFolder, hostKey: [UInt8],
                authority: VTPMCertificateAuthority,
        webhooks: WebhookNotifier = WebhookNotifier(urls: []), silentIntervals: Int = 3, logger: Logger = Logger(label: "tlaunch.fleet"),
                qemu: QEMUInstallation? = nil, bootTimeout: Duration = .seconds(300),
                libvirt: (LibvirtConnection, LibvirtTPMBackend)? = nil,
                progress: @escaping @Sendable (String) -> Void = { _ in }) {
        self.store = store; self.service = service; self.root = dataFolder.root
        // Progress goes to the caller and to the activity of the VM whose operation made it.
        let activity = ActivityLog()
        let sink: @Sendable (String) -> Void = { message in
            activity.note(message)
            progress(message)
        }
        self.activityLog = activity
        self.images = ImageCatalog(dataFolder: dataFolder.root, keysDirectory: dataFolder.secureBootKeys, progress: sink)
        self.webhooks = webhooks; self.silentIntervals = max(1, silentIntervals); self.logger = logger; self.progress = sink
        context = HypervisorContext(root: dataFolder.root, hostKey: hostKey, authority: authority, logger: logger, progress: sink)
        simulated = SimulatedHypervisor(context: context)
        qemuDriver = QEMUHypervisor(installation: qemu, bootTimeout: bootTimeout, context: context)
        if let (connection, backend) = libvirt, let qemu {
            libvirtDriver = QEMUHypervisor(installation: qemu, bootTimeout: bootTimeout, context: context,
                                           engine: .libvirt(connection, tpm: backend))
        } else {
            libvirtDriver = nil
        }
        qemuDriver.observe { [weak self] event in await self?.handle(event) }
        libvirtDriver?.observe { [weak self] event in await self?.handle(event) }
    }

    /// Where guest agents (in process, or relayed from real guests) reach the attestation service.
    /// Where the VMs' agents (through the host's relay) reach the service; over https they
    /// trust only `tls`'s roots (the platform's CA) and present its client certificate.
    public func attach(serviceURL url: String, tls: ClientTLS? = nil) { context.serviceURL.withLock { $0 = (url, tls) } }

    func folder(_ name: String) -> VMFolder { context.folder(name) }

    /// The hypervisor that runs `vm`.
    func hypervisor(for vm: VMRecord) -> any Hypervisor {
        switch vm.hypervisor {
        case FleetRules.qemu: qemuDriver
        case FleetRules.libvirt: vm.host.flatMap { hostDriver(name: $0, uri: vm.hostURI) } ?? libvirtDriver ?? qemuDriver
        default: simulated
        }
    }
    var hypervisors: [any Hypervisor] {
        [simulated, qemuDriver] + (libvirtDriver.map { [$0] } ?? []) + hostDrivers.withLock { d in d.keys.sorted().compactMap { d[$0] } }
    }
    /// The hypervisors a deployment may name here.
    var availableHypervisors: Set<String> {
        var h: Set<String> = [FleetRules.hypervisor]
        if qemu != nil { h.insert(FleetRules.qemu) }
        if libvirtDriver != nil || (qemu != nil && !hostCache.withLock({ $0.isEmpty })) { h.insert(FleetRules.libvirt) }
        return h
    }

    /// What a hypervisor reports without being asked: a crashed VM is Failed, with an alert.
    func handle(_ event: HypervisorEvent) async {
        switch event {
        case .crashed(let name, let how, let console):
            guard let vm = try? await mutate(name, { $0.powerState = .failed }) else { return }
            try? await store.appendEvent(vm: name, kind: .crashed,
                                         message: "QEMU \(how); the VM is off (tlaunch vm start \(name) boots it again)")
            try? await raise(AlertBuilder.crashed(vm, how: how, console: console))
        }
    }

    /// What the platform is doing to the VM (or did in its last deploy, start or restart).
    public func activity(_ name: String) async throws -> VMActivity {
        _ = try await require(name)
        return activityLog.activity(name)
    }

    /// Runs a deploy, start, restart or resume of `name` with its progress recorded as the VM's
    /// activity (an operation inside another of the same VM adds to it).
    func tracked(_ name: String, _ operation: String, _ body: () async throws -> VMRecord) async throws -> VMRecord {
        if ActivityLog.vm == name { return try await body() }
        activityLog.begin(name, operation: operation)
        do {
            // An operation writes the VM's records and files: on a data folder that cannot take
            // writes it is refused before it starts, by a probe written now (SQLite may still find
            // room in its write-ahead log, which its checkpointer keeps reusing; the vTPM's state
            // and the VM's files would not).
            if let problem = await storageProblem(fresh: true) { throw StorageError(operation, problem) }
            let vm = try await ActivityLog.$vm.withValue(name) { try await body() }
            let boot =
                vm.lastBoot.map {
                    " — boot \($0.number) " + ($0.succeeded ? "reached \($0.kernel ?? "the OS")" : "failed: \($0.failure ?? "?")")
                } ?? ""
            activityLog.end(
                name, "\(vm.powerState.rawValue)\(boot)" + (vm.integrityMonitoring ? "; boot integrity \(vm.bootIntegrity.display)" : ""))
            return vm
        } catch {
            let why = (error as? FleetError)?.message ?? "\(error)"
            activityLog.end(name, "\(operation) failed: \(why)", error: why)
            noteInterrupted(name, operation, error)
            throw error
        }
    }

    /// An operation that runs on after the request that asked for it answered (HTTP 202 with the
    /// activity to follow): what can be refused at once is refused at once; the rest, and the
    /// outcome, are the VM's activity.
    func inBackground(_ name: String, _ operation: String, _ body: @escaping @Sendable () async throws -> VMRecord) {
        activityLog.begin(name, operation: operation)
        activityLog.note(name, "accepted")
        background.start { _ = try? await self.tracked(name, operation, body) }
    }

    /// Ends the operations under way in the background (a shutdown): each is cancelled — a boot
    /// stops where it can, the VM's activity says it was interrupted, and a VM that was to run
    /// boots again when the platform resumes — and awaited.
    public func endBackgroundWork() async {
        for t in background.cancelAll() { await t.value }
    }

    /// How many operations run in the background now.
    public var backgroundOperations: Int { background.count }

    /// Deploys (the record, folder and credentials now; the first boot in the background).
    public func deployInBackground(_ r: DeployRequest) async throws -> VMRecord {
        let planned = try await plan(r)
        let vm = try await tracked(planned.name, "deploy") { try await deploy(planned, r, bootNow: false) }
        // The first boot of a VM deployed to run (its record already says Running: the intent
        // that a platform restart honours if this process dies first).
        if vm.powerState == .running { inBackground(vm.name, "deploy") { try await self.bootNow(vm.name, verb: "start") } }
        return vm
    }

    /// Starts or restarts in the background, after the checks a synchronous call makes first.
    public func lifecycleInBackground(_ name: String, _ operation: String) async throws -> VMRecord {
        let vm = try await require(name)
        switch operation {
        case "start":
            try Self.checkCanStart(vm)
            inBackground(name, operation) { try await self.startNow(name) }
        case "restart":
            try Self.checkCanRestart(vm)
            inBackground(name, operation) { try await self.restartNow(name) }
        default:
            throw FleetError(.invalid, "\(operation) does not run in the background (start, restart)", field: "operation")
        }
        return vm
    }

    /// The accelerator a running real VM uses ("tcg" or "kvm"), nil for others.
    public func accelerator(_ name: String) -> String? {
        qemuDriver.accelerator(name) ?? libvirtDriver?.accelerator(name)
            ?? hostDrivers.withLock { $0.values.lazy.compactMap { $0.accelerator(name) }.first }
    }

    /// Powers off every VM this process runs (the platform stops); records stay "running", so
    /// the next start boots them again.
    public func powerOffRealVMs() async { for h in hypervisors { await h.powerOffAll() } }

    /// The VM's serial console (this boot's, or the previous one's).
    public func console(_ name: String, previous: Bool = false) async throws -> String {
        let vm = try await require(name)
        return try hypervisor(for: vm).console(name, previous: previous)
    }

    // MARK: Images

    public func imageList() async throws -> [ImageInfo] {
        ImageCatalog.builtIn.filter { ImageCatalog.available($0.name) } + (try await store.images())
    }

    public func image(_ name: String) async throws -> ImageInfo {
        if let b = ImageCatalog.builtIn.first(where: { $0.name == name }) {
            guard ImageCatalog.available(name) else {
                throw FleetError(.notFound, "image \(name) is not available here: it needs Debian's shim-signed, grub-efi-amd64-signed "
                                          + "and linux-image-amd64 packages", field: "image")
            }
            return b
        }
        if let i = try await store.images().first(where: { $0.name == name }) { return i }
        let names = try await imageList().map(\.name)
        throw FleetError(.notFound, "no image named \(name): choose one of \(names.joined(separator: ", ")) (tlaunch image list), or "
                                  + "import it (tlaunch image import)", field: "image")
    }

    public func importImage(name: String, from path: String, generation: Int, keys: String,
                            description: String?) async throws -> ImageInfo {
        try FleetRules.checkName(name, what: "image")
        guard generation == 1 || generation == 2 else {
            throw FleetError(.invalid, "--generation must be 1 (BIOS) or 2 (UEFI)", field: "generation")
        }
        let existing = try await store.images()
        if ImageCatalog.builtIn.contains(where: { $0.name == name }) || existing.contains(where: { $0.name == name }) {
            throw FleetError(.conflict, "an image named \(name) exists: choose another name", field: "name")
        }
        let info = try images.importFiles(name: name, from: URL(fileURLWithPath: path), generation: generation, keys: keys,
                                          description: description)
        guard try await store.insertImage(info) else {
            images.remove(name)
            throw FleetError(.conflict, "an image named \(name) was imported meanwhile", field: "name")
        }
        return info
    }

    public func imageDetails(_ name: String) async throws -> ImageDetails { try images.details(try await image(name)) }

    // MARK: Deployment

    /// The deployment rules (`FleetRules.deploy`) against the named image.
    public func plan(_ r: DeployRequest) async throws -> VMRecord {
        try FleetRules.checkName(r.name)
        if r.host != nil || r.hypervisor == FleetRules.libvirt { await refreshHosts() }
        var vm = try FleetRules.deploy(r, image: try await image(r.image ?? "sample-linux"), hypervisors: availableHypervisors)
        try await place(&vm, wanted: r.host)
        return vm
    }

    /// Deploys a VM: the record and its folder appear together or not at all; then it starts
    /// (unless `start` is false), which with integrity monitoring is its first attestation.
    public func deploy(_ r: DeployRequest) async throws -> VMRecord {
        let vm = try await plan(r)
        return try await tracked(vm.name, "deploy") { try await deploy(vm, r, bootNow: true) }
    }

    /// A VM asked to start is recorded Running from the start — what it is meant to be — so that
    /// a crash between the record and the first boot leaves a VM the next start boots (`resume`),
    /// not one silently Stopped. With `bootNow`, the first boot runs before this returns.
    func deploy(_ planned: VMRecord, _ r: DeployRequest, bootNow: Bool) async throws -> VMRecord {
        var vm = planned
        if r.start ?? true { vm.powerState = .running }
        let baselineMode = try FleetRules.baselineMode(r)
        _ = try images.disk(try await image(vm.image))   // build the image before taking the name
        try await locks.with(vm.name) {
            let fm = FileManager.default
            let dir = folder(vm.name)
            guard try await store.insertVM(vm) else {
                throw FleetError(.conflict, "a VM named \(vm.name) exists: choose another name, or delete it first (tlaunch vm delete "
                                          + "\(vm.name))", field: "name")
            }
            // Two deploys may both have seen the host's last place free: counted again with the
            // record in, an over-full host takes neither (each can be asked again).
            if let h = vm.host, let host = hostCache.withLock({ $0[h] }), (try await store.placements()[h]?.count ?? 0) > host.capacity {
                _ = try? await store.deleteVM(vm.name)
                throw FleetError(.conflict, "host \(h) filled up while \(vm.name) was placed on it: deploy it again", field: "host")
            }
            do {
                try? fm.removeItem(at: dir.url)   // a leftover of a VM deleted while the folder was busy
                try fm.createDirectory(at: dir.url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                if vm.vTPM { try await writeAgentToken(vm.name) }
            } catch {
                _ = try? await store.deleteVM(vm.name)
                try? fm.removeItem(at: dir.url)
                throw error
            }
            if let mode = baselineMode {
                do { try await service.setBaselineMode(vm: vm.name, mode) } catch {
                    _ = try? await store.deleteVM(vm.name)
                    try? fm.removeItem(at: dir.url)
                    throw error
                }
            }
            try await store.appendEvent(vm: vm.name, kind: .deployed,
                message: "deployed from \(vm.image) as \(vm.securityType.rawValue)"
                    + (vm.securityType == .trustedLaunch
                                            ? " (Secure Boot \(vm.secureBoot ? "on" : "off"), vTPM \(vm.vTPM ? "on" : "off"), integrity "
                                            + "monitoring \(vm.integrityMonitoring ? "on" : "off"))" : ""))
        }
        logger.info("deployed", metadata: ["vm": .string(vm.name), "securityType": .string(vm.securityType.rawValue)])
        if baselineMode == .predicted { _ = try await predictBaseline(vm.name) }
        if vm.powerState == .running && bootNow { return try await self.bootNow(vm.name, verb: "start") }
        return try await require(vm.name)
    }

    /// A new agent token for the VM, written atomically (0600): a crash leaves the old file or
    /// the new one, never a truncated token.
    func writeAgentToken(_ name: String) async throws {
        let token = try await service.createAPIToken(role: .agent, vm: name)
        let file = folder(name).agentToken
        let tmp = file.appendingPathExtension("tmp")
        guard FileManager.default.createFile(atPath: tmp.path, contents: Data(token.utf8), attributes: [.posixPermissions: 0o600]),
              rename(tmp.path, file.path) == 0 else {
            throw FleetError(.failed, "cannot write \(file.path)")
        }
    }

    /// After a crash: every VM's folder exists and a VM with a vTPM has its agent token (a crash
    /// during its deploy may have left neither).
    func repair(_ vm: VMRecord) async {
        let dir = folder(vm.name)
        try? FileManager.default.createDirectory(at: dir.url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        // The token goes into the database before its file is written (atomically): a file that
        // is there and not empty holds a token the service issued, and start-up needs no query.
        guard vm.vTPM, ((try? FileManager.default.attributesOfItem(atPath: dir.agentToken.path)[.size] as? Int) ?? 0) == 0 else { return }
        do {
            try await writeAgentToken(vm.name)
            try? await store.appendEvent(vm: vm.name, kind: .repaired,
                                         message: "its agent credential was missing after a platform crash: a new one was issued")
        } catch {
            logger.error("cannot repair the VM's agent credential", metadata: ["vm": .string(vm.name), "error": .string("\(error)")])
        }
    }

    public func require(_ name: String) async throws -> VMRecord {
        try FleetRules.checkName(name)
        guard let vm = try await store.vm(name) else {
            throw FleetError(.notFound, "no VM named \(name) (tlaunch vm list shows the fleet)", field: "name")
        }
        return vm
    }

    /// Applies `change` to the stored record, retrying when someone else wrote in between.
    @discardableResult
    func mutate(_ name: String, _ change: (inout VMRecord) throws -> Void) async throws -> VMRecord {
        for _ in 0..<16 {
            var vm = try await require(name)
            let read = vm.version
            try change(&vm)
            vm.updated = Time.millis()
            if try await store.updateVM(vm, expected: read) { vm.version = read + 1; return vm }
        }
        throw FleetError(.conflict, "\(name) is being changed by others right now: try again")
    }

    public func update(_ name: String, _ u: UpdateRequest) async throws -> VMRecord {
        var attestAfter = false
        let result: VMRecord = try await locks.with(name) {
            let vm = try await require(name)
            let plan = try FleetRules.update(u, vm: vm)
            let vtpm = plan.record.vTPM, agent = u.guestAgent.flatMap(GuestAgentState.init(rawValue:))
            let monitoringOn = plan.monitoringOn, monitoringOff = plan.monitoringOff
            if vtpm, !vm.vTPM, !FileManager.default.fileExists(atPath: folder(name).agentToken.path) {
                let token = try await service.createAPIToken(role: .agent, vm: name)
                _ = FileManager.default.createFile(atPath: folder(name).agentToken.path, contents: Data(token.utf8),
                                                   attributes: [.posixPermissions: 0o600])
            }
            let updated = try await mutate(name) { v in
                guard v.version == vm.version else { throw FleetError(.conflict, "\(name) changed meanwhile: retry") }
                let version = v.version
                v = plan.record
                v.version = version
            }
            let changes = plan.changes
            if !changes.isEmpty { try await store.appendEvent(vm: name, kind: .updated, message: changes.joined(separator: "; ")) }
            if monitoringOff { try await resolve(vm: name, kinds: [.notReporting], resolution: "integrity monitoring was switched off") }
            attestAfter = updated.powerState == .running && updated.integrityMonitoring && updated.guestAgent == .running
                && (monitoringOn || (agent == .running && vm.guestAgent == .stopped))
            return updated
        }
        if attestAfter, !hypervisor(for: result).guestRunsAgent { _ = await attestNow(name) ; return try await require(name) }
        return result
    }
}
