import Attestation
import AttestationAPI
import Storage
import Fleet
import Foundation
import X509
import GuestAgent
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import ServiceTLS
import MeasuredBoot
import TPM2
import VirtualFirmware
import VirtualTPM

/// One keep-alive connection of the load generator: a blocking request/response.
protocol BenchConnection: AnyObject {
    func request(_ method: String, _ path: String, body: [UInt8], token: String) throws -> (Int, [UInt8])
}

extension BenchConnection {
    func request(_ method: String, _ path: String, token: String) throws -> (Int,
                                                                             [UInt8]) { try request(method, path, body: [], token: token) }
}

/// A blocking HTTP/1.1 keep-alive connection: the load generator's client (light enough that
/// one core drives the server's core).
final class BenchHTTP: BenchConnection {
    let fd: Int32
    var buffer: [UInt8] = []

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard r == 0 else { throw AgentError("bench", "cannot connect to 127.0.0.1:\(port)") }
    }
    deinit { close(fd) }

    func request(_ method: String, _ path: String, body: [UInt8], token: String) throws -> (Int, [UInt8]) {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(token)\r\nContent-Length: \(body.count)\r\n"
        if !body.isEmpty { head += "Content-Type: application/json\r\n" }
        head += "\r\n"
        let out = Array(head.utf8) + body
        var sent = 0
        while sent < out.count {
            let n = out[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw AgentError("bench", "send failed") }
            sent += n
        }
        // Headers, then Content-Length bytes of body.
        var headerEnd: Int?
        while headerEnd == nil {
            if let r = find(Array("\r\n\r\n".utf8)) { headerEnd = r } else { try fill() }
        }
        let headers = String(decoding: buffer[..<headerEnd!], as: UTF8.self)
        let status = Int(headers.split(separator: " ").dropFirst().first ?? "") ?? 0
        let length = headers.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
        let start = headerEnd! + 4
        while buffer.count < start + length { try fill() }
        let responseBody = Array(buffer[start..<(start + length)])
        buffer.removeFirst(start + length)
        return (status, responseBody)
    }

    private func find(_ needle: [UInt8]) -> Int? {
        guard buffer.count >= needle.count else { return nil }
        for i in 0...(buffer.count - needle.count) where buffer[i] == needle[0] && Array(buffer[i..<(i + needle.count)]) == needle {
            return i
        }
        return nil
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { throw AgentError("bench", "connection closed") }
        buffer += chunk[..<n]
    }
}

/// A keep-alive HTTPS connection (NIO + NIOSSL, verified against the server's CA), used
/// blockingly like `BenchHTTP`: the same requests, with TLS.
final class BenchHTTPS: BenchConnection {
    final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPClientResponsePart
        var pending: EventLoopPromise<(Int, [UInt8])>?
        var status = 0
        var body: [UInt8] = []
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): status = Int(h.status.code); body = []
            case .body(var b): body += b.readBytes(length: b.readableBytes) ?? []
            case .end: pending?.succeed((status, body)); pending = nil
            }
        }
        func errorCaught(context: ChannelHandlerContext,
                         error: any Error) { pending?.fail(error); pending = nil; context.close(promise: nil) }
        func channelInactive(context: ChannelHandlerContext) { pending?.fail(ChannelError.ioOnClosedChannel); pending = nil }
    }
    let channel: any Channel
    let collector = Collector()

    init(port: Int, context: NIOSSLContext) throws {
        let collector = self.collector
        channel = try ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                    try ch.pipeline.syncOperations.addHTTPClientHandlers()
                    try ch.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).wait()
    }
    deinit { channel.close(promise: nil) }

    func request(_ method: String, _ path: String, body: [UInt8], token: String) throws -> (Int, [UInt8]) {
        let promise = channel.eventLoop.makePromise(of: (Int, [UInt8]).self)
        let collector = self.collector
        channel.eventLoop.execute { collector.pending = promise }
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path)
        head.headers.add(name: "Host", value: "127.0.0.1")
        head.headers.add(name: "Authorization", value: "Bearer \(token)")
        head.headers.add(name: "Content-Length", value: "\(body.count)")
        if !body.isEmpty { head.headers.add(name: "Content-Type", value: "application/json") }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if !body.isEmpty { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        return try promise.futureResult.wait()
    }
}

/// Attestations per second on one server core, end to end over HTTP on loopback (a separate
/// `tlaunch serve` process pinned to one CPU, SQLite in a temporary data folder), side by side
/// with `openssl speed ecdsap256` on the same CPU; then the latency at half that load.
func attestationBenchmarks(seconds: Double, serverCPU: Int, clients: Int, https: Bool = false) async throws {
    let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("tlaunch").path
    guard FileManager.default.isExecutableFile(atPath: exe) else { print("  \(exe) is missing: swift build -c release"); return }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-bench-att-\(getpid())")
    defer { try? FileManager.default.removeItem(at: dir) }
    let port = 18_000 + Int(getpid() % 1000)
    let server = Process()
    server.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
    server.arguments =
        [
            "-c", "\(serverCPU)", exe, "serve", "--listen", "127.0.0.1:\(port)", "--data", dir.path, "--nonce-lifetime", "3600",
            "--log-level", "error"
        ] + (https ? [] : ["--insecure-http"]) + (args.contains("--no-keep-evidence") ? ["--no-keep-evidence"] : [])
    server.standardOutput = FileHandle.nullDevice
    try server.run()
    defer { server.terminate(); server.waitUntilExit() }
    let tokenFile = dir.appendingPathComponent("admin.token")
    // Until the server listens (each probe's connection closes as it goes out of scope).
    var tries = 0
    while tries < 200, !FileManager.default.fileExists(atPath: tokenFile.path) || (try? BenchHTTP(port: port)) == nil {
        usleep(50_000); tries += 1
    }
    let token = try String(contentsOf: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    // Over HTTPS: the server's certificate from the data folder's CA, which the clients pin.
    let caPEM = https ? try String(contentsOf: DataFolder(root: dir).tls.appendingPathComponent("ca.pem"), encoding: .utf8) : nil
    let clientTLS = caPEM.map { ClientTLS(trustRootsPEM: $0) }
    let sslContext = try clientTLS.map { try NIOSSLContext(configuration: try $0.configuration()) }
    @Sendable func connect() throws -> any BenchConnection {
        if let sslContext { return try BenchHTTPS(port: port, context: sslContext) }
        return try BenchHTTP(port: port)
    }
    let scheme = https ? "https" : "http"

    // The fleet: vTPMs manufactured under the same data folder's CA, booted by the virtual
    // firmware (sample-linux), enrolled through the API.
    let authority = try VTPMCertificateAuthority.loadOrCreate(directory: DataFolder(root: dir).vtpmCA)
    let keys = try PlatformKeys.loadOrCreate(directory: dir.appendingPathComponent("secureboot"))
    let (esp, vars) = try SampleImages.sampleLinux(keys: keys)
    let firmware = VirtualFirmware(settings: FirmwareSettings(variables: vars, banks: [.sha1, .sha256]))
    var agents: [GuestAgent] = []
    var events = 0
    for i in 0..<clients {
        let tpm = try await VirtualTPM.open(stateFile: dir.appendingPathComponent("vm\(i).state").path,
                                            hostKey: [UInt8](repeating: 1, count: 32), authority: authority)
        let report = try firmware.launch(esp: esp, tpm: tpm)
        events = report.log.events.count
        let agent = GuestAgent(tpm: TPMClient(transport: InProcessTransport(tpm)),
                               service: ServiceClient.pinned(baseURL: "\(scheme)://127.0.0.1:\(port)", token: token, tls: clientTLS),
                               vm: "bench-\(i)", eventLog: try report.log.encoded())
        _ = try await agent.enroll()
        agents.append(agent)
    }

    /// Evidence for `count` attestations per VM, each answering a nonce the server issued.
    func prepare(_ count: Int) async throws -> [[[UInt8]]] {
        var all: [[[UInt8]]] = []
        for (i, agent) in agents.enumerated() {
            let http = try connect()
            var mine: [[UInt8]] = []
            for _ in 0..<count {
                let (_, body) = try http.request("POST", "/v1/vms/bench-\(i)/nonce", token: token)
                let grant = try JSONDecoder().decode(NonceGrant.self, from: Data(body))
                mine.append(Array(try JSONEncoder().encode(try await agent.evidence(nonce: [UInt8](hex: grant.nonce)!))))
            }
            all.append(mine)
        }
        return all
    }

    // The ceiling: raw ECDSA P-256 on the server's CPU.
    // openssl speed times itself with SIGALRM, which this process's threads block and a spawned
    // child inherits blocked: unblock it in the child before exec.
    let openssl = Process()
    openssl.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
    openssl.arguments = ["-c",
                         "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execvp(sys.argv[1], sys.argv[1:])",
                         "taskset", "-c", "\(serverCPU)", "openssl", "speed", "-seconds", "\(max(1, Int(seconds)))", "ecdsap256"]
    let pipe = Pipe()
    openssl.standardOutput = pipe
    openssl.standardError = FileHandle.nullDevice
    try openssl.run()
    let speed = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    openssl.waitUntilExit()
    let fields =
        speed.split(separator: "\n").first { $0.contains("ecdsa (nistp256)") }?.split(separator: " ").compactMap { Double($0) } ?? []
    // "256 bits ecdsa (nistp256)   0.0000s   0.0001s  27842.4   8861.0": sign/s and verify/s last.
    let (sign, verify) = fields.count >= 3 ? (fields[fields.count - 2], fields[fields.count - 1]) : (0, 0)

    print("Attestation service: one server core (CPU \(serverCPU)), SQLite, "
        + "\(https ? "HTTPS (TLS, keep-alive, the CA pinned)" : "HTTP/1.1") on loopback, \(clients) VMs")
    print("  evidence: quote over sha256 PCRs 0–15 + \(events)-event log; default policy; ES256 token; history kept")
    report("openssl speed ecdsap256: verify (ceiling)", verify)
    report("openssl speed ecdsap256: sign", sign)

    // Throughput: every client posts its prepared evidence as fast as the server answers.
    let perClient = max(200, Int(3000 * seconds) / clients)
    let prepared = try await prepare(perClient + 20)
    let failures = Counter()
    let responseBytes = Counter()
    let clock = ContinuousClock()
    func blast(_ items: [[[UInt8]]], range: Range<Int>, pace: Duration?, latencies: LatencyLog?) throws -> Duration {
        let start = clock.now
        let group = DispatchGroup()
        for (i, mine) in items.enumerated() {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                guard let http = try? connect() else { failures.add(); return }
                for (k, j) in range.enumerated() {
                    let scheduled = pace.map { start + $0 * (k * items.count + i) }
                    if let scheduled, clock.now < scheduled { Thread.sleep(forTimeInterval: (scheduled - clock.now).seconds) }
                    let sent = scheduled ?? clock.now
                    guard let (status, body) = try? http.request("POST", "/v1/vms/bench-\(i)/attestations", body: mine[j], token: token),
                        status == 200, body.count > 20, String(decoding: body.prefix(4096), as: UTF8.self).contains("\"passed\":true")
                    else { failures.add(); continue }
                    latencies?.add(clock.now - sent)
                    responseBytes.set(body.count)
                }
            }
        }
        group.wait()
        return clock.now - start
    }
    // The floor under the attestation figure: the same clients on requests that do no work
    // (GET /healthz) and on one SQLite write each (a nonce), so what HTTP itself costs is seen.
    // A failed request counts as a failure of the figure it is in.
    func floor(_ method: String, body: [UInt8]? = nil, expect: Int = 200,
               _ path: @escaping @Sendable (Int) -> String) throws -> (rate: Double, serverCPU: Double) {
        let total = args.firstIndex(of: "--floor-requests").flatMap { Int(args[$0 + 1]) } ?? 2000
        let n = total / clients + 1
        let start = clock.now
        let cpu0 = processCPUSeconds(server.processIdentifier)
        let group = DispatchGroup()
        for i in 0..<clients {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                guard let http = try? connect() else { failures.add(); return }
                for _ in 0..<n {
                    guard let (status, _) = try? http.request(method, path(i), body: body ?? [], token: token), status == expect else {
                        failures.add(); continue
                    }
                }
            }
        }
        group.wait()
        return (Double(n * clients) / (clock.now - start).seconds,
                (processCPUSeconds(server.processIdentifier) - cpu0) / Double(n * clients))
    }
    /// A figure with the server's own CPU time per request beside it (the clients may be the
    /// limit of a cheap request's rate; the server's CPU per request is what it costs).
    func reportWithCPU(_ name: String, _ f: (rate: Double, serverCPU: Double)) {
        report(name, f.rate)
        print(String(format: "      server CPU per request: %.0f µs (user + system, /proc)", f.serverCPU * 1e6))
    }
    FileHandle.standardError.write(Data("  floors now: tlaunch serve is pid \(server.processIdentifier)\n".utf8))
    reportWithCPU("floor: GET /healthz (HTTP alone)", try floor("GET") { _ in "/healthz" })
    reportWithCPU("floor: POST nonce (token check + one SQLite INSERT)", try floor("POST", expect: 201) { "/v1/vms/bench-\($0)/nonce" })
    let sample = try await prepare(1)[0][0]
    reportWithCPU("floor: POST evidence for a VM never enrolled (body read + parse, 404)",
                  try floor("POST", body: sample, expect: 404) { "/v1/vms/nobody-\($0)/attestations" })

    _ = try blast(prepared, range: 0..<20, pace: nil, latencies: nil)   // warm-up (learns baselines)
    // Unbuffered, so a profiler waiting on this line sees it now.
    FileHandle.standardError.write(Data("  under load now: tlaunch serve is pid \(server.processIdentifier) (for perf record -p)\n".utf8))
    let cpuBefore = processCPUSeconds(server.processIdentifier)
    let elapsed = try blast(prepared, range: 20..<(perClient + 20), pace: nil, latencies: nil)
    let rate = Double(clients * perClient) / elapsed.seconds
    reportWithCPU("attestations/s, one core (verify + replay + policy + token + 5 SQL statements)",
                  (rate, (processCPUSeconds(server.processIdentifier) - cpuBefore) / Double(clients * perClient)))
    print(String(format: "  = %.1f %% of the raw ECDSA P-256 verify rate; failures: %d; evidence %d bytes, response %d bytes",
                 100 * rate / max(verify, 1), failures.value, prepared[0][0].count, responseBytes.value))

    // Latency at half the measured load (open loop: each request's latency counts from its
    // scheduled time, so a stall is not hidden).
    let halfCount = max(100, Int(rate / 2 * seconds) / clients)
    let paced = try await prepare(halfCount)
    let latencies = LatencyLog()
    let interval = Duration.seconds(1.0 / (rate / 2))
    _ = try blast(paced, range: 0..<halfCount, pace: interval, latencies: latencies)
    let sorted = latencies.values.sorted()
    if !sorted.isEmpty {
        func pct(_ p: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))].seconds * 1000 }
        print(String(format: "  at %.0f attestations/s (half load), %d requests: p50 %.2f ms, p99 %.2f ms, max %.2f ms; failures: %d",
                     rate / 2, sorted.count, pct(0.5), pct(0.99), sorted.last!.seconds * 1000, failures.value))
    }
    if args.contains("--metrics"), let (_, m) = try? connect().request("GET", "/metrics", token: token) {
        print(String(decoding: m, as: UTF8.self).split(separator: "\n").filter { $0.contains("duration") }.joined(separator: "\n"))
    }
    if let rss = try? String(contentsOfFile: "/proc/\(server.processIdentifier)/status",
                             encoding: .utf8).split(separator: "\n").first(where: { $0.hasPrefix("VmRSS") }) {
        print("  server \(rss.replacingOccurrences(of: "\t", with: " "))")
    }
}

/// CPU seconds (user + system) a process has used so far, from /proc/PID/stat.
func processCPUSeconds(_ pid: Int32) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return 0 }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // After the command: state is field 3, utime 14 and stime 15 (1-based, proc(5)).
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.lock(); n += 1; lock.unlock() }
    func set(_ v: Int) { lock.lock(); n = v; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}

final class LatencyLog: @unchecked Sendable {
    private let lock = NSLock()
    private var all: [Duration] = []
    func add(_ d: Duration) { lock.lock(); all.append(d); lock.unlock() }
    var values: [Duration] { lock.lock(); defer { lock.unlock() }; return all }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// The attestation path in-process, piece by piece (no HTTP): where a server core's time goes.
func attestationBreakdown(seconds: Double, profileAttestations: Int? = nil) async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-bench-brk-\(getpid())")
    defer { try? FileManager.default.removeItem(at: dir) }
    let folder = DataFolder(root: dir)
    try folder.create()
    let authority = try VTPMCertificateAuthority.loadOrCreate(directory: folder.vtpmCA)
    let store = try await StorageLocation.open(folder.database.path)
    let service = AttestationService(store: store, anchors: TrustAnchors(roots: [authority.root], intermediates: [authority.intermediate]),
                                     akCA: try AKCertificateAuthority.loadOrCreate(directory: folder.attestationCA), issuer: "bench")
    let keys = try PlatformKeys.loadOrCreate(directory: dir.appendingPathComponent("secureboot"))
    let (esp, vars) = try SampleImages.sampleLinux(keys: keys)
    let tpm = try await VirtualTPM.open(stateFile: dir.appendingPathComponent("vm.state").path, hostKey: [UInt8](repeating: 1, count: 32),
                                        authority: authority)
    let launch = try VirtualFirmware(settings: FirmwareSettings(variables: vars, banks: [.sha1, .sha256])).launch(esp: esp, tpm: tpm)
    let client = TPMClient(transport: InProcessTransport(tpm))
    let agent = GuestAgent(tpm: client, service: ServiceClient(baseURL: "http://unused", token: nil), vm: "b",
                           eventLog: try launch.log.encoded())
    // Enrol in-process: the VM's challenge answered by the vTPM.
    let (ek, cert) = try await agent.endorsementKey()
    let ak = try await agent.attestationKey()
    func enrol(_ vm: String) async throws {
        let ch = try await service.beginEnrolment(
            vm: vm,
            EnrolmentRequest(
                ekPublic: hexString(try ek.publicArea.tpmBytes()), akPublic: hexString(try ak.publicArea.tpmBytes()),
                                                                           ekCertificate: Data(cert).base64EncodedString()))
        let secret = try await client.activateCredential(ak: ak, ek: ek,
                                                         blob: try TPM2BIDObject(tpmBytes: [UInt8](hex: ch.credentialBlob)!),
                                                         secret: try TPM2BEncryptedSecret(tpmBytes: [UInt8](hex: ch.encryptedSecret)!))
        _ = try await service.completeEnrolment(vm: vm, id: ch.id, ActivationAnswer(secret: hexString(secret)))
    }
    try await enrol("b")
    /// `count` pieces of evidence from the vTPM, each answering a nonce just issued for `vm`, in order.
    func freshEvidence(_ vm: String, _ count: Int) async throws -> [Evidence] {
        var out: [Evidence] = []
        for _ in 0..<count { out.append(try await agent.evidence(nonce: [UInt8](hex: try await service.issueNonce(vm: vm).nonce)!)) }
        return out
    }
    if let runs = profileAttestations {
        // Only service.attest, over and over (`perf record` around this run sees nothing else).
        let fresh = try await freshEvidence("b", runs + 1)
        _ = try await service.attest(vm: "b", evidence: fresh[0])
        let clock = ContinuousClock(), start = clock.now
        var passed = 0
        for e in fresh.dropFirst() where try await service.attest(vm: "b", evidence: e).passed { passed += 1 }
        let took = (clock.now - start).seconds
        print("whole service.attest, \(runs) runs (\(passed) passed): \(Int(Double(runs) / took)) /s, "
              + "\(String(format: "%.1f", took * 1e6 / Double(runs))) µs")
        return
    }
    let n = 400
    let evidences = try await freshEvidence("b", n)
    let wire = try evidences.map { try JSONEncoder().encode($0) }
    print("Attestation path in-process (\(n) attestations, one VM, SQLite):")
    _ = try measure("  JSON decode of the evidence (Foundation)") { blackHole(try JSONDecoder().decode(Evidence.self, from: wire[0])) }
    _ = try measure("  JSON read of the evidence (Evidence(json:), as the service does)") { blackHole(try Evidence(json: wire[0])) }
    let decoded = try DecodedEvidence(evidences[0])
    _ = try measure("  evidence structural decode (hex, TPMS_ATTEST, event log)") { blackHole(try DecodedEvidence(evidences[0])) }
    let akPublic = ak.publicArea
    _ = measure("  verify: quote + replay + explain + default policy") {
        blackHole(AttestationVerifier.verify(decoded, akPublic: akPublic, policy: .default))
    }
    let memo = BootFactsCache(capacity: 16)
    _ = measure("  verify, the boot's facts cached (a VM attesting the same boot again)") {
        blackHole(AttestationVerifier.verify(decoded, akPublic: akPublic, policy: .default, cache: memo))
    }
    _ = try measure("  TPM quote signature + PCR digest (TPMQuoteVerifier)") {
        blackHole(try TPMQuoteVerifier.verify(decoded.signed, akPublic: akPublic, nonce: decoded.nonce, pcrs: decoded.banks))
    }
    _ = measure("  event log replay against the quoted PCRs") { blackHole(decoded.eventLog.replay(against: PCRValues(decoded.banks))) }
    let signing = try await service.keys().signing
    let result = AttestationVerifier.verify(decoded, akPublic: akPublic, policy: .default)
    _ = try measure("  token (ES256 sign + JSON)") {
        blackHole(try signing.token(for: result, context: TokenContext(vm: "b", nonce: "00", policy: .default)))
    }
    /// Runs `body` and says how many bytes it wrote, per run (the WAL's frames: whole pages).
    func bytesWritten(_ name: String, runs: Int, _ body: () async throws -> Void) async throws {
        let before = processWritten(getpid())
        for _ in 0..<runs { try await body() }
        print("    \(name): \((processWritten(getpid()) - before) / runs) bytes written per run")
    }
    _ = try await measureAsync("  store: issue a nonce (INSERT)", iterations: 500) { blackHole(try await service.issueNonce(vm: "b")) }
    try await bytesWritten("issue a nonce", runs: 200) { blackHole(try await service.issueNonce(vm: "b")) }
    _ = try await measureAsync("  store: read the agent (SELECT)", iterations: 500) { blackHole(try await store.agent(vm: "b")) }
    _ = try await measureAsync("  store: read the baseline (SELECT + JSON)",
                               iterations: 300) { blackHole(try await store.baseline(vm: "b")) }
    let agentRecord = try await store.agent(vm: "b")!
    _ = measure("  AK certificate check (PEM parse + ECDSA verify)") {
        blackHole(service.akCA.check(pem: agentRecord.akCertificate, vm: "b", akPublic: akPublic))
    }
    // What every attestation paid until the token's EK words were memoized by certificate.
    _ = try measure("  EK certificate parse (X.509 DER, the token's issuer and serial)") {
        blackHole(try Certificate(derEncoded: cert).issuer.description)
    }
    var c: Int64 = 1_000_000_000
    _ = try await measureAsync("  store: advance counters (conditional UPDATE)", iterations: 300) {
        c += 1; blackHole(try await store.advanceCounters(vm: "b", clock: c, resetCount: 99, restartCount: 0))
    }
    try await bytesWritten("advance counters", runs: 200) {
        c += 1; blackHole(try await store.advanceCounters(vm: "b", clock: c, resetCount: 99, restartCount: 0))
    }
    let big = String(decoding: wire[0], as: UTF8.self)
    var k = 0
    _ = try await measureAsync("  store: append history (INSERT, evidence kept)", iterations: 300) {
        k += 1
        try await store.appendAttestation(AttestationRecord(id: "x\(k)", vm: "b", time: 1, passed: true, evidenceDigest: "00", result: "{}",
                                                            tokenID: nil, evidence: big))
    }
    try await bytesWritten("append history, evidence kept", runs: 200) {
        k += 1
        try await store.appendAttestation(AttestationRecord(id: "x\(k)", vm: "b", time: 1, passed: true, evidenceDigest: "00", result: "{}",
                                                            tokenID: nil, evidence: big))
    }
    try await bytesWritten("append history, no evidence", runs: 200) {
        k += 1
        try await store.appendAttestation(AttestationRecord(id: "x\(k)", vm: "b", time: 1, passed: true, evidenceDigest: "00", result: "{}",
                                                            tokenID: nil, evidence: nil))
    }
    _ = try measure("  JSON encode of the evidence (Foundation)") { blackHole(try JSONEncoder().encode(evidences[0])) }
    _ = try measure("  JSON encode of the evidence (LeanJSONEncoder)") { blackHole(try LeanJSONEncoder().encode(evidences[0])) }
    let evidenceBody = try LeanJSONEncoder().encode(evidences[0])
    _ = try measure("  JSON decode of the evidence (the service's reader, \(evidenceBody.count) bytes)") {
        blackHole(try Evidence(json: evidenceBody))
    }
    let outcome = try await service.attest(vm: "b", evidence: evidences[n - 1])
    let sortedFoundation = JSONEncoder()
    sortedFoundation.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    _ = try measure("  JSON encode of an outcome (Foundation, \(try sortedFoundation.encode(outcome).count) bytes)") {
        blackHole(try sortedFoundation.encode(outcome))
    }
    _ = try measure("  JSON encode of an outcome (LeanJSONEncoder)") { blackHole(try LeanJSONEncoder().encode(outcome)) }
    // What each stored result re-encoded until the verified boot kept its components' JSON.
    if let components = result.components {
        _ = try measure("  JSON encode of the boot's \(components.count) baseline components (LeanJSONEncoder)") {
            blackHole(try LeanJSONEncoder().encodeBytes(components))
        }
    }
    // The whole path on a VM of its own, with evidence made in order just before: a VM whose
    // attestations pass (VM "b" above had its counters moved far ahead by the counters measure,
    // so its evidence now fails the counters check — a cheaper path than a passing attestation).
    try await enrol("w")
    let fresh = try await freshEvidence("w", n)
    guard try await service.attest(vm: "w", evidence: fresh[0]).passed else { throw AgentError("bench", "w's first attestation failed") }
    var i = 1
    var passes = 0
    _ = try await measureAsync("  whole service.attest (in-process, passing)", iterations: n - 60) {
        if try await service.attest(vm: "w", evidence: fresh[i]).passed { passes += 1 }
        i += 1
    }
    guard passes == i - 1 else { throw AgentError("bench", "\(i - 1 - passes) of \(i - 1) attestations failed") }

    // Many VMs at once, as a server sees them: 16 VMs (one vTPM; each VM enrolled with its own
    // challenge and AK certificate, its own counters and baseline) attest their own evidence in
    // order, all at once. Run under `taskset -c N` for one core's rate.
    let vms = 16, each = 300
    var batches: [[Evidence]] = Array(repeating: [], count: vms)
    for v in 0..<vms { try await enrol("c\(v)") }
    for _ in 0..<(each + 1) {
        for v in 0..<vms {
            batches[v].append(try await agent.evidence(nonce: [UInt8](hex: try await service.issueNonce(vm: "c\(v)").nonce)!))
        }
    }
    for v in 0..<vms {
        guard try await service.attest(vm: "c\(v)", evidence: batches[v][0]).passed else {
            throw AgentError("bench", "c\(v)'s first attestation failed")
        }
    }
    print("    (\(vms) VMs attesting now)")
    fflush(nil)
    let clock = ContinuousClock()
    let start = clock.now
    let wroteBefore = processWritten(getpid())
    let passed = try await withThrowingTaskGroup(of: Int.self) { g in
        for v in 0..<vms {
            let batch = batches[v]
            g.addTask {
                var passed = 0
                for e in batch.dropFirst() where try await service.attest(vm: "c\(v)", evidence: e).passed { passed += 1 }
                return passed
            }
        }
        return try await g.reduce(0, +)
    }
    let elapsed = (clock.now - start).seconds
    guard passed == vms * each else { throw AgentError("bench", "\(vms * each - passed) of \(vms * each) concurrent attestations failed") }
    report("  whole service.attest, \(vms) VMs at once (in-process)", Double(vms * each) / elapsed)
    print("    written to the database per attestation (evidence kept): \((processWritten(getpid()) - wroteBefore) / (vms * each)) bytes")
}
