import AttestationAPI
import Foundation
import GuestAgent
import ServiceTLS
import Synchronization

/// The service's clients on the host (the relay, the CLI, the simulated guests' agents) over
/// HTTPS that trusts only the platform's CA (or the `--ca` given), with a client certificate
/// where the service asks for mutual TLS — or over plain HTTP to a service run with
/// --insecure-http.
public struct PinnedHTTPS: HTTPTransport {
    public let tls: ClientTLS
    public init(_ tls: ClientTLS) { self.tls = tls }

    public func send(_ method: String, _ url: URL, headers: [(String, String)], body: Data?,
                     timeout: Duration) async throws -> (status: Int, body: Data) {
        let r = try await HTTPSClient.send(method, url, headers: headers, body: body.map { Array($0) }, tls: tls, timeout: timeout)
        return (r.status, Data(r.body))
    }

    public func session<T>(to base: URL, _ body: (any HTTPTransport) async throws -> T) async throws -> T {
        let kept = KeptConnection(base: base, tls: tls)
        defer { kept.close() }
        return try await body(kept)
    }
}

/// `PinnedHTTPS` in a session: requests to the session's server go over one connection, opened
/// at the first and opened again when the server has closed it between requests; a request to
/// another server, or made while one is in flight, goes on a connection of its own.
final class KeptConnection: HTTPTransport {
    let base: URL
    let tls: ClientTLS
    private let state = Mutex<(connection: HTTPSClient.Connection?, busy: Bool)>((nil, false))

    init(base: URL, tls: ClientTLS) { self.base = base; self.tls = tls }

    func sameServer(_ url: URL) -> Bool {
        url.scheme?.lowercased() == base.scheme?.lowercased() && url.host?.lowercased() == base.host?.lowercased() && url.port == base.port
    }

    func send(
        _ method: String, _ url: URL, headers: [(String, String)], body: Data?, timeout: Duration
    ) async throws -> (status: Int, body: Data) {
        let mine = sameServer(url) && state.withLock { s in
            guard !s.busy else { return false }
            s.busy = true
            return true
        }
        guard mine else { return try await PinnedHTTPS(tls).send(method, url, headers: headers, body: body, timeout: timeout) }
        defer { state.withLock { $0.busy = false } }
        let target = HTTPSClient.Connection.target(url)
        if let kept = state.withLock({ $0.connection.flatMap { $0.isOpen ? $0 : nil } }) {
            do {
                let r = try await kept.send(method, target, headers: headers, body: body.map { Array($0) }, timeout: timeout)
                return (r.status, Data(r.body))
            } catch let e as HTTPSClient.Failure where e.closedBeforeAnswer {
                // The server closed the kept connection as the request went: once more, anew.
            }
        }
        let connection = try await HTTPSClient.Connection.open(url, tls: tls, timeout: timeout)
        state.withLock { $0.connection?.close(); $0.connection = connection }
        let r = try await connection.send(method, target, headers: headers, body: body.map { Array($0) }, timeout: timeout)
        return (r.status, Data(r.body))
    }

    func close() { state.withLock { $0.connection?.close(); $0.connection = nil } }
}

extension ServiceClient {
    /// A client of `baseURL` through `PinnedHTTPS` (`tls` applies to an https URL).
    public static func pinned(baseURL: String, token: String?, tls: ClientTLS?) -> ServiceClient {
        var c = ServiceClient(baseURL: baseURL, token: token)
        c.transport = PinnedHTTPS(tls ?? ClientTLS())
        return c
    }
}
