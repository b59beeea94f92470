import ArgumentParser
import Attestation
import Fleet
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
        subcommands: [Socket.self, Setup.self, Ioctl.self, InstallSwtpm.self, CA.self]
    )

    /// `swtpm socket` with the same options, so QEMU's `-tpmdev emulator`, libvirt's `emulator`
    /// TPM backend (and Nova, KubeVirt, Proxmox on top of it) and tpm2-tools' `swtpm:`/`mssim:`
    /// TCTIs work against it unchanged.
    struct Socket: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "socket",
            abstract: "Run a vTPM on sockets, accepting swtpm's `socket` options.",
            discussion: """
            Example (as swtpm):
              tlaunch vtpm socket --tpm2 --tpmstate dir=/var/lib/vtpm/vm1 \\
                --server type=tcp,port=2321 --ctrl type=tcp,port=2322 --flags not-need-init,startup-clear
            As libvirt starts swtpm (no --server: QEMU passes the data channel over the control
            channel with CMD_SET_DATAFD):
              tlaunch vtpm socket --ctrl type=unixio,path=/run/vm1-swtpm.sock,mode=0600 \\
                --tpmstate dir=/var/lib/vtpm/vm1,mode=0600 --log file=/var/log/vm1-swtpm.log --terminate --tpm2
            The state file (DIR/tlaunch-vtpm.state) is encrypted with AES-256-GCM under the host key.
            `tlaunch vtpm install-swtpm` installs swtpm, swtpm_setup and swtpm_ioctl entry points.
            """
        )

        @Flag(help: "TPM 2.0 (required: TPM 1.2 is not implemented, as --print-capabilities says).") var tpm2 = false
        @Option(help: "dir=DIR[,mode=0600] | backend-uri=dir://DIR | backend-uri=file://FILE: where the vTPM state lives.") var tpmstate:
            String?
        @Option(help: """
            type=tcp,port=P[,bindaddr=A] | type=unixio,path=P[,mode=0600]: the data channel (mssim: the command port); without it the \
            client passes it over --ctrl (CMD_SET_DATAFD).
            """) var server: String?
        @Option(help: "type=tcp,port=P[,bindaddr=A] | type=unixio,path=P[,mode=0600]: the control channel (mssim: the platform port).")
        var ctrl: String?
        @Option(help: "not-need-init,startup-clear,startup-none") var flags: String?
        @Option(help: "file=PATH | fd=N: write the process id.") var pid: String?
        @Option(help: "file=PATH[,level=N] | fd=N[,level=N]: log file (level 5 and above: every command and response).") var log: String?
        @Flag(help: "Exit when the data channel's client (the VM's QEMU) disconnects.") var terminate = false
        @Flag(help: "Run in the background once listening.") var daemon = false
        @Flag(help: "Speak the Microsoft simulator protocol (mssim: TCTI) instead of swtpm's.") var mssim = false
        @Option(help: """
            file=PATH[,format=hex|binary][,remove=true] | fd=N[,format=…]: the 32-byte key sealing the state (default: the data folder's \
            host key).
            """) var key: String?
        @Option(help: """
            file=PATH|fd=N|pwdfile=PATH|pwdfd=N[,…]: the key (or passphrase) sealing the state blobs that leave for a migration or a \
            save, as --key.
            """) var migrationKey: String?
        @Option(help: """
            [incoming][,release-lock-outgoing]: the state arrives by CMD_SET_STATEBLOB (an incoming migration); accepted as swtpm does \
            for shared-storage migration.
            """) var migration: String?
        @Option(
            help: """
                allow-set-locality,reject-locality-4 (accepted; CMD_SET_LOCALITY is always allowed, locality 4 never from the data \
                channel).
                """
        ) var locality: String?
        @Option(help: "action=none|log|kill (accepted; this vTPM installs no seccomp profile).") var seccomp: String?
        @Option(help: "USER: switch to this user once listening.") var runas: String?
        @Flag(help: "Print the features this vTPM supports as JSON (swtpm's format) and exit.") var printCapabilities = false
        @Flag(help: "Print which state blobs exist in --tpmstate as JSON and exit.") var printStates = false
        @Option(help: "dir=DIR: the platform's vTPM CA (default DATA/vtpm-ca, created if missing).") var ca: String?
        @Option(help: "The platform data folder (vTPM CA, host key). Default: $TLAUNCH_DATA, else ~/.tlaunch.") var data: String?

        func run() async throws {
            if printCapabilities {
                print(SwtpmCompat.socketCapabilities(tpm2: tpm2))
                return
            }
            let state = try SwtpmCompat.StateLocation(try tpmstate.unwrap("--tpmstate is required (dir=DIR)"))
            if printStates {
                print(SwtpmCompat.states(state))
                return
            }
            guard tpm2 else {
                throw ValidationError("this vTPM is a TPM 2.0 only: pass --tpm2 (swtpm without --tpm2 means TPM 1.2, which is not "
                                    + "implemented)")
            }
            let dataEndpoint = try server.map { try endpoint($0, option: "--server") }
            let ctrlEndpoint = try ctrl.map { try endpoint($0, option: "--ctrl") }
            guard dataEndpoint != nil || ctrlEndpoint != nil else {
                throw ValidationError("give --ctrl (the client passes the data channel over it) or --server, or both")
            }
            let flagSet = Set((flags ?? "").split(separator: ",").map(String.init))
            for f in flagSet where !["not-need-init", "startup-clear", "startup-none"].contains(f) {
                throw ValidationError("--flags: \"\(f)\" is not supported (not-need-init, startup-clear, startup-none)")
            }
            if let migration {
                for m in migration.split(separator: ",") where !["incoming", "release-lock-outgoing"].contains(m) {
                    throw ValidationError("--migration: \"\(m)\" is not supported (incoming, release-lock-outgoing)")
                }
            }
            if let seccomp, let action = try kv(seccomp, "--seccomp")["action"], !["none", "log", "kill"].contains(action) {
                throw ValidationError("--seccomp: action must be none, log or kill")
            }
            if daemon { try daemonize(probe: (ctrlEndpoint ?? dataEndpoint)!) }

            var options = VTPMServer.Options(data: dataEndpoint, control: ctrlEndpoint)
            options.wireProtocol = mssim ? .mssim : .swtpm
            options.notNeedInit = flagSet.contains("not-need-init")
            options.startupClear = flagSet.contains("startup-clear")
            options.terminateOnDataClose = terminate
            options.socketMode = try [server, ctrl].compactMap { $0 }.compactMap { try kv($0, "--ctrl")["mode"] }.first.map {
                try SwtpmCompat.mode($0, option: "mode=")
            }
            let logger = try SwtpmCompat.Log(log)
            do {
                try await serve(options: options, state: state, flagSet: flagSet, logger: logger)
            } catch {
                // As swtpm: why it did not start goes to its log (libvirt's daemonized swtpm has no
                // terminal), and to stderr; exit status 1.
                let reason = (error as? ValidationError)?.message ?? "\(error)"
                logger.line("TrustedLaunch vTPM failed to start: \(reason)")
                FileHandle.standardError.write(Data("tlaunch vtpm socket: \(reason)\n".utf8))
                throw ExitCode(1)
            }
        }

        func serve(options initial: VTPMServer.Options, state: SwtpmCompat.StateLocation, flagSet: Set<String>,
                   logger: SwtpmCompat.Log) async throws {
            var options = initial
            if logger.level >= 5 {
                // Level 5 and above: every command and response in hex, as swtpm logs them.
                options.trace = { command, response in logger.write("command \(hexString(command))\nresponse \(hexString(response))") }
            }
            // Listening first (libvirt gives swtpm's socket a few seconds to appear), then the slow
            // part: keys (a passphrase's PBKDF2), the CA, opening or manufacturing the state.
            var listeners = try VTPMServer.Listeners(options: options)
            listeners.options.migrationKey = try migrationKey.map { try SwtpmCompat.key($0, option: "--migration-key") }
            // The pid file as soon as the socket exists: libvirt waits a short fixed time for both.
            if let pid { try SwtpmCompat.writePID(pid) }
            try FileManager.default.createDirectory(atPath: state.directory, withIntermediateDirectories: true)
            let hostKey = try loadHostKey()
            let authority = try VTPMCertificateAuthority.loadOrCreate(directory: caDirectory())
            let tpm = try await VirtualTPM.open(stateFile: state.file, hostKey: hostKey, authority: authority)
            if let mode = state.mode { chmod(state.file, mode) }
            let server = VTPMServer(tpm: tpm, listening: listeners)
            if let runas { try SwtpmCompat.switchUser(runas) }
            logger.line("""
                TrustedLaunch vTPM listening: data \(server.dataEndpoint.map { "\($0)" } ?? "over the control channel (CMD_SET_DATAFD)"), \
                control \(server.controlEndpoint.map { "\($0)" } ?? "none")
                """)
            server.start()
            installSignalHandlers(server)
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                Thread.detachNewThread {
                    server.wait()
                    done.resume()
                }
            }
            logger.line("TrustedLaunch vTPM stopped")
        }

        func caDirectory() throws -> URL {
            if let ca { return URL(fileURLWithPath: try kv(ca, "--ca")["dir"].unwrap("--ca needs dir=DIR")) }
            return DataFolder.resolve(data).vtpmCA
        }

        func loadHostKey() throws -> [UInt8] {
            guard let key else { return try HostKey.loadOrCreate(folder: DataFolder.resolve(data)) }
            return try SwtpmCompat.key(key, option: "--key")
        }

        /// Re-runs this command in the background (a new session, stdio on /dev/null) and
        /// returns in the parent once the vTPM listens.
        func daemonize(probe: VTPMEndpoint) throws {
            let args = CommandLine.arguments.filter { $0 != "--daemon" }
            var attr = posix_spawnattr_t()
            posix_spawnattr_init(&attr)
            posix_spawnattr_setflags(&attr, 0x80)  // POSIX_SPAWN_SETSID (glibc)
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            for fd: Int32 in [0, 1, 2] { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0) }
            spawnClosesDescriptors(from: 3, &actions)
            let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
            defer { for p in argv { free(p) } }
            var child: pid_t = 0
            let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
            guard posix_spawn(&child, exe, &actions, &attr, argv,
                              environ) == 0 else { throw ValidationError("--daemon: cannot start the background process") }
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
            let dir =
                try ca.map { URL(fileURLWithPath: try kv($0, "--ca")["dir"].unwrap("--ca needs dir=DIR")) }
                ?? DataFolder.resolve(data).vtpmCA
            let authority = try VTPMCertificateAuthority.loadOrCreate(directory: dir)
            print("Root CA:         \(authority.root.subject) "
                + "(\(dir.appendingPathComponent(VTPMCertificateAuthority.File.rootCertificate.rawValue).path))")
            print("Issuing CA:      \(authority.intermediate.subject) "
                + "(\(dir.appendingPathComponent(VTPMCertificateAuthority.File.intermediateCertificate.rawValue).path))")
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
        guard let p = o["port"].flatMap(Int.init), (0...65535).contains(p) else {
            throw ValidationError("\(option): type=tcp needs port=N")
        }
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
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
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
