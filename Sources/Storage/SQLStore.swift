import Attestation
import AttestationAPI
import Foundation

/// The attestation store over SQL. The same statements run on SQLite and PostgreSQL: integers and
/// text only, `INSERT … ON CONFLICT`, `UPDATE/DELETE … RETURNING` (SQLite ≥ 3.35).
public final class SQLStore: AttestationStore {
    public let backend: any SQLBackend
    public var kind: String { backend.kind }

    /// The attestation service's tables. Steps 2 and 3 were global versions 4 and 5 while the
    /// fleet's tables shared one numbering with these (`SQLSchema.legacyVersions`).
    public static let schema = SQLSchema(module: "attestation", steps: [
        [
            """
            CREATE TABLE nonces (nonce TEXT PRIMARY KEY, vm TEXT NOT NULL, expires BIGINT NOT NULL,
                                 issued BIGINT NOT NULL, used BIGINT)
            """,
            "CREATE INDEX nonces_expires ON nonces (expires)",
            """
            CREATE TABLE pending_enrolments (id TEXT PRIMARY KEY, vm TEXT NOT NULL, ek_public TEXT NOT NULL, ak_public TEXT NOT NULL,
                                             ek_certificate TEXT, secret_hash TEXT NOT NULL, expires BIGINT NOT NULL)
            """,
            """
            CREATE TABLE agents (vm TEXT PRIMARY KEY, ek_public TEXT NOT NULL, ak_public TEXT NOT NULL, ek_certificate TEXT,
                                 ak_certificate TEXT NOT NULL, enrolled_at BIGINT NOT NULL,
                                 clock BIGINT, reset_count BIGINT, restart_count BIGINT)
            """,
            """
            CREATE TABLE baselines (vm TEXT PRIMARY KEY, source TEXT NOT NULL, components TEXT NOT NULL,
                                    attestation_id TEXT, updated BIGINT NOT NULL)
            """,
            """
            CREATE TABLE attestations (id TEXT PRIMARY KEY, vm TEXT NOT NULL, time BIGINT NOT NULL, passed BIGINT NOT NULL,
                                       evidence_digest TEXT NOT NULL, result TEXT NOT NULL, token_id TEXT, evidence TEXT)
            """,
            "CREATE INDEX attestations_vm_time ON attestations (vm, time)",
            "CREATE TABLE api_tokens (hash TEXT PRIMARY KEY, role TEXT NOT NULL, vm TEXT, created BIGINT NOT NULL)",
            """
            CREATE TABLE signing_keys (kid TEXT PRIMARY KEY, algorithm TEXT NOT NULL, private_key TEXT NOT NULL,
                                       created BIGINT NOT NULL, retired BIGINT)
            """,
            """
            CREATE TABLE policies (id TEXT NOT NULL, version BIGINT NOT NULL, document TEXT NOT NULL, created BIGINT NOT NULL,
                                   PRIMARY KEY (id, version))
            """,
        ],
        // Attestation soundness (issue 13): nonces carry the relying party's audience; a VM is
        // bound to its TPM (a rebind needs an admin); how each VM's first baseline is set.
        [
            "ALTER TABLE nonces ADD COLUMN audience TEXT",
            "CREATE INDEX nonces_vm ON nonces (vm)",
            "CREATE INDEX pending_enrolments_vm ON pending_enrolments (vm)",
            "ALTER TABLE agents ADD COLUMN rebind_allowed BIGINT NOT NULL DEFAULT 0",
            "CREATE TABLE vm_settings (vm TEXT PRIMARY KEY, baseline_mode TEXT NOT NULL)",
        ],
        // Credentials with a lifecycle (issue 15): API tokens expire and can be revoked.
        [
            "ALTER TABLE api_tokens ADD COLUMN expires BIGINT",
            "ALTER TABLE api_tokens ADD COLUMN revoked BIGINT",
        ],
    ], legacyVersions: [1, 4, 5])

    public init(backend: any SQLBackend) async throws {
        self.backend = backend
        try await Self.schema.migrate(backend)
    }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    func run(_ sql: String, _ binds: [SQLValue] = []) async throws -> [[SQLValue]] { try await backend.query(sql, binds) }

    static func opt(_ s: String?) -> SQLValue { s.map { .text($0) } ?? .null }
    static func opt(_ i: Int64?) -> SQLValue { i.map { .int($0) } ?? .null }

    public func ping() async throws { _ = try await run("SELECT 1") }

    // MARK: Nonces

    public func insertNonce(_ nonce: String, vm: String, audience: String?, expires: Int64, now: Int64) async throws {
        _ = try await run("INSERT INTO nonces (nonce, vm, audience, expires, issued) VALUES (?, ?, ?, ?, ?)",
                          [.text(nonce), .text(vm), Self.opt(audience), .int(expires), .int(now)])
        // Used and expired nonces are kept a day (a replay is then named as such), then dropped.
        if Int.random(in: 0..<256) == 0 {
            _ = try await run("DELETE FROM nonces WHERE expires < ?", [.int(now - 86_400_000)])
        }
    }

    public func consumeNonce(_ nonce: String, vm: String, now: Int64) async throws -> NonceStatus {
        // The one atomic step: only the first presenter of an unused nonce of this VM gets a row
        // back; another VM's presentation leaves it unused for its owner.
        let taken = try await run("UPDATE nonces SET used = ? WHERE nonce = ? AND vm = ? AND used IS NULL RETURNING expires, audience",
                                  [.int(now), .text(nonce), .text(vm)])
        if let row = taken.first {
            let expires = row[0].int ?? 0
            if expires < now { return .expired(at: expires) }
            return .fresh(audience: row[1].text)
        }
        let seen = try await run("SELECT vm, used FROM nonces WHERE nonce = ?", [.text(nonce)])
        guard let row = seen.first else { return .unknown }
        if let owner = row[0].text, owner != vm { return .issuedForAnotherVM(owner) }
        if let used = row[1].int { return .alreadyUsed(at: used) }
        return .unknown
    }

    // MARK: Enrolment

    public func insertPendingEnrolment(_ p: PendingEnrolment) async throws {
        _ = try await run(
            "INSERT INTO pending_enrolments (id, vm, ek_public, ak_public, ek_certificate, secret_hash, expires) "
                + "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                .text(p.id), .text(p.vm), .text(p.ekPublic), .text(p.akPublic), Self.opt(p.ekCertificate), .text(p.secretHash),
                .int(p.expires)
            ])
    }

    public func takePendingEnrolment(id: String, vm: String) async throws -> PendingEnrolment? {
        let rows = try await run("DELETE FROM pending_enrolments WHERE id = ? AND vm = ? RETURNING id, vm, ek_public, ak_public, "
                               + "ek_certificate, secret_hash, expires",
                                 [.text(id), .text(vm)])
        guard let r = rows.first else { return nil }
        return PendingEnrolment(id: r[0].text ?? "", vm: r[1].text ?? "", ekPublic: r[2].text ?? "", akPublic: r[3].text ?? "",
                                ekCertificate: r[4].text, secretHash: r[5].text ?? "", expires: r[6].int ?? 0)
    }

    static let agentColumns = "vm, ek_public, ak_public, ek_certificate, ak_certificate, enrolled_at, clock, reset_count, restart_count, "
                            + "rebind_allowed"

    static func agent(_ r: [SQLValue]) -> AgentRecord {
        AgentRecord(vm: r[0].text ?? "", ekPublic: r[1].text ?? "", akPublic: r[2].text ?? "", ekCertificate: r[3].text,
            akCertificate: r[4].text ?? "", enrolledAt: r[5].int ?? 0, clock: r[6].int, resetCount: r[7].int, restartCount: r[8].int,
                    rebindAllowed: r[9].int == 1)
    }

    public func insertAgentIfAbsent(_ a: AgentRecord) async throws -> Bool {
        let rows = try await run("""
            INSERT INTO agents (vm, ek_public, ak_public, ek_certificate, ak_certificate, enrolled_at, rebind_allowed)
            VALUES (?, ?, ?, ?, ?, ?, 0)
            ON CONFLICT (vm) DO NOTHING RETURNING vm
            """, [.text(a.vm), .text(a.ekPublic), .text(a.akPublic), Self.opt(a.ekCertificate), .text(a.akCertificate), .int(a.enrolledAt)])
        return !rows.isEmpty
    }

    public func reenrolAgent(_ a: AgentRecord) async throws -> Bool {
        // Same TPM: a new AK and certificates; the counters stay (a rolled-back vTPM must not pass).
        let rows = try await run("""
            UPDATE agents SET ak_public = ?, ek_certificate = ?, ak_certificate = ?, enrolled_at = ?, rebind_allowed = 0
            WHERE vm = ? AND ek_public = ? RETURNING vm
            """, [.text(a.akPublic), Self.opt(a.ekCertificate), .text(a.akCertificate), .int(a.enrolledAt), .text(a.vm), .text(a.ekPublic)])
        return !rows.isEmpty
    }

    public func rebindAgent(_ a: AgentRecord) async throws -> Bool {
        let rows = try await run("""
            UPDATE agents SET ek_public = ?, ak_public = ?, ek_certificate = ?, ak_certificate = ?, enrolled_at = ?,
              clock = NULL, reset_count = NULL, restart_count = NULL, rebind_allowed = 0
            WHERE vm = ? AND rebind_allowed = 1 RETURNING vm
            """, [.text(a.ekPublic), .text(a.akPublic), Self.opt(a.ekCertificate), .text(a.akCertificate), .int(a.enrolledAt), .text(a.vm)])
        return !rows.isEmpty
    }

    public func allowRebind(vm: String) async throws -> Bool {
        !(try await run("UPDATE agents SET rebind_allowed = 1 WHERE vm = ? RETURNING vm", [.text(vm)])).isEmpty
    }

    public func baselineMode(vm: String) async throws -> String? {
        try await run("SELECT baseline_mode FROM vm_settings WHERE vm = ?", [.text(vm)]).first?.first?.text
    }

    public func setBaselineMode(vm: String, mode: String) async throws {
        _ = try await run(
            "INSERT INTO vm_settings (vm, baseline_mode) VALUES (?, ?) "
                + "ON CONFLICT (vm) DO UPDATE SET baseline_mode = excluded.baseline_mode",
            [.text(vm), .text(mode)])
    }

    public func forget(vm: String, archivedAs: String) async throws {
        // Each statement is idempotent: a forget cut short is completed by running it again.
        _ = try await run("DELETE FROM nonces WHERE vm = ?", [.text(vm)])
        _ = try await run("DELETE FROM pending_enrolments WHERE vm = ?", [.text(vm)])
        _ = try await run("DELETE FROM api_tokens WHERE vm = ?", [.text(vm)])
        _ = try await run("DELETE FROM baselines WHERE vm = ?", [.text(vm)])
        _ = try await run("DELETE FROM vm_settings WHERE vm = ?", [.text(vm)])
        _ = try await run("UPDATE attestations SET vm = ? WHERE vm = ?", [.text(archivedAs), .text(vm)])
        _ = try await run("DELETE FROM agents WHERE vm = ?", [.text(vm)])
    }

    public func agent(vm: String) async throws -> AgentRecord? {
        try await run("SELECT \(Self.agentColumns) FROM agents WHERE vm = ?", [.text(vm)]).first.map(Self.agent)
    }

    public func agents() async throws -> [AgentRecord] {
        try await run("SELECT \(Self.agentColumns) FROM agents ORDER BY vm").map(Self.agent)
    }

    public func advanceCounters(vm: String, clock: Int64, resetCount: Int64, restartCount: Int64) async throws -> Bool {
        // Forward means: a later reset, or the same reset and a later restart, or both the same
        // and a clock not behind. Checked and stored in one statement, so two instances cannot
        // both accept an out-of-order quote.
        let rows = try await run("""
            UPDATE agents SET clock = ?, reset_count = ?, restart_count = ?
            WHERE vm = ? AND (reset_count IS NULL OR reset_count < ?
                              OR (reset_count = ? AND (restart_count < ? OR (restart_count = ? AND clock <= ?))))
            RETURNING vm
            """, [.int(clock), .int(resetCount), .int(restartCount), .text(vm), .int(resetCount), .int(resetCount),
                  .int(restartCount), .int(restartCount), .int(clock)])
        return !rows.isEmpty
    }

    // MARK: Baselines

    /// Decoded baseline components by their stored text: every attestation compares with its VM's
    /// baseline, and VMs of one image share one. Keyed by the whole text, so a changed baseline is
    /// decoded afresh.
    let decodedBaselines = BoundedMemo<String, [BaselineComponent]>(capacity: 1024)

    func baseline(_ r: [SQLValue]) throws -> BaselineRecord {
        let text = r[2].text ?? "[]"
        let components: [BaselineComponent]
        if let known = decodedBaselines.lookup(text) {
            components = known
        } else {
            components = try JSONDecoder().decode([BaselineComponent].self, from: Data(text.utf8))
            decodedBaselines.store(text, components)
        }
        guard let source = r[1].text.flatMap(BaselineSource.init(rawValue:)) else {
            throw StorageError("baselines", "\(r[0].text ?? "?")'s baseline has source \(r[1].text ?? "null"), not one of "
                                          + "\(BaselineSource.allCases.map(\.rawValue))")
        }
        return BaselineRecord(vm: r[0].text ?? "", source: source, components: components, attestationID: r[3].text, updated: r[4].int ?? 0)
    }

    static func json(_ c: [BaselineComponent]) throws -> String {
        let e = JSONEncoder(); e.outputFormatting = [.sortedKeys]
        return String(decoding: try e.encode(c), as: UTF8.self)
    }

    public func baseline(vm: String) async throws -> BaselineRecord? {
        try await run("SELECT vm, source, components, attestation_id, updated FROM baselines WHERE vm = ?", [.text(vm)]).first.map(baseline)
    }

    public func putBaseline(_ b: BaselineRecord) async throws {
        _ = try await run("""
            INSERT INTO baselines (vm, source, components, attestation_id, updated) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (vm) DO UPDATE SET source = excluded.source, components = excluded.components,
              attestation_id = excluded.attestation_id, updated = excluded.updated
            """, [.text(b.vm), .text(b.source.rawValue), .text(try Self.json(b.components)), Self.opt(b.attestationID), .int(b.updated)])
    }

    public func putBaselineIfAbsent(_ b: BaselineRecord) async throws -> Bool {
        let rows = try await run("""
            INSERT INTO baselines (vm, source, components, attestation_id, updated) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (vm) DO NOTHING RETURNING vm
            """, [.text(b.vm), .text(b.source.rawValue), .text(try Self.json(b.components)), Self.opt(b.attestationID), .int(b.updated)])
        return !rows.isEmpty
    }

    public func deleteBaseline(vm: String) async throws {
        _ = try await run("DELETE FROM baselines WHERE vm = ?", [.text(vm)])
    }

    // MARK: History

    static let attestationColumns = "id, vm, time, passed, evidence_digest, result, token_id, evidence"

    static func attestation(_ r: [SQLValue]) -> AttestationRecord {
        AttestationRecord(id: r[0].text ?? "", vm: r[1].text ?? "", time: r[2].int ?? 0, passed: r[3].int == 1,
                          evidenceDigest: r[4].text ?? "", result: r[5].text ?? "{}", tokenID: r[6].text, evidence: r[7].text)
    }

    public func appendAttestation(_ r: AttestationRecord) async throws {
        _ = try await run("INSERT INTO attestations (\(Self.attestationColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          [.text(r.id), .text(r.vm), .int(r.time), .int(r.passed ? 1 : 0), .text(r.evidenceDigest), .text(r.result),
                           Self.opt(r.tokenID), Self.opt(r.evidence)])
    }

    public func attestations(vm: String, limit: Int) async throws -> [AttestationRecord] {
        try await run("SELECT \(Self.attestationColumns) FROM attestations WHERE vm = ? ORDER BY time DESC, id DESC LIMIT ?",
                      [.text(vm), .int(Int64(limit))]).map(Self.attestation)
    }

    public func attestation(id: String) async throws -> AttestationRecord? {
        try await run("SELECT \(Self.attestationColumns) FROM attestations WHERE id = ?", [.text(id)]).first.map(Self.attestation)
    }

    // MARK: Credentials and keys

    public func insertAPIToken(_ t: APITokenRecord) async throws {
        _ = try await run("INSERT INTO api_tokens (hash, role, vm, created, expires, revoked) VALUES (?, ?, ?, ?, ?, ?)",
                          [.text(t.hash), .text(t.role.rawValue), Self.opt(t.vm), .int(t.created), t.expires.map { .int($0) } ?? .null,
                           t.revoked.map { .int($0) } ?? .null])
    }

    static let tokenColumns = "hash, role, vm, created, expires, revoked"

    static func token(_ r: [SQLValue]) -> APITokenRecord? {
        guard let role = APITokenRecord.Role(rawValue: r[1].text ?? "") else { return nil }
        return APITokenRecord(hash: r[0].text ?? "", role: role, vm: r[2].text, created: r[3].int ?? 0, expires: r[4].int,
                              revoked: r[5].int)
    }

    public func apiToken(hash: String) async throws -> APITokenRecord? {
        try await run("SELECT \(Self.tokenColumns) FROM api_tokens WHERE hash = ?", [.text(hash)]).first.flatMap(Self.token)
    }

    public func apiTokens() async throws -> [APITokenRecord] {
        try await run("SELECT \(Self.tokenColumns) FROM api_tokens ORDER BY created DESC, hash", []).compactMap(Self.token)
    }

    public func revokeAPIToken(hash: String, at: Int64) async throws -> Bool {
        !(try await run("UPDATE api_tokens SET revoked = ? WHERE hash = ? AND revoked IS NULL RETURNING hash",
                        [.int(at), .text(hash)])).isEmpty
    }

    public func revokeAPIToken(id: String, at: Int64) async throws -> Int {
        // An id is the start of a hash (hex): nothing else may reach the LIKE pattern.
        guard (6...64).contains(id.count), id.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else { return 0 }
        let matches = try await run("SELECT hash FROM api_tokens WHERE hash LIKE ?", [.text(id + "%")])
        guard matches.count == 1, let hash = matches[0][0].text else { return matches.count }
        _ = try await run("UPDATE api_tokens SET revoked = ? WHERE hash = ? AND revoked IS NULL", [.int(at), .text(hash)])
        return 1
    }

    public func signingKeys() async throws -> [SigningKeyRecord] {
        try await run("SELECT kid, algorithm, private_key, created, retired FROM signing_keys ORDER BY created DESC, kid").map {
            SigningKeyRecord(kid: $0[0].text ?? "", algorithm: $0[1].text ?? "", privateKey: $0[2].text ?? "", created: $0[3].int ?? 0,
                             retired: $0[4].int)
        }
    }

    public func insertSigningKey(_ k: SigningKeyRecord) async throws {
        _ = try await run("INSERT INTO signing_keys (kid, algorithm, private_key, created, retired) VALUES (?, ?, ?, ?, ?)",
                          [.text(k.kid), .text(k.algorithm), .text(k.privateKey), .int(k.created), Self.opt(k.retired)])
    }

    public func updateSigningKey(kid: String, privateKey: String, was: String) async throws {
        _ = try await run("UPDATE signing_keys SET private_key = ? WHERE kid = ? AND private_key = ?",
                          [.text(privateKey), .text(kid), .text(was)])
    }

    public func retireSigningKeys(except kid: String, at: Int64) async throws {
        _ = try await run("UPDATE signing_keys SET retired = ? WHERE kid <> ? AND retired IS NULL", [.int(at), .text(kid)])
    }

    public func policies() async throws -> [PolicyRecord] {
        try await run("SELECT id, version, document, created FROM policies ORDER BY id, version").map {
            PolicyRecord(id: $0[0].text ?? "", version: Int($0[1].int ?? 0), document: $0[2].text ?? "{}", created: $0[3].int ?? 0)
        }
    }

    public func insertPolicy(_ p: PolicyRecord) async throws {
        _ = try await run("INSERT INTO policies (id, version, document, created) VALUES (?, ?, ?, ?)",
                          [.text(p.id), .int(Int64(p.version)), .text(p.document), .int(p.created)])
    }
}
