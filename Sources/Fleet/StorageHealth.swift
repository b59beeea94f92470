import Foundation
import Storage
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Whether the platform can keep what it does: the data folder takes writes (a full or
/// read-only disk is found by writing, not by guessing) and the database answers.
///
/// A storage failure cannot be written down where it happened — the disk is what failed — so
/// the fleet keeps it in memory: `/readyz` answers 503 with the reason, the VMs whose operation
/// it interrupted show it in their views, and once storage works again each of them gets an
/// alert (what was interrupted, when, why) and a new attestation says what state it is in.
final class StorageWatch: Sendable {
    struct Interrupted: Sendable { var operation: String; var reason: String; var at: Int64 }
    let interrupted = Mutex<[String: Interrupted]>([:])
    let cached = Mutex<(at: ContinuousClock.Instant, problem: String?)?>(nil)

    /// Space below which the data folder counts as full (a vTPM state write or a SQLite page
    /// could not be relied on).
    static let minimumFree: UInt64 = 8 << 20

    /// The data folder's problem, or nil: too little space, or a 4 KiB write, fsync and
    /// removal that fail.
    static func probe(_ folder: URL) -> String? {
        var st = statvfs()
        if statvfs(folder.path, &st) == 0 {
            let free = UInt64(st.f_bavail) * UInt64(st.f_frsize)
            if free < minimumFree {
                return "the data folder \(folder.path) is full (\(free >> 10) KiB free; the platform needs at least \(minimumFree >> 20) "
                     + "MiB): free space or move it to a larger disk"
            }
        }
        let file = folder.appendingPathComponent(".storage-probe-\(getpid())")
        let fd = open(file.path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return "the data folder \(folder.path) cannot be written: \(String(cString: strerror(errno)))" }
        defer { close(fd); unlink(file.path) }
        let block = [UInt8](repeating: 0, count: 4096)
        let wrote = block.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard wrote == block.count, fsync(fd) == 0 else {
            return "the data folder \(folder.path) cannot be written: "
                 + "\(wrote < 0 || wrote != block.count ? String(cString: strerror(errno)) : "fsync failed")"
        }
        return nil
    }

    /// Whether an error is storage failing (not a refusal): the database or a file write.
    static func isStorage(_ error: any Error) -> Bool {
        if error is StorageError { return true }
        let text = "\(error)".lowercased()
        return ["no space left", "read-only file system", "disk is full", "readonly database", "disk i/o error",
                "database or disk is full"].contains { text.contains($0) }
    }
}

extension Fleet {
    /// The platform's storage problem, or nil (probed at most once a second, unless `fresh`).
    public func storageProblem(fresh: Bool = false) async -> String? {
        let now = ContinuousClock.now
        if !fresh, let c = storage.cached.withLock({ $0 }), now - c.at < .seconds(1) { return c.problem }
        var problem = StorageWatch.probe(root)
        if problem == nil {
            do { try await store.ping() } catch { problem = "the database does not answer: \(error)" }
        }
        storage.cached.withLock { $0 = (now, problem) }
        return problem
    }

    /// Notes a VM operation that storage interrupted (kept in memory: the disk is what failed).
    func noteInterrupted(_ vm: String, _ operation: String, _ error: any Error) {
        guard StorageWatch.isStorage(error) else { return }
        storage.interrupted.withLock { $0[vm] = .init(operation: operation, reason: "\(error)", at: Time.millis()) }
        storage.cached.withLock { $0 = nil }
        logger.error("storage failed during \(operation)", metadata: ["vm": .string(vm), "error": .string("\(error)")])
    }

    /// What storage interrupted for this VM, while it is not yet recorded.
    public func interruption(_ vm: String) -> String? {
        storage.interrupted.withLock { $0[vm] }.map { "\($0.operation) interrupted at \(Time.rfc3339($0.at)): \($0.reason)" }
    }

    /// Once storage works again: an alert for each interrupted VM, and a new attestation of those
    /// that run, so that what they are in is measured rather than assumed.
    func recordInterruptions() async {
        let pending = storage.interrupted.withLock { $0 }
        guard !pending.isEmpty, await storageProblem(fresh: true) == nil else { return }
        for (name, what) in pending {
            guard let vm = try? await store.vm(name) else {
                _ = storage.interrupted.withLock { $0.removeValue(forKey: name) }
                continue
            }
            do {
                try await raise(AlertBuilder.storageInterrupted(vm, operation: what.operation, reason: what.reason,
                                                                at: Time.rfc3339(what.at)))
                try await store.appendEvent(vm: name, kind: .storageFailure, message: "\(what.operation) interrupted by a storage failure "
                                                                                    + "at \(Time.rfc3339(what.at)): \(what.reason)")
                _ = storage.interrupted.withLock { $0.removeValue(forKey: name) }
            } catch { continue }
            if vm.powerState == .running, vm.integrityMonitoring, hypervisor(for: vm).isRunning(name), !hypervisor(for: vm).guestRunsAgent {
                _ = await attestNow(name)
            }
        }
    }
}
