/// Fixed-width unsigned arithmetic modulo an odd number, in Montgomery form, for the one job
/// that needs speed: Miller–Rabin tests while deriving RSA primes deterministically. Numbers are
/// little-endian arrays of 64-bit limbs, all of the modulus's length. Built optimized even in
/// debug builds (see Package.swift), because a debug bignum makes key derivation take minutes.
public struct Montgomery: Sendable {
    public let modulus: [UInt64]
    let n0inv: UInt64
    let r2: [UInt64]
    let one: [UInt64]

    /// `modulus` must be odd and more than one limb's worth of bits is not required.
    public init?(modulus: [UInt64]) {
        guard let low = modulus.first, low & 1 == 1 else { return nil }
        var m = modulus
        while m.count > 1 && m.last == 0 { m.removeLast() }
        self.modulus = m
        // -n^-1 mod 2^64 by Newton iteration.
        var inv: UInt64 = 1
        for _ in 0..<7 { inv = inv &* (2 &- m[0] &* inv) }
        n0inv = 0 &- inv
        // R mod n and R^2 mod n by doubling.
        let k = m.count
        var x = [UInt64](repeating: 0, count: k)
        x[0] = 1
        for _ in 0..<(64 * k) { x = Self.doubleMod(x, m) }
        one = x
        var y = x
        for _ in 0..<(64 * k) { y = Self.doubleMod(y, m) }
        r2 = y
    }

    static func geq(_ a: [UInt64], _ b: [UInt64]) -> Bool {
        for i in stride(from: a.count - 1, through: 0, by: -1) where a[i] != b[i] {
            return a[i] > b[i]
        }
        return true
    }

    /// a - b (a ≥ b).
    static func sub(_ a: inout [UInt64], _ b: [UInt64]) {
        var borrow: UInt64 = 0
        for i in 0..<a.count {
            let (d1, o1) = a[i].subtractingReportingOverflow(b[i])
            let (d2, o2) = d1.subtractingReportingOverflow(borrow)
            a[i] = d2
            borrow = (o1 ? 1 : 0) + (o2 ? 1 : 0)
        }
    }

    /// 2a mod n for a < n.
    static func doubleMod(_ a: [UInt64], _ n: [UInt64]) -> [UInt64] {
        var r = a
        var carry: UInt64 = 0
        for i in 0..<r.count {
            let next = r[i] >> 63
            r[i] = r[i] << 1 | carry
            carry = next
        }
        if carry == 1 || geq(r, n) { sub(&r, n) }
        return r
    }

    /// Montgomery product a·b·R^-1 mod n (CIOS).
    public func mul(_ a: [UInt64], _ b: [UInt64]) -> [UInt64] {
        let k = modulus.count
        var t = [UInt64](repeating: 0, count: k + 2)
        modulus.withUnsafeBufferPointer { n in
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    t.withUnsafeMutableBufferPointer { t in
                        for i in 0..<k {
                            var carry: UInt64 = 0
                            let bi = b[i]
                            for j in 0..<k {
                                let (hi, lo) = a[j].multipliedFullWidth(by: bi)
                                let (s1, c1) = lo.addingReportingOverflow(t[j])
                                let (s2, c2) = s1.addingReportingOverflow(carry)
                                t[j] = s2
                                carry = hi &+ (c1 ? 1 : 0) &+ (c2 ? 1 : 0)
                            }
                            let (s, c) = t[k].addingReportingOverflow(carry)
                            t[k] = s
                            t[k + 1] = c ? 1 : 0
                            let m = t[0] &* n0inv
                            let (hi0, lo0) = n[0].multipliedFullWidth(by: m)
                            let (_, cz) = lo0.addingReportingOverflow(t[0])
                            carry = hi0 &+ (cz ? 1 : 0)
                            for j in 1..<k {
                                let (hi, lo) = n[j].multipliedFullWidth(by: m)
                                let (s1, c1) = lo.addingReportingOverflow(t[j])
                                let (s2, c2) = s1.addingReportingOverflow(carry)
                                t[j - 1] = s2
                                carry = hi &+ (c1 ? 1 : 0) &+ (c2 ? 1 : 0)
                            }
                            let (s3, c3) = t[k].addingReportingOverflow(carry)
                            t[k - 1] = s3
                            t[k] = t[k + 1] &+ (c3 ? 1 : 0)
                        }
                    }
                }
            }
        }
        var r = Array(t[0..<k])
        if t[k] != 0 || Self.geq(r, modulus) { Self.sub(&r, modulus) }
        return r
    }

    public func toMontgomery(_ a: [UInt64]) -> [UInt64] { mul(pad(a), r2) }
    public func fromMontgomery(_ a: [UInt64]) -> [UInt64] {
        var o = [UInt64](repeating: 0, count: modulus.count)
        o[0] = 1
        return mul(a, o)
    }

    func pad(_ a: [UInt64]) -> [UInt64] {
        var r = a
        if r.count < modulus.count { r += [UInt64](repeating: 0, count: modulus.count - r.count) }
        return Array(r.prefix(modulus.count))
    }

    /// base^exponent mod n (base < n), left-to-right with a 4-bit window.
    public func pow(_ base: [UInt64], _ exponent: [UInt64]) -> [UInt64] {
        let b = toMontgomery(base)
        var table = [one]
        for i in 1..<16 { table.append(mul(table[i - 1], b)) }
        var acc = one
        var started = false
        for limb in exponent.reversed() {
            for shift in stride(from: 60, through: 0, by: -4) {
                let nib = Int((limb >> UInt64(shift)) & 0xF)
                if started { for _ in 0..<4 { acc = mul(acc, acc) } }
                if nib != 0 { acc = mul(acc, table[nib]); started = true }
            }
        }
        return fromMontgomery(acc)
    }

    /// One Miller–Rabin round with `witness` (2 ≤ witness ≤ n − 2): false means composite.
    public func millerRabin(witness: [UInt64]) -> Bool {
        var nMinus1 = modulus
        nMinus1[0] -= 1  // odd modulus: no borrow
        var d = nMinus1
        var r = 0
        while d[0] & 1 == 0 {
            for i in 0..<d.count {
                d[i] = d[i] >> 1 | (i + 1 < d.count ? d[i + 1] << 63 : 0)
            }
            r += 1
        }
        var x = pow(witness, d)
        let oneN = [1] + [UInt64](repeating: 0, count: modulus.count - 1)
        if x == oneN || x == nMinus1 { return true }
        var xm = toMontgomery(x)
        let minusOneM = toMontgomery(nMinus1)
        for _ in 0..<max(0, r - 1) {
            xm = mul(xm, xm)
            if xm == minusOneM { return true }
        }
        x = fromMontgomery(xm)
        return false
    }
}

/// Big-endian bytes ↔ little-endian limbs.
public enum Limbs {
    public static func from(bigEndian bytes: [UInt8]) -> [UInt64] {
        var limbs = [UInt64](repeating: 0, count: (bytes.count + 7) / 8)
        for (i, b) in bytes.reversed().enumerated() {
            limbs[i / 8] |= UInt64(b) << UInt64((i % 8) * 8)
        }
        return limbs.isEmpty ? [0] : limbs
    }

    public static func bigEndian(_ limbs: [UInt64], count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        for i in 0..<count {
            let limb = i / 8
            guard limb < limbs.count else { break }
            out[count - 1 - i] = UInt8(truncatingIfNeeded: limbs[limb] >> UInt64((i % 8) * 8))
        }
        return out
    }

    /// a mod m for a small m.
    public static func mod(_ a: [UInt64], _ m: UInt64) -> UInt64 {
        var r: UInt64 = 0
        for limb in a.reversed() {
            r = m.dividingFullWidth((high: r, low: limb)).remainder
        }
        return r
    }

    /// a + small, in place (no overflow beyond the top limb expected).
    public static func add(_ a: inout [UInt64], _ v: UInt64) {
        var carry = v
        for i in 0..<a.count where carry != 0 {
            let (s, o) = a[i].addingReportingOverflow(carry)
            a[i] = s
            carry = o ? 1 : 0
        }
    }
}
