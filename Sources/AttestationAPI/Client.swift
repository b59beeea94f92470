import Foundation

/// Why the agent stopped: the step, and the service's or the TPM's answer.
public struct AgentError: Error, Sendable, CustomStringConvertible {
    public var step: String
    public var message: String
    public var status: Int?
    public init(_ step: String, _ message: String, status: Int? = nil) { self.step = step; self.message = message; self.status = status }
    public var description: String { "\(step): \(message)" }
}

/// How a client's HTTP requests reach the service: the platform's `PinnedHTTPS` (plain HTTP,
/// or TLS pinned to the platform's CA), which the in-guest agent does not link.
public protocol HTTPTransport: Sendable {
    func send(
        _ method: String, _ url: URL, headers: [(String, String)], body: Data?, timeout: Duration
    ) async throws -> (status: Int, body: Data)
    /// `body` with a transport whose requests to `base`'s server share one connection, in turn
    /// (an attestation's nonce and evidence). By default each request has its own.
    func session<T>(to base: URL, _ body: (any HTTPTransport) async throws -> T) async throws -> T
}

extension HTTPTransport {
    public func session<T>(to base: URL, _ body: (any HTTPTransport) async throws -> T) async throws -> T { try await body(self) }
}

/// The service's HTTP API, as the agent and the CLI call it.
public struct ServiceClient: Sendable {
    public let baseURL: String
    public let token: String?
    public init(baseURL: String, token: String?) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.token = token
    }

    /// Wait up to 10 minutes for answers (the default is 60 s).
    public var patient = false

    /// How HTTP requests go (the platform's `PinnedHTTPS`: plain HTTP or pinned TLS). The agent
    /// links no HTTP stack of its own: in a guest it speaks through the host's relay (`channel`).
    public var transport: (any HTTPTransport)?

    /// When set, requests go through this channel (the host's relay) instead of HTTP; the
    /// relay, not the guest, holds the VM's token.
    public var channel: (any ServiceChannel)?

    /// A client that reaches the service through the host's relay.
    public init(channel: any ServiceChannel) {
        self.baseURL = "relay:"
        self.token = nil
        self.channel = channel
    }

    /// Sends a request; returns the status and body. Errors carry the service's message.
    public func send(_ method: String, _ path: String, json body: Data? = nil, contentType: String = "application/json",
                     headers: [String: String] = [:],
                     step: String) async throws -> (status: Int, body: Data) {
        if let channel {
            let answer: RelayFrame.Response
            do {
                answer = try await channel.exchange(RelayFrame.Request(id: 0, method: method, path: path,
                                                                       contentType: body == nil ? nil : contentType, body: body),
                                                    timeout: patient ? .seconds(600) : .seconds(120))
            } catch { throw AgentError(step, "cannot reach the attestation service through the host's relay: \(error)") }
            return (answer.status, answer.body)
        }
        guard let url = URL(string: baseURL + path) else { throw AgentError(step, "\(baseURL + path) is not a URL") }
        if let transport {
            var h: [(String, String)] = headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            if let token { h.append(("Authorization", "Bearer \(token)")) }
            if body != nil { h.append(("Content-Type", contentType)) }
            do { return try await transport.send(method, url, headers: h, body: body,
                                                 timeout: patient ? .seconds(600) : .seconds(60)) } catch {
                throw AgentError(step, "cannot reach the attestation service at \(baseURL): \(error)")
            }
        }
        throw AgentError(step, "no HTTP transport for \(baseURL) (a client built with ServiceClient.pinned has one)")
    }

    /// `body` with a client whose requests share one connection where the transport can (the
    /// relay's channel and a transport without sessions: as before, each request on its own).
    public func session<T>(_ body: (ServiceClient) async throws -> T) async throws -> T {
        guard channel == nil, let transport, let base = URL(string: baseURL) else { return try await body(self) }
        return try await transport.session(to: base) { kept in
            var client = self
            client.transport = kept
            return try await body(client)
        }
    }

    public func call<T: Decodable>(_ method: String, _ path: String, body: (some Encodable)? = Optional<Int>.none, as: T.Type,
                                   step: String) async throws -> T {
        let data = try body.map { try JSONEncoder().encode($0) }
        let (status, answer) = try await send(method, path, json: data, step: step)
        guard (200..<300).contains(status) else {
            let message =
                (try? JSONSerialization.jsonObject(with: answer) as? [String: Any]).flatMap {
                    ($0["error"] as? [String: Any])?["message"] as? String
                }
                ?? String(decoding: answer.prefix(500), as: UTF8.self)
            throw AgentError(step, "the service answered \(status): \(message)", status: status)
        }
        do { return try JSONDecoder().decode(T.self, from: answer) } catch {
            throw AgentError(step, "the service's answer does not decode: \(error)")
        }
    }
}
