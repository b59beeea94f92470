import Foundation
import MeasuredBoot
import SecureBoot
import TPM2
import VirtualFirmware
import VirtualTPM

/// Simulated launches: sample-linux from power-on to kernel start (Secure Boot decisions for
/// shim, grub and the kernel; every measurement extended into a fresh vTPM; the event log
/// written), and the memory a launched VM (its vTPM and its event log) keeps.
func firmwareBenchmarks(seconds: Double) throws {
    print("Virtual firmware: simulated launches of sample-linux")
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-bench-keys-\(getpid())")
    defer { try? FileManager.default.removeItem(at: dir) }
    let keys = try PlatformKeys.loadOrCreate(directory: dir)
    let (esp, vars) = try SampleImages.sampleLinux(keys: keys)
    let firmware = VirtualFirmware(settings: FirmwareSettings(variables: vars, banks: [.sha1, .sha256]))
    let first = try firmware.launch(esp: esp, tpm: VirtualTPM.ephemeral())
    guard first.succeeded else { print("  launch failed: \(first.failure!)"); return }
    print("  \(first.log.events.count) events per launch; Secure Boot enforced: \(first.secureBootEnforced)")
    _ = try measure("launch into a new vTPM (power-on to kernel start)") {
        blackHole(try firmware.launch(esp: esp, tpm: VirtualTPM.ephemeral()))
    }
    let shimPE = try PEImage(esp.file("/EFI/BOOT/BOOTX64.EFI")!)
    let db = vars.db
    _ = measure("  part: Secure Boot decision for the sample shim") {
        blackHole(ImageVerifier.decide(shimPE, db: db, dbx: SignatureDatabase()))
    }
    _ = measure("  part: the store's db parsed (signature lists, certificates)") { blackHole(vars.db.certificates.count) }
    _ = try measure("  part: PE parse + Authenticode sha256 of the sample shim") {
        blackHole(try PEImage(esp.file("/EFI/BOOT/BOOTX64.EFI")!).authenticodeDigest(.sha256))
    }
    _ = try measure("prediction only (no vTPM)") {
        blackHole(try firmware.predict(esp: esp))
    }
    var cached = firmware
    cached.cache = DecisionCache()
    _ = measure("  part: a new vTPM (VirtualTPM.ephemeral, started)") { blackHole(VirtualTPM.ephemeral()) }
    _ = try measure("  part: prediction, Secure Boot decisions cached") { blackHole(try cached.predict(esp: esp)) }
    _ = try measure("launch into a new vTPM, Secure Boot decisions cached") {
        blackHole(try cached.launch(esp: esp, tpm: VirtualTPM.ephemeral()))
    }
    // Memory: launch N VMs and keep each one's vTPM and event log.
    let n = 20_000
    let before = memoryKiB()
    var fleet: [(VirtualTPM, EventLog)] = []
    fleet.reserveCapacity(n)
    for _ in 0..<n {
        let tpm = VirtualTPM.ephemeral()
        let r = try firmware.launch(esp: esp, tpm: tpm)
        fleet.append((tpm, r.log))
    }
    let after = memoryKiB()
    let per = Double(after - before) / Double(n)
    print(String(format: "  memory per launched VM (vTPM + event log), %d VMs in one process: %.1f KiB → 100,000 VMs: %.2f GiB",
                 n, per, per * 100_000 / 1024 / 1024))
    blackHole(fleet)
}

func memoryKiB() -> Int { procField("/proc/self/status", "VmRSS:") }
