import Crypto
import Foundation
import TPM2

/// Entry points for fuzzing what the attestation service reads from the network: evidence (JSON
/// with hex/base64 TPM structures and an event log) and policy documents. The libFuzzer target
/// in `Fuzz/` calls these and the test suite replays the corpus. Each returns the invariant
/// violations found.
public enum AttestationFuzzing {
    /// A fixed attestation key (ECC P-256, restricted signing) that the evidence is checked against.
    static let akPublic: TPMTPublic = {
        let key = try! P256.Signing.PrivateKey(rawRepresentation: [UInt8](repeating: 0x11, count: 32))
        let raw = Array(key.publicKey.rawRepresentation)
        var t = TPMTemplates.akECCP256
        t.unique = .ecc(TPMSECCPoint(x: Array(raw.prefix(32)), y: Array(raw.suffix(32))))
        return t
    }()

    /// Evidence: decoding never traps; what decodes is verified to a result whose every check
    /// has a reason; a result never passes (nothing in the corpus is signed by the fixed AK).
    /// Policy documents: what decodes re-encodes and decodes to the same policy.
    public static func evidence(_ bytes: [UInt8]) -> [String] {
        var violations: [String] = []
        if let e = try? JSONDecoder().decode(Evidence.self, from: Data(bytes)) {
            if let d = try? DecodedEvidence(e) {
                let r = AttestationVerifier.verify(d, akPublic: akPublic, policy: .default)
                if r.checks.isEmpty { violations.append("verification produced no checks") }
                if r.checks.contains(where: { $0.reason.isEmpty }) { violations.append("a check has no reason") }
                if r.passed { violations.append("evidence passed without a valid signature by the fixed AK") }
            }
        }
        if let p = try? JSONDecoder().decode(AttestationPolicy.self, from: Data(bytes)) {
            do {
                let again = try JSONDecoder().decode(AttestationPolicy.self, from: try JSONEncoder().encode(p))
                if again != p { violations.append("a policy does not survive re-encoding") }
            } catch {
                violations.append("a decoded policy does not re-encode and decode: \(error)")
            }
        }
        return violations
    }
}
