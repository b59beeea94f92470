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
        do { bytes = try tpmBytes() } catch {
            throw TPMError(.invalidArgument, wire: error, reason: "the NV public area cannot be encoded")
        }
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

/// Verifies TPM signatures (RSASSA, RSAPSS, ECDSA on the NIST curves).
public enum TPMSignatureVerifier {
    /// Verifies `signature` over `message` (hashed here with the signature's hash) with `key`.
    /// Throws a `verification` error when it does not verify.
    public static func verify(_ signature: TPMTSignature, message: [UInt8], key: TPMTPublic) throws(TPMError) {
        switch signature {
        case .rsassa(let s), .rsapss(let s):
            let pk = try rsaKey(key)
            let padding: _RSA.Signing.Padding
            if case .rsapss = signature { padding = .PSS } else { padding = .insecurePKCS1v1_5 }
            let sig = _RSA.Signing.RSASignature(rawRepresentation: s.sig.bytes)
            // swift-crypto accepts only its own digest types here, so hash with them.
            let ok: Bool
            switch s.hash {
            case .sha1: ok = pk.isValidSignature(sig, for: Insecure.SHA1.hash(data: message), padding: padding)
            case .sha256: ok = pk.isValidSignature(sig, for: SHA256.hash(data: message), padding: padding)
            case .sha384: ok = pk.isValidSignature(sig, for: SHA384.hash(data: message), padding: padding)
            case .sha512: ok = pk.isValidSignature(sig, for: SHA512.hash(data: message), padding: padding)
            default: throw TPMError(.unsupported, reason: "RSA signatures with \(s.hash) are not implemented")
            }
            guard ok else { throw TPMError(.verification, reason: "the \(signature.sigAlg) signature does not verify with the given key") }
        default:
            try verify(signature, digest: try TPMCrypto.hash(signature.hashAlg, message), key: key)
        }
    }

    /// Verifies `signature` over an already computed `digest`.
    public static func verify(_ signature: TPMTSignature, digest: [UInt8], key: TPMTPublic) throws(TPMError) {
        guard let size = signature.hashAlg.digestSize, digest.count == size else {
            throw TPMError(.verification,
                           reason: "a \(signature.hashAlg) digest must be \(signature.hashAlg.digestSize ?? 0) bytes, got \(digest.count)")
        }
        let ok: Bool
        switch signature {
        case .rsassa(let s):
            guard let rsa = key.rsaComponents else {
                throw TPMError(.verification, reason: "an RSA signature cannot be checked with a \(key.type) key")
            }
            ok = try RSASignatureCheck.pkcs1v15(signature: s.sig.bytes, digest: digest, hash: s.hash, modulus: rsa.modulus,
                                                exponent: rsa.exponent)
        case .rsapss(let s):
            guard let rsa = key.rsaComponents else {
                throw TPMError(.verification, reason: "an RSA signature cannot be checked with a \(key.type) key")
            }
            ok = try RSASignatureCheck.pss(signature: s.sig.bytes, digest: digest, hash: s.hash, modulus: rsa.modulus,
                                           exponent: rsa.exponent)
        case .ecdsa(let s):
            guard let ecc = key.eccComponents else {
                throw TPMError(.verification, reason: "an ECDSA signature cannot be checked with a \(key.type) key")
            }
            let x963 = try eccX963(ecc.curve, x: ecc.x, y: ecc.y)
            let size = ecc.curve.coordinateSize ?? 0
            func fixed(_ v: [UInt8]) -> [UInt8]? {
                let t = Array(v.drop { $0 == 0 })
                return t.count <= size ? [UInt8](repeating: 0, count: size - t.count) + t : nil
            }
            guard let r = fixed(s.signatureR.bytes), let sv = fixed(s.signatureS.bytes) else {
                throw TPMError(.verification, reason: "the ECDSA signature's r or s is longer than the curve allows")
            }
            let d = AnyDigest(bytes: digest)
            do {
                switch ecc.curve {
                case .nistP256:
                    ok = try P256.Signing.PublicKey(x963Representation: x963).isValidSignature(
                        P256.Signing.ECDSASignature(rawRepresentation: r + sv), for: d)
                case .nistP384:
                    ok = try P384.Signing.PublicKey(x963Representation: x963).isValidSignature(
                        P384.Signing.ECDSASignature(rawRepresentation: r + sv), for: d)
                case .nistP521:
                    ok = try P521.Signing.PublicKey(x963Representation: x963).isValidSignature(
                        P521.Signing.ECDSASignature(rawRepresentation: r + sv), for: d)
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

    static func rsaKey(_ key: TPMTPublic) throws(TPMError) -> _RSA.Signing.PublicKey {
        guard let rsa = key.rsaComponents else {
            throw TPMError(.verification, reason: "an RSA signature cannot be checked with a \(key.type) key")
        }
        do {
            return try _RSA.Signing.PublicKey(n: rsa.modulus, e: Array(be32(rsa.exponent).drop { $0 == 0 }))
        } catch { throw TPMError(.verification, reason: "the RSA key is not usable: \(error)") }
    }
}

/// A digest computed elsewhere, for ECDSA verification (which reads the bytes only).
struct AnyDigest: Digest {
    static var byteCount: Int { 64 }
    let bytes: [UInt8]
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try bytes.withUnsafeBytes(body) }
    func makeIterator() -> Array<UInt8>.Iterator { bytes.makeIterator() }
    var description: String { bytes.hexString }
    func hash(into hasher: inout Hasher) { hasher.combine(bytes) }
}

/// RSA signature checks over a digest (PKCS #1 v2.2, 8.2.2 and 9.1.2), done with the public
/// exponent directly so that any digest the TPM signed can be checked.
enum RSASignatureCheck {
    /// DigestInfo prefixes (PKCS #1 v2.2, 9.2 note 1).
    static func digestInfoPrefix(_ hash: TPMAlgID) -> [UInt8]? {
        switch hash {
        case .sha1: [UInt8](hex: "3021300906052b0e03021a05000414")
        case .sha256: [UInt8](hex: "3031300d060960864801650304020105000420")
        case .sha384: [UInt8](hex: "3041300d060960864801650304020205000430")
        case .sha512: [UInt8](hex: "3051300d060960864801650304020305000440")
        default: nil
        }
    }

    /// s^e mod n as k bytes, or nil when s is not below n.
    static func publicOperation(_ signature: [UInt8], modulus: [UInt8], exponent: UInt32) -> [UInt8]? {
        let nBytes = Array(modulus.drop { $0 == 0 })
        guard signature.count == nBytes.count else { return nil }
        let n = BigUInt(Data(nBytes))
        let s = BigUInt(Data(signature))
        guard s < n else { return nil }
        let m = Array(s.power(BigUInt(exponent), modulus: n).serialize())
        return [UInt8](repeating: 0, count: nBytes.count - m.count) + m
    }

    static func pkcs1v15(signature: [UInt8], digest: [UInt8], hash: TPMAlgID, modulus: [UInt8], exponent: UInt32) throws(TPMError) -> Bool {
        guard let prefix = digestInfoPrefix(hash) else { throw TPMError(.unsupported, reason: "RSASSA with \(hash) is not implemented") }
        guard let em = publicOperation(signature, modulus: modulus, exponent: exponent) else { return false }
        let t = prefix + digest
        guard em.count >= t.count + 11 else { return false }
        let expected = [0x00, 0x01] + [UInt8](repeating: 0xFF, count: em.count - t.count - 3) + [0x00] + t
        return constantTimeEqual(em, expected)
    }

    static func pss(signature: [UInt8], digest: [UInt8], hash: TPMAlgID, modulus: [UInt8], exponent: UInt32) throws(TPMError) -> Bool {
        let hLen = try TPMCrypto.digestSize(hash)
        guard let m = publicOperation(signature, modulus: modulus, exponent: exponent) else { return false }
        let nBytes = Array(modulus.drop { $0 == 0 })
        let modBits = nBytes.count * 8 - (nBytes.first.map { $0.leadingZeroBitCount } ?? 0)
        let emBits = modBits - 1
        let emLen = (emBits + 7) / 8
        // m has k bytes; the encoded message is its last emLen bytes, the rest must be zero.
        guard m.count >= emLen, m[..<(m.count - emLen)].allSatisfy({ $0 == 0 }) else { return false }
        let em = Array(m.suffix(emLen))
        guard emLen >= hLen + 2, em.last == 0xBC else { return false }
        let maskedDB = Array(em[0..<(emLen - hLen - 1)])
        let h = Array(em[(emLen - hLen - 1)..<(emLen - 1)])
        let topBits = 8 * emLen - emBits
        guard topBits == 0 || maskedDB[0] >> (8 - topBits) == 0 else { return false }
        var db = zip(maskedDB, try TPMCrypto.mgf1(hash, seed: h, length: maskedDB.count)).map { $0 ^ $1 }
        if topBits > 0 { db[0] &= 0xFF >> topBits }
        guard let one = db.firstIndex(where: { $0 != 0 }), db[one] == 0x01 else { return false }
        let salt = Array(db[(one + 1)...])
        let hPrime = try TPMCrypto.hash(hash, [UInt8](repeating: 0, count: 8), digest, salt)
        return constantTimeEqual(h, hPrime)
    }
}

/// Secret sharing with a TPM key (Part 1, B.10.3 and C.6.1): produce a seed and its
/// encryption so that only the TPM holding the private key recovers the seed.
public enum TPMSecretSharing {
    /// Returns (seed, encryptedSeed) for `key` with KDF/OAEP label `label` ("SECRET", "IDENTITY", "DUPLICATE").
    public static func makeSeed(for key: TPMTPublic, label: String) throws(TPMError) -> (seed: [UInt8], encrypted: [UInt8]) {
        let bits = try TPMCrypto.digestSize(key.nameAlg) * 8
        if let rsa = key.rsaComponents {
            let seed = TPMCrypto.random(bits / 8)
            let ct = try RSAOAEP.encrypt(seed, modulus: rsa.modulus, exponent: rsa.exponent, hash: key.nameAlg,
                                         label: TPMCrypto.labelBytes(label))
            return (seed, ct)
        }
        if let ecc = key.eccComponents {
            let (z, ephemeral) = try ecdhEphemeral(curve: ecc.curve, x: ecc.x, y: ecc.y)
            let seed = try TPMCrypto.kdfe(key.nameAlg, z: z, label: label, partyUInfo: ephemeral.x.bytes, partyVInfo: ecc.x, bits: bits)
            let encrypted: [UInt8]
            do { encrypted = try ephemeral.tpmBytes() } catch {
                throw TPMError(.invalidArgument, wire: error, reason: "cannot encode the ephemeral point")
            }
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
    public static func encrypt(_ message: [UInt8], modulus: [UInt8], exponent: UInt32, hash: TPMAlgID,
                               label: [UInt8]) throws(TPMError) -> [UInt8] {
        let n = Array(modulus.drop { $0 == 0 })
        let k = n.count
        let hLen = try TPMCrypto.digestSize(hash)
        guard message.count <= k - 2 * hLen - 2 else {
            throw TPMError(.invalidArgument,
                           reason: "a \(message.count)-byte message is too long for OAEP with a \(k * 8)-bit key and \(hash)")
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

extension TPMTPublic {
    /// An RSA signing key's public area built from a SubjectPublicKeyInfo PEM (for keys
    /// that arrive outside a TPM structure, e.g. a cloud's published AK).
    public static func fromRSAPublicKeyPEM(_ pem: String, scheme: TPMTScheme = .rsassa(.sha256)) throws(TPMError) -> TPMTPublic {
        let key: _RSA.Signing.PublicKey
        do { key = try _RSA.Signing.PublicKey(unsafePEMRepresentation: pem) } catch {
            throw TPMError(.invalidArgument, reason: "not an RSA public key PEM: \(error)")
        }
        let prims: _RSA.Signing.PublicKey.Primitives
        do { prims = try key.getKeyPrimitives() } catch { throw TPMError(.invalidArgument, reason: "cannot read the RSA key: \(error)") }
        let e = prims.publicExponent.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return TPMTPublic(nameAlg: .sha256, objectAttributes: [.signEncrypt],
                          parameters: .rsa(TPMSRSAParms(symmetric: .null, scheme: scheme, keyBits: UInt16(key.keySizeInBits),
                                                        exponent: e == 65537 ? 0 : e)),
                          unique: .rsa(TPM2BPublicKeyRSA(Array(prims.modulus.drop { $0 == 0 }))))
    }
}
