import Attestation
import Foundation
import GuestAgent
import Logging
import MeasuredBoot
import Storage
import Synchronization
import TPM2
import VirtualFirmware
import VirtualTPM

/// Alerts raised, resolved and dismissed, and the webhook deliveries they queue.
extension Fleet {
    func raise(_ alert: Alert) async throws {
        let (stored, new) = try await store.raise(alert)
        if new {
            logger.warning(
                "alert raised",
                metadata: [
                    "vm": .string(stored.vm), "alert": .string(stored.id), "severity": .string(stored.severity.rawValue),
                    "title": .string(stored.title)
                ])
            try await store.appendEvent(vm: stored.vm, kind: .alert,
                                        message: "\(stored.severity.rawValue) alert \(stored.id): \(stored.title)")
        }
        await notify(WebhookPayload(event: new ? "alert.raised" : "alert.repeated", time: Time.now(), alert: stored))
    }

    /// Queues the change for every webhook (in the database) and starts delivering.
    func notify(_ payload: WebhookPayload) async {
        guard !webhooks.urls.isEmpty, let body = try? FleetStore.encoder.encode(payload) else { return }
        let now = Time.millis()
        for url in webhooks.urls {
            do {
                try await store.enqueueDelivery(url: url.absoluteString, event: payload.event, alert: payload.alert.id,
                                                body: String(decoding: body, as: UTF8.self), now: now)
            } catch {
                logger.error(
                    "webhook delivery not queued",
                    metadata: ["url": .string(url.absoluteString), "alert": .string(payload.alert.id), "error": .string("\(error)")])
            }
        }
        kickDeliveries()
    }

    /// Starts a delivery pass (after `wait`, for a retry's backoff) as a task the fleet holds:
    /// `drainDeliveries` cancels and awaits it, so no delivery runs on past a shutdown.
    func kickDeliveries(after wait: Duration? = nil) {
        deliveryPassTasks.start {
            if let wait { try? await Task.sleep(for: wait) }
            await self.deliverDue()
        }
    }

    /// Sends the deliveries that are due (each claimed first, so instances sharing a database do
    /// not send one twice); a failure is scheduled again with backoff, or dropped as lost after
    /// the last attempt. Runs after every change, after each backoff, and on every monitor pass
    /// (which picks up what a previous run left). Does nothing once `drainDeliveries` began.
    public func deliverDue() async {
        guard deliveryGate.withLock({ gate in
            guard !gate.stopped else { return false }
            gate.inflight += 1
            return true
        }) else { return }
        defer { deliveryGate.withLock { $0.inflight -= 1 } }
        guard let due = try? await store.dueDeliveries(now: Time.millis()) else { return }
        for d in due {
            guard !deliveryGate.withLock({ $0.stopped }) else { return }
            guard let url = URL(string: d.url), (try? await store.claimDelivery(d, until: Time.millis() + 60_000)) == true else { continue }
            let attempt = d.attempts + 1
            if await webhooks.post(Data(d.body.utf8), to: url, attempt: attempt, event: d.event, alert: d.alert) {
                try? await store.finishDelivery(d.id)
            } else if attempt >= webhooks.attempts {
                try? await store.finishDelivery(d.id)
                webhooks.lost.add(1, ordering: .relaxed)
                logger.error(
                    "webhook gave up",
                    metadata: [
                        "url": .string(d.url), "event": .string(d.event), "alert": .string(d.alert), "attempts": .stringConvertible(attempt)
                    ])
            } else {
                let wait = webhooks.backoff(after: attempt)
                try? await store.retryDelivery(
                    d.id, attempts: attempt,
                    at: Time.millis() + Int64(wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000))
                kickDeliveries(after: wait)
            }
        }
    }

    /// Stops starting deliveries and waits (up to `within`) for the ones under way to be
    /// written down — sent, or scheduled again — so a stopping platform leaves no claimed
    /// delivery behind for the next start to wait out. What is not due stays in the database.
    public func drainDeliveries(within: Duration = .seconds(15)) async {
        deliveryGate.withLock { $0.stopped = true }
        _ = deliveryPassTasks.cancelAll(closing: true)   // a retry waiting out its backoff ends at once
        let clock = ContinuousClock(), end = clock.now + within
        while deliveryGate.withLock({ $0.inflight }) > 0 || deliveryPassTasks.count > 0, clock.now < end {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Delivery passes under way or waiting out a backoff, as tasks the fleet holds.
    public var deliveryPasses: Int { deliveryPassTasks.count }

    /// Webhook deliveries not yet made.
    public func pendingDeliveries() async -> Int { (try? await store.pendingDeliveries()) ?? 0 }

    /// Resolves the VM's active alerts of `kinds` (nil: all).
    func resolve(vm: String, kinds: Set<AlertKind>?, resolution: String) async throws {
        try await resolve(vm: vm, among: try await store.alerts(vm: vm, status: .active), kinds: kinds, resolution: resolution)
    }

    /// Resolves those of `active` (the VM's active alerts, as read) of `kinds`; one another
    /// writer resolved meanwhile is left as it is.
    func resolve(vm: String, among active: [Alert], kinds: Set<AlertKind>?, resolution: String) async throws {
        for a in active where kinds?.contains(a.kind) ?? true {
            var next = a
            next.status = .resolved
            next.resolution = resolution
            next.updated = Time.now()
            if try await store.replaceAlert(next, expected: a) {
                logger.info("alert resolved", metadata: ["vm": .string(vm), "alert": .string(a.id), "resolution": .string(resolution)])
                try await store.appendEvent(vm: vm, kind: .alertResolved, message: "alert \(a.id) resolved: \(resolution)")
                await notify(WebhookPayload(event: "alert.resolved", time: next.updated, alert: next))
            }
        }
    }

    public func dismiss(alert id: String, by who: String, reason: String?) async throws -> Alert {
        guard id.count <= 64, let a = try await store.alert(id) else {
            throw FleetError(.notFound, "no alert \(id) (tlaunch alert list)", field: "id")
        }
        guard a.status == .active else {
            throw FleetError(.conflict, "alert \(id) is already \(a.status.rawValue.lowercased())\(a.resolution.map { ": \($0)" } ?? "")")
        }
        var next = a
        next.status = .dismissed
        next.resolution = "dismissed by \(who)" + (reason.map { ": \($0)" } ?? "")
        next.updated = Time.now()
        guard try await store.replaceAlert(next,
                                           expected: a) else { throw FleetError(.conflict, "alert \(id) changed meanwhile: read it again") }
        try? await store.appendEvent(vm: a.vm, kind: .alertDismissed, message: "alert \(id) \(next.resolution!)")
        await notify(WebhookPayload(event: "alert.dismissed", time: next.updated, alert: next))
        return next
    }
}
