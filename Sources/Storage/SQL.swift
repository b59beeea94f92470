import Foundation

/// A value bound to or read from SQL. The schema uses only 64-bit integers and text, so one set of
/// statements runs on SQLite and PostgreSQL alike.
public enum SQLValue: Sendable, Hashable {
    case null
    case int(Int64)
    case text(String)

    var int: Int64? { if case .int(let v) = self { v } else { nil } }
    var text: String? { if case .text(let v) = self { v } else { nil } }
}

/// Why a storage operation failed: the operation and what the database said.
public struct StorageError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var reason: String
    public init(_ operation: String, _ reason: String) { self.operation = operation; self.reason = reason }
    public var description: String { "storage: \(operation): \(reason)" }
}

/// What a SQL database must do for `SQLStore`: run one statement with positional parameters
/// (`?` in the text; the backend rewrites them to its own syntax) and return the rows.
public protocol SQLBackend: Sendable {
    var kind: String { get }
    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [[SQLValue]]
    /// Runs the statements in order in one transaction, serialized against other migrations
    /// (several instances may start at once).
    func migrate(_ run: @Sendable (_ query: (String, [SQLValue]) async throws -> [[SQLValue]]) async throws -> Void) async throws
    func close() async
}

/// Opens the backend a `--database` value names: `postgres://user:pass@host:port/db` or
/// `postgresql://…`, `sqlite:PATH` or a plain file path.
public enum StorageLocation {
    public static func open(_ url: String) async throws -> SQLStore {
        if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            return try await SQLStore(backend: try PostgresBackend(url: url))
        }
        let path = url.hasPrefix("sqlite:") ? String(url.dropFirst("sqlite:".count)) : url
        return try await SQLStore(backend: try await SQLiteBackend(path: path))
    }
}

/// One module's tables: numbered steps, applied in order, each once, in one transaction under the
/// backend's migration lock (several instances may start at once). Each module keeps its own
/// version in `schema_modules`, so a module adds a step without knowing the others': the
/// attestation store's tables are `SQLStore`'s, the fleet's are `FleetStore`'s.
public struct SQLSchema: Sendable {
    public let module: String
    public let steps: [[String]]
    /// The versions these steps had while every module shared one numbering (`schema_migrations`,
    /// builds before per-module versions): step i was global version `legacyVersions[i]`. A
    /// database such a build left is read from there once, and no step runs twice.
    public let legacyVersions: [Int]

    public init(module: String, steps: [[String]], legacyVersions: [Int] = []) {
        precondition(legacyVersions.count <= steps.count && legacyVersions == legacyVersions.sorted(),
                     "legacy versions name steps, in order")
        self.module = module; self.steps = steps; self.legacyVersions = legacyVersions
    }

    /// Written to `schema_migrations` by every build with per-module versions: the shared numbering
    /// ended at 7, so a build from before it finds a version it does not know and refuses the
    /// database ("newer than this build") instead of running on tables it does not understand.
    static let sharedNumberingEnded: Int64 = 8

    /// Brings the module's tables to this build's version (`steps.count`, returned) or refuses a
    /// database whose tables are newer.
    @discardableResult
    public func migrate(_ backend: any SQLBackend) async throws -> Int {
        let module = module, steps = steps, legacy = legacyVersions
        try await backend.migrate { q in
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            _ = try await q(
                "CREATE TABLE IF NOT EXISTS schema_modules (module TEXT PRIMARY KEY, version BIGINT NOT NULL, applied BIGINT NOT NULL)", [])
            _ = try await q("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied BIGINT NOT NULL)", [])
            var current: Int64
            if let v = try await q("SELECT version FROM schema_modules WHERE module = ?", [.text(module)]).first?.first?.int {
                current = v
            } else {
                // First seen by per-module versions: what the shared numbering applied of this module.
                let shared = try await q("SELECT MAX(version) FROM schema_migrations WHERE version < ?",
                                         [.int(Self.sharedNumberingEnded)]).first?.first?.int ?? 0
                current = Int64(legacy.filter { Int64($0) <= shared }.count)
                _ = try await q("INSERT INTO schema_modules (module, version, applied) VALUES (?, ?, ?)",
                                [.text(module), .int(current), .int(now)])
            }
            _ = try await q("INSERT INTO schema_migrations (version, applied) VALUES (?, ?) ON CONFLICT (version) DO NOTHING",
                            [.int(Self.sharedNumberingEnded), .int(now)])
            guard current <= Int64(steps.count) else {
                throw StorageError("migrate \(module)",
                                   "the database's \(module) tables are at version \(current), newer than this build's \(steps.count): "
                                 + "upgrade tlaunch")
            }
            for (i, statements) in steps.enumerated() where Int64(i + 1) > current {
                for s in statements { _ = try await q(s, []) }
            }
            if Int64(steps.count) > current {
                _ = try await q("UPDATE schema_modules SET version = ?, applied = ? WHERE module = ?",
                                [.int(Int64(steps.count)), .int(now), .text(module)])
            }
        }
        return steps.count
    }
}
