import Foundation
import MeasuredBoot
import TPM2

/// A synthesized crypto-agile log of `count` events (sha1 + sha256), shaped like a long boot
/// log: firmware blobs, variables, actions, grub commands and files, separators.
func synthesizedLog(count: Int) throws -> [UInt8] {
    var b = try EventLogBuilder(banks: [.sha1, .sha256], startupLocality: 3)
    var i = 0
    while b.log.events.count < count {
        switch i % 5 {
        case 0: b.measure(pcr: 0, type: .efiPlatformFirmwareBlob, data: [UInt8](repeating: UInt8(i & 0xFF), count: 16))
        case 1: b.measureVariable(pcr: 1, type: .efiVariableBoot, guid: .globalVariable, name: String(format: "Boot%04X", i & 0xFFFF), data: [UInt8](repeating: 1, count: 40))
        case 2: b.measure(pcr: 8, type: .ipl, data: Array("grub_cmd: set root=hd0,gpt\(i)".utf8) + [0])
        case 3: b.measure(pcr: 9, type: .ipl, data: Array("(hd0,gpt2)/boot/file\(i)".utf8) + [0], measured: Array("contents \(i)".utf8))
        default: b.measure(pcr: 4, type: .efiAction, data: Array("Calling EFI Application from Boot Option".utf8))
        }
        i += 1
    }
    return try b.encoded()
}

func eventLogBenchmarks(seconds: Double, sharedDir: String) throws {
    print("Event logs (parse + replay of every bank, in-process, one core):")
    var inputs: [(String, [UInt8])] = []
    let dir = sharedDir + "/eventlogs"
    if let names = try? FileManager.default.contentsOfDirectory(atPath: dir) {
        func size(_ n: String) -> Int { (try? FileManager.default.attributesOfItem(atPath: dir + "/" + n)[.size] as? Int) ?? 0 }
        let largest = names.filter { $0.hasSuffix(".bin") }.max { size($0) < size($1) }
        if let l = largest, let d = FileManager.default.contents(atPath: dir + "/" + l) { inputs.append((l, Array(d))) }
    } else {
        print("  (shared test data not found at \(dir); only the synthesized log)")
    }
    let big = try synthesizedLog(count: 100_000)
    let bigPath = NSTemporaryDirectory() + "tlaunch-bench-100k.bin"
    try Data(big).write(to: URL(fileURLWithPath: bigPath))
    inputs.append(("synthesized 100,000 events", big))

    var perCore: [Double] = []
    for (name, bytes) in inputs {
        let events = try EventLog(parsing: bytes).events.count
        var n = 0
        let clock = ContinuousClock()
        let start = clock.now
        var elapsed = Duration.zero
        repeat {
            let log = try EventLog(parsing: bytes)
            blackHole(log.replay())
            n += 1
            elapsed = clock.now - start
        } while elapsed < .seconds(seconds)
        let secs = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let eps = Double(events * n) / secs
        perCore.append(eps)
        print("  " + "\(name) (\(events) events, \(bytes.count / 1024) KiB)".padding(toLength: 64, withPad: " ", startingAt: 0)
              + String(format: " %12.0f events/s %8.1f MB/s", eps, Double(bytes.count * n) / secs / 1e6))
    }
    print(perCore.allSatisfy { $0 >= 1_000_000 } ? "  target ≥ 1,000,000 events/s parse+replay per core: met" : "  target ≥ 1,000,000 events/s parse+replay per core: NOT met")

    // Whole commands, side by side, same run.
    guard let tool = ["/usr/bin/tpm2_eventlog", "/usr/local/bin/tpm2_eventlog"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        print("  tpm2_eventlog not installed: whole-command comparison skipped"); return
    }
    let tlaunch = tlaunchExecutable()
    print("Whole command, replay of a log file (median of runs; output to /dev/null):")
    print("  log                                             tlaunch eventlog replay   tpm2_eventlog   speed-up")
    for (name, path) in [(inputs.count > 1 ? inputs[0].0 : "", inputs.count > 1 ? dir + "/" + inputs[0].0 : ""), ("synthesized 100,000 events", bigPath)] where !path.isEmpty {
        let ours = medianRun(tlaunch, ["eventlog", "replay", path], runs: 9)
        let theirs = medianRun(tool, [path], runs: name.hasPrefix("synth") ? 3 : 9)
        print("  " + name.padding(toLength: 48, withPad: " ", startingAt: 0)
              + String(format: "%14.1f ms %14.1f ms %9.1f×", ours * 1e3, theirs * 1e3, theirs / ours))
        if name.hasPrefix("synth") {
            print(theirs / ours >= 20 ? "  target ≥ 20× faster than tpm2_eventlog on 100,000 events: met" : "  target ≥ 20× faster than tpm2_eventlog on 100,000 events: NOT met")
        }
    }
}

/// Median wall time of running a command with stdout/stderr to /dev/null.
func medianRun(_ path: String, _ args: [String], runs: Int) -> Double {
    var times: [Double] = []
    for _ in 0..<runs {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        let start = ContinuousClock.now
        do { try p.run() } catch { return .nan }
        p.waitUntilExit()
        let d = ContinuousClock.now - start
        times.append(Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
    }
    return times.sorted()[times.count / 2]
}
