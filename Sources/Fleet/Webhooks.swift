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

/// Notifies webhooks of alert changes: a JSON POST to each URL; a failure (no answer, or a status
/// other than 2xx) is retried with exponential backoff up to `attempts` times, then logged as lost.
public final class WebhookNotifier: Sendable {
    public let urls: [URL]
    public let attempts: Int
    public let firstBackoff: Duration
    let logger: Logger
    let session: URLSession
    let pending = Mutex<Int>(0)
    /// Deliveries by outcome (for /metrics and tests).
    public let delivered = Atomic<Int>(0)
    public let failedAttempts = Atomic<Int>(0)
    public let lost = Atomic<Int>(0)

    public init(urls: [URL], attempts: Int = 6, firstBackoff: Duration = .milliseconds(500), logger: Logger = Logger(label: "tlaunch.webhooks")) {
        self.urls = urls; self.attempts = max(1, attempts); self.firstBackoff = firstBackoff; self.logger = logger
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = 10
        session = URLSession(configuration: config)
    }

    /// Queues delivery to every URL and returns at once.
    public func notify(_ payload: WebhookPayload) {
        guard !urls.isEmpty else { return }
        let body: Data
        do { body = try FleetStore.encoder.encode(payload) } catch { return }
        for url in urls {
            pending.withLock { $0 += 1 }
            Task { [self] in
                await deliver(body, to: url, event: payload.event, alert: payload.alert.id)
                pending.withLock { $0 -= 1 }
            }
        }
    }

    /// Deliveries still being attempted.
    public var inFlight: Int { pending.withLock { $0 } }

    func deliver(_ body: Data, to url: URL, event: String, alert: String) async {
        var backoff = firstBackoff
        for attempt in 1...attempts {
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
                    return
                }
                why = "HTTP \(status)"
            } catch {
                why = "\(error.localizedDescription)"
            }
            failedAttempts.add(1, ordering: .relaxed)
            logger.warning("webhook attempt failed", metadata: ["url": .string(url.absoluteString), "event": .string(event), "attempt": .stringConvertible(attempt), "reason": .string(why)])
            if attempt < attempts {
                try? await Task.sleep(for: backoff)
                backoff = backoff * 2
            }
        }
        lost.add(1, ordering: .relaxed)
        logger.error("webhook gave up", metadata: ["url": .string(url.absoluteString), "event": .string(event), "alert": .string(alert), "attempts": .stringConvertible(attempts)])
    }
}
