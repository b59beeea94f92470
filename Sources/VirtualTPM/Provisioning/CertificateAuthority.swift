import Crypto
import _CryptoExtras
import Foundation
import SwiftASN1
import TPM2
import X509

/// The platform's vTPM certificate authority: a root and an intermediate (ECDSA P-384),
/// created once and kept in a directory, that sign every vTPM's EK certificates.
public struct VTPMCertificateAuthority: Sendable {
    public let root: Certificate
    public let intermediate: Certificate
    let intermediateKey: P384.Signing.PrivateKey

    /// Files in the CA directory.
    public enum File: String, CaseIterable {
        case rootCertificate = "root-ca.pem"
        case rootKey = "root-ca-key.pem"
        case intermediateCertificate = "intermediate-ca.pem"
        case intermediateKey = "intermediate-ca-key.pem"
    }

    /// Loads the CA from `directory`, creating it (root, intermediate, keys 0600) on first use.
    public static func loadOrCreate(directory: URL) throws(VTPMError) -> VTPMCertificateAuthority {
        let fm = FileManager.default
        func path(_ f: File) -> URL { directory.appendingPathComponent(f.rawValue) }
        if fm.fileExists(atPath: path(.intermediateKey).path) {
            do {
                let root = try Certificate(pemEncoded: String(contentsOf: path(.rootCertificate), encoding: .utf8))
                let intermediate = try Certificate(pemEncoded: String(contentsOf: path(.intermediateCertificate), encoding: .utf8))
                let key = try P384.Signing.PrivateKey(pemRepresentation: String(contentsOf: path(.intermediateKey), encoding: .utf8))
                return VTPMCertificateAuthority(root: root, intermediate: intermediate, intermediateKey: key)
            } catch {
                throw VTPMError(.provisioning, "cannot read the vTPM CA in \(directory.path): \(error)")
            }
        }
        do {
            let ca = try create()
            let created = try AtomicDirectory.create(at: directory) { dir in
                func write(_ s: String, _ f: File, secret: Bool) throws {
                    let url = dir.appendingPathComponent(f.rawValue)
                    try s.write(to: url, atomically: true, encoding: .utf8)
                    try fm.setAttributes([.posixPermissions: secret ? 0o600 : 0o644], ofItemAtPath: url.path)
                }
                try write(try ca.0.root.serializeAsPEM().pemString, .rootCertificate, secret: false)
                try write(ca.1.pemRepresentation, .rootKey, secret: true)
                try write(try ca.0.intermediate.serializeAsPEM().pemString, .intermediateCertificate, secret: false)
                try write(ca.0.intermediateKey.pemRepresentation, .intermediateKey, secret: true)
            }
            // Another process created the CA first: use theirs.
            guard created || fm.fileExists(atPath: path(.intermediateKey).path) else {
                throw VTPMError(.provisioning, "\(directory.path) exists but holds no vTPM CA: move it away")
            }
            return created ? ca.0 : try loadOrCreate(directory: directory)
        } catch let e as VTPMError {
            throw e
        } catch {
            throw VTPMError(.provisioning, "cannot create the vTPM CA in \(directory.path): \(error)")
        }
    }

    /// A new CA (in memory); returns it with the root's private key.
    public static func create(name: String = "TrustedLaunch") throws -> (VTPMCertificateAuthority, P384.Signing.PrivateKey) {
        let rootKey = P384.Signing.PrivateKey()
        let intermediateKey = P384.Signing.PrivateKey()
        let now = Date()
        let rootName = try DistinguishedName {
            OrganizationName(name)
            CommonName("\(name) vTPM Root CA")
        }
        let intermediateName = try DistinguishedName {
            OrganizationName(name)
            CommonName("\(name) vTPM EK Issuing CA")
        }
        let root = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(rootKey.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(25 * 365 * 86400),
            issuer: rootName, subject: rootName, signatureAlgorithm: .ecdsaWithSHA384,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 1))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(rootKey.publicKey))
            },
            issuerPrivateKey: .init(rootKey))
        let intermediate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(intermediateKey.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(20 * 365 * 86400),
            issuer: rootName, subject: intermediateName, signatureAlgorithm: .ecdsaWithSHA384,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(intermediateKey.publicKey))
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: .init(rootKey.publicKey)).keyIdentifier)
            },
            issuerPrivateKey: .init(rootKey))
        return (VTPMCertificateAuthority(root: root, intermediate: intermediate, intermediateKey: intermediateKey), rootKey)
    }

    /// TCG OIDs (TCG EK Credential Profile 2.x, TCG OID registry).
    enum OID {
        static let tpmManufacturer: ASN1ObjectIdentifier = [2, 23, 133, 2, 1]
        static let tpmModel: ASN1ObjectIdentifier = [2, 23, 133, 2, 2]
        static let tpmVersion: ASN1ObjectIdentifier = [2, 23, 133, 2, 3]
        static let tpmSpecification: ASN1ObjectIdentifier = [2, 23, 133, 2, 16]
        static let ekCertificate: ASN1ObjectIdentifier = [2, 23, 133, 8, 1]
        static let subjectDirectoryAttributes: ASN1ObjectIdentifier = [2, 5, 29, 9]
        static let certificatePolicies: ASN1ObjectIdentifier = [2, 5, 29, 32]
        static let anyPolicy: ASN1ObjectIdentifier = [2, 5, 29, 32, 0]
        static let userNotice: ASN1ObjectIdentifier = [1, 3, 6, 1, 5, 5, 7, 2, 2]
    }

    /// Issues an EK certificate as the TCG EK Credential Profile lays it out: empty subject,
    /// critical SAN with the TPM manufacturer/model/version, the TPM specification in subject
    /// directory attributes, the EK-certificate extended key usage, certificate policies,
    /// keyEncipherment (RSA) or keyAgreement (ECC).
    public func issueEKCertificate(ekPublic: TPMTPublic, manufacturer: UInt32, model: String, firmwareVersion: UInt64,
        specification: (family: String, level: Int, revision: Int), serial: [UInt8]? = nil
    ) throws -> Certificate {
        let publicKey: Certificate.PublicKey
        let usage: KeyUsage
        if let rsa = ekPublic.rsaComponents {
            publicKey = .init(try _RSA.Signing.PublicKey(n: rsa.modulus, e: Array(be32(rsa.exponent).drop { $0 == 0 })))
            usage = KeyUsage(keyEncipherment: true)
        } else if let ecc = ekPublic.eccComponents, ecc.curve == .nistP256 {
            publicKey = .init(try P256.Signing.PublicKey(x963Representation: [0x04] + ecc.x + ecc.y))
            usage = KeyUsage(keyAgreement: true)
        } else {
            throw VTPMError(.provisioning, "EK certificates are issued for RSA and ECC P-256 EKs")
        }
        let hexManufacturer = String(manufacturer, radix: 16, uppercase: true)
        let tpmName = DistinguishedName([
            RelativeDistinguishedName([
                .init(type: OID.tpmManufacturer,
                      utf8String: "id:" + String(repeating: "0", count: max(0, 8 - hexManufacturer.count)) + hexManufacturer),
                .init(type: OID.tpmModel, utf8String: model),
                .init(type: OID.tpmVersion, utf8String: "id:" + String(format: "%08X", UInt32(truncatingIfNeeded: firmwareVersion >> 32))),
            ]),
        ])
        var spec = DER.Serializer()
        try spec.appendConstructedNode(identifier: .sequence) { s in
            try s.appendConstructedNode(identifier: .sequence) { attr in
                try attr.serialize(OID.tpmSpecification)
                try attr.appendConstructedNode(identifier: .set) { set in
                    try set.appendConstructedNode(identifier: .sequence) { v in
                        try v.serialize(ASN1UTF8String(specification.family))
                        try v.serialize(specification.level)
                        try v.serialize(specification.revision)
                    }
                }
            }
        }
        var policies = DER.Serializer()
        try policies.appendConstructedNode(identifier: .sequence) { s in
            try s.appendConstructedNode(identifier: .sequence) { info in
                try info.serialize(OID.anyPolicy)
                try info.appendConstructedNode(identifier: .sequence) { quals in
                    try quals.appendConstructedNode(identifier: .sequence) { q in
                        try q.serialize(OID.userNotice)
                        try q.appendConstructedNode(identifier: .sequence) { notice in
                            try notice.serialize(ASN1UTF8String("TCPA Trusted Platform Module Endorsement"))
                        }
                    }
                }
            }
        }
        let issuerKeyID = SubjectKeyIdentifier(hash: intermediate.publicKey).keyIdentifier
        let now = Date()
        let extensions = try Certificate.Extensions {
            Critical(SubjectAlternativeNames([.directoryName(tpmName)]))
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(usage)
            try ExtendedKeyUsage([.init(oid: OID.ekCertificate)])
            AuthorityKeyIdentifier(keyIdentifier: issuerKeyID)
            Certificate.Extension(oid: OID.subjectDirectoryAttributes, critical: false, value: spec.serializedBytes[...])
            Certificate.Extension(oid: OID.certificatePolicies, critical: false, value: policies.serializedBytes[...])
        }
        return try Certificate(
            version: .v3, serialNumber: serial.map { Certificate.SerialNumber(bytes: $0[...]) } ?? Certificate.SerialNumber(),
            publicKey: publicKey, notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(20 * 365 * 86400),
            issuer: intermediate.subject, subject: DistinguishedName(), signatureAlgorithm: .ecdsaWithSHA384,
            extensions: extensions, issuerPrivateKey: .init(intermediateKey))
    }
}
