/// Offline policy digest computation (TPM 2.0 Library Part 3, clause 23, each command's
/// "policyDigest update"): the value an object's authPolicy must hold for a policy session
/// that runs the same commands to satisfy it. Starts at all zeros (Part 1, 19.7.2).
public struct TPMPolicyDigest: Sendable, Hashable {
    public let hashAlg: TPMAlgID
    public private(set) var digest: [UInt8]

    public init(hashAlg: TPMAlgID = .sha256) throws(TPMError) {
        self.hashAlg = hashAlg
        self.digest = [UInt8](repeating: 0, count: try TPMCrypto.digestSize(hashAlg))
    }

    private mutating func extend(_ parts: [UInt8]...) throws(TPMError) {
        digest = try TPMCrypto.hash(hashAlg, parts: [digest] + parts)
    }

    /// TPM2_PolicyPCR: H(old ‖ TPM_CC_PolicyPCR ‖ pcrs ‖ pcrDigest), pcrDigest = H(selected PCR values in selection order).
    public mutating func policyPCR(_ selection: TPMLPCRSelection, values: [[UInt8]]) throws(TPMError) {
        try policyPCR(selection, pcrDigest: try TPMCrypto.hash(hashAlg, parts: values))
    }

    public mutating func policyPCR(_ selection: TPMLPCRSelection, pcrDigest: [UInt8]) throws(TPMError) {
        let sel: [UInt8]
        do { sel = try selection.tpmBytes() } catch { throw TPMError(.invalidArgument, wire: error, reason: "PCR selection") }
        try extend(be32(TPMCC.policyPCR.rawValue), sel, pcrDigest)
    }

    /// TPM2_PolicySecret: H(H(old ‖ TPM_CC_PolicySecret ‖ authObject.Name) ‖ policyRef).
    public mutating func policySecret(authObjectName: [UInt8], policyRef: [UInt8] = []) throws(TPMError) {
        try extend(be32(TPMCC.policySecret.rawValue), authObjectName)
        try extend(policyRef)
    }

    /// TPM2_PolicyAuthValue: H(old ‖ TPM_CC_PolicyAuthValue).
    public mutating func policyAuthValue() throws(TPMError) {
        try extend(be32(TPMCC.policyAuthValue.rawValue))
    }

    /// TPM2_PolicyPassword extends with TPM_CC_PolicyAuthValue, as PolicyAuthValue does
    /// (Part 3, 23.18): the two are interchangeable in a policy.
    public mutating func policyPassword() throws(TPMError) {
        try extend(be32(TPMCC.policyAuthValue.rawValue))
    }

    /// TPM2_PolicyCommandCode: H(old ‖ TPM_CC_PolicyCommandCode ‖ code).
    public mutating func policyCommandCode(_ code: TPMCC) throws(TPMError) {
        try extend(be32(TPMCC.policyCommandCode.rawValue), be32(code.rawValue))
    }

    /// TPM2_PolicyOR: reset to zeros, then H(0…0 ‖ TPM_CC_PolicyOR ‖ digests).
    public mutating func policyOR(_ branches: [[UInt8]]) throws(TPMError) {
        guard (2...8).contains(branches.count) else {
            throw TPMError(.invalidArgument, reason: "PolicyOR takes 2 to 8 branches, got \(branches.count)")
        }
        digest = [UInt8](repeating: 0, count: digest.count)
        try extend([be32(TPMCC.policyOR.rawValue)] + branches)
    }

    private mutating func extend(_ parts: [[UInt8]]) throws(TPMError) {
        digest = try TPMCrypto.hash(hashAlg, parts: [digest] + parts)
    }
}
