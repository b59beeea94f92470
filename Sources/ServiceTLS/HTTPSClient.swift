import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// One HTTPS request on its own connection, verified against `ClientTLS` (pinned roots, the
/// server's name or IP address, TLS 1.2+), with an optional client certificate; or one plain
/// HTTP request for an `http` URL (a service run with --insecure-http, a webhook receiver).
///
/// The service's clients (CLI, host relay, agents outside the platform) make few requests;
/// a connection per request keeps this small and leaves no pooled state to go stale. Unlike
/// URLSession on Linux it neither trusts the system store when a CA is pinned nor spins a CPU
/// while it waits.
public enum HTTPSClient {
    public struct Response: Sendable {
        public var status: Int
        public var headers: [(String, String)]
        public var body: [UInt8]
        public func header(_ name: String) -> String? { headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1 }
    }

    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// Contexts are costly to build (roots parsed, BoringSSL set up): one per configuration.
    static let contexts = Mutex<[ClientTLS: NIOSSLContext]>([:])

    static func context(_ tls: ClientTLS) throws -> NIOSSLContext {
        try contexts.withLock { cache in
            if let c = cache[tls] { return c }
            let c = try NIOSSLContext(configuration: try tls.configuration())
            if cache.count > 16 { cache.removeAll() }
            cache[tls] = c
            return c
        }
    }

    /// Sends `method url` with `headers` and `body`; the whole answer, or `Failure` (a TLS
    /// refusal says which check failed). `tls` applies to https URLs only.
    public static func send(_ method: String, _ url: URL, headers: [(String, String)] = [], body: [UInt8]? = nil,
                            tls: ClientTLS, timeout: Duration = .seconds(60)) async throws -> Response {
        let scheme = url.scheme?.lowercased()
        guard scheme == "https" || scheme == "http", let host = url.host, !host.isEmpty else {
            throw Failure(message: "\(url) is not an http or https URL")
        }
        let secure = scheme == "https"
        let port = url.port ?? (secure ? 443 : 80)
        let bareHost = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        let context: NIOSSLContext?
        do { context = secure ? try Self.context(tls) : nil } catch { throw Failure(message: "TLS setup: \(error)") }
        var target = url.path.isEmpty ? "/" : url.path
        if let q = url.query { target += "?" + q }
        // SNI carries names only; an IP address is checked against the certificate's IP SANs.
        let sni: String? = PlatformTLS.ipBytes(bareHost) == nil ? bareHost : nil

        // A failed handshake closes the channel; what the request then sees ("I/O on closed
        // channel") hides why. The first error the pipeline saw is the one to report.
        let firstError = NIOLockedValueBox<(any Error)?>(nil)
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(Int64(min(timeout.components.seconds, 30))))
                .connect(host: bareHost, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let context { try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: sni)) }
                        try channel.pipeline.syncOperations.addHandler(ErrorCapture(first: firstError))
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                    }
                }
            // The deadline closes the connection: the read below then ends, and says why.
            let expired = NIOLockedValueBox(false)
            let deadline = channel.channel.eventLoop.scheduleTask(in: .nanoseconds(timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)) {
                expired.withLockedValue { $0 = true }
                channel.channel.close(promise: nil)
            }
            defer { deadline.cancel() }
            do {
                return try await channel.executeThenClose { inbound, outbound in
                    var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: target)
                    head.headers.add(name: "Host", value: url.port.map { "\(host):\($0)" } ?? host)
                    head.headers.add(name: "Connection", value: "close")
                    for (k, v) in headers { head.headers.add(name: k, value: v) }
                    if let body { head.headers.add(name: "Content-Length", value: "\(body.count)") }
                    // The whole request in one write. A server may answer and close before a
                    // later write of ours runs (the end of a request whose body it already read,
                    // or a refusal before reading it): NIO closes the channel at the peer's EOF,
                    // and that write fails with "I/O on closed channel" although the answer is
                    // waiting in the inbound stream. The answer wins over such a write error.
                    var parts: [HTTPClientRequestPart] = [.head(head)]
                    if let body, !body.isEmpty { parts.append(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
                    parts.append(.end(nil))
                    var writeError: (any Error)?
                    do { try await outbound.write(contentsOf: parts) } catch { writeError = error }
                    var response = Response(status: 0, headers: [], body: [])
                    for try await part in inbound {
                        switch part {
                        case .head(let h):
                            response.status = Int(h.status.code)
                            response.headers = h.headers.map { ($0.name, $0.value) }
                        case .body(var b):
                            response.body += b.readBytes(length: b.readableBytes) ?? []
                        case .end:
                            return response
                        }
                    }
                    if let writeError { throw writeError }
                    throw Failure(message: "the connection closed before the answer ended")
                }
            } catch where expired.withLockedValue({ $0 }) {
                throw Failure(message: "no answer from \(host):\(port) within \(timeout)")
            }
        } catch let e as Failure {
            throw e
        } catch {
            throw Self.explain(firstError.withLockedValue { $0 } ?? error, host: host, port: port)
        }
    }

    static func explain(_ error: any Error, host: String, port: Int) -> Failure {
        switch error {
        case let e as Failure: return e
        case let e as NIOSSLError:
            return Failure(message: "TLS handshake with \(host):\(port) failed: \(e) — is --ca the platform's tls/ca.pem?")
        case let e as BoringSSLError:
            return Failure(message: "TLS with \(host):\(port) failed: \(e) — is --ca the platform's tls/ca.pem (and, with mutual TLS, --client-cert one it issued)?")
        case let e as NIOSSLExtraError:
            return Failure(message: "TLS with \(host):\(port) failed: \(e) (the certificate is not for this name or address)")
        default:
            return Failure(message: "cannot reach \(host):\(port): \(error)")
        }
    }
}

/// Remembers the first error the channel's pipeline reports.
final class ErrorCapture: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = NIOAny
    let first: NIOLockedValueBox<(any Error)?>
    init(first: NIOLockedValueBox<(any Error)?>) { self.first = first }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        first.withLockedValue { if $0 == nil { $0 = error } }
        context.fireErrorCaught(error)
    }
}
