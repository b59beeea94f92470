import Fleet
import Foundation
import Storage
import TLaunchTestSupport
import Testing

/// Each module owns its tables and their migrations (`SQLSchema`): the attestation store's and
/// the fleet's are numbered apart, a database from the builds that numbered them together opens
/// without a step running twice, and what the database says is never guessed past.
@Suite struct SchemaTests {
    /// `body` with a backend that has nothing migrated yet — a SQLite file in a scratch folder, or
    /// a new PostgreSQL database — closed (and the folder removed) before it returns.
    static func withEmptyDatabase(_ backend: Backend, _ body: (any SQLBackend) async throws -> Void) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-schema-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let db: any SQLBackend
        switch backend {
        case .sqlite: db = try await SQLiteBackend(path: dir.appendingPathComponent("t.sqlite").path)
        case .postgres:
            guard let url = Backend.postgresURL() else { return }
            db = try PostgresBackend(url: try await Backend.freshDatabase(url))
        }
        try await withTeardown({ await db.close() }) { try await body(db) }
    }

    static func versions(_ db: any SQLBackend) async throws -> [String: Int64] {
        var out: [String: Int64] = [:]
        for row in try await db.query("SELECT module, version FROM schema_modules", []) {
            if case .text(let m) = row[0], case .int(let v) = row[1] { out[m] = v }
        }
        return out
    }

    /// The database a build with one shared numbering left (versions 1–7 in `schema_migrations`,
    /// its steps in that order), with a VM, an image and an API token in it, opens in this build:
    /// every module starts from the steps it had (a step run twice would fail: `ADD COLUMN` of a
    /// column that exists), the rows are kept, and a build from before now refuses the database.
    @Test(arguments: Backend.allCases)
    func aDatabaseFromTheSharedNumberingOpensWithoutAStepRunTwice(_ backend: Backend) async throws {
        try await Self.withEmptyDatabase(backend) { db in
            let schemas = [SQLStore.schema, FleetStore.schema]
            _ = try await db.query("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied BIGINT NOT NULL)", [])
            for global in 1...7 {
                let owners = schemas.compactMap { s in s.legacyVersions.firstIndex(of: global).map { (s, $0) } }
                #expect(owners.count == 1, "global version \(global) belongs to exactly one module")
                for (schema, step) in owners { for statement in schema.steps[step] { _ = try await db.query(statement, []) } }
                _ = try await db.query("INSERT INTO schema_migrations (version, applied) VALUES (?, 0)", [.int(Int64(global))])
            }
            _ = try await db.query(
                "INSERT INTO fleet_vms (name, power_state, monitoring, version, body, host) VALUES ('web-01', 'Running', 1, 3, '{}', 'h1')",
                [])
            _ = try await db.query("INSERT INTO fleet_images (name, body, created) VALUES ('img', '{}', 1)", [])
            _ = try await db.query("INSERT INTO api_tokens (hash, role, created, expires) VALUES ('h', 'admin', 1, 99)", [])

            _ = try await SQLStore(backend: db)
            _ = try await FleetStore(backend: db)
            #expect(try await Self.versions(db) == ["attestation": 3, "fleet": 4])
            #expect(try await db.query("SELECT name, host FROM fleet_vms", []) == [[.text("web-01"), .text("h1")]])
            #expect(try await db.query("SELECT name FROM fleet_images", []) == [[.text("img")]])
            #expect(try await db.query("SELECT hash, expires FROM api_tokens", []) == [[.text("h"), .int(99)]])
            // A build with the shared numbering (it knew 7 versions) reads 8 and refuses to run.
            #expect(try await db.query("SELECT MAX(version) FROM schema_migrations", []) == [[.int(8)]])
            // Opening again runs nothing and changes nothing.
            _ = try await SQLStore(backend: db)
            _ = try await FleetStore(backend: db)
            #expect(try await Self.versions(db) == ["attestation": 3, "fleet": 4])
        }
    }

    /// A new database gets each module at its own latest version; a module recorded as newer
    /// than this build is refused with what to do; a step that fails leaves nothing of its
    /// migration behind (not its earlier statements, not the module's version row).
    @Test(arguments: Backend.allCases)
    func modulesAreVersionedApartAndAFailedStepLeavesNothing(_ backend: Backend) async throws {
        try await Self.withEmptyDatabase(backend) { db in
            _ = try await FleetStore(backend: db)   // the fleet first: the order does not matter
            _ = try await SQLStore(backend: db)
            let latest = ["attestation": Int64(SQLStore.schema.steps.count), "fleet": Int64(FleetStore.schema.steps.count)]
            #expect(try await Self.versions(db) == latest)

            // A third module adds its first step without touching the others' versions.
            let notes = SQLSchema(module: "notes", steps: [["CREATE TABLE notes (id TEXT PRIMARY KEY)"]])
            #expect(try await notes.migrate(db) == 1)
            let notes2 = SQLSchema(module: "notes", steps: notes.steps + [["ALTER TABLE notes ADD COLUMN body TEXT"]])
            #expect(try await notes2.migrate(db) == 2)
            let after = try await Self.versions(db)
            #expect(after["notes"] == 2 && after["fleet"] == Int64(FleetStore.schema.steps.count))

            // This build knows one step of "notes"; the database has two: refused, nothing changed.
            do {
                try await notes.migrate(db)
                Issue.record("a database newer than the build was opened")
            } catch let e as StorageError {
                #expect(e.description.contains("notes tables are at version 2, newer than this build's 1: upgrade tlaunch"))
            }
            #expect(try await Self.versions(db)["notes"] == 2)

            let broken = SQLSchema(module: "broken", steps: [["CREATE TABLE half (x BIGINT)", "CREATE TABLE nonsense ("]])
            await #expect(throws: (any Error).self) { try await broken.migrate(db) }
            #expect(try await Self.versions(db)["broken"] == nil, "the failed migration's version row was kept")
            await #expect(throws: (any Error).self) { _ = try await db.query("SELECT x FROM half", []) }
        }
    }
}
