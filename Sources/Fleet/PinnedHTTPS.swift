import Foundation
import GuestAgent
import ServiceTLS

/// The service's clients on the host (the relay, the CLI, the simulated guests' agents) over
/// HTTPS that trusts only the platform's CA (or the `--ca` given), with a client certificate
/// where the service asks for mutual TLS — or over plain HTTP to a service run with
/// --insecure-http.
public struct PinnedHTTPS: HTTPTransport {
    public let tls: ClientTLS
    public init(_ tls: ClientTLS) { self.tls = tls }

    public func send(_ method: String, _ url: URL, headers: [(String, String)], body: Data?, timeout: Duration) async throws -> (status: Int, body: Data) {
        let r = try await HTTPSClient.send(method, url, headers: headers, body: body.map { Array($0) }, tls: tls, timeout: timeout)
        return (r.status, Data(r.body))
    }
}

extension ServiceClient {
    /// A client of `baseURL` through `PinnedHTTPS` (`tls` applies to an https URL).
    public static func pinned(baseURL: String, token: String?, tls: ClientTLS?) -> ServiceClient {
        var c = ServiceClient(baseURL: baseURL, token: token)
        c.transport = PinnedHTTPS(tls ?? ClientTLS())
        return c
    }
}
