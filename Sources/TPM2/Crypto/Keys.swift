import BigInt
import Crypto
import _CryptoExtras
import Foundation

// Public keys from TPMT_PUBLIC, Names, signature verification and secret sharing
// (TPM 2.0 Library Part 1, Annex B (RSA) and Annex C (ECC)).

extension TPMTPublic {
    /// The object's Name (Part 1, 16): nameAlg ‖ H_nameAlg(TPMT_PUBLIC).
    public func name() throws(TPMError) -> [UInt8] {
        let bytes: [UInt8]
        do { bytes = try tpmBytes() } catch { throw TPMError(.invalidArgument, wire: error, reason: "the public area cannot be encoded") }
        return be16(nameAlg.rawValue) + (try TPMCrypto.hash(nameAlg, bytes))
    }

    /// RSA modulus and exponent, when this is an RSA key.
    public var rsaComponents: (modulus: [UInt8], exponent: UInt32)? {
        guard case .rsa(let parms) = parameters, case .rsa(let n) = unique else { return nil }
        return (n.bytes, parms.exponent == 0 ? 65537 : parms.exponent)
    }

    /// The ECC curve and point, when this is an ECC key.
    public var eccComponents: (curve: TPMECCCurve, x: [UInt8], y: [UInt8])? {
        guard case .ecc(let parms) = parameters, case .ecc(let p) = unique else { return nil }
        return (parms.curveID, p.x.bytes, p.y.bytes)
    }

    /// SubjectPublicKeyInfo PEM of an RSA or NIST-curve ECC key.
    public func publicKeyPEM() throws(TPMError) -> String {
        if let rsa = rsaComponents {
            do {
                return try _RSA.Signing.PublicKey(n: rsa.modulus, e: be32(rsa.exponent).drop { $0 == 0 }.map { $0 }).pemRepresentation
            } catch { throw TPMError(.invalidArgument, reason: "the RSA public key is not valid: \(error)") }
        }
        if let ecc = eccComponents {
            let x963 = try eccX963(ecc.curve, x: ecc.x, y: ecc.y)
            do {
                switch ecc.curve {
                case .nistP256: return try P256.Signing.PublicKey(x963Representation: x963).pemRepresentation
                case .nistP384: return try P384.Signing.PublicKey(x963Representation: x963).pemRepresentation
                case .nistP521: return try P521.Signing.PublicKey(x963Representation: x963).pemRepresentation
                default: break
                }
            } catch { throw TPMError(.invalidArgument, reason: "the ECC point is not on \(ecc.curve): \(error)") }
        }
        throw TPMError(.unsupported, reason: "no PEM form for a \(type) key")
    }
}

extension TPMSNVPublic {
    /// The NV index's Name (Part 1, 16): nameAlg ‖ H_nameAlg(TPMS_NV_PUBLIC).
    public func name() throws(TPMError) -> [UInt8] {
        let bytes: [UInt8]
        do { bytes = try tpmBytes() } catch { throw TPMError(.invalidArgument, wire: error, reason: "the NV public area cannot be encoded") }
        return be16(nameAlg.rawValue) + (try TPMCrypto.hash(nameAlg, bytes))
    }
}

/// Uncompressed SEC1 point (04 ‖ X ‖ Y) with coordinates padded to the curve's size.
func eccX963(_ curve: TPMECCCurve, x: [UInt8], y: [UInt8]) throws(TPMError) -> [UInt8] {
    guard let size = curve.coordinateSize else { throw TPMError(.unsupported, reason: "curve \(curve) is not implemented") }
    func pad(_ v: [UInt8]) throws(TPMError) -> [UInt8] {
        let trimmed = Array(v.drop { $0 == 0 })
        guard trimmed.count <= size else { throw TPMError(.invalidArgument, reason: "an ECC coordinate is longer than \(curve) allows") }
        return [UInt8](repeating: 0, count: size - trimmed.count) + trimmed
    }
    return [0x04] + (try pad(x)) + (try pad(y))
}

/// Verifies TPM signatures with swift-crypto.
public enum TPMSignatureVerifier {
    /// Verifies `signature` over `message` (hashed here with the signature's hash) with `key`.
    /// Throws a `verification` error when it does not verify.
    public static func verify(_ signature: TPMTSignature, message: [UInt8], key: TPMTPublic) throws(TPMError) {
        let digest = try TPMCrypto.hash(signature.hashAlg, message)
        try verify(signature, digest: digest, key: key)
    }

    /// Verifies `signature` over an already computed `digest`.
    public static func verify(_ signature: TPMTSignature, digest: [UInt8], key: TPMTPublic) throws(TPMError) {
        let ok: Bool
        switch signature {
        case .rsassa(let s), .rsapss(let s):
            guard let rsa = key.rsaComponents else { throw TPMError(.verification, reason: "an RSA signature cannot be checked with a \(key.type) key") }
            let pk: _RSA.Signing.PublicKey
            do {
                pk = try _RSA.Signing.PublicKey(n: rsa.modulus, e: Array(be32(rsa.exponent).drop { $0 == 0 }))
            } catch { throw TPMError(.verification, reason: "the RSA key is not usable: \(error)") }
            let padding: _RSA.Signing.Padding = {
                if case .rsapss = signature { return .PSS }
                return .insecurePKCS1v1_5
            }()
            let sig = _RSA.Signing.RSASignature(rawRepresentation: s.sig.bytes)
            ok = try withDigest(s.hash, digest) { pk.isValidSignature(sig, for: $0, padding: padding) }
        case .ecdsa(let s):
            guard let ecc = key.eccComponents else { throw TPMError(.verification, reason: "an ECDSA signature cannot be checked with a \(key.type) key") }
            let x963 = try eccX963(ecc.curve, x: ecc.x, y: ecc.y)
            let size = ecc.curve.coordinateSize ?? 0
            func fixed(_ v: [UInt8]) -> [UInt8]? {
                let t = Array(v.drop { $0 == 0 })
                return t.count <= size ? [UInt8](repeating: 0, count: size - t.count) + t : nil
            }
            guard let r = fixed(s.signatureR.bytes), let sv = fixed(s.signatureS.bytes) else {
                throw TPMError(.verification, reason: "the ECDSA signature's r or s is longer than the curve allows")
            }
            do {
                switch ecc.curve {
                case .nistP256:
                    let pk = try P256.Signing.PublicKey(x963Representation: x963)
                    let sig = try P256.Signing.ECDSASignature(rawRepresentation: r + sv)
                    ok = try withDigest(s.hash, digest) { pk.isValidSignature(sig, for: $0) }
                case .nistP384:
                    let pk = try P384.Signing.PublicKey(x963Representation: x963)
                    let sig = try P384.Signing.ECDSASignature(rawRepresentation: r + sv)
                    ok = try withDigest(s.hash, digest) { pk.isValidSignature(sig, for: $0) }
                case .nistP521:
                    let pk = try P521.Signing.PublicKey(x963Representation: x963)
                    let sig = try P521.Signing.ECDSASignature(rawRepresentation: r + sv)
                    ok = try withDigest(s.hash, digest) { pk.isValidSignature(sig, for: $0) }
                default:
                    throw TPMError(.unsupported, reason: "ECDSA on \(ecc.curve) is not implemented")
                }
            } catch let e as TPMError {
                throw e
            } catch {
                throw TPMError(.verification, reason: "the ECDSA key or signature is malformed: \(error)")
            }
        default:
            throw TPMError(.unsupported, reason: "verifying \(signature.sigAlg) signatures is not implemented")
        }
        guard ok else { throw TPMError(.verification, reason: "the \(signature.sigAlg) signature does not verify with the given key") }
    }

    /// Wraps raw digest bytes as the swift-crypto Digest type of `alg`.
    private static func withDigest(_ alg: TPMAlgID, _ digest: [UInt8], _ body: (any Digest) -> Bool) throws(TPMError) -> Bool {
        guard digest.count == alg.digestSize else {
            throw TPMError(.verification, reason: "a \(alg) digest must be \(alg.digestSize ?? 0) bytes, got \(digest.count)")
        }
        switch alg {
        case .sha1: return body(RawDigest<Insecure.SHA1>(digest))
        case .sha256: return body(RawDigest<SHA256>(digest))
        case .sha384: return body(RawDigest<SHA384>(digest))
        case .sha512: return body(RawDigest<SHA512>(digest))
        default: throw TPMError(.unsupported, reason: "signatures with \(alg) are not implemented")
        }
    }
}

/// A digest computed elsewhere, presented to swift-crypto's verify-a-digest APIs.
struct RawDigest<H: HashFunction>: Digest {
    static var byteCount: Int { H.Digest.byteCount }
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try bytes.withUnsafeBytes(body) }
    func makeIterator() -> Array<UInt8>.Iterator { bytes.makeIterator() }
    var description: String { bytes.hexString }
    func hash(into hasher: inout Hasher) { hasher.combine(bytes) }
}

/// Secret sharing with a TPM key (Part 1, B.10.3 and C.6.1): produce a seed and its
/// encryption so that only the TPM holding the private key recovers the seed.
public enum TPMSecretSharing {
    /// Returns (seed, encryptedSeed) for `key` with KDF/OAEP label `label` ("SECRET", "IDENTITY", "DUPLICATE").
    public static func makeSeed(for key: TPMTPublic, label: String) throws(TPMError) -> (seed: [UInt8], encrypted: [UInt8]) {
        let bits = try TPMCrypto.digestSize(key.nameAlg) * 8
        if let rsa = key.rsaComponents {
            let seed = TPMCrypto.random(bits / 8)
            let ct = try RSAOAEP.encrypt(seed, modulus: rsa.modulus, exponent: rsa.exponent, hash: key.nameAlg, label: TPMCrypto.labelBytes(label))
            return (seed, ct)
        }
        if let ecc = key.eccComponents {
            let (z, ephemeral) = try ecdhEphemeral(curve: ecc.curve, x: ecc.x, y: ecc.y)
            let seed = try TPMCrypto.kdfe(key.nameAlg, z: z, label: label, partyUInfo: ephemeral.x.bytes, partyVInfo: ecc.x, bits: bits)
            let encrypted: [UInt8]
            do { encrypted = try ephemeral.tpmBytes() } catch { throw TPMError(.invalidArgument, wire: error, reason: "cannot encode the ephemeral point") }
            return (seed, encrypted)
        }
        throw TPMError(.unsupported, reason: "secret sharing with a \(key.type) key is not possible")
    }

    /// One-pass ECDH with a fresh ephemeral key: (Z = x-coordinate of the shared point, ephemeral public point).
    static func ecdhEphemeral(curve: TPMECCCurve, x: [UInt8], y: [UInt8]) throws(TPMError) -> ([UInt8], TPMSECCPoint) {
        let x963 = try eccX963(curve, x: x, y: y)
        let size = curve.coordinateSize ?? 0
        func split(_ raw: Data) -> TPMSECCPoint {
            let b = Array(raw)
            return TPMSECCPoint(x: Array(b[1...size]), y: Array(b[(size + 1)...]))
        }
        do {
            switch curve {
            case .nistP256:
                let peer = try P256.KeyAgreement.PublicKey(x963Representation: x963)
                let eph = P256.KeyAgreement.PrivateKey()
                let z = try eph.sharedSecretFromKeyAgreement(with: peer).withUnsafeBytes { Array($0) }
                return (z, split(eph.publicKey.x963Representation))
            case .nistP384:
                let peer = try P384.KeyAgreement.PublicKey(x963Representation: x963)
                let eph = P384.KeyAgreement.PrivateKey()
                let z = try eph.sharedSecretFromKeyAgreement(with: peer).withUnsafeBytes { Array($0) }
                return (z, split(eph.publicKey.x963Representation))
            case .nistP521:
                let peer = try P521.KeyAgreement.PublicKey(x963Representation: x963)
                let eph = P521.KeyAgreement.PrivateKey()
                let z = try eph.sharedSecretFromKeyAgreement(with: peer).withUnsafeBytes { Array($0) }
                return (z, split(eph.publicKey.x963Representation))
            default:
                throw TPMError(.unsupported, reason: "ECDH on \(curve) is not implemented")
            }
        } catch let e as TPMError {
            throw e
        } catch {
            throw TPMError(.invalidArgument, reason: "the ECC public point is not valid on \(curve): \(error)")
        }
    }
}

/// RSAES-OAEP (PKCS #1 v2.2, 7.1) with an explicit label, which the TPM requires
/// ("SECRET", "IDENTITY", "DUPLICATE") and swift-crypto does not offer.
public enum RSAOAEP {
    public static func encrypt(_ message: [UInt8], modulus: [UInt8], exponent: UInt32, hash: TPMAlgID, label: [UInt8]) throws(TPMError) -> [UInt8] {
        let n = Array(modulus.drop { $0 == 0 })
        let k = n.count
        let hLen = try TPMCrypto.digestSize(hash)
        guard message.count <= k - 2 * hLen - 2 else {
            throw TPMError(.invalidArgument, reason: "a \(message.count)-byte message is too long for OAEP with a \(k * 8)-bit key and \(hash)")
        }
        let lHash = try TPMCrypto.hash(hash, label)
        let db = lHash + [UInt8](repeating: 0, count: k - message.count - 2 * hLen - 2) + [0x01] + message
        let seed = TPMCrypto.random(hLen)
        let dbMask = try TPMCrypto.mgf1(hash, seed: seed, length: k - hLen - 1)
        let maskedDB = zip(db, dbMask).map { $0 ^ $1 }
        let seedMask = try TPMCrypto.mgf1(hash, seed: maskedDB, length: hLen)
        let maskedSeed = zip(seed, seedMask).map { $0 ^ $1 }
        let em = [0x00] + maskedSeed + maskedDB
        let c = BigUInt(Data(em)).power(BigUInt(exponent), modulus: BigUInt(Data(n)))
        let out = Array(c.serialize())
        return [UInt8](repeating: 0, count: k - out.count) + out
    }

    /// Decodes EME-OAEP after the private-key operation produced `em` (k bytes).
    public static func decode(_ em: [UInt8], hash: TPMAlgID, label: [UInt8]) throws(TPMError) -> [UInt8] {
        let hLen = try TPMCrypto.digestSize(hash)
        let k = em.count
        guard k >= 2 * hLen + 2, em[0] == 0 else { throw TPMError(.verification, reason: "OAEP decoding failed") }
        let maskedSeed = Array(em[1...hLen])
        let maskedDB = Array(em[(hLen + 1)...])
        let seedMask = try TPMCrypto.mgf1(hash, seed: maskedDB, length: hLen)
        let seed = zip(maskedSeed, seedMask).map { $0 ^ $1 }
        let dbMask = try TPMCrypto.mgf1(hash, seed: seed, length: k - hLen - 1)
        let db = zip(maskedDB, dbMask).map { $0 ^ $1 }
        let lHash = try TPMCrypto.hash(hash, label)
        guard Array(db[0..<hLen]) == lHash, let one = db[hLen...].firstIndex(where: { $0 != 0 }), db[one] == 1 else {
            throw TPMError(.verification, reason: "OAEP decoding failed")
        }
        return Array(db[(one + 1)...])
    }
}
