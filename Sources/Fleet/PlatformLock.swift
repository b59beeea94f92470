import Attestation
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One platform process per data folder: its vTPM states, VM folders and QEMUs belong to one
/// process, or two would boot the same vTPM twice (and trip the rollback check). An exclusive
/// `flock` on DATA/platform.lock, held for the process's life (the kernel drops it when the
/// process ends, however it ends), with the holder's pid written in the file for the error.
public final class PlatformLock: Sendable {
    let fd: Int32
    public let path: String

    public init(_ folder: DataFolder) throws {
        try folder.create()
        path = folder.root.appendingPathComponent("platform.lock").path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FleetError(.failed, "cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = read(fd, &buffer, buffer.count)
            close(fd)
            let holder = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "?"
            throw FleetError(.conflict, "the data folder \(folder.root.path) is in use by another platform process (pid \(holder)): stop "
                                      + "it first, or give this one its own --data folder")
        }
        _ = ftruncate(fd, 0)
        let pid = Array("\(getpid())\n".utf8)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        self.fd = fd
    }

    deinit { close(fd) }
}
