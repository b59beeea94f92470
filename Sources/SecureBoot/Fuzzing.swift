import MeasuredBoot

/// Entry points for fuzzing the parsers of untrusted bytes; the libFuzzer targets in `Fuzz/`
/// call these and the test suite replays their corpora. Each returns invariant violations.
public enum SecureBootFuzzing {
    /// PE images and their Authenticode signatures: parsing never traps; the hashed ranges lie
    /// inside the file and do not overlap the certificate table; the decision runs.
    public static func peImage(_ bytes: [UInt8]) -> [String] {
        guard let image = try? PEImage(bytes) else { return [] }
        var violations: [String] = []
        for r in image.authenticodeRanges {
            if r.lowerBound < 0 || r.upperBound > bytes.count { violations.append("a hashed range \(r) is outside the file") }
            if !image.certificateTable.isEmpty && r.overlaps(image.certificateTable) {
                violations.append("a hashed range overlaps the certificate table")
            }
        }
        _ = try? image.authenticodeDigest()
        _ = ImageVerifier.decide(image, db: SignatureDatabase(), dbx: SignatureDatabase())
        return violations
    }

    /// EFI signature lists: what parses re-encodes to the same bytes.
    public static func signatureLists(_ bytes: [UInt8]) -> [String] {
        guard let db = try? SignatureDatabase(esl: bytes) else { return [] }
        _ = db.certificates
        return db.encoded == bytes ? [] : ["re-encoding differs from the parsed bytes"]
    }

    /// OVMF variable stores: parsing never traps; variables lie inside the store.
    public static func variableStore(_ bytes: [UInt8]) -> [String] {
        guard let store = try? VariableStore(bytes) else { return [] }
        _ = store.db
        _ = store.dbx
        return store.variables.contains { $0.offset < store.variablesStart || $0.offset >= store.storeEnd }
            ? ["a variable outside the store"] : []
    }

    /// PKCS#7 Authenticode signatures on their own.
    public static func pkcs7(_ bytes: [UInt8]) -> [String] {
        guard let sig = try? AuthenticodeSignature(pkcs7: bytes) else { return [] }
        for s in sig.signers { _ = sig.verifySigner(s) }
        return []
    }
}
