import Crypto
import _CryptoExtras
import Foundation
import Synchronization

/// Hashes, HMACs and the key derivation functions of TPM 2.0 Library Part 1, 11.4.
public enum TPMCrypto {
    /// Hash of the concatenation of `parts` with `alg`.
    public static func hash(_ alg: TPMAlgID, _ parts: [UInt8]...) throws(TPMError) -> [UInt8] {
        try hash(alg, parts: parts)
    }

    public static func hash(_ alg: TPMAlgID, parts: [[UInt8]]) throws(TPMError) -> [UInt8] {
        func run<H: HashFunction>(_ h: inout H) -> [UInt8] {
            for p in parts { h.update(bytes: p) }
            return h.finalize().byteArray
        }
        switch alg {
        case .sha1: var h = Insecure.SHA1(); return run(&h)
        case .sha256: var h = SHA256(); return run(&h)
        case .sha384: var h = SHA384(); return run(&h)
        case .sha512: var h = SHA512(); return run(&h)
        default: throw TPMError(.unsupported, reason: "hash algorithm \(alg) is not implemented")
        }
    }

    /// HMAC over the concatenation of `parts`.
    public static func hmac(_ alg: TPMAlgID, key: [UInt8], _ parts: [UInt8]...) throws(TPMError) -> [UInt8] {
        try hmac(alg, key: key, parts: parts)
    }

    public static func hmac(_ alg: TPMAlgID, key: [UInt8], parts: [[UInt8]]) throws(TPMError) -> [UInt8] {
        let k = SymmetricKey(data: key)
        func run<H: HashFunction>(_: H.Type) -> [UInt8] {
            var m = HMAC<H>(key: k)
            for p in parts { p.withUnsafeBytes { m.update(data: $0) } }
            return m.finalize().withUnsafeBytes { Array($0) }
        }
        switch alg {
        case .sha1: return run(Insecure.SHA1.self)
        case .sha256: return run(SHA256.self)
        case .sha384: return run(SHA384.self)
        case .sha512: return run(SHA512.self)
        default: throw TPMError(.unsupported, reason: "HMAC with \(alg) is not implemented")
        }
    }

    /// Digest size of `alg` or an `unsupported` error.
    public static func digestSize(_ alg: TPMAlgID) throws(TPMError) -> Int {
        guard let n = alg.digestSize else { throw TPMError(.unsupported, reason: "\(alg) is not a hash algorithm") }
        return n
    }

    /// A label as KDFa/KDFe use it: the string's bytes and a terminating zero.
    static func labelBytes(_ label: String) -> [UInt8] {
        var l = Array(label.utf8)
        if l.last != 0 { l.append(0) }
        return l
    }

    /// KDFa (Part 1, 11.4.10.2): SP 800-108 counter-mode KDF with HMAC.
    /// K(i) = HMAC(key, [i]32 ‖ Label ‖ 00 ‖ contextU ‖ contextV ‖ [bits]32); the first `bits` bits.
    public static func kdfa(_ alg: TPMAlgID, key: [UInt8], label: String, contextU: [UInt8], contextV: [UInt8],
                            bits: Int) throws(TPMError) -> [UInt8] {
        let bytes = (bits + 7) / 8
        let l = labelBytes(label)
        let bitsBE = be32(UInt32(bits))
        var out: [UInt8] = []
        out.reserveCapacity(bytes + 64)
        var counter: UInt32 = 1
        while out.count < bytes {
            out += try hmac(alg, key: key, be32(counter), l, contextU, contextV, bitsBE)
            counter += 1
        }
        out.removeLast(out.count - bytes)
        if bits % 8 != 0 { out[0] &= UInt8((1 << (bits % 8)) - 1) }
        return out
    }

    /// KDFe (Part 1, 11.4.10.3): SP 800-56A concatenation KDF.
    /// K(i) = H([i]32 ‖ Z ‖ Label ‖ 00 ‖ partyUInfo ‖ partyVInfo).
    public static func kdfe(_ alg: TPMAlgID, z: [UInt8], label: String, partyUInfo: [UInt8], partyVInfo: [UInt8],
                            bits: Int) throws(TPMError) -> [UInt8] {
        let bytes = (bits + 7) / 8
        let l = labelBytes(label)
        var out: [UInt8] = []
        var counter: UInt32 = 1
        while out.count < bytes {
            out += try hash(alg, be32(counter), z, l, partyUInfo, partyVInfo)
            counter += 1
        }
        out.removeLast(out.count - bytes)
        if bits % 8 != 0 { out[0] &= UInt8((1 << (bits % 8)) - 1) }
        return out
    }

    /// MGF1 (PKCS #1 v2.2, B.2.1).
    static func mgf1(_ alg: TPMAlgID, seed: [UInt8], length: Int) throws(TPMError) -> [UInt8] {
        var out: [UInt8] = []
        var counter: UInt32 = 0
        while out.count < length {
            out += try hash(alg, seed, be32(counter))
            counter += 1
        }
        return Array(out.prefix(length))
    }

    /// AES in CFB mode with a full-block feedback, as TPM parameter and credential encryption uses it.
    public static func aesCFB(encrypt: Bool, key: [UInt8], iv: [UInt8], _ data: [UInt8]) throws(TPMError) -> [UInt8] {
        guard [16, 24, 32].contains(key.count), iv.count == 16 else {
            throw TPMError(.invalidArgument, reason: "AES-CFB needs a 128/192/256-bit key and a 16-byte IV")
        }
        if data.isEmpty { return [] }
        do {
            let k = SymmetricKey(data: key)
            let v = try AES._CFB.IV(ivBytes: iv)
            return Array(encrypt ? try AES._CFB.encrypt(data, using: k, iv: v) : try AES._CFB.decrypt(data, using: k, iv: v))
        } catch {
            throw TPMError(.unsupported, reason: "AES-CFB failed: \(error)")
        }
    }

    /// Cryptographically random bytes: AES-256-CTR keystream under a key drawn from BoringSSL's
    /// CSPRNG (itself seeded by the kernel), a fresh key for every 4 KiB. Nonces and keys for
    /// every command come from here, so it must be cheap.
    public static func random(_ count: Int) -> [UInt8] {
        guard count > 0 else { return [] }
        return randomSource.withLock { $0.take(count) }
    }
}

/// The state behind ``TPMCrypto/random(_:)``.
struct RandomBlocks {
    private var buffer: [UInt8] = []
    private var used = 0

    mutating func take(_ count: Int) -> [UInt8] {
        if count > 1024 {
            return SymmetricKey(size: SymmetricKeySize(bitCount: count * 8)).withUnsafeBytes { Array($0) }
        }
        if used + count > buffer.count { refill() }
        defer { used += count }
        return Array(buffer[used..<(used + count)])
    }

    private mutating func refill() {
        let key = SymmetricKey(size: .bits256)
        let block = 4096
        if let nonce = try? AES._CTR.Nonce(nonceBytes: [UInt8](repeating: 0, count: 12)),
           let stream = try? AES._CTR.encrypt([UInt8](repeating: 0, count: block), using: key, nonce: nonce) {
            buffer = Array(stream)
        } else {
            buffer = SymmetricKey(size: SymmetricKeySize(bitCount: block * 8)).withUnsafeBytes { Array($0) }
        }
        used = 0
    }
}

let randomSource = Mutex(RandomBlocks())

@inline(__always)
func be32(_ v: UInt32) -> [UInt8] {
    [UInt8(truncatingIfNeeded: v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8),
     UInt8(truncatingIfNeeded: v)]
}

@inline(__always)
func be16(_ v: UInt16) -> [UInt8] {
    [UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)]
}
