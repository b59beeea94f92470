import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A `swtpm socket --tpm2` process on loopback, started and owned by this process: the
/// reference vTPM, used by the main job until TrustedLaunch's own vTPM takes its place, and
/// by the interop tests.
public final class SwtpmProcess: Sendable {
    public let port: Int
    public let stateDirectory: URL
    private let process: Mutex<ChildProcess?>

    /// The swtpm's process id while it runs.
    public var pid: pid_t? { process.withLock { $0?.pid } }

    /// `swtpm:host=127.0.0.1,port=P` for this process.
    public var tcti: String { "swtpm:host=127.0.0.1,port=\(port)" }

    private init(port: Int, stateDirectory: URL, process: ChildProcess) {
        self.port = port
        self.stateDirectory = stateDirectory
        self.process = Mutex(process)
    }

    deinit { stop() }

    /// Finds a program on PATH (and the usual sbin directories).
    public static func which(_ name: String) -> String? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/usr/bin:/sbin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Starts swtpm with a fresh (or the given) state directory, already initialized and
    /// started up (`--flags not-need-init,startup-clear`). With `manufacture`, swtpm_setup first
    /// creates EKs and EK certificates signed by swtpm's local CA, and activates `pcrBanks`.
    public static func start(stateDirectory: URL? = nil, manufacture: Bool = false,
                             pcrBanks: String = "sha1,sha256") async throws(TPMError) -> SwtpmProcess {
        guard let swtpm = which("swtpm") else {
            throw TPMError(.transport, reason: "swtpm is not installed (Debian: apt-get install swtpm swtpm-tools)")
        }
        let dir: URL
        if let stateDirectory { dir = stateDirectory } else {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("tlaunch-swtpm-\(UUID().uuidString)")
        }
        do { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
            throw TPMError(.transport, reason: "cannot create swtpm state directory \(dir.path): \(error)")
        }
        if manufacture {
            guard let setup = which("swtpm_setup") else {
                throw TPMError(.transport, reason: "swtpm_setup is not installed (Debian: apt-get install swtpm-tools)")
            }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: setup)
            p.arguments = ["--tpm2", "--tpmstate", dir.path, "--create-ek-cert", "--create-platform-cert",
                           "--pcr-banks", pcrBanks, "--overwrite", "--display"]
            p.standardOutput = FileHandle.nullDevice
            let errPipe = Pipe()
            p.standardError = errPipe
            do { try p.run() } catch { throw TPMError(.transport, reason: "cannot run swtpm_setup: \(error)") }
            // Wait on a thread of its own: blocking one of the cooperative pool's few threads for
            // the seconds swtpm_setup takes would stall every other task of the process.
            let setupProcess = p
            let (status, err): (Int32, String) = await withCheckedContinuation { c in
                Thread.detachNewThread {
                    let err = String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                    setupProcess.waitUntilExit()
                    c.resume(returning: (setupProcess.terminationStatus, err))
                }
            }
            guard status == 0 else {
                throw TPMError(.transport, reason: "swtpm_setup failed (\(status)): \(err.suffix(500))")
            }
        }
        var lastError = TPMError(.transport, reason: "swtpm did not start")
        for _ in 0..<5 {
            let port = try freePortPair()
            let p = try ChildProcess(path: swtpm, arguments: [
                "socket", "--tpm2",
                "--tpmstate", "dir=\(dir.path)",
                "--server", "type=tcp,port=\(port),bindaddr=127.0.0.1",
                "--ctrl", "type=tcp,port=\(port + 1),bindaddr=127.0.0.1",
                "--flags", "not-need-init,startup-clear",
            ])
            // Wait until the data port accepts connections (probe the control port, which
            // does not occupy swtpm's single data connection).
            // Generous: on a loaded machine a process can take seconds to reach listen().
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline && p.isRunning {
                if let s = try? DeadlineSocket.connect(host: "127.0.0.1", port: port + 1, timeout: .milliseconds(200)) {
                    s.close()
                    // A swtpm that lost the port race to another one exits at once; the probe
                    // may have reached the other one's control port.
                    try? await Task.sleep(for: .milliseconds(30))
                    if p.isRunning { return SwtpmProcess(port: port, stateDirectory: dir, process: p) }
                    break
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
            p.terminate()
            lastError = TPMError(.transport, reason: "swtpm did not listen on port \(port)")
        }
        throw lastError
    }

    /// Stops the process (SIGTERM, then SIGKILL) and waits for it.
    public func stop() {
        process.withLock { p in
            p?.terminate()
            p = nil
        }
    }

    /// Removes the state directory (after ``stop()``).
    public func removeState() {
        try? FileManager.default.removeItem(at: stateDirectory)
    }

    /// A loopback port P such that P and P+1 were both free a moment ago.
    public static func freePortPair() throws(TPMError) -> Int {
        for _ in 0..<50 {
            // Below Linux's ephemeral range (32768–60999), so outgoing connections and servers
            // on port 0 in this process cannot take the port between this check and swtpm's bind.
            let p = Int.random(in: 20000...32000)
            if portFree(p) && portFree(p + 1) { return p }
        }
        throw TPMError(.transport, reason: "no free loopback port pair found")
    }

    /// Whether nothing listens on loopback `port` right now.
    public static func portFreeProbe(_ port: Int) -> Bool { portFree(port) }

    static func portFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return rc == 0
    }
}
