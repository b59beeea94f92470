import Foundation

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
            for i in 0...(hay.count - needle.count) where hay[i] == needle[0] && hay[i..<i + needle.count].elementsEqual(needle) {
                return i
            }
            return nil
        }
    }
}

/// What a guest may ask through its relay.
public enum RelayRules {
    /// Its own VM's attestation API (enrolment, nonces, attestations) and nothing else: not
    /// other VMs, not baselines or policy, not the fleet.
    public static func allowed(_ r: RelayFrame.Request, vm: String) -> Bool {
        guard ["GET", "POST"].contains(r.method), !r.path.contains(".."), !r.path.contains("//"), !r.path.contains("%") else {
            return false
        }
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
                if RelayRules.allowed(r,
                                      vm: "vm-1") && !r.path.hasPrefix("/v1/vms/vm-1/") { v.append("the relay let a request leave its VM") }
            }
        }
        return v
    }
}

/// How a `ServiceClient` reaches the service when it is not over HTTP.
public protocol ServiceChannel: Sendable {
    func exchange(_ request: RelayFrame.Request, timeout: Duration) async throws -> RelayFrame.Response
}
