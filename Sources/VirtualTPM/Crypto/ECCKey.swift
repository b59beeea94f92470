import Crypto
import Foundation
import TPM2

/// A deterministic byte stream from a seed: the output of HMAC(seed, label ‖ context ‖ counter),
/// used to derive primary keys (the same seed and template always give the same key).
struct KDFStream {
    let hash: TPMAlgID
    let seed: [UInt8]
    let label: [UInt8]
    let context: [UInt8]
    private var counter: UInt32 = 0
    private var buffer: [UInt8] = []

    init(hash: TPMAlgID = .sha256, seed: [UInt8], label: String, context: [UInt8]) {
        self.hash = hash
        self.seed = seed
        self.label = Array(label.utf8) + [0]
        self.context = context
    }

    mutating func next(_ count: Int) throws(TPMRC) -> [UInt8] {
        while buffer.count < count {
            counter += 1
            buffer += try rc { try TPMCrypto.hmac(hash, key: seed, withUnsafeBytes(of: counter.bigEndian, Array.init), label, context) }
        }
        defer { buffer.removeFirst(count) }
        return Array(buffer.prefix(count))
    }
}

/// An ECC private key on a NIST curve.
enum ECCPrivateKey: @unchecked Sendable {
    case p256(P256.Signing.PrivateKey)
    case p384(P384.Signing.PrivateKey)
    case p521(P521.Signing.PrivateKey)

    init(curve: TPMECCCurve, scalar: [UInt8]) throws(TPMRC) {
        do {
            switch curve {
            case .nistP256: self = .p256(try P256.Signing.PrivateKey(rawRepresentation: Self.pad(scalar, 32)))
            case .nistP384: self = .p384(try P384.Signing.PrivateKey(rawRepresentation: Self.pad(scalar, 48)))
            case .nistP521: self = .p521(try P521.Signing.PrivateKey(rawRepresentation: Self.pad(scalar, 66)))
            default: throw TPMRC.curve
            }
        } catch let e as TPMRC {
            throw e
        } catch {
            throw TPMRC.key
        }
    }

    static func generate(curve: TPMECCCurve) throws(TPMRC) -> ECCPrivateKey {
        switch curve {
        case .nistP256: .p256(P256.Signing.PrivateKey())
        case .nistP384: .p384(P384.Signing.PrivateKey())
        case .nistP521: .p521(P521.Signing.PrivateKey())
        default: throw TPMRC.curve
        }
    }

    /// A scalar drawn from `stream` by rejection (a candidate ≥ n or 0 is drawn again).
    static func derive(curve: TPMECCCurve, stream: inout KDFStream) throws(TPMRC) -> ECCPrivateKey {
        guard let size = curve.coordinateSize else { throw TPMRC.curve }
        for _ in 0..<64 {
            var candidate = try stream.next(size)
            if curve == .nistP521 { candidate[0] &= 0x01 }
            if let k = try? ECCPrivateKey(curve: curve, scalar: candidate) { return k }
        }
        throw TPMRC.noResult
    }

    private static func pad(_ v: [UInt8], _ n: Int) -> [UInt8] {
        let t = Array(v.drop { $0 == 0 })
        return t.count >= n ? Array(t.suffix(n)) : [UInt8](repeating: 0, count: n - t.count) + t
    }

    var curve: TPMECCCurve {
        switch self {
        case .p256: .nistP256
        case .p384: .nistP384
        case .p521: .nistP521
        }
    }

    var scalar: [UInt8] {
        switch self {
        case .p256(let k): Array(k.rawRepresentation)
        case .p384(let k): Array(k.rawRepresentation)
        case .p521(let k): Array(k.rawRepresentation)
        }
    }

    /// The public point as fixed-size coordinates.
    var publicPoint: TPMSECCPoint {
        let x963: Data
        switch self {
        case .p256(let k): x963 = k.publicKey.x963Representation
        case .p384(let k): x963 = k.publicKey.x963Representation
        case .p521(let k): x963 = k.publicKey.x963Representation
        }
        let b = Array(x963)
        let size = (b.count - 1) / 2
        return TPMSECCPoint(x: Array(b[1...size]), y: Array(b[(size + 1)...]))
    }

    /// ECDSA over a digest; r and s at the curve's size.
    func signECDSA(digest: [UInt8]) throws(TPMRC) -> (r: [UInt8], s: [UInt8]) {
        let d = RawDigestBytes(bytes: digest)
        let raw: [UInt8]
        do {
            switch self {
            case .p256(let k): raw = Array(try k.signature(for: d).rawRepresentation)
            case .p384(let k): raw = Array(try k.signature(for: d).rawRepresentation)
            case .p521(let k): raw = Array(try k.signature(for: d).rawRepresentation)
            }
        } catch { throw TPMRC.failure }
        let half = raw.count / 2
        return (Array(raw[..<half]), Array(raw[half...]))
    }

    /// The x-coordinate of d·Q (one-pass ECDH, Part 1, C.6.1).
    func sharedX(with point: TPMSECCPoint) throws(TPMRC) -> [UInt8] {
        let x963: [UInt8]
        do { x963 = try eccPublicX963(curve, point) } catch { throw TPMRC.eccPoint }
        do {
            switch self {
            case .p256(let k):
                let agree = try P256.KeyAgreement.PrivateKey(rawRepresentation: k.rawRepresentation)
                return try agree.sharedSecretFromKeyAgreement(with: P256.KeyAgreement.PublicKey(x963Representation: x963)).withUnsafeBytes {
                    Array($0)
                }
            case .p384(let k):
                let agree = try P384.KeyAgreement.PrivateKey(rawRepresentation: k.rawRepresentation)
                return try agree.sharedSecretFromKeyAgreement(with: P384.KeyAgreement.PublicKey(x963Representation: x963)).withUnsafeBytes {
                    Array($0)
                }
            case .p521(let k):
                let agree = try P521.KeyAgreement.PrivateKey(rawRepresentation: k.rawRepresentation)
                return try agree.sharedSecretFromKeyAgreement(with: P521.KeyAgreement.PublicKey(x963Representation: x963)).withUnsafeBytes {
                    Array($0)
                }
            }
        } catch { throw TPMRC.eccPoint }
    }
}

/// SEC1 uncompressed point with padded coordinates; throws for a malformed point.
func eccPublicX963(_ curve: TPMECCCurve, _ p: TPMSECCPoint) throws(TPMRC) -> [UInt8] {
    guard let size = curve.coordinateSize else { throw TPMRC.curve }
    func pad(_ v: [UInt8]) throws(TPMRC) -> [UInt8] {
        let t = Array(v.drop { $0 == 0 })
        guard t.count <= size else { throw TPMRC.eccPoint }
        return [UInt8](repeating: 0, count: size - t.count) + t
    }
    return [0x04] + (try pad(p.x.bytes)) + (try pad(p.y.bytes))
}

/// Digest bytes for swift-crypto's ECDSA (which reads the bytes only).
struct RawDigestBytes: Digest {
    static var byteCount: Int { 64 }
    let bytes: [UInt8]
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try bytes.withUnsafeBytes(body) }
    func makeIterator() -> Array<UInt8>.Iterator { bytes.makeIterator() }
    var description: String { bytes.hexString }
    func hash(into hasher: inout Hasher) { hasher.combine(bytes) }
}
