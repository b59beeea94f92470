import ArgumentParser
import Attestation
import Fleet
import Foundation
import GuestAgent
import ServiceTLS

/// How `tlaunch up` and `tlaunch serve` serve: HTTPS by default, with the data folder's CA.
struct ServeTLSOptions: ParsableArguments {
    @Flag(help: """
        Serve plain HTTP (no TLS): tokens, evidence and the dashboard's cookie travel in clear. Only for a loopback address, or when a \
        proxy in front terminates TLS.
        """)
    var insecureHTTP = false
    @Option(help: """
        The server's certificate chain (PEM). Default: one the data folder's TLS CA (tls/ca.pem) issues for the listen address, this \
        host's name and localhost.
        """)
    var tlsCert: String?
    @Option(help: "The key of --tls-cert (PEM).") var tlsKey: String?
    @Option(help: "Another DNS name or IP address clients reach the service by (in the issued certificate); repeatable.") var tlsName:
        [String] = []
    @Flag(help: """
        Mutual TLS: every client (CLI, relay, agents, browsers) must present a certificate from the platform TLS CA (tlaunch tls client \
        NAME issues them).
        """)
    var mtls = false

    /// The server's TLS (nil with --insecure-http) and what the platform's own clients (the
    /// relay, the local admin) trust and present. Prints a warning for plain HTTP.
    func resolve(folder: DataFolder, host: String, warn: (String) -> Void) throws -> (server: ServerTLS?, client: ClientTLS?) {
        if insecureHTTP {
            guard tlsCert == nil, tlsKey == nil, !mtls else { throw ValidationError("--insecure-http cannot go with --tls-cert, --tls-key "
                                                                                  + "or --mtls") }
            let loopback = host == "localhost" || host.hasPrefix("127.") || host == "::1"
            warn(loopback ? "warning: plain HTTP (--insecure-http): fine for this host only; anyone on it can read tokens in transit"
                          : "WARNING: plain HTTP on \(host) (--insecure-http): API tokens, evidence and dashboard sessions cross the "
                          + "network in clear. Terminate TLS in front of it, or drop --insecure-http.")
            return (nil, nil)
        }
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
        do {
            let ca = try PlatformTLS.loadOrCreate(directory: folder.tls)
            var server: ServerTLS
            var trust: ClientTLS
            if let tlsCert, let tlsKey {
                server = try ServerTLS.files(certificate: tlsCert, key: tlsKey)
                trust = ClientTLS()   // the operator's certificate: its own CA is in the system's store
            } else {
                let id = try ca.serverIdentity(names: PlatformTLS.defaultNames(listeningOn: host, extra: tlsName))
                server = ServerTLS(chainPEM: id.chainPEM, keyPEM: id.keyPEM)
                trust = ClientTLS(trustRootsPEM: ca.caPEM)
            }
            if mtls {
                server.clientRootsPEM = ca.caPEM
                // The platform's own clients: the relay (in memory) and the local admin (0600 files).
                let relay = try ca.issueClient(name: "tlaunch relay")
                trust.certificatePEM = relay.certificatePEM; trust.keyPEM = relay.keyPEM
                if !FileManager.default.fileExists(atPath: folder.adminClientKey.path) {
                    let admin = try ca.issueClient(name: "tlaunch admin")
                    guard FileManager.default.createFile(atPath: folder.adminClientKey.path, contents: Data(admin.keyPEM.utf8),
                                                         attributes: [.posixPermissions: 0o600]),
                        FileManager.default.createFile(
                            atPath: folder.adminClientCertificate.path, contents: Data(admin.certificatePEM.utf8),
                            attributes: [.posixPermissions: 0o644])
                    else {
                        throw CLIError("cannot write the admin's client certificate in \(folder.tls.path)")
                    }
                }
            }
            return (server, trust)
        } catch let e as TLSSetupError {
            throw CLIError(e.message)
        }
    }
}

struct TLSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls", abstract: "The platform's TLS: its CA (clients pin it) and client certificates for mutual TLS.",
        subcommands: [CA.self, Client.self])

    struct CA: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ca", abstract: "Print the platform TLS CA certificate (PEM; created "
                                                                                   + "on first use): give it to clients as --ca.")
        @Option(help: "The platform data folder. Default: $TLAUNCH_DATA, else ~/.tlaunch.") var data: String?
        func run() async throws {
            let folder = DataFolder.resolve(data)
            try folder.create()
            do { print(try PlatformTLS.loadOrCreate(directory: folder.tls).caPEM,
                       terminator: "") } catch let e as TLSSetupError { throw CLIError(e.message) }
        }
    }

    struct Client: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "client", abstract: "Issue a client certificate for mutual TLS "
                                                                                       + "(tlaunch up --mtls): writes NAME.pem and "
                                                                                       + "NAME.key (0600).")
        @Argument(help: "The client's name (its certificate's common name).") var name: String
        @Option(help: "The folder to write to.") var out = "."
        @Option(help: "Validity in days.") var days = 397
        @Option(help: "The platform data folder. Default: $TLAUNCH_DATA, else ~/.tlaunch.") var data: String?
        func run() async throws {
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
                throw ValidationError("the name is letters, digits, - _ and . only")
            }
            guard (1...3650).contains(days) else { throw ValidationError("--days is 1 to 3650") }
            let folder = DataFolder.resolve(data)
            do {
                let issued = try PlatformTLS.loadOrCreate(directory: folder.tls).issueClient(name: name, days: days)
                let dir = URL(fileURLWithPath: out)
                let cert = dir.appendingPathComponent("\(name).pem"), key = dir.appendingPathComponent("\(name).key")
                guard FileManager.default.createFile(atPath: key.path, contents: Data(issued.keyPEM.utf8),
                                                     attributes: [.posixPermissions: 0o600]),
                      FileManager.default.createFile(atPath: cert.path, contents: Data(issued.certificatePEM.utf8)) else {
                    throw CLIError("cannot write \(cert.path) and \(key.path)")
                }
                print("Wrote \(cert.path) and \(key.path) (give them as --client-cert and --client-key)")
            } catch let e as TLSSetupError { throw CLIError(e.message) }
        }
    }
}
