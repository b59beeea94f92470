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
