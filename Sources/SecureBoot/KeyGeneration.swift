import Crypto
import _CryptoExtras
import Foundation
import MeasuredBoot
import SwiftASN1
import X509

/// A Secure Boot key set (PK, KEK, db): RSA-2048 keys with self-signed certificates, as
/// firmware expects them (RSA-2048/SHA-256 is what every UEFI implementation verifies).
public struct SecureBootKeySet: Sendable {
    public struct Key: Sendable {
        public var name: String
        public var privateKeyPEM: String
        public var certificate: Certificate
        public var certificatePEM: String
        public init(name: String, privateKeyPEM: String, certificate: Certificate, certificatePEM: String) {
            self.name = name; self.privateKeyPEM = privateKeyPEM; self.certificate = certificate; self.certificatePEM = certificatePEM
        }
    }
    public var owner: EFIGUID
    public var keys: [Key]

    public init(owner: EFIGUID, keys: [Key]) { self.owner = owner; self.keys = keys }

    public static func generate(commonName: String, owner: EFIGUID, years: Int = 10) throws(SecureBootError) -> SecureBootKeySet {
        var keys: [Key] = []
        for role in ["PK", "KEK", "db"] {
            do {
                let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
                let name = try DistinguishedName { CommonName("\(commonName) \(role)") }
                let now = Date()
                let cert = try Certificate(
                    version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
                    notValidBefore: now - 3600, notValidAfter: now + Double(years) * 365.25 * 86400,
                    issuer: name, subject: name, signatureAlgorithm: .sha256WithRSAEncryption,
                    extensions: try Certificate.Extensions {
                        Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                        KeyUsage(digitalSignature: true, keyCertSign: true)
                    },
                    issuerPrivateKey: .init(key))
                keys.append(Key(name: role, privateKeyPEM: key.pemRepresentation, certificate: cert,
                                certificatePEM: try cert.serializeAsPEM().pemString))
            } catch {
                throw SecureBootError(.signing, "generating the \(role) key failed: \(error)")
            }
        }
        return SecureBootKeySet(owner: owner, keys: keys)
    }

    /// The key set as signature databases: (PK, KEK, db).
    public func databases() throws(SecureBootError) -> (pk: SignatureDatabase, kek: SignatureDatabase, db: SignatureDatabase) {
        (try SignatureDatabase(certificates: [keys[0].certificate], owner: owner),
         try SignatureDatabase(certificates: [keys[1].certificate], owner: owner),
         try SignatureDatabase(certificates: [keys[2].certificate], owner: owner))
    }
}
