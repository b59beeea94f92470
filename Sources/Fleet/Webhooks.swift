import Crypto
import Foundation
import MeasuredBoot
import Logging
import Synchronization
import ServiceTLS

/// What a webhook receives: `{"event": "alert.raised" | "alert.repeated" | "alert.resolved" |
/// "alert.dismissed", "time": …, "alert": {…}}`.
public struct WebhookPayload: Sendable, Codable, Hashable {
    public var event: String
    public var time: String
    public var alert: Alert
}

/// Where alert changes go: each URL gets a JSON POST per change, signed (`X-TLaunch-Signature`,
/// see `signature`). Deliveries wait in the
/// database (`fleet_webhook_deliveries`, an outbox) until a 2xx answer; a failure (no answer, or
/// another status) is retried with exponential backoff up to `attempts` times, then logged as
/// lost. Pending deliveries survive a restart of the platform.
public final class WebhookNotifier: Sendable {
    public let urls: [URL]
    public let attempts: Int
    public let firstBackoff: Duration
    let logger: Logger
    /// Each attempt waits this long for the receiver's answer.
    let timeout: Duration = .seconds(10)
    /// Deliveries by outcome (for tests and logs).
    public let delivered = Atomic<Int>(0)
    public let failedAttempts = Atomic<Int>(0)
    public let lost = Atomic<Int>(0)

    /// The platform's webhook key: each receiver's signing secret is derived from it and its URL.
    let key: SymmetricKey

    /// `key` (32 bytes; DATA/webhook.key on the platform; a random one when nil) signs every delivery.
    public init(urls: [URL], key: [UInt8]? = nil, attempts: Int = 6, firstBackoff: Duration = .milliseconds(500),
                logger: Logger = Logger(label: "tlaunch.webhooks")) {
        self.urls = urls; self.attempts = max(1, attempts); self.firstBackoff = firstBackoff; self.logger = logger
        self.key = key.map { SymmetricKey(data: $0) } ?? SymmetricKey(size: .bits256)
    }

    /// The signing secret of the receiver at `url` (HMAC-SHA256 of the URL under the platform's
    /// webhook key): one per webhook, so a receiver cannot sign for another. Its hex is what
    /// `tlaunch webhook secret URL` prints for the receiver's configuration.
    public func secret(for url: URL) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Data("tlaunch-webhook/v1 \(url.absoluteString)".utf8), using: key))
    }

    /// `X-TLaunch-Signature: t=UNIX-SECONDS,v1=HEX`: HMAC-SHA256 under the receiver's secret over
    /// "t.BODY" (the timestamp, a dot, the exact body bytes). A receiver recomputes it, compares
    /// in constant time, and refuses a timestamp more than 5 minutes away (a replay).
    public static func signature(body: Data, timestamp: Int, secret: [UInt8]) -> String {
        var message = Data("\(timestamp).".utf8)
        message.append(body)
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: secret))
        return "t=\(timestamp),v1=" + hexString(Array(mac))
    }

    /// A receiver's check of a delivery (what `signature` documents), for tests and as a model.
    public static func verify(body: Data, header: String, secret: [UInt8], now: Int = Int(Date().timeIntervalSince1970),
                              tolerance: Int = 300) -> Bool {
        var t: Int?, v1: String?
        for part in header.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { continue }
            if kv[0] == "t" { t = Int(kv[1]) } else if kv[0] == "v1" { v1 = kv[1] }
        }
        guard let t, let v1, abs(now - t) <= tolerance else { return false }
        let expected = signature(body: body, timestamp: t, secret: secret)
        let given = "t=\(t),v1=\(v1)"
        guard expected.utf8.count == given.utf8.count else { return false }
        return zip(expected.utf8, given.utf8).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    /// The wait before attempt `n + 1` after `n` failed attempts.
    func backoff(after n: Int) -> Duration { firstBackoff * (1 << min(max(n - 1, 0), 20)) }

    /// One POST; true on a 2xx answer.
    func post(_ body: Data, to url: URL, attempt: Int, event: String, alert: String) async -> Bool {
        let headers = [
            ("Content-Type", "application/json"),
            ("User-Agent", "tlaunch-webhook/1"),
            ("X-TLaunch-Delivery-Attempt", "\(attempt)"),
            ("X-TLaunch-Signature", Self.signature(body: body, timestamp: Int(Date().timeIntervalSince1970), secret: secret(for: url))),
        ]
        var why = ""
        do {
            // An https receiver is verified against the system's roots.
            let answer = try await HTTPSClient.send("POST", url, headers: headers, body: Array(body), tls: ClientTLS(), timeout: timeout)
            if (200..<300).contains(answer.status) {
                delivered.add(1, ordering: .relaxed)
                logger.info(
                    "webhook delivered",
                    metadata: [
                        "url": .string(url.absoluteString), "event": .string(event), "alert": .string(alert),
                        "attempt": .stringConvertible(attempt)
                    ])
                return true
            }
            why = "HTTP \(answer.status)"
        } catch {
            why = "\(error)"
        }
        failedAttempts.add(1, ordering: .relaxed)
        logger.warning(
            "webhook attempt failed",
            metadata: [
                "url": .string(url.absoluteString), "event": .string(event), "attempt": .stringConvertible(attempt), "reason": .string(why)
            ])
        return false
    }
}
