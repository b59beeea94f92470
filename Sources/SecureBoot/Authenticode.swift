import Crypto
import _CryptoExtras
import SwiftASN1
import TPM2
import X509

/// An Authenticode signature: PKCS#7 SignedData whose content is SpcIndirectDataContent (the
/// image's Authenticode digest), its embedded certificates and signers, and nested signatures
/// (msSpcNestedSignature), as found in a PE certificate table.
public struct AuthenticodeSignature: Sendable {
    public struct Signer: Sendable {
        public var issuer: DistinguishedName
        public var serialNumber: Certificate.SerialNumber
        public var digestAlgorithm: TPMAlgID
        /// DER of the signed attributes as signed (SET OF, tag 0x31); nil when absent.
        public var signedAttributes: [UInt8]?
        public var messageDigest: [UInt8]?
        public var signatureAlgorithm: ASN1ObjectIdentifier
        public var signature: [UInt8]
    }

    /// The algorithm and value of the image digest the signature covers.
    public var digestAlgorithm: TPMAlgID
    public var imageDigest: [UInt8]
    public var certificates: [Certificate]
    public var signers: [Signer]
    public var nested: [AuthenticodeSignature]
    /// SpcIndirectDataContent without its outer tag and length (what messageDigest covers).
    var contentOctets: [UInt8]
    /// The PKCS#7 DER as found.
    public var der: [UInt8]

    static let signedDataOID: ASN1ObjectIdentifier = [1, 2, 840, 113549, 1, 7, 2]
    static let spcIndirectDataOID: ASN1ObjectIdentifier = [1, 3, 6, 1, 4, 1, 311, 2, 1, 4]
    static let messageDigestOID: ASN1ObjectIdentifier = [1, 2, 840, 113549, 1, 9, 4]
    static let nestedSignatureOID: ASN1ObjectIdentifier = [1, 3, 6, 1, 4, 1, 311, 2, 4, 1]

    /// Parses a PKCS#7 ContentInfo holding Authenticode SignedData.
    public init(pkcs7 der: [UInt8], depth: Int = 0) throws(SecureBootError) {
        // The certificate table pads entries to 8 bytes: take the DER value's own length.
        let exact = try Self.derPrefix(der)
        self.der = exact
        do {
            let root = try DER.parse(exact)
            var parsed: (TPMAlgID, [UInt8], [Certificate], [Signer], [AuthenticodeSignature], [UInt8])?
            parsed = try Self.parseContentInfo(root, depth: depth)
            guard let p = parsed else { throw SecureBootError(.invalidSignature, "empty PKCS#7") }
            (digestAlgorithm, imageDigest, certificates, signers, nested, contentOctets) = p
        } catch let e as SecureBootError {
            throw e
        } catch {
            throw SecureBootError(.invalidSignature, "the PKCS#7 signature does not parse: \(error)", field: "WIN_CERTIFICATE.bCertificate")
        }
    }

    /// The bytes of the first DER value (tag, length, content), without trailing padding.
    static func derPrefix(_ b: [UInt8]) throws(SecureBootError) -> [UInt8] {
        guard b.count >= 2, b[0] == 0x30 else { throw SecureBootError(.invalidSignature, "the PKCS#7 signature does not start with a "
                                                                                       + "SEQUENCE", offset: 0, field: "ContentInfo") }
        var length = Int(b[1])
        var header = 2
        if length & 0x80 != 0 {
            let n = length & 0x7F
            guard n >= 1, n <= 4, b.count >= 2 + n else {
                throw SecureBootError(.invalidSignature, "bad DER length", offset: 1, field: "ContentInfo")
            }
            length = 0
            for i in 0..<n { length = length << 8 | Int(b[2 + i]) }
            header += n
        }
        guard length <= b.count - header else {
            throw SecureBootError(.truncated, "the PKCS#7 value claims \(length) bytes but \(b.count - header) remain", offset: 1,
                                  field: "ContentInfo")
        }
        return Array(b[0..<header + length])
    }

    static func children(_ node: ASN1Node, _ what: String) throws -> [ASN1Node] {
        guard case .constructed(let c) = node.content else {
            throw SecureBootError(.invalidSignature, "\(what) is not a constructed value", field: what)
        }
        return Array(c)
    }

    static func primitive(_ node: ASN1Node, _ what: String) throws -> ArraySlice<UInt8> {
        guard case .primitive(let p) = node.content else {
            throw SecureBootError(.invalidSignature, "\(what) is not a primitive value", field: what)
        }
        return p
    }

    static func digestAlgorithm(_ node: ASN1Node, _ what: String) throws -> TPMAlgID {
        let oid = try ASN1ObjectIdentifier(derEncoded: children(node, what).first ?? node)
        switch oid {
        case [1, 3, 14, 3, 2, 26]: return .sha1
        case [2, 16, 840, 1, 101, 3, 4, 2, 1]: return .sha256
        case [2, 16, 840, 1, 101, 3, 4, 2, 2]: return .sha384
        case [2, 16, 840, 1, 101, 3, 4, 2, 3]: return .sha512
        default: throw SecureBootError(.unsupported, "digest algorithm \(oid) is not SHA-1/256/384/512", field: what)
        }
    }

    static func parseContentInfo(_ root: ASN1Node, depth: Int) throws -> (TPMAlgID, [UInt8], [Certificate], [Signer],
                                                                          [AuthenticodeSignature], [UInt8]) {
        guard depth < 4 else { throw SecureBootError(.invalidSignature, "nested signatures deeper than 4", field: "msSpcNestedSignature") }
        let ci = try children(root, "ContentInfo")
        guard ci.count == 2, try ASN1ObjectIdentifier(derEncoded: ci[0]) == signedDataOID else {
            throw SecureBootError(.invalidSignature, "ContentInfo is not signedData", field: "ContentInfo.contentType")
        }
        guard let sdNode = try children(ci[1], "ContentInfo.content").first else {
            throw SecureBootError(.invalidSignature, "no SignedData", field: "ContentInfo.content")
        }
        let sd = try children(sdNode, "SignedData")
        guard sd.count >= 4 else { throw SecureBootError(.invalidSignature, "SignedData has \(sd.count) fields", field: "SignedData") }
        // encapContentInfo: SpcIndirectDataContent.
        let eci = try children(sd[2], "SignedData.encapContentInfo")
        guard eci.count == 2, try ASN1ObjectIdentifier(derEncoded: eci[0]) == spcIndirectDataOID else {
            throw SecureBootError(.invalidSignature, "the signed content is not SpcIndirectDataContent",
                                  field: "SignedData.encapContentInfo.eContentType")
        }
        guard let spc = try children(eci[1], "eContent").first else {
            throw SecureBootError(.invalidSignature, "no SpcIndirectDataContent", field: "eContent")
        }
        let spcFields = try children(spc, "SpcIndirectDataContent")
        guard spcFields.count == 2 else {
            throw SecureBootError(
                .invalidSignature, "SpcIndirectDataContent has \(spcFields.count) fields", field: "SpcIndirectDataContent")
        }
        let digestInfo = try children(spcFields[1], "SpcIndirectDataContent.messageDigest")
        guard digestInfo.count == 2 else {
            throw SecureBootError(.invalidSignature, "DigestInfo has \(digestInfo.count) fields", field: "DigestInfo")
        }
        let alg = try digestAlgorithm(digestInfo[0], "DigestInfo.digestAlgorithm")
        let digest = Array(try ASN1OctetString(derEncoded: digestInfo[1]).bytes)
        var contentOctets: [UInt8] = []
        for f in spcFields { contentOctets += f.encodedBytes }
        // certificates [0] IMPLICIT, crls [1] IMPLICIT, signerInfos SET.
        var certs: [Certificate] = []
        var signerSet: ASN1Node?
        for node in sd.dropFirst(3) {
            if node.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
                for c in try children(node, "SignedData.certificates") where c.identifier == .sequence {
                    certs.append(try Certificate(derEncoded: c))
                }
            } else if node.identifier == .set {
                signerSet = node
            }
        }
        guard let signerSet else { throw SecureBootError(.invalidSignature, "no signerInfos", field: "SignedData.signerInfos") }
        var signers: [Signer] = []
        var nested: [AuthenticodeSignature] = []
        for si in try children(signerSet, "signerInfos") {
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
                encoded[0] = 0x31  // signed as SET OF
                signedAttrs = encoded
                for attr in try children(f[i], "signedAttrs") {
                    let a = try children(attr, "Attribute")
                    if a.count == 2, try ASN1ObjectIdentifier(derEncoded: a[0]) == messageDigestOID,
                        let v = try children(a[1], "values").first
                    {
                        messageDigest = Array(try ASN1OctetString(derEncoded: v).bytes)
                    }
                }
                i += 1
            }
            guard f.count >= i + 2 else { throw SecureBootError(.invalidSignature, "SignerInfo ends early", field: "SignerInfo") }
            let sigAlg = try ASN1ObjectIdentifier(derEncoded: try children(f[i], "signatureAlgorithm").first ?? f[i])
            let signature = Array(try ASN1OctetString(derEncoded: f[i + 1]).bytes)
            if f.count > i + 2, f[i + 2].identifier == ASN1Identifier(tagWithNumber: 1, tagClass: .contextSpecific) {
                for attr in try children(f[i + 2], "unsignedAttrs") {
                    let a = try children(attr, "Attribute")
                    guard a.count == 2, try ASN1ObjectIdentifier(derEncoded: a[0]) == nestedSignatureOID else { continue }
                    for v in try children(a[1], "values") {
                        nested.append(try AuthenticodeSignature(pkcs7: Array(v.encodedBytes), depth: depth + 1))
                    }
                }
            }
            signers.append(Signer(issuer: issuer, serialNumber: serial, digestAlgorithm: dAlg, signedAttributes: signedAttrs,
                                  messageDigest: messageDigest, signatureAlgorithm: sigAlg, signature: signature))
        }
        guard !signers.isEmpty else { throw SecureBootError(.invalidSignature, "no signer", field: "SignedData.signerInfos") }
        return (alg, digest, certs, signers, nested, contentOctets)
    }

    /// This signature and its nested ones.
    public var all: [AuthenticodeSignature] { [self] + nested.flatMap(\.all) }

    /// Checks a signer cryptographically: the content's message digest and the signature over
    /// the signed attributes with the signer certificate's key. Returns the signer certificate.
    public func verifySigner(_ s: Signer) -> Result<Certificate, SecureBootError> {
        guard let cert = certificates.first(where: { $0.issuer == s.issuer && $0.serialNumber == s.serialNumber }) else {
            return .failure(SecureBootError(.invalidSignature, "the signer's certificate (\(s.issuer), serial \(s.serialNumber)) is not "
                                                             + "in the signature", field: "SignerInfo.sid"))
        }
        let signedBytes: [UInt8]
        if let attrs = s.signedAttributes {
            guard let md = s.messageDigest, hash(s.digestAlgorithm, contentOctets) == md else {
                return .failure(SecureBootError(.invalidSignature, "the signed attributes' messageDigest is not the digest of the "
                                                                 + "SpcIndirectDataContent", field: "SignerInfo.signedAttrs.messageDigest"))
            }
            signedBytes = attrs
        } else {
            signedBytes = contentOctets
        }
        guard let algorithm = Self.signatureAlgorithm(key: cert.publicKey, digest: s.digestAlgorithm, oid: s.signatureAlgorithm) else {
            return .failure(SecureBootError(.unsupported, "signature algorithm \(s.signatureAlgorithm) with \(s.digestAlgorithm) is not "
                                                        + "supported", field: "SignerInfo.signatureAlgorithm"))
        }
        guard cert.publicKey.isValidSignature(s.signature, for: signedBytes, signatureAlgorithm: algorithm) else {
            return .failure(SecureBootError(.invalidSignature, "the signature does not verify with the signer's key (\(cert.subject))",
                                            field: "SignerInfo.signature"))
        }
        return .success(cert)
    }

    static func signatureAlgorithm(key: Certificate.PublicKey, digest: TPMAlgID,
                                   oid: ASN1ObjectIdentifier) -> Certificate.SignatureAlgorithm? {
        let isRSA = _RSA.Signing.PublicKey(key) != nil
        switch (isRSA, digest) {
        case (true, .sha1): return .sha1WithRSAEncryption
        case (true, .sha256): return .sha256WithRSAEncryption
        case (true, .sha384): return .sha384WithRSAEncryption
        case (true, .sha512): return .sha512WithRSAEncryption
        case (false, .sha256): return .ecdsaWithSHA256
        case (false, .sha384): return .ecdsaWithSHA384
        case (false, .sha512): return .ecdsaWithSHA512
        default: return nil
        }
    }
}

func hash(_ alg: TPMAlgID, _ data: [UInt8]) -> [UInt8]? {
    switch alg {
    case .sha1: return Array(Insecure.SHA1.hash(data: data))
    case .sha256: return Array(SHA256.hash(data: data))
    case .sha384: return Array(SHA384.hash(data: data))
    case .sha512: return Array(SHA512.hash(data: data))
    default: return nil
    }
}

extension PEImage {
    /// Every Authenticode signature of the image (each WIN_CERTIFICATE and nested signatures).
    public func signatures() throws(SecureBootError) -> [AuthenticodeSignature] {
        var out: [AuthenticodeSignature] = []
        for c in try certificates() {
            guard c.isPKCS7 else { continue }
            do {
                out += try AuthenticodeSignature(pkcs7: c.data).all
            } catch {
                var e = error
                e.offset = e.offset ?? c.offset
                throw e
            }
        }
        return out
    }
}
