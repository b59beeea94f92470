import AttestationAPI
import Crypto
import _CryptoExtras
import Foundation
import MeasuredBoot

/// A token signing key: ES256 (P-256, the default) or RS256 (RSA 2048, PKCS#1 v1.5).
public enum TokenSigningKey: Sendable {
    case es256(P256.Signing.PrivateKey)
    case rs256(_RSA.Signing.PrivateKey)

    public var algorithm: String { switch self { case .es256: "ES256"; case .rs256: "RS256" } }

    public static func generate(_ algorithm: String) throws -> TokenSigningKey {
        switch algorithm {
        case "ES256": return .es256(P256.Signing.PrivateKey())
        case "RS256": return .rs256(try _RSA.Signing.PrivateKey(keySize: .bits2048))
        default: throw AttestationServiceError(.badRequest, "token algorithm \(algorithm) is not ES256 or RS256")
        }
    }

    public var pem: String { switch self { case .es256(let k): k.pemRepresentation; case .rs256(let k): k.pemRepresentation } }

    public init(algorithm: String, pem: String) throws {
        switch algorithm {
        case "ES256": self = .es256(try P256.Signing.PrivateKey(pemRepresentation: pem))
        case "RS256": self = .rs256(try _RSA.Signing.PrivateKey(pemRepresentation: pem))
        default: throw AttestationServiceError(.internal, "stored signing key has unknown algorithm \(algorithm)")
        }
    }

    /// The public key as a JWK, with its RFC 7638 thumbprint as `kid`.
    public var jwk: [String: String] {
        var j = thumbprintMembers
        j["use"] = "sig"; j["alg"] = algorithm; j["kid"] = keyID
        return j
    }

    var thumbprintMembers: [String: String] {
        switch self {
        case .es256(let k):
            let raw = k.publicKey.rawRepresentation   // x ‖ y
            return ["kty": "EC", "crv": "P-256", "x": TokenIssuer.base64url(raw.prefix(32)), "y": TokenIssuer.base64url(raw.suffix(32))]
        case .rs256(let k):
            guard let p = try? k.publicKey.getKeyPrimitives() else { return ["kty": "RSA"] }
            return ["kty": "RSA", "n": TokenIssuer.base64url(p.modulus), "e": TokenIssuer.base64url(p.publicExponent)]
        }
    }

    /// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
    public var keyID: String {
        let m = thumbprintMembers
        let canonical = "{" + m.keys.sorted().map { "\"\($0)\":\"\(m[$0]!)\"" }.joined(separator: ",") + "}"
        return TokenIssuer.base64url(Data(SHA256.hash(data: Data(canonical.utf8))))
    }

    func sign(_ input: Data) throws -> Data {
        switch self {
        case .es256(let k): return try k.signature(for: input).rawRepresentation   // JWS ES256: r ‖ s, 64 bytes
        case .rs256(let k): return try k.signature(for: input, padding: .insecurePKCS1v1_5).rawRepresentation
        }
    }
}

/// What a token says beyond the result: who, which evidence, which baseline.
public struct TokenContext: Sendable {
    public var vm: String
    public var nonce: String
    /// The relying party the token is for (`aud`).
    public var audience: String
    public var policy: AttestationPolicy
    public var attestationID: String?
    public var ekCertificateSubject: String?
    public var ekCertificateFingerprint: String?
    public var akName: String?
    public var baselineStatus: BaselineStatus?
    public var baseline: AttestationOutcome.BaselineInfo?
    public var rebooted: Bool?

    public init(vm: String, nonce: String, audience: String = AttestationService.defaultAudience, policy: AttestationPolicy,
                attestationID: String? = nil,
        ekCertificateSubject: String? = nil, ekCertificateFingerprint: String? = nil, akName: String? = nil,
        baselineStatus: BaselineStatus? = nil,
                baseline: AttestationOutcome.BaselineInfo? = nil, rebooted: Bool? = nil) {
        self.vm = vm; self.nonce = nonce; self.audience = audience; self.policy = policy; self.attestationID = attestationID
        self.ekCertificateSubject = ekCertificateSubject; self.ekCertificateFingerprint = ekCertificateFingerprint
        self.akName = akName; self.baselineStatus = baselineStatus; self.baseline = baseline; self.rebooted = rebooted
    }
}

/// Signs attestation results as JWTs shaped as an EAT Attestation Result (EAR): standard claims,
/// `ear.status` and an AR4SI trust vector, and the trusted-launch claims. Keys are published as a
/// JWK Set; a token names its key with `kid` (the RFC 7638 thumbprint).
public struct TokenIssuer: Sendable {
    public let issuer: String
    public let signingKey: TokenSigningKey
    public let lifetime: TimeInterval
    /// The key's RFC 7638 thumbprint, computed once.
    public let keyID: String

    public init(issuer: String, signingKey: TokenSigningKey, lifetime: TimeInterval = 300) {
        self.issuer = issuer; self.signingKey = signingKey; self.lifetime = lifetime; self.keyID = signingKey.keyID
    }

    public init(issuer: String, key: P256.Signing.PrivateKey = P256.Signing.PrivateKey(), lifetime: TimeInterval = 300) {
        self.init(issuer: issuer, signingKey: .es256(key), lifetime: lifetime)
    }

    static func base64url(_ d: some DataProtocol) -> String {
        if let s = d.withContiguousStorageIfAvailable({ base64url(bytes: $0) }) { return s }
        return base64url(bytes: [UInt8](d))
    }

    /// RFC 4648 §5 (URL and filename safe alphabet), without padding, as JWS wants (RFC 7515 §2).
    static func base64url(bytes: some RandomAccessCollection<UInt8>) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        let n = bytes.count
        let length = n / 3 * 4 + [0, 2, 3][n % 3]
        return String(unsafeUninitializedCapacity: length) { out in
            var o = 0
            var i = bytes.startIndex
            var left = n
            while left > 0 {
                let b0 = UInt32(bytes[i])
                let b1 = left > 1 ? UInt32(bytes[bytes.index(i, offsetBy: 1)]) : 0
                let b2 = left > 2 ? UInt32(bytes[bytes.index(i, offsetBy: 2)]) : 0
                let v = b0 << 16 | b1 << 8 | b2
                out[o] = alphabet[Int(v >> 18 & 63)]; out[o + 1] = alphabet[Int(v >> 12 & 63)]
                if left > 1 { out[o + 2] = alphabet[Int(v >> 6 & 63)] }
                if left > 2 { out[o + 3] = alphabet[Int(v & 63)] }
                o += min(left, 3) + 1
                i = bytes.index(i, offsetBy: min(left, 3))
                left -= min(left, 3)
            }
            return o
        }
    }

    public var jwk: [String: String] { signingKey.jwk }

    /// `/.well-known/jwks.json`.
    public func jwks(also previous: [TokenIssuer] = []) -> [String: Any] { ["keys": ([self] + previous).map(\.jwk)] }

    public func token(for result: AttestationResult, vm: String, nonce: String, audience: String = AttestationService.defaultAudience,
                      policy: AttestationPolicy, now: Date = Date()) throws -> String {
        try token(for: result, context: TokenContext(vm: vm, nonce: nonce, audience: audience, policy: policy), now: now).token
    }

    /// A signed token for a result; returns it with its `jti`.
    public func token(for result: AttestationResult, context c: TokenContext, now: Date = Date()) throws -> (token: String, id: String) {
        let t = Int(now.timeIntervalSince1970)
        let jti = randomUUIDString()
        let facts = result.facts
        // AR4SI trustworthiness claims from the checks' categories: 0 no claim (nothing of that
        // category was checked), 2 affirming, 96 contraindicated (a failure or an unknown).
        func tier(_ categories: Set<CheckCategory>) -> Int {
            let relevant = result.checks.filter { categories.contains($0.category) }
            return relevant.isEmpty ? 0 : (relevant.allSatisfy(\.passed) ? 2 : 96)
        }
        let status = result.passed ? "affirming" : "contraindicated"
        let claims = EARClaims(
            iss: issuer, sub: c.vm, aud: c.audience, iat: t, nbf: t, exp: t + Int(lifetime), jti: jti, eatNonce: c.nonce, earStatus: status,
            submods: .init(trustedLaunch: .init(earStatus: status, vector: .init(
                instanceIdentity: tier([.evidence]), hardware: tier([.evidence]) == 2 ? 2 : 96,
                executables: tier([.executables, .baseline]), configuration: tier([.configuration]), fileSystem: tier([.fileSystem])))),
            tlaunch: .init(
                secureboot: facts?.secureBoot.enabled ?? false,
                bootChain: facts?.bootChain.filter { $0.pcr == 4 }.map { .init(path: $0.filePath ?? $0.devicePath ?? "",
                                                                               sha256: $0.digests["sha256"] ?? "") } ?? [],
                kernelCommandLine: facts?.kernelCommandLine ?? "", pcrDigest: result.pcrDigest ?? "",
                policy: .init(id: c.policy.id, version: c.policy.version),
                checks: result.checks.map { .init(name: $0.name.rawValue, category: $0.category.rawValue, outcome: $0.outcome.rawValue) },
                vtpm: .init(ekCertificateSubject: c.ekCertificateSubject ?? "", ekCertificateSha256: c.ekCertificateFingerprint ?? "",
                            akName: c.akName ?? ""),
                baseline: c.baselineStatus?.rawValue,
                baselineSource: c.baseline.map { .init(source: $0.source.rawValue, since: $0.since, firstUse: $0.source == .learned,
                                                       attestationId: $0.attestationId) },
                rebooted: c.rebooted, attestationId: c.attestationID))
        let encoder = LeanJSONEncoder(sortedKeys: false)
        let h = Self.base64url(try encoder.encodeBytes(JWSHeader(alg: signingKey.algorithm, typ: "JWT", kid: keyID)))
        let p = Self.base64url(try encoder.encodeBytes(claims))
        let sig = try signingKey.sign(Data("\(h).\(p)".utf8))
        return ("\(h).\(p).\(Self.base64url(sig))", jti)
    }
}

/// A token's protected header (RFC 7515 §4.1).
struct JWSHeader: Encodable, JSONSelfWriting {
    var alg: String
    var typ: String
    var kid: String
    static let jsonKeys = JSONKeys(["alg", "typ", "kid"])
    func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
        JSONText.appendObject(Self.jsonKeys, sortedKeys: sortedKeys, to: &out) { field, out in
            JSONText.appendString(field == 0 ? alg : field == 1 ? typ : kid, to: &out)
            return true
        }
    }
}

/// The claims of a token (an EAR: EAT Attestation Result), encoded in this order. Every claim
/// set writes its own JSON (`JSONSelfWriting`: the bytes its `Encodable` conformance gives, tested
/// in both key orders): each attestation that passes signs one.
struct EARClaims: Encodable, JSONSelfWriting {
    var iss: String
    var sub: String
    var aud: String
    var iat: Int
    var nbf: Int
    var exp: Int
    var jti: String
    var eatProfile = "tag:github.com,2023:veraison/ear"
    var eatNonce: String
    var earStatus: String
    var verifierID = VerifierID()
    var submods: Submods
    var tlaunch: TrustedLaunchClaims

    enum CodingKeys: String, CodingKey, CaseIterable {
        case iss, sub, aud, iat, nbf, exp, jti, eatProfile = "eat_profile", eatNonce = "eat_nonce", earStatus = "ear.status"
        case verifierID = "ear.verifier-id", submods, tlaunch = "x-tlaunch"
    }
    static let fields = CodingKeys.allCases
    static let jsonKeys = JSONKeys(fields.map(\.rawValue))

    func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
        JSONText.appendObject(Self.jsonKeys, sortedKeys: sortedKeys, to: &out) { field, out in
            switch Self.fields[field] {
            case .iss: JSONText.appendString(iss, to: &out)
            case .sub: JSONText.appendString(sub, to: &out)
            case .aud: JSONText.appendString(aud, to: &out)
            case .iat: JSONText.appendInt(iat, to: &out)
            case .nbf: JSONText.appendInt(nbf, to: &out)
            case .exp: JSONText.appendInt(exp, to: &out)
            case .jti: JSONText.appendString(jti, to: &out)
            case .eatProfile: JSONText.appendString(eatProfile, to: &out)
            case .eatNonce: JSONText.appendString(eatNonce, to: &out)
            case .earStatus: JSONText.appendString(earStatus, to: &out)
            case .verifierID: verifierID.writeJSON(to: &out, sortedKeys: sortedKeys)
            case .submods: submods.writeJSON(to: &out, sortedKeys: sortedKeys)
            case .tlaunch: tlaunch.writeJSON(to: &out, sortedKeys: sortedKeys)
            }
            return true
        }
    }

    struct VerifierID: Encodable, JSONSelfWriting {
        var developer = "TrustedLaunch"
        var build = "tlaunch attestation 1"
        static let jsonKeys = JSONKeys(["developer", "build"])
        func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
            JSONText.appendObject(Self.jsonKeys, sortedKeys: sortedKeys, to: &out) { field, out in
                JSONText.appendString(field == 0 ? developer : build, to: &out)
                return true
            }
        }
    }

    struct Submods: Encodable, JSONSelfWriting {
        var trustedLaunch: Submod
        enum CodingKeys: String, CodingKey { case trustedLaunch = "trusted-launch" }
        static let jsonKeys = JSONKeys([CodingKeys.trustedLaunch.rawValue])
        func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
            JSONText.appendObject(Self.jsonKeys, sortedKeys: sortedKeys, to: &out) { _, out in
                trustedLaunch.writeJSON(to: &out, sortedKeys: sortedKeys)
                return true
            }
        }
    }

    struct Submod: Encodable, JSONSelfWriting {
        var earStatus: String
        var vector: Vector
        enum CodingKeys: String, CodingKey { case earStatus = "ear.status", vector = "ear.trustworthiness-vector" }
        static let jsonKeys = JSONKeys([CodingKeys.earStatus.rawValue, CodingKeys.vector.rawValue])
        func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
            JSONText.appendObject(Self.jsonKeys, sortedKeys: sortedKeys, to: &out) { field, out in
                field == 0 ? JSONText.appendString(earStatus, to: &out) : vector.writeJSON(to: &out, sortedKeys: sortedKeys)
                return true
            }
        }
    }

    struct Vector: Encodable, JSONSelfWriting {
        var instanceIdentity: Int
        var hardware: Int
        var executables: Int
        var configuration: Int
        var fileSystem: Int
        enum CodingKeys: String, CodingKey, CaseIterable {
            case instanceIdentity = "instance-identity", hardware, executables, configuration, fileSystem = "file-system"
        }
        static let fields = CodingKeys.allCases
        static let jsonKeys = JSONKeys(fields.map(\.rawValue))
        func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
            JSONText.appendObject(Self.jsonKeys, sortedKeys: sortedKeys, to: &out) { field, out in
                switch Self.fields[field] {
                case .instanceIdentity: JSONText.appendInt(instanceIdentity, to: &out)
                case .hardware: JSONText.appendInt(hardware, to: &out)
                case .executables: JSONText.appendInt(executables, to: &out)
                case .configuration: JSONText.appendInt(configuration, to: &out)
                case .fileSystem: JSONText.appendInt(fileSystem, to: &out)
                }
                return true
            }
        }
    }

    struct TrustedLaunchClaims: Encodable, JSONSelfWriting {
        var secureboot: Bool
        var bootChain: [Stage]
        var kernelCommandLine: String
        var pcrDigest: String
        var policy: PolicyRef
        var checks: [Check]
        var vtpm: VTPM
        var baseline: String?
        /// Where the baseline came from: `learned` with `firstUse` true is trust on first use.
        var baselineSource: BaselineSource?
        var rebooted: Bool?
        var attestationId: String?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case secureboot, bootChain, kernelCommandLine, pcrDigest, policy, checks, vtpm, baseline, baselineSource, rebooted
            case attestationId
        }
        static let fields = CodingKeys.allCases
        static let jsonKeys = JSONKeys(fields.map(\.rawValue))

        func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
            JSONText.appendObject(Self.jsonKeys, sortedKeys: sortedKeys, to: &out) { field, out in
                switch Self.fields[field] {
                case .secureboot: JSONText.appendBool(secureboot, to: &out)
                case .bootChain: JSONText.appendArray(bootChain, sortedKeys: sortedKeys, to: &out)
                case .kernelCommandLine: JSONText.appendString(kernelCommandLine, to: &out)
                case .pcrDigest: JSONText.appendString(pcrDigest, to: &out)
                case .policy: policy.writeJSON(to: &out, sortedKeys: sortedKeys)
                case .checks: JSONText.appendArray(checks, sortedKeys: sortedKeys, to: &out)
                case .vtpm: vtpm.writeJSON(to: &out, sortedKeys: sortedKeys)
                case .baseline:
                    guard let baseline else { return false }
                    JSONText.appendString(baseline, to: &out)
                case .baselineSource:
                    guard let baselineSource else { return false }
                    baselineSource.writeJSON(to: &out, sortedKeys: sortedKeys)
                case .rebooted:
                    guard let rebooted else { return false }
                    JSONText.appendBool(rebooted, to: &out)
                case .attestationId:
                    guard let attestationId else { return false }
                    JSONText.appendString(attestationId, to: &out)
                }
                return true
            }
        }

        struct Stage: Encodable, JSONSelfWriting {
            var path: String; var sha256: String
            func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {   // the same order either way
                JSONText.append("{\"path\":", to: &out); JSONText.appendString(path, to: &out)
                JSONText.append(",\"sha256\":", to: &out); JSONText.appendString(sha256, to: &out)
                JSONText.append("}", to: &out)
            }
        }
        /// The outcome's policy reference: the same two members, and the one writer for both.
        typealias PolicyRef = AttestationOutcome.PolicyRef
        struct Check: Encodable, JSONSelfWriting {
            var name: String; var category: String; var outcome: String
            func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
                let (firstKey, first, secondKey, second): (StaticString, String, StaticString, String) = sortedKeys
                    ? ("{\"category\":", category, ",\"name\":", name) : ("{\"name\":", name, ",\"category\":", category)
                JSONText.append(firstKey, to: &out); JSONText.appendString(first, to: &out)
                JSONText.append(secondKey, to: &out); JSONText.appendString(second, to: &out)
                JSONText.append(",\"outcome\":", to: &out); JSONText.appendString(outcome, to: &out)
                JSONText.append("}", to: &out)
            }
        }
        struct BaselineSource: Encodable, JSONSelfWriting {
            var source: String; var since: String; var firstUse: Bool; var attestationId: String?
            static let jsonKeys = JSONKeys(["source", "since", "firstUse", "attestationId"])
            func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
                JSONText.appendObject(Self.jsonKeys, sortedKeys: sortedKeys, to: &out) { field, out in
                    switch field {
                    case 0: JSONText.appendString(source, to: &out)
                    case 1: JSONText.appendString(since, to: &out)
                    case 2: JSONText.appendBool(firstUse, to: &out)
                    default:
                        guard let attestationId else { return false }
                        JSONText.appendString(attestationId, to: &out)
                    }
                    return true
                }
            }
        }
        struct VTPM: Encodable, JSONSelfWriting {
            var ekCertificateSubject: String; var ekCertificateSha256: String; var akName: String
            static let jsonKeys = JSONKeys(["ekCertificateSubject", "ekCertificateSha256", "akName"])
            func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
                JSONText.appendObject(Self.jsonKeys, sortedKeys: sortedKeys, to: &out) { field, out in
                    JSONText.appendString(field == 0 ? ekCertificateSubject : field == 1 ? ekCertificateSha256 : akName, to: &out)
                    return true
                }
            }
        }
    }
}

/// A random (version 4, RFC 9562 §5.4) UUID in lowercase, from the system's CSPRNG (getrandom):
/// Foundation's `UUID()` opens /dev/urandom on every call here, twice per attestation.
public func randomUUIDString() -> String {
    var g = SystemRandomNumberGenerator()
    var bytes = (0..<2).flatMap { _ in withUnsafeBytes(of: g.next() as UInt64) { Array($0) } }
    bytes[6] = bytes[6] & 0x0f | 0x40   // version 4
    bytes[8] = bytes[8] & 0x3f | 0x80   // variant 10
    let h = Array(hexString(bytes).utf8)
    return [h[0..<8], h[8..<12], h[12..<16], h[16..<20], h[20..<32]].map { String(decoding: $0, as: UTF8.self) }.joined(separator: "-")
}
