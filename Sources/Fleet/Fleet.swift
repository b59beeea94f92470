import Attestation
import Foundation
import GuestAgent
@_exported import FleetCore
import MeasuredBoot
import Logging
import Storage
import Synchronization
import TPM2
import VirtualFirmware
import VirtualTPM

/// A VM as the API and `--json` show it: the Azure Resource Manager shape cloud users know.
public struct VMView: Sendable, Codable, Hashable {
    public struct SecurityProfile: Sendable, Codable, Hashable {
        public struct UEFISettings: Sendable, Codable, Hashable { public var secureBootEnabled: Bool; public var vTpmEnabled: Bool }
        public var securityType: String
        public var uefiSettings: UEFISettings
    }
    public struct Monitoring: Sendable, Codable, Hashable {
        public var enabled: Bool
        public var bootIntegrity: String
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
    public var name: String
    public var image: String
    public var hypervisor: String
    public var powerState: String
    public var securityProfile: SecurityProfile
    public var integrityMonitoring: Monitoring
    public var alerts: [AlertRef]
    public var version: Int64
    public var created: String
    public var bootCount: Int
    public var lastBoot: BootSummary?
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
    /// learn, approve or predicted: how the first baseline is set.
    public var mode: String
    /// learned, approved, predicted; nil when the VM has none yet.
    public var source: String?
    public var since: String?
    public var attestationId: String?
    public var components: Int?
    public var description: String
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
}

/// The fleet: deployment with security types and their rules, the lifecycle on the built-in
/// hypervisor, integrity monitoring (an attestation at every boot and periodically, alerts with
/// evidence and what to do, silent VMs), webhooks. State lives in the database and the data
/// folder; what is in memory (open vTPMs of running VMs) is rebuilt by `resume()`.
public final class Fleet: Sendable {
    public let store: FleetStore
    public let service: AttestationService
    public let images: ImageCatalog
    public let hypervisor: SimulatedHypervisor
    public let root: URL
    public let webhooks: WebhookNotifier
    public let logger: Logger
    /// A monitored VM is "not reporting" after this many attestation intervals without one.
    public let silentIntervals: Int
    let serviceURL = Mutex<String?>(nil)
    struct Running { var tpm: VirtualTPM?; var log: [UInt8]? }
    let running = Mutex<[String: Running]>([:])
    let locks = KeyedLocks()
    let progress: @Sendable (String) -> Void
    /// QEMU and OVMF, when this host runs real VMs (`--hypervisor qemu`).
    public let qemu: QEMUInstallation?
    /// Real VMs running in this process.
    let machines = Mutex<[String: QEMUMachine]>([:])
    /// How long a real VM's boot may take until its agent attested.
    public let bootTimeout: Duration

    public init(store: FleetStore, service: AttestationService, dataFolder: DataFolder, hostKey: [UInt8], authority: VTPMCertificateAuthority,
                webhooks: WebhookNotifier = WebhookNotifier(urls: []), silentIntervals: Int = 3, logger: Logger = Logger(label: "tlaunch.fleet"),
                qemu: QEMUInstallation? = nil, bootTimeout: Duration = .seconds(300),
                progress: @escaping @Sendable (String) -> Void = { _ in }) {
        self.qemu = qemu; self.bootTimeout = bootTimeout
        self.store = store; self.service = service; self.root = dataFolder.root
        self.images = ImageCatalog(dataFolder: dataFolder.root, keysDirectory: dataFolder.secureBootKeys, progress: progress)
        self.hypervisor = SimulatedHypervisor(hostKey: hostKey, authority: authority)
        self.webhooks = webhooks; self.silentIntervals = max(1, silentIntervals); self.logger = logger; self.progress = progress
    }

    /// Where the in-process guest agents reach the attestation service.
    public func attach(serviceURL url: String) { serviceURL.withLock { $0 = url } }

    func folder(_ name: String) -> VMFolder { VMFolder(url: root.appendingPathComponent("vms").appendingPathComponent(name)) }

    // MARK: Images

    public func imageList() async throws -> [ImageInfo] {
        ImageCatalog.builtIn.filter { ImageCatalog.available($0.name) } + (try await store.images())
    }

    public func image(_ name: String) async throws -> ImageInfo {
        if let b = ImageCatalog.builtIn.first(where: { $0.name == name }) {
            guard ImageCatalog.available(name) else {
                throw FleetError(.notFound, "image \(name) is not available here: it needs Debian's shim-signed, grub-efi-amd64-signed and linux-image-amd64 packages", field: "image")
            }
            return b
        }
        if let i = try await store.images().first(where: { $0.name == name }) { return i }
        let names = try await imageList().map(\.name)
        throw FleetError(.notFound, "no image named \(name): choose one of \(names.joined(separator: ", ")) (tlaunch image list), or import it (tlaunch image import)", field: "image")
    }

    public func importImage(name: String, from path: String, generation: Int, keys: String, description: String?) async throws -> ImageInfo {
        try FleetRules.checkName(name, what: "image")
        guard generation == 1 || generation == 2 else { throw FleetError(.invalid, "--generation must be 1 (BIOS) or 2 (UEFI)", field: "generation") }
        let existing = try await store.images()
        if ImageCatalog.builtIn.contains(where: { $0.name == name }) || existing.contains(where: { $0.name == name }) {
            throw FleetError(.conflict, "an image named \(name) exists: choose another name", field: "name")
        }
        let info = try images.importFiles(name: name, from: URL(fileURLWithPath: path), generation: generation, keys: keys, description: description)
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
        return try FleetRules.deploy(r, image: try await image(r.image ?? "sample-linux"), hypervisors: qemu == nil ? [FleetRules.hypervisor] : Set(FleetRules.hypervisors))
    }

    /// Deploys a VM: the record and its folder appear together or not at all; then it starts
    /// (unless `start` is false), which with integrity monitoring is its first attestation.
    public func deploy(_ r: DeployRequest) async throws -> VMRecord {
        let vm = try await plan(r)
        _ = try images.disk(try await image(vm.image))   // build the image before taking the name
        try await locks.with(vm.name) {
            let fm = FileManager.default
            let dir = folder(vm.name)
            guard try await store.insertVM(vm) else {
                throw FleetError(.conflict, "a VM named \(vm.name) exists: choose another name, or delete it first (tlaunch vm delete \(vm.name))", field: "name")
            }
            do {
                try? fm.removeItem(at: dir.url)   // a leftover of a VM deleted while the folder was busy
                try fm.createDirectory(at: dir.url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                if vm.vTPM {
                    let token = try await AttestationService.createAPIToken(store: service.store, role: .agent, vm: vm.name)
                    guard fm.createFile(atPath: dir.agentToken.path, contents: Data(token.utf8), attributes: [.posixPermissions: 0o600]) else {
                        throw FleetError(.failed, "cannot write \(dir.agentToken.path)")
                    }
                }
            } catch {
                _ = try? await store.deleteVM(vm.name)
                try? fm.removeItem(at: dir.url)
                throw error
            }
            if let mode = r.baseline.flatMap(AttestationService.BaselineMode.init(rawValue:)) {
                do { try await service.setBaselineMode(vm: vm.name, mode) } catch {
                    _ = try? await store.deleteVM(vm.name)
                    try? fm.removeItem(at: dir.url)
                    throw error
                }
            }
            try await store.appendEvent(vm: vm.name, kind: "deployed",
                                        message: "deployed from \(vm.image) as \(vm.securityType.rawValue)" + (vm.securityType == .trustedLaunch
                                            ? " (Secure Boot \(vm.secureBoot ? "on" : "off"), vTPM \(vm.vTPM ? "on" : "off"), integrity monitoring \(vm.integrityMonitoring ? "on" : "off"))" : ""))
        }
        logger.info("deployed", metadata: ["vm": .string(vm.name), "securityType": .string(vm.securityType.rawValue)])
        if r.baseline == "predicted" { _ = try await predictBaseline(vm.name) }
        if r.start ?? true { return try await start(vm.name) }
        return try await require(vm.name)
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
                let token = try await AttestationService.createAPIToken(store: service.store, role: .agent, vm: name)
                _ = FileManager.default.createFile(atPath: folder(name).agentToken.path, contents: Data(token.utf8), attributes: [.posixPermissions: 0o600])
            }
            let updated = try await mutate(name) { v in
                guard v.version == vm.version else { throw FleetError(.conflict, "\(name) changed meanwhile: retry") }
                let version = v.version
                v = plan.record
                v.version = version
            }
            let changes = plan.changes
            if !changes.isEmpty { try await store.appendEvent(vm: name, kind: "updated", message: changes.joined(separator: "; ")) }
            if monitoringOff { try await resolve(vm: name, kinds: ["not-reporting"], resolution: "integrity monitoring was switched off") }
            attestAfter = updated.powerState == .running && updated.integrityMonitoring && updated.guestAgent == .running
                && (monitoringOn || (agent == .running && vm.guestAgent == .stopped))
            return updated
        }
        if attestAfter, !result.isRealVM { _ = await attestNow(name) ; return try await require(name) }
        return result
    }

    // MARK: Lifecycle

    public func start(_ name: String) async throws -> VMRecord {
        let vm: VMRecord = try await locks.with(name) {
            let vm = try await require(name)
            guard vm.powerState != .running else {
                throw FleetError(.conflict, "\(name) is already running: tlaunch vm restart \(name) boots it again")
            }
            return try await boot(vm, tpm: nil, verb: "start")
        }
        return try await afterBoot(vm)
    }

    public func restart(_ name: String) async throws -> VMRecord {
        let vm: VMRecord = try await locks.with(name) {
            let vm = try await require(name)
            guard vm.powerState != .stopped else { throw FleetError(.conflict, "\(name) is stopped: tlaunch vm start \(name)") }
            // A real VM is powered off and on again: its disk's new files and a TPM reset take effect.
            return try await boot(vm, tpm: running.withLock { $0[name]?.tpm }, verb: "restart")
        }
        return try await afterBoot(vm)
    }

    func afterBoot(_ vm: VMRecord) async throws -> VMRecord {
        // A real VM's own agent attested during its boot.
        if vm.isRealVM { return try await require(vm.name) }
        if vm.powerState == .running, vm.integrityMonitoring, vm.guestAgent == .running {
            _ = await attestNow(vm.name)
            return try await require(vm.name)
        }
        return vm
    }

    /// One boot on the hypervisor (caller holds the VM's lock).
    func boot(_ vm: VMRecord, tpm: VirtualTPM?, verb: String) async throws -> VMRecord {
        let image = try images.disk(try await image(vm.image))
        progress("booting \(vm.name) (\(vm.securityType.rawValue), \(vm.image))")
        let b: BootSummary
        if vm.isRealVM {
            // The machine is tracked in `machines`; nothing runs in process.
            b = try await bootQEMU(vm, image: image, verb: verb).summary
        } else {
            let result = try await hypervisor.boot(vm, image: image, folder: folder(vm.name), tpm: tpm, number: vm.bootCount + 1)
            b = result.summary
            if b.succeeded {
                running.withLock { $0[vm.name] = Running(tpm: result.tpm, log: result.eventLog) }
                if let log = result.eventLog { try? Data(log).write(to: folder(vm.name).eventLog) }
            } else {
                running.withLock { $0[vm.name] = nil }
            }
        }
        let updated = try await mutate(vm.name) { v in
            v.bootCount = b.number
            v.lastBoot = b
            v.powerState = b.succeeded ? .running : .failed
            // A real VM's own agent already attested this boot while the platform waited for it.
            let started = Self.parse(b.time) ?? Int64.max
            if !(vm.isRealVM && b.succeeded && (v.lastAttestation ?? 0) >= started) {
                v.bootIntegrity = v.integrityMonitoring ? .pending : .notMonitored
            }
        }
        let chain = b.stages.map { ($0.path as NSString).lastPathComponent }.joined(separator: " → ")
        if b.succeeded {
            try await store.appendEvent(vm: vm.name, kind: "boot", message: "\(verb): boot \(b.number) reached \(b.kernel ?? "the OS") via \(chain.isEmpty ? b.firmware : chain)"
                + (b.measured ? " — \(b.events) events measured into the vTPM" : " — not measured (no vTPM)")
                + (b.secureBootEnforced ? ", Secure Boot enforced" : ""))
            try await resolve(vm: vm.name, kinds: ["boot-failure"], resolution: "boot \(b.number) at \(b.time) succeeded")
        } else {
            try await store.appendEvent(vm: vm.name, kind: "boot-failed", message: "\(verb): boot \(b.number) failed: \(b.failure ?? "?")")
            try await raise(AlertBuilder.bootFailure(b, vm: updated))
        }
        return updated
    }

    public func stop(_ name: String) async throws -> VMRecord {
        try await locks.with(name) {
            let vm = try await require(name)
            guard vm.powerState != .stopped else { throw FleetError(.conflict, "\(name) is already stopped") }
            running.withLock { $0[name] = nil }
            await stopMachine(name, timeout: .seconds(10))
            let updated = try await mutate(name) { $0.powerState = .stopped }
            try await store.appendEvent(vm: name, kind: "stopped", message: "stopped (vTPM state kept, encrypted, for the next start)")
            try await resolve(vm: name, kinds: ["not-reporting"], resolution: "the VM was stopped")
            return updated
        }
    }

    /// Deletes the VM: its record, its disk, its vTPM state (destroyed), what the attestation
    /// service knew about it. Its alerts stay, resolved, for the record.
    public func delete(_ name: String) async throws {
        try await locks.with(name) {
            _ = try await require(name)
            running.withLock { $0[name] = nil }
            await stopMachine(name, timeout: nil)
            guard try await store.deleteVM(name) else { throw FleetError(.notFound, "no VM named \(name)") }
            try? FileManager.default.removeItem(at: paths(name).run)
            try? FileManager.default.removeItem(at: folder(name).url)
            try await service.forget(vm: name)
            try await resolve(vm: name, kinds: nil, resolution: "the VM was deleted")
            _ = try await store.db.query("DELETE FROM fleet_events WHERE vm = ?", [.text(name)])
            logger.info("deleted", metadata: ["vm": .string(name)])
        }
    }

    /// Writes a file onto the VM's boot disk (an OS update replacing the kernel, or an attacker
    /// replacing grub); it takes effect at the next boot.
    public func putFile(_ name: String, path: String, bytes: [UInt8]) async throws -> VMRecord {
        guard path.hasPrefix("/"), !path.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }), path.count <= 255, !path.hasSuffix("/") else {
            throw FleetError(.invalid, "the path on the disk must be absolute, without . or .. (e.g. /EFI/BOOT/grubx64.efi)", field: "path")
        }
        guard bytes.count <= 64 << 20 else { throw FleetError(.invalid, "the file is \(bytes.count) bytes; the limit is 64 MiB", field: "file") }
        return try await locks.with(name) {
            let vm = try await require(name)
            guard try await image(vm.image).generation == 2 else {
                throw FleetError(.invalid, "\(name)'s image \(vm.image) is a BIOS disk without an EFI System Partition: files go on Generation 2 disks", field: "path")
            }
            let dest = folder(name).overlay.appendingPathComponent(String(path.dropFirst()))
            try FileManager.default.createDirectory(at: dest.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(bytes).write(to: dest, options: .atomic)
            let digest = hexString((try? TPMCrypto.hash(.sha256, bytes)) ?? [])
            try await store.appendEvent(vm: name, kind: "disk", message: "\(path) written (\(bytes.count) bytes, sha256 \(digest.prefix(16))…); it takes effect at the next boot")
            return try await mutate(name) { _ in }
        }
    }

    // MARK: Integrity monitoring

    /// Runs the VM's guest attestation agent once (it enrols first if needed). The outcome
    /// reaches `record` through the service's API, as any agent's does.
    @discardableResult
    public func attestNow(_ name: String) async -> Result<AttestationOutcome, any Error> {
        if machines.withLock({ $0[name] }) != nil {
            return .failure(FleetError(.conflict, "\(name) is a real VM: its own agent attests at every boot and every interval (tlaunch vm console \(name) shows it); restart it for a new measured boot"))
        }
        guard let r = running.withLock({ $0[name] }), let tpm = r.tpm, let log = r.log else {
            return .failure(FleetError(.conflict, "\(name) is not running with a vTPM in this process"))
        }
        guard let url = serviceURL.withLock({ $0 }) else { return .failure(FleetError(.failed, "the attestation service is not attached")) }
        let token = (try? String(contentsOf: folder(name).agentToken, encoding: .utf8)) ?? ""
        var client = ServiceClient(baseURL: url, token: token)
        client.patient = true   // the service is in this process; under load it answers late, not never
        let agent = GuestAgent(tpm: TPMClient(transport: InProcessTransport(tpm)), service: client, vm: name, eventLog: log)
        do {
            return .success(try await agent.attest())
        } catch {
            logger.warning("attestation did not run", metadata: ["vm": .string(name), "error": .string("\(error)")])
            try? await store.appendEvent(vm: name, kind: "attestation-error", message: "the guest agent could not attest: \(error)")
            return .failure(error)
        }
    }

    /// Records an attestation outcome (called by the API for every attestation, from any agent):
    /// boot integrity, the VM's timeline, and alerts raised or resolved.
    public func record(vm name: String, outcome o: AttestationOutcome) async throws {
        guard (try? await store.vm(name)) != nil else { return }   // not a VM of this fleet
        let vm = try await mutate(name) { v in
            v.lastAttestation = Time.millis()
            v.lastAttestationID = o.id
            let waiting = !o.passed && o.checks.allSatisfy { $0.passed || ($0.category == .baseline && $0.outcome == .unknown) }
            v.bootIntegrity = v.integrityMonitoring ? (o.passed ? .healthy : (waiting ? .pending : .unhealthy)) : .notMonitored
        }
        try await store.appendEvent(vm: name, kind: o.passed ? "attested" : "attestation-failed",
                                    message: o.passed ? "attestation \(o.id) passed (\(o.baseline ?? o.status))"
                                        : "attestation \(o.id) failed: " + o.checks.filter { !$0.passed }.map { "\($0.name): \($0.reason)" }.joined(separator: "; "))
        try await resolve(vm: name, kinds: ["not-reporting"], resolution: "the agent reported again (attestation \(o.id))")
        if o.passed {
            try await resolve(vm: name, kinds: ["boot-integrity"], resolution: "boot \(vm.lastBoot?.number ?? 0) attested healthy (attestation \(o.id))")
        } else if vm.integrityMonitoring, let alert = AlertBuilder.attestation(o, vm: vm) {
            try await raise(alert)
        }
    }

    func raise(_ alert: Alert) async throws {
        let (stored, new) = try await store.raise(alert)
        if new {
            logger.warning("alert raised", metadata: ["vm": .string(stored.vm), "alert": .string(stored.id), "severity": .string(stored.severity.rawValue), "title": .string(stored.title)])
            try await store.appendEvent(vm: stored.vm, kind: "alert", message: "\(stored.severity.rawValue) alert \(stored.id): \(stored.title)")
        }
        await notify(WebhookPayload(event: new ? "alert.raised" : "alert.repeated", time: Time.now(), alert: stored))
    }

    /// Queues the change for every webhook (in the database) and starts delivering.
    func notify(_ payload: WebhookPayload) async {
        guard !webhooks.urls.isEmpty, let body = try? FleetStore.encoder.encode(payload) else { return }
        let now = Time.millis()
        for url in webhooks.urls {
            do {
                try await store.enqueueDelivery(url: url.absoluteString, event: payload.event, alert: payload.alert.id, body: String(decoding: body, as: UTF8.self), now: now)
            } catch {
                logger.error("webhook delivery not queued", metadata: ["url": .string(url.absoluteString), "alert": .string(payload.alert.id), "error": .string("\(error)")])
            }
        }
        Task { await self.deliverDue() }
    }

    /// Sends the deliveries that are due (each claimed first, so instances sharing a database do
    /// not send one twice); a failure is scheduled again with backoff, or dropped as lost after
    /// the last attempt. Runs after every change, after each backoff, and on every monitor pass
    /// (which picks up what a previous run left).
    public func deliverDue() async {
        guard let due = try? await store.dueDeliveries(now: Time.millis()) else { return }
        for d in due {
            guard let url = URL(string: d.url), (try? await store.claimDelivery(d, until: Time.millis() + 60_000)) == true else { continue }
            let attempt = d.attempts + 1
            if await webhooks.post(Data(d.body.utf8), to: url, attempt: attempt, event: d.event, alert: d.alert) {
                try? await store.finishDelivery(d.id)
            } else if attempt >= webhooks.attempts {
                try? await store.finishDelivery(d.id)
                webhooks.lost.add(1, ordering: .relaxed)
                logger.error("webhook gave up", metadata: ["url": .string(d.url), "event": .string(d.event), "alert": .string(d.alert), "attempts": .stringConvertible(attempt)])
            } else {
                let wait = webhooks.backoff(after: attempt)
                try? await store.retryDelivery(d.id, attempts: attempt, at: Time.millis() + Int64(wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000))
                Task {
                    try? await Task.sleep(for: wait)
                    await self.deliverDue()
                }
            }
        }
    }

    /// Webhook deliveries not yet made.
    public func pendingDeliveries() async -> Int { (try? await store.pendingDeliveries()) ?? 0 }

    /// Resolves the VM's active alerts of `kinds` (nil: all).
    func resolve(vm: String, kinds: Set<String>?, resolution: String) async throws {
        for a in try await store.alerts(vm: vm, status: .active) where kinds?.contains(a.kind) ?? true {
            var next = a
            next.status = .resolved
            next.resolution = resolution
            next.updated = Time.now()
            if try await store.replaceAlert(next, expected: a) {
                logger.info("alert resolved", metadata: ["vm": .string(vm), "alert": .string(a.id), "resolution": .string(resolution)])
                try await store.appendEvent(vm: vm, kind: "alert-resolved", message: "alert \(a.id) resolved: \(resolution)")
                await notify(WebhookPayload(event: "alert.resolved", time: next.updated, alert: next))
            }
        }
    }

    public func dismiss(alert id: String, by who: String, reason: String?) async throws -> Alert {
        guard id.count <= 64, let a = try await store.alert(id) else { throw FleetError(.notFound, "no alert \(id) (tlaunch alert list)", field: "id") }
        guard a.status == .active else { throw FleetError(.conflict, "alert \(id) is already \(a.status.rawValue.lowercased())\(a.resolution.map { ": \($0)" } ?? "")") }
        var next = a
        next.status = .dismissed
        next.resolution = "dismissed by \(who)" + (reason.map { ": \($0)" } ?? "")
        next.updated = Time.now()
        guard try await store.replaceAlert(next, expected: a) else { throw FleetError(.conflict, "alert \(id) changed meanwhile: read it again") }
        try? await store.appendEvent(vm: a.vm, kind: "alert-dismissed", message: "alert \(id) \(next.resolution!)")
        await notify(WebhookPayload(event: "alert.dismissed", time: next.updated, alert: next))
        return next
    }

    /// Lets the VM's next enrolment bind another TPM (its vTPM was replaced on purpose): an alert
    /// says so, and the baseline is reset when the new TPM enrols.
    public func allowRebind(_ name: String, by who: String) async throws {
        let vm = try await require(name)
        try await service.allowRebind(vm: name)
        try await store.appendEvent(vm: name, kind: "identity", message: "\(who) allowed the next enrolment to bind another TPM; the baseline is reset when it enrols")
        try await raise(AlertBuilder.rebind(vm, by: who))
    }

    /// Approves the VM's last boot as its baseline; its boot-integrity alerts are resolved and,
    /// when it runs with monitoring, it attests again at once.
    public func approveBaseline(_ name: String, attestationID: String? = nil) async throws -> BaselineRecord {
        let vm = try await require(name)
        let b = try await service.approveBaseline(vm: name, attestationID: attestationID)
        try await store.appendEvent(vm: name, kind: "baseline", message: "baseline approved from attestation \(b.attestationID ?? "?") (\(b.components.count) components)")
        try await resolve(vm: name, kinds: ["boot-integrity"], resolution: "the boot was approved as the new baseline (attestation \(b.attestationID ?? "?"))")
        if vm.powerState == .running, vm.integrityMonitoring, vm.guestAgent == .running, running.withLock({ $0[name] }) != nil {
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
        guard vm.securityType == .trustedLaunch, vm.vTPM else {
            throw FleetError(.invalid, "\(name) has no vTPM: nothing is measured, so there is no baseline to predict", field: "name")
        }
        let image = try images.disk(try await image(vm.image))
        guard let esp = try SimulatedHypervisor.disk(image, folder: folder(name)) else {
            throw FleetError(.invalid, "\(name)'s image is a BIOS disk: nothing to predict")
        }
        let report: LaunchReport
        do {
            // A real VM runs OVMF, whose own measurements (PCRs 0–3, 6) depend on its build: the
            // prediction models it and predicts what the disk and keys decide.
            report = try VirtualFirmware(settings: FirmwareSettings(securityType: vm.securityType, secureBoot: vm.secureBoot, vTPM: true, variables: image.variables),
                                         model: vm.isRealVM ? .ovmf(reference: nil) : .tlaunch, cache: hypervisor.cache).predict(esp: esp)
        } catch { throw FleetError(.failed, "prediction failed: \(error)") }
        guard report.succeeded else {
            throw FleetError(.conflict, "the firmware would not boot \(name)'s disk (\(report.failure.map { "\($0)" } ?? "?")): fix the disk first")
        }
        let values = report.pcrs
        var pcrs: [String: String] = [:]
        let predicted: [UInt32] = vm.isRealVM ? [4, 5, 7, 8, 9, 14] : [0, 1, 2, 3, 4, 5, 7, 8, 9]
        for p in predicted { if let v = values[.sha256, p] { pcrs[String(p)] = hexString(v) } }
        let b = try await service.setPredictedBaseline(vm: name, pcrs: pcrs)
        try await store.appendEvent(vm: name, kind: "baseline", message: "baseline set from predicted PCRs \(pcrs.keys.compactMap(Int.init).sorted().map(String.init).joined(separator: ", "))")
        return b
    }

    public func resetBaseline(_ name: String) async throws {
        _ = try await require(name)
        try await service.resetBaseline(vm: name)
        try await store.appendEvent(vm: name, kind: "baseline", message: "baseline reset: the next healthy boot becomes the baseline")
    }

    /// One pass of the monitor: periodic attestations that are due, and silent VMs.
    public func monitorOnce(now: Int64 = Time.millis()) async {
        if !webhooks.urls.isEmpty { await deliverDue() }
        guard let vms = try? await store.monitoredRunning() else { return }
        for vm in vms {
            let since = vm.lastAttestation ?? vm.lastBoot.flatMap { Self.parse($0.time) } ?? vm.updated
            let silentFor = Int((now - since) / 1000)
            if vm.guestAgent == .running, running.withLock({ $0[vm.name] }) != nil, now - since >= Int64(vm.attestationInterval) * 1000 {
                await attestNow(vm.name)
                continue
            }
            if now - since >= Int64(vm.attestationInterval * silentIntervals) * 1000 {
                try? await raise(AlertBuilder.notReporting(vm, silentSeconds: silentFor))
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
        guard let vms = try? await store.vms() else { return }
        for vm in vms where vm.powerState == .running && running.withLock({ $0[vm.name] }) == nil && machines.withLock({ $0[vm.name] }) == nil {
            if vm.isRealVM, let done = reapOrphan(vm.name) {
                logger.notice("\(done)", metadata: ["vm": .string(vm.name)])
                try? await store.appendEvent(vm: vm.name, kind: "resumed", message: "\(done); booting it again")
            }
            _ = try? await locks.with(vm.name) { try await boot(vm, tpm: nil, verb: "resume after platform restart") }
            if let v = try? await require(vm.name) { _ = try? await afterBoot(v) }
        }
    }

    static func parse(_ rfc3339: String) -> Int64? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: rfc3339).map { Time.millis($0) }
    }

    // MARK: Views

    public func view(_ vm: VMRecord, alerts: [Alert]? = nil) async throws -> VMView {
        let active: [Alert]
        if let alerts { active = alerts } else { active = try await store.alerts(vm: vm.name, status: .active) }
        return VMView(name: vm.name, image: vm.image, hypervisor: vm.hypervisor, powerState: vm.powerState.rawValue,
                      securityProfile: .init(securityType: vm.securityType.rawValue, uefiSettings: .init(secureBootEnabled: vm.secureBoot, vTpmEnabled: vm.vTPM)),
                      integrityMonitoring: .init(enabled: vm.integrityMonitoring, bootIntegrity: vm.bootIntegrity.rawValue,
                                                 lastAttestation: vm.lastAttestation.map(Time.rfc3339), attestationIntervalSeconds: vm.attestationInterval,
                                                 guestAgent: vm.guestAgent.rawValue),
                      alerts: active.filter { $0.vm == vm.name && $0.status == .active }.map { .init(id: $0.id, severity: $0.severity.rawValue, status: $0.status.rawValue, title: $0.title, created: $0.created) },
                      version: vm.version, created: Time.rfc3339(vm.created), bootCount: vm.bootCount, lastBoot: vm.lastBoot)
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
        return VMOverview(vm: try await view(vm), baseline: vm.vTPM ? try await baselineSummary(name) : nil, checklist: Self.checklist(vm),
                          recommendations: Self.recommendations(vm), timeline: try await store.events(vm: name, limit: 50), attestations: history)
    }

    func baselineSummary(_ name: String) async throws -> BaselineSummary {
        let mode = try await service.baselineMode(vm: name)
        guard let b = try await service.store.baseline(vm: name) else {
            let description = switch mode {
            case .learn: "none yet: the first boot with complete evidence that passes the policy becomes it (trust on first use)"
            case .approve: "none yet: the first baseline waits for a person (tlaunch vm baseline approve \(name))"
            case .predicted: "none yet: predicted from the disk (tlaunch vm baseline predict \(name))"
            }
            return BaselineSummary(mode: mode.rawValue, source: nil, since: nil, attestationId: nil, components: nil, description: description)
        }
        let since = Time.rfc3339(b.updated)
        let description = switch b.source {
        case "learned": "learned on first use at \(since) from attestation \(b.attestationID ?? "?") — approve or predict one to replace it"
        case "approved": "approved at \(since) from attestation \(b.attestationID ?? "?")"
        case "predicted": "predicted from the disk at \(since) (\(b.components.count) PCR values)"
        default: "\(b.source) at \(since)"
        }
        return BaselineSummary(mode: mode.rawValue, source: b.source, since: since, attestationId: b.attestationID, components: b.components.count, description: description)
    }

    public static func recommendations(_ vm: VMRecord) -> [String] {
        var out: [String] = []
        if vm.securityType == .standard {
            out.append("Standard VMs have no Secure Boot, vTPM or integrity monitoring. Trusted Launch can only be chosen at deployment: deploy a new VM (Trusted Launch is the default) and move the workload.")
            return out
        }
        if !vm.secureBoot { out.append("Turn Secure Boot on so only signed boot loaders and kernels run: tlaunch vm stop \(vm.name); tlaunch vm update \(vm.name) --secure-boot true") }
        if !vm.vTPM { out.append("Turn the vTPM on for measured boot and attestation: tlaunch vm stop \(vm.name); tlaunch vm update \(vm.name) --vtpm true") }
        if vm.vTPM, !vm.integrityMonitoring { out.append("Turn on integrity monitoring to be alerted when the boot changes: tlaunch vm update \(vm.name) --integrity-monitoring true") }
        if vm.integrityMonitoring, vm.bootIntegrity == .unhealthy { out.append("Boot integrity is unhealthy: read the active alert (tlaunch alert list --vm \(vm.name))") }
        return out
    }

    /// A Secured-core-style readiness checklist for the VM, each item with why.
    public static func checklist(_ vm: VMRecord) -> [ChecklistItem] {
        let tl = vm.securityType == .trustedLaunch
        let booted = vm.lastBoot
        var out: [ChecklistItem] = []
        out.append(tl && vm.vTPM
            ? ChecklistItem(requirement: "TPM 2.0", state: .met, why: "a vTPM (TPM 2.0, EK certificate from the platform's vTPM CA, state encrypted at rest)")
            : ChecklistItem(requirement: "TPM 2.0", state: .notMet, why: tl ? "the vTPM is off: stop the VM and turn it on (--vtpm true)" : "Standard VMs have no vTPM: redeploy as TrustedLaunch"))
        if tl && vm.secureBoot {
            if let b = booted, b.succeeded, !b.secureBootEnforced {
                out.append(ChecklistItem(requirement: "Secure Boot", state: .notMet, why: "on in the settings, but the last boot ran without enforcement (no PK in the VM's store)"))
            } else {
                out.append(ChecklistItem(requirement: "Secure Boot", state: .met, why: booted?.secureBootEnforced == true ? "enforced at the last boot: every boot image was verified against db and dbx" : "on (enforced from the first boot)"))
            }
        } else {
            out.append(ChecklistItem(requirement: "Secure Boot", state: .notMet, why: tl ? "off: stop the VM and turn it on (--secure-boot true)" : "Standard VMs have no Secure Boot: redeploy as TrustedLaunch"))
        }
        if tl && vm.vTPM {
            if let b = booted, b.measured {
                out.append(ChecklistItem(requirement: "Measured boot", state: .met, why: "boot \(b.number) measured \(b.events) events into the vTPM's PCRs with a TCG event log"))
            } else {
                out.append(ChecklistItem(requirement: "Measured boot", state: .met, why: "the firmware will measure every boot into the vTPM (not booted yet)"))
            }
        } else {
            out.append(ChecklistItem(requirement: "Measured boot", state: .notMet, why: "nothing is measured without a vTPM"))
        }
        switch (vm.integrityMonitoring, vm.bootIntegrity) {
        case (true, .healthy): out.append(ChecklistItem(requirement: "Boot integrity monitored", state: .met, why: "the last attestation (\(vm.lastAttestation.map(Time.rfc3339) ?? "-")) passed"))
        case (true, .unhealthy): out.append(ChecklistItem(requirement: "Boot integrity monitored", state: .notMet, why: "monitored, but the last attestation failed: see the active alert"))
        case (true, _): out.append(ChecklistItem(requirement: "Boot integrity monitored", state: .notMet, why: "monitored; waiting for the first attestation of this boot"))
        case (false, _): out.append(ChecklistItem(requirement: "Boot integrity monitored", state: .notMet, why: tl && vm.vTPM ? "integrity monitoring is off: tlaunch vm update \(vm.name) --integrity-monitoring true" : "needs Trusted Launch with a vTPM"))
        }
        out.append(ChecklistItem(requirement: "DMA protection", state: .notApplicable, why: "the \(vm.hypervisor) hypervisor gives the guest no DMA-capable (passed-through) devices; with device passthrough a virtual IOMMU would be required"))
        out.append(ChecklistItem(requirement: "System Guard (DRTM)", state: .notMet, why: "the virtual firmware provides a static root of trust (SRTM: firmware → boot loader → kernel measured from reset); no dynamic launch (Intel TXT / AMD SKINIT) is offered to guests"))
        return out
    }
}

/// One lock per key (a VM's name): operations on one VM run one at a time, different VMs in
/// parallel. Waiters are served in order.
actor KeyedLocks {
    var held: Set<String> = []
    var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]

    func lock(_ key: String) async {
        if held.contains(key) {
            await withCheckedContinuation { waiters[key, default: []].append($0) }
        } else {
            held.insert(key)
        }
    }

    func unlock(_ key: String) {
        if var w = waiters[key], !w.isEmpty {
            let next = w.removeFirst()
            waiters[key] = w.isEmpty ? nil : w
            next.resume()
        } else {
            held.remove(key)
        }
    }

    nonisolated func with<T: Sendable>(_ key: String, _ body: () async throws -> T) async throws -> T {
        await lock(key)
        do {
            let v = try await body()
            await unlock(key)
            return v
        } catch {
            await unlock(key)
            throw error
        }
    }
}

extension Fleet {
    /// The guest's own view, run inside the simulated guest (its vTPM and event log).
    public func guestStatus(_ name: String) async -> GuestStatus? {
        if let s = reportedGuestStatus(name) { return s }
        guard let r = running.withLock({ $0[name] }) else { return nil }
        let token = (try? String(contentsOf: folder(name).agentToken, encoding: .utf8)) ?? ""
        let url = serviceURL.withLock { $0 } ?? "http://127.0.0.1:1"
        guard let tpm = r.tpm else {
            return GuestStatus(vm: name, secureBootState: "Unsupported", tpm: .init(present: false, specVersion: nil, manufacturer: nil, firmwareVersion: nil, pcrBanks: [], ekCertificate: nil, error: "no TPM device: the VM has no vTPM"),
                               measuredBootLog: .init(present: false, path: nil, events: 0, matchesTPM: nil, error: "no measured boot without a TPM"), lastAttestation: nil, serviceError: nil)
        }
        let agent = GuestAgent(tpm: TPMClient(transport: InProcessTransport(tpm)), service: ServiceClient(baseURL: url, token: token), vm: name, eventLog: r.log)
        return await agent.status()
    }
}
