import Foundation
import Logging
import NIOCore
import PostgresNIO

public final class PostgresBackend: SQLBackend {
    public let kind = "postgres"
    let client: PostgresClient
    let runner: Task<Void, Never>

    /// `postgres://user:password@host:port/database[?sslmode=disable|prefer|require]`.
    public init(url: String) throws {
        guard let u = URLComponents(string: url), let host = u.host, !host.isEmpty else {
            throw StorageError("open", "\(url) is not postgres://user:password@host:port/database")
        }
        let database = u.path.hasPrefix("/") ? String(u.path.dropFirst()) : u.path
        let sslmode = u.queryItems?.first { $0.name == "sslmode" }?.value ?? "disable"
        let tls: PostgresClient.Configuration.TLS
        switch sslmode {
        case "disable": tls = .disable
        case "prefer": tls = .prefer(.makeClientConfiguration())
        case "require": tls = .require(.makeClientConfiguration())
        default: throw StorageError("open", "sslmode=\(sslmode) is not one of disable, prefer, require")
        }
        var config = PostgresClient.Configuration(host: host, port: u.port ?? 5432, username: u.user ?? "postgres",
                                                  password: u.password, database: database.isEmpty ? nil : database, tls: tls)
        config.options.maximumConnections = 16
        let client = PostgresClient(configuration: config, backgroundLogger: Logger(label: "tlaunch.postgres"))
        self.client = client
        self.runner = Task { await client.run() }
    }

    static func bindings(_ binds: [SQLValue]) -> PostgresBindings {
        var b = PostgresBindings(capacity: binds.count)
        for v in binds {
            switch v {
            case .null: b.appendNull()
            case .int(let i): b.append(i)
            case .text(let s): b.append(s)
            }
        }
        return b
    }

    /// `?` → `$1, $2, …` (the statements of `SQLStore` have no `?` inside literals).
    static func numbered(_ sql: String) -> String {
        var out = ""
        var n = 0
        for ch in sql {
            if ch == "?" { n += 1; out += "$\(n)" } else { out.append(ch) }
        }
        return out
    }

    static func rows(_ seq: PostgresRowSequence) async throws -> [[SQLValue]] {
        var out: [[SQLValue]] = []
        for try await row in seq {
            var r: [SQLValue] = []
            for cell in row {
                if cell.bytes == nil { r.append(.null); continue }
                switch cell.dataType {
                case .int8, .int4, .int2: r.append(.int(try cell.decode(Int64.self)))
                case .bool: r.append(.int(try cell.decode(Bool.self) ? 1 : 0))
                default: r.append(.text(try cell.decode(String.self)))
                }
            }
            out.append(r)
        }
        return out
    }

    public func query(_ sql: String, _ binds: [SQLValue]) async throws -> [[SQLValue]] {
        do {
            let q = PostgresQuery(unsafeSQL: Self.numbered(sql), binds: Self.bindings(binds))
            return try await Self.rows(try await client.query(q))
        } catch let e as PSQLError {
            throw StorageError(String(sql.prefix(60)), e.serverInfo?[.message] ?? "\(e.code)")
        } catch {
            throw StorageError(String(sql.prefix(60)), "\(error)")
        }
    }

    public func migrate(_ run: @Sendable ((String, [SQLValue]) async throws -> [[SQLValue]]) async throws -> Void) async throws {
        do {
            try await client.withConnection { (conn: PostgresConnection) async throws -> Void in
                let logger = Logger(label: "tlaunch.postgres.migrate")
                func q(_ sql: String, _ binds: [SQLValue]) async throws -> [[SQLValue]] {
                    try await Self.rows(try await conn.query(PostgresQuery(unsafeSQL: Self.numbered(sql), binds: Self.bindings(binds)),
                                                             logger: logger))
                }
                // One migrator at a time across every instance (an advisory lock held by this session).
                _ = try await q("SELECT pg_advisory_lock(7427001)", [])
                do {
                    _ = try await q("BEGIN", [])
                    try await run(q)
                    _ = try await q("COMMIT", [])
                } catch {
                    _ = try? await q("ROLLBACK", [])
                    _ = try? await q("SELECT pg_advisory_unlock(7427001)", [])
                    throw error
                }
                _ = try await q("SELECT pg_advisory_unlock(7427001)", [])
            }
        } catch let e as PSQLError {
            throw StorageError("migrate", e.serverInfo?[.message] ?? "\(e.code)")
        }
    }

    /// Ends the client's run loop (its connections closed) and waits for it; closing again is
    /// harmless.
    public func close() async {
        runner.cancel()
        await runner.value
    }
}
