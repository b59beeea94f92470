import Crypto
import _CryptoExtras
import Foundation
import MeasuredBoot
import SwiftASN1
import TPM2
import X509

/// The service's AK certificate authority (ECDSA P-256, in the data folder): it certifies each
/// enrolled AK with the VM's name, so a relying party can check a quote without asking us.
public struct AKCertificateAuthority: Sendable {
    public let certificate: Certificate
    let key: P256.Signing.PrivateKey
    /// Certificates already checked (by SHA-256 of the PEM, VM and AK): their validity period,
    /// so a repeated attestation only compares dates.
    let checked = BoundedMemo<[UInt8], (Date, Date)>(capacity: 65536)

    /// TCG OID for AK certificates' extended key usage (tcg-kp-AIKCertificate).
    public static let akCertificateEKU: ASN1ObjectIdentifier = [2, 23, 133, 8, 3]

    public static func loadOrCreate(directory: URL) throws -> AKCertificateAuthority {
        let certPath = directory.appendingPathComponent("ak-ca.pem"), keyPath = directory.appendingPathComponent("ak-ca-key.pem")
        let fm = FileManager.default
        if fm.fileExists(atPath: keyPath.path) {
            return AKCertificateAuthority(certificate: try Certificate(pemEncoded: String(contentsOf: certPath, encoding: .utf8)),
                                          key: try P256.Signing.PrivateKey(pemRepresentation: String(contentsOf: keyPath, encoding: .utf8)))
        }
        let ca = try create()
        let created = try AtomicDirectory.create(at: directory) { dir in
            try ca.certificate.serializeAsPEM().pemString.write(to: dir.appendingPathComponent("ak-ca.pem"), atomically: true,
                                                                encoding: .utf8)
            let key = dir.appendingPathComponent("ak-ca-key.pem")
            try ca.key.pemRepresentation.write(to: key, atomically: true, encoding: .utf8)
            try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: key.path)
        }
        guard created || fm.fileExists(atPath: keyPath.path) else {
            throw EnrolmentError(.issuance, "\(directory.path) exists but holds no attestation CA: move it away")
        }
        return created ? ca : try loadOrCreate(directory: directory)
    }

    public static func create(name: String = "TrustedLaunch") throws -> AKCertificateAuthority {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName { OrganizationName(name); CommonName("\(name) Attestation CA") }
        let now = Date()
        let cert = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(20 * 365 * 86400),
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(key.publicKey))
            },
            issuerPrivateKey: .init(key))
        return AKCertificateAuthority(certificate: cert, key: key)
    }

    /// The X.509 form of a TPM public key (RSA or ECC P-256/P-384).
    public static func publicKey(_ p: TPMTPublic) throws -> Certificate.PublicKey {
        if let rsa = p.rsaComponents {
            let e = rsa.exponent == 0 ? 65537 : rsa.exponent
            let eb = [UInt8(truncatingIfNeeded: e >> 24), UInt8(truncatingIfNeeded: e >> 16), UInt8(truncatingIfNeeded: e >> 8),
                      UInt8(truncatingIfNeeded: e)]
            return .init(try _RSA.Signing.PublicKey(n: rsa.modulus, e: Array(eb.drop { $0 == 0 })))
        }
        if let ecc = p.eccComponents {
            switch ecc.curve {
            case .nistP256: return .init(try P256.Signing.PublicKey(x963Representation: [0x04] + ecc.x + ecc.y))
            case .nistP384: return .init(try P384.Signing.PublicKey(x963Representation: [0x04] + ecc.x + ecc.y))
            default: break
            }
        }
        throw EnrolmentError(.issuance, "AK certificates are issued for RSA and ECC P-256/P-384 keys")
    }

    /// An AK certificate: subject CN = the VM, the AK's Name in a subject alternative name URI
    /// (`urn:tlaunch:ak:<name hex>`), EKU tcg-kp-AIKCertificate, digitalSignature only.
    public func issue(vm: String, akPublic: TPMTPublic, validity: TimeInterval = 2 * 365 * 86400) throws -> Certificate {
        let now = Date()
        let name = try akPublic.name()
        return try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: try Self.publicKey(akPublic),
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(validity),
            issuer: certificate.subject,
            subject: try DistinguishedName {
                OrganizationName("TrustedLaunch"); OrganizationalUnitName("vTPM attestation key"); CommonName(vm)
            },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.init(oid: Self.akCertificateEKU)])
                SubjectAlternativeNames([.uniformResourceIdentifier("urn:tlaunch:ak:\(hexString(name))")])
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: certificate.publicKey).keyIdentifier)
            },
            issuerPrivateKey: .init(key))
    }

    /// Checks an AK certificate this authority issued: signature, validity now, and that it
    /// certifies `akPublic` for `vm`.
    public func check(pem: String, vm: String, akPublic: TPMTPublic, now: Date = Date()) -> String? {
        let key = Array(SHA256.hash(data: Data((pem + "\u{0}" + vm + "\u{0}" + ((try? hexString(akPublic.tpmBytes())) ?? "")).utf8)))
        if let (from, until) = checked.lookup(key) {
            return from <= now && now <= until ? nil : "the AK certificate expired on \(until): enrol again"
        }
        let problem = checkFully(pem: pem, vm: vm, akPublic: akPublic, now: now)
        if problem == nil, let cert = try? Certificate(pemEncoded: pem) { checked.store(key, (cert.notValidBefore, cert.notValidAfter)) }
        return problem
    }

    func checkFully(pem: String, vm: String, akPublic: TPMTPublic, now: Date) -> String? {
        guard let cert = try? Certificate(pemEncoded: pem) else { return "the stored AK certificate does not parse" }
        guard certificate.publicKey.isValidSignature(cert.signature, for: cert) else { return "the AK certificate is not signed by this "
                                                                                            + "service's attestation CA" }
        guard cert.notValidBefore <= now, now <= cert.notValidAfter else { return "the AK certificate expired on \(cert.notValidAfter): "
                                                                                + "enrol again" }
        guard let key = try? Self.publicKey(akPublic), key == cert.publicKey else { return "the AK certificate certifies another key" }
        guard cert.subject.description.contains("CN=\(vm)") else { return "the AK certificate was issued for \(cert.subject), not \(vm)" }
        return nil
    }
}
