import Foundation

/// The platform data folder (`--data DIR`, else `TLAUNCH_DATA`, else `~/.tlaunch`): the vTPM CA,
/// the host key that encrypts vTPM state, the attestation CA, the embedded database and the
/// local admin token. `tlaunch vtpm` and `tlaunch serve` on one folder trust each other with no
/// configuration.
public struct DataFolder: Sendable {
    public let root: URL
    public init(root: URL) { self.root = root }

    public static func resolve(_ option: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> DataFolder {
        if let option, !option.isEmpty { return DataFolder(root: URL(fileURLWithPath: option)) }
        if let env = environment["TLAUNCH_DATA"], !env.isEmpty { return DataFolder(root: URL(fileURLWithPath: env)) }
        return DataFolder(root: URL(fileURLWithPath: NSHomeDirectory()).appendingPathComponent(".tlaunch"))
    }

    public var vtpmCA: URL { root.appendingPathComponent("vtpm-ca") }
    public var hostKey: URL { root.appendingPathComponent("host.key") }
    public var attestationCA: URL { root.appendingPathComponent("attestation-ca") }
    public var database: URL { root.appendingPathComponent("tlaunch.sqlite") }
    public var adminToken: URL { root.appendingPathComponent("admin.token") }
    public var secureBootKeys: URL { root.appendingPathComponent("secureboot") }
    /// The platform's TLS CA and server certificate.
    public var tls: URL { root.appendingPathComponent("tls") }
    /// The URL the platform last listened on (written by `tlaunch up`/`serve`; the CLI's default).
    public var serverURL: URL { root.appendingPathComponent("server.url") }
    /// The local admin's client certificate and key, for a service that asks for mutual TLS.
    public var adminClientCertificate: URL { tls.appendingPathComponent("admin-client.pem") }
    public var adminClientKey: URL { tls.appendingPathComponent("admin-client.key") }

    public func create() throws {
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }
}
