import Foundation
import TPM2
import Testing
import VirtualTPM

/// Access to real peers (swtpm, tpm2-tools). When `TLAUNCH_REQUIRE_INTEROP=1` (CI), a
/// missing peer fails the test; otherwise the test is skipped with a note.
public enum Interop {
    public static var required: Bool { ProcessInfo.processInfo.environment["TLAUNCH_REQUIRE_INTEROP"] == "1" }

    public static func tool(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) -> String? {
        if let path = SwtpmProcess.which(name) { return path }
        if required {
            Issue.record("\(name) is required (TLAUNCH_REQUIRE_INTEROP=1) but not installed; scripts/test.sh installs it",
                         sourceLocation: sourceLocation)
        }
        return nil
    }

    /// A fresh swtpm, or nil (skip) when swtpm is missing and interop is not required.
    public static func swtpm(manufacture: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) async throws -> SwtpmProcess? {
        guard tool("swtpm", sourceLocation: sourceLocation) != nil else { return nil }
        if manufacture, tool("swtpm_setup", sourceLocation: sourceLocation) == nil { return nil }
        return try await SwtpmProcess.start(manufacture: manufacture)
    }

    /// Runs a program off Swift's cooperative pool (on a thread of its own) and returns (status,
    /// stdout, stderr): a test waiting for a process must not take one of the pool's few threads
    /// from the in-process servers the process may be talking to.
    @discardableResult
    public static func run(_ path: String, _ args: [String], environment: [String: String] = [:],
                           directory: URL? = nil) async throws -> (Int32, String, String) {
        try await offPool { try runBlocking(path, args, environment: environment, directory: directory) }
    }

    /// Runs `work` (which blocks: a process, a file descriptor) on a thread of its own.
    public static func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in
            Thread.detachNewThread {
                do { c.resume(returning: try work()) } catch { c.resume(throwing: error) }
            }
        }
    }

    /// Runs a program, blocking the calling thread (for synchronous contexts only).
    @discardableResult
    public static func runBlocking(_ path: String, _ args: [String], environment: [String: String] = [:],
                                   directory: URL? = nil) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        if let directory { p.currentDirectoryURL = directory }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}

/// Runs `body` with a client on a fresh swtpm and tears both down.
public func withSwtpm(manufacture: Bool = false, sourceLocation: SourceLocation = #_sourceLocation,
               _ body: (TPMClient, SwtpmProcess) async throws -> Void) async throws {
    guard let sw = try await Interop.swtpm(manufacture: manufacture, sourceLocation: sourceLocation) else { return }
    defer { sw.stop(); sw.removeState() }
    let client = try TPMClient(tcti: sw.tcti)
    do {
        try await body(client, sw)
    } catch {
        await client.close()
        throw error
    }
    await client.close()
}

/// The TPMs the interop tests run against: the reference (swtpm) and ours (in-process).
/// The same scripted flows must give the same outcomes on both.
public enum TPMKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case swtpm
    case vtpm
    public var description: String { rawValue }
}

/// Runs `body` with a client on a fresh TPM of `kind` and tears it down.
public func withTPM(_ kind: TPMKind, sourceLocation: SourceLocation = #_sourceLocation,
                    _ body: (TPMClient) async throws -> Void) async throws {
    switch kind {
    case .swtpm:
        try await withSwtpm(sourceLocation: sourceLocation) { tpm, _ in try await body(tpm) }
    case .vtpm:
        let tpm = TPMClient(transport: InProcessTransport(VirtualTPM.ephemeral()))
        try await body(tpm)
    }
}
