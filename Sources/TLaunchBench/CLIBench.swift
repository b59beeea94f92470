import Foundation

/// Whole commands whose time is mostly the process's start, side by side with the C tools that
/// do the same work, in one run: median wall time of `runs` runs and the largest peak RSS.
func cliBenchmarks(sharedDir: String, runs: Int = 31) throws {
    let tlaunch = tlaunchExecutable()
    guard FileManager.default.isExecutableFile(atPath: tlaunch) else {
        print("\(tlaunch) is missing: swift build -c release first"); return
    }
    print("Command start (median of \(runs) runs, output to /dev/null; peak RSS):")
    print("  command                                              ms   peak MiB")
    func row(_ label: String, _ path: String, _ args: [String]) -> Double {
        let t = medianRun(path, args, runs: runs)
        let peak = peakMiB(path, args)
        print(
            "  " + label.padding(toLength: 48, withPad: " ", startingAt: 0) + String(format: "%9.1f", t * 1e3)
                + String(repeating: " ", count: max(1, 11 - peak.count)) + peak)
        return t
    }
    func verdict(_ what: String, _ met: Bool) { print("  target \(what): \(met ? "met" : "NOT met")") }
    let help = row("tlaunch --help", tlaunch, ["--help"])
    let tool = ["/usr/bin/tpm2_eventlog", "/usr/local/bin/tpm2_eventlog"].first { FileManager.default.isExecutableFile(atPath: $0) }
    if let tool { _ = row("tpm2_eventlog --version", tool, ["--version"]) }
    verdict("tlaunch --help ≤ 10 ms", help <= 0.010)
    if let (shim, pem, esl, _) = try shimAndItsCA(), FileManager.default.isExecutableFile(atPath: "/usr/bin/sbverify") {
        let ours = row("tlaunch secureboot verify shim --db CA", tlaunch, ["secureboot", "verify", shim, "--db", esl])
        let theirs = row("sbverify --cert CA shim", "/usr/bin/sbverify", ["--cert", pem, shim])
        verdict("secureboot verify faster than sbverify", ours < theirs)
    } else { print("  sbverify or shim-signed missing: that comparison skipped") }
    // A small real log that tpm2_eventlog reads: the smallest of the shared corpus it accepts.
    let dir = sharedDir + "/eventlogs"
    if let tool, let names = try? FileManager.default.contentsOfDirectory(atPath: dir) {
        func size(_ n: String) -> Int { (try? FileManager.default.attributesOfItem(atPath: dir + "/" + n)[.size] as? Int) ?? 0 }
        if let small = names.filter({ $0.hasSuffix(".bin") }).sorted(by: { size($0) < size($1) }).first(where: {
            exitStatus(tool, [dir + "/" + $0]) == 0 && size($0) > 4096
        }) {
            let ours = row("tlaunch eventlog replay \(small.prefix(26))", tlaunch, ["eventlog", "replay", dir + "/" + small])
            let theirs = row("tpm2_eventlog \(small.prefix(32))", tool, [dir + "/" + small])
            verdict("eventlog replay of a small real log faster than tpm2_eventlog", ours < theirs)
        }
    } else { print("  tpm2_eventlog or the shared corpus (\(dir)) missing: that comparison skipped") }
}

/// The command's peak RSS in MiB, through GNU time (a child spawned from this large process would
/// report this process's high-water mark: ru_maxrss survives the exec); "?" without /usr/bin/time.
func peakMiB(_ path: String, _ args: [String]) -> String {
    let out = NSTemporaryDirectory() + "tlaunch-bench-rss"
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/time"),
        spawnAndWait("/usr/bin/time", ["-f", "%M", "-o", out, path] + args) >= 0,
        let text = try? String(contentsOfFile: out, encoding: .utf8), let kib = Double(text.split(separator: "\n").last ?? "")
    else { return "?" }
    return String(format: "%.1f", kib / 1024)
}
