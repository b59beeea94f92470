/// Credential protection for TPM2_ActivateCredential, done host-side (Part 1, 24):
/// what TPM2_MakeCredential computes, without a TPM.
public enum TPMCredential {
    /// Protects `credential` for the TPM that holds `ekPublic`, bound to the object `objectName`.
    ///
    /// seed → encrypted to the EK ("IDENTITY"); symKey = KDFa(nameAlg, seed, "STORAGE", name, ∅, keyBits);
    /// encIdentity = AES-CFB(symKey, IV 0, TPM2B_DIGEST(credential)); HMACkey = KDFa(nameAlg, seed, "INTEGRITY", ∅, ∅, digest bits);
    /// integrityHMAC = HMAC(HMACkey, encIdentity ‖ name).
    public static func make(
        credential: [UInt8], objectName: [UInt8], ekPublic: TPMTPublic
    ) throws(TPMError) -> (blob: TPM2BIDObject, secret: TPM2BEncryptedSecret) {
        let (seed, encryptedSeed) = try TPMSecretSharing.makeSeed(for: ekPublic, label: "IDENTITY")
        let (encIdentity, hmac) = try protect(credential: credential, objectName: objectName, seed: seed, ekPublic: ekPublic)
        let idObject = TPMSIDObject(integrityHMAC: TPM2BDigest(hmac), encIdentity: encIdentity)
        let blob: [UInt8]
        do { blob = try idObject.tpmBytes() } catch {
            throw TPMError(.invalidArgument, wire: error, reason: "cannot encode the credential")
        }
        return (TPM2BIDObject(blob), TPM2BEncryptedSecret(encryptedSeed))
    }

    /// The inner step shared by MakeCredential and ActivateCredential: (encIdentity, integrityHMAC).
    public static func protect(
        credential: [UInt8], objectName: [UInt8], seed: [UInt8], ekPublic: TPMTPublic
    ) throws(TPMError) -> ([UInt8], [UInt8]) {
        guard credential.count <= TPM2BDigestKind.maxSize else {
            throw TPMError(.invalidArgument, reason: "a credential is at most \(TPM2BDigestKind.maxSize) bytes")
        }
        let symmetric = try storageSymmetric(ekPublic)
        let nameAlg = ekPublic.nameAlg
        let symKey = try TPMCrypto.kdfa(nameAlg, key: seed, label: "STORAGE", contextU: objectName, contextV: [],
                                        bits: Int(symmetric.keyBits))
        let plain = be16(UInt16(credential.count)) + credential
        let encIdentity = try TPMCrypto.aesCFB(encrypt: true, key: symKey, iv: [UInt8](repeating: 0, count: 16), plain)
        let hmacKey = try TPMCrypto.kdfa(nameAlg, key: seed, label: "INTEGRITY", contextU: [], contextV: [],
                                         bits: try TPMCrypto.digestSize(nameAlg) * 8)
        let hmac = try TPMCrypto.hmac(nameAlg, key: hmacKey, encIdentity, objectName)
        return (encIdentity, hmac)
    }

    /// Recovers the credential from a blob, given the seed (what a TPM does after decrypting
    /// the secret with its private key). Fails with `verification` when the HMAC does not match.
    public static func recover(blob: TPM2BIDObject, objectName: [UInt8], seed: [UInt8], ekPublic: TPMTPublic) throws(TPMError) -> [UInt8] {
        let id: TPMSIDObject
        do { id = try TPMSIDObject(tpmBytes: blob.bytes) } catch {
            throw TPMError(.verification, wire: error, reason: "malformed credential blob")
        }
        let nameAlg = ekPublic.nameAlg
        let hmacKey = try TPMCrypto.kdfa(nameAlg, key: seed, label: "INTEGRITY", contextU: [], contextV: [],
                                         bits: try TPMCrypto.digestSize(nameAlg) * 8)
        guard try TPMCrypto.hmac(nameAlg, key: hmacKey, id.encIdentity, objectName) == id.integrityHMAC.bytes else {
            throw TPMError(.verification, reason: "the credential's integrity HMAC does not match (wrong key, name or seed)")
        }
        let symmetric = try storageSymmetric(ekPublic)
        let symKey = try TPMCrypto.kdfa(nameAlg, key: seed, label: "STORAGE", contextU: objectName, contextV: [],
                                        bits: Int(symmetric.keyBits))
        let plain = try TPMCrypto.aesCFB(encrypt: false, key: symKey, iv: [UInt8](repeating: 0, count: 16), id.encIdentity)
        guard plain.count >= 2, Int(plain[0]) << 8 | Int(plain[1]) == plain.count - 2 else {
            throw TPMError(.verification, reason: "the decrypted credential has an inconsistent size")
        }
        return Array(plain[2...])
    }

    static func storageSymmetric(_ key: TPMTPublic) throws(TPMError) -> TPMTSymDef {
        let sym: TPMTSymDef
        switch key.parameters {
        case .rsa(let p): sym = p.symmetric
        case .ecc(let p): sym = p.symmetric
        default: throw TPMError(.invalidArgument, reason: "a credential needs an RSA or ECC storage key")
        }
        guard sym.algorithm == .aes, sym.mode == .cfb else {
            throw TPMError(.unsupported, reason: "the key's symmetric algorithm must be AES-CFB, it is \(sym.algorithm)/\(sym.mode)")
        }
        return sym
    }
}
