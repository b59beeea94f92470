import Attestation
import AttestationAPI
import Fleet
import Foundation
import GuestAgent
import Logging
import ServiceTLS
import Storage
import TPM2
import VirtualTPM

/// The fleet of `--fleet` with every agent over HTTP(S): `tlaunch up` (its own process, SQLite,
/// the fleet's API, monitor and dashboard) serves the fleet deployed and enrolled beforehand on
/// its data folder; this process is the VMs' agents. Each attestation is what `GuestAgent.attest`
/// sends: a nonce requested with the VM's own agent token, a fresh quote from a vTPM, the evidence
/// posted — two requests on one new connection, as the agent makes them (over HTTPS one TLS
/// handshake per attestation, the platform CA pinned). Open loop at `rate` for `seconds`; the latency of an
/// attestation counts from its scheduled start to the fleet's recorded outcome in the answer.
/// Both processes share the machine's CPUs (no pinning).
func fleetOverHTTPBenchmark(vms: Int, rate: Double, seconds: Double, tpms: Int, https: Bool) async throws {
    let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("tlaunch").path
    guard FileManager.default.isExecutableFile(atPath: exe) else {
        out("  \(exe) is missing: build the tlaunch product in release"); return
    }
    // The keys `tlaunch up` will load: the host key (vTPM state) and the token keys' sealing key.
    let hostKey = TPMCrypto.random(32), tokenKey = TPMCrypto.random(32)
    let p = try await BenchPlatform.make("fleet-http", hostKey: hostKey, keySealer: try KeySealer(key: tokenKey)) { folder in
        for (file, key) in [(folder.hostKey, hostKey), (folder.root.appendingPathComponent("token-keys.key"), tokenKey)] {
            guard FileManager.default.createFile(atPath: file.path, contents: Data(key), attributes: [.posixPermissions: 0o600]) else {
                throw AgentError("bench", "cannot write \(file.path)")
            }
        }
    }
    defer { p.remove() }
    let (dir, folder) = (p.dir, p.folder)
    out("Fleet at scale over \(https ? "HTTPS" : "HTTP"): \(vms) Trusted Launch VMs with integrity monitoring; tlaunch up (SQLite) and "
      + "the agents share \(ProcessInfo.processInfo.activeProcessorCount) CPUs")
    let shared = try await p.deployAndEnrol(vms: vms, tpms: tpms)
    await p.store.backend.close()
    // Every VM's agent token, as its agent reads it from the VM's folder.
    let tokens = try (0..<vms).map { i in
        try String(contentsOf: VMFolder(root: dir, vm: "vm-\(i)").agentToken,
                   encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    let port = 19_000 + Int(getpid() % 1000)
    let server = Process()
    server.executableURL = URL(fileURLWithPath: exe)
    server.arguments = ["up", "--no-sample-fleet", "--hypervisor", "simulated", "--no-keep-evidence", "--listen", "127.0.0.1:\(port)",
                        "--data", dir.path, "--log-level", "error"] + (https ? [] : ["--insecure-http"])
    server.standardOutput = FileHandle.nullDevice   // the fleet table of `vms` rows
    try server.run()
    defer { server.terminate(); server.waitUntilExit() }
    let scheme = https ? "https" : "http"
    let base = "\(scheme)://127.0.0.1:\(port)"
    // Until the server answers: over HTTPS with its certificate from the data folder's TLS CA,
    // which `tlaunch up` creates as it starts.
    let clock = ContinuousClock()
    let caFile = folder.tls.appendingPathComponent("ca.pem")
    var clientTLS: ClientTLS?
    let startBy = clock.now + .seconds(300)
    while true {
        guard server.isRunning else { throw AgentError("bench", "tlaunch up exited (\(server.terminationStatus))") }
        if https, clientTLS == nil, let pem = try? String(contentsOf: caFile, encoding: .utf8), pem.contains("END CERTIFICATE") {
            clientTLS = ClientTLS(trustRootsPEM: pem)
        }
        if !https || clientTLS != nil,
            let r = try? await HTTPSClient.send(
                "GET", URL(string: base + "/healthz")!, tls: clientTLS ?? ClientTLS(), timeout: .seconds(5)), r.status == 200
        {
            break
        }
        guard clock.now < startBy else { throw AgentError("bench", "tlaunch up did not answer \(base)/healthz within 300 s") }
        try await Task.sleep(for: .milliseconds(100))
    }
    out("  tlaunch up (pid \(server.processIdentifier)) answers on \(base); RSS \(Int(processMemory(server.processIdentifier).now)) MiB")
    let tls = clientTLS

    // Attest: open loop at `rate`, VM after VM (round robin), each agent with its own token.
    let total = Int(rate * seconds)
    let r = FleetRecorder()
    let serverCPU0 = processCPUSeconds(server.processIdentifier), ownCPU0 = processCPUSeconds(getpid())
    let serverWrote0 = processWritten(server.processIdentifier)
    let elapsed = try await openLoop(total: total, rate: rate, recorder: r) { n, due in
        let i = n % vms
        let (client, log, _, ak, _) = shared[i % tpms]
        let name = "vm-\(i)"
        let service = ServiceClient.pinned(baseURL: base, token: tokens[i], tls: tls)
        let agent = GuestAgent(tpm: client, service: service, vm: name, eventLog: log)
        do {
            // As `GuestAgent.attest` does: the nonce and the evidence over one connection.
            let outcome = try await service.session { service in
                let grant = try await service.call("POST", "/v1/vms/\(name)/nonce", as: NonceGrant.self, step: "get nonce")
                let evidence = try await agent.evidence(nonce: [UInt8](hex: grant.nonce)!, ak: ak)
                return try await service.call("POST", "/v1/vms/\(name)/attestations", body: evidence, as: AttestationOutcome.self,
                                              step: "attest")
            }
            r.whole.withLock { $0.append(clock.now - due) }
            if !outcome.passed { r.failed.add(1, ordering: .relaxed) }
        } catch {
            r.failed.add(1, ordering: .relaxed)
            r.errors.withLock { $0["\(error)".prefix(160).description, default: 0] += 1 }
        }
    }
    let serverCPU = processCPUSeconds(server.processIdentifier) - serverCPU0, ownCPU = processCPUSeconds(getpid()) - ownCPU0
    let serverWrote = processWritten(server.processIdentifier) - serverWrote0
    let w = r.whole.withLock { $0 }
    let sustained = Double(w.count) / elapsed.seconds
    out("  attestations: \(w.count) answered in \(fmt(elapsed)) = \(String(format: "%.0f", sustained))/s sustained (offered "
      + "\(String(format: "%.0f", rate))/s); "
        + "\(r.failed.load(ordering: .relaxed)) failed; \(r.late.load(ordering: .relaxed)) started >50 ms late")
    for (e, k) in r.errors.withLock({ $0 }).sorted(by: { $0.value > $1.value }).prefix(5) { out("    \(k)× \(e)") }
    out("  latency, scheduled start → outcome (nonce, quote, evidence, verify, token, fleet record): p50 "
      + "\(String(format: "%.1f", pct(w, 0.5))) ms, "
        + "p99 \(String(format: "%.1f", pct(w, 0.99))) ms, max \(String(format: "%.1f", pct(w, 1))) ms")
    out(String(format: "  CPU per attestation: server %.0f µs, agents (quotes, HTTP clients) %.0f µs",
               serverCPU / Double(max(w.count, 1)) * 1e6,
               ownCPU / Double(max(w.count, 1)) * 1e6))
    out("  written by tlaunch up per attestation (its database's WAL and checkpoints, logs): \(serverWrote / max(w.count, 1)) bytes")
    let serverMemory = processMemory(server.processIdentifier), own = residentMemory()
    out("  memory: tlaunch up peak RSS \(Int(serverMemory.peak)) MiB (now \(Int(serverMemory.now))); the agents' process peak "
      + "\(Int(own.peak)) MiB")
    let met = sustained >= 1000 && pct(w, 0.99) < 50 && serverMemory.peak < 2048 && r.failed.load(ordering: .relaxed) == 0
    out("  target ≥ 1,000/s, p99 < 50 ms, RSS < 2 GiB, none failed: \(met ? "met" : "NOT met")")
}

/// The number after `key` ("VmRSS:", "wchar:", …) on its line of a /proc file; 0 when absent.
func procField(_ file: String, _ key: String) -> Int {
    guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix(key) {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
    }
    return 0
}

/// Bytes process `pid` has written through write(2) and friends (`wchar` of /proc/PID/io).
func processWritten(_ pid: Int32) -> Int { procField("/proc/\(pid)/io", "wchar:") }

/// Peak and current resident memory of process `pid` (VmHWM, VmRSS), in MiB.
func processMemory(_ pid: Int32) -> (peak: Double, now: Double) {
    (Double(procField("/proc/\(pid)/status", "VmHWM:")) / 1024, Double(procField("/proc/\(pid)/status", "VmRSS:")) / 1024)
}
