import ArgumentParser
import Attestation
import AttestationAPI
import Fleet
import Foundation
import ServiceLifecycle
import ServiceTLS
import GuestAgent
import Hummingbird
import Server
import Storage
import UnixSignals
import TPM2
import VirtualTPM
import X509
import Logging
import SwiftASN1

/// Where the platform keeps its state, and the database the service uses.
struct DataOptions: ParsableArguments {
    @Option(help: "The platform data folder (vTPM CA, attestation CA, database, admin token). Default: $TLAUNCH_DATA, else ~/.tlaunch.")
    var data: String?
    @Option(help: "postgres://user:password@host:port/database, or a SQLite file (default: DATA/tlaunch.sqlite).")
    var database: String?

    var folder: DataFolder { DataFolder.resolve(data) }

    func openStore() async throws -> SQLStore {
        let f = folder
        try f.create()
        return try await StorageLocation.open(database ?? f.database.path)
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the attestation service (HTTP API under /v1, JWKS, metrics).",
        discussion: """
        A vTPM manufactured under the same data folder enrols with no configuration: its EK certificate chains to the
        folder's vTPM CA. Several instances on one PostgreSQL database serve one fleet (no state is kept in memory).
        """)
    @Option(help: "HOST:PORT to listen on.") var listen = "127.0.0.1:8080"
    @OptionGroup var storage: DataOptions
    @Option(name: .customLong("trust-ek-ca"),
            help: "A PEM file of EK CA certificates (roots and intermediates) to trust besides the platform's vTPM CA; repeatable.")
    var trustEKCA: [String] = []
    @Option(help: "The token issuer (iss) and public URL. Default: http://LISTEN.") var issuer: String?
    @Option(help: "Token lifetime in seconds (short: a token says what booted, not what runs now).") var tokenLifetime: Int = 300
    @Option(help: "The token audience (aud) when a relying party names none in its nonce request.") var tokenAudience: String =
        AttestationService.defaultAudience
    @Option(help: "Nonce lifetime in seconds.") var nonceLifetime: Int = 120
    @Flag(help: "Do not keep evidence in history (only its digest).") var noKeepEvidence = false
    @Option(help: "Log level: trace, debug, info, notice, warning, error.") var logLevel: String = "info"
    @OptionGroup(title: "TLS") var tls: ServeTLSOptions

    func run() async throws {
        let parts = listen.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]), (0...65535).contains(port) else {
            throw ValidationError("--listen must be HOST:PORT, e.g. 127.0.0.1:8080")
        }
        let host = String(parts[0])
        let folder = storage.folder
        try folder.create()
        let (serverTLS, _) = try tls.resolve(folder: folder, host: host, warn: { FileHandle.standardError.write(Data("\($0)\n".utf8)) })
        let scheme = serverTLS == nil ? "http" : "https"
        let service = try await Self.makeService(storage: storage, trustEKCA: trustEKCA, issuer: issuer ?? "\(scheme)://\(listen)",
                                                 tokenLifetime: tokenLifetime, tokenAudience: tokenAudience, nonceLifetime: nonceLifetime,
                                                 keepEvidence: !noKeepEvidence)
        _ = try await Self.adminToken(folder: folder, service: service)
        var logger = Logger(label: "tlaunch.serve")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let app = try APIServer.application(service: service, host: host, port: port, publicURL: issuer, logger: logger,
                                            tls: serverTLS) { actual in
            FileHandle.standardOutput.write(Data("""
                TrustedLaunch attestation service on \(scheme)://\(host):\(actual) (storage: \(service.storageKind); admin token: \
                \(folder.adminToken.path))\n
                """.utf8))
            _ = recordLocalURL(folder, scheme: scheme, host: host, port: actual)
        }
        // One group: the server, and the database it stops before (SIGINT or SIGTERM: requests
        // under way are answered, then the database's connections close).
        var groupLog = Logger(label: "tlaunch.serve.group")
        groupLog.logLevel = .error
        let services: [any Service] = (service.store as? SQLStore).map { [StorageService($0.backend)] } ?? []
        try await ServiceGroup(configuration: .init(services: services + [app], gracefulShutdownSignals: [.sigterm, .sigint],
                                                    logger: groupLog)).run()
    }

    /// The local admin token: created once (0600, readable only by this user), then read.
    static func adminToken(folder: DataFolder, service: AttestationService) async throws -> String {
        if !FileManager.default.fileExists(atPath: folder.adminToken.path) {
            let token = try await service.createAPIToken(role: .admin, vm: nil)
            _ = FileManager.default.createFile(atPath: folder.adminToken.path, contents: Data((token + "\n").utf8),
                                               attributes: [.posixPermissions: 0o600])
        }
        return try String(contentsOf: folder.adminToken, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func makeService(storage: DataOptions, trustEKCA: [String], issuer: String, tokenLifetime: Int = 300,
                            tokenAudience: String = AttestationService.defaultAudience, nonceLifetime: Int = 120,
                            keepEvidence: Bool = true) async throws -> AttestationService {
        let folder = storage.folder
        let vtpmCA = try VTPMCertificateAuthority.loadOrCreate(directory: folder.vtpmCA)
        var roots = [vtpmCA.root], intermediates = [vtpmCA.intermediate]
        for file in trustEKCA {
            let text: String
            do { text = try String(contentsOfFile: file,
                                   encoding: .utf8) } catch { throw ValidationError("--trust-ek-ca \(file): cannot read it") }
            let certs: [Certificate]
            do { certs = try PEMDocument.parseMultiple(pemString: text).map { try Certificate(pemDocument: $0) } } catch {
                throw ValidationError("--trust-ek-ca \(file): not PEM certificates: \(error)")
            }
            guard !certs.isEmpty else { throw ValidationError("--trust-ek-ca \(file): no certificate in it") }
            for c in certs { if c.subject == c.issuer { roots.append(c) } else { intermediates.append(c) } }
        }
        let store = try await storage.openStore()
        let akCA = try AKCertificateAuthority.loadOrCreate(directory: folder.attestationCA)
        // Token-signing keys are sealed in the database under a key kept outside it: TLAUNCH_KEY
        // (the same for every instance on one PostgreSQL), else the data folder's token-keys.key.
        let sealer: KeySealer
        do {
            sealer =
                try KeySealer.fromEnvironment()
                ?? KeySealer(key: try HostKey.loadOrCreate(folder: folder, file: folder.root.appendingPathComponent("token-keys.key")))
        } catch let e as AttestationServiceError { throw CLIError(e.message) }
        let service = AttestationService(store: store, anchors: TrustAnchors(roots: roots, intermediates: intermediates), akCA: akCA,
                                         issuer: issuer,
            nonceLifetime: TimeInterval(nonceLifetime), tokenLifetime: TimeInterval(tokenLifetime), tokenAudience: tokenAudience,
                                         keepEvidence: keepEvidence, keySealer: sealer)
        // Fail at start, not at the first attestation, when the keys do not open with this key.
        do { _ = try await service.keys() } catch let e as AttestationServiceError {
            await store.backend.close()
            throw CLIError(e.message)
        }
        return service
    }
}

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "token",
                                                    abstract: "API tokens for the attestation service: create, list, revoke.",
                                                    subcommands: [Create.self, List.self, Revoke.self])

    /// "90s", "15m", "12h", "30d" (or plain seconds).
    static func lifetime(_ text: String) throws -> Duration {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        let unit = text.last.flatMap { units[$0] }
        let number = unit == nil ? text : String(text.dropLast())
        guard let n = Int64(number), n > 0, n <= 3650 * 86400 / (unit ?? 1) else {
            throw ValidationError("--expires-in takes a positive duration such as 90s, 15m, 12h or 30d (got \(text))")
        }
        return .seconds(n * (unit ?? 1))
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create", abstract: "Print a new API token (only its hash is stored).")
        @Option(help: "admin, reader or agent.") var role: String
        @Option(help: "For an agent token: the one VM it may act for.") var vm: String?
        @Option(help: "How long it is accepted: 90s, 15m, 12h, 30d (default: until revoked).") var expiresIn: String?
        @OptionGroup var storage: DataOptions
        func run() async throws {
            guard let r = APITokenRecord.Role(rawValue: role), r != .signin else {
                throw ValidationError("--role must be admin, reader or agent")
            }
            if r != .agent, vm != nil { throw ValidationError("--vm applies to agent tokens only") }
            let lifetime = try expiresIn.map(TokenCommand.lifetime)
            let store = try await storage.openStore()
            do {
                print(try await AttestationService.createAPIToken(store: store, role: r, vm: vm, lifetime: lifetime))
            } catch let e as AttestationServiceError {
                await store.backend.close()
                throw ValidationError(e.message)
            }
            await store.backend.close()
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "The API tokens: id (the start of the token's "
                                                                                     + "hash), role, VM, created, expires, state.")
        @OptionGroup var storage: DataOptions
        func run() async throws {
            let store = try await storage.openStore()
            let tokens = try await store.apiTokens()
            await store.backend.close()
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            func time(_ ms: Int64?) -> String { ms.map { AttestationService.rfc3339($0) } ?? "-" }
            let rows = [["ID", "ROLE", "VM", "CREATED", "EXPIRES", "STATE"]] + tokens.map { t in
                [t.id, t.role.rawValue, t.vm ?? "-", time(t.created), time(t.expires),
                 t.revoked != nil ? "revoked \(time(t.revoked))" : (t.valid(at: now) ? "valid" : "expired")]
            }
            print(Render.table(rows))
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke a token by its id (tlaunch token list): "
                                                                                       + "it is refused from now on, everywhere.")
        @Argument(help: "The token's id (at least 6 hex digits of it).") var id: String
        @OptionGroup var storage: DataOptions
        func run() async throws {
            let store = try await storage.openStore()
            let n = try await store.revokeAPIToken(id: id.lowercased(), at: Int64(Date().timeIntervalSince1970 * 1000))
            await store.backend.close()
            switch n {
            case 1: print("Revoked \(id)")
            case 0: throw ValidationError("no token has the id \(id) (tlaunch token list)")
            default: throw ValidationError("\(n) tokens start with \(id): give more of the id")
            }
        }
    }
}

/// How a client finds the service and its credential.
struct ClientOptions: ParsableArguments {
    @Option(help: "The attestation service. Default: $TLAUNCH_SERVER, else http://127.0.0.1:8080.") var server: String?
    @Option(help: "API token. Default: $TLAUNCH_TOKEN, else the admin token in the data folder.") var token: String?
    @Option(help: "The platform data folder (for its admin token, TLS CA and URL). Default: $TLAUNCH_DATA, else ~/.tlaunch.") var data:
        String?
    @Option(help: "Trust only this CA (PEM) for https. Default: $TLAUNCH_CA, else the data folder's tls/ca.pem, else the system's roots.")
    var ca: String?
    @Option(help: "A client certificate (PEM) for mutual TLS. Default: $TLAUNCH_CLIENT_CERT, else the data folder's tls/admin-client.pem.")
    var clientCert: String?
    @Option(help: "The key of --client-cert. Default: $TLAUNCH_CLIENT_KEY, else the data folder's tls/admin-client.key.") var clientKey:
        String?

    var client: ServiceClient {
        get throws {
            // An empty variable counts as unset.
            let env = ProcessInfo.processInfo.environment.filter { !$0.value.isEmpty }
            let folder = DataFolder.resolve(data)
            func existing(_ u: URL) -> String? { FileManager.default.fileExists(atPath: u.path) ? u.path : nil }
            let recorded = (try? String(contentsOf: folder.serverURL, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            let url = server ?? env["TLAUNCH_SERVER"] ?? recorded.flatMap { $0.isEmpty ? nil : $0 } ?? "http://127.0.0.1:8080"
            let t = token ?? env["TLAUNCH_TOKEN"]
                ?? (try? String(contentsOf: folder.adminToken, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            guard url.lowercased().hasPrefix("https:") else { return ServiceClient.pinned(baseURL: url, token: t, tls: nil) }
            let caFile = ca ?? env["TLAUNCH_CA"] ?? existing(folder.tls.appendingPathComponent("ca.pem"))
            let cert = clientCert ?? env["TLAUNCH_CLIENT_CERT"] ?? existing(folder.adminClientCertificate)
            let key = clientKey ?? env["TLAUNCH_CLIENT_KEY"] ?? existing(folder.adminClientKey)
            guard (cert == nil) == (key == nil) else { throw ValidationError("--client-cert and --client-key go together") }
            do {
                return ServiceClient.pinned(baseURL: url, token: t, tls: try ClientTLS.files(ca: caFile, certificate: cert, key: key))
            } catch let e as TLSSetupError { throw CLIError(e.message) }
        }
    }
}

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent", abstract: "The guest attestation agent: enrol this VM's vTPM and attest its boot.",
        subcommands: [Enroll.self, Attest.self, Run.self, Status.self])

    struct Options: ParsableArguments {
        @OptionGroup var client: ClientOptions
        @OptionGroup var tcti: TCTIOptions
        @Option(help: "This VM's name at the service. Default: the host name.") var vm: String?
        @Option(help: "The TCG event log.") var eventlog = "/sys/kernel/security/tpm0/binary_bios_measurements"
        @Option(help: "The IMA log (sent when readable).") var ima = "/sys/kernel/security/ima/ascii_runtime_measurements"
        @Flag(help: "Print JSON.") var json = false

        func agent() throws -> GuestAgent {
            let name = vm ?? ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "vm"
            return GuestAgent(tpm: try tcti.client(), service: try client.client, vm: name, eventLogPath: eventlog,
                              imaLogPath: FileManager.default.isReadableFile(atPath: ima) ? ima : nil)
        }
    }


    static func show(_ o: AttestationOutcome) { print(GuestAgent.describe(o), terminator: "") }

    struct Enroll: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "enroll", abstract: "Enrol the vTPM: EK certificate, AK, credential "
                                                                                       + "activation; prints the AK certificate.")
        @OptionGroup var options: Options
        func run() async throws {
            let receipt = try await options.agent().enroll()
            if options.json { try printJSON(receipt) } else {
                print("Enrolled \(receipt.vm): AK \(receipt.akName)\nEK certificate: \(receipt.ekCertificateSubject)")
                print(receipt.akCertificate)
            }
        }
    }

    struct Attest: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "attest", abstract: "Attest once (enrolling first if needed); exits "
                                                                                       + "0 only when the attestation passed.")
        @OptionGroup var options: Options
        func run() async throws {
            let o = try await options.agent().attest()
            if options.json { try printJSON(o) } else { AgentCommand.show(o) }
            if !o.passed { throw ExitCode(1) }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "The guest's own view: Secure Boot state, TPM "
                                                                                       + "2.0 and its versions, measured boot log, last "
                                                                                       + "attestation.")
        @OptionGroup var options: Options
        func run() async throws {
            let s = try await options.agent().status()
            if options.json { try printJSON(s) } else { print(Self.render(s), terminator: "") }
            if !s.tpm.present { throw ExitCode(1) }
        }

        static func render(_ s: GuestStatus) -> String { ConsoleText.printable(s.text) }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "run",
                                                        abstract: "Attest at start and every --interval seconds, retrying with backoff.")
        @OptionGroup var options: Options
        @Option(help: "Seconds between attestations.") var interval: Int = 300
        func run() async throws {
            let json = options.json
            await (try options.agent()).run(interval: .seconds(max(1, interval))) { r in
                switch r {
                case .success(let o): if json { try? printJSON(o) } else { AgentCommand.show(o) }
                case .failure(let e): FileHandle.standardError.write(Data("attestation failed: \(e)\n".utf8))
                }
            }
        }
    }
}

extension AgentError: LocalizedError { public var errorDescription: String? { description } }
extension AttestationServiceError: LocalizedError { public var errorDescription: String? { message } }
extension StorageError: LocalizedError { public var errorDescription: String? { description } }
