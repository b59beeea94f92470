import CSQLite3
import Foundation
import Synchronization

/// SQLite in a file (the embedded default): the system's libsqlite3, one connection, WAL journal.
///
/// A statement runs on the calling thread: an attestation's five statements take tens of
/// microseconds each, less than the two thread hops a thread pool would add to each (measured by
/// `TLaunchBench --only-attestation`). Statements are prepared once and kept (the store's SQL is a
/// fixed set of texts). The connection never waits inside SQLite for another process's lock
/// (e.g. `tlaunch token create` writing the same file): a busy database is tried again after a
/// suspension that leaves the thread free, for up to `busyTimeout`.
public final class SQLiteBackend: SQLBackend, @unchecked Sendable {
    public let kind = "sqlite"
    let path: String
    /// The connection and its prepared statements, used by one caller at a time.
    private let state: ConnectionLock
    let busyTimeout: Duration

    final class Connection {
        let db: OpaquePointer
        var statements: [String: OpaquePointer] = [:]
        init(db: OpaquePointer) { self.db = db }
    }

    /// At most this many distinct statements are kept prepared; beyond it the cache starts over
    /// (SQL built with varying text would otherwise grow it without bound).
    static let statementCacheLimit = 256

    public init(path: String, busyTimeout: Duration = .seconds(10)) async throws {
        self.path = path
        self.busyTimeout = busyTimeout
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK, let db = handle else {
            let why = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            if let handle { sqlite3_close_v2(handle) }
            throw StorageError("open \(path)", why)
        }
        sqlite3_extended_result_codes(db, 1)
        let connection = Connection(db: db)
        // The WAL is copied back into the database by a checkpointer of its own (a thread and a
        // connection), never inside a request: SQLite's automatic checkpoint runs in whichever
        // commit crosses 1000 pages and holds that request for its copy and fsync (the p99 of
        // `TLaunchBench --only-attestation` was that copy).
        do {
            for pragma in ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON",
                           "PRAGMA wal_autocheckpoint=0"] {
                var tries = 0
                while case .busy = try Self.attempt(pragma, [], on: connection) {
                    tries += 1
                    guard .milliseconds(10) * tries < busyTimeout else { throw StorageError(pragma, "the database is locked by another "
                                                                                                  + "process: \(path)") }
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
        } catch {
            for s in connection.statements.values { sqlite3_finalize(s) }
            sqlite3_close_v2(db)
            throw error
        }
        state = ConnectionLock(connection)
        checkpointer = Checkpointer(path: path)
    }

    let checkpointer: Checkpointer

    /// The connection behind a plain pthread mutex. Statements hold it for tens of
    /// microseconds and two request threads often want it at once: Synchronization's `Mutex` is
    /// a priority-inheriting futex on Linux, which sends every contended lock through the
    /// kernel's rt-mutex (a tenth of the server's CPU in `TLaunchBench --fleet-http` went to
    /// that and its context switches); glibc's mutex spins briefly in user space first.
    final class ConnectionLock: @unchecked Sendable {
        private let lock = NSLock()
        private let connection: Connection
        init(_ connection: Connection) { self.connection = connection }
        func withLock<T>(_ body: (Connection) throws -> T) rethrows -> T {
            lock.lock()
            defer { lock.unlock() }
            return try body(connection)
        }
    }

    deinit {
        checkpointer.stop()
        state.withLock { c in
            for s in c.statements.values { sqlite3_finalize(s) }
            c.statements.removeAll()
            sqlite3_close_v2(c.db)
        }
    }

    /// What one attempt at a statement came to.
    private enum Attempt {
        case rows([[SQLValue]])
        case busy
    }

    public func query(_ sql: String, _ binds: [SQLValue]) async throws -> [[SQLValue]] {
        let clock = ContinuousClock()
        let deadline = clock.now + busyTimeout
        var pause = Duration.milliseconds(1)
        while true {
            switch try state.withLock({ try Self.attempt(sql, binds, on: $0) }) {
            case .rows(let rows): return rows
            case .busy:
                guard clock.now < deadline else {
                    throw StorageError(String(sql.prefix(60)), "the database is locked by another process (waited \(busyTimeout)): \(path)")
                }
                try await Task.sleep(for: pause)
                pause = min(pause * 2, .milliseconds(50))
            }
        }
    }

    /// Runs `sql` once on `c`: every row, or `.busy` when another connection holds the lock it
    /// needs (nothing of the statement is then left applied: SQLite rolls a failed statement back).
    private static func attempt(_ sql: String, _ binds: [SQLValue], on c: Connection) throws -> Attempt {
        let statement = try prepared(sql, on: c)
        defer { sqlite3_reset(statement); sqlite3_clear_bindings(statement) }
        for (i, v) in binds.enumerated() {
            let index = Int32(i + 1)
            let rc: Int32
            switch v {
            case .null: rc = sqlite3_bind_null(statement, index)
            case .int(let n): rc = sqlite3_bind_int64(statement, index, n)
            case .text(let s):
                var s = s
                rc = s.withUTF8 { utf8 in
                    utf8.withMemoryRebound(to: CChar.self) { text in
                        guard let base = text.baseAddress else { return sqlite3_bind_text(statement, index, "", 0, transient) }
                        return sqlite3_bind_text64(statement, index, base, sqlite3_uint64(text.count), transient, UInt8(SQLITE_UTF8))
                    }
                }
            }
            guard rc == SQLITE_OK else { throw error(sql, c.db, "binding parameter \(index)") }
        }
        var rows: [[SQLValue]] = []
        while true {
            let rc = sqlite3_step(statement)
            switch rc & 0xff {
            case SQLITE_ROW:
                let n = sqlite3_column_count(statement)
                var row: [SQLValue] = []
                row.reserveCapacity(Int(n))
                for k in 0..<n { row.append(column(statement, k)) }
                rows.append(row)
            case SQLITE_DONE:
                return .rows(rows)
            case SQLITE_BUSY:
                return .busy
            default:
                throw error(sql, c.db, nil)
            }
        }
    }

    private static func column(_ statement: OpaquePointer, _ k: Int32) -> SQLValue {
        switch sqlite3_column_type(statement, k) {
        case SQLITE_INTEGER: return .int(sqlite3_column_int64(statement, k))
        case SQLITE_FLOAT: return .int(Int64(sqlite3_column_double(statement, k)))
        case SQLITE_NULL: return .null
        default:   // text, and a blob read as its bytes in UTF-8
            let count = Int(sqlite3_column_bytes(statement, k))
            guard count > 0, let bytes = sqlite3_column_text(statement, k) else { return .text("") }
            return .text(String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self))
        }
    }

    private static func prepared(_ sql: String, on c: Connection) throws -> OpaquePointer {
        if let s = c.statements[sql] { return s }
        if c.statements.count >= statementCacheLimit {
            for s in c.statements.values { sqlite3_finalize(s) }
            c.statements.removeAll()
        }
        var statement: OpaquePointer?
        var rest = ""
        let rc = sql.withCString { text in
            var tail: UnsafePointer<CChar>?
            let rc = sqlite3_prepare_v3(c.db, text, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, &tail)
            if let tail { rest = String(cString: tail) }
            return rc
        }
        guard rc == SQLITE_OK, let statement else { throw error(sql, c.db, "preparing") }
        guard rest.allSatisfy({ $0.isWhitespace || $0 == ";" }) else {
            sqlite3_finalize(statement)
            throw StorageError(String(sql.prefix(60)), "one statement per query: text follows the first statement")
        }
        c.statements[sql] = statement
        return statement
    }

    private static func error(_ sql: String, _ db: OpaquePointer, _ step: String?) -> StorageError {
        let what = String(cString: sqlite3_errmsg(db))
        return StorageError(String(sql.prefix(60)), step.map { "\($0): \(what)" } ?? what)
    }

    /// SQLITE_TRANSIENT: SQLite copies a bound text before the call returns.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    public func migrate(_ run: @Sendable ((String, [SQLValue]) async throws -> [[SQLValue]]) async throws -> Void) async throws {
        _ = try await query("BEGIN IMMEDIATE", [])
        do {
            try await run { try await self.query($0, $1) }
            _ = try await query("COMMIT", [])
        } catch {
            _ = try? await query("ROLLBACK", [])
            throw error
        }
    }

    public func close() async { checkpointer.stop() }

    /// Checkpoints the WAL every 200 ms (PASSIVE: never waits for readers or writers; a
    /// write that comes meanwhile goes on into the WAL) on a thread of its own, and once more
    /// when stopped.
    final class Checkpointer: @unchecked Sendable {
        final class Flag: Sendable {
            let value = Mutex(false)
            var isSet: Bool { value.withLock { $0 } }
            /// Sets it; true when it was not set before.
            func set() -> Bool { value.withLock { v in defer { v = true }; return !v } }
        }
        private let stopped = Flag()
        private let done = DispatchSemaphore(value: 0)

        init(path: String) {
            Thread.detachNewThread { [stopped, done] in
                defer { done.signal() }
                var handle: OpaquePointer?
                guard sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK, let db = handle else {
                    if let handle { sqlite3_close_v2(handle) }
                    return
                }
                defer { sqlite3_close_v2(db) }
                sqlite3_busy_timeout(db, 0)
                // A connection sees the WAL once it has read the database: until then a checkpoint
                // finds "not in WAL mode" and does nothing.
                sqlite3_exec(db, "PRAGMA journal_mode", nil, nil, nil)
                while true {
                    let stop = stopped.isSet
                    sqlite3_wal_checkpoint_v2(db, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
                    if stop { return }
                    for _ in 0..<20 where !stopped.isSet { usleep(10_000) }   // 200 ms, woken within 10 ms by stop()
                }
            }
        }

        /// Stops the thread after a last checkpoint (once; later calls return at once).
        func stop() {
            if stopped.set() { done.wait() }
        }
    }
}
