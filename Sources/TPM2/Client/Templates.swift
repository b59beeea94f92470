/// Key templates: the TCG default EK templates (TCG EK Credential Profile 2.x, templates
/// L-1 and L-2), attestation keys, storage keys and sealed objects.
public enum TPMTemplates {
    /// PolicySecret(TPM_RH_ENDORSEMENT): the authPolicy of the default EKs.
    public static let ekPolicy: [UInt8] = [
        0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xB3, 0xF8, 0x1A, 0x90, 0xCC, 0x8D, 0x46, 0xA5, 0xD7, 0x24,
        0xFD, 0x52, 0xD7, 0x6E, 0x06, 0x52, 0x0B, 0x64, 0xF2, 0xA1, 0xDA, 0x1B, 0x33, 0x14, 0x69, 0xAA,
    ]

    /// fixedTPM, fixedParent, sensitiveDataOrigin, adminWithPolicy, restricted, decrypt.
    public static let ekAttributes: TPMAObject = [.fixedTPM, .fixedParent, .sensitiveDataOrigin, .adminWithPolicy, .restricted, .decrypt]

    /// Template L-1: RSA 2048, AES-128-CFB, SHA-256, 256 zero bytes of unique.
    public static let ekRSA2048 = TPMTPublic(
        nameAlg: .sha256, objectAttributes: ekAttributes, authPolicy: TPM2BDigest(ekPolicy),
        parameters: .rsa(TPMSRSAParms(symmetric: .aes128CFB, scheme: .null, keyBits: 2048, exponent: 0)),
        unique: .rsa(TPM2BPublicKeyRSA([UInt8](repeating: 0, count: 256))))

    /// Template L-2: ECC NIST P-256, AES-128-CFB, SHA-256, 32 zero bytes in each coordinate.
    public static let ekECCP256 = TPMTPublic(
        nameAlg: .sha256, objectAttributes: ekAttributes, authPolicy: TPM2BDigest(ekPolicy),
        parameters: .ecc(TPMSECCParms(symmetric: .aes128CFB, scheme: .null, curveID: .nistP256, kdf: .null)),
        unique: .ecc(TPMSECCPoint(x: [UInt8](repeating: 0, count: 32), y: [UInt8](repeating: 0, count: 32))))

    /// Restricted signing key attributes (an attestation key).
    public static let akAttributes: TPMAObject = [.fixedTPM, .fixedParent, .sensitiveDataOrigin, .userWithAuth, .restricted, .signEncrypt]

    /// An RSA 2048 attestation key (RSASSA-SHA256), as tpm2_createak makes by default.
    public static let akRSA2048 = TPMTPublic(
        nameAlg: .sha256, objectAttributes: akAttributes,
        parameters: .rsa(TPMSRSAParms(symmetric: .null, scheme: .rsassa(.sha256), keyBits: 2048, exponent: 0)),
        unique: .rsa(TPM2BPublicKeyRSA()))

    /// An ECC P-256 attestation key (ECDSA-SHA256).
    public static let akECCP256 = TPMTPublic(
        nameAlg: .sha256, objectAttributes: akAttributes,
        parameters: .ecc(TPMSECCParms(symmetric: .null, scheme: .ecdsa(.sha256), curveID: .nistP256, kdf: .null)),
        unique: .ecc(TPMSECCPoint()))

    /// An ECC P-256 storage primary key (the TCG "SRK" template for ECC).
    public static let storageECCP256 = TPMTPublic(
        nameAlg: .sha256, objectAttributes: [.fixedTPM, .fixedParent, .sensitiveDataOrigin, .userWithAuth, .noDA, .restricted, .decrypt],
        parameters: .ecc(TPMSECCParms(symmetric: .aes128CFB, scheme: .null, curveID: .nistP256, kdf: .null)),
        unique: .ecc(TPMSECCPoint(x: [UInt8](repeating: 0, count: 32), y: [UInt8](repeating: 0, count: 32))))

    /// An RSA 2048 storage primary key (the TCG "SRK" template for RSA).
    public static let storageRSA2048 = TPMTPublic(
        nameAlg: .sha256, objectAttributes: [.fixedTPM, .fixedParent, .sensitiveDataOrigin, .userWithAuth, .noDA, .restricted, .decrypt],
        parameters: .rsa(TPMSRSAParms(symmetric: .aes128CFB, scheme: .null, keyBits: 2048, exponent: 0)),
        unique: .rsa(TPM2BPublicKeyRSA([UInt8](repeating: 0, count: 256))))

    /// An unrestricted signing key.
    public static func signingKey(ecc: Bool, userWithAuth: Bool = true) -> TPMTPublic {
        var attrs: TPMAObject = [.fixedTPM, .fixedParent, .sensitiveDataOrigin, .signEncrypt]
        if userWithAuth { attrs.insert(.userWithAuth) }
        if ecc {
            return TPMTPublic(nameAlg: .sha256, objectAttributes: attrs,
                              parameters: .ecc(TPMSECCParms(symmetric: .null, scheme: .ecdsa(.sha256), curveID: .nistP256, kdf: .null)),
                              unique: .ecc(TPMSECCPoint()))
        }
        return TPMTPublic(nameAlg: .sha256, objectAttributes: attrs,
                          parameters: .rsa(TPMSRSAParms(symmetric: .null, scheme: .rsassa(.sha256), keyBits: 2048, exponent: 0)),
                          unique: .rsa(TPM2BPublicKeyRSA()))
    }

    /// A sealed data object (KEYEDHASH, no scheme) under `authPolicy`; with an empty policy it
    /// is unsealed with its authValue.
    public static func sealedObject(authPolicy: [UInt8] = [], userWithAuth: Bool? = nil) -> TPMTPublic {
        var attrs: TPMAObject = [.fixedTPM, .fixedParent]
        if userWithAuth ?? authPolicy.isEmpty { attrs.insert(.userWithAuth) }
        return TPMTPublic(nameAlg: .sha256, objectAttributes: attrs, authPolicy: TPM2BDigest(authPolicy),
                          parameters: .keyedHash(TPMSKeyedHashParms(scheme: TPMTKeyedHashScheme(scheme: .null))),
                          unique: .keyedHash(TPM2BDigest()))
    }
}

/// Which default EK.
public enum TPMEKKind: Sendable, CaseIterable, CustomStringConvertible {
    case rsa2048
    case eccP256

    /// The NV index of the EK certificate (TCG EK Credential Profile 2.x, 2.2.1.4).
    public var certificateIndex: TPMHandle {
        switch self {
        case .rsa2048: TPMHandle(0x01C0_0002)
        case .eccP256: TPMHandle(0x01C0_000A)
        }
    }

    public var template: TPMTPublic {
        switch self {
        case .rsa2048: TPMTemplates.ekRSA2048
        case .eccP256: TPMTemplates.ekECCP256
        }
    }

    public var description: String {
        switch self {
        case .rsa2048: "RSA 2048"
        case .eccP256: "ECC NIST P-256"
        }
    }
}

/// An attestation key created under the EK: the loaded object and the blobs to reload it.
public struct TPMAttestationKey: Sendable {
    public var object: TPMObject
    public var privateBlob: TPM2BPrivate
    public var publicArea: TPMTPublic { object.publicArea }
}

extension TPMClient {
    /// Creates the default EK of `kind` in the endorsement hierarchy.
    public func createEK(_ kind: TPMEKKind, endorsementAuth: TPMAuth = .emptyPassword) async throws(TPMError) -> TPMObject {
        try await createPrimary(.endorsement, template: kind.template, auth: endorsementAuth).object
    }

    /// The DER EK certificate from its NV index, or nil when the index is not defined.
    public func readEKCertificate(_ kind: TPMEKKind) async throws(TPMError) -> [UInt8]? {
        let info: TPMSNVPublic
        do {
            info = try await nvReadPublic(kind.certificateIndex).nvPublic
        } catch {
            if error.responseCode?.base == .handle { return nil }
            throw error
        }
        let chunk = Int(try await tpmProperties(from: .nvBufferMax)[.nvBufferMax] ?? 512)
        return try await nvRead(kind.certificateIndex, size: Int(info.dataSize), authHandle: .owner, chunk: max(64, chunk))
    }

    /// A policy session satisfying the EK's PolicySecret(TPM_RH_ENDORSEMENT).
    func ekPolicySession(endorsementAuth: TPMAuth) async throws(TPMError) -> TPMSession {
        let s = try await startAuthSession(type: .policy, attributes: [])
        do {
            _ = try await policySecret(s, authHandle: .endorsement, auth: endorsementAuth)
        } catch {
            try? await flush(s)
            throw error
        }
        return s
    }

    /// Creates and loads a restricted signing key under the EK (authorized by the EK's policy).
    public func createAK(ek: TPMObject, template: TPMTPublic = TPMTemplates.akRSA2048,
                         endorsementAuth: TPMAuth = .emptyPassword) async throws(TPMError) -> TPMAttestationKey {
        let s1 = try await ekPolicySession(endorsementAuth: endorsementAuth)
        let created = try await create(parent: ek.handle, template: template, auth: .session(s1))
        let s2 = try await ekPolicySession(endorsementAuth: endorsementAuth)
        let object = try await load(parent: ek.handle, privateBlob: created.privateBlob, publicArea: created.publicArea, auth: .session(s2))
        return TPMAttestationKey(object: object, privateBlob: created.privateBlob)
    }

    /// Activates a credential made for `ak` with `ek` (the EK's policy is satisfied here).
    public func activateCredential(ak: TPMObject, ek: TPMObject, blob: TPM2BIDObject, secret: TPM2BEncryptedSecret,
        akAuth: TPMAuth = .emptyPassword, endorsementAuth: TPMAuth = .emptyPassword
    ) async throws(TPMError) -> [UInt8] {
        let s = try await ekPolicySession(endorsementAuth: endorsementAuth)
        return try await activateCredential(ak.handle, key: ek.handle, blob: blob, secret: secret, objectAuth: akAuth, keyAuth: .session(s))
    }
}
