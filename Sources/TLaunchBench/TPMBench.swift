import Foundation
import TPM2
import VirtualTPM
#if canImport(Glibc)
import Glibc
#endif

/// A TPM served by a separate process on loopback: swtpm, or `tlaunch vtpm socket`.
final class ServerProcess {
    let name: String
    let pid: pid_t
    let port: Int
    let directory: URL

    init(name: String, arguments: (URL, Int) -> [String]) throws {
        self.name = name
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tl-bench-\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data(TPMCrypto.random(32)).write(to: directory.appendingPathComponent("host.key"))
        for _ in 0..<5 {
            let port = try SwtpmProcess.freePortPair()
            let args = arguments(directory, port)
            var child: pid_t = 0
            let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
            defer { for a in argv { free(a) } }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
            guard posix_spawn(&child, args[0], &actions, nil, argv, environ) == 0 else { continue }
            for _ in 0..<1000 {
                if !SwtpmProcess.portFreeProbe(port + 1) {
                    pid = child
                    self.port = port
                    usleep(50_000)
                    return
                }
                usleep(10_000)
            }
            kill(child, SIGKILL)
        }
        throw TPMError(.transport, reason: "\(name) did not start")
    }

    func stop() {
        kill(pid, SIGKILL)
        var st: Int32 = 0
        waitpid(pid, &st, 0)
        try? FileManager.default.removeItem(at: directory)
    }

    /// Resident and proportional set sizes in KiB (from /proc).
    static func memory(_ pid: pid_t) -> (rss: Int, pss: Int) {
        (procField("/proc/\(pid)/status", "VmRSS:"), procField("/proc/\(pid)/smaps_rollup", "Pss:"))
    }
}

func tlaunchExecutable() -> String {
    URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("tlaunch")
        .path
}

func startPeers() throws -> [ServerProcess] {
    guard let swtpm = SwtpmProcess.which("swtpm") else { throw TPMError(.transport, reason: "swtpm is not installed") }
    let tlaunch = tlaunchExecutable()
    guard FileManager.default.isExecutableFile(atPath: tlaunch) else {
        throw TPMError(.transport, reason: "\(tlaunch) is missing: swift build -c release first")
    }
    let ours = try ServerProcess(name: "TrustedLaunch vTPM") { dir, port in
        [tlaunch, "vtpm", "socket", "--tpm2", "--tpmstate", "dir=\(dir.path)", "--server", "type=tcp,port=\(port)",
         "--ctrl", "type=tcp,port=\(port + 1)", "--flags", "not-need-init,startup-clear",
         "--key", "file=\(dir.appendingPathComponent("host.key").path)", "--ca", "dir=\(dir.appendingPathComponent("ca").path)"]
    }
    let reference = try ServerProcess(name: "swtpm") { dir, port in
        [swtpm, "socket", "--tpm2", "--tpmstate", "dir=\(dir.path)", "--server", "type=tcp,port=\(port),bindaddr=127.0.0.1",
         "--ctrl", "type=tcp,port=\(port + 1),bindaddr=127.0.0.1", "--flags", "not-need-init,startup-clear"]
    }
    return [ours, reference]
}

/// Operations per second over the socket protocol, for our vTPM and swtpm in the same run.
func tpmBenchmarks(seconds: Double) async throws {
    let affinity = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8))?
        .split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list") }.map(String.init) ?? "?"
    print("Round trips over the swtpm socket protocol, one connection each (\(affinity.replacingOccurrences(of: "\t", with: " ")); "
        + "servers inherit it):")
    let peers = try startPeers()
    defer { for p in peers { p.stop() } }
    var table: [(String, [Double])] = []
    // Rounds alternate between the two TPMs so that machine noise hits both alike; the
    // figure is each TPM's median round.
    let clients = peers.map { TPMClient(transport: SwtpmTransport(data: .tcp(host: "127.0.0.1", port: $0.port), control: nil)) }
    func row(_ name: String, iterations: Int, _ op: (TPMClient) async throws -> Void) async throws {
        let rounds = 7
        var samples: [[Double]] = peers.map { _ in [] }
        for (i, tpm) in clients.enumerated() { for _ in 0..<20 { try await op(tpm) }; _ = i }
        for _ in 0..<rounds {
            for (i, tpm) in clients.enumerated() {
                let start = ContinuousClock.now
                var n = 0
                while n < iterations {
                    try await op(tpm)
                    n += 1
                    if n % 10 == 0, ContinuousClock.now - start > .seconds(seconds / Double(rounds)) { break }
                }
                let d = ContinuousClock.now - start
                samples[i].append(Double(n) / (Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18))
            }
        }
        let rates = samples.map { $0.sorted()[rounds / 2] }
        table.append((name, rates))
        let padded = name.count >= 44 ? name : name + String(repeating: " ", count: 44 - name.count)
        print("  " + padded + String(format: " %10.0f /s  %10.0f /s  %6.2f×", rates[0], rates[1], rates[0] / rates[1]))
    }
    print("  " + "operation".padding(toLength: 44, withPad: " ",
                                     startingAt: 0) + "   \(peers[0].name)        \(peers[1].name)   ours/swtpm")
    // The servers alone: a blocking loop of raw GetRandom(8) round trips, no client library.
    do {
        let cmd: [UInt8] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7B, 0, 8]
        var rates: [[Double]] = [[], []]
        let fds = peers.map { rawConnect($0.port) }
        defer { for fd in fds { close(fd) } }
        var reply = [UInt8](repeating: 0, count: 64)
        for _ in 0..<7 {
            for (i, fd) in fds.enumerated() {
                let start = ContinuousClock.now
                var n = 0
                repeat {
                    for _ in 0..<200 {
                        _ = cmd.withUnsafeBytes { send(fd, $0.baseAddress, 12, 0) }
                        var got = 0
                        while got < 20 { got += reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, 64 - got, 0) } }
                    }
                    n += 200
                } while ContinuousClock.now - start < .seconds(seconds / 7)
                let d = ContinuousClock.now - start
                rates[i].append(Double(n) / (Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18))
            }
        }
        let r = rates.map { $0.sorted()[3] }
        table.append(("raw GetRandom(8) round trip (no client library)", r))
        print(
            "  " + "raw GetRandom(8) round trip (no client lib.)".padding(toLength: 44, withPad: " ", startingAt: 0)
                + String(format: " %10.0f /s  %10.0f /s  %6.2f×", r[0], r[1], r[0] / r[1]))
    }
    let sel = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: 0..<8)])
    let digest = [TPMTHA(hashAlg: .sha256, digest: [UInt8](repeating: 7, count: 32))]
    try await row("PCR_Extend (sha256, PCR 16)", iterations: 1_000_000) { try await $0.pcrExtend(16, digests: digest) }
    try await row("PCR_Read (sha256 0–7)", iterations: 1_000_000) { _ = try await $0.pcrRead(sel) }
    try await row("GetRandom(32)", iterations: 1_000_000) { _ = try await $0.getRandom(32) }
    // Attestation keys on each TPM.
    var eccAKs: [TPMHandle] = [], rsaAKs: [TPMHandle] = []
    for tpm in clients {
        let ek = try await tpm.createEK(.eccP256)
        eccAKs.append(try await tpm.createAK(ek: ek, template: TPMTemplates.akECCP256).object.handle)
        rsaAKs.append(try await tpm.createAK(ek: ek, template: TPMTemplates.akRSA2048).object.handle)
        try await tpm.flushContext(ek.handle)
        try await tpm.nvDefineSpace(TPMSNVPublic(nvIndex: TPMHandle(0x0150_0B00),
                                                 attributes: [.ownerRead, .ownerWrite, .authRead, .authWrite], dataSize: 64))
        try await tpm.nvWrite(TPMHandle(0x0150_0B00), data: [UInt8](repeating: 1, count: 64))
    }
    let nonce = TPMCrypto.random(32)
    var index = 0
    func ak(_ list: [TPMHandle], _ tpm: TPMClient) -> TPMHandle {
        list[clients.firstIndex { $0 === tpm } ?? 0]
    }
    try await row("Quote (sha256 0–7), ECC P-256 AK", iterations: 1_000_000) { tpm in
        _ = try await tpm.quote(ak(eccAKs, tpm), qualifyingData: nonce, pcrs: sel)
    }
    try await row("Quote (sha256 0–7), RSA 2048 AK", iterations: 1_000_000) { tpm in
        _ = try await tpm.quote(ak(rsaAKs, tpm), qualifyingData: nonce, pcrs: sel)
    }
    try await row("CreatePrimary ECC P-256 (+ FlushContext)", iterations: 1_000_000) { tpm in
        try await tpm.flushContext(try await tpm.createPrimary(.owner, template: TPMTemplates.storageECCP256).object.handle)
    }
    try await row("CreatePrimary RSA 2048 (+ FlushContext)", iterations: 1_000_000) { tpm in
        try await tpm.flushContext(try await tpm.createPrimary(.owner, template: TPMTemplates.storageRSA2048).object.handle)
    }
    try await row("NV_Write 64 bytes (changing data)", iterations: 1_000_000) { tpm in
        index &+= 1
        try await tpm.nvWrite(TPMHandle(0x0150_0B00), data: [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: 64))
    }
    try await row("NV_Read 64 bytes", iterations: 1_000_000) { _ = try await $0.nvRead(TPMHandle(0x0150_0B00), size: 64) }
    for c in clients { await c.close() }
    let slower = table.filter { $0.1[0] < $0.1[1] }.map(\.0)
    print(slower.isEmpty ? "  target (every operation at least as fast as swtpm): met" : "  target NOT met for: "
                                                                                       + "\(slower.joined(separator: ", "))")
}

/// Resident memory per idle vTPM: many in this process versus swtpm processes.
func memoryBenchmark(count: Int) throws {
    print("Memory per idle vTPM:")
    let before = ServerProcess.memory(getpid())
    var tpms: [VirtualTPM] = []
    for _ in 0..<count { tpms.append(VirtualTPM.ephemeral()) }
    let after = ServerProcess.memory(getpid())
    let perOurs = Double(after.rss - before.rss) / Double(count)
    print(String(format: "  %d TrustedLaunch vTPMs in one process: +%d KiB RSS → %.1f KiB per vTPM", count, after.rss - before.rss,
                 perOurs))
    withExtendedLifetime(tpms) {}
    guard let swtpm = SwtpmProcess.which("swtpm") else { return }
    var procs: [ServerProcess] = []
    defer { for p in procs { p.stop() } }
    for _ in 0..<10 {
        procs.append(try ServerProcess(name: "swtpm") { dir, port in
            [swtpm, "socket", "--tpm2", "--tpmstate", "dir=\(dir.path)", "--server", "type=tcp,port=\(port),bindaddr=127.0.0.1",
             "--ctrl", "type=tcp,port=\(port + 1),bindaddr=127.0.0.1", "--flags", "not-need-init,startup-clear"]
        })
    }
    let mems = procs.map { ServerProcess.memory($0.pid) }
    let rss = Double(mems.map(\.rss).reduce(0, +)) / Double(mems.count)
    let pss = Double(mems.map(\.pss).reduce(0, +)) / Double(mems.count)
    print(String(format: "  swtpm, one process per vTPM (10 running): %.0f KiB RSS, %.0f KiB PSS each", rss, pss))
    print(String(format: "  ratio: ours %.1f KiB vs swtpm %.0f KiB RSS (%.4f; target ≤ 0.1): %@", perOurs, rss, perOurs / rss,
                 perOurs / rss <= 0.1 ? "met" : "NOT met"))
}

func rawConnect(_ port: Int) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self,
                                                            capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    return fd
}
