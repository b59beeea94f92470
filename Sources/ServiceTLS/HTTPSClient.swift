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
        /// The connection closed with no other error before the answer ended (a kept
        /// connection the server closed between requests: the request may go again on a new one).
        public var closedBeforeAnswer = false
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
        let connection = try await Connection.open(url, tls: tls, timeout: timeout)
        defer { connection.close() }
        return try await connection.send(method, Connection.target(url), headers: headers, body: body, timeout: timeout, last: true)
    }

    /// A connection to one server for requests in turn (HTTP/1.1 keep-alive): an agent's nonce
    /// and then its evidence go over one connection — over HTTPS, one handshake. One request at
    /// a time; `close()` when done.
    public final class Connection: Sendable {
        let channel: any Channel
        let collector: ResponseCollector
        let host: String
        let port: Int
        let hostHeader: String

        init(channel: any Channel, collector: ResponseCollector, host: String, port: Int, hostHeader: String) {
            self.channel = channel; self.collector = collector; self.host = host; self.port = port; self.hostHeader = hostHeader
        }

        /// The request target of `url`: its path (at least "/") and query.
        public static func target(_ url: URL) -> String {
            var target = url.path.isEmpty ? "/" : url.path
            if let q = url.query { target += "?" + q }
            return target
        }

        /// Connects to `url`'s server (TLS, verified against `tls`, for an https URL).
        public static func open(_ url: URL, tls: ClientTLS, timeout: Duration = .seconds(60)) async throws -> Connection {
            let scheme = url.scheme?.lowercased()
            guard scheme == "https" || scheme == "http", let host = url.host, !host.isEmpty else {
                throw Failure(message: "\(url) is not an http or https URL")
            }
            let secure = scheme == "https"
            let port = url.port ?? (secure ? 443 : 80)
            let bareHost = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
            let context: NIOSSLContext?
            do { context = secure ? try HTTPSClient.context(tls) : nil } catch { throw Failure(message: "TLS setup: \(error)") }
            // SNI carries names only; an IP address is checked against the certificate's IP SANs.
            let sni: String? = PlatformTLS.ipBytes(bareHost) == nil ? bareHost : nil
            // A failed handshake closes the channel; what the request then sees ("I/O on closed
            // channel") hides why. The first error the pipeline saw is the one to report.
            let firstError = NIOLockedValueBox<(any Error)?>(nil)
            let collector = ResponseCollector(firstError: firstError)
            let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(Int64(min(timeout.components.seconds, 30))))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let context {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: sni))
                        }
                        try channel.pipeline.syncOperations.addHandler(ErrorCapture(first: firstError))
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(collector)
                    }
                }
            do {
                // An IP address is connected to as it is: a name goes through the resolver and
                // Happy Eyeballs, which for a literal is a getaddrinfo round trip on another thread.
                let channel = if sni == nil, let address = try? SocketAddress(ipAddress: bareHost, port: port) {
                    try await bootstrap.connect(to: address).get()
                } else {
                    try await bootstrap.connect(host: bareHost, port: port).get()
                }
                return Connection(channel: channel, collector: collector, host: host, port: port,
                                  hostHeader: url.port.map { "\(host):\($0)" } ?? host)
            } catch {
                throw HTTPSClient.explain(firstError.withLockedValue { $0 } ?? error, host: host, port: port)
            }
        }

        /// Whether a request may still go on this connection (the server has not closed it, nor
        /// said it would).
        public var isOpen: Bool { channel.isActive && !collector.serverCloses.withLockedValue { $0 } }

        /// Sends `method target` and returns the whole answer. `last`: the request says
        /// "Connection: close". The whole request goes in one write; a server may answer and
        /// close before reading all of it (a refusal from the head): the answer, when it came,
        /// wins over the failed write.
        public func send(_ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8]? = nil,
                         timeout: Duration = .seconds(60), last: Bool = false) async throws -> Response {
            var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: target)
            head.headers.add(name: "Host", value: hostHeader)
            if last { head.headers.add(name: "Connection", value: "close") }
            for (k, v) in headers { head.headers.add(name: k, value: v) }
            if let body { head.headers.add(name: "Content-Length", value: "\(body.count)") }
            let channel = self.channel, collector = self.collector, requestHead = head
            let promise = channel.eventLoop.makePromise(of: Response.self)
            // The deadline closes the connection: the answer then fails, and says why.
            let expired = NIOLockedValueBox(false)
            let deadline = channel.eventLoop.scheduleTask(
                in: .nanoseconds(timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
            ) {
                expired.withLockedValue { $0 = true }
                channel.close(promise: nil)
            }
            defer { deadline.cancel() }
            channel.eventLoop.execute {
                collector.expect(promise)
                channel.write(HTTPClientRequestPart.head(requestHead), promise: nil)
                if let body, !body.isEmpty { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
                channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            }
            do {
                return try await promise.futureResult.get()
            } catch where expired.withLockedValue({ $0 }) {
                throw Failure(message: "no answer from \(host):\(port) within \(timeout)")
            } catch {
                throw HTTPSClient.explain(collector.firstError.withLockedValue { $0 } ?? error, host: host, port: port)
            }
        }

        public func close() { channel.close(promise: nil) }
    }

    static func explain(_ error: any Error, host: String, port: Int) -> Failure {
        switch error {
        case let e as Failure: return e
        case let e as NIOSSLError:
            return Failure(message: "TLS handshake with \(host):\(port) failed: \(e) — is --ca the platform's tls/ca.pem?")
        case let e as BoringSSLError:
            return Failure(message: "TLS with \(host):\(port) failed: \(e) — is --ca the platform's tls/ca.pem (and, with mutual TLS, "
                                  + "--client-cert one it issued)?")
        case let e as NIOSSLExtraError:
            return Failure(message: "TLS with \(host):\(port) failed: \(e) (the certificate is not for this name or address)")
        default:
            return Failure(message: "cannot reach \(host):\(port): \(error)")
        }
    }
}

/// The answer to the request in flight, from the HTTP client handlers (on the channel's event
/// loop): it completes at the answer's end, or fails when the connection closes first.
final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    let firstError: NIOLockedValueBox<(any Error)?>
    /// The server said "Connection: close" (read from other threads through `isOpen`).
    let serverCloses = NIOLockedValueBox(false)
    private var pending: EventLoopPromise<HTTPSClient.Response>?
    private var response = HTTPSClient.Response(status: 0, headers: [], body: [])
    private var closed = false

    init(firstError: NIOLockedValueBox<(any Error)?>) { self.firstError = firstError }

    func expect(_ promise: EventLoopPromise<HTTPSClient.Response>) {
        guard !closed else { promise.fail(closedError); return }
        pending = promise
        response = HTTPSClient.Response(status: 0, headers: [], body: [])
    }

    private var closedError: any Error {
        firstError.withLockedValue { $0 } ?? HTTPSClient.Failure(message: "the connection closed before the answer ended",
                                                                 closedBeforeAnswer: true)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            response.status = Int(h.status.code)
            response.headers = h.headers.map { ($0.name, $0.value) }
            if !h.isKeepAlive { serverCloses.withLockedValue { $0 = true } }
        case .body(var b):
            response.body += b.readBytes(length: b.readableBytes) ?? []
        case .end:
            pending?.succeed(response)
            pending = nil
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        firstError.withLockedValue { if $0 == nil { $0 = error } }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        pending?.fail(closedError)
        pending = nil
        context.fireChannelInactive()
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
