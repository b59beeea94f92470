import Foundation
import Attestation
import Fleet
import GuestAgent
import Hummingbird
@testable import Server
import TLaunchTestSupport
import Testing

/// Every route the server registers, called by every kind of caller: the roles each route
/// admits come from the API's own route table (the OpenAPI document's `roles`) and, for the
/// dashboard's pages, from the table below. A route added without an entry fails this test;
/// a route that answers a caller its entry does not admit, or refuses one it does, fails it too.
@Suite struct AuthorizationMatrixTests {
    enum Caller: String, CaseIterable {
        case none, reader, agentOwn = "agent of this VM", agentOther = "agent of another VM", admin, expired = "expired admin", revoked =
            "revoked admin", signin = "sign-in code"
    }

    /// Who may use a route.
    struct Admits {
        var roles: Set<String>        // admin, reader, agent
        var ownAgentOnly = true       // an agent token only for its own VM
        var everyone = false          // public: no token needed (a token that is not valid is still refused)
        /// The sign-in endpoints themselves: anyone reaches them, and their answer depends on
        /// the form (a wrong token is a 401 sign-in page), so only "never 403, never 5xx" is checked.
        var signInEndpoint = false
        func admits(_ c: Caller) -> Bool {
            if everyone { return c != .expired && c != .revoked }
            switch c {
            case .admin: return roles.contains("admin")
            case .reader: return roles.contains("reader")
            case .agentOwn: return roles.contains("agent")
            case .agentOther: return roles.contains("agent") && !ownAgentOnly
            case .none, .expired, .revoked, .signin: return false
            }
        }
    }

    /// The OpenAPI table's "admin, reader, agent (own VM)" / "public".
    static func parse(_ roles: String) -> Admits {
        if roles == "public" { return Admits(roles: [], everyone: true) }
        let names = roles.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        return Admits(roles: Set(names.map { $0.hasPrefix("agent") ? "agent" : $0 }), ownAgentOnly: true)
    }

    /// The dashboard's pages (not in the API document): sign-in and the live pages' script (the
    /// same bytes for everyone, no data) are public, reading needs an admin or reader session,
    /// changing the fleet an admin's.
    static let dashboard: [String: Admits] = [
        "GET /login": Admits(roles: [], everyone: true),
        "GET /static/live.js": Admits(roles: [], everyone: true),
        "POST /login": Admits(roles: [], everyone: true, signInEndpoint: true),
        "POST /logout": Admits(roles: [], everyone: true, signInEndpoint: true),
        "GET /": Admits(roles: ["admin", "reader"]),
        "GET /vms/{vm}": Admits(roles: ["admin", "reader"]),
        "POST /vms/{vm}/action": Admits(roles: ["admin"]),
        "GET /alerts": Admits(roles: ["admin", "reader"]),
        "GET /alerts/{id}": Admits(roles: ["admin", "reader"]),
        "POST /alerts/{id}/dismiss": Admits(roles: ["admin"]),
        "GET /images": Admits(roles: ["admin", "reader"]),
        "GET /deploy": Admits(roles: ["admin"]),
        "POST /deploy": Admits(roles: ["admin"]),
    ]

    /// A refusal: 401/403, or (the dashboard, for no session) a redirect to sign in.
    static func refused(_ status: Int, _ headers: [String: String]) -> Bool {
        status == 401 || status == 403 || ((status == 302 || status == 303) && headers["location"]?.hasPrefix("/login") == true)
    }

    @Test func everyRouteAdmitsExactlyTheCallersItsEntryNames() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            let vm = "mx-1"
            #expect(try await p.request("POST", "/v1/vms", ["name": vm, "integrityMonitoring": true]).0 == 201)
            let store = p.service.store
            var tokens: [Caller: String] = [:]
            tokens[.reader] = try await AttestationService.createAPIToken(store: store, role: .reader, vm: nil)
            tokens[.agentOwn] = try await AttestationService.createAPIToken(store: store, role: .agent, vm: vm)
            tokens[.agentOther] = try await AttestationService.createAPIToken(store: store, role: .agent, vm: "someone-else")
            tokens[.admin] = p.admin
            tokens[.expired] = try await AttestationService.createAPIToken(store: store, role: .admin, vm: nil, lifetime: .milliseconds(1))
            let revoked = try await AttestationService.createAPIToken(store: store, role: .admin, vm: nil)
            #expect(try await store.revokeAPIToken(hash: AttestationService.hashToken(revoked), at: 1))
            tokens[.revoked] = revoked
            tokens[.signin] = try await AttestationService.createSignInCode(store: store)
            try await Task.sleep(for: .milliseconds(5))

            // The route table, as the server registers it.
            let router = APIServer.router(service: p.service, metrics: Metrics(), publicURL: nil, fleet: p.fleet)
            let routes = router.routes.map { (method: $0.method.rawValue,
                                              path: $0.path.description.hasPrefix("/") ? $0.path.description : "/" + $0.path.description) }
            #expect(routes.count > 50, "\(routes.count) routes")
            let documented = Dictionary(OpenAPIDocument.operations.map { ("\($0.method.uppercased()) \($0.path)", Self.parse($0.roles)) },
                                        uniquingKeysWith: { a, _ in a })
            var entries: [(String, String, Admits)] = []
            for r in routes {
                let key = "\(r.method) \(r.path)"
                guard let admits = documented[key] ?? Self.dashboard[key] else {
                    Issue.record(
                        "\(key) has no entry: add it to OpenAPIDocument.operations (with its roles) or to the dashboard's table here")
                    continue
                }
                entries.append((r.method, r.path, admits))
            }
            // The document names no route the server does not have.
            let registered = Set(routes.map { "\($0.method) \($0.path)" })
            for key in documented.keys.sorted() where !registered.contains(key) {
                Issue.record("the API document lists \(key), which the server does not serve")
            }

            // Callers that may change things go last: an admin's DELETE must not spoil the others' checks.
            let order: [Caller] = [.none, .reader, .agentOwn, .agentOther, .expired, .revoked, .signin, .admin]
            var checked = 0
            for caller in order {
                for (method, path, admits) in entries {
                    let url =
                        p.server.url
                        + path.replacingOccurrences(of: "{vm}", with: vm).replacingOccurrences(of: "{id}", with: "abcdef0123")
                        .replacingOccurrences(of: "{image}", with: "sample-linux")
                    var headers: [String: String] = [:]
                    if let t = tokens[caller] { headers["Authorization"] = "Bearer \(t)" }
                    var body: Data?
                    if ["POST", "PUT", "PATCH"].contains(method) {
                        body = Data((path.hasPrefix("/v1/") ? "{}" : "x=1").utf8)
                        headers["Content-Type"] = path.hasPrefix("/v1/") ? "application/json" : "application/x-www-form-urlencoded"
                    }
                    let (status, h, answer) = try await NoRedirects.fetch(method, url, body: body, headers: headers)
                    let refused = Self.refused(status, h)
                    let what = "\(method) \(path) by \(caller.rawValue): \(status) \(String(decoding: answer.prefix(160), as: UTF8.self))"
                    if admits.signInEndpoint {
                        #expect(
                            status != 403 && status < 500
                                && (status != 401 || caller == .expired || caller == .revoked
                                    || h["content-type"]?.hasPrefix("text/html") == true),
                            "\(what)")
                    } else if admits.admits(caller) {
                        #expect(!refused, "admitted caller refused — \(what)")
                    } else {
                        #expect(refused, "caller not admitted went through — \(what)")
                    }
                    checked += 1
                }
            }
            #expect(checked == entries.count * order.count)
        }
    }

    /// Tokens over the API: created with an expiry, listed without their secret, revoked by id.
    @Test func tokensAreListedWithoutTheirSecretsAndRevokedByID() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            var (s, body) = try await p.request("POST", "/v1/tokens", ["role": "reader", "expiresIn": 3600])
            let created = try #require(body as? [String: Any])
            let token = try #require(created["token"] as? String), id = try #require(created["id"] as? String)
            #expect(s == 201 && created["expires"] is String)
            #expect(try await p.request("GET", "/v1/vms", token: token).0 == 200)
            (s, body) = try await p.request("POST", "/v1/tokens", ["role": "reader", "expiresIn": 5])
            #expect(s == 400 && TestPlatform.message(body).contains("expiresIn"))
            (s, body) = try await p.request("GET", "/v1/tokens")
            let list = try #require(body as? [[String: Any]])
            let mine = try #require(list.first { $0["id"] as? String == id })
            #expect(mine["state"] as? String == "valid" && mine["role"] as? String == "reader")
            let text = String(decoding: try JSONSerialization.data(withJSONObject: list), as: UTF8.self)
            #expect(!text.contains(token) && !text.contains(p.admin), "a list never shows a token")
            #expect(try await p.request("GET", "/v1/tokens", token: token).0 == 403, "a reader cannot list tokens")
            #expect(try await p.request("DELETE", "/v1/tokens/\(id)", token: token).0 == 403)
            #expect(try await p.request("DELETE", "/v1/tokens/zz%27%25").0 == 400)
            #expect(try await p.request("DELETE", "/v1/tokens/\(id)").0 == 204)
            #expect(try await p.request("GET", "/v1/vms", token: token).0 == 401, "a revoked token is refused at once")
            #expect(try await p.request("DELETE", "/v1/tokens/\(id)").0 == 204, "revoking again is no error (the first time stands)")
            (s, body) = try await p.request("GET", "/v1/tokens")
            #expect((body as? [[String: Any]])?.first { $0["id"] as? String == id }?["state"] as? String == "revoked")
        }
    }
}
