import Foundation
import Storage

/// The fleet's tables on the same database as the attestation service (SQLite embedded, or
/// PostgreSQL): this store owns them and their migrations; the attestation tables are the
/// service's, reached through it.
public final class FleetStore: Sendable {
    public let db: any SQLBackend

    /// Opens the fleet's tables on `backend`, creating or upgrading them first.
    public init(backend: any SQLBackend) async throws {
        db = backend
        try await Self.schema.migrate(backend)
    }

    /// The fleet's tables. Its steps were global versions 2, 3, 6 and 7 while the attestation
    /// tables shared one numbering with these (`SQLSchema.legacyVersions`).
    public static let schema = SQLSchema(module: "fleet", steps: [
        // The fleet (issue 8): VMs, images, alerts, each VM's timeline. The record is kept as JSON
        // beside the columns that queries and conditional updates need.
        [
            """
            CREATE TABLE fleet_vms (name TEXT PRIMARY KEY, power_state TEXT NOT NULL, monitoring BIGINT NOT NULL,
                                    last_attestation BIGINT, version BIGINT NOT NULL, body TEXT NOT NULL)
            """,
            "CREATE TABLE fleet_images (name TEXT PRIMARY KEY, body TEXT NOT NULL, created BIGINT NOT NULL)",
            """
            CREATE TABLE fleet_alerts (id TEXT PRIMARY KEY, vm TEXT NOT NULL, fingerprint TEXT NOT NULL, status TEXT NOT NULL,
                                       created BIGINT NOT NULL, body TEXT NOT NULL)
            """,
            // At most one active alert per VM and problem: a repeat updates it (across instances too).
            "CREATE UNIQUE INDEX fleet_alerts_active ON fleet_alerts (vm, fingerprint) WHERE status = 'Active'",
            "CREATE INDEX fleet_alerts_created ON fleet_alerts (created)",
            "CREATE TABLE fleet_events (id TEXT PRIMARY KEY, vm TEXT NOT NULL, time BIGINT NOT NULL, body TEXT NOT NULL)",
            "CREATE INDEX fleet_events_vm_time ON fleet_events (vm, time)",
        ],
        // Webhook deliveries waiting for their next attempt (an outbox: they survive restarts).
        [
            """
            CREATE TABLE fleet_webhook_deliveries (id TEXT PRIMARY KEY, url TEXT NOT NULL, event TEXT NOT NULL, alert TEXT NOT NULL,
                                                   body TEXT NOT NULL, attempts BIGINT NOT NULL, next_attempt BIGINT NOT NULL,
                                                   created BIGINT NOT NULL)
            """,
            "CREATE INDEX fleet_webhook_deliveries_next ON fleet_webhook_deliveries (next_attempt)",
        ],
        // libvirt hosts (issue 16): the hosts VMs are placed on, and each VM's host.
        [
            "CREATE TABLE fleet_hosts (name TEXT PRIMARY KEY, state TEXT NOT NULL, body TEXT NOT NULL, created BIGINT NOT NULL)",
            "ALTER TABLE fleet_vms ADD COLUMN host TEXT",
            "CREATE INDEX fleet_vms_host ON fleet_vms (host)",
        ],
        // The monitor reads only the VMs whose attestation is due (issue 17: at 100,000 running
        // VMs it decoded every one, every second). NULL (rows from before): due.
        [
            "ALTER TABLE fleet_vms ADD COLUMN attest_due BIGINT",
            "CREATE INDEX fleet_vms_due ON fleet_vms (monitoring, power_state, attest_due)",
        ],
    ], legacyVersions: [2, 3, 6, 7])

    static let encoder: JSONEncoder = { let e = JSONEncoder(); e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]; return e }()
    static func json(_ v: some Encodable) throws -> String { String(decoding: try encoder.encode(v), as: UTF8.self) }
    static func decode<T: Decodable>(_ t: T.Type, _ v: SQLValue?) throws -> T {
        guard case .text(let s)? = v else { throw StorageError("decode \(T.self)", "missing body") }
        return try JSONDecoder().decode(T.self, from: Data(s.utf8))
    }
    static func opt(_ v: Int64?) -> SQLValue { v.map { .int($0) } ?? .null }

    // MARK: VMs

    func vmBinds(_ vm: VMRecord) throws -> [SQLValue] {
        [.text(vm.powerState.rawValue), .int(vm.integrityMonitoring ? 1 : 0), Self.opt(vm.lastAttestation), .int(vm.version),
         .text(try Self.json(vm)),
         vm.host.map { .text($0) } ?? .null, .int(Self.attestationDue(vm))]
    }

    /// When the monitor next has something to do for `vm`: its last attestation (else its
    /// creation) plus its interval. Never later than the monitor's own reckoning (which counts
    /// from the last attestation, else the last boot or change, all at or after creation), so
    /// reading only the VMs due by now misses none.
    static func attestationDue(_ vm: VMRecord) -> Int64 {
        (vm.lastAttestation ?? vm.created) + Int64(vm.attestationInterval) * 1000
    }

    /// Inserts a new VM; false when the name is taken.
    public func insertVM(_ vm: VMRecord) async throws -> Bool {
        let rows = try await db.query("""
            INSERT INTO fleet_vms (name, power_state, monitoring, last_attestation, version, body, host, attest_due)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (name) DO NOTHING RETURNING name
            """, [.text(vm.name)] + (try vmBinds(vm)))
        return !rows.isEmpty
    }

    public func vm(_ name: String) async throws -> VMRecord? {
        guard let row = try await db.query("SELECT body FROM fleet_vms WHERE name = ?", [.text(name)]).first else { return nil }
        return try Self.decode(VMRecord.self, row.first)
    }

    public func vms() async throws -> [VMRecord] {
        try await db.query("SELECT body FROM fleet_vms ORDER BY name", []).map { try Self.decode(VMRecord.self, $0.first) }
    }

    /// One page of VMs by name, after `after` (keyset pagination: stable while VMs come and go).
    public func vms(after: String?, limit: Int) async throws -> [VMRecord] {
        try await db.query("SELECT body FROM fleet_vms WHERE name > ? ORDER BY name LIMIT \(max(1, min(limit, 100_000)))",
                           [.text(after ?? "")])
            .map { try Self.decode(VMRecord.self, $0.first) }
    }

    /// The single integer a `SELECT COUNT(*) …` answers.
    func count(_ sql: String) async throws -> Int {
        if case .int(let i)? = try await db.query(sql, []).first?.first { return Int(i) }
        return 0
    }

    public func vmCount() async throws -> Int { try await count("SELECT COUNT(*) FROM fleet_vms") }

    /// The running VMs with integrity monitoring whose attestation is due by `now` (ms).
    public func monitoredRunning(dueBy now: Int64) async throws -> [VMRecord] {
        try await db.query(
            "SELECT body FROM fleet_vms WHERE monitoring = 1 AND power_state = ? AND (attest_due IS NULL OR attest_due <= ?)",
                           [.text(PowerState.running.rawValue), .int(now)])
            .map { try Self.decode(VMRecord.self, $0.first) }
    }

    /// Writes `vm` if the stored version is still `expected` (then version = expected + 1).
    public func updateVM(_ vm: VMRecord, expected: Int64) async throws -> Bool {
        var next = vm
        next.version = expected + 1
        let b = try vmBinds(next)
        let rows = try await db.query("""
            UPDATE fleet_vms SET power_state = ?, monitoring = ?, last_attestation = ?, version = ?, body = ?, host = ?, attest_due = ?
            WHERE name = ? AND version = ? RETURNING name
            """, b + [.text(vm.name), .int(expected)])
        return !rows.isEmpty
    }

    public func deleteVM(_ name: String) async throws -> Bool {
        !(try await db.query("DELETE FROM fleet_vms WHERE name = ? RETURNING name", [.text(name)])).isEmpty
    }

    // MARK: Images

    public func insertImage(_ image: ImageInfo) async throws -> Bool {
        !(try await db.query("INSERT INTO fleet_images (name, body, created) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING name",
                             [.text(image.name), .text(try Self.json(image)), .int(Time.millis())])).isEmpty
    }

    public func images() async throws -> [ImageInfo] {
        try await db.query("SELECT body FROM fleet_images ORDER BY name", []).map { try Self.decode(ImageInfo.self, $0.first) }
    }

    // MARK: Alerts

    /// Raises `alert`, or — when the VM already has an active alert with its fingerprint —
    /// counts one more occurrence on that one. Returns the stored alert and whether it is new.
    public func raise(_ alert: Alert) async throws -> (Alert, new: Bool) {
        let inserted = try await db.query("""
            INSERT INTO fleet_alerts (id, vm, fingerprint, status, created, body) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT DO NOTHING RETURNING id
            """, [.text(alert.id), .text(alert.vm), .text(alert.fingerprint), .text(AlertStatus.active.rawValue), .int(Time.millis()),
                  .text(try Self.json(alert))])
        if !inserted.isEmpty { return (alert, true) }
        for _ in 0..<8 {
            guard let row = try await db.query("SELECT body FROM fleet_alerts WHERE vm = ? AND fingerprint = ? AND status = ?",
                                               [.text(alert.vm), .text(alert.fingerprint), .text(AlertStatus.active.rawValue)]).first else {
                // Resolved in between: raise it again as a new alert.
                return try await raise(alert)
            }
            let old = try Self.decode(Alert.self, row.first)
            var next = old
            next.occurrences += 1
            next.updated = alert.updated
            next.attestationID = alert.attestationID ?? old.attestationID
            next.evidence = alert.evidence
            if try await replaceAlert(next, expected: old) { return (next, false) }
        }
        throw StorageError("raise alert", "the alert kept changing underneath")
    }

    /// Compare-and-set on the whole record.
    public func replaceAlert(_ alert: Alert, expected: Alert) async throws -> Bool {
        !(try await db.query("UPDATE fleet_alerts SET status = ?, body = ? WHERE id = ? AND body = ? RETURNING id",
                             [.text(alert.status.rawValue), .text(try Self.json(alert)), .text(alert.id),
                              .text(try Self.json(expected))])).isEmpty
    }

    public func alert(_ id: String) async throws -> Alert? {
        guard let row = try await db.query("SELECT body FROM fleet_alerts WHERE id = ?", [.text(id)]).first else { return nil }
        return try Self.decode(Alert.self, row.first)
    }

    public func alerts(vm: String? = nil, status: AlertStatus? = nil, limit: Int = 500) async throws -> [Alert] {
        var sql = "SELECT body FROM fleet_alerts WHERE 1 = 1"
        var binds: [SQLValue] = []
        if let vm { sql += " AND vm = ?"; binds.append(.text(vm)) }
        if let status { sql += " AND status = ?"; binds.append(.text(status.rawValue)) }
        sql += " ORDER BY created DESC LIMIT \(max(1, min(limit, 10000)))"
        return try await db.query(sql, binds).map { try Self.decode(Alert.self, $0.first) }
    }

    // MARK: Timeline

    public func appendEvent(vm: String, kind: TimelineKind, message: String, at ms: Int64 = Time.millis()) async throws {
        let e = VMEvent(time: Time.rfc3339(ms), kind: kind, message: message)
        _ = try await db.query("INSERT INTO fleet_events (id, vm, time, body) VALUES (?, ?, ?, ?)",
                               [.text(UUID().uuidString.lowercased()), .text(vm), .int(ms), .text(try Self.json(e))])
    }

    /// A deleted VM's timeline goes with it.
    public func deleteEvents(vm: String) async throws {
        _ = try await db.query("DELETE FROM fleet_events WHERE vm = ?", [.text(vm)])
    }

    /// Whether the database answers.
    public func ping() async throws { _ = try await db.query("SELECT 1", []) }

    public func events(vm: String, limit: Int = 100) async throws -> [VMEvent] {
        try await db.query("SELECT body FROM fleet_events WHERE vm = ? ORDER BY time DESC LIMIT \(max(1, min(limit, 1000)))", [.text(vm)])
            .map { try Self.decode(VMEvent.self, $0.first) }
    }

    // MARK: libvirt hosts

    /// Adds a host; false when the name is taken.
    public func insertHost(_ h: LibvirtHost) async throws -> Bool {
        !(try await db.query("INSERT INTO fleet_hosts (name, state, body, created) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING "
                           + "RETURNING name",
                             [.text(h.name), .text(h.state.rawValue), .text(try Self.json(h)), .int(h.added)])).isEmpty
    }

    public func hosts() async throws -> [LibvirtHost] {
        try await db.query("SELECT body FROM fleet_hosts ORDER BY name", []).map { try Self.decode(LibvirtHost.self, $0.first) }
    }

    /// Writes what a check of the host found; when `expected` is given, only if the stored state
    /// is still that one (of several instances checking, one records each change).
    public func updateHost(_ h: LibvirtHost, expected: LibvirtHost.State? = nil) async throws -> Bool {
        var sql = "UPDATE fleet_hosts SET state = ?, body = ? WHERE name = ?"
        var binds: [SQLValue] = [.text(h.state.rawValue), .text(try Self.json(h)), .text(h.name)]
        if let expected { sql += " AND state = ?"; binds.append(.text(expected.rawValue)) }
        return !(try await db.query(sql + " RETURNING name", binds)).isEmpty
    }

    public func deleteHost(_ name: String) async throws -> Bool {
        !(try await db.query("DELETE FROM fleet_hosts WHERE name = ? RETURNING name", [.text(name)])).isEmpty
    }

    /// The VMs placed on each host, by host.
    public func placements() async throws -> [String: [String]] {
        var out: [String: [String]] = [:]
        for r in try await db.query("SELECT host, name FROM fleet_vms WHERE host IS NOT NULL ORDER BY name", []) {
            if case .text(let h) = r[0], case .text(let n) = r[1] { out[h, default: []].append(n) }
        }
        return out
    }

    public func vms(onHost host: String) async throws -> [VMRecord] {
        try await db.query("SELECT body FROM fleet_vms WHERE host = ? ORDER BY name",
                           [.text(host)]).map { try Self.decode(VMRecord.self, $0.first) }
    }

    // MARK: Webhook outbox

    public struct Delivery: Sendable {
        public var id: String, url: String, event: String, alert: String, body: String, attempts: Int, nextAttempt: Int64
    }

    public func enqueueDelivery(url: String, event: String, alert: String, body: String, now: Int64) async throws {
        _ = try await db.query("""
            INSERT INTO fleet_webhook_deliveries (id, url, event, alert, body, attempts, next_attempt, created)
            VALUES (?, ?, ?, ?, ?, 0, ?, ?)
            """, [.text(UUID().uuidString.lowercased()), .text(url), .text(event), .text(alert), .text(body), .int(now), .int(now)])
    }

    public func dueDeliveries(now: Int64, limit: Int = 64) async throws -> [Delivery] {
        try await db.query("""
            SELECT id, url, event, alert, body, attempts, next_attempt FROM fleet_webhook_deliveries WHERE next_attempt <= ?
            ORDER BY next_attempt LIMIT \(limit)
            """, [.int(now)]).map { r in
            func t(_ i: Int) -> String { if case .text(let v) = r[i] { v } else { "" } }
            func n(_ i: Int) -> Int64 { if case .int(let v) = r[i] { v } else { 0 } }
            return Delivery(id: t(0), url: t(1), event: t(2), alert: t(3), body: t(4), attempts: Int(n(5)), nextAttempt: n(6))
        }
    }

    /// Takes a due delivery for `lease` ms (so one instance sends it); false when another took it.
    public func claimDelivery(_ d: Delivery, until: Int64) async throws -> Bool {
        !(try await db.query("UPDATE fleet_webhook_deliveries SET next_attempt = ? WHERE id = ? AND next_attempt = ? RETURNING id",
                             [.int(until), .text(d.id), .int(d.nextAttempt)])).isEmpty
    }

    public func finishDelivery(_ id: String) async throws {
        _ = try await db.query("DELETE FROM fleet_webhook_deliveries WHERE id = ?", [.text(id)])
    }

    public func retryDelivery(_ id: String, attempts: Int, at: Int64) async throws {
        _ = try await db.query("UPDATE fleet_webhook_deliveries SET attempts = ?, next_attempt = ? WHERE id = ?",
                               [.int(Int64(attempts)), .int(at), .text(id)])
    }

    public func pendingDeliveries() async throws -> Int { try await count("SELECT COUNT(*) FROM fleet_webhook_deliveries") }
}
