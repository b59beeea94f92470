import Crypto
import MeasuredBoot
import SwiftASN1
import TPM2
import X509

/// A time-based authenticated variable write (EFI_VARIABLE_AUTHENTICATION_2 followed by the new
/// data), as in dbx update files: a PKCS#7 signature by a KEK (for db/dbx) or the PK (for KEK/PK)
/// over VariableName ‖ VendorGuid ‖ Attributes ‖ TimeStamp ‖ Data (UEFI 2.10, 8.2.2).
public struct AuthenticatedVariableUpdate: Sendable {
    public var timestamp: [UInt8]
    public var signedData: [UInt8]
    public var certificates: [Certificate]
    public var signers: [AuthenticodeSignature.Signer]
    /// The new variable data (EFI signature lists for PK/KEK/db/dbx).
    public var payload: [UInt8]

    public static let pkcs7CertType = EFIGUID("4aafd29d-68df-49ee-8aa9-347d375665a7")!
    /// APPEND_WRITE: dbx updates add to the variable.
    public static let appendWrite: UInt32 = 0x40

    public init(_ bytes: [UInt8]) throws(SecureBootError) {
        let r = LE(bytes: bytes, structure: "EFI_VARIABLE_AUTHENTICATION_2")
        try r.need(0, 16 + 24, "header")
        timestamp = Array(bytes[0..<16])
        let length = Int(try r.u32(16, "AuthInfo.Hdr.dwLength"))
        guard length >= 24, length <= bytes.count - 16 else {
            throw SecureBootError(.invalidSignature, "dwLength \(length) does not fit the \(bytes.count - 16) bytes after the timestamp",
                                  offset: 16, field: "AuthInfo.Hdr.dwLength")
        }
        guard try r.u16(20, "wRevision") == 0x0200, try r.u16(22, "wCertificateType") == 0x0EF1 else {
            throw SecureBootError(.invalidSignature, "not a WIN_CERTIFICATE_UEFI_GUID (revision 0x0200, type 0x0EF1)", offset: 20,
                                  field: "AuthInfo.Hdr")
        }
        guard EFIGUID(bytes: bytes[24..<40]) == Self.pkcs7CertType else {
            throw SecureBootError(.invalidSignature, "CertType is not EFI_CERT_TYPE_PKCS7_GUID", offset: 24, field: "AuthInfo.CertType")
        }
        signedData = Array(bytes[40..<16 + length])
        payload = Array(bytes[(16 + length)...])
        do {
            let root = try DER.parse(try AuthenticodeSignature.derPrefix(signedData))
            // CertData is SignedData, or (some signers) a ContentInfo wrapping it.
            var sdNode = root
            let top = try AuthenticodeSignature.children(root, "CertData")
            if top.count == 2, (try? ASN1ObjectIdentifier(derEncoded: top[0])) == AuthenticodeSignature.signedDataOID,
               let inner = try AuthenticodeSignature.children(top[1], "ContentInfo.content").first {
                sdNode = inner
            }
            let sd = try AuthenticodeSignature.children(sdNode, "SignedData")
            var certs: [Certificate] = []
            var signerSet: ASN1Node?
            for node in sd.dropFirst(3) {
                if node.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
                    for c in try AuthenticodeSignature.children(node, "certificates") where c.identifier == .sequence {
                        certs.append(try Certificate(derEncoded: c))
                    }
                } else if node.identifier == .set {
                    signerSet = node
                }
            }
            guard let signerSet else { throw SecureBootError(.invalidSignature, "no signerInfos", field: "SignedData.signerInfos") }
            certificates = certs
            signers = try AuthenticodeSignature.children(signerSet, "signerInfos").map { try AuthenticodeSignature.parseSigner($0) }
        } catch let e as SecureBootError {
            throw e
        } catch {
            throw SecureBootError(.invalidSignature, "the PKCS#7 data does not parse: \(error)", offset: 40, field: "AuthInfo.CertData")
        }
    }

    /// The bytes the signature covers for a write of `name`/`guid` with `attributes`.
    public func signedBytes(name: String, guid: EFIGUID, attributes: UInt32) -> [UInt8] {
        var out: [UInt8] = []
        for u in name.utf16 { out += [UInt8(u & 0xFF), UInt8(u >> 8)] }
        out += guid.bytes
        out += [UInt8(attributes & 0xFF), UInt8(attributes >> 8 & 0xFF), UInt8(attributes >> 16 & 0xFF), UInt8(attributes >> 24)]
        return out + timestamp + payload
    }

    /// Verifies the write against the certificates allowed to make it (KEK for db/dbx, PK for
    /// KEK and PK). Tries the attributes without and with APPEND_WRITE; returns the signer's
    /// anchor in `authorities` and the attributes that verified.
    public func verify(name: String, guid: EFIGUID, authorities: SignatureDatabase) -> Result<(Certificate, UInt32), SecureBootError> {
        var last = SecureBootError(.invalidSignature, "no signer")
        for attributes in [VariableStore.authenticatedAttributes, VariableStore.authenticatedAttributes | Self.appendWrite] {
            let data = signedBytes(name: name, guid: guid, attributes: attributes)
            for s in signers {
                guard let cert = certificates.first(where: { $0.issuer == s.issuer && $0.serialNumber == s.serialNumber })
                        ?? authorities.certificates.map(\.certificate).first(where: {
                            $0.issuer == s.issuer && $0.serialNumber == s.serialNumber
                        })
                else {
                    last = SecureBootError(.invalidSignature, "the signer's certificate is neither in the update nor among the authorities",
                                           field: "SignerInfo.sid")
                    continue
                }
                let signed: [UInt8]
                if let attrs = s.signedAttributes {
                    guard let md = s.messageDigest, hash(s.digestAlgorithm, data) == md else {
                        last = SecureBootError(.invalidSignature, "messageDigest is not the digest of the signed variable data",
                                               field: "SignerInfo.signedAttrs")
                        continue
                    }
                    signed = attrs
                } else {
                    signed = data
                }
                guard let alg = AuthenticodeSignature.signatureAlgorithm(key: cert.publicKey, digest: s.digestAlgorithm,
                                                                         oid: s.signatureAlgorithm),
                      cert.publicKey.isValidSignature(s.signature, for: signed, signatureAlgorithm: alg) else {
                    last = SecureBootError(.invalidSignature, "the signature over \(name) does not verify with \(cert.subject)",
                                           field: "SignerInfo.signature")
                    continue
                }
                let chain = ImageVerifier.buildChain(from: cert, embedded: certificates, anchors: authorities.certificates)
                guard let anchor = chain.anchor else {
                    last = SecureBootError(.invalidSignature, "the signer \(cert.subject) does not chain to an authority of \(name)",
                                           field: "SignerInfo")
                    continue
                }
                return .success((anchor.certificate, attributes))
            }
        }
        return .failure(last)
    }
}

extension AuthenticodeSignature {
    static func parseSigner(_ si: ASN1Node) throws -> Signer {
        let f = try children(si, "SignerInfo")
        guard f.count >= 5 else { throw SecureBootError(.invalidSignature, "SignerInfo has \(f.count) fields", field: "SignerInfo") }
        let sid = try children(f[1], "SignerInfo.sid")
        guard sid.count == 2 else {
            throw SecureBootError(.unsupported, "signer identified by subject key identifier", field: "SignerInfo.sid")
        }
        let issuer = try DistinguishedName(derEncoded: sid[0])
        let serial = Certificate.SerialNumber(bytes: try primitive(sid[1], "serialNumber"))
        let dAlg = try digestAlgorithm(f[2], "SignerInfo.digestAlgorithm")
        var i = 3
        var signedAttrs: [UInt8]?
        var messageDigest: [UInt8]?
        if f[i].identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
            var encoded = Array(f[i].encodedBytes)
            encoded[0] = 0x31
            signedAttrs = encoded
            for attr in try children(f[i], "signedAttrs") {
                let a = try children(attr, "Attribute")
                if a.count == 2, try ASN1ObjectIdentifier(derEncoded: a[0]) == messageDigestOID, let v = try children(a[1], "values").first
                {
                    messageDigest = Array(try ASN1OctetString(derEncoded: v).bytes)
                }
            }
            i += 1
        }
        guard f.count >= i + 2 else { throw SecureBootError(.invalidSignature, "SignerInfo ends early", field: "SignerInfo") }
        let sigAlg = try ASN1ObjectIdentifier(derEncoded: try children(f[i], "signatureAlgorithm").first ?? f[i])
        let signature = Array(try ASN1OctetString(derEncoded: f[i + 1]).bytes)
        return Signer(issuer: issuer, serialNumber: serial, digestAlgorithm: dAlg, signedAttributes: signedAttrs,
                      messageDigest: messageDigest, signatureAlgorithm: sigAlg, signature: signature)
    }
}

extension SignatureDatabase {
    /// An APPEND_WRITE as the firmware does it: entries already present are not added again.
    public mutating func append(_ other: SignatureDatabase) {
        for list in other.lists {
            let fresh = list.entries.filter { e in !lists.contains { $0.type == e.type && $0.entries.contains { $0.data == e.data } } }
            guard !fresh.isEmpty else { continue }
            var l = list
            l.entries = fresh
            lists.append(l)
        }
    }
}

extension VariableStore {
    /// Applies a signed update of PK, KEK, db or dbx as the firmware would: verified against the
    /// KEK (db, dbx) or the PK (KEK, PK), then written (appended when signed for APPEND_WRITE).
    /// Returns the certificate that authorised it.
    @discardableResult
    public mutating func apply(_ update: AuthenticatedVariableUpdate, to name: String) throws(SecureBootError) -> Certificate {
        let guid: EFIGUID
        let authorities: SignatureDatabase
        switch name {
        case "db", "dbx": guid = .imageSecurityDatabase; authorities = kek
        case "KEK", "PK": guid = .globalVariable; authorities = pk
        default: throw SecureBootError(.invalidInput, "only PK, KEK, db and dbx are updated this way, not \(name)", field: "name")
        }
        let verified: (Certificate, UInt32)
        switch update.verify(name: name, guid: guid, authorities: authorities) {
        case .failure(let e): throw e
        case .success(let v): verified = v
        }
        let incoming = try SignatureDatabase(esl: update.payload)
        var value = incoming
        if verified.1 & AuthenticatedVariableUpdate.appendWrite != 0 {
            value = (try? variable(name, guid).map { try SignatureDatabase(esl: $0.data) }) ?? nil ?? SignatureDatabase()
            value.append(incoming)
        }
        try set(name, guid, attributes: VariableStore.authenticatedAttributes, data: value.encoded)
        return verified.0
    }
}
