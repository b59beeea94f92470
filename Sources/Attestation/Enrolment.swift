import Crypto
import _CryptoExtras
import Foundation
import SwiftASN1
import TPM2
import X509

/// Why an enrolment step refused: the step and what to do.
public struct EnrolmentError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable { case ekCertificate = "ek-certificate", attestationKey = "attestation-key", activation, issuance }
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
    /// Validates the EK certificate chain and that it certifies `ekPublic`.
    public static func validateEK(certificate der: [UInt8], ekPublic: TPMTPublic, anchors: TrustAnchors) async throws(EnrolmentError) -> Certificate {
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
            throw EnrolmentError(.ekCertificate, "the EK certificate (issuer \(cert.issuer)) does not chain to a trusted EK root; add its CA with --trust-ek-ca if it is legitimate")
        }
        // The certificate's key is the EK's.
        let matches: Bool
        switch ekPublic.unique {
        case .rsa(let n):
            matches = _RSA.Signing.PublicKey(cert.publicKey).map { $0.pkcs1DERRepresentation.firstRange(of: Data(n.bytes)) != nil } ?? false
        case .ecc(let point):
            let raw = P256.Signing.PublicKey(cert.publicKey)?.rawRepresentation
            matches = raw.map { Array($0) == point.x.bytes + point.y.bytes } ?? false
        default:
            matches = false
        }
        guard matches else { throw EnrolmentError(.ekCertificate, "the EK certificate certifies another key than the EK presented") }
        return cert
    }

    /// The AK must be a restricted signing key, fixed to its TPM, created inside it.
    public static func checkAK(_ ak: TPMTPublic) throws(EnrolmentError) {
        let a = ak.objectAttributes
        guard a.contains(.restricted), a.contains(.signEncrypt), !a.contains(.decrypt) else {
            throw EnrolmentError(.attestationKey, "the AK is not a restricted signing key (attributes \(a))")
        }
        guard a.contains(.fixedTPM), a.contains(.fixedParent), a.contains(.sensitiveDataOrigin) else {
            throw EnrolmentError(.attestationKey, "the AK is not fixed to its TPM and generated in it (fixedTPM, fixedParent, sensitiveDataOrigin)")
        }
    }

    /// MakeCredential (host side) to the AK's Name under the EK: the secret comes back only from
    /// the TPM that holds both.
    public static func challenge(ekPublic: TPMTPublic, akPublic: TPMTPublic) throws(EnrolmentError) -> (secret: [UInt8], blob: TPM2BIDObject, encryptedSecret: TPM2BEncryptedSecret) {
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
