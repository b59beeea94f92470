import ArgumentParser
import Attestation
import Fleet
import Foundation
import Synchronization
import X509
import Crypto
import TPM2
import VirtualTPM
#if canImport(Glibc)
import Glibc
#endif

/// What `swtpm`, `swtpm_setup` and `swtpm_ioctl` users (libvirt, Nova, KubeVirt, Proxmox, scripts)
/// rely on, shared by the three drop-ins: capability documents, state locations, logs, keys.
enum SwtpmCompat {
    /// The version the drop-ins report (libvirt reads the features, not the version).
    static let version = "0.9.0-tlaunch"

    /// `swtpm socket --print-capabilities`: only what this vTPM really does. Not claimed, so
    /// libvirt refuses such domains itself: TPM 1.2, seccomp profiles, RSA key sizes other than 2048.
    static func socketCapabilities(tpm2: Bool) -> String {
        var features = ["tpm-2.0", "flags-opt-startup", "cmdarg-key-fd", "cmdarg-pwd-fd", "cmdarg-print-states", "cmdarg-migration",
                        "nvram-backend-dir", "nvram-backend-file"]
        if tpm2 { features.append("rsa-keysize-2048") }
        return document(type: "swtpm", features: features)
    }

    /// `swtpm_setup --print-capabilities`.
    static func setupCapabilities() -> String {
        document(type: "swtpm_setup",
                 features: ["tpm-2.0", "cmdarg-keyfile-fd", "cmdarg-pwdfile-fd", "cmdarg-write-ek-cert-files", "tpm2-rsa-keysize-2048"])
    }

    static func document(type: String, features: [String]) -> String {
        "{ \"type\": \"\(type)\", \"features\": [ \(features.map { "\"\($0)\"" }.joined(separator: ", ")) ], \"version\": \"\(version)\" }"
    }

    /// Where a vTPM's state lives: swtpm's `dir=DIR[,mode=M]`, `backend-uri=dir://DIR` or
    /// `backend-uri=file://FILE`.
    struct StateLocation {
        var directory: String
        var file: String
        var mode: mode_t?
        static let fileName = "tlaunch-vtpm.state"

        init(_ option: String) throws {
            let o = try kv(option, "--tpmstate")
            mode = try o["mode"].map { try SwtpmCompat.mode($0, option: "--tpmstate mode=") }
            if let dir = o["dir"], !dir.isEmpty {
                directory = dir
                file = dir + "/" + Self.fileName
            } else if let uri = o["backend-uri"] {
                if uri.hasPrefix("dir://") {
                    directory = String(uri.dropFirst(6))
                    file = directory + "/" + Self.fileName
                } else if uri.hasPrefix("file://") {
                    file = String(uri.dropFirst(7))
                    directory = (file as NSString).deletingLastPathComponent
                    if directory.isEmpty { directory = "." }
                } else {
                    throw ValidationError("--tpmstate backend-uri must be dir://DIR or file://FILE, not \(uri)")
                }
                guard !directory.isEmpty, !file.isEmpty else { throw ValidationError("--tpmstate \(option): the path is empty") }
            } else {
                throw ValidationError("--tpmstate needs dir=DIR or backend-uri=dir://DIR|file://FILE")
            }
        }
    }

    /// `--print-states`: which state blobs exist (swtpm's names: `permall` is the permanent state).
    static func states(_ location: StateLocation) -> String {
        var st = stat()
        guard stat(location.file, &st) == 0 else { return "{ \"type\": \"swtpm\", \"states\": [] }" }
        return "{ \"type\": \"swtpm\", \"states\": [ {\"name\": \"permall\", \"size\": \(st.st_size)} ] }"
    }

    /// An octal mode (`0600`).
    static func mode(_ s: String, option: String) throws -> mode_t {
        guard let m = mode_t(s, radix: 8), m <= 0o7777 else { throw ValidationError("\(option)\(s) is not an octal file mode (e.g. 0600)") }
        return m
    }

    /// swtpm's `--log file=PATH[,level=N]` or `fd=N[,level=N]`: lines appended, written at once.
    final class Log: Sendable {
        let fd: Int32?
        let level: Int
        init(_ option: String?) throws {
            guard let option else { fd = nil; level = 0; return }
            let o = try kv(option, "--log")
            level = o["level"].flatMap(Int.init) ?? 1
            if let f = o["fd"] {
                guard let n = Int32(f), fcntl(n, F_GETFD) >= 0 else {
                    throw ValidationError("--log fd=\(f) is not an open file descriptor")
                }
                fd = n
            } else if let path = o["file"] {
                let n = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
                guard n >= 0 else { throw ValidationError("--log file=\(path): \(String(cString: strerror(errno)))") }
                fd = n
            } else {
                throw ValidationError("--log needs file=PATH or fd=N")
            }
        }
        func write(_ text: String) {
            guard let fd else { return }
            let bytes = Array((text + "\n").utf8)
            _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        }
        func line(_ text: String) {
            let f = DateFormatter()
            f.dateFormat = "yyyy-MM-dd'T'HH:mm:ss.SSSZ"
            write("\(f.string(from: Date())) \(text)")
        }
    }

    /// `--pid file=PATH` or `fd=N`.
    static func writePID(_ option: String) throws {
        let o = try kv(option, "--pid")
        let text = "\(getpid())\n"
        if let f = o["fd"] {
            guard let n = Int32(f) else { throw ValidationError("--pid fd=\(f) is not a number") }
            let bytes = Array(text.utf8)
            guard bytes.withUnsafeBytes({ Glibc.write(n, $0.baseAddress, $0.count) }) == bytes.count else {
                throw ValidationError("--pid fd=\(f): \(String(cString: strerror(errno)))")
            }
            close(n)
        } else {
            let file = try o["file"].unwrap("--pid needs file=PATH or fd=N")
            try text.write(toFile: file, atomically: true, encoding: .utf8)
        }
    }

    /// `--runas USER`: drops to that user's uid, gid and groups.
    static func switchUser(_ user: String) throws {
        guard let pw = getpwnam(user) else { throw ValidationError("--runas: no user \(user)") }
        guard initgroups(user, pw.pointee.pw_gid) == 0, setgid(pw.pointee.pw_gid) == 0, setuid(pw.pointee.pw_uid) == 0 else {
            throw ValidationError("--runas \(user): \(String(cString: strerror(errno)))")
        }
    }

    /// swtpm's `--key file=PATH|fd=N[,format=hex|binary][,mode=aes-256-cbc][,remove=true]` (the
    /// 32-byte key itself) or `--key pwdfile=PATH|pwdfd=N[,kdf=pbkdf2|sha512]` (a passphrase, as
    /// libvirt passes a domain's `<encryption secret=…>`, e.g. Nova's key-manager secret): the key
    /// that seals the state (AES-256-GCM here; `mode=` names swtpm's cipher and is accepted for
    /// 256-bit keys only; a passphrase becomes the key by PBKDF2-HMAC-SHA256, ``passphraseRounds``).
    static func key(_ option: String, option name: String) throws -> [UInt8] {
        let o = try kv(option, name)
        if let m = o["mode"], m != "aes-256-cbc", m != "aes-256-gcm" {
            throw ValidationError("\(name) mode=\(m): only 256-bit keys are supported (aes-256-cbc; the state is sealed with AES-256-GCM)")
        }
        if let kdf = o["kdf"], kdf != "pbkdf2", kdf != "sha512" { throw ValidationError("\(name) kdf=\(kdf): pbkdf2 or sha512") }
        if o["pwdfile"] != nil || o["pwdfd"] != nil {
            let (secret, source) = try read(file: o["pwdfile"], fd: o["pwdfd"], option: name, remove: o["remove"] == "true")
            guard !secret.isEmpty else { throw ValidationError("\(name) \(source): the passphrase is empty") }
            return passphraseKey(secret)
        }
        let (bytes, source) = try read(file: o["file"], fd: o["fd"], option: name, remove: o["remove"] == "true")
        if o["format"] == "hex" {
            guard let k = [UInt8](hex: String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)),
                k.count == 32
            else {
                throw ValidationError("\(name) \(source): expected 64 hex digits")
            }
            return k
        }
        guard bytes.count == 32 else { throw ValidationError("\(name) \(source): expected 32 bytes, found \(bytes.count)") }
        return bytes
    }

    /// The bytes of `file=` or `fd=` (at most 4 KiB), and what they came from.
    static func read(file: String?, fd: String?, option name: String, remove: Bool) throws -> ([UInt8], String) {
        if let fd {
            guard let n = Int32(fd) else { throw ValidationError("\(name) fd \(fd) is not a number") }
            var out: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 256)
            while out.count < 4096 {
                let r = buf.withUnsafeMutableBytes { Glibc.read(n, $0.baseAddress, $0.count) }
                if r < 0, errno == EINTR { continue }
                guard r > 0 else { break }
                out += buf[0..<r]
            }
            close(n)
            return (out, "fd \(n)")
        }
        guard let file else { throw ValidationError("\(name) needs file=PATH, fd=N, pwdfile=PATH or pwdfd=N") }
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        if remove { unlink(file) }
        return (bytes, file)
    }

    /// PBKDF2 rounds for a passphrase (RFC 8018; one derivation per vTPM start).
    static let passphraseRounds = 20_000

    /// The 32-byte state key a passphrase stands for: PBKDF2-HMAC-SHA256 (RFC 8018, 5.2), one block.
    static func passphraseKey(_ passphrase: [UInt8]) -> [UInt8] {
        let key = SymmetricKey(data: passphrase)
        let salt = Array("TrustedLaunch vTPM state key".utf8) + [0, 0, 0, 1]
        var u = Array(HMAC<SHA256>.authenticationCode(for: salt, using: key))
        var t = u
        for _ in 1..<passphraseRounds {
            u = Array(HMAC<SHA256>.authenticationCode(for: u, using: key))
            for i in 0..<t.count { t[i] ^= u[i] }
        }
        return t
    }
}

extension VTPMCommand {
    /// `swtpm_setup` for this vTPM: manufactures a TPM 2.0's state (EKs with certificates from the
    /// platform's vTPM CA, written and write-locked in NV) ahead of its first start.
    struct Setup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "setup",
            abstract: "Create a vTPM's state ahead of its first start, accepting swtpm_setup's options.",
            discussion: """
            As libvirt runs swtpm_setup:
              tlaunch vtpm setup --tpm2 --tpm-state /var/lib/libvirt/swtpm/UUID/tpm2 --vmid vm1:UUID \\
                --logfile /var/log/swtpm/libvirt/qemu/vm1-swtpm.log --createek --create-ek-cert --create-platform-cert --lock-nvram \
            --not-overwrite
            The EKs (RSA 2048 and ECC P-256, TCG default templates) always get certificates from the
            platform's vTPM CA (NV 0x01C00002 and 0x01C0000A), written once and write-locked.
            """
        )
        @Flag(help: "TPM 2.0 (required).") var tpm2 = false
        @Option(name: [.customLong("tpm-state"), .customLong("tpmstate")],
                help: "DIR, dir://DIR or file://FILE: where the state is written.") var tpmState: String?
        @Option(help: "NAME[:UUID]: the VM (logged).") var vmid: String?
        @Option(help: "PATH: log file.") var logfile: String?
        @Flag(help: "Create the EKs (always done).") var createek = false
        @Flag(help: "Create EK certificates (always done).") var createEkCert = false
        @Flag(help: "Accepted; no platform certificate is issued (the platform is attested by its measured boot).") var createPlatformCert =
            false
        @Flag(help: "Accepted; the EK certificate indices are always write-locked.") var lockNvram = false
        @Flag(help: "Replace existing state.") var overwrite = false
        @Flag(help: "Keep existing state and succeed.") var notOverwrite = false
        @Option(help: "Banks to allocate (this vTPM allocates sha1,sha256; other sets are refused).") var pcrBanks: String?
        @Option(help: "2048 (the only RSA key size).") var rsaKeysize: String?
        @Flag(help: "Accepted: an ECC EK is always created beside the RSA one.") var ecc = false
        @Option(help: "DIR: also write the EK certificates there (ek-rsa2048.crt, ek-secp256r1.crt).") var writeEkCertFiles: String?
        @Flag(help: "Print the EK certificates' subjects at the end.") var display = false
        @Option(help: "swtpm_setup's configuration file (not read: the CA is the platform's).") var config: String?
        @Option(help: "The swtpm executable (not used: this command manufactures in-process).") var tpm: String?
        @Option(name: .customLong("swtpm_ioctl"), help: "Not used.") var swtpmIoctl: String?
        @Option(help: "PATH: a 32-byte key file sealing the state (default: the data folder's host key).") var keyfile: String?
        @Option(help: "N: as --keyfile, from a file descriptor.") var keyfileFd: Int32?
        @Option(help: "PATH: a passphrase sealing the state (as libvirt passes a domain's encryption secret).") var pwdfile: String?
        @Option(help: "N: as --pwdfile, from a file descriptor.") var pwdfileFd: Int32?
        @Option(help: "aes-256-cbc (accepted; the state is sealed with AES-256-GCM).") var cipher: String?
        @Option(help: "USER: run as this user.") var runas: String?
        @Flag(help: "Print the features as JSON and exit.") var printCapabilities = false
        @Option(help: "dir=DIR: the platform's vTPM CA (default DATA/vtpm-ca).") var ca: String?
        @Option(help: "The platform data folder (vTPM CA, host key). Default: $TLAUNCH_DATA, else ~/.tlaunch.") var data: String?

        func run() async throws {
            if printCapabilities {
                print(SwtpmCompat.setupCapabilities())
                return
            }
            let log = try SwtpmCompat.Log(logfile.map { "file=\($0)" })
            do {
                try await setUp(log)
            } catch {
                // As swtpm_setup: the reason in the log and on stderr, exit status 1 (no usage text).
                let reason = (error as? ValidationError)?.message ?? "\(error)"
                log.line("vTPM setup failed: \(reason)")
                FileHandle.standardError.write(Data("tlaunch vtpm setup: \(reason)\n".utf8))
                throw ExitCode(1)
            }
        }

        func setUp(_ log: SwtpmCompat.Log) async throws {
            if let runas { try SwtpmCompat.switchUser(runas) }
            guard tpm2 else { throw ValidationError("this vTPM is a TPM 2.0 only: pass --tpm2 (swtpm_setup without --tpm2 sets up a TPM "
                                                  + "1.2)") }
            guard !(overwrite && notOverwrite) else { throw ValidationError("--overwrite and --not-overwrite exclude each other") }
            if let rsaKeysize, rsaKeysize != "2048" {
                throw ValidationError("--rsa-keysize \(rsaKeysize): this vTPM's RSA EK is 2048 bits")
            }
            if let cipher, cipher != "aes-256-cbc" { throw ValidationError("--cipher \(cipher): only 256-bit keys (aes-256-cbc) are "
                                                                         + "supported") }
            if let pcrBanks {
                let asked = Set(pcrBanks.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() })
                guard asked == ["sha1", "sha256"] else {
                    throw ValidationError("--pcr-banks \(pcrBanks): this vTPM allocates the sha1 and sha256 banks (TPM2_PCR_Allocate is "
                                        + "not implemented)")
                }
            }
            let raw = try tpmState.unwrap("--tpm-state DIR is required")
            let location = try SwtpmCompat.StateLocation(
                raw.hasPrefix("dir://") || raw.hasPrefix("file://") ? "backend-uri=\(raw)" : "dir=\(raw)")
            let fm = FileManager.default
            log.line("Starting vTPM manufacturing (TrustedLaunch) for \(vmid ?? "an unnamed VM") in \(location.file)")
            if fm.fileExists(atPath: location.file) {
                if notOverwrite {
                    log.line("The vTPM state exists: not overwritten")
                    return
                }
                guard overwrite else {
                    throw ValidationError("\(location.file) holds a vTPM's state already: pass --overwrite to replace it or "
                                        + "--not-overwrite to keep it")
                }
                try fm.removeItem(atPath: location.file)
                log.line("The existing vTPM state was removed (--overwrite)")
            }
            try fm.createDirectory(atPath: location.directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let hostKey: [UInt8]
            if let pwdfileFd { hostKey = try SwtpmCompat.key("pwdfd=\(pwdfileFd)", option: "--pwdfile-fd") }
            else if let pwdfile { hostKey = try SwtpmCompat.key("pwdfile=\(pwdfile)", option: "--pwdfile") }
            else if let keyfileFd { hostKey = try SwtpmCompat.key("fd=\(keyfileFd)", option: "--keyfile-fd") }
            else if let keyfile { hostKey = try SwtpmCompat.key("file=\(keyfile)", option: "--keyfile") }
            else { hostKey = try HostKey.loadOrCreate(folder: DataFolder.resolve(data)) }
            let dir =
                try ca.map { URL(fileURLWithPath: try kv($0, "--ca")["dir"].unwrap("--ca needs dir=DIR")) }
                ?? DataFolder.resolve(data).vtpmCA
            let authority = try VTPMCertificateAuthority.loadOrCreate(directory: dir)
            let vtpm = try await VirtualTPM.open(stateFile: location.file, hostKey: hostKey, authority: authority)
            let client = TPMClient(transport: InProcessTransport(vtpm))
            _ = try? await client.startup(.clear)
            for kind in TPMEKKind.allCases {
                guard let der = try await client.readEKCertificate(kind) else {
                    throw ValidationError("the new vTPM has no \(kind) EK certificate")
                }
                let serial = (try? Certificate(derEncoded: der)).map { "\($0.serialNumber)" } ?? "?"
                log.line("\(kind) EK certificate in NV \(kind.certificateIndex), issued by \(authority.intermediate.subject)")
                if display { print("\(kind) EK certificate: serial \(serial), issuer \(authority.intermediate.subject), NV "
                                 + "\(kind.certificateIndex)") }
                if let writeEkCertFiles {
                    let name = kind == .rsa2048 ? "ek-rsa2048.crt" : "ek-secp256r1.crt"
                    try Data(der).write(to: URL(fileURLWithPath: writeEkCertFiles).appendingPathComponent(name))
                }
            }
            if createPlatformCert { log.line("No platform certificate: the platform is attested by its measured boot") }
            log.line("Successfully set up the vTPM")
        }
    }

    /// `swtpm_ioctl` for swtpm's control channel (ours or swtpm's own): the same options, outputs
    /// and exit codes.
    struct Ioctl: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ioctl",
            abstract: "Send control commands to a vTPM's control channel, as swtpm_ioctl does.",
            discussion: """
            tlaunch vtpm ioctl [-c|-i|-s|--stop|-e|-r LOC|-l LOC|-v|-C|-g|-b SIZE|-h DATA|--info FLAGS|--save TYPE FILE|--load TYPE FILE] \
            (--unix PATH | --tcp [HOST]:[PORT])
            TYPE: permanent, volatile or savestate.
            """
        )
        @Argument(parsing: .captureForPassthrough) var arguments: [String] = []

        func run() throws {
            do {
                let request = try IoctlRequest(arguments)
                let output = try request.perform()
                if !output.isEmpty { print(output) }
            } catch let e as IoctlFailure {
                FileHandle.standardError.write(Data((e.message + "\n").utf8))
                throw ExitCode(1)
            }
        }
    }

    /// `tlaunch vtpm install-swtpm`: `swtpm`, `swtpm_setup` and `swtpm_ioctl` entry points that run
    /// this vTPM, for libvirt (and Nova, KubeVirt, Proxmox above it), which run them by name.
    struct InstallSwtpm: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "install-swtpm",
            abstract: "Install swtpm, swtpm_setup and swtpm_ioctl entry points that run this vTPM.",
            discussion: """
            tlaunch vtpm install-swtpm --prefix /usr/local --data /var/lib/tlaunch --user tss
            installs PREFIX/bin/{swtpm,swtpm_setup,swtpm_ioctl} and a copy of this program in
            PREFIX/libexec/tlaunch/. libvirtd finds them first on its PATH once restarted; its
            swtpm_user (qemu.conf, default tss) must read the data folder's host key and vTPM CA,
            which --user grants (those two become that user's; the folder stays yours, mode 0711).
            """
        )
        @Option(help: "Installation prefix.") var prefix = "/usr/local"
        @Option(help: """
            The data folder whose host key seals the states and whose vTPM CA issues the EK certificates (default: $TLAUNCH_DATA, else \
            ~/.tlaunch).
            """) var data: String?
        @Option(help: "USER: make the data folder's host key and vTPM CA this user's (libvirt's swtpm_user).") var user: String?

        func run() throws {
            let fm = FileManager.default
            let folder = DataFolder.resolve(data)
            _ = try HostKey.loadOrCreate(folder: folder)
            _ = try VTPMCertificateAuthority.loadOrCreate(directory: folder.vtpmCA)
            let bin = URL(fileURLWithPath: prefix).appendingPathComponent("bin")
            let libexec = URL(fileURLWithPath: prefix).appendingPathComponent("libexec/tlaunch")
            try fm.createDirectory(at: bin, withIntermediateDirectories: true)
            try fm.createDirectory(at: libexec, withIntermediateDirectories: true)
            let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            let target = libexec.appendingPathComponent("tlaunch")
            // A copy, renamed into place: running VMs keep the binary they started with.
            let staging = libexec.appendingPathComponent(".tlaunch.new")
            try? fm.removeItem(at: staging)
            try fm.copyItem(at: exe, to: staging)
            chmod(staging.path, 0o755)
            guard rename(staging.path, target.path) == 0 else { throw ValidationError("cannot install \(target.path): "
                                                                                    + "\(String(cString: strerror(errno)))") }
            let data = shellQuote(folder.root.path), tl = shellQuote(target.path)
            let scripts = [
                "swtpm": """
                #!/bin/sh
                # TrustedLaunch's vTPM as swtpm (installed by tlaunch vtpm install-swtpm).
                if [ "$1" != socket ]; then echo "swtpm: only 'swtpm socket' is provided by TrustedLaunch's vTPM" >&2; exit 1; fi
                shift
                exec \(tl) vtpm socket --data \(data) "$@"
                """,
                "swtpm_setup": "#!/bin/sh\n# TrustedLaunch's vTPM as swtpm_setup.\nexec \(tl) vtpm setup --data \(data) \"$@\"",
                "swtpm_ioctl": "#!/bin/sh\n# TrustedLaunch's vTPM as swtpm_ioctl.\nexec \(tl) vtpm ioctl \"$@\"",
            ]
            for (name, text) in scripts.sorted(by: { $0.key < $1.key }) {
                let url = bin.appendingPathComponent(name)
                try (text + "\n").write(to: url, atomically: true, encoding: .utf8)
                chmod(url.path, 0o755)
                print("installed \(url.path)")
            }
            if let user {
                guard let pw = getpwnam(user) else { throw ValidationError("--user: no user \(user)") }
                let uid = pw.pointee.pw_uid, gid = pw.pointee.pw_gid
                // Only the host key and the CA become the user's; the folder stays its owner's and
                // is made traversable (0711, not listable), so the swtpm user reaches those two and
                // cannot rename or remove anything else in it (the platform's database, tokens).
                var paths = [folder.hostKey.path, folder.vtpmCA.path]
                paths += ((try? fm.contentsOfDirectory(atPath: folder.vtpmCA.path)) ?? []).map {
                    folder.vtpmCA.appendingPathComponent($0).path
                }
                for p in paths { guard chown(p, uid,
                                             gid) == 0 else { throw ValidationError("chown \(p): \(String(cString: strerror(errno)))") } }
                var st = stat()
                if stat(folder.root.path, &st) == 0 { chmod(folder.root.path, (st.st_mode & 0o7700) | 0o011) }
                print("\(folder.root.path): its host key and vTPM CA now belong to \(user); the folder is traversable (0711)")
            }
            print("libvirtd runs these once \(bin.path) comes first on its PATH (restart it); the EK certificates chain to "
                + "\(folder.vtpmCA.path)")
        }

        func shellQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
    }
}

struct IoctlFailure: Error { var message: String }

/// One `swtpm_ioctl` invocation: a command and where the control channel is.
struct IoctlRequest {
    enum Command {
        case capabilities, initialize, stop, shutdown, established, resetEstablished(UInt8), locality(UInt8), storeVolatile, cancel
        case config, bufferSize(UInt32), hash([UInt8]), info(UInt64), save(UInt32, String), load(UInt32, String)
    }
    var command: Command?
    var endpoint: VTPMEndpoint?

    init(_ args: [String]) throws {
        var i = 0
        func value(_ what: String) throws -> String {
            i += 1
            guard i < args.count else { throw IoctlFailure(message: "\(args[i - 1]) needs \(what)") }
            return args[i]
        }
        func blobType(_ s: String) throws -> UInt32 {
            switch s {
            case "permanent": 1
            case "volatile": 2
            case "savestate": 3
            default: throw IoctlFailure(message: "unknown blob type \(s) (permanent, volatile or savestate)")
            }
        }
        func locality(_ s: String) throws -> UInt8 {
            guard let l = UInt8(s), l <= 4 else { throw IoctlFailure(message: "locality \(s) is not 0-4") }
            return l
        }
        while i < args.count {
            let a = args[i]
            switch a {
            case "-c": command = .capabilities
            case "-i": command = .initialize
            case "--stop": command = .stop
            case "-s": command = .shutdown
            case "-e": command = .established
            case "-r": command = .resetEstablished(try locality(try value("a locality")))
            case "-l": command = .locality(try locality(try value("a locality")))
            case "-v": command = .storeVolatile
            case "-C": command = .cancel
            case "-g": command = .config
            case "-b":
                let v = try value("a buffer size")
                guard let n = UInt32(v) else { throw IoctlFailure(message: "-b \(v) is not a number") }
                command = .bufferSize(n)
            case "-h":
                let v = try value("data (or - for stdin)")
                command = .hash(v == "-" ? [UInt8](FileHandle.standardInput.readDataToEndOfFile()) : Array(v.utf8))
            case "--info":
                let v = try value("flags")
                guard let n = UInt64(v) else { throw IoctlFailure(message: "--info \(v) is not a number") }
                command = .info(n)
            case "--save", "--load":
                let type = try blobType(try value("a blob type"))
                let file = try value("a file")
                command = a == "--save" ? .save(type, file) : .load(type, file)
            case "--unix": endpoint = .unix(path: try value("a socket path"))
            case "--tcp":
                let v = try value("[HOST]:[PORT]")
                let parts = v.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                let host = parts[0].isEmpty ? "127.0.0.1" : parts[0]
                guard let port = parts.count == 2 ? (parts[1].isEmpty ? 6546 : Int(parts[1])) : 6546, (1...65535).contains(port) else {
                    throw IoctlFailure(message: "--tcp \(v): expected [HOST]:[PORT]")
                }
                endpoint = .tcp(host: host, port: port)
            case "--version":
                print("TrustedLaunch vTPM control tool \(SwtpmCompat.version)")
                throw ExitCode.success
            case "--tpm-device":
                throw IoctlFailure(message: "--tpm-device: CUSE devices are not supported; use --unix PATH or --tcp HOST:PORT")
            default:
                throw IoctlFailure(message: "unrecognized option '\(a)'")
            }
            i += 1
        }
    }

    func perform() throws -> String {
        guard let command else { throw IoctlFailure(message: "No valid command.") }
        guard let endpoint else { throw IoctlFailure(message: "give the control channel: --unix PATH or --tcp HOST:PORT") }
        let c = try ControlConnection(endpoint)
        func result(_ name: String, _ bytes: [UInt8]) throws {
            let rc = readBE32(bytes)
            guard rc == 0 else { throw IoctlFailure(message: "TPM result from \(name): 0x\(String(rc, radix: 16))") }
        }
        switch command {
        case .capabilities:
            let r = try c.call(1, [], reply: 8)
            return "ptm capability is 0x\(String(r.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }, radix: 16))"
        case .initialize:
            try result("PTM_INIT", try c.call(2, be32(0), reply: 4))
        case .shutdown:
            try result("PTM_SHUTDOWN", try c.call(3, [], reply: 4))
        case .established:
            let r = try c.call(4, [], reply: 8)
            try result("PTM_GET_TPMESTABLISHED", r)
            return "tpmEstablished is \(r[4])"
        case .locality(let l):
            try result("PTM_SET_LOCALITY", try c.call(5, [l], reply: 4))
        case .hash(let data):
            try result("PTM_HASH_START", try c.call(6, [], reply: 4))
            var at = 0
            repeat {
                let chunk = Array(data[at..<min(data.count, at + 4096)])
                try result("PTM_HASH_DATA", try c.call(7, be32(UInt32(chunk.count)) + chunk, reply: 4))
                at += chunk.count
            } while at < data.count
            try result("PTM_HASH_END", try c.call(8, [], reply: 4))
        case .cancel:
            try result("PTM_CANCEL_TPM_CMD", try c.call(9, [], reply: 4))
        case .storeVolatile:
            try result("PTM_STORE_VOLATILE", try c.call(10, [], reply: 4))
        case .resetEstablished(let l):
            try result("PTM_RESET_TPMESTABLISHED", try c.call(11, [l], reply: 4))
        case .save(let type, let file):
            var blob: [UInt8] = []
            while true {
                let header = try c.call(12, be32(0) + be32(type) + be32(UInt32(blob.count)), reply: 16)
                try result("PTM_GET_STATEBLOB", header)
                let total = Int(readBE32(header, 8)), length = Int(readBE32(header, 12))
                guard length <= 1 << 20 else { throw IoctlFailure(message: "PTM_GET_STATEBLOB: a chunk of \(length) bytes") }
                blob += try c.read(length)
                if blob.count >= total || length == 0 { break }
            }
            do { try Data(blob).write(to: URL(fileURLWithPath: file)) } catch {
                throw IoctlFailure(message: "cannot write \(file): \(error)")
            }
        case .load(let type, let file):
            guard let d = FileManager.default.contents(atPath: file) else { throw IoctlFailure(message: "cannot read \(file)") }
            try result("PTM_SET_STATEBLOB", try c.call(13, be32(0) + be32(type) + be32(UInt32(d.count)) + [UInt8](d), reply: 4))
        case .stop:
            try result("PTM_STOP", try c.call(14, [], reply: 4))
        case .config:
            let r = try c.call(15, [], reply: 8)
            try result("PTM_GET_CONFIG", r)
            return "ptm configuration flags: 0x\(String(readBE32(r, 4), radix: 16))"
        case .bufferSize(let n):
            let r = try c.call(17, be32(n), reply: 16)
            try result("PTM_SET_BUFFERSIZE", r)
            return "TPM buffersize: \(readBE32(r, 4))\nminimum size  : \(readBE32(r, 8))\nmaximum size  : \(readBE32(r, 12))"
        case .info(let flags):
            let header = try c.call(18, withUnsafeBytes(of: flags.bigEndian, Array.init) + be32(0) + be32(0), reply: 12)
            try result("PTM_GET_INFO", header)
            return String(decoding: try c.read(Int(readBE32(header, 8))), as: UTF8.self)
        }
        return ""
    }

    func be32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.bigEndian, Array.init) }
    func readBE32(_ b: [UInt8], _ at: Int = 0) -> UInt32 { b[at..<at + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
}

/// A blocking client of swtpm's control channel.
final class ControlConnection {
    let fd: Int32
    init(_ e: VTPMEndpoint) throws {
        switch e {
        case .unix(let path):
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
                close(fd); throw IoctlFailure(message: "socket path too long: \(path)")
            }
            withUnsafeMutableBytes(of: &addr.sun_path) { p in p.copyBytes(from: bytes); p[bytes.count] = 0 }
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard rc == 0 else {
                let m = String(cString: strerror(errno)); close(fd); throw IoctlFailure(message: "cannot connect to \(path): \(m)")
            }
        case .tcp(let host, let port):
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host,
                            &addr.sin_addr) == 1 else { close(fd); throw IoctlFailure(message: "\(host) is not an IPv4 address") }
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard rc == 0 else {
                let m = String(cString: strerror(errno)); close(fd); throw IoctlFailure(message: "cannot connect to \(host):\(port): \(m)")
            }
        }
    }
    deinit { close(fd) }

    func call(_ code: UInt32, _ payload: [UInt8], reply: Int) throws -> [UInt8] {
        let out = withUnsafeBytes(of: code.bigEndian, Array.init) + payload
        var sent = 0
        while sent < out.count {
            let n = out[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw IoctlFailure(message: "the control channel closed while sending") }
            sent += n
        }
        // A short answer is a failure code alone (4 bytes): read that first.
        let head = try read(4)
        if head != [0, 0, 0, 0], reply > 4, code != 1 { return head + [UInt8](repeating: 0, count: reply - 4) }
        return head + (reply > 4 ? try read(reply - 4) : [])
    }

    func read(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw IoctlFailure(message: "the control channel closed after \(got) of \(count) bytes") }
            got += n
        }
        return out
    }
}
