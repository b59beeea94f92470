import Crypto
import _CryptoExtras
import Foundation
import MeasuredBoot
import SwiftASN1
import TPM2
import X509

/// Why an enrolment step refused: the step and what to do.
public struct EnrolmentError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case ekCertificate = "ek-certificate", endorsementKey = "endorsement-key", attestationKey = "attestation-key", activation, issuance
        case identity
    }
    public var code: Code
    public var reason: String
    public init(_ code: Code, _ reason: String) { self.code = code; self.reason = reason }
    public var description: String { "enrolment refused [\(code.rawValue)]: \(reason)" }
}

/// The EK roots and intermediates the service trusts (the platform's vTPM CA by default; others
/// — swtpm's local CA, a cloud's vTPM CA — added by configuration).
public struct TrustAnchors: Sendable {
    public var roots: [Certificate]
    public var intermediates: [Certificate]
    public init(roots: [Certificate], intermediates: [Certificate] = []) { self.roots = roots; self.intermediates = intermediates }
}

/// TCG EK certificates carry a critical subject alternative name (the TPM manufacturer, model and
/// version) and no subject: that extension is understood here.
struct EKCertificateProfile: VerifierPolicy {
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = [.X509ExtensionID.subjectAlternativeName]
    mutating func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) async -> PolicyEvaluationResult { .meetsPolicy }
}

/// Identity: the EK certificate must chain to a trusted root and certify the EK the agent
/// presents; the AK must be a restricted signing key fixed to that TPM; MakeCredential to the
/// AK's Name under the EK proves (by ActivateCredential in the TPM) that both live in one TPM.
public enum Enrolment {
    /// Validates the EK certificate chain, that the EK public area is the TCG EK template it
    /// claims to be, and that the certificate's key *is* that key (RSA modulus and exponent, ECC
    /// curve and point, compared as values). Returns the certificate and the EK to use for
    /// MakeCredential: the TCG template with the certificate's key, nothing taken from the request
    /// but the choice of template.
    public static func validateEK(certificate der: [UInt8], ekPublic: TPMTPublic,
                                  anchors: TrustAnchors) async throws(EnrolmentError) -> (certificate: Certificate, ek: TPMTPublic) {
        let cert: Certificate
        do { cert = try Certificate(derEncoded: der) } catch {
            throw EnrolmentError(.ekCertificate, "the EK certificate does not parse: \(error)")
        }
        var verifier = Verifier(rootCertificates: CertificateStore(anchors.roots)) {
            RFC5280Policy()
            EKCertificateProfile()
        }
        let result = await verifier.validate(leaf: cert, intermediates: CertificateStore(anchors.intermediates))
        guard case .validCertificate = result else {
            throw EnrolmentError(.ekCertificate, "the EK certificate (issuer \(cert.issuer)) does not chain to a trusted EK root; add its "
                                               + "CA with --trust-ek-ca if it is legitimate")
        }
        let template = try ekTemplate(of: ekPublic)
        let certified = try certifiedEK(cert, template: template)
        // Equal as numbers (a TPM may send a coordinate without its leading zero bytes).
        func stripped(_ p: TPMTPublic) -> [[UInt8]] {
            if let r = p.rsaComponents { return [Array(r.modulus.drop { $0 == 0 }), be32(r.exponent)] }
            if let e = p.eccComponents { return [[UInt8(truncatingIfNeeded: e.curve.rawValue)], Array(e.x.drop { $0 == 0 }),
                                                 Array(e.y.drop { $0 == 0 })] }
            return []
        }
        guard !stripped(certified).isEmpty, stripped(certified) == stripped(ekPublic) else {
            throw EnrolmentError(.ekCertificate, "the EK certificate certifies another key than the EK presented (\(describe(ekPublic)) "
                                               + "vs the certificate's \(describe(certified)))")
        }
        return (cert, certified)
    }

    /// The TCG default EK template (EK Credential Profile 2.x, L-1 RSA 2048 / L-2 ECC P-256) that
    /// `ekPublic` must be, apart from its key: restricted decryption key, fixedTPM, fixedParent,
    /// sensitiveDataOrigin, adminWithPolicy, no userWithAuth, PolicySecret(TPM_RH_ENDORSEMENT),
    /// SHA-256 Name, AES-128-CFB.
    static func ekTemplate(of ekPublic: TPMTPublic) throws(EnrolmentError) -> TPMTPublic {
        let template: TPMTPublic
        switch ekPublic.parameters {
        case .rsa(let p) where p.keyBits == 2048: template = TPMTemplates.ekRSA2048
        case .ecc(let p) where p.curveID == .nistP256: template = TPMTemplates.ekECCP256
        case .rsa(let p): throw EnrolmentError(.endorsementKey, "the EK is a \(p.keyBits)-bit RSA key: EKs are RSA 2048 (TCG template "
                                                              + "L-1) or ECC P-256 (L-2) here")
        case .ecc(let p): throw EnrolmentError(.endorsementKey, "the EK is on curve \(p.curveID): EKs are RSA 2048 (TCG template L-1) or "
                                                              + "ECC P-256 (L-2) here")
        default: throw EnrolmentError(.endorsementKey, "the EK is a \(ekPublic.type) object, not an RSA or ECC key")
        }
        var expected = template
        expected.unique = ekPublic.unique
        if case .rsa(let p) = ekPublic.parameters, p.exponent != 0, p.exponent != 65537 {
            throw EnrolmentError(.endorsementKey, "the EK's RSA exponent is \(p.exponent): an EK's exponent is 65537 (TCG template L-1)")
        }
        guard (try? expected.tpmBytes()) == (try? ekPublic.tpmBytes()) else {
            var differences: [String] = []
            if ekPublic.nameAlg != template.nameAlg { differences.append("nameAlg \(ekPublic.nameAlg)") }
            if ekPublic.objectAttributes != template.objectAttributes { differences.append("attributes \(ekPublic.objectAttributes)") }
            if ekPublic.authPolicy.bytes != template.authPolicy.bytes {
                differences.append("authPolicy \(hexString(ekPublic.authPolicy.bytes))")
            }
            if differences.isEmpty { differences.append("parameters (symmetric, scheme, exponent or KDF)") }
            throw EnrolmentError(.endorsementKey, "the EK public area is not the TCG EK template it claims "
                                                + "(\(differences.joined(separator: ", "))): only a TPM's endorsement key is accepted, a "
                                                + "restricted decryption key under PolicySecret(TPM_RH_ENDORSEMENT)")
        }
        return template
    }

    /// The template with the certificate's key as its unique value, after checking the key:
    /// RSA with a 2048-bit modulus and exponent 65537, or an ECC P-256 point.
    static func certifiedEK(_ cert: Certificate, template: TPMTPublic) throws(EnrolmentError) -> TPMTPublic {
        var ek = template
        switch template.parameters {
        case .rsa:
            guard let key = _RSA.Signing.PublicKey(cert.publicKey), let primitives = try? key.getKeyPrimitives() else {
                throw EnrolmentError(.ekCertificate,
                                     "the EK certificate's key is not an RSA key of at least 2048 bits, but the EK presented is RSA 2048")
            }
            let n = Array(primitives.modulus.drop { $0 == 0 }), e = Array(primitives.publicExponent.drop { $0 == 0 })
            guard e == [0x01, 0x00, 0x01] else {
                throw EnrolmentError(.ekCertificate, "the EK certificate's RSA exponent is 0x\(hexString(e)), not 65537: not an EK")
            }
            guard n.count == 256, n[0] & 0x80 != 0 else {
                throw EnrolmentError(.ekCertificate, "the EK certificate's RSA modulus has \(n.count * 8) bits at most; an RSA EK has 2048")
            }
            ek.unique = .rsa(TPM2BPublicKeyRSA(n))
        case .ecc:
            guard let key = P256.Signing.PublicKey(cert.publicKey) else {
                throw EnrolmentError(.ekCertificate, "the EK certificate's key is not an ECC P-256 key, but the EK presented is ECC P-256")
            }
            let raw = Array(key.rawRepresentation)
            ek.unique = .ecc(TPMSECCPoint(x: Array(raw.prefix(32)), y: Array(raw.suffix(32))))
        default:
            throw EnrolmentError(.endorsementKey, "EKs are RSA or ECC keys")
        }
        return ek
    }

    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8),
                                                UInt8(truncatingIfNeeded: v)] }

    static func describe(_ p: TPMTPublic) -> String {
        if let rsa = p.rsaComponents { return "RSA modulus \(hexString(Array(rsa.modulus.prefix(8))))…, exponent \(rsa.exponent)" }
        if let ecc = p.eccComponents { return "ECC \(ecc.curve) point x \(hexString(Array(ecc.x.prefix(8))))…" }
        return "\(p.type)"
    }

    /// The AK must be a restricted signing key, fixed to its TPM, created inside it.
    public static func checkAK(_ ak: TPMTPublic) throws(EnrolmentError) {
        let a = ak.objectAttributes
        guard a.contains(.restricted), a.contains(.signEncrypt), !a.contains(.decrypt) else {
            throw EnrolmentError(.attestationKey, "the AK is not a restricted signing key (attributes \(a))")
        }
        guard a.contains(.fixedTPM), a.contains(.fixedParent), a.contains(.sensitiveDataOrigin) else {
            throw EnrolmentError(.attestationKey,
                                 "the AK is not fixed to its TPM and generated in it (fixedTPM, fixedParent, sensitiveDataOrigin)")
        }
    }

    /// MakeCredential (host side) to the AK's Name under the EK: the secret comes back only from
    /// the TPM that holds both.
    public static func challenge(
        ekPublic: TPMTPublic, akPublic: TPMTPublic
    ) throws(EnrolmentError) -> (secret: [UInt8], blob: TPM2BIDObject, encryptedSecret: TPM2BEncryptedSecret) {
        try checkAK(akPublic)
        var secret = [UInt8](repeating: 0, count: 32)
        for i in secret.indices { secret[i] = UInt8.random(in: 0...255) }
        do {
            let (blob, enc) = try TPMCredential.make(credential: secret, objectName: try akPublic.name(), ekPublic: ekPublic)
            return (secret, blob, enc)
        } catch {
            throw EnrolmentError(.activation, "MakeCredential failed: \(error.reason)")
        }
    }

    /// The agent's answer must be the secret.
    public static func verifyActivation(_ answer: [UInt8], secret: [UInt8]) throws(EnrolmentError) {
        guard constantTimeEqual(answer, secret) else {
            throw EnrolmentError(.activation, "credential activation returned another secret: the AK is not in the TPM of this EK")
        }
    }
}
