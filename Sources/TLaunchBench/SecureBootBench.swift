import Crypto
import Foundation
import MeasuredBoot
import SecureBoot
import TPM2

func secureBootBenchmarks(seconds: Double) throws {
    guard
        let kernelName = (try? FileManager.default.contentsOfDirectory(atPath: "/boot"))?.filter({ $0.hasPrefix("vmlinuz-") }).sorted().last
    else {
        print("Secure Boot: no /boot/vmlinuz-* (install linux-image-amd64); skipped")
        return
    }
    let kernelPath = "/boot/" + kernelName
    let bytes = Array(FileManager.default.contents(atPath: kernelPath) ?? Data())
    let image = try PEImage(bytes)
    print("Secure Boot (one core), \(kernelName), \(bytes.count / 1024) KiB:")
    func throughput(_ name: String, _ body: () throws -> Void) rethrows -> Double {
        try body()
        var n = 0
        let clock = ContinuousClock()
        let start = clock.now
        var elapsed = Duration.zero
        repeat { try body(); n += 1; elapsed = clock.now - start } while elapsed < .seconds(seconds)
        let secs = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let mbs = Double(bytes.count * n) / secs / 1e6
        print("  " + name.padding(toLength: 60, withPad: " ", startingAt: 0) + String(format: " %9.1f MB/s", mbs))
        return mbs
    }
    let raw = throughput("raw SHA-256 of the file's bytes") { blackHole(SHA256.hash(data: bytes)) }
    let ours = try throughput("Authenticode SHA-256 digest (parse + hash)") { blackHole(try PEImage(bytes).authenticodeDigest()) }
    print(String(format: "  digest / raw SHA-256: %.1f%% (target ≥ 90%%): %@", ours / raw * 100, ours / raw >= 0.9 ? "met" : "NOT met"))

    // Full verification, whole commands side by side: tlaunch secureboot verify vs sbverify --cert.
    guard let sbverify = ["/usr/bin/sbverify"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        print("  sbverify not installed: comparison skipped"); return
    }
    let tlaunch = tlaunchExecutable()
    guard let (shim, pemPath, eslPath, esl) = try shimAndItsCA() else { print("  shim-signed not installed: comparison skipped"); return }
    print("Full verification of shim against the Microsoft UEFI CA 2011 (whole commands, median):")
    let inProcess = try throughput("  in-process decision (parse, digest, PKCS#7, chain)") {
        blackHole(ImageVerifier.decide(try PEImage(Array(FileManager.default.contents(atPath: shim)!)), db: esl, dbx: SignatureDatabase()))
    }
    _ = inProcess
    let a = medianRun(tlaunch, ["secureboot", "verify", shim, "--db", eslPath], runs: 15)
    let b = medianRun(sbverify, ["--cert", pemPath, shim], runs: 15)
    print(String(format: "  tlaunch secureboot verify %.1f ms, sbverify --cert %.1f ms: %.2f× (target: faster): %@", a * 1e3, b * 1e3,
                 b / a, a < b ? "met" : "NOT met"))
    _ = image
}


/// Debian's signed shim and the Microsoft UEFI CA 2011 that signed it, written as a PEM (for
/// sbverify --cert) and as a db signature list (for tlaunch secureboot verify --db); nil without shim-signed.
func shimAndItsCA() throws -> (shim: String, pem: String, esl: String, db: SignatureDatabase)? {
    let shim = "/usr/lib/shim/shimx64.efi.signed"
    guard FileManager.default.fileExists(atPath: shim),
        let sig = try PEImage(Array(FileManager.default.contents(atPath: shim) ?? Data())).signatures().first,
          let ca = sig.certificates.first(where: { $0.subject.description.contains("UEFI CA 2011") }) else { return nil }
    let esl = try SignatureDatabase(certificates: [ca])
    let der = esl.lists[0].entries[0].data
    let dir = NSTemporaryDirectory()
    let pemPath = dir + "tlaunch-bench-ca.pem", eslPath = dir + "tlaunch-bench-db.esl"
    let pem = "-----BEGIN CERTIFICATE-----\n" + Data(der).base64EncodedString(options: .lineLength64Characters)
        + "\n-----END CERTIFICATE-----\n"
    try pem.write(toFile: pemPath, atomically: true, encoding: .utf8)
    try Data(esl.encoded).write(to: URL(fileURLWithPath: eslPath))
    return (shim, pemPath, eslPath, esl)
}
