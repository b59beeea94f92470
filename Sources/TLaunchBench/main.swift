import Foundation
import TPM2

// Benchmarks (run in release: swift run -c release TLaunchBench [--seconds S]).
// Reports wire-format throughput and round trips against swtpm, side by side in one run.

let args = CommandLine.arguments
let seconds = args.firstIndex(of: "--seconds").flatMap { Double(args[$0 + 1]) } ?? 2.0
let skipTPM = args.contains("--no-tpm")

@inline(never)
func blackHole<T>(_ x: T) { withExtendedLifetime(x) {} }

/// Runs `body` repeatedly for about `seconds`; returns operations per second.
func measure(_ name: String, _ body: () throws -> Void) rethrows -> Double {
    for _ in 0..<1000 { try body() }  // warm-up
    let clock = ContinuousClock()
    var n = 0
    let start = clock.now
    var elapsed = Duration.zero
    repeat {
        for _ in 0..<1000 { try body() }
        n += 1000
        elapsed = clock.now - start
    } while elapsed < .seconds(seconds)
    let rate = Double(n) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    report(name, rate)
    return rate
}

func report(_ name: String, _ rate: Double) {
    let padded = name.count >= 64 ? name : name + String(repeating: " ", count: 64 - name.count)
    print("  " + padded + String(format: " %12.0f /s %10.3f µs", rate, 1e6 / rate))
}

func measureAsync(_ name: String, iterations: Int, _ body: () async throws -> Void) async throws -> Double {
    for _ in 0..<min(50, iterations) { try await body() }
    let clock = ContinuousClock()
    let start = clock.now
    for _ in 0..<iterations { try await body() }
    let elapsed = clock.now - start
    let rate = Double(iterations) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    report(name, rate)
    return rate
}

// A real quote's TPMS_ATTEST (swtpm, sha256 PCRs 15, 16, 22) and TCG EK templates.
let attestBytes = [UInt8](hex: """
ff5443478018 0022000b7ca54a622c87f30888b6da66f51e4a31ccb723cad8daa111a5006b44342dd623
0014db1db298db6d60e6385b7231743e9c3056a18003 000000000000176a 00000000 00000000 01 2016051100162800
00000001 000b 03 008041 0020ec1636c69c548fd09a165a4f874e5d1610a8fbe36241566017e92b17e144b971
""")!
let rsaPublicBytes = try TPMTemplates.ekRSA2048.tpmBytes()
let eccPublicBytes = try TPMTemplates.ekECCP256.tpmBytes()
let attest = try TPMSAttest(tpmBytes: attestBytes)
let rsaPublic = TPMTemplates.ekRSA2048

print("TrustedLaunch benchmarks (\(seconds) s per figure; \(ProcessInfo.processInfo.activeProcessorCount) CPUs)")
print("Wire format (one core):")
let attestDecode = try measure("TPMS_ATTEST decode (\(attestBytes.count) B quote)") { blackHole(try TPMSAttest(tpmBytes: attestBytes)) }
_ = try measure("TPMS_ATTEST encode") { blackHole(try attest.tpmBytes()) }
_ = try measure("TPMS_ATTEST decode + encode") { blackHole(try TPMSAttest(tpmBytes: attestBytes).tpmBytes()) }
_ = try measure("TPMT_PUBLIC decode (RSA 2048 EK, \(rsaPublicBytes.count) B)") { blackHole(try TPMTPublic(tpmBytes: rsaPublicBytes)) }
_ = try measure("TPMT_PUBLIC encode (RSA 2048 EK)") { blackHole(try rsaPublic.tpmBytes()) }
_ = try measure("TPMT_PUBLIC decode + encode (ECC P-256 EK, \(eccPublicBytes.count) B)") { blackHole(try TPMTPublic(tpmBytes: eccPublicBytes).tpmBytes()) }
print(attestDecode >= 1_000_000 ? "  target ≥ 1,000,000 TPMS_ATTEST decodes/s per core: met" : "  target ≥ 1,000,000 TPMS_ATTEST decodes/s per core: NOT met")

if !skipTPM {
    print("Round trips against swtpm (one connection kept open; client and swtpm on any CPU):")
    let sw = try await SwtpmProcess.start()
    defer { sw.stop(); sw.removeState() }
    let transport = SwtpmTransport(data: .tcp(host: "127.0.0.1", port: sw.port), control: nil)
    let getRandom = try TPMCommandPacket(code: .getRandom, handles: [], sessions: [], parameters: [0, 8]).encode()
    _ = try await measureAsync("raw bytes: TPM2_GetRandom(8) over the swtpm transport", iterations: 20_000) { blackHole(try await transport.send(getRandom)) }
    let tpm = TPMClient(transport: transport)
    _ = try await measureAsync("typed client: getRandom(8)", iterations: 20_000) { blackHole(try await tpm.getRandom(8)) }
    let sel = TPMLPCRSelection([TPMSPCRSelection(hash: .sha256, pcrs: 0..<8)])
    _ = try await measureAsync("typed client: pcrRead(sha256 0–7)", iterations: 20_000) { blackHole(try await tpm.pcrRead(sel)) }
    let hmac = try await tpm.startAuthSession(type: .hmac, symmetric: .aes128CFB, attributes: [.continueSession, .encrypt])
    var cmd = TPM2GetRandom()
    cmd.bytesRequested = 16
    let fixedCmd = cmd
    _ = try await measureAsync("typed client: getRandom(16), HMAC session + response encryption", iterations: 10_000) {
        blackHole(try await tpm.execute(fixedCmd, extraSessions: [hmac]))
    }
    let ek = try await tpm.createEK(.eccP256)
    let ak = try await tpm.createAK(ek: ek, template: TPMTemplates.akECCP256)
    let nonce = TPMCrypto.random(32)
    _ = try await measureAsync("typed client: quote sha256 0–7, ECC P-256 AK", iterations: 2_000) {
        blackHole(try await tpm.quote(ak.object.handle, qualifyingData: nonce, pcrs: sel))
    }
    let quote = try await tpm.quote(ak.object.handle, qualifyingData: nonce, pcrs: sel)
    let values = try await tpm.pcrRead(sel)
    _ = try measure("offline quote verification (ECDSA P-256)") {
        blackHole(try TPMQuoteVerifier.verify(quote, akPublic: ak.publicArea, nonce: nonce, pcrs: values))
    }
    await tpm.close()

    // The peer's own client for the same command: one tpm2-tools process per command.
    if let tool = SwtpmProcess.which("tpm2_getrandom") {
        let n = 50
        let start = ContinuousClock.now
        for _ in 0..<n {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: tool)
            p.arguments = ["8", "--hex"]
            p.environment = ["TPM2TOOLS_TCTI": sw.tcti]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
        }
        let elapsed = ContinuousClock.now - start
        let rate = Double(n) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        report("tpm2-tools: tpm2_getrandom 8 (a process per command)", rate)
    }
}
