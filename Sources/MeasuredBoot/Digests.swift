import Crypto
import TPM2

/// The hash algorithms a replay can compute, by TPM_ALG_ID. Banks of other algorithms still
/// parse (their digest sizes come from the log's Spec ID event); they just cannot be replayed.
public enum EventLogHash {
    /// Whether `replay` can compute this bank.
    public static func isSupported(_ alg: TPMAlgID) -> Bool {
        switch alg {
        case .sha1, .sha256, .sha384, .sha512, .sm3_256: return true
        default: return false
        }
    }

    /// The digest size the TCG Algorithm Registry gives, for the algorithms we know.
    public static func digestSize(_ alg: TPMAlgID) -> Int? {
        switch alg {
        case .sha1: return 20
        case .sha256, .sm3_256, .sha3_256: return 32
        case .sha384, .sha3_384: return 48
        case .sha512, .sha3_512: return 64
        default: return nil
        }
    }

    /// The digest of the concatenated parts, or nil for an algorithm we cannot compute.
    public static func hash(_ alg: TPMAlgID, _ parts: ArraySlice<UInt8>...) -> [UInt8]? {
        switch alg {
        case .sha1: var h = Insecure.SHA1(); for p in parts { h.update(bytes: p) }; return h.finalize().byteArray
        case .sha256: var h = SHA256(); for p in parts { h.update(bytes: p) }; return h.finalize().byteArray
        case .sha384: var h = SHA384(); for p in parts { h.update(bytes: p) }; return h.finalize().byteArray
        case .sha512: var h = SHA512(); for p in parts { h.update(bytes: p) }; return h.finalize().byteArray
        case .sm3_256: var h = SM3(); for p in parts { h.update(p) }; return h.finalize()
        default: return nil
        }
    }

    public static func hash(_ alg: TPMAlgID, _ data: [UInt8]) -> [UInt8]? { hash(alg, data[...]) }

    /// PCR extend: new = H(old || digest).
    public static func extend(_ alg: TPMAlgID, _ pcr: [UInt8], _ digest: ArraySlice<UInt8>) -> [UInt8]? {
        switch alg {
        case .sha1: var h = Insecure.SHA1(); h.update(bytes: pcr); h.update(bytes: digest); return h.finalize().byteArray
        case .sha256: var h = SHA256(); h.update(bytes: pcr); h.update(bytes: digest); return h.finalize().byteArray
        case .sha384: var h = SHA384(); h.update(bytes: pcr); h.update(bytes: digest); return h.finalize().byteArray
        default: return hash(alg, pcr[...], digest)
        }
    }
}

/// SM3 (GB/T 32905-2016; ISO/IEC 10118-3), the hash of the TPM's SM3_256 banks. Swift-crypto does
/// not provide it; this is written from the standard and checked against its test vectors.
struct SM3 {
    private var v: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) =
        (0x7380_166F, 0x4914_B2B9, 0x1724_42D7, 0xDA8A_0600, 0xA96F_30BC, 0x1631_38AA, 0xE38D_EE4D, 0xB0FB_0E4E)
    private var buffer: [UInt8] = []
    private var length: UInt64 = 0

    mutating func update<C: Collection<UInt8>>(_ data: C) {
        length &+= UInt64(data.count)
        buffer.append(contentsOf: data)
        var start = 0
        while buffer.count - start >= 64 {
            compress(buffer[start..<start + 64])
            start += 64
        }
        if start > 0 { buffer.removeFirst(start) }
    }

    mutating func finalize() -> [UInt8] {
        let bits = length &* 8
        var pad: [UInt8] = [0x80]
        let rem = (buffer.count + 1) % 64
        pad += [UInt8](repeating: 0, count: rem <= 56 ? 56 - rem : 120 - rem)
        for i in (0..<8).reversed() { pad.append(UInt8(truncatingIfNeeded: bits >> (UInt64(i) * 8))) }
        buffer += pad
        var start = 0
        while start < buffer.count { compress(buffer[start..<start + 64]); start += 64 }
        buffer = []
        var out: [UInt8] = []
        for w in [v.0, v.1, v.2, v.3, v.4, v.5, v.6, v.7] {
            out += [UInt8(w >> 24), UInt8(w >> 16 & 0xFF), UInt8(w >> 8 & 0xFF), UInt8(w & 0xFF)]
        }
        return out
    }

    @inline(__always) private static func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 {
        let k = n % 32
        return k == 0 ? x : (x << k) | (x >> (32 - k))
    }
    @inline(__always) private static func p0(_ x: UInt32) -> UInt32 { x ^ rotl(x, 9) ^ rotl(x, 17) }
    @inline(__always) private static func p1(_ x: UInt32) -> UInt32 { x ^ rotl(x, 15) ^ rotl(x, 23) }

    private mutating func compress(_ block: ArraySlice<UInt8>) {
        var w = [UInt32](repeating: 0, count: 68)
        let b = block.startIndex
        for j in 0..<16 {
            w[j] = UInt32(block[b + 4 * j]) << 24 | UInt32(block[b + 4 * j + 1]) << 16
                | UInt32(block[b + 4 * j + 2]) << 8 | UInt32(block[b + 4 * j + 3])
        }
        for j in 16..<68 {
            w[j] = Self.p1(w[j - 16] ^ w[j - 9] ^ Self.rotl(w[j - 3], 15)) ^ Self.rotl(w[j - 13], 7) ^ w[j - 6]
        }
        var (a, bb, c, d, e, f, g, h) = v
        for j in 0..<64 {
            let t: UInt32 = j < 16 ? 0x79CC_4519 : 0x7A87_9D8A
            let ss1 = Self.rotl(Self.rotl(a, 12) &+ e &+ Self.rotl(t, UInt32(j)), 7)
            let ss2 = ss1 ^ Self.rotl(a, 12)
            let ff = j < 16 ? a ^ bb ^ c : (a & bb) | (a & c) | (bb & c)
            let gg = j < 16 ? e ^ f ^ g : (e & f) | (~e & g)
            let tt1 = ff &+ d &+ ss2 &+ (w[j] ^ w[j + 4])
            let tt2 = gg &+ h &+ ss1 &+ w[j]
            d = c
            c = Self.rotl(bb, 9)
            bb = a
            a = tt1
            h = g
            g = Self.rotl(f, 19)
            f = e
            e = Self.p0(tt2)
        }
        v = (v.0 ^ a, v.1 ^ bb, v.2 ^ c, v.3 ^ d, v.4 ^ e, v.5 ^ f, v.6 ^ g, v.7 ^ h)
    }
}
