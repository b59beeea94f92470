import ArgumentParser
import Attestation
import Foundation
import TPM2
import VirtualTPM
import MeasuredBoot
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

struct VTPMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vtpm",
        abstract: "TrustedLaunch's virtual TPM (a TPM 2.0 in Swift; a drop-in for swtpm).",
        subcommands: [Socket.self, CA.self]
    )

    /// `swtpm socket` with the same options, so QEMU's `-tpmdev emulator` and tpm2-tools'
    /// `swtpm:`/`mssim:` TCTIs work against it unchanged.
    struct Socket: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "socket",
            abstract: "Run a vTPM on sockets, accepting swtpm's `socket` options.",
            discussion: """
            Example (as swtpm):
              tlaunch vtpm socket --tpm2 --tpmstate dir=/var/lib/vtpm/vm1 \\
                --server type=tcp,port=2321 --ctrl type=tcp,port=2322 --flags not-need-init,startup-clear
            QEMU: --ctrl type=unixio,path=/run/vm1-swtpm.sock and -chardev socket,path=… -tpmdev emulator.
            The state file (DIR/tlaunch-vtpm.state) is encrypted with AES-256-GCM under the host key.
            """
        )

        @Flag(help: "TPM 2.0 (the only kind; accepted for swtpm compatibility).") var tpm2 = false
        @Option(help: "dir=DIR: where the vTPM state lives.") var tpmstate: String
        @Option(help: "type=tcp,port=P[,bindaddr=A] | type=unixio,path=P: the data channel (mssim: the command port).") var server: String
        @Option(help: "type=tcp,port=P[,bindaddr=A] | type=unixio,path=P: the control channel (mssim: the platform port).") var ctrl: String?
        @Option(help: "not-need-init,startup-clear") var flags: String?
        @Option(help: "file=PATH: write the process id.") var pid: String?
        @Option(help: "file=PATH[,level=N]: log file.") var log: String?
        @Flag(help: "Exit when the control channel's client disconnects.") var terminate = false
        @Flag(help: "Run in the background once listening.") var daemon = false
        @Flag(help: "Speak the Microsoft simulator protocol (mssim: TCTI) instead of swtpm's.") var mssim = false
        @Option(help: "file=PATH[,format=hex|binary]: the 32-byte host key (default ~/.tlaunch/host.key, created if missing).") var key: String?
        @Option(help: "dir=DIR: the platform's vTPM CA (default DATA/vtpm-ca, created if missing).") var ca: String?
        @Option(help: "The platform data folder (vTPM CA, host key). Default: $TLAUNCH_DATA, else ~/.tlaunch.") var data: String?

        func run() async throws {
            let stateDir = try kv(tpmstate, "--tpmstate")["dir"].unwrap("--tpmstate needs dir=DIR")
            let dataEndpoint = try endpoint(server, option: "--server")
            let ctrlEndpoint = try ctrl.map { try endpoint($0, option: "--ctrl") }
            let flagSet = Set((flags ?? "").split(separator: ",").map(String.init))
            for f in flagSet where !["not-need-init", "startup-clear"].contains(f) {
                throw ValidationError("--flags: \"\(f)\" is not supported (not-need-init, startup-clear)")
            }
            if daemon { try daemonize() }

            try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
            let hostKey = try loadHostKey()
            let authority = try VTPMCertificateAuthority.loadOrCreate(directory: caDirectory())
            let tpm = try await VirtualTPM.open(stateFile: stateDir + "/tlaunch-vtpm.state", hostKey: hostKey, authority: authority)
            var options = VTPMServer.Options(data: dataEndpoint, control: ctrlEndpoint)
            options.wireProtocol = mssim ? .mssim : .swtpm
            options.notNeedInit = flagSet.contains("not-need-init")
            options.startupClear = flagSet.contains("startup-clear")
            options.terminateOnControlClose = terminate
            if let log, let file = try kv(log, "--log")["file"], let level = try kv(log, "--log")["level"].flatMap(Int.init), level >= 5 {
                // Level 5 and above: every command and response in hex, as swtpm logs them.
                let handle = Mutex<FileHandle?>(FileHandle(forWritingAtPath: file) ?? (FileManager.default.createFile(atPath: file, contents: nil) ? FileHandle(forWritingAtPath: file) : nil))
                options.trace = { command, response in
                    handle.withLock { h in
                        h?.seekToEndOfFile()
                        h?.write(Data("command \(hexString(command))\nresponse \(hexString(response))\n".utf8))
                    }
                }
            }
            let server = try VTPMServer(tpm: tpm, options: options)
            if let pid {
                let file = try kv(pid, "--pid")["file"].unwrap("--pid needs file=PATH")
                try "\(getpid())\n".write(toFile: file, atomically: true, encoding: .utf8)
            }
            let logFile = try log.map { try kv($0, "--log")["file"].unwrap("--log needs file=PATH") }
            func logLine(_ s: String) {
                guard let logFile else { return }
                if let h = FileHandle(forWritingAtPath: logFile) ?? (FileManager.default.createFile(atPath: logFile, contents: nil) ? FileHandle(forWritingAtPath: logFile) : nil) {
                    h.seekToEndOfFile()
                    h.write(Data("\(Date()) \(s)\n".utf8))
                    try? h.close()
                }
            }
            logLine("TrustedLaunch vTPM listening: data \(server.dataEndpoint), control \(server.controlEndpoint.map { "\($0)" } ?? "none")")
            server.start()
            installSignalHandlers(server)
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                Thread.detachNewThread {
                    server.wait()
                    done.resume()
                }
            }
            logLine("TrustedLaunch vTPM stopped")
        }

        func caDirectory() throws -> URL {
            if let ca { return URL(fileURLWithPath: try kv(ca, "--ca")["dir"].unwrap("--ca needs dir=DIR")) }
            return DataFolder.resolve(data).vtpmCA
        }

        func loadHostKey() throws -> [UInt8] {
            if let key {
                let options = try kv(key, "--key")
                let file = try options["file"].unwrap("--key needs file=PATH")
                let data = try Data(contentsOf: URL(fileURLWithPath: file))
                if options["format"] == "hex" {
                    guard let k = [UInt8](hex: String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)), k.count == 32 else {
                        throw ValidationError("--key \(file): expected 64 hex digits")
                    }
                    return k
                }
                guard data.count == 32 else { throw ValidationError("--key \(file): expected 32 bytes, found \(data.count)") }
                return [UInt8](data)
            }
            return try HostKey.loadOrCreate(folder: DataFolder.resolve(data))
        }

        /// Re-runs this command in the background (a new session, stdio on /dev/null) and
        /// returns in the parent once the vTPM listens.
        func daemonize() throws {
            let args = CommandLine.arguments.filter { $0 != "--daemon" }
            var attr = posix_spawnattr_t()
            posix_spawnattr_init(&attr)
            posix_spawnattr_setflags(&attr, 0x80)  // POSIX_SPAWN_SETSID (glibc)
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            for fd: Int32 in [0, 1, 2] { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0) }
            let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
            defer { for p in argv { free(p) } }
            var child: pid_t = 0
            let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
            guard posix_spawn(&child, exe, &actions, &attr, argv, environ) == 0 else { throw ValidationError("--daemon: cannot start the background process") }
            let probe = try endpoint(server, option: "--server")
            for _ in 0..<500 {
                if canConnect(probe) { Foundation.exit(0) }
                usleep(20_000)
            }
            throw ValidationError("--daemon: the vTPM did not start listening within 10 s")
        }
    }

    struct CA: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ca", abstract: "Show (creating if needed) the platform's vTPM CA.")
        @Option(help: "dir=DIR (default DATA/vtpm-ca).") var ca: String?
        @Option(help: "The platform data folder. Default: $TLAUNCH_DATA, else ~/.tlaunch.") var data: String?
        func run() throws {
            let dir = try ca.map { URL(fileURLWithPath: try kv($0, "--ca")["dir"].unwrap("--ca needs dir=DIR")) } ?? DataFolder.resolve(data).vtpmCA
            let authority = try VTPMCertificateAuthority.loadOrCreate(directory: dir)
            print("Root CA:         \(authority.root.subject) (\(dir.appendingPathComponent(VTPMCertificateAuthority.File.rootCertificate.rawValue).path))")
            print("Issuing CA:      \(authority.intermediate.subject) (\(dir.appendingPathComponent(VTPMCertificateAuthority.File.intermediateCertificate.rawValue).path))")
        }
    }
}

/// The host key that encrypts vTPM state at rest: `DATA/host.key` (0600), created once.
enum HostKey {
    static func loadOrCreate(folder: DataFolder = .resolve(nil)) throws -> [UInt8] {
        try loadOrCreate(folder: folder, file: folder.hostKey)
    }

    /// The platform's webhook key (DATA/webhook.key): each webhook's signing secret derives from it.
    static func webhookKey(folder: DataFolder = .resolve(nil)) throws -> [UInt8] {
        try loadOrCreate(folder: folder, file: folder.root.appendingPathComponent("webhook.key"))
    }

    static func loadOrCreate(folder: DataFolder, file: URL) throws -> [UInt8] {
        let dir = folder.root
        if let data = FileManager.default.contents(atPath: file.path) {
            guard data.count == 32 else { throw ValidationError("\(file.path) must hold 32 bytes") }
            return [UInt8](data)
        }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let key = TPMCrypto.random(32)
        guard FileManager.default.createFile(atPath: file.path, contents: Data(key), attributes: [.posixPermissions: 0o600]) else {
            throw ValidationError("cannot create \(file.path)")
        }
        return key
    }
}

/// Parses swtpm-style `key=value,key=value` option values.
func kv(_ s: String, _ option: String) throws -> [String: String] {
    var out: [String: String] = [:]
    for item in s.split(separator: ",") {
        let parts = item.split(separator: "=", maxSplits: 1)
        out[String(parts[0])] = parts.count == 2 ? String(parts[1]) : ""
    }
    return out
}

func endpoint(_ s: String, option: String) throws -> VTPMEndpoint {
    let o = try kv(s, option)
    switch o["type"] {
    case "tcp":
        guard let p = o["port"].flatMap(Int.init), (0...65535).contains(p) else { throw ValidationError("\(option): type=tcp needs port=N") }
        return .tcp(host: o["bindaddr"] ?? "127.0.0.1", port: p)
    case "unixio":
        guard let path = o["path"] else { throw ValidationError("\(option): type=unixio needs path=PATH") }
        return .unix(path: path)
    default:
        throw ValidationError("\(option): type must be tcp or unixio")
    }
}

func canConnect(_ e: VTPMEndpoint) -> Bool {
    switch e {
    case .tcp(let h, let p):
        return SocketProbe.tcp(h == "localhost" ? "127.0.0.1" : h, p)
    case .unix(let path):
        return FileManager.default.fileExists(atPath: path)
    }
}

enum SocketProbe {
    static func tcp(_ host: String, _ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &addr.sin_addr)
        return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
    }
}

/// SIGTERM/SIGINT stop the server cleanly (state is already durable after every command).
func installSignalHandlers(_ server: VTPMServer) {
    for sig in [SIGTERM, SIGINT] {
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler { server.terminate() }
        source.resume()
        signalSources.append(source)
    }
}

nonisolated(unsafe) var signalSources: [any DispatchSourceSignal] = []

extension Optional {
    func unwrap(_ message: String) throws -> Wrapped {
        guard let v = self else { throw ValidationError(message) }
        return v
    }
}
