import Foundation
import Storage
import Testing

/// The embedded store's SQLite backend (the system's libsqlite3, statements on the caller's
/// thread, prepared once): values round-trip exactly, bad SQL is a typed error that names the
/// statement, and another process's lock is waited out without holding a thread, within a bound.
@Suite struct SQLiteBackendTests {
    func scratch() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-sqlite-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func valuesRoundTripAndStatementsAreReused() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let db = try await SQLiteBackend(path: dir.appendingPathComponent("t.sqlite").path)
        _ = try await db.query("CREATE TABLE t (k INTEGER PRIMARY KEY, s TEXT, n INTEGER)", [])
        let texts = ["", "plain", "ünïcødé ✓", "nul\u{0}inside", String(repeating: "x", count: 100_000)]
        for (i, s) in texts.enumerated() {
            _ = try await db.query("INSERT INTO t (k, s, n) VALUES (?, ?, ?)",
                                   [.int(Int64(i)), .text(s), i == 0 ? .null : .int(Int64.min + Int64(i))])
        }
        let rows = try await db.query("SELECT k, s, n FROM t ORDER BY k", [])
        #expect(rows.count == texts.count)
        for (i, row) in rows.enumerated() {
            #expect(row[0] == .int(Int64(i)))
            #expect(row[1] == .text(texts[i]), "text \(i) changed on its way through SQLite")
            #expect(row[2] == (i == 0 ? .null : .int(Int64.min + Int64(i))))
        }
        // The same text again with other parameters: a reused statement binds afresh.
        #expect(try await db.query("SELECT s FROM t WHERE k = ?", [.int(1)]) == [[.text("plain")]])
        #expect(try await db.query("SELECT s FROM t WHERE k = ?", [.int(2)]) == [[.text("ünïcødé ✓")]])
        #expect(try await db.query("SELECT s FROM t WHERE k = ?", [.int(99)]).isEmpty)
        // More distinct texts than the cache keeps: each still answers its own question.
        for i in 0..<300 {
            #expect(try await db.query("SELECT \(i) + k FROM t WHERE k = ?", [.int(1)]) == [[.int(Int64(i + 1))]])
        }
        // RETURNING (the store's atomic steps) on this SQLite.
        #expect(try await db.query("UPDATE t SET n = 7 WHERE k = ? RETURNING k", [.int(1)]) == [[.int(1)]])
    }

    /// Many requests at once on the one connection (the server's threads all want it): each
    /// statement runs whole under the connection's lock — every write lands once, every read sees
    /// its own row, and a statement's rows never mix with another's.
    @Test func concurrentStatementsOnTheOneConnectionStayWhole() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let db = try await SQLiteBackend(path: dir.appendingPathComponent("t.sqlite").path)
        _ = try await db.query("CREATE TABLE t (k INTEGER PRIMARY KEY, s TEXT)", [])
        let writers = 16, each = 100
        try await withThrowingTaskGroup(of: Void.self) { g in
            for w in 0..<writers {
                g.addTask {
                    for i in 0..<each {
                        let k = Int64(w * each + i)
                        _ = try await db.query("INSERT INTO t (k, s) VALUES (?, ?)", [.int(k), .text("writer \(w) row \(i)")])
                        let back = try await db.query("SELECT s FROM t WHERE k = ?", [.int(k)])
                        #expect(back == [[.text("writer \(w) row \(i)")]])
                        // A multi-row read while others write: its rows are its own, in order.
                        let mine = try await db.query("SELECT k FROM t WHERE k >= ? AND k <= ? ORDER BY k",
                                                      [.int(Int64(w * each)), .int(k)])
                        #expect(mine == (Int64(w * each)...k).map { [.int($0)] })
                    }
                }
            }
            try await g.waitForAll()
        }
        #expect(try await db.query("SELECT COUNT(*), SUM(k) FROM t",
                                   []) == [[.int(Int64(writers * each)), .int(Int64((writers * each - 1) * writers * each / 2))]])
    }

    /// No request copies the WAL back (SQLite's automatic checkpoint is off): the backend's own
    /// checkpointer does, so the database file grows with what was written while nothing else
    /// runs, and the WAL stops growing.
    @Test func theWALIsCheckpointedOutsideRequests() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("t.sqlite").path
        let db = try await SQLiteBackend(path: path)
        #expect(try await db.query("PRAGMA wal_autocheckpoint", []) == [[.int(0)]])
        _ = try await db.query("CREATE TABLE big (s TEXT)", [])
        let row = String(repeating: "x", count: 64 << 10)
        for _ in 0..<32 { _ = try await db.query("INSERT INTO big VALUES (?)", [.text(row)]) }   // 2 MiB
        func size(_ p: String) -> Int { ((try? FileManager.default.attributesOfItem(atPath: p)[.size]) as? Int) ?? 0 }
        var waited = 0
        while size(path) < 2 << 20, waited < 300 { try await Task.sleep(for: .milliseconds(50)); waited += 1 }
        #expect(size(path) >= 2 << 20, "the database file did not receive the WAL's pages (\(size(path)) bytes)")
        await db.close()
    }

    @Test func badSQLIsATypedErrorNamingTheStatement() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let db = try await SQLiteBackend(path: dir.appendingPathComponent("t.sqlite").path)
        await #expect { _ = try await db.query("SELEC 1", []) } throws: { e in
            let e = try #require(e as? StorageError)
            return e.operation == "SELEC 1" && e.reason.contains("syntax error")
        }
        // Two statements in one text: refused, the first not run.
        _ = try await db.query("CREATE TABLE u (a INTEGER)", [])
        await #expect { _ = try await db.query("INSERT INTO u VALUES (1); DROP TABLE u", []) } throws: { e in
            (e as? StorageError)?.reason.contains("one statement per query") == true
        }
        #expect(try await db.query("SELECT count(*) FROM u", []) == [[.int(0)]])
        // A constraint failure leaves the connection usable.
        _ = try await db.query("CREATE TABLE v (a INTEGER PRIMARY KEY)", [])
        _ = try await db.query("INSERT INTO v VALUES (?)", [.int(1)])
        await #expect(throws: StorageError.self) { _ = try await db.query("INSERT INTO v VALUES (?)", [.int(1)]) }
        _ = try await db.query("INSERT INTO v VALUES (?)", [.int(2)])
        #expect(try await db.query("SELECT a FROM v ORDER BY a", []) == [[.int(1)], [.int(2)]])
        // A file that cannot be a database: the open fails saying where.
        let notADirectory = dir.appendingPathComponent("file")
        try Data("x".utf8).write(to: notADirectory)
        await #expect { _ = try await SQLiteBackend(path: notADirectory.appendingPathComponent("t.sqlite").path) } throws: { e in
            (e as? StorageError)?.operation.contains(notADirectory.path) == true
        }
    }

    /// Another process (Python's sqlite3, as `tlaunch token create` would be) holds the write
    /// lock: a write waits until it is released and then lands; with a shorter bound than the
    /// lock is held, it fails saying the database is locked, and nothing of it is applied.
    @Test func anotherProcesssLockIsWaitedOutWithinABound() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("t.sqlite").path
        let patient = try await SQLiteBackend(path: path, busyTimeout: .seconds(120))   // longer than any stall of a loaded machine
        let impatient = try await SQLiteBackend(path: path, busyTimeout: .milliseconds(300))
        _ = try await patient.query("CREATE TABLE w (a INTEGER)", [])

        // The holder keeps the lock until told to let go (a file appears), not for a time, so a
        // slow machine cannot make the lock end early.
        let locked = dir.appendingPathComponent("locked"), release = dir.appendingPathComponent("release")
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        holder.arguments = ["-c", """
            import os, sqlite3, sys, time
            c = sqlite3.connect(sys.argv[1], isolation_level=None)
            c.execute('BEGIN IMMEDIATE'); c.execute('INSERT INTO w VALUES (100)')
            open(sys.argv[2], 'w').close()
            deadline = time.monotonic() + 120
            while not os.path.exists(sys.argv[3]) and time.monotonic() < deadline: time.sleep(0.01)
            c.execute('COMMIT')
            """, path, locked.path, release.path]
        try holder.run()
        // Whatever happens below, the holder lets go and ends (a holder left running would keep
        // the test runner's output open).
        defer { try? Data().write(to: release); if holder.isRunning { holder.terminate() } }
        for _ in 0..<1200 where !FileManager.default.fileExists(atPath: locked.path) { try await Task.sleep(for: .milliseconds(25)) }
        #expect(FileManager.default.fileExists(atPath: locked.path), "python3 never took the lock")

        let clock = ContinuousClock()
        let start = clock.now
        await #expect { _ = try await impatient.query("INSERT INTO w VALUES (?)", [.int(1)]) } throws: { e in
            (e as? StorageError)?.reason.contains("locked by another process") == true
        }
        #expect(clock.now - start >= .milliseconds(300))
        // The patient write waits (the thread free meanwhile: the release below runs on this
        // same pool), and lands once the lock is let go.
        let write = Task { try await patient.query("INSERT INTO w VALUES (?)", [.int(2)]) }
        try await Task.sleep(for: .milliseconds(300))
        let released = clock.now
        try Data().write(to: release)
        _ = try await write.value
        #expect(clock.now > released)
        while holder.isRunning { try await Task.sleep(for: .milliseconds(10)) }
        #expect(holder.terminationStatus == 0)
        #expect(try await patient.query("SELECT a FROM w ORDER BY a", []) == [[.int(2)], [.int(100)]])
    }
}
