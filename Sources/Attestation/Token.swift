import Crypto
import Foundation
import MeasuredBoot

/// Signs attestation results as JWTs (ES256) shaped as an EAT Attestation Result (EAR): standard
/// claims, `ear.status` and an AR4SI-style trust vector, and the trusted-launch claims. Keys are
/// published as a JWK Set; a token names its key with `kid` (the RFC 7638 thumbprint).
public struct TokenIssuer: Sendable {
    public let issuer: String
    public let key: P256.Signing.PrivateKey
    public let lifetime: TimeInterval

    public init(issuer: String, key: P256.Signing.PrivateKey = P256.Signing.PrivateKey(), lifetime: TimeInterval = 3600) {
        self.issuer = issuer; self.key = key; self.lifetime = lifetime
    }

    static func base64url(_ d: some DataProtocol) -> String {
        Data(d).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// The public key as a JWK (EC P-256: x and y, 32 bytes each).
    public var jwk: [String: String] {
        let raw = key.publicKey.rawRepresentation   // x ‖ y
        return ["kty": "EC", "crv": "P-256", "x": Self.base64url(raw.prefix(32)), "y": Self.base64url(raw.suffix(32)),
                "use": "sig", "alg": "ES256", "kid": keyID]
    }

    /// RFC 7638 thumbprint: SHA-256 of the required members in lexicographic order.
    public var keyID: String {
        let raw = key.publicKey.rawRepresentation
        let canonical = "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"\(Self.base64url(raw.prefix(32)))\",\"y\":\"\(Self.base64url(raw.suffix(32)))\"}"
        return Self.base64url(Data(SHA256.hash(data: Data(canonical.utf8))))
    }

    /// `/.well-known/jwks.json`.
    public func jwks(also previous: [TokenIssuer] = []) -> [String: Any] { ["keys": ([self] + previous).map(\.jwk)] }

    /// A signed token for a passing result.
    public func token(for result: AttestationResult, vm: String, nonce: String, policy: AttestationPolicy, now: Date = Date()) throws -> String {
        let header: [String: Any] = ["alg": "ES256", "typ": "JWT", "kid": keyID]
        let t = Int(now.timeIntervalSince1970)
        let facts = result.facts
        var claims: [String: Any] = [
            "iss": issuer, "sub": vm, "iat": t, "nbf": t, "exp": t + Int(lifetime), "jti": UUID().uuidString,
            "eat_profile": "tag:github.com,2023:veraison/ear", "eat_nonce": nonce,
            "ear.verifier-id": ["developer": "TrustedLaunch", "build": "attestation 1"],
            "submods": ["trusted-launch": [
                "ear.status": result.passed ? "affirming" : "contraindicated",
                "ear.trustworthiness-vector": [
                    "instance-identity": 2, "executables": result.passed ? 2 : 96, "configuration": result.passed ? 2 : 96,
                ] as [String: Any],
            ] as [String: Any]],
            "x-tlaunch": [
                "secureboot": facts?.secureBoot.enabled ?? false,
                "bootChain": facts?.bootChain.filter { $0.pcr == 4 }.compactMap(\.filePath) ?? [],
                "kernelCommandLine": facts?.kernelCommandLine ?? "",
                "pcrDigest": result.pcrDigest ?? "",
                "policy": ["id": policy.id, "version": policy.version] as [String: Any],
                "checks": result.checks.map { ["name": $0.name, "passed": $0.passed] as [String: Any] },
            ] as [String: Any],
        ]
        claims["ear.status"] = result.passed ? "affirming" : "contraindicated"
        let h = Self.base64url(try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
        let p = Self.base64url(try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys]))
        let signingInput = Data("\(h).\(p)".utf8)
        let sig = try key.signature(for: signingInput)
        return "\(h).\(p).\(Self.base64url(sig.rawRepresentation))"   // JWS ES256: r ‖ s, 64 bytes
    }
}
