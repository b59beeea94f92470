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
    public var policy: AttestationPolicy
    public var attestationID: String?
    public var ekCertificateSubject: String?
    public var ekCertificateFingerprint: String?
    public var akName: String?
    public var baselineStatus: String?
    public var rebooted: Bool?

    public init(vm: String, nonce: String, policy: AttestationPolicy, attestationID: String? = nil, ekCertificateSubject: String? = nil,
                ekCertificateFingerprint: String? = nil, akName: String? = nil, baselineStatus: String? = nil, rebooted: Bool? = nil) {
        self.vm = vm; self.nonce = nonce; self.policy = policy; self.attestationID = attestationID
        self.ekCertificateSubject = ekCertificateSubject; self.ekCertificateFingerprint = ekCertificateFingerprint
        self.akName = akName; self.baselineStatus = baselineStatus; self.rebooted = rebooted
    }
}

/// Signs attestation results as JWTs shaped as an EAT Attestation Result (EAR): standard claims,
/// `ear.status` and an AR4SI trust vector, and the trusted-launch claims. Keys are published as a
/// JWK Set; a token names its key with `kid` (the RFC 7638 thumbprint).
public struct TokenIssuer: Sendable {
    public let issuer: String
    public let signingKey: TokenSigningKey
    public let lifetime: TimeInterval

    public init(issuer: String, signingKey: TokenSigningKey, lifetime: TimeInterval = 3600) {
        self.issuer = issuer; self.signingKey = signingKey; self.lifetime = lifetime
    }

    public init(issuer: String, key: P256.Signing.PrivateKey = P256.Signing.PrivateKey(), lifetime: TimeInterval = 3600) {
        self.init(issuer: issuer, signingKey: .es256(key), lifetime: lifetime)
    }

    static func base64url(_ d: some DataProtocol) -> String {
        Data(d).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    public var jwk: [String: String] { signingKey.jwk }
    public var keyID: String { signingKey.keyID }

    /// `/.well-known/jwks.json`.
    public func jwks(also previous: [TokenIssuer] = []) -> [String: Any] { ["keys": ([self] + previous).map(\.jwk)] }

    public func token(for result: AttestationResult, vm: String, nonce: String, policy: AttestationPolicy, now: Date = Date()) throws -> String {
        try token(for: result, context: TokenContext(vm: vm, nonce: nonce, policy: policy), now: now).token
    }

    /// A signed token for a result; returns it with its `jti`.
    public func token(for result: AttestationResult, context c: TokenContext, now: Date = Date()) throws -> (token: String, id: String) {
        let header: [String: Any] = ["alg": signingKey.algorithm, "typ": "JWT", "kid": keyID]
        let t = Int(now.timeIntervalSince1970)
        let jti = UUID().uuidString.lowercased()
        let facts = result.facts
        // AR4SI trustworthiness claims: 2 affirming, 32 warning, 96 contraindicated, 99 cryptographic-validation failure.
        let failed = Set(result.checks.filter { !$0.passed }.map(\.name))
        func tier(_ names: Set<String>) -> Int { names.isDisjoint(with: failed) ? 2 : 96 }
        var tlaunch: [String: Any] = [
            "secureboot": facts?.secureBoot.enabled ?? false,
            "bootChain": facts?.bootChain.filter { $0.pcr == 4 }.map { app -> [String: Any] in
                ["path": app.filePath ?? app.devicePath ?? "", "sha256": app.digests["sha256"] ?? ""]
            } ?? [],
            "kernelCommandLine": facts?.kernelCommandLine ?? "",
            "pcrDigest": result.pcrDigest ?? "",
            "policy": ["id": c.policy.id, "version": c.policy.version] as [String: Any],
            "checks": result.checks.map { ["name": $0.name, "passed": $0.passed] as [String: Any] },
            "vtpm": ["ekCertificateSubject": c.ekCertificateSubject ?? "", "ekCertificateSha256": c.ekCertificateFingerprint ?? "",
                     "akName": c.akName ?? ""] as [String: Any],
        ]
        if let b = c.baselineStatus { tlaunch["baseline"] = b }
        if let r = c.rebooted { tlaunch["rebooted"] = r }
        if let id = c.attestationID { tlaunch["attestationId"] = id }
        let status = result.passed ? "affirming" : "contraindicated"
        let claims: [String: Any] = [
            "iss": issuer, "sub": c.vm, "iat": t, "nbf": t, "exp": t + Int(lifetime), "jti": jti,
            "eat_profile": "tag:github.com,2023:veraison/ear", "eat_nonce": c.nonce,
            "ear.status": status,
            "ear.verifier-id": ["developer": "TrustedLaunch", "build": "tlaunch attestation 1"],
            "submods": ["trusted-launch": [
                "ear.status": status,
                "ear.trustworthiness-vector": [
                    "instance-identity": tier(["quote", "nonce", "ak-certificate", "counters"]),
                    "hardware": 2,
                    "executables": tier(["boot-applications", "authority", "baseline", "replay"]),
                    "configuration": tier(["secure-boot", "kernel-command-line", "anomalies", "dbx"]),
                    "file-system": tier(["ima"]),
                ] as [String: Any],
            ] as [String: Any]],
            "x-tlaunch": tlaunch,
        ]
        let h = Self.base64url(try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
        let p = Self.base64url(try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys]))
        let sig = try signingKey.sign(Data("\(h).\(p)".utf8))
        return ("\(h).\(p).\(Self.base64url(sig))", jti)
    }
}
