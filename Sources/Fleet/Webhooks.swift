import Foundation
import Logging
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What a webhook receives: `{"event": "alert.raised" | "alert.repeated" | "alert.resolved" |
/// "alert.dismissed", "time": …, "alert": {…}}`.
public struct WebhookPayload: Sendable, Codable, Hashable {
    public var event: String
    public var time: String
    public var alert: Alert
}

/// Where alert changes go: each URL gets a JSON POST per change. Deliveries wait in the
/// database (`fleet_webhook_deliveries`, an outbox) until a 2xx answer; a failure (no answer, or
/// another status) is retried with exponential backoff up to `attempts` times, then logged as
/// lost. Pending deliveries survive a restart of the platform.
public final class WebhookNotifier: Sendable {
    public let urls: [URL]
    public let attempts: Int
    public let firstBackoff: Duration
    let logger: Logger
    let session: URLSession
    /// Deliveries by outcome (for tests and logs).
    public let delivered = Atomic<Int>(0)
    public let failedAttempts = Atomic<Int>(0)
    public let lost = Atomic<Int>(0)

    public init(urls: [URL], attempts: Int = 6, firstBackoff: Duration = .milliseconds(500), logger: Logger = Logger(label: "tlaunch.webhooks")) {
        self.urls = urls; self.attempts = max(1, attempts); self.firstBackoff = firstBackoff; self.logger = logger
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = 10
        session = URLSession(configuration: config)
    }

    /// The wait before attempt `n + 1` after `n` failed attempts.
    func backoff(after n: Int) -> Duration { firstBackoff * (1 << min(max(n - 1, 0), 20)) }

    /// One POST; true on a 2xx answer.
    func post(_ body: Data, to url: URL, attempt: Int, event: String, alert: String) async -> Bool {
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue("tlaunch-webhook/1", forHTTPHeaderField: "User-Agent")
        request.setValue("\(attempt)", forHTTPHeaderField: "X-TLaunch-Delivery-Attempt")
        request.httpBody = body
        var why = ""
        do {
            let (_, response) = try await session.data(for: request)
            let status = (response as? HTTPURLResponse)?.statusCode ?? 0
            if (200..<300).contains(status) {
                delivered.add(1, ordering: .relaxed)
                logger.info("webhook delivered", metadata: ["url": .string(url.absoluteString), "event": .string(event), "alert": .string(alert), "attempt": .stringConvertible(attempt)])
                return true
            }
            why = "HTTP \(status)"
        } catch {
            why = error.localizedDescription
        }
        failedAttempts.add(1, ordering: .relaxed)
        logger.warning("webhook attempt failed", metadata: ["url": .string(url.absoluteString), "event": .string(event), "attempt": .stringConvertible(attempt), "reason": .string(why)])
        return false
    }
}
