import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import X509

/// Why TLS material could not be made, read or used: the file and what to do.
public struct TLSSetupError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The platform's own TLS: a CA kept in the data folder (`tls/`), a server certificate it
/// issues for the names the service answers on, and client certificates for mutual TLS.
///
/// Files (keys 0600):
///   tls/ca.pem, tls/ca.key          the platform TLS CA (ECDSA P-256, 10 years)
///   tls/server.pem, tls/server.key  the server certificate (397 days; re-issued when a name
///                                   is missing or fewer than 30 days are left)
///
/// Clients pin `ca.pem`: the CLI reads it from the data folder (or `--ca`), the host's relay
/// trusts nothing else, and a certificate from any public CA for the same name is refused.
public struct PlatformTLS: Sendable {
    public let directory: URL
    public let caCertificate: Certificate
    let caKey: P256.Signing.PrivateKey

    public var caFile: URL { directory.appendingPathComponent("ca.pem") }
    var caKeyFile: URL { directory.appendingPathComponent("ca.key") }
    public var serverCertificateFile: URL { directory.appendingPathComponent("server.pem") }
    public var serverKeyFile: URL { directory.appendingPathComponent("server.key") }

    public var caPEM: String { Self.lines((try? caCertificate.serializeAsPEM().pemString) ?? "") }

    /// PEM text ending in a newline, so that documents concatenate into a valid chain.
    static func lines(_ pem: String) -> String { pem.hasSuffix("\n") ? pem : pem + "\n" }

    /// Loads the CA from `directory`, creating it on first use.
    public static func loadOrCreate(directory: URL) throws -> PlatformTLS {
        let fm = FileManager.default
        let caFile = directory.appendingPathComponent("ca.pem"), keyFile = directory.appendingPathComponent("ca.key")
        if fm.fileExists(atPath: keyFile.path) {
            do {
                let cert = try Certificate(pemEncoded: String(contentsOf: caFile, encoding: .utf8))
                let key = try P256.Signing.PrivateKey(pemRepresentation: String(contentsOf: keyFile, encoding: .utf8))
                guard cert.publicKey == Certificate.PublicKey(key.publicKey) else {
                    throw TLSSetupError("\(caFile.path) is not the certificate of \(keyFile.path)")
                }
                return PlatformTLS(directory: directory, caCertificate: cert, caKey: key)
            } catch let e as TLSSetupError { throw e } catch {
                throw TLSSetupError("cannot read the platform TLS CA in \(directory.path): \(error) (move the folder away to start a new "
                                  + "CA; clients must then trust the new ca.pem)")
            }
        }
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            OrganizationName("TrustedLaunch")
            CommonName("TrustedLaunch platform TLS CA")
        }
        let now = Date()
        let cert = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(10 * 365 * 86400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(key.publicKey))
            },
            issuerPrivateKey: .init(key))
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        // The key last: its file is what marks the CA as made, so a crash between the two
        // leaves a CA made again at the next start, not a key without its certificate.
        try write(lines(try cert.serializeAsPEM().pemString), to: caFile, secret: false)
        try write(key.pemRepresentation, to: keyFile, secret: true)
        return PlatformTLS(directory: directory, caCertificate: cert, caKey: key)
    }

    /// Writes through a temporary file and a rename: a crash leaves the old file or the new one.
    static func write(_ text: String, to url: URL, secret: Bool) throws {
        let tmp = url.appendingPathExtension("tmp-\(getpid())")
        _ = FileManager.default.createFile(atPath: tmp.path, contents: nil, attributes: [.posixPermissions: secret ? 0o600 : 0o644])
        do {
            let h = try FileHandle(forWritingTo: tmp)
            try h.write(contentsOf: Data(text.utf8))
            try h.synchronize()
            try h.close()
            guard rename(tmp.path, url.path) == 0 else { throw TLSSetupError("cannot rename \(tmp.path) to \(url.path): errno \(errno)") }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw TLSSetupError("cannot write \(url.path): \(error)")
        }
    }

    /// The server certificate and key for `names` (DNS names and IP addresses), issued now if
    /// the one on disk lacks a name, is not this CA's, or has fewer than 30 days left.
    public func serverIdentity(names: [String]) throws -> (chainPEM: String, keyPEM: String) {
        let wanted = Set(names.filter { !$0.isEmpty })
        if let pem = try? String(contentsOf: serverCertificateFile, encoding: .utf8),
            let keyPEM = try? String(contentsOf: serverKeyFile, encoding: .utf8),
           let cert = try? Certificate(pemEncoded: pem), let key = try? P256.Signing.PrivateKey(pemRepresentation: keyPEM),
           cert.publicKey == Certificate.PublicKey(key.publicKey), cert.issuer == caCertificate.subject,
           caCertificate.publicKey.isValidSignature(cert.signature, for: cert),
           cert.notValidAfter > Date().addingTimeInterval(30 * 86400),
           wanted.isSubset(of: Self.names(in: cert)) {
            return (Self.lines(pem) + caPEM, keyPEM)
        }
        let (cert, key) = try issue(names: wanted.sorted(), commonName: wanted.sorted().first ?? "tlaunch", usage: .serverAuth, days: 397)
        let pem = try cert.serializeAsPEM().pemString
        try Self.write(key.pemRepresentation, to: serverKeyFile, secret: true)
        try Self.write(Self.lines(pem), to: serverCertificateFile, secret: false)
        return (Self.lines(pem) + caPEM, key.pemRepresentation)
    }

    /// A client certificate for mutual TLS, named `name` (its common name), valid `days`.
    public func issueClient(name: String, days: Int = 397) throws -> (certificatePEM: String, keyPEM: String) {
        let (cert, key) = try issue(names: [], commonName: name, usage: .clientAuth, days: days)
        return (Self.lines(try cert.serializeAsPEM().pemString) + caPEM, key.pemRepresentation)
    }

    public func issue(
        names: [String], commonName: String, usage: ExtendedKeyUsage.Usage, days: Int
    ) throws -> (Certificate, P256.Signing.PrivateKey) {
        let key = P256.Signing.PrivateKey()
        let now = Date()
        let sans: [GeneralName] = names.map { n in Self.ipBytes(n).map { .ipAddress(ASN1OctetString(contentBytes: $0[...])) } ?? .dnsName(n)
        }
        let cert = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(Double(days) * 86400),
            issuer: caCertificate.subject, subject: try DistinguishedName { OrganizationName("TrustedLaunch"); CommonName(commonName) },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([usage])
                SubjectKeyIdentifier(hash: .init(key.publicKey))
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: .init(caKey.publicKey)).keyIdentifier)
                if !sans.isEmpty { SubjectAlternativeNames(sans) }
            },
            issuerPrivateKey: .init(caKey))
        return (cert, key)
    }

    /// The DNS names and IP addresses (as text) a certificate is for.
    public static func names(in cert: Certificate) -> Set<String> {
        guard let sans = try? cert.extensions.subjectAlternativeNames else { return [] }
        var out = Set<String>()
        for n in sans {
            switch n {
            case .dnsName(let d): out.insert(d)
            case .ipAddress(let bytes): if let s = ipText(Array(bytes.bytes)) { out.insert(s) }
            default: break
            }
        }
        return out
    }

    /// The bytes of an IPv4 or IPv6 address, or nil for a DNS name.
    public static func ipBytes(_ s: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, s, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, s, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    static func ipText(_ bytes: [UInt8]) -> String? {
        var buffer = [CChar](repeating: 0, count: 64)
        let family = bytes.count == 4 ? AF_INET : bytes.count == 16 ? AF_INET6 : -1
        guard family >= 0 else { return nil }
        let ok = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) } != nil
        return ok ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
    }

    /// The names a server listening on `host` is reached by: the host itself, this machine's
    /// name, localhost and the loopback addresses — and for a wildcard address every address
    /// of this machine's interfaces.
    public static func defaultNames(listeningOn host: String, extra: [String] = []) -> [String] {
        var names = ["localhost", "127.0.0.1", "::1"] + extra
        let me = ProcessInfo.processInfo.hostName
        if !me.isEmpty { names.append(me) }
        if host == "0.0.0.0" || host == "::" {
            names += interfaceAddresses()
        } else {
            names.append(host)
        }
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }
    }

    static func interfaceAddresses() -> [String] {
        var out: [String] = []
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return out }
        defer { freeifaddrs(list) }
        var p = list
        while let a = p {
            if let sa = a.pointee.ifa_addr {
                if sa.pointee.sa_family == UInt16(AF_INET) {
                    var addr = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                    if let s = ipText(withUnsafeBytes(of: &addr) { Array($0) }) { out.append(s) }
                } else if sa.pointee.sa_family == UInt16(AF_INET6) {
                    var addr = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                    let bytes = withUnsafeBytes(of: &addr) { Array($0) }
                    if bytes[0] != 0xfe || bytes[1] & 0xc0 != 0x80, let s = ipText(bytes) { out.append(s) }   // not link-local
                }
            }
            p = a.pointee.ifa_next
        }
        return out
    }
}

/// How the service serves TLS.
public struct ServerTLS: Sendable {
    public var chainPEM: String
    public var keyPEM: String
    /// When set, every client must present a certificate that chains to these roots (PEM).
    public var clientRootsPEM: String?

    public init(chainPEM: String, keyPEM: String, clientRootsPEM: String? = nil) {
        self.chainPEM = chainPEM; self.keyPEM = keyPEM; self.clientRootsPEM = clientRootsPEM
    }

    /// From PEM files given by the operator (`--tls-cert`, `--tls-key`).
    public static func files(certificate: String, key: String) throws -> ServerTLS {
        do {
            return ServerTLS(chainPEM: try String(contentsOfFile: certificate, encoding: .utf8),
                             keyPEM: try String(contentsOfFile: key, encoding: .utf8))
        } catch {
            throw TLSSetupError("cannot read the TLS certificate \(certificate) or key \(key): \(error)")
        }
    }

    /// The NIOSSL configuration: TLS 1.2 or later; with client roots, mutual TLS.
    public func configuration() throws -> TLSConfiguration {
        let chain: [NIOSSLCertificate], key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMBytes(Array(chainPEM.utf8))
            key = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
        } catch {
            throw TLSSetupError("the TLS certificate or key is not PEM that BoringSSL reads: \(error)")
        }
        guard !chain.isEmpty else { throw TLSSetupError("the TLS certificate file holds no certificate") }
        var c = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        c.minimumTLSVersion = .tlsv12
        if let clientRootsPEM {
            let roots: [NIOSSLCertificate]
            do { roots = try NIOSSLCertificate.fromPEMBytes(Array(clientRootsPEM.utf8)) } catch {
                throw TLSSetupError("the client CA is not PEM: \(error)")
            }
            c.trustRoots = .certificates(roots)
            c.certificateVerification = .noHostnameVerification
            c.sendCANameList = true
        }
        return c
    }
}

/// What a client trusts and presents.
public struct ClientTLS: Sendable, Hashable {
    /// PEM roots to trust instead of the system's (pinning); nil: the system's roots.
    public var trustRootsPEM: String?
    /// A client certificate (PEM chain) and key for mutual TLS.
    public var certificatePEM: String?
    public var keyPEM: String?

    public init(trustRootsPEM: String? = nil, certificatePEM: String? = nil, keyPEM: String? = nil) {
        self.trustRootsPEM = trustRootsPEM; self.certificatePEM = certificatePEM; self.keyPEM = keyPEM
    }

    /// Pins the CA in `file`, with a client certificate from `certificate`/`key` when given.
    public static func files(ca: String?, certificate: String? = nil, key: String? = nil) throws -> ClientTLS {
        func read(_ p: String?, _ what: String) throws -> String? {
            guard let p else { return nil }
            do { return try String(contentsOfFile: p,
                                   encoding: .utf8) } catch { throw TLSSetupError("cannot read the \(what) \(p): \(error)") }
        }
        return ClientTLS(trustRootsPEM: try read(ca, "CA certificate"), certificatePEM: try read(certificate, "client certificate"),
                         keyPEM: try read(key, "client key"))
    }

    public func configuration() throws -> TLSConfiguration {
        var c = TLSConfiguration.makeClientConfiguration()
        c.minimumTLSVersion = .tlsv12
        c.certificateVerification = .fullVerification
        if let trustRootsPEM {
            let roots: [NIOSSLCertificate]
            do { roots = try NIOSSLCertificate.fromPEMBytes(Array(trustRootsPEM.utf8)) } catch {
                throw TLSSetupError("the CA certificate is not PEM: \(error)")
            }
            guard !roots.isEmpty else { throw TLSSetupError("the CA file holds no certificate") }
            c.trustRoots = .certificates(roots)
        }
        if let certificatePEM, let keyPEM {
            do {
                c.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)).map { .certificate($0) }
                c.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
            } catch { throw TLSSetupError("the client certificate or key is not PEM: \(error)") }
        }
        return c
    }
}
