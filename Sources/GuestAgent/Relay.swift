import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The agent's requests and the service's answers as they cross a byte stream the host relays
/// (a virtio-serial port: the guest needs no network, and holds no credential — the host side
/// of the port belongs to exactly one VM and adds that VM's agent token).
///
/// A frame is `"TLR1"`, a 4-byte big-endian length, then that many bytes of JSON. The magic lets
/// a reader that joined mid-stream (a relay restarted, a guest rebooted) find the next frame.
public enum RelayFrame {
    public static let magic: [UInt8] = Array("TLR1".utf8)
    /// Large enough for an event log with IMA measurements; anything larger is refused.
    public static let maxLength = 16 << 20

    public struct Request: Codable, Sendable, Hashable {
        public var id: UInt64
        public var method: String
        public var path: String
        public var contentType: String?
        public var body: Data?
        public init(id: UInt64, method: String, path: String, contentType: String?, body: Data?) {
            self.id = id; self.method = method; self.path = path; self.contentType = contentType; self.body = body
        }
    }

    public struct Response: Codable, Sendable, Hashable {
        public var id: UInt64
        public var status: Int
        public var body: Data
        public init(id: UInt64, status: Int, body: Data) { self.id = id; self.status = status; self.body = body }
    }

    public static func encode(_ value: some Encodable) throws -> [UInt8] {
        let json = Array(try JSONEncoder().encode(value))
        let n = UInt32(json.count)
        return magic + [UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)] + json
    }

    /// Reads frames out of a stream's bytes as they arrive; bytes before a magic are skipped.
    public struct Reader: Sendable {
        var buffer: [UInt8] = []
        public private(set) var skipped = 0
        public init() {}

        /// Adds bytes; returns the complete frames' JSON bodies. An oversized length is skipped
        /// as garbage (its magic is dropped and the search goes on).
        public mutating func feed(_ bytes: some Sequence<UInt8>) -> [[UInt8]] {
            buffer.append(contentsOf: bytes)
            var frames: [[UInt8]] = []
            while true {
                guard let start = Self.find(RelayFrame.magic, in: buffer) else {
                    // Keep a tail that may be the start of a magic.
                    let keep = min(buffer.count, RelayFrame.magic.count - 1)
                    skipped += buffer.count - keep
                    buffer.removeFirst(buffer.count - keep)
                    return frames
                }
                if start > 0 { skipped += start; buffer.removeFirst(start) }
                guard buffer.count >= 8 else { return frames }
                let n = Int(buffer[4]) << 24 | Int(buffer[5]) << 16 | Int(buffer[6]) << 8 | Int(buffer[7])
                if n > RelayFrame.maxLength { skipped += 4; buffer.removeFirst(4); continue }
                guard buffer.count >= 8 + n else { return frames }
                frames.append(Array(buffer[8..<8 + n]))
                buffer.removeFirst(8 + n)
            }
        }

        static func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
            guard hay.count >= needle.count else { return nil }
            for i in 0...(hay.count - needle.count) where hay[i] == needle[0] && hay[i..<i + needle.count].elementsEqual(needle) { return i }
            return nil
        }
    }
}

/// What a guest may ask through its relay.
public enum RelayRules {
    /// Its own VM's attestation API (enrolment, nonces, attestations) and nothing else: not
    /// other VMs, not baselines or policy, not the fleet.
    public static func allowed(_ r: RelayFrame.Request, vm: String) -> Bool {
        guard ["GET", "POST"].contains(r.method), !r.path.contains(".."), !r.path.contains("//"), !r.path.contains("%") else { return false }
        let mine = "/v1/vms/\(vm)/"
        guard r.path.hasPrefix(mine) else { return false }
        let rest = r.path.dropFirst(mine.count).split(separator: "?").first.map(String.init) ?? ""
        let first = rest.split(separator: "/").first.map(String.init) ?? ""
        return ["enrolment", "enrolments", "nonce", "attestations"].contains(first)
    }
}

/// Entry points for fuzzing the host's reading of what a guest writes to its relay port.
public enum RelayFuzzing {
    /// Bytes from a guest: the first byte chooses how they are split into reads. Reading never
    /// traps; the frames do not depend on the split; no frame is longer than the limit; every
    /// frame's request decodes or is dropped, and the relay's rule answers for it.
    public static func frames(_ bytes: [UInt8]) -> [String] {
        guard let first = bytes.first else { return [] }
        let data = Array(bytes.dropFirst())
        var whole = RelayFrame.Reader()
        let all = whole.feed(data)
        var split = RelayFrame.Reader()
        var parts: [[UInt8]] = []
        var at = 0, step = Int(first % 17) + 1
        while at < data.count {
            parts += split.feed(data[at..<min(data.count, at + step)])
            at += step
            step = step % 7 + 1
        }
        var v: [String] = []
        if parts != all { v.append("the frames depend on how the bytes were split into reads") }
        if all.contains(where: { $0.count > RelayFrame.maxLength }) { v.append("a frame longer than the limit") }
        for f in all {
            if let r = try? JSONDecoder().decode(RelayFrame.Request.self, from: Data(f)) {
                if RelayRules.allowed(r, vm: "vm-1") && !r.path.hasPrefix("/v1/vms/vm-1/") { v.append("the relay let a request leave its VM") }
            }
        }
        return v
    }
}

/// How a `ServiceClient` reaches the service when it is not over HTTP.
public protocol ServiceChannel: Sendable {
    func exchange(_ request: RelayFrame.Request, timeout: Duration) async throws -> RelayFrame.Response
}

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
            if n < 0 { if errno == EINTR || errno == EAGAIN { usleep(1000); continue }; throw AgentError(request.path, "write to the relay: \(String(cString: strerror(errno)))") }
            sent += n
        }
        let deadline = ContinuousClock.now + timeout
        var chunk = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let left = deadline - ContinuousClock.now
            let ms = Int32(min(1000, max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)))
            let r = poll(&p, 1, ms)
            if r < 0 { if errno == EINTR { continue }; throw AgentError(request.path, "poll the relay: \(String(cString: strerror(errno)))") }
            if r == 0 { continue }
            // A virtio-serial port whose host side is not connected reports POLLHUP: wait for it.
            if p.revents & Int16(POLLIN) == 0 { usleep(100_000); continue }
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR || errno == EAGAIN { continue }; throw AgentError(request.path, "read the relay: \(String(cString: strerror(errno)))") }
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
