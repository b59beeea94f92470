import AttestationAPI
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The guest's end of the relay: a character device (a virtio-serial port such as
/// `/dev/vport1p1`, found by its name under /sys/class/virtio-ports). One request at a time;
/// answers to other (older, abandoned) requests are dropped.
public final class SerialChannel: ServiceChannel {
    public let path: String
    let fd: Int32
    let state = Mutex<(next: UInt64, reader: RelayFrame.Reader)>((1, RelayFrame.Reader()))
    let busy = Mutex<Bool>(false)

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDWR | O_NOCTTY)
        guard fd >= 0 else { throw AgentError("open relay", "cannot open \(path): \(String(cString: strerror(errno)))") }
        self.fd = fd
    }

    deinit { close(fd) }

    /// The port the platform names `org.tlaunch.agent.0` (what udev would link as
    /// /dev/virtio-ports/org.tlaunch.agent.0), or nil when the VM has none.
    public static func findPort(named name: String = "org.tlaunch.agent.0", sysfs: String = "/sys/class/virtio-ports") -> String? {
        let ports = (try? FileManager.default.contentsOfDirectory(atPath: sysfs)) ?? []
        for port in ports.sorted() {
            let n = (try? String(contentsOfFile: "\(sysfs)/\(port)/name", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            if n == name { return "/dev/\(port)" }
        }
        return nil
    }

    public func exchange(_ request: RelayFrame.Request, timeout: Duration) async throws -> RelayFrame.Response {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<RelayFrame.Response, any Error>) in
            // Blocking I/O on a thread of its own, never on the cooperative pool.
            Thread.detachNewThread {
                c.resume(with: Result { try self.roundTrip(request, timeout: timeout) })
            }
        }
    }

    func roundTrip(_ request: RelayFrame.Request, timeout: Duration) throws -> RelayFrame.Response {
        var request = request
        request.id = state.withLock { s in defer { s.next += 1 }; return s.next }
        let frame = try RelayFrame.encode(request)
        var sent = 0
        while sent < frame.count {
            let n = frame[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { usleep(1000); continue };
                throw AgentError(request.path, "write to the relay: \(String(cString: strerror(errno)))")
            }
            sent += n
        }
        let deadline = ContinuousClock.now + timeout
        var chunk = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let left = deadline - ContinuousClock.now
            let ms = Int32(min(1000, max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)))
            let r = poll(&p, 1, ms)
            if r < 0 { if errno == EINTR { continue }; throw AgentError(request.path,
                                                                        "poll the relay: \(String(cString: strerror(errno)))") }
            if r == 0 { continue }
            // A virtio-serial port whose host side is not connected reports POLLHUP: wait for it.
            if p.revents & Int16(POLLIN) == 0 { usleep(100_000); continue }
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue };
                throw AgentError(request.path, "read the relay: \(String(cString: strerror(errno)))")
            }
            if n == 0 { usleep(100_000); continue }
            let frames = state.withLock { $0.reader.feed(chunk[0..<n]) }
            for f in frames {
                guard let answer = try? JSONDecoder().decode(RelayFrame.Response.self, from: Data(f)) else { continue }
                if answer.id == request.id { return answer }
            }
        }
        throw AgentError(request.path, "the host's relay did not answer within \(timeout)")
    }
}
