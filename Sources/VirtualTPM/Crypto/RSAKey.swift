import BigInt
import Crypto
import _CryptoExtras
import Foundation
import TLBigNum
import TPM2

/// An RSA key pair inside the vTPM: the TPM stores one prime (TPM2B_PRIVATE_KEY_RSA); the
/// rest is recomputed when the key is loaded. Private operations use BoringSSL's raw RSA (CRT;
/// the blind-signing API exposes it — its hash parameter is unused here), padding is done here
/// so that any digest and OAEP label work.
struct RSAKeyPair: @unchecked Sendable {
    let modulus: [UInt8]
    let exponent: UInt32
    let prime: [UInt8]
    private let key: _RSA.BlindSigning.PrivateKey<SHA384>

    var byteCount: Int { modulus.count }

    /// Rebuilds the key from n, e and one prime (as TPM2_Load does).
    init(modulus: [UInt8], exponent: UInt32, prime: [UInt8]) throws(TPMRC) {
        let n = BigUInt(Data(modulus))
        let p = BigUInt(Data(prime))
        guard p > 1, n % p == 0 else { throw TPMRC.binding }
        let q = n / p
        let e = BigUInt(exponent)
        let phi = (p - 1) * (q - 1)
        guard let d = e.inverse(phi) else { throw TPMRC.key }
        do {
            key = try _RSA.BlindSigning.PrivateKey<SHA384>(
                n: Array(n.serialize()), e: Array(e.serialize()), d: Array(d.serialize()),
                p: Array(p.serialize()), q: Array(q.serialize()), parameters: .RSABSSA_SHA384_PSS_Deterministic)
        } catch {
            throw TPMRC.key
        }
        self.modulus = Array(n.serialize())
        self.exponent = exponent
        self.prime = Array(p.serialize())
    }

    /// A fresh random key (TPM2_Create of an RSA key): BoringSSL generates it.
    static func generate(bits: Int, exponent: UInt32) throws(TPMRC) -> RSAKeyPair {
        guard exponent == 65537 else { throw TPMRC.value }
        let der: Data
        do {
            der = try _RSA.Signing.PrivateKey(keySize: .init(bitCount: bits)).derRepresentation
        } catch { throw TPMRC.keySize }
        guard let parts = parsePKCS1PrivateKey([UInt8](der)) else { throw TPMRC.failure }
        return try RSAKeyPair(modulus: parts.n, exponent: exponent, prime: parts.p)
    }

    /// A key derived deterministically from `stream` (a primary key: the same seed and
    /// template give the same key). Primes are searched upwards from the stream's output with
    /// a small-prime sieve, then Miller–Rabin with witnesses also drawn from the stream.
    static func derive(bits: Int, exponent: UInt32, stream: inout KDFStream) throws(TPMRC) -> RSAKeyPair {
        while true {
            let p = try primeCandidate(bytes: bits / 16, exponent: exponent, stream: &stream)
            let q = try primeCandidate(bytes: bits / 16, exponent: exponent, stream: &stream)
            guard p != q else { continue }
            let n = BigUInt(Data(p)) * BigUInt(Data(q))
            guard n.bitWidth == bits else { continue }
            let larger = BigUInt(Data(p)) > BigUInt(Data(q)) ? p : q
            return try RSAKeyPair(modulus: Array(n.serialize()), exponent: exponent, prime: larger)
        }
    }

    static let smallPrimes: [UInt64] = {
        var sieve = [Bool](repeating: true, count: 17864)
        var out: [UInt64] = []
        for i in 2..<sieve.count where sieve[i] {
            out.append(UInt64(i))
            var j = i * i
            while j < sieve.count { sieve[j] = false; j += i }
        }
        return out
    }()

    /// A probable prime of `bytes` bytes (top two bits set) with gcd(p − 1, e) = 1.
    static func primeCandidate(bytes: Int, exponent: UInt32, stream: inout KDFStream) throws(TPMRC) -> [UInt8] {
        while true {
            var start = try stream.next(bytes)
            start[0] |= 0xC0
            start[bytes - 1] |= 1
            var c = Limbs.from(bigEndian: start)
            let residues = smallPrimes.map { Limbs.mod(c, $0) }
            let eResidue = Limbs.mod(c, UInt64(exponent))
            var step: UInt64 = 0
            while step < 8192 {
                defer { step += 2 }
                var divisible = false
                for (i, sp) in smallPrimes.enumerated() where (residues[i] + step) % sp == 0 {
                    divisible = true
                    break
                }
                if divisible || (eResidue + step) % UInt64(exponent) == 1 { continue }
                var candidate = c
                Limbs.add(&candidate, step)
                let bytesOut = Limbs.bigEndian(candidate, count: bytes)
                guard bytesOut[0] & 0xC0 == 0xC0, let mont = Montgomery(modulus: candidate) else { continue }
                var prime = true
                for _ in 0..<5 {
                    var w = Limbs.from(bigEndian: try stream.next(bytes - 1))
                    if w.count < candidate.count { w += [UInt64](repeating: 0, count: candidate.count - w.count) }
                    if w.allSatisfy({ $0 == 0 }) || (w[0] < 2 && w.dropFirst().allSatisfy { $0 == 0 }) { w[0] = 2 }
                    if !mont.millerRabin(witness: w) { prime = false; break }
                }
                if prime { return bytesOut }
            }
            c = []
        }
    }

    /// m^d mod n for an m below n (k bytes).
    func rawPrivate(_ input: [UInt8]) throws(TPMRC) -> [UInt8] {
        guard input.count == byteCount else { throw TPMRC.size }
        do {
            return Array(try key.blindSignature(for: input).rawRepresentation)
        } catch {
            throw TPMRC.value
        }
    }

    /// RSASSA-PKCS1-v1_5 over a digest.
    func signPKCS1(digest: [UInt8], hash: TPMAlgID) throws(TPMRC) -> [UInt8] {
        guard let prefix = digestInfoPrefixes[hash], digest.count == hash.digestSize else { throw TPMRC.scheme }
        let t = prefix + digest
        guard byteCount >= t.count + 11 else { throw TPMRC.keySize }
        return try rawPrivate([0x00, 0x01] + [UInt8](repeating: 0xFF, count: byteCount - t.count - 3) + [0x00] + t)
    }

    /// RSASSA-PSS over a digest, salt as long as the digest (as the reference TPM uses).
    func signPSS(digest: [UInt8], hash: TPMAlgID) throws(TPMRC) -> [UInt8] {
        guard let hLen = hash.digestSize, digest.count == hLen else { throw TPMRC.scheme }
        let modBits = modulus.count * 8 - (modulus.first?.leadingZeroBitCount ?? 0)
        let emBits = modBits - 1
        let emLen = (emBits + 7) / 8
        let sLen = min(hLen, emLen - hLen - 2)
        guard sLen >= 0 else { throw TPMRC.keySize }
        let salt = TPMCrypto.random(sLen)
        let h = try rc { try TPMCrypto.hash(hash, [UInt8](repeating: 0, count: 8), digest, salt) }
        let db = [UInt8](repeating: 0, count: emLen - sLen - hLen - 2) + [0x01] + salt
        let mask = try rc { try mgf1(hash, seed: h, length: db.count) }
        var masked = zip(db, mask).map { $0 ^ $1 }
        let topBits = 8 * emLen - emBits
        if topBits > 0 { masked[0] &= 0xFF >> topBits }
        let em = masked + h + [0xBC]
        return try rawPrivate([UInt8](repeating: 0, count: byteCount - em.count) + em)
    }

    /// RSAES-OAEP decryption with a label (Part 1, B.10.3: the TPM's secrets).
    func decryptOAEP(_ ciphertext: [UInt8], hash: TPMAlgID, label: [UInt8]) throws(TPMRC) -> [UInt8] {
        guard ciphertext.count == byteCount, BigUInt(Data(ciphertext)) < BigUInt(Data(modulus)) else { throw TPMRC.value }
        let em = try rawPrivate(ciphertext)
        do { return try RSAOAEP.decode(em, hash: hash, label: label) } catch { throw TPMRC.value }
    }

    /// RSAES-OAEP encryption with the public key.
    func encryptOAEP(_ message: [UInt8], hash: TPMAlgID, label: [UInt8]) throws(TPMRC) -> [UInt8] {
        try rc { try RSAOAEP.encrypt(message, modulus: modulus, exponent: exponent, hash: hash, label: label) }
    }
}

let digestInfoPrefixes: [TPMAlgID: [UInt8]] = [
    .sha1: [UInt8](hex: "3021300906052b0e03021a05000414")!,
    .sha256: [UInt8](hex: "3031300d060960864801650304020105000420")!,
    .sha384: [UInt8](hex: "3041300d060960864801650304020205000430")!,
    .sha512: [UInt8](hex: "3051300d060960864801650304020305000440")!,
]

/// MGF1 for PSS encoding.
func mgf1(_ alg: TPMAlgID, seed: [UInt8], length: Int) throws(TPMError) -> [UInt8] {
    var out: [UInt8] = []
    var counter: UInt32 = 0
    while out.count < length {
        out += try TPMCrypto.hash(alg, seed, withUnsafeBytes(of: counter.bigEndian, Array.init))
        counter += 1
    }
    return Array(out.prefix(length))
}

/// Runs a TPM2-library call inside the engine, mapping its error to a response code.
@inline(__always)
func rc<R>(_ body: () throws -> R) throws(TPMRC) -> R {
    do { return try body() } catch let error as TPMError {
        switch error.code {
        case .unsupported: throw TPMRC.hash
        case .invalidArgument: throw TPMRC.value
        default: throw TPMRC.failure
        }
    } catch let error as TPMRC {
        throw error
    } catch {
        throw TPMRC.failure
    }
}

/// The fields of a PKCS #1 RSAPrivateKey (RFC 8017, A.1.2) needed here.
func parsePKCS1PrivateKey(_ der: [UInt8]) -> (n: [UInt8], p: [UInt8])? {
    var i = 0
    func readTLV() -> (tag: UInt8, value: ArraySlice<UInt8>)? {
        guard i + 2 <= der.count else { return nil }
        let tag = der[i]
        var len = Int(der[i + 1])
        i += 2
        if len & 0x80 != 0 {
            let n = len & 0x7F
            guard n > 0, n <= 3, i + n <= der.count else { return nil }
            len = der[i..<i + n].reduce(0) { $0 << 8 | Int($1) }
            i += n
        }
        guard i + len <= der.count else { return nil }
        defer { i += len }
        return (tag, der[i..<i + len])
    }
    guard let seq = readTLV(), seq.tag == 0x30 else { return nil }
    i = seq.value.startIndex
    var ints: [ArraySlice<UInt8>] = []
    while ints.count < 5, let t = readTLV() {
        guard t.tag == 0x02 else { return nil }
        ints.append(t.value)
    }
    guard ints.count == 5 else { return nil }
    func strip(_ s: ArraySlice<UInt8>) -> [UInt8] { Array(s.drop { $0 == 0 }) }
    // version, n, e, d, p
    return (strip(ints[1]), strip(ints[4]))
}
