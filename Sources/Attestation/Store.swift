import AttestationAPI
import Foundation

/// An enrolled VM: its TPM identity and the quote counters last seen (reboots and rollbacks are
/// judged against them).
public struct AgentRecord: Sendable, Codable, Hashable {
    public var vm: String
    /// TPMT_PUBLIC of the EK and AK, hex.
    public var ekPublic: String
    public var akPublic: String
    /// DER of the EK certificate, base64 (nil for an EK enrolled without one: never by this service).
    public var ekCertificate: String?
    /// The AK certificate this service issued, PEM.
    public var akCertificate: String
    public var enrolledAt: Int64
    public var clock: Int64?
    public var resetCount: Int64?
    public var restartCount: Int64?
    /// An admin allowed the next enrolment to bind another TPM (EK) to this VM.
    public var rebindAllowed: Bool

    public init(vm: String, ekPublic: String, akPublic: String, ekCertificate: String?, akCertificate: String, enrolledAt: Int64,
                clock: Int64? = nil, resetCount: Int64? = nil, restartCount: Int64? = nil, rebindAllowed: Bool = false) {
        self.vm = vm; self.ekPublic = ekPublic; self.akPublic = akPublic; self.ekCertificate = ekCertificate
        self.akCertificate = akCertificate; self.enrolledAt = enrolledAt
        self.clock = clock; self.resetCount = resetCount; self.restartCount = restartCount; self.rebindAllowed = rebindAllowed
    }
}

/// An enrolment waiting for the agent's ActivateCredential answer.
public struct PendingEnrolment: Sendable, Codable, Hashable {
    public var id: String
    public var vm: String
    public var ekPublic: String
    public var akPublic: String
    public var ekCertificate: String?
    /// SHA-256 of the credential secret, hex (the secret itself is never stored).
    public var secretHash: String
    public var expires: Int64
    public init(id: String, vm: String, ekPublic: String, akPublic: String, ekCertificate: String?, secretHash: String, expires: Int64) {
        self.id = id; self.vm = vm; self.ekPublic = ekPublic; self.akPublic = akPublic; self.ekCertificate = ekCertificate;
        self.secretHash = secretHash; self.expires = expires
    }
}

/// What the store knows of a nonce presented with evidence.
public enum NonceStatus: Sendable, Hashable {
    /// Issued for this VM, unused until now (now used), not expired; with the audience the
    /// relying party asked for when it was issued.
    case fresh(audience: String?)
    case expired(at: Int64)
    case alreadyUsed(at: Int64)
    case issuedForAnotherVM(String)
    case unknown
}

/// One attestation as kept in history.
public struct AttestationRecord: Sendable, Codable, Hashable {
    public var id: String
    public var vm: String
    public var time: Int64
    public var passed: Bool
    /// SHA-256 over the canonical evidence JSON, hex.
    public var evidenceDigest: String
    /// The stored result (checks, facts summary, baseline changes), JSON.
    public var result: String
    public var tokenID: String?
    /// The evidence itself (JSON), when the service keeps evidence for re-verification.
    public var evidence: String?
    public init(id: String, vm: String, time: Int64, passed: Bool, evidenceDigest: String, result: String, tokenID: String?,
                evidence: String?) {
        self.id = id; self.vm = vm; self.time = time; self.passed = passed; self.evidenceDigest = evidenceDigest; self.result = result;
        self.tokenID = tokenID; self.evidence = evidence
    }
}

/// A VM's baseline: the boot components of a healthy boot (or predicted values), approved.
public struct BaselineRecord: Sendable, Codable, Hashable {
    public var vm: String
    public var source: BaselineSource
    public var components: [BaselineComponent]
    public var attestationID: String?
    public var updated: Int64
    public init(vm: String, source: BaselineSource, components: [BaselineComponent], attestationID: String?, updated: Int64) {
        self.vm = vm; self.source = source; self.components = components; self.attestationID = attestationID; self.updated = updated
    }
}

public struct APITokenRecord: Sendable, Codable, Hashable {
    /// `signin`: a one-time sign-in code for the dashboard (short-lived, exchanged once for a
    /// session; no API route accepts it).
    public enum Role: String, Sendable, Codable, CaseIterable { case admin, reader, agent, signin }
    /// SHA-256 of the token, hex.
    public var hash: String
    public var role: Role
    /// For agent tokens: the only VM the token may act for.
    public var vm: String?
    public var created: Int64
    /// When it stops being accepted (ms since 1970); nil: never.
    public var expires: Int64?
    /// When an admin revoked it; nil: not revoked.
    public var revoked: Int64?
    public init(hash: String, role: Role, vm: String?, created: Int64, expires: Int64? = nil, revoked: Int64? = nil) {
        self.hash = hash; self.role = role; self.vm = vm; self.created = created; self.expires = expires; self.revoked = revoked
    }
    /// How the token is named in lists and revocations: the start of its hash (never the token).
    public var id: String { String(hash.prefix(12)) }
    /// Accepted at `now` (ms): not revoked, not expired.
    public func valid(at now: Int64) -> Bool { revoked == nil && (expires.map { now < $0 } ?? true) }
}

public struct SigningKeyRecord: Sendable, Codable, Hashable {
    public var kid: String
    public var algorithm: String
    /// The private key, PEM (PKCS#8).
    public var privateKey: String
    public var created: Int64
    /// When the key stopped signing; it stays published until every token it signed expired.
    public var retired: Int64?
    public init(kid: String, algorithm: String, privateKey: String, created: Int64, retired: Int64?) {
        self.kid = kid; self.algorithm = algorithm; self.privateKey = privateKey; self.created = created; self.retired = retired
    }
}

public struct PolicyRecord: Sendable, Codable, Hashable {
    public var id: String
    public var version: Int
    /// The policy document, JSON.
    public var document: String
    public var created: Int64
    public init(id: String, version: Int, document: String, created: Int64) {
        self.id = id; self.version = version; self.document = document; self.created = created
    }
}

/// Everything the attestation service keeps. Instances of the service share one store and keep
/// nothing another instance would need in memory, so any instance can answer any request.
/// Every operation is a single atomic statement (or a transaction inside the implementation).
public protocol AttestationStore: Sendable {
    /// A short name for logs ("sqlite", "postgres").
    var kind: String { get }
    func ping() async throws

    func insertNonce(_ nonce: String, vm: String, audience: String?, expires: Int64, now: Int64) async throws
    /// Marks the nonce used if it was issued for `vm` (once, across every instance) and says what
    /// it was; another VM's nonce is left unused.
    func consumeNonce(_ nonce: String, vm: String, now: Int64) async throws -> NonceStatus

    func insertPendingEnrolment(_ p: PendingEnrolment) async throws
    /// Removes and returns `vm`'s pending enrolment `id` (each challenge is answered at most once,
    /// and only for its VM).
    func takePendingEnrolment(id: String, vm: String) async throws -> PendingEnrolment?

    /// Binds a VM to its TPM on first enrolment; false when the VM is enrolled already.
    func insertAgentIfAbsent(_ a: AgentRecord) async throws -> Bool
    /// A new AK (and certificates) for the TPM the VM is bound to: only when `a.ekPublic` is that
    /// TPM's EK; the TPM counters are kept. False when the VM is bound to another EK.
    func reenrolAgent(_ a: AgentRecord) async throws -> Bool
    /// Binds the VM to another TPM: only when an admin allowed it (the flag is consumed, the
    /// counters start afresh). False otherwise.
    func rebindAgent(_ a: AgentRecord) async throws -> Bool
    /// Lets the VM's next enrolment bind another TPM; false when the VM is not enrolled.
    func allowRebind(vm: String) async throws -> Bool
    func agent(vm: String) async throws -> AgentRecord?
    func agents() async throws -> [AgentRecord]
    /// Stores the quote counters if they move forward from the stored ones; false when they do not.
    func advanceCounters(vm: String, clock: Int64, resetCount: Int64, restartCount: Int64) async throws -> Bool

    func baseline(vm: String) async throws -> BaselineRecord?
    func putBaseline(_ b: BaselineRecord) async throws
    /// Sets the baseline only if the VM has none (first healthy boot, raced by two instances).
    func putBaselineIfAbsent(_ b: BaselineRecord) async throws -> Bool
    func deleteBaseline(vm: String) async throws

    /// How the VM's first baseline is set: "learn" (default), "approve", "predicted".
    func baselineMode(vm: String) async throws -> String?
    func setBaselineMode(vm: String, mode: String) async throws

    /// Forgets a deleted VM: its nonces, pending enrolments, TPM binding, baseline, settings and
    /// agent tokens go; its attestations stay in history under `archivedAs` (a name no VM can
    /// have), so a new VM of the same name starts with nothing of the old one.
    func forget(vm: String, archivedAs: String) async throws

    func appendAttestation(_ r: AttestationRecord) async throws
    func attestations(vm: String, limit: Int) async throws -> [AttestationRecord]
    func attestation(id: String) async throws -> AttestationRecord?

    func insertAPIToken(_ t: APITokenRecord) async throws
    func apiToken(hash: String) async throws -> APITokenRecord?
    /// Every token, newest first.
    func apiTokens() async throws -> [APITokenRecord]
    /// Revokes the token whose hash starts with `id` (at `at`); the tokens that matched.
    func revokeAPIToken(id: String, at: Int64) async throws -> Int
    /// Revokes the token with this hash if it is not revoked yet; true for the one call that did.
    func revokeAPIToken(hash: String, at: Int64) async throws -> Bool

    func signingKeys() async throws -> [SigningKeyRecord]
    func insertSigningKey(_ k: SigningKeyRecord) async throws
    func retireSigningKeys(except kid: String, at: Int64) async throws
    /// Replaces a key's stored form (sealing a clear key) if it is still `was`.
    func updateSigningKey(kid: String, privateKey: String, was: String) async throws

    func policies() async throws -> [PolicyRecord]
    func insertPolicy(_ p: PolicyRecord) async throws
}
