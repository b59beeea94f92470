import AttestationAPI
import Crypto
import Foundation
import MeasuredBoot
import Synchronization
import TPM2
import X509

/// What the store keeps as an attestation's result (the outcome without the token, plus the
/// components, so a person can approve this boot as the new baseline).
struct StoredResult: Codable {
    var outcome: AttestationOutcome
    var components: [BaselineComponent]?
    /// The Name of the AK that signed the quote: a boot is approved as a baseline only for the
    /// TPM the VM is bound to now.
    var akName: String?
    /// `components` already encoded (the verified boot's, `VerifiedBoot.componentsJSON`); not stored.
    var componentsJSON: [UInt8]?

    enum CodingKeys: String, CodingKey { case outcome, components, akName }

    init(outcome: AttestationOutcome, components: [BaselineComponent]?, akName: String?, componentsJSON: [UInt8]? = nil) {
        self.outcome = outcome; self.components = components; self.akName = akName; self.componentsJSON = componentsJSON
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(outcome, forKey: .outcome)
        if let components, let componentsJSON {
            try c.encode(PreEncoded(value: components, json: componentsJSON), forKey: .components)
        } else {
            try c.encodeIfPresent(components, forKey: .components)
        }
        try c.encodeIfPresent(akName, forKey: .akName)
    }
}

extension StoredResult: JSONSelfWriting {
    static let jsonKeys = JSONKeys(["outcome", "components", "akName"])

    /// The components come from their JSON made once (`componentsJSON`, sorted keys) when that
    /// order is asked for, as `PreEncoded` gives them to the generic path.
    func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
        JSONText.appendObject(Self.jsonKeys, sortedKeys: sortedKeys, to: &out) { field, out in
            switch field {
            case 0: outcome.writeJSON(to: &out, sortedKeys: sortedKeys)
            case 1:
                guard let components else { return false }
                if sortedKeys, let componentsJSON { out.append(contentsOf: componentsJSON) } else {
                    JSONText.appendArray(components, sortedKeys: sortedKeys, to: &out)
                }
            default:
                guard let akName else { return false }
                JSONText.appendString(akName, to: &out)
            }
            return true
        }
    }
}

/// The attestation service: enrolment, nonces, verification, baselines, tokens, history. It
/// holds only configuration and caches that any instance can rebuild from the store.
public final class AttestationService: Sendable {
    public let store: any AttestationStore
    public let anchors: TrustAnchors
    public let akCA: AKCertificateAuthority
    public let issuer: String
    /// Seals the token-signing keys in the database (nil: they are stored in clear).
    public let keySealer: KeySealer?
    public let nonceLifetime: TimeInterval
    public let tokenLifetime: TimeInterval
    /// The token audience when the relying party named none.
    public let tokenAudience: String
    public let keepEvidence: Bool
    /// How long a policy or key read from the store is reused before it is read again.
    public let cacheLifetime: TimeInterval
    private let cache = Mutex<Cache>(Cache())
    private let factsCache = BootFactsCache(capacity: 4096)
    /// What a token says of an EK certificate (issuer and serial, SHA-256 fingerprint), by the
    /// SHA-256 of the certificate as stored (base64 DER): every attestation of a VM names the same
    /// certificate, parsed once instead of each time; keyed by digest so a full memo holds 32-byte
    /// keys, not the certificates.
    private let ekIdentities = BoundedMemo<[UInt8], EKIdentity>(capacity: 65536)

    struct Cache {
        var keys: (loaded: Date, signing: TokenIssuer, published: [TokenSigningKey])?
        var policy: (loaded: Date, policy: AttestationPolicy)?
    }

    public init(store: any AttestationStore, anchors: TrustAnchors, akCA: AKCertificateAuthority, issuer: String,
        nonceLifetime: TimeInterval = 120, tokenLifetime: TimeInterval = 300, tokenAudience: String = AttestationService.defaultAudience,
                keepEvidence: Bool = true, cacheLifetime: TimeInterval = 2, keySealer: KeySealer? = nil) {
        self.store = store; self.anchors = anchors; self.akCA = akCA; self.issuer = issuer; self.keySealer = keySealer
        self.nonceLifetime = nonceLifetime; self.tokenLifetime = tokenLifetime; self.tokenAudience = tokenAudience
        self.keepEvidence = keepEvidence; self.cacheLifetime = cacheLifetime
    }

    /// The audience of tokens nobody asked a particular audience for: the platform itself.
    public static let defaultAudience = "urn:tlaunch:platform"

    static func ms(_ d: Date) -> Int64 { Int64(d.timeIntervalSince1970 * 1000) }
    /// RFC 3339 UTC with milliseconds, e.g. 2026-12-01T15:46:52.123Z (formatted directly: a
    /// Foundation date formatter costs hundreds of microseconds to create on Linux).
    public static func rfc3339(_ ms: Int64) -> String {
        var t = time_t(ms / 1000)
        var tm = tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ n: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, n - s.count)) + s }
        let date = "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))"
        return "\(date)T\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2)).\(pad(Int32(ms % 1000), 3))Z"
    }
    static func random(_ n: Int) -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        var out = [UInt8](); out.reserveCapacity(n)
        while out.count < n { withUnsafeBytes(of: g.next() as UInt64) { out += $0.prefix(n - out.count) } }
        return out
    }

    /// VM names: 1–64 of letters, digits, '.', '_', '-'.
    // MARK: Nonces

    /// An audience: a URI or name of at most 256 printable characters.
    static func checkAudience(_ a: String) throws(AttestationServiceError) {
        guard (1...256).contains(a.utf8.count), a.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7F }) else {
            throw AttestationServiceError(.badRequest, "audience must be 1–256 printable characters without spaces (the relying party's "
                                                     + "URI or name)", field: "audience")
        }
    }

    public func issueNonce(vm: String, audience: String? = nil, now: Date = Date()) async throws -> NonceGrant {
        try VMName.check(vm)
        if let audience { try Self.checkAudience(audience) }
        let nonce = hexString(Self.random(32))
        let expires = Self.ms(now.addingTimeInterval(nonceLifetime))
        try await store.insertNonce(nonce, vm: vm, audience: audience, expires: expires, now: Self.ms(now))
        let coverage = try await currentPolicy(now: now).coverage
        return NonceGrant(nonce: nonce, expires: Self.rfc3339(expires), expiresIn: Int(nonceLifetime),
                          quote: .init(banks: coverage.banks.map(PCRValues.bankName), pcrs: coverage.pcrs),
                          audience: audience ?? tokenAudience)
    }

    // MARK: Enrolment

    static func decodePublic(_ hex: String, field: String) throws(AttestationServiceError) -> TPMTPublic {
        guard hex.count <= 4096, let bytes = [UInt8](hex: hex) else {
            throw AttestationServiceError(.badRequest, "\(field) must be a TPMT_PUBLIC in hex", field: field)
        }
        do { return try TPMTPublic(tpmBytes: bytes) } catch {
            throw AttestationServiceError(.badRequest, "\(field) does not decode as TPMT_PUBLIC: \(error)", field: field)
        }
    }

    /// Whether `vm` may enrol the TPM of `ekPublic` (canonical hex): a VM is bound to the TPM of
    /// its first enrolment; the same TPM may enrol again (a new AK, the counters kept); another
    /// TPM only after an admin allowed a rebind.
    func checkBinding(vm: String, ekPublic: String) async throws {
        guard let bound = try await store.agent(vm: vm), bound.ekPublic != ekPublic, !bound.rebindAllowed else { return }
        throw AttestationServiceError(.conflict, """
            enrolment refused [identity]: \(vm) is bound to another TPM (EK first enrolled at \(Self.rfc3339(bound.enrolledAt))): a VM's \
            vTPM does not change. If it was replaced on purpose, an admin allows the new one: `tlaunch vm rebind-tpm \(vm)` (POST \
            /v1/vms/\(vm)/enrolment/rebind); that raises an alert and resets the baseline
            """, field: "ekPublic")
    }

    public func beginEnrolment(vm: String, _ request: EnrolmentRequest, now: Date = Date()) async throws -> EnrolmentChallenge {
        try VMName.check(vm)
        let ek = try Self.decodePublic(request.ekPublic, field: "ekPublic")
        let ak = try Self.decodePublic(request.akPublic, field: "akPublic")
        guard let certB64 = request.ekCertificate, let der = Data(base64Encoded: certB64), !der.isEmpty else {
            throw AttestationServiceError(.badRequest, "ekCertificate (DER, base64) is required: read it from the TPM's NV index "
                                                     + "0x01C00002 (RSA) or 0x01C0000A (ECC)", field: "ekCertificate")
        }
        do {
            // The EK MakeCredential encrypts to is the certificate's key in the TCG template.
            let (_, certified) = try await Enrolment.validateEK(certificate: Array(der), ekPublic: ek, anchors: anchors)
            let ekHex = hexString(try certified.tpmBytes())
            try await checkBinding(vm: vm, ekPublic: ekHex)
            let (secret, blob, enc) = try Enrolment.challenge(ekPublic: certified, akPublic: ak)
            let id = randomUUIDString()
            let expires = Self.ms(now.addingTimeInterval(300))
            try await store.insertPendingEnrolment(PendingEnrolment(id: id, vm: vm, ekPublic: ekHex,
                                                                    akPublic: request.akPublic.lowercased(),
                                                                    ekCertificate: certB64,
                                                                    secretHash: hexString(Array(SHA256.hash(data: secret))),
                                                                    expires: expires))
            return EnrolmentChallenge(id: id, credentialBlob: hexString(try blob.tpmBytes()),
                                      encryptedSecret: hexString(try enc.tpmBytes()),
                                      expires: Self.rfc3339(expires))
        } catch let e as EnrolmentError {
            throw AttestationServiceError(
                .forbidden, e.description,
                field: [.ekCertificate, .endorsementKey].contains(e.code)
                    ? (e.code == .ekCertificate ? "ekCertificate" : "ekPublic") : "akPublic")
        } catch let e as TPMError {
            throw AttestationServiceError(.badRequest, "the EK cannot be encoded: \(e.reason)", field: "ekPublic")
        }
    }

    public func completeEnrolment(vm: String, id: String, _ answer: ActivationAnswer, now: Date = Date()) async throws -> EnrolmentReceipt {
        try VMName.check(vm)
        guard let secret = [UInt8](hex: answer.secret), secret.count <= 64 else {
            throw AttestationServiceError(.badRequest, "secret must be the activated credential in hex", field: "secret")
        }
        guard id.count <= 64, let pending = try await store.takePendingEnrolment(id: id, vm: vm) else {
            throw AttestationServiceError(.notFound, "no enrolment \(id.prefix(64)) of \(vm) is waiting: it was answered already, belongs "
                                                   + "to another VM, or never began; start again")
        }
        guard pending.expires >= Self.ms(now) else { throw AttestationServiceError(.gone, "enrolment \(id) expired: start again") }
        guard constantTimeEqual(Array(SHA256.hash(data: secret)), [UInt8](hex: pending.secretHash) ?? []) else {
            throw AttestationServiceError(.forbidden, "enrolment refused [activation]: credential activation returned another secret: the "
                                                    + "AK is not in the TPM of this EK")
        }
        let ak = try Self.decodePublic(pending.akPublic, field: "akPublic")
        let cert = try akCA.issue(vm: vm, akPublic: ak)
        let pem = try cert.serializeAsPEM().pemString
        let record = AgentRecord(vm: vm, ekPublic: pending.ekPublic, akPublic: pending.akPublic, ekCertificate: pending.ekCertificate,
                                 akCertificate: pem, enrolledAt: Self.ms(now))
        // Bind (first enrolment), re-enrol the bound TPM, or rebind when an admin allowed it;
        // each a single conditional statement, so a race between two TPMs binds one.
        if try await store.insertAgentIfAbsent(record) {
            // bound on first enrolment
        } else if try await store.reenrolAgent(record) {
            // the same TPM again: a new AK, the counters kept
        } else if try await store.rebindAgent(record) {
            try await store.deleteBaseline(vm: vm)
        } else {
            try await checkBinding(vm: vm, ekPublic: pending.ekPublic)
            throw AttestationServiceError(.conflict, "enrolment of \(vm) changed meanwhile: start again")
        }
        let ekSubject = pending.ekCertificate.flatMap { Data(base64Encoded: $0) }.flatMap { try? Certificate(derEncoded: Array($0)) }
        return EnrolmentReceipt(vm: vm, akName: hexString(try ak.name()), akCertificate: pem,
                                ekCertificateSubject: ekSubject.map { "\($0.issuer) / serial \($0.serialNumber)" } ?? "")
    }

    /// Lets the VM's next enrolment bind another TPM (an admin's decision: the vTPM was replaced);
    /// the baseline is reset when the new TPM enrols. Callers raise an alert.
    public func allowRebind(vm: String) async throws {
        try VMName.check(vm)
        guard try await store.allowRebind(vm: vm) else {
            throw AttestationServiceError(.notFound, "\(vm) is not enrolled: its first enrolment binds any TPM whose EK certificate "
                                                   + "chains to a trusted CA")
        }
    }

    /// Forgets a deleted VM (nonces, enrolments, binding, baseline, settings, agent tokens); its
    /// attestations stay in history under `NAME#deleted-<ms>`, which no new VM can be called.
    public func forget(vm: String, now: Date = Date()) async throws {
        try VMName.check(vm)
        try await store.forget(vm: vm, archivedAs: "\(vm)#deleted-\(Self.ms(now))")
    }

    // MARK: Baseline modes

    public func baselineMode(vm: String) async throws -> BaselineMode {
        try VMName.check(vm)
        return try await store.baselineMode(vm: vm).flatMap(BaselineMode.init(rawValue:)) ?? .learn
    }

    public func setBaselineMode(vm: String, _ mode: BaselineMode) async throws {
        try VMName.check(vm)
        try await store.setBaselineMode(vm: vm, mode: mode.rawValue)
    }

    // MARK: Policy

    public func currentPolicy(now: Date = Date()) async throws -> AttestationPolicy {
        if let c = cache.withLock({ $0.policy }), now.timeIntervalSince(c.loaded) < cacheLifetime { return c.policy }
        let latest = try await store.policies().max { ($0.created, $0.version) < ($1.created, $1.version) }
        let policy = try latest.map { try Self.parsePolicy(Data($0.document.utf8)) } ?? .default
        cache.withLock { $0.policy = (now, policy) }
        return policy
    }

    public static func parsePolicy(_ data: Data) throws(AttestationServiceError) -> AttestationPolicy {
        do { return try JSONDecoder().decode(AttestationPolicy.self, from: data) } catch let DecodingError.dataCorrupted(c) {
            throw AttestationServiceError(.badRequest, "policy: \(c.debugDescription)",
                                          field: c.codingPath.map(\.stringValue).joined(separator: "."))
        } catch let DecodingError.typeMismatch(_, c) {
            throw AttestationServiceError(.badRequest, "policy: \(c.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong "
                                                     + "type: \(c.debugDescription)")
        } catch {
            throw AttestationServiceError(.badRequest, "policy is not a JSON policy document: \(error)")
        }
    }

    /// Stores a new version of the policy; it applies to every instance within `cacheLifetime`.
    public func putPolicy(_ p: AttestationPolicy, now: Date = Date()) async throws -> AttestationPolicy {
        var p = p
        let existing = try await store.policies().filter { $0.id == p.id }.map(\.version).max() ?? 0
        p.version = max(p.version, existing + 1)
        let e = JSONEncoder(); e.outputFormatting = [.sortedKeys]
        try await store.insertPolicy(PolicyRecord(id: p.id, version: p.version, document: String(decoding: try e.encode(p), as: UTF8.self),
                                                  created: Self.ms(now)))
        cache.withLock { $0.policy = nil }
        return p
    }

    // MARK: Token keys

    /// The signing key (the newest unretired one; created on first use) and the keys to publish.
    /// With a key sealer, keys are stored sealed, and keys stored in clear by an older version
    /// are sealed on first load.
    public func keys(now: Date = Date()) async throws -> (signing: TokenIssuer, published: [TokenSigningKey]) {
        if let c = cache.withLock({ $0.keys }), now.timeIntervalSince(c.loaded) < cacheLifetime { return (c.signing, c.published) }
        var records = try await store.signingKeys()
        if !records.contains(where: { $0.retired == nil }) {
            let k = try TokenSigningKey.generate("ES256")
            try await store.insertSigningKey(
                SigningKeyRecord(
                    kid: k.keyID, algorithm: k.algorithm, privateKey: try stored(k.pem, kid: k.keyID), created: Self.ms(now), retired: nil))
            records = try await store.signingKeys()
        }
        if let keySealer {
            for r in records where !KeySealer.isSealed(r.privateKey) {
                try await store.updateSigningKey(kid: r.kid, privateKey: try keySealer.seal(r.privateKey, kid: r.kid), was: r.privateKey)
            }
        }
        guard let current = records.filter({ $0.retired == nil }).max(by: { ($0.created, $0.kid) < ($1.created, $1.kid) }) else {
            throw AttestationServiceError(.internal, "no token signing key")
        }
        let signing = TokenIssuer(issuer: issuer, signingKey: try TokenSigningKey(algorithm: current.algorithm, pem: try clear(current)),
                                  lifetime: tokenLifetime)
        // A retired key stays published until every token it signed has expired.
        let horizon = Self.ms(now) - Int64(tokenLifetime * 1000) - 60_000
        let published = try records.filter { $0.retired == nil || $0.retired! >= horizon }.map {
            try TokenSigningKey(algorithm: $0.algorithm, pem: try clear($0))
        }
        cache.withLock { $0.keys = (now, signing, published) }
        return (signing, published)
    }

    /// A private key as the database is to hold it: sealed when there is a sealer.
    func stored(_ pem: String, kid: String) throws -> String { try keySealer.map { try $0.seal(pem, kid: kid) } ?? pem }

    /// A stored key's PEM. A sealed key without a sealer is an error that says what to give.
    func clear(_ r: SigningKeyRecord) throws -> String {
        guard KeySealer.isSealed(r.privateKey) else { return r.privateKey }
        guard let keySealer else {
            throw AttestationServiceError(.internal, "token-signing key \(r.kid) is sealed: give this instance the key-encryption key "
                                                   + "(TLAUNCH_KEY, or the data folder's token-keys.key)")
        }
        return try keySealer.open(r.privateKey, kid: r.kid)
    }

    /// A new signing key; the old ones stop signing but stay in the JWKS until their tokens expire.
    public func rotateKey(algorithm: String = "ES256", now: Date = Date()) async throws -> String {
        let k = try TokenSigningKey.generate(algorithm)
        try await store.insertSigningKey(SigningKeyRecord(kid: k.keyID, algorithm: k.algorithm, privateKey: try stored(k.pem, kid: k.keyID),
                                                          created: Self.ms(now), retired: nil))
        try await store.retireSigningKeys(except: k.keyID, at: Self.ms(now))
        cache.withLock { $0.keys = nil }
        return k.keyID
    }

    public func jwks(now: Date = Date()) async throws -> [String: Any] {
        ["keys": try await keys(now: now).published.map(\.jwk)]
    }

    // MARK: Attestation

    /// Verifies evidence for `vm`, stores the result and, when it passed, returns a token.
    /// `raw`: the evidence as received (kept and digested as is; re-encoded when absent).
    public func attest(vm: String, evidence: Evidence, raw: Data? = nil, now: Date = Date()) async throws -> AttestationOutcome {
        try VMName.check(vm)
        // Everything structural first: bad input is refused before anything is written.
        let decoded: DecodedEvidence
        do { decoded = try DecodedEvidence(evidence) } catch {
            throw AttestationServiceError(.badRequest, error.description, field: error.field)
        }
        guard let agent = try await store.agent(vm: vm) else {
            throw AttestationServiceError(.notFound, "\(vm) is not enrolled: run `tlaunch agent enroll` in the VM first")
        }
        let policy = try await currentPolicy(now: now)
        var checks: [Check] = []
        var audience: String?
        // Freshness: single use, this VM's, not expired.
        switch try await store.consumeNonce(hexString(decoded.nonce), vm: vm, now: Self.ms(now)) {
        case .fresh(let a):
            audience = a
            checks.append(Check(.nonce, passed: true, "answers a fresh nonce issued for \(vm), used once"))
        case .expired(let at): checks.append(Check(.nonce, passed: false, "the nonce expired at \(Self.rfc3339(at)): evidence must answer "
                                                                        + "a nonce within \(Int(nonceLifetime)) s of its issue"))
        case .alreadyUsed(let at): checks.append(Check(.nonce, passed: false,
                                                       "the nonce was already used at \(Self.rfc3339(at)): this evidence is a replay"))
        case .issuedForAnotherVM(let other): checks.append(Check(.nonce, passed: false, "the nonce was issued for \(other), not \(vm) (it "
                                                                                      + "stays unused for \(other))"))
        case .unknown: checks.append(Check(.nonce, passed: false,
                                           "the nonce was never issued by this service: get one from POST /v1/vms/\(vm)/nonce"))
        }
        var result = AttestationResult(checks: checks, facts: nil, pcrDigest: nil)
        var components: [BaselineComponent]?
        var changes: [BaselineChange] = []
        var baselineStatus: BaselineStatus?
        var baselineInfo: AttestationOutcome.BaselineInfo?
        var rebooted: Bool?
        let akPublic = try Self.decodePublic(agent.akPublic, field: "akPublic")
        if result.passed {
            if let problem = akCA.check(pem: agent.akCertificate, vm: vm, akPublic: akPublic, now: now) {
                result.checks.append(Check(.akCertificate, passed: false, problem))
            } else {
                result.checks.append(Check(.akCertificate, passed: true, "the AK is certified for \(vm) by this service's attestation CA"))
            }
        }
        let id = randomUUIDString()
        if result.passed {
            let v = AttestationVerifier.verify(decoded, akPublic: akPublic, policy: policy, cache: factsCache)
            result.checks += v.checks
            result.facts = v.facts; result.pcrDigest = v.pcrDigest; result.clock = v.clock
            result.verified = v.verified; result.quoted = v.quoted; result.components = v.components
            result.componentsJSON = v.componentsJSON
            // Counters: only for a quote whose signature verified.
            if let clock = v.clock, v.checks.contains(where: { $0.name == .quote && $0.passed }) {
                let moved = try await store.advanceCounters(vm: vm, clock: Int64(clock.clock), resetCount: Int64(clock.resetCount),
                                                            restartCount: Int64(clock.restartCount))
                let at = (result.checks.firstIndex { $0.name == .quote } ?? result.checks.count - 1) + 1
                if moved {
                    rebooted = agent.resetCount.map { Int64(clock.resetCount) > $0 }
                    result.checks.insert(Check(.counters, passed: true, rebooted == true
                        ? "the VM rebooted since its last attestation (TPM reset count \(agent.resetCount ?? 0) → \(clock.resetCount))"
                        : "TPM clock \(clock.clock) ms, reset \(clock.resetCount), restart \(clock.restartCount): moving forward"), at: at)
                } else {
                    result.checks.insert(Check(.counters, passed: false,
                        "the quote's TPM counters (clock \(clock.clock), reset \(clock.resetCount), restart \(clock.restartCount)) are "
                      + "behind the last seen (clock \(agent.clock ?? 0), reset \(agent.resetCount ?? 0), restart "
                      + "\(agent.restartCount ?? 0)): an old quote, or the vTPM state was rolled back"), at: at)
                }
            }
            // Baseline: compared only for evidence that verified (a broken log proves no components).
            if let current = v.components, let quoted = v.quoted, result.checks.passed(.evidence) {
                components = current
                if let b = try await store.baseline(vm: vm) {
                    changes = Baseline.diff(b, current: current, quoted: quoted)
                    baselineStatus = changes.isEmpty ? .matches : .changed
                    baselineInfo = .init(source: b.source, since: Self.rfc3339(b.updated), attestationId: b.attestationID)
                    result.checks.append(Baseline.check(b, changes: changes))
                } else {
                    let first = try await firstBaseline(vm: vm, id: id, result: result, components: current, now: now)
                    result.checks.append(first.check)
                    baselineStatus = first.status
                    baselineInfo = first.info
                }
            }
        }
        var outcome = AttestationOutcome(
            id: id, vm: vm, time: Self.rfc3339(Self.ms(now)), passed: result.passed,
            status: result.passed ? "affirming" : "contraindicated",
            checks: result.checks, baseline: baselineStatus, baselineSource: baselineInfo, changes: changes, rebooted: rebooted, token: nil,
            tokenID: nil,
            policy: .init(id: policy.id, version: policy.version),
            facts: result.facts.map { .init($0, pcrDigest: result.pcrDigest) })
        let akName = (try? akPublic.name()).map(hexString)
        var stored = StoredResult(outcome: outcome, components: components, akName: akName, componentsJSON: result.componentsJSON)
        if result.passed {
            let ek = agent.ekCertificate.map(ekIdentity)
            let (signing, _) = try await keys(now: now)
            let t = try signing.token(for: result, context: TokenContext(
                vm: vm, nonce: hexString(decoded.nonce), audience: audience ?? tokenAudience, policy: policy, attestationID: id,
                ekCertificateSubject: ek?.subject,
                ekCertificateFingerprint: ek?.fingerprint,
                akName: akName, baselineStatus: baselineStatus, baseline: baselineInfo, rebooted: rebooted), now: now)
            outcome.token = t.token; outcome.tokenID = t.id
            stored.outcome.tokenID = t.id
        }
        let enc = LeanJSONEncoder()
        let evidenceJSON = try raw ?? enc.encode(evidence)
        try await store.appendAttestation(AttestationRecord(
            id: id, vm: vm, time: Self.ms(now), passed: result.passed, evidenceDigest: hexString(Array(SHA256.hash(data: evidenceJSON))),
            result: String(decoding: try enc.encode(stored), as: UTF8.self), tokenID: outcome.tokenID,
            evidence: keepEvidence ? String(decoding: evidenceJSON, as: UTF8.self) : nil))
        return outcome
    }

    /// The token's words for a stored EK certificate (base64 DER): its issuer and serial when it
    /// parses, and the fingerprint of its bytes when they decode.
    struct EKIdentity: Sendable { var subject: String?; var fingerprint: String? }
    func ekIdentity(_ stored: String) -> EKIdentity {
        let key = Array(SHA256.hash(data: Data(stored.utf8)))
        if let known = ekIdentities.lookup(key) { return known }
        let der = Data(base64Encoded: stored)
        let cert = der.flatMap { try? Certificate(derEncoded: Array($0)) }
        let identity = EKIdentity(subject: cert.map { "\($0.issuer) / serial \($0.serialNumber)" },
                                  fingerprint: der.map { hexString(Array(SHA256.hash(data: $0))) })
        ekIdentities.store(key, identity)
        return identity
    }

    /// A VM without a baseline: learned on first use from a boot that passed the policy with
    /// complete evidence (every required PCR quoted, the log replayed, no anomaly — whatever the
    /// policy says of anomalies), unless the VM's first baseline waits for a person or a
    /// prediction. Without a baseline the boot does not pass: nothing vouches for what it ran.
    func firstBaseline(vm: String, id: String, result: AttestationResult, components: [BaselineComponent], now: Date) async throws
        -> (check: Check, status: BaselineStatus, info: AttestationOutcome.BaselineInfo?) {
        switch try await baselineMode(vm: vm) {
        case .approve:
            return (.unknown(.baseline, "\(vm) has no baseline yet and its first one waits for a person: check this boot and approve it "
                                      + "(`tlaunch vm baseline approve \(vm)`)"), .pending, nil)
        case .predicted:
            return (.unknown(.baseline, "\(vm) has no baseline yet and its baseline is predicted from its disk: set it (`tlaunch vm "
                                      + "baseline predict \(vm)`)"), .pending, nil)
        case .learn:
            guard result.passed else {
                return (.unknown(.baseline, "\(vm) has no baseline yet; a boot that fails the policy is not learned"), .pending, nil)
            }
            guard result.completeEvidence else {
                let why = result.facts.map { $0.anomalies.map(\.message).prefix(3).joined(separator: "; ") } ?? ""
                return (.unknown(.baseline, "\(vm) has no baseline yet, and this boot's evidence is incomplete, so it is not learned on "
                                          + "first use\(why.isEmpty ? "" : " (\(why))"): approve a boot explicitly if it is the one you "
                                          + "expect"), .pending, nil)
            }
            let record = BaselineRecord(vm: vm, source: .learned, components: components, attestationID: id, updated: Self.ms(now))
            if try await store.putBaselineIfAbsent(record) {
                return (Check(.baseline, passed: true, "no baseline yet: learned on first use from this boot (\(components.count) "
                                                     + "components) at \(Self.rfc3339(record.updated)); approve or predict one to replace "
                                                     + "it"),
                        .learned, .init(source: .learned, since: Self.rfc3339(record.updated), attestationId: id))
            }
            // Another instance learned it meanwhile: compare with that one.
            guard let b = try await store.baseline(vm: vm), let quoted = result.quoted else {
                return (.unknown(.baseline, "\(vm)'s baseline changed meanwhile: attest again"), .pending, nil)
            }
            let changes = Baseline.diff(b, current: components, quoted: quoted)
            return (Baseline.check(b, changes: changes), changes.isEmpty ? .matches : .changed,
                    .init(source: b.source, since: Self.rfc3339(b.updated), attestationId: b.attestationID))
        }
    }

    /// Evaluates evidence against a draft policy (and the VM's baseline) without consuming its
    /// nonce or storing anything.
    public func whatIf(vm: String, evidence: Evidence, policy: AttestationPolicy) async throws -> AttestationOutcome {
        try VMName.check(vm)
        let decoded: DecodedEvidence
        do { decoded = try DecodedEvidence(evidence) } catch {
            throw AttestationServiceError(.badRequest, error.description, field: error.field)
        }
        guard let agent = try await store.agent(vm: vm) else { throw AttestationServiceError(.notFound, "\(vm) is not enrolled") }
        let v = AttestationVerifier.verify(decoded, akPublic: try Self.decodePublic(agent.akPublic, field: "akPublic"), policy: policy,
                                           cache: factsCache)
        var checks = [Check(.nonce, passed: true, "not checked: a what-if evaluation consumes no nonce")] + v.checks
        var changes: [BaselineChange] = []
        var status: BaselineStatus?
        var info: AttestationOutcome.BaselineInfo?
        if let current = v.components, let quoted = v.quoted, v.checks.passed(.evidence), let b = try await store.baseline(vm: vm) {
            changes = Baseline.diff(b, current: current, quoted: quoted)
            status = changes.isEmpty ? .matches : .changed
            info = .init(source: b.source, since: Self.rfc3339(b.updated), attestationId: b.attestationID)
            checks.append(Baseline.check(b, changes: changes))
        }
        let passed = checks.allPassed
        return AttestationOutcome(id: "what-if", vm: vm, time: Self.rfc3339(Self.ms(Date())), passed: passed,
                                  status: passed ? "affirming" : "contraindicated",
            checks: checks, baseline: status, baselineSource: info, changes: changes, rebooted: nil, token: nil, tokenID: nil,
                                  policy: .init(id: policy.id, version: policy.version),
                                  facts: v.facts.map { .init($0, pcrDigest: v.pcrDigest) })
    }

    // MARK: Enrolled agents

    /// Every VM bound to a TPM.
    public func agents() async throws -> [AgentRecord] { try await store.agents() }

    /// The VM's binding (its EK, AK and AK certificate); nil when it never enrolled.
    public func agent(vm: String) async throws -> AgentRecord? {
        try VMName.check(vm)
        return try await store.agent(vm: vm)
    }

    /// Whether the store answers, and what it is ("sqlite", "postgres"): readiness.
    public func ping() async throws { try await store.ping() }
    public var storageKind: String { store.kind }

    // MARK: Baselines and history

    /// The VM's baseline; nil while it has none (`baseline(vm:)` says why, as an error).
    public func currentBaseline(vm: String) async throws -> BaselineRecord? {
        try VMName.check(vm)
        return try await store.baseline(vm: vm)
    }

    public func baseline(vm: String) async throws -> BaselineRecord {
        try VMName.check(vm)
        guard let b = try await store.baseline(vm: vm) else {
            let mode = try await baselineMode(vm: vm)
            let how = switch mode {
            case .learn: "its first boot with complete evidence that passes the policy sets it"
            case .approve: "approve a boot (tlaunch vm baseline approve \(vm))"
            case .predicted: "predict it from its disk (tlaunch vm baseline predict \(vm))"
            }
            throw AttestationServiceError(.notFound, "\(vm) has no baseline yet: \(how)")
        }
        return b
    }

    /// Approves a boot (the VM's latest attestation by default) as the VM's baseline: only a boot
    /// whose evidence verified, attested by the TPM the VM is bound to now.
    public func approveBaseline(vm: String, attestationID: String? = nil, now: Date = Date()) async throws -> BaselineRecord {
        try VMName.check(vm)
        let record: AttestationRecord?
        if let attestationID {
            record = try await store.attestation(id: attestationID)
        } else {
            record = try await store.attestations(vm: vm, limit: 1).first
        }
        guard let record, record.vm == vm else { throw AttestationServiceError(.notFound, "no attestation \(attestationID ?? "") of \(vm) "
                                                                                        + "to approve") }
        guard let stored = try? JSONDecoder().decode(StoredResult.self, from: Data(record.result.utf8)), let components = stored.components
        else {
            throw AttestationServiceError(.conflict, "attestation \(record.id) has no verified boot components (its evidence did not "
                                                   + "verify): it cannot be a baseline")
        }
        guard stored.outcome.checks.passed(.evidence) else {
            throw AttestationServiceError(.conflict, """
                attestation \(record.id) failed verification of its evidence \
                (\(stored.outcome.checks.first { $0.category == .evidence && !$0.passed }?.name.rawValue ?? "?")): it cannot be a baseline
                """)
        }
        guard let agent = try await store.agent(vm: vm), let current = try? Self.decodePublic(agent.akPublic, field: "akPublic").name(),
              stored.akName == hexString(current) else {
            throw AttestationServiceError(.conflict, "attestation \(record.id) was made by another TPM identity than the one \(vm) is "
                                                   + "bound to now: it cannot be its baseline")
        }
        let b = BaselineRecord(vm: vm, source: .approved, components: components, attestationID: record.id, updated: Self.ms(now))
        try await store.putBaseline(b)
        return b
    }

    /// Sets the baseline from expected PCR values (e.g. `tlaunch predict`).
    /// Sets the VM's baseline from predicted sha256 PCR values; `log`, the prediction's event log
    /// (computed by the platform from the disk, never sent by a guest), explains later changes.
    public func setPredictedBaseline(vm: String, pcrs: [String: String], log: EventLog? = nil,
                                     now: Date = Date()) async throws -> BaselineRecord {
        try VMName.check(vm)
        for (k, v) in pcrs {
            guard let p = Int(k), (0..<24).contains(p), v.count == 64, v.allSatisfy(\.isHexDigit) else {
                throw AttestationServiceError(.badRequest, "pcrs[\"\(k)\"] must map a PCR 0–23 to a sha256 value (64 hex digits)",
                                              field: "pcrs")
            }
        }
        guard !pcrs.isEmpty else { throw AttestationServiceError(.badRequest, "pcrs must name at least one PCR", field: "pcrs") }
        let values = Baseline.components(expectedPCRs: pcrs)
        let events = log.map { Baseline.components(predicted: $0, pcrs: Set(values.map(\.pcr))) } ?? []
        let b = BaselineRecord(vm: vm, source: .predicted, components: values + events, attestationID: nil, updated: Self.ms(now))
        try await store.putBaseline(b)
        return b
    }

    public func resetBaseline(vm: String) async throws {
        try VMName.check(vm)
        try await store.deleteBaseline(vm: vm)
    }

    public func history(vm: String, limit: Int = 50) async throws -> [AttestationOutcome] {
        try VMName.check(vm)
        return try await store.attestations(vm: vm, limit: max(1, min(limit, 1000))).compactMap {
            try? JSONDecoder().decode(StoredResult.self, from: Data($0.result.utf8)).outcome
        }
    }

    // MARK: API tokens

    public static func hashToken(_ token: String) -> String { hexString(Array(SHA256.hash(data: Data(token.utf8)))) }

    /// A new API token (printed once; only its hash is stored); `lifetime`: accepted for that long.
    public static func createAPIToken(store: any AttestationStore, role: APITokenRecord.Role, vm: String?, lifetime: Duration? = nil,
                                      now: Date = Date()) async throws -> String {
        if role == .agent {
            guard let vm else { throw AttestationServiceError(.badRequest, "an agent token is for one VM: give --vm NAME", field: "vm") }
            try VMName.check(vm)
        }
        let token = "tlt_" + TokenIssuer.base64url(random(32))
        if let lifetime, lifetime <= .zero {
            throw AttestationServiceError(.badRequest, "a token's lifetime must be positive", field: "expires")
        }
        let expires = lifetime.map { ms(now) + $0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000 }
        try await store.insertAPIToken(APITokenRecord(hash: hashToken(token), role: role, vm: role == .agent ? vm : nil, created: ms(now),
                                                      expires: expires))
        return token
    }

    /// A new API token in this service's store (see the static form, for a store without a service).
    public func createAPIToken(role: APITokenRecord.Role, vm: String?, lifetime: Duration? = nil,
                               now: Date = Date()) async throws -> String {
        try await Self.createAPIToken(store: store, role: role, vm: vm, lifetime: lifetime, now: now)
    }

    /// A one-time sign-in code for the dashboard, in this service's store.
    public func createSignInCode(lifetime: Duration = .seconds(600), now: Date = Date()) async throws -> String {
        try await Self.createSignInCode(store: store, lifetime: lifetime, now: now)
    }

    /// The API tokens (their hashes, never the tokens), sign-in codes and sessions among them.
    public func apiTokens() async throws -> [APITokenRecord] { try await store.apiTokens() }

    /// Revokes the tokens whose id (the start of the hash) is `id`: how many matched (revoked
    /// only when exactly one did).
    public func revokeAPIToken(id: String, now: Date = Date()) async throws -> Int {
        try await store.revokeAPIToken(id: id, at: Self.ms(now))
    }

    /// A one-time sign-in code for the dashboard (10 minutes): what a sign-in link carries
    /// instead of a credential.
    public static func createSignInCode(store: any AttestationStore, lifetime: Duration = .seconds(600),
                                        now: Date = Date()) async throws -> String {
        try await createAPIToken(store: store, role: .signin, vm: nil, lifetime: lifetime, now: now)
    }

    /// Exchanges a sign-in code, once, for a dashboard session (an admin token of `session`
    /// lifetime); nil for a code that is unknown, expired or already used.
    public func exchangeSignInCode(_ code: String, session: Duration = .seconds(12 * 3600), now: Date = Date()) async throws -> String? {
        guard let t = try await authenticate(code, now: now), t.role == .signin,
              try await store.revokeAPIToken(hash: t.hash, at: Self.ms(now)) else { return nil }
        return try await Self.createAPIToken(store: store, role: .admin, vm: nil, lifetime: session, now: now)
    }

    /// A dashboard session for someone who signed in with an admin or reader token: a token of
    /// the same role for `session`, so the cookie never holds the token itself and signing out
    /// revokes only the session.
    public func startSession(for token: String, session: Duration = .seconds(12 * 3600), now: Date = Date()) async throws -> String? {
        guard let t = try await authenticate(token, now: now), t.role == .admin || t.role == .reader else { return nil }
        return try await Self.createAPIToken(store: store, role: t.role, vm: nil, lifetime: session, now: now)
    }

    /// Ends a dashboard session: its token is revoked.
    public func endSession(_ token: String, now: Date = Date()) async throws {
        guard token.hasPrefix("tlt_"), token.count < 200 else { return }
        _ = try await store.revokeAPIToken(hash: Self.hashToken(token), at: Self.ms(now))
    }

    /// The caller behind a token: nil for one that is unknown, expired or revoked.
    public func authenticate(_ token: String, now: Date = Date()) async throws -> APITokenRecord? {
        guard token.hasPrefix("tlt_"), token.count < 200 else { return nil }
        guard let t = try await store.apiToken(hash: Self.hashToken(token)), t.valid(at: Self.ms(now)) else { return nil }
        return t
    }
}
