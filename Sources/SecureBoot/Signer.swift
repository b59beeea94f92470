import Crypto
import _CryptoExtras
import Foundation
import SwiftASN1
import TPM2
import X509

/// Adds an Authenticode signature to a PE image, as `sbsign` does: the image is padded to 8
/// bytes, its SHA-256 Authenticode digest is signed in a PKCS#7 SignedData (SpcIndirectDataContent
/// with signed attributes), and the WIN_CERTIFICATE is appended to the certificate table.
public struct AuthenticodeSigner: Sendable {
    public enum Key: Sendable {
        case rsa(_RSA.Signing.PrivateKey)
        case p256(P256.Signing.PrivateKey)
        case p384(P384.Signing.PrivateKey)
    }

    public let key: Key
    public let certificate: Certificate
    /// Intermediate certificates to embed after the signer's.
    public let chain: [Certificate]

    public init(key: Key, certificate: Certificate, chain: [Certificate] = []) {
        self.key = key
        self.certificate = certificate
        self.chain = chain
    }

    /// Loads an unencrypted PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) and a PEM/DER certificate.
    public init(keyPEM: String, certificate certBytes: [UInt8], chain: [Certificate] = []) throws(SecureBootError) {
        if keyPEM.contains("ENCRYPTED PRIVATE KEY") {
            throw SecureBootError(.invalidInput, "the private key is encrypted; decrypt it first (openssl pkcs8 -in KEY -out PLAIN.key)",
                                  field: "key")
        }
        let key: Key
        if let k = try? _RSA.Signing.PrivateKey(pemRepresentation: keyPEM) { key = .rsa(k) }
        else if let k = try? P256.Signing.PrivateKey(pemRepresentation: keyPEM) { key = .p256(k) }
        else if let k = try? P384.Signing.PrivateKey(pemRepresentation: keyPEM) { key = .p384(k) }
        else { throw SecureBootError(.invalidInput, "the key is not an RSA, P-256 or P-384 private key in PEM", field: "key") }
        let cert: Certificate
        do {
            if let text = String(bytes: certBytes, encoding: .utf8), text.contains("BEGIN CERTIFICATE") {
                cert = try Certificate(pemEncoded: text)
            } else {
                cert = try Certificate(derEncoded: certBytes)
            }
        } catch {
            throw SecureBootError(.invalidInput, "the certificate does not parse: \(error)", field: "certificate")
        }
        self.init(key: key, certificate: cert, chain: chain)
    }

    /// The signed image.
    public func sign(_ image: PEImage) throws(SecureBootError) -> [UInt8] {
        guard let dirEntry = image.certificateDirectoryOffset else {
            throw SecureBootError(.unsupported, "the image has no certificate-table data directory", field: "DataDirectory[SECURITY]")
        }
        var bytes = image.bytes
        var table: [UInt8]
        let digest: [UInt8]
        if image.isSigned {
            // Another signature (as shim carries two): the digest excludes the table, so it is the
            // same; the new entry is appended to the table at the end of the file.
            guard image.certificateTable.upperBound == bytes.count else {
                throw SecureBootError(.unsupported, "the certificate table is not at the end of the file", field: "DataDirectory[SECURITY]")
            }
            digest = try image.authenticodeDigest(.sha256)
            table = Array(bytes[image.certificateTable])
            bytes.removeSubrange(image.certificateTable)
        } else {
            while bytes.count % 8 != 0 { bytes.append(0) }
            digest = try PEImage(bytes).authenticodeDigest(.sha256)
            table = []
        }
        let pkcs7 = try signedData(digest: digest)
        var entry: [UInt8] = []
        let length = 8 + pkcs7.count
        entry += le32(UInt32(length)) + [0x00, 0x02, 0x02, 0x00] + pkcs7
        while entry.count % 8 != 0 { entry.append(0) }
        table += entry
        let tableStart = bytes.count
        bytes += table
        bytes.replaceSubrange(dirEntry..<dirEntry + 8, with: le32(UInt32(tableStart)) + le32(UInt32(table.count)))
        return bytes
    }

    func le32(_ v: UInt32) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)] }

    /// PKCS#7 ContentInfo(SignedData) over SpcIndirectDataContent for `digest` (SHA-256).
    func signedData(digest: [UInt8]) throws(SecureBootError) -> [UInt8] {
        let sha256AlgId = DERWriter.sequence(DERWriter.oid([2, 16, 840, 1, 101, 3, 4, 2, 1]) + DERWriter.null)
        // SpcPeImageData { flags BIT STRING {}, file [0] { [2] { [0] IMPLICIT BMPString "<<<Obsolete>>>" } } }
        let obsolete = Array("<<<Obsolete>>>".utf16.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] })
        let spcLink = DERWriter.tagged(0xA2, DERWriter.tagged(0x80, obsolete))
        let peImageData = DERWriter.sequence([0x03, 0x01, 0x00] + DERWriter.tagged(0xA0, spcLink))
        let attrTypeValue = DERWriter.sequence(DERWriter.oid([1, 3, 6, 1, 4, 1, 311, 2, 1, 15]) + peImageData)
        let digestInfo = DERWriter.sequence(sha256AlgId + DERWriter.tagged(0x04, digest))
        let spcContentOctets = attrTypeValue + digestInfo
        let spcIndirect = DERWriter.sequence(spcContentOctets)
        let spcOID = DERWriter.oid([1, 3, 6, 1, 4, 1, 311, 2, 1, 4])
        // Signed attributes (DER SET OF: sorted by encoding).
        let contentTypeAttr = DERWriter.sequence(DERWriter.oid([1, 2, 840, 113549, 1, 9, 3]) + DERWriter.set(spcOID))
        let opusAttr = DERWriter.sequence(DERWriter.oid([1, 3, 6, 1, 4, 1, 311, 2, 1, 12]) + DERWriter.set(DERWriter.sequence([])))
        let mdAttr = DERWriter.sequence(
            DERWriter.oid([1, 2, 840, 113549, 1, 9, 4]) + DERWriter.set(DERWriter.tagged(0x04, Array(SHA256.hash(data: spcContentOctets)))))
        let attrs = [contentTypeAttr, opusAttr, mdAttr].sorted { $0.lexicographicallyPrecedes($1) }.flatMap { $0 }
        let signedAttrsForSigning = DERWriter.set(attrs)
        let (signature, sigAlgId) = try signature(over: signedAttrsForSigning)
        var issuer = DER.Serializer()
        var certs: [UInt8] = []
        do {
            try issuer.serialize(certificate.issuer)
            for c in [certificate] + chain {
                var s = DER.Serializer()
                try s.serialize(c)
                certs += s.serializedBytes
            }
        } catch {
            throw SecureBootError(.signing, "cannot encode the certificate: \(error)")
        }
        // A positive INTEGER: a leading zero byte when the magnitude's top bit is set.
        var serialBytes = Array(certificate.serialNumber.bytes)
        if let first = serialBytes.first, first >= 0x80 { serialBytes.insert(0, at: 0) }
        if serialBytes.isEmpty { serialBytes = [0] }
        let serial = DERWriter.tagged(0x02, serialBytes)
        let signerInfo = DERWriter.sequence(
            DERWriter.integer(1)
                + DERWriter.sequence(issuer.serializedBytes + serial)
                + sha256AlgId
                + DERWriter.tagged(0xA0, attrs)
                + sigAlgId
                + DERWriter.tagged(0x04, signature))
        let signed = DERWriter.sequence(
            DERWriter.integer(1)
                + DERWriter.set(sha256AlgId)
                + DERWriter.sequence(spcOID + DERWriter.tagged(0xA0, spcIndirect))
                + DERWriter.tagged(0xA0, certs)
                + DERWriter.set(signerInfo))
        return DERWriter.sequence(DERWriter.oid([1, 2, 840, 113549, 1, 7, 2]) + DERWriter.tagged(0xA0, signed))
    }

    func signature(over data: [UInt8]) throws(SecureBootError) -> ([UInt8], [UInt8]) {
        do {
            switch key {
            case .rsa(let k):
                let sig = try k.signature(for: SHA256.hash(data: data), padding: .insecurePKCS1v1_5)
                return (Array(sig.rawRepresentation), DERWriter.sequence(DERWriter.oid([1, 2, 840, 113549, 1, 1, 1]) + DERWriter.null))
            case .p256(let k):
                return (Array(try k.signature(for: SHA256.hash(data: data)).derRepresentation),
                        DERWriter.sequence(DERWriter.oid([1, 2, 840, 10045, 4, 3, 2])))
            case .p384(let k):
                return (Array(try k.signature(for: SHA256.hash(data: data)).derRepresentation),
                        DERWriter.sequence(DERWriter.oid([1, 2, 840, 10045, 4, 3, 2])))
            }
        } catch {
            throw SecureBootError(.signing, "signing failed: \(error)")
        }
    }
}

/// Minimal DER writing for the structures the signer builds.
enum DERWriter {
    static func length(_ n: Int) -> [UInt8] {
        if n < 0x80 { return [UInt8(n)] }
        var bytes: [UInt8] = []
        var v = n
        while v > 0 { bytes.insert(UInt8(v & 0xFF), at: 0); v >>= 8 }
        return [0x80 | UInt8(bytes.count)] + bytes
    }
    static func tagged(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] { [tag] + length(content.count) + content }
    static func sequence(_ content: [UInt8]) -> [UInt8] { tagged(0x30, content) }
    static func set(_ content: [UInt8]) -> [UInt8] { tagged(0x31, content) }
    static let null: [UInt8] = [0x05, 0x00]
    static func integer(_ v: UInt8) -> [UInt8] { [0x02, 0x01, v] }
    static func oid(_ arcs: [UInt]) -> [UInt8] {
        var body: [UInt8] = [UInt8(arcs[0] * 40 + arcs[1])]
        for a in arcs.dropFirst(2) {
            var chunk: [UInt8] = [UInt8(a & 0x7F)]
            var v = a >> 7
            while v > 0 { chunk.insert(UInt8(v & 0x7F) | 0x80, at: 0); v >>= 7 }
            body += chunk
        }
        return tagged(0x06, body)
    }
}
