/// A quote whose signature, nonce and PCR digest have been checked. It can only be made by
/// ``TPMQuoteVerifier/verify(_:akPublic:nonce:pcrs:)``.
public struct TPMVerifiedQuote: Sendable, Hashable {
    public let attest: TPMSAttest
    public let quoteInfo: TPMSQuoteInfo
    /// The PCR values the quote vouches for, bank by bank.
    public let pcrs: [TPMPCRBank]
    fileprivate init(attest: TPMSAttest, quoteInfo: TPMSQuoteInfo, pcrs: [TPMPCRBank]) {
        self.attest = attest; self.quoteInfo = quoteInfo; self.pcrs = pcrs
    }
}

/// Offline quote verification (Part 3, 18.4; Part 1, 24 for the PCR digest).
public enum TPMQuoteVerifier {
    /// Verifies over the original `quote.attestBytes`: the signature with `akPublic`, the
    /// magic and type, that extraData equals `nonce`, and that the PCR digest equals the hash
    /// (with the signature's hash) of the given PCR values in selection order.
    public static func verify(_ quote: TPMSignedAttest, akPublic: TPMTPublic, nonce: [UInt8],
                              pcrs: [TPMPCRBank]) throws(TPMError) -> TPMVerifiedQuote {
        try TPMSignatureVerifier.verify(quote.signature, message: quote.attestBytes, key: akPublic)
        // Parse again from the signed bytes: never trust a parse that came with them.
        let attest: TPMSAttest
        do { attest = try TPMSAttest(tpmBytes: quote.attestBytes) } catch {
            throw TPMError(.verification, wire: error, reason: "the signed TPMS_ATTEST does not parse")
        }
        guard case .quote(let info) = attest.attested else {
            throw TPMError(.verification, reason: "the signed structure is a \(attest.type), not a quote")
        }
        guard constantTimeEqual(attest.extraData.bytes, nonce) else {
            throw TPMError(.verification,
                           reason: "the quote's extraData (\(attest.extraData.bytes.hexString)) is not the nonce (\(nonce.hexString))")
        }
        var concatenated: [UInt8] = []
        var vouched: [TPMPCRBank] = []
        for sel in info.pcrSelect.pcrSelections {
            guard let bank = pcrs.first(where: { $0.hashAlg == sel.hash }) else {
                throw TPMError(.verification, reason: "the quote covers bank \(sel.hash) but no values for it were given")
            }
            var values: [Int: [UInt8]] = [:]
            for p in sel.pcrs {
                guard let v = bank.values[p] else {
                    throw TPMError(.verification, reason: "the quote covers \(sel.hash) PCR \(p) but no value for it was given")
                }
                concatenated += v
                values[p] = v
            }
            vouched.append(TPMPCRBank(hashAlg: sel.hash, values: values))
        }
        let digest = try TPMCrypto.hash(quote.signature.hashAlg, concatenated)
        guard constantTimeEqual(digest, info.pcrDigest.bytes) else {
            throw TPMError(.verification,
                           reason: "the PCR values given do not hash to the quoted PCR digest \(info.pcrDigest.bytes.hexString)")
        }
        return TPMVerifiedQuote(attest: attest, quoteInfo: info, pcrs: vouched)
    }
}
