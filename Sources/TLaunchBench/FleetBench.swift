import Attestation
import AttestationAPI
import Fleet
import Foundation
import Logging
import GuestAgent
import MeasuredBoot
import Storage
import Synchronization
import TPM2
import VirtualFirmware
import VirtualTPM

/// Peak and current resident memory of this process (VmHWM, VmRSS), in MiB.
func residentMemory() -> (peak: Double, now: Double) { processMemory(getpid()) }

/// A booted vTPM the load generator quotes with: its client, the firmware's event log, its EK,
/// a loaded AK and the EK certificate.
typealias BootedTPM = (client: TPMClient, log: [UInt8], ek: TPMObject, ak: TPMObject, cert: [UInt8])

/// A fleet on a new data folder, as both fleet benchmarks set it up: `vms` Trusted Launch VMs
/// with integrity monitoring deployed through `Fleet.deploy`, `tpms` vTPMs booted by the virtual
/// firmware (sample-linux), and each VM enrolled with its own challenge and AK certificate from
/// one of those vTPMs (round robin). Returns the booted vTPMs.
func deployAndEnrolFleet(fleet: Fleet, service: AttestationService, folder: DataFolder, dir: URL, hostKey: [UInt8],
                         authority: VTPMCertificateAuthority, vms: Int, tpms: Int) async throws -> [BootedTPM] {
    let clock = ContinuousClock()
    // Deploy: the record, the VM's folder and agent token, the timeline (no boot: see below).
    let t0 = clock.now
    let width = 2
    try await withThrowingTaskGroup(of: Void.self) { g in
        for w in 0..<width {
            g.addTask {
                for i in stride(from: w, to: vms, by: width) {
                    _ = try await fleet.deploy(DeployRequest(name: "vm-\(i)", integrityMonitoring: true, start: false))
                }
            }
        }
        try await g.waitForAll()
    }
    let deployTime = clock.now - t0
    out("  deploy \(vms) VMs (record, folder, agent token, timeline): \(fmt(deployTime)) (\(Int(Double(vms) / deployTime.seconds))/s)")

    // Boot the shared vTPMs with the virtual firmware.
    let keys = try PlatformKeys.loadOrCreate(directory: folder.secureBootKeys)
    let (esp, vars) = try SampleImages.sampleLinux(keys: keys)
    let firmware = VirtualFirmware(settings: FirmwareSettings(variables: vars, banks: [.sha1, .sha256]))
    var booted: [BootedTPM] = []
    for k in 0..<tpms {
        let tpm = try await VirtualTPM.open(stateFile: dir.appendingPathComponent("tpm\(k).state").path, hostKey: hostKey,
                                            authority: authority)
        let report = try firmware.launch(esp: esp, tpm: tpm)
        let client = TPMClient(transport: InProcessTransport(tpm))
        let agent = GuestAgent(tpm: client, service: ServiceClient(baseURL: "http://unused", token: nil), vm: "x",
                               eventLog: try report.log.encoded())
        let (ek, cert) = try await agent.endorsementKey()
        let ak = try await agent.attestationKey()
        booted.append((client, try report.log.encoded(), ek, ak, cert))
    }
    let shared = booted

    // Enrol each VM (its own challenge, ActivateCredential in the vTPM, its own AK certificate).
    let t1 = clock.now
    try await withThrowingTaskGroup(of: Void.self) { g in
        for w in 0..<width {
            g.addTask {
                for i in stride(from: w, to: vms, by: width) {
                    let (client, _, ek, ak, cert) = shared[i % tpms]
                    let name = "vm-\(i)"
                    let ch = try await service.beginEnrolment(
                        vm: name,
                        EnrolmentRequest(
                            ekPublic: hexString(try ek.publicArea.tpmBytes()), akPublic: hexString(try ak.publicArea.tpmBytes()),
                                                                                          ekCertificate: Data(cert).base64EncodedString()))
                    let secret = try await client.activateCredential(ak: ak, ek: ek,
                                                                     blob: try TPM2BIDObject(tpmBytes: [UInt8](hex: ch.credentialBlob)!),
                        secret: try TPM2BEncryptedSecret(tpmBytes: [UInt8](hex: ch.encryptedSecret)!))
                    _ = try await service.completeEnrolment(vm: name, id: ch.id, ActivationAnswer(secret: hexString(secret)))
                }
            }
        }
        try await g.waitForAll()
    }
    let enrolTime = clock.now - t1
    out("  enrol \(vms) VMs (EK chain, MakeCredential, ActivateCredential, AK certificate): \(fmt(enrolTime)) "
      + "(\(Int(Double(vms) / enrolTime.seconds))/s)")
    return shared
}

/// The embedded platform's parts in this process, on a new data folder in the temporary
/// directory (removed by `remove()`): SQLite, the attestation service (its CAs from the folder;
/// evidence kept only when asked) and, for the fleet benchmarks, the fleet.
struct BenchPlatform {
    let dir: URL
    let folder: DataFolder
    let authority: VTPMCertificateAuthority
    let store: SQLStore
    let service: AttestationService
    let fleet: Fleet
    let hostKey: [UInt8]

    static func make(_ label: String, keepEvidence: Bool = false, nonceLifetime: TimeInterval = 3600,
                     hostKey: [UInt8] = [UInt8](repeating: 3, count: 32),
                     keySealer: KeySealer? = nil, prepare: (DataFolder) throws -> Void = { _ in }) async throws -> BenchPlatform {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-bench-\(label)-\(getpid())")
        let folder = DataFolder(root: dir)
        try folder.create()
        try prepare(folder)
        let authority = try VTPMCertificateAuthority.loadOrCreate(directory: folder.vtpmCA)
        let store = try await StorageLocation.open(folder.database.path)
        let service = AttestationService(store: store,
                                         anchors: TrustAnchors(roots: [authority.root], intermediates: [authority.intermediate]),
                                         akCA: try AKCertificateAuthority.loadOrCreate(directory: folder.attestationCA), issuer: "bench",
                                         nonceLifetime: nonceLifetime, keepEvidence: keepEvidence, keySealer: keySealer)
        var quiet = Logger(label: "tlaunch.fleet")
        quiet.logLevel = .warning
        let fleet = Fleet(store: try await FleetStore(backend: store.backend), service: service, dataFolder: folder, hostKey: hostKey,
                          authority: authority, logger: quiet)
        return BenchPlatform(dir: dir, folder: folder, authority: authority, store: store, service: service, fleet: fleet, hostKey: hostKey)
    }

    /// `deployAndEnrolFleet` on this platform.
    func deployAndEnrol(vms: Int, tpms: Int) async throws -> [BootedTPM] {
        try await deployAndEnrolFleet(fleet: fleet, service: service, folder: folder, dir: dir, hostKey: hostKey, authority: authority,
                                      vms: vms, tpms: tpms)
    }

    func remove() { try? FileManager.default.removeItem(at: dir) }
}

/// An open loop: `total` calls of `body(n)` started `rate` per second from now, each in a task
/// of its own; a start more than 50 ms behind its schedule is counted in `recorder.late`. `body`
/// gets the call's number and its scheduled time.
func openLoop(total: Int, rate: Double, recorder: FleetRecorder,
              _ body: @escaping @Sendable (Int, ContinuousClock.Instant) async throws -> Void) async throws -> Duration {
    let clock = ContinuousClock()
    let start = clock.now
    try await withThrowingTaskGroup(of: Void.self) { g in
        for n in 0..<total {
            let due = start + .seconds(Double(n) / rate)
            try await clock.sleep(until: due)
            if clock.now - due > .milliseconds(50) { recorder.late.add(1, ordering: .relaxed) }
            g.addTask { try await body(n, due) }
        }
        try await g.waitForAll()
    }
    return clock.now - start
}

/// A fleet of `vms` Trusted Launch VMs with integrity monitoring on the embedded platform
/// (SQLite): deployed through `Fleet.deploy`, each enrolled with its own AK certificate, then
/// attesting at `rate` per second (100,000 VMs every 5 minutes ≈ 333/s) for `seconds`: a fresh
/// nonce, a fresh quote from a vTPM, full verification, an ES256 token, history, and the fleet's
/// record of it (boot integrity, timeline, alerts). The evidence comes from `tpms` vTPMs booted
/// by the virtual firmware and shared round-robin (a vTPM per VM would mean `vms` EK derivations
/// before the run); everything the service and the fleet keep is per VM.
func fleetBenchmark(vms: Int, rate: Double, seconds: Double, tpms: Int) async throws {
    let p = try await BenchPlatform.make("fleet")
    defer { p.remove() }
    let (service, fleet, store) = (p.service, p.fleet, p.store)
    let clock = ContinuousClock()
    out("Fleet at scale: \(vms) Trusted Launch VMs with integrity monitoring, SQLite, one process on "
      + "\(ProcessInfo.processInfo.activeProcessorCount) CPUs")
    let shared = try await p.deployAndEnrol(vms: vms, tpms: tpms)
    out("  memory after deployment: RSS \(Int(residentMemory().now)) MiB")

    // Attest: open loop at `rate`; VM after VM (round robin), each from its vTPM.
    let total = Int(rate * seconds)
    let r = FleetRecorder()
    let elapsed = try await openLoop(total: total, rate: rate, recorder: r) { n, due in
        let i = n % vms
        let (client, log, _, ak, _) = shared[i % tpms]
        let name = "vm-\(i)"
        let agent = GuestAgent(tpm: client, service: ServiceClient(baseURL: "http://unused", token: nil), vm: name, eventLog: log)
        let grant = try await service.issueNonce(vm: name)
        let evidence = try await agent.evidence(nonce: [UInt8](hex: grant.nonce)!, ak: ak)
        let s = clock.now
        let outcome = try await service.attest(vm: name, evidence: evidence)
        try await fleet.record(vm: name, outcome: outcome)
        let end = clock.now
        r.server.withLock { $0.append(end - s) }
        r.whole.withLock { $0.append(end - due) }
        if !outcome.passed { r.failed.add(1, ordering: .relaxed) }
    }
    let w = r.whole.withLock { $0 }, sv = r.server.withLock { $0 }
    out("  attestations: \(w.count) in \(fmt(elapsed)) = \(String(format: "%.0f", Double(w.count) / elapsed.seconds))/s sustained (target "
      + "\(String(format: "%.0f", rate))/s); \(r.failed.load(ordering: .relaxed)) failed; \(r.late.load(ordering: .relaxed)) started >50 "
      + "ms late")
    out("  latency, nonce → recorded (quote included): p50 \(String(format: "%.1f", pct(w, 0.5))) ms, p99 "
      + "\(String(format: "%.1f", pct(w, 0.99))) ms, max \(String(format: "%.1f", pct(w, 1)))")
    out("  latency, service + fleet (verify, token, history, boot integrity, timeline): p50 \(String(format: "%.1f", pct(sv, 0.5))) ms, "
      + "p99 \(String(format: "%.1f", pct(sv, 0.99))) ms")
    let mem = residentMemory()
    out("  memory: peak RSS \(Int(mem.peak)) MiB, now \(Int(mem.now)) MiB (target < 8 GiB)")
    let healthy = try await store.backend.query("SELECT COUNT(*) FROM fleet_vms WHERE last_attestation IS NOT NULL", [])
    out("  VMs with a recorded attestation: \(healthy.first?.first.map { "\($0)" } ?? "?")")
    await store.backend.close()
}

func fmt(_ d: Duration) -> String { String(format: "%.1f s", d.seconds) }

/// The `p` quantile of `a`, in milliseconds (0 when empty).
func pct(_ a: [Duration],
         _ p: Double) -> Double { let s = a.sorted(); return s.isEmpty ? 0 : s[min(s.count - 1, Int(Double(s.count) * p))].seconds * 1000 }

final class FleetRecorder: Sendable {
    let whole = Mutex<[Duration]>([]), server = Mutex<[Duration]>([])
    let failed = Atomic<Int>(0), late = Atomic<Int>(0)
    /// Failures by what they said (the first 160 characters).
    let errors = Mutex<[String: Int]>([:])
}

/// Unbuffered, so progress shows while a long run goes on.
func out(_ s: String) { FileHandle.standardOutput.write(Data((s + "\n").utf8)) }

/// Where one fleet attestation's time goes in process, step by step (sequential, so wall time is
/// CPU time): the nonce, the quote, the service's verification, the fleet's record.
func fleetBreakdown(vms: Int, count: Int) async throws {
    let p = try await BenchPlatform.make("fleet-bd")
    defer { p.remove() }
    let (service, fleet, store) = (p.service, p.fleet, p.store)
    let shared = try await p.deployAndEnrol(vms: vms, tpms: 4)
    let clock = ContinuousClock()
    var steps = [Duration](repeating: .zero, count: 4)
    for n in 0..<(count + vms) {
        let i = n % vms
        let (client, log, _, ak, _) = shared[i % 4]
        let name = "vm-\(i)"
        let agent = GuestAgent(tpm: client, service: ServiceClient(baseURL: "http://unused", token: nil), vm: name, eventLog: log)
        let t0 = clock.now
        let grant = try await service.issueNonce(vm: name)
        let t1 = clock.now
        let evidence = try await agent.evidence(nonce: [UInt8](hex: grant.nonce)!, ak: ak)
        let t2 = clock.now
        let outcome = try await service.attest(vm: name, evidence: evidence)
        let t3 = clock.now
        try await fleet.record(vm: name, outcome: outcome)
        let t4 = clock.now
        guard outcome.passed else { throw AgentError("bench", "attestation \(n) failed") }
        if n >= vms { for (k, d) in [t1 - t0, t2 - t1, t3 - t2, t4 - t3].enumerated() { steps[k] += d } }
    }
    for (k, name) in ["service.issueNonce", "agent.evidence (vTPM quote + PCR read)", "service.attest", "fleet.record"].enumerated() {
        out("  " + name.padding(toLength: 48, withPad: " ", startingAt: 0) + String(format: " %8.1f µs", (steps[k] / count).seconds * 1e6))
    }
    await store.backend.close()
}
