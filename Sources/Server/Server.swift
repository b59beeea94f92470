import Attestation
import AttestationAPI
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import ServiceTLS
import Logging
import Storage
import ServiceLifecycle
import UnixSignals
import Synchronization
import TPM2
import MeasuredBoot
import Fleet

/// The request context: who is calling (from the API token), nothing else.
public struct ServiceContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var caller: APITokenRecord?
    /// The dashboard session token, when the caller was authenticated by the session cookie
    /// (a browser): its forms must then carry the session's CSRF token.
    public var session: String?
    public init(source: ApplicationRequestContextSource) { coreContext = .init(source: source) }
    /// Bodies are read with explicit limits per route; this only bounds Hummingbird's own decoding.
    public var maxUploadSize: Int { APIServer.maxEvidenceBody }
}

/// A JSON error body: `{"error": {"status": 400, "message": "…", "field": "…"}}`.
struct APIError: HTTPResponseError {
    var status: HTTPResponse.Status
    var message: String
    var field: String?
    init(_ status: HTTPResponse.Status, _ message: String, field: String? = nil) {
        self.status = status; self.message = message; self.field = field
    }
    init(_ e: AttestationServiceError) {
        self.init(HTTPResponse.Status(code: e.kind.status), e.message, field: e.field)
    }
    func response(from request: Request, context: some RequestContext) throws -> Response {
        var body: [String: Any] = ["status": status.code, "message": message]
        if let field { body["field"] = field }
        return APIServer.json(["error": body], status: status)
    }
}

/// The attestation service over HTTP (Hummingbird 2): `/v1` JSON API, OpenAPI document, JWKS,
/// health, readiness and Prometheus metrics.
public enum APIServer {
    public static let maxSmallBody = 64 << 10
    public static let maxEvidenceBody = 24 << 20

    static func json(_ object: Any, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func json(encodable value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: try LeanJSONEncoder().encodeBytes(value))))
    }

    /// A request body within `limit` bytes, sent as application/json (empty bodies pass: the
    /// caller decides whether one is required).
    static func jsonBytes(_ request: Request, limit: Int) async throws -> Data {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw APIError(.contentTooLarge, "the body is \(length) bytes; the limit here is \(limit)")
        }
        var request = request
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: limit) } catch {
            throw APIError(.contentTooLarge, "the body exceeds the limit of \(limit) bytes")
        }
        if buffer.readableBytes == 0 { return Data() }
        let contentType = request.headers[.contentType] ?? ""
        guard contentType.lowercased().hasPrefix("application/json") else {
            throw APIError(.unsupportedMediaType,
                           "send the body as application/json (got \(contentType.isEmpty ? "no content type" : contentType))")
        }
        return Data(buffer: buffer)
    }

    /// Reads a JSON body: size limit, content type, then a decode whose failure names the field.
    static func body<T: Decodable>(_ type: T.Type, _ request: Request, limit: Int, optional: Bool = false) async throws -> T? {
        let data = try await jsonBytes(request, limit: limit)
        if data.isEmpty && optional { return nil }
        return try decode(type, data)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        if let strict = T.self as? any StrictBody.Type, let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            let unknown = strict.unknownFields(object)
            if !unknown.isEmpty {
                throw APIError(.badRequest, "unknown field\(unknown.count == 1 ? "" : "s") \(unknown.joined(separator: ", ")): check the "
                                          + "spelling (the OpenAPI document at /openapi.json lists the fields)", field: unknown[0])
            }
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let DecodingError.keyNotFound(key, c) {
            throw APIError(.badRequest, "missing field \((c.codingPath + [key]).map(\.stringValue).joined(separator: "."))",
                           field: (c.codingPath + [key]).map(\.stringValue).joined(separator: "."))
        } catch let DecodingError.typeMismatch(_, c) {
            throw APIError(.badRequest, "field \(c.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong type: "
                                      + "\(c.debugDescription)", field: c.codingPath.map(\.stringValue).joined(separator: "."))
        } catch let DecodingError.valueNotFound(_, c) {
            throw APIError(.badRequest, "field \(c.codingPath.map(\.stringValue).joined(separator: ".")) is null",
                           field: c.codingPath.map(\.stringValue).joined(separator: "."))
        } catch let DecodingError.dataCorrupted(c) {
            let path = c.codingPath.map(\.stringValue).joined(separator: ".")
            throw APIError(
                .badRequest,
                path.isEmpty
                    ? "the body is not valid JSON: \(c.underlyingError.map { "\($0)" } ?? c.debugDescription)"
                    : "\(path): \(c.debugDescription)", field: path.isEmpty ? nil : path)
        }
    }

    static func require<T: Decodable>(_ type: T.Type, _ request: Request, limit: Int) async throws -> T {
        guard let v = try await body(type, request, limit: limit) else { throw APIError(.badRequest, "a JSON body is required") }
        return v
    }

    /// The caller must hold one of `roles`; an agent only for its own VM.
    static func authorize(_ context: ServiceContext, _ roles: Set<APITokenRecord.Role>, vm: String? = nil) throws {
        guard let caller = context.caller else {
            throw APIError(.unauthorized, "authenticate with Authorization: Bearer <token> (tlaunch token create)")
        }
        guard roles.contains(caller.role) else {
            throw APIError(.forbidden, "a \(caller.role.rawValue) token cannot do this (needs "
                                     + "\(roles.map(\.rawValue).sorted().joined(separator: " or ")))")
        }
        if caller.role == .agent, caller.vm != vm {
            throw APIError(.forbidden, "this agent token is for VM \(caller.vm ?? "?"), not \(vm ?? "every VM")")
        }
    }

    static func vm(_ context: ServiceContext) throws -> String {
        let vm = try context.parameters.require("vm")
        do { try VMName.check(vm) } catch { throw APIError(error) }
        return vm
    }

    /// Builds the router for a service.
    public static func router(service: AttestationService, metrics: Metrics, publicURL: String?, fleet: Fleet? = nil,
                              secure: Bool = false) -> Router<ServiceContext> {
        /// The URL clients reach us at: configured, else what the request's Host says.
        @Sendable func base(_ request: Request) -> String {
            publicURL ?? "http://\(request.head.authority ?? "127.0.0.1")"
        }
        let router = Router(context: ServiceContext.self)
        router.add(middleware: SecurityHeadersMiddleware(secure: secure))
        router.add(middleware: ErrorAndMetricsMiddleware(metrics: metrics))
        router.add(middleware: CrossOriginMiddleware(secure: secure))
        router.add(middleware: AuthMiddleware(service: service))
        router.add(middleware: CSRFMiddleware())
        if let fleet { router.add(middleware: StorageBannerMiddleware(fleet: fleet)) }

        router.get("/healthz") { _, _ in json(["status": "ok"]) }
        router.get("/readyz") { _, _ -> Response in
            do { try await service.ping() } catch {
                return json(["status": "unavailable", "storage": service.storageKind, "reason": "\(error)"], status: .serviceUnavailable)
            }
            // With the fleet, the data folder must take writes too (a full or read-only disk).
            if let problem = await fleet?.storageProblem() {
                return json(["status": "unavailable", "storage": service.storageKind, "reason": problem], status: .serviceUnavailable)
            }
            return json(["status": "ready", "storage": service.storageKind])
        }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
        }
        router.get("/openapi.json") { request, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.text(serverURL: base(request)))))
        }
        router.get("/.well-known/jwks.json") { _, _ in json(try await service.jwks()) }
        router.get("/.well-known/openid-configuration") { request, _ in
            json(["issuer": service.issuer, "jwks_uri": "\(base(request))/.well-known/jwks.json",
                  "id_token_signing_alg_values_supported": ["ES256", "RS256"], "response_types_supported": ["token"],
                  "subject_types_supported": ["public"],
                  "claims_supported": ["iss", "sub", "iat", "nbf", "exp", "jti", "eat_nonce", "eat_profile", "ear.status", "submods",
                                       "x-tlaunch"]])
        }

        let v1 = router.group("v1")
        v1.get("agents") { _, context -> Response in
            try authorize(context, [.admin, .reader])
            let agents = try await service.agents()
            return json(["agents": agents.map { ["vm": $0.vm, "enrolledAt": Int($0.enrolledAt)] as [String: Any] }])
        }
        v1.get("vms/{vm}/enrolment") { _, context -> Response in
            let vm = try vm(context)
            try authorize(context, [.admin, .reader, .agent], vm: vm)
            guard let agent = try await service.agent(vm: vm) else { throw APIError(.notFound, "\(vm) is not enrolled") }
            let last = try await service.history(vm: vm, limit: 1).first
            let baseline = try await service.currentBaseline(vm: vm)
            let akName = [UInt8](hex: agent.akPublic).flatMap { try? TPMTPublic(tpmBytes: $0).name() }.map(hexString) ?? ""
            var out: [String: Any] = ["vm": vm, "enrolledAt": Int(agent.enrolledAt), "akCertificate": agent.akCertificate, "akName": akName,
                                      "baseline": baseline.map { ["source": $0.source, "components": $0.components.count,
                                                                  "updated": Int($0.updated)] as [String: Any] } ?? NSNull()]
            if let last { out["lastAttestation"] = ["id": last.id, "time": last.time, "passed": last.passed,
                                                    "status": last.status] as [String: Any] }
            return json(out)
        }
        v1.post("vms/{vm}/nonce") { request, context -> Response in
            let vm = try vm(context)
            try authorize(context, [.admin, .agent], vm: vm)
            // A relying party may name the audience its token must carry.
            let body = try await body(NonceRequest.self, request, limit: maxSmallBody, optional: true)
            return try json(encodable: try await service.issueNonce(vm: vm, audience: body?.audience), status: .created)
        }
        v1.post("vms/{vm}/enrolment/rebind") { _, context -> Response in
            let vm = try vm(context)
            try authorize(context, [.admin])
            if let fleet, try await fleet.has(vm) {
                try await fleet.allowRebind(vm, by: context.caller.map { "an \($0.role.rawValue) token" } ?? "an admin")
            } else {
                try await service.allowRebind(vm: vm)
            }
            return json(["vm": vm, "rebindAllowed": true])
        }
        v1.delete("vms/{vm}/enrolment") { _, context -> Response in
            let vm = try vm(context)
            try authorize(context, [.admin])
            if let fleet, try await fleet.has(vm) {
                throw APIError(.conflict,
                               "\(vm) is a VM of this platform: delete the VM (tlaunch vm delete \(vm)), which forgets its enrolment too")
            }
            try await service.forget(vm: vm)
            return Response(status: .noContent)
        }
        v1.get("vms/{vm}/baseline/mode") { _, context -> Response in
            let vm = try vm(context)
            try authorize(context, [.admin, .reader, .agent], vm: vm)
            return json(["vm": vm, "mode": try await service.baselineMode(vm: vm).rawValue])
        }
        v1.put("vms/{vm}/baseline/mode") { request, context -> Response in
            let vm = try vm(context)
            try authorize(context, [.admin])
            struct Mode: Decodable { var mode: String }
            let body = try await require(Mode.self, request, limit: maxSmallBody)
            guard let mode = BaselineMode(rawValue: body.mode) else {
                throw APIError(.badRequest, "mode must be learn (trust on first use), approve (a person approves the first baseline) or "
                                          + "predicted (from the disk)", field: "mode")
            }
            try await service.setBaselineMode(vm: vm, mode)
            return json(["vm": vm, "mode": mode.rawValue])
        }
        v1.post("vms/{vm}/enrolments") { request, context -> Response in
            let vm = try vm(context)
            try authorize(context, [.admin, .agent], vm: vm)
            let body = try await require(EnrolmentRequest.self, request, limit: maxSmallBody)
            return try json(encodable: try await service.beginEnrolment(vm: vm, body), status: .created)
        }
        v1.post("vms/{vm}/enrolments/{id}/activation") { request, context -> Response in
            let vm = try vm(context)
            try authorize(context, [.admin, .agent], vm: vm)
            let id = try context.parameters.require("id")
            let body = try await require(ActivationAnswer.self, request, limit: maxSmallBody)
            return try json(encodable: try await service.completeEnrolment(vm: vm, id: id, body))
        }
        v1.post("vms/{vm}/attestations") { request, context -> Response in
            let vm = try vm(context)
            try authorize(context, [.admin, .agent], vm: vm)
            let raw = try await jsonBytes(request, limit: maxEvidenceBody)
            guard !raw.isEmpty else { throw APIError(.badRequest, "a JSON body is required") }
            let evidence: Evidence
            do throws(EvidenceJSONError) { evidence = try Evidence(json: raw) } catch {
                throw APIError(.badRequest, error.description, field: error.field)
            }
            let start = ContinuousClock.now
            let outcome = try await service.attest(vm: vm, evidence: evidence, raw: raw)
            metrics.attestation(passed: outcome.passed, seconds: (ContinuousClock.now - start).seconds)
            if let fleet {
                do { try await fleet.record(vm: vm, outcome: outcome) } catch {
                    context.logger.error("integrity monitoring could not record an attestation",
                                         metadata: ["vm": .string(vm), "error": .string("\(error)")])
                }
            }
            context.logger.info("attestation",
                                metadata: ["vm": .string(vm), "passed": .stringConvertible(outcome.passed), "id": .string(outcome.id),
                    "failed": .string(outcome.checks.filter { !$0.passed }.map(\.name.rawValue).joined(separator: ","))
                ])
            return try json(encodable: outcome)
        }
        v1.get("vms/{vm}/attestations") { request, context -> Response in
            let vm = try vm(context)
            try authorize(context, [.admin, .reader, .agent], vm: vm)
            let limit = request.uri.queryParameters.get("limit").flatMap(Int.init) ?? 50
            return try json(encodable: ["attestations": try await service.history(vm: vm, limit: limit)])
        }
        v1.get("vms/{vm}/baseline") { _, context -> Response in
            let vm = try vm(context)
            try authorize(context, [.admin, .reader, .agent], vm: vm)
            return try json(encodable: try await service.baseline(vm: vm))
        }
        v1.post("vms/{vm}/baseline/approve") { request, context -> Response in
            let vm = try vm(context)
            try authorize(context, [.admin])
            struct Approve: Decodable { var attestationId: String? }
            let body = try await body(Approve.self, request, limit: maxSmallBody, optional: true)
            if let fleet, try await fleet.has(vm) {
                return try json(encodable: try await fleet.approveBaseline(vm, attestationID: body?.attestationId))
            }
            return try json(encodable: try await service.approveBaseline(vm: vm, attestationID: body?.attestationId))
        }
        v1.put("vms/{vm}/baseline") { request, context -> Response in
            let vm = try vm(context)
            try authorize(context, [.admin])
            struct Predicted: Decodable { var pcrs: [String: String] }
            let body = try await require(Predicted.self, request, limit: maxSmallBody)
            return try json(encodable: try await service.setPredictedBaseline(vm: vm, pcrs: body.pcrs))
        }
        v1.delete("vms/{vm}/baseline") { _, context -> Response in
            let vm = try vm(context)
            try authorize(context, [.admin])
            if let fleet, try await fleet.has(vm) { try await fleet.resetBaseline(vm) } else { try await service.resetBaseline(vm: vm) }
            return Response(status: .noContent)
        }
        v1.get("policy") { _, context -> Response in
            try authorize(context, [.admin, .reader])
            return try json(encodable: try await service.currentPolicy())
        }
        v1.put("policy") { request, context -> Response in
            try authorize(context, [.admin])
            let policy = try AttestationService.parsePolicy(try await jsonBytes(request, limit: maxSmallBody))
            return try json(encodable: try await service.putPolicy(policy), status: .created)
        }
        v1.post("what-if") { request, context -> Response in
            try authorize(context, [.admin, .reader])
            struct WhatIf: Decodable { var vm: String; var evidence: Evidence; var policy: AttestationPolicy? }
            let body = try await require(WhatIf.self, request, limit: maxEvidenceBody)
            let policy: AttestationPolicy
            if let p = body.policy { policy = p } else { policy = try await service.currentPolicy() }
            return try json(encodable: try await service.whatIf(vm: body.vm, evidence: body.evidence, policy: policy))
        }
        v1.post("tokens") { request, context -> Response in
            try authorize(context, [.admin])
            struct Create: Decodable { var role: String; var vm: String?; var expiresIn: Int? }
            let body = try await require(Create.self, request, limit: maxSmallBody)
            guard let role = APITokenRecord.Role(rawValue: body.role), role != .signin else {
                throw APIError(.badRequest, "role must be admin, reader or agent", field: "role")
            }
            if let e = body.expiresIn, !(60...(10 * 365 * 86400)).contains(e) {
                throw APIError(.badRequest, "expiresIn is seconds, 60 to 315360000", field: "expiresIn")
            }
            let token = try await service.createAPIToken(role: role, vm: body.vm, lifetime: body.expiresIn.map { .seconds($0) })
            let record = try await service.apiTokens().first { $0.hash == AttestationService.hashToken(token) }
            return json(["token": token, "id": (record?.id as Any?) ?? NSNull(), "role": role.rawValue, "vm": (body.vm as Any?) ?? NSNull(),
                         "expires": (record?.expires.map { AttestationService.rfc3339($0) } as Any?) ?? NSNull()], status: .created)
        }
        // The tokens (never their secrets: an id is the start of the token's hash) and revocation.
        v1.get("tokens") { _, context -> Response in
            try authorize(context, [.admin])
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let rows: [[String: Any]] = try await service.apiTokens().filter { $0.role != .signin }.map { t in
                ["id": t.id, "role": t.role.rawValue, "vm": (t.vm as Any?) ?? NSNull(), "created": AttestationService.rfc3339(t.created),
                 "expires": (t.expires.map { AttestationService.rfc3339($0) } as Any?) ?? NSNull(),
                 "revoked": (t.revoked.map { AttestationService.rfc3339($0) } as Any?) ?? NSNull(),
                 "state": t.revoked != nil ? "revoked" : t.valid(at: now) ? "valid" : "expired"]
            }
            return json(rows)
        }
        v1.delete("tokens/{id}") { _, context -> Response in
            try authorize(context, [.admin])
            let id = try context.parameters.require("id").lowercased()
            guard (6...64).contains(id.count), id.allSatisfy({ $0.isHexDigit }) else {
                throw APIError(.badRequest, "a token id is 6 to 64 hex digits (GET /v1/tokens lists them)", field: "id")
            }
            let n = try await service.revokeAPIToken(id: id)
            switch n {
            case 1: return Response(status: .noContent)
            case 0: throw APIError(.notFound, "no token has the id \(id)")
            default: throw APIError(.conflict, "\(n) tokens start with \(id): give more of the id", field: "id")
            }
        }
        v1.post("keys/rotate") { request, context -> Response in
            try authorize(context, [.admin])
            struct Rotate: Decodable { var algorithm: String? }
            let body = try await body(Rotate.self, request, limit: maxSmallBody, optional: true)
            let kid = try await service.rotateKey(algorithm: body?.algorithm ?? "ES256")
            return json(["kid": kid], status: .created)
        }
        if let fleet {
            addFleetRoutes(v1, fleet: fleet)
            Dashboard.addRoutes(router, fleet: fleet, secure: secure)
        }
        return router
    }

    /// The application on `host:port` (port 0: any free port, reported to `onRunning`); over
    /// TLS when `tls` is given (TLS 1.2+, mutual TLS when it names client roots).
    public static func application(service: AttestationService, host: String, port: Int, publicURL: String? = nil, logger: Logger? = nil,
                                   fleet: Fleet? = nil,
                                   tls: ServerTLS? = nil,
                                   onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        let metrics = Metrics()
        var log = logger ?? Logger(label: "tlaunch.serve")
        if logger == nil { log.logLevel = .warning }
        let server: HTTPServerBuilder = try tls.map { try .tls(.http1(), tlsConfiguration: try $0.configuration()) } ?? .http1()
        return Application(router: router(service: service, metrics: metrics, publicURL: publicURL, fleet: fleet, secure: tls != nil),
                           server: server,
                           configuration: .init(address: .hostname(host, port: port), serverName: "tlaunch"),
                           onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
                           logger: log)
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Authenticates `Authorization: Bearer` tokens (a bad token is refused even where none is needed).
struct AuthMiddleware: RouterMiddleware {
    typealias Context = ServiceContext
    let service: AttestationService
    func handle(_ request: Request, context: ServiceContext,
                next: (Request, ServiceContext) async throws -> Response) async throws -> Response {
        var context = context
        if let header = request.headers[.authorization] {
            guard header.hasPrefix("Bearer "), let caller = try await service.authenticate(String(header.dropFirst(7))) else {
                throw APIError(.unauthorized, "the API token is not valid")
            }
            context.caller = caller
        } else if !request.uri.path.hasPrefix("/v1/"), let token = Dashboard.sessionToken(request) {
            // The dashboard's session cookie (set by /login); a stale one is just ignored. The API
            // takes bearer tokens only: a browser's cookie never authorizes a /v1 call.
            context.caller = try await service.authenticate(token)
            if context.caller != nil { context.session = token }
        }
        return try await next(request, context)
    }
}

/// Cross-site requests to the dashboard are refused before they do anything: a state-changing
/// request (not GET or HEAD) that a browser marks as coming from elsewhere — `Sec-Fetch-Site`
/// other than same-origin (or none: typed by the user), or an `Origin` that is not this server's
/// own scheme, host and port — is a 403. SameSite cookies are not enough: "same site" includes
/// every other port of the same host. Clients that are not browsers send neither header.
struct CrossOriginMiddleware: RouterMiddleware {
    typealias Context = ServiceContext
    /// Served over TLS: the own origin is https only (an http page on the same host and port is
    /// another origin).
    var secure = false
    func handle(_ request: Request, context: ServiceContext,
                next: (Request, ServiceContext) async throws -> Response) async throws -> Response {
        if request.method != .get && request.method != .head && !request.uri.path.hasPrefix("/v1/") {
            if let site = request.headers[.init("Sec-Fetch-Site")!]?.lowercased(), site != "same-origin" && site != "none" {
                throw APIError(.forbidden, "a \(site) request cannot change the platform: use the dashboard's own pages")
            }
            if let origin = request.headers[.init("Origin")!] {
                let host = request.headers[.init("Host")!] ?? request.head.authority ?? ""
                let own = ["\(secure ? "https" : "http")://\(host)"]
                guard own.contains(origin.lowercased()) || own.contains(origin) else {
                    throw APIError(.forbidden,
                                   "a request from \(origin.prefix(100)) cannot change the platform: use the dashboard's own pages")
                }
            }
        }
        return try await next(request, context)
    }
}

/// A browser's state-changing request (authenticated by the session cookie) must carry the
/// session's CSRF token in the form (`csrf`) or in `X-CSRF-Token`: a page elsewhere — another
/// port of the same host included, which SameSite treats as the same site — cannot know it (it
/// is derived from the HttpOnly session token and only appears in the dashboard's own pages).
/// Every dashboard page renders its forms with the token (`Dashboard.page`, through a task-local).
struct CSRFMiddleware: RouterMiddleware {
    typealias Context = ServiceContext
    func handle(_ request: Request, context: ServiceContext,
                next: (Request, ServiceContext) async throws -> Response) async throws -> Response {
        guard let session = context.session else { return try await next(request, context) }
        let expected = Dashboard.csrfToken(for: session)
        let role = context.caller?.role.rawValue
        guard request.method != .get && request.method != .head else {
            return try await Dashboard.$signedInRole.withValue(role) {
                try await Dashboard.$csrf.withValue(expected) { try await next(request, context) }
            }
        }
        var r = request
        let form = try await Dashboard.readForm(&r)   // kept in `r` for the handler
        let given = request.headers[.init("X-CSRF-Token")!] ?? form["csrf"]
        guard let given, constantTimeEqual(Array(given.utf8), Array(expected.utf8)) else {
            throw APIError(.forbidden, "the form carries no valid CSRF token: reload the dashboard's page and submit it from there")
        }
        return try await Dashboard.$signedInRole.withValue(role) {
            try await Dashboard.$csrf.withValue(expected) { try await next(r, context) }
        }
    }
}

/// Every dashboard page says so at the top when the platform cannot write its data folder or
/// database (the probe is the one `/readyz` answers from, cached for a second).
struct StorageBannerMiddleware: RouterMiddleware {
    typealias Context = ServiceContext
    let fleet: Fleet
    func handle(_ request: Request, context: ServiceContext,
                next: (Request, ServiceContext) async throws -> Response) async throws -> Response {
        guard !request.uri.path.hasPrefix("/v1/"), request.method == .get else { return try await next(request, context) }
        let problem = await fleet.storageProblem()
        return try await Dashboard.$storageProblem.withValue(problem) { try await next(request, context) }
    }
}

/// Headers on every response, errors included: no framing (clickjacking), no Referer leaving the
/// platform, no content sniffing, and a Content-Security-Policy that lets the dashboard's pages
/// load only their own inline style and the platform's own script (`/static/live.js`, which
/// fetches the same page again): no inline script, nothing from other origins.
struct SecurityHeadersMiddleware: RouterMiddleware {
    typealias Context = ServiceContext
    /// Over TLS, also HSTS: a browser that has been here once never tries plain HTTP again.
    var secure = false
    static let policy = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self'; "
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    func handle(_ request: Request, context: ServiceContext,
                next: (Request, ServiceContext) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.init("Content-Security-Policy")!] = Self.policy
        response.headers[.init("X-Frame-Options")!] = "DENY"
        response.headers[.init("Referrer-Policy")!] = "no-referrer"
        response.headers[.init("X-Content-Type-Options")!] = "nosniff"
        if secure { response.headers[.init("Strict-Transport-Security")!] = "max-age=31536000" }
        return response
    }
}

/// Turns every error into a JSON error body with the right status, and counts responses.
struct ErrorAndMetricsMiddleware: RouterMiddleware {
    typealias Context = ServiceContext
    let metrics: Metrics
    func handle(_ request: Request, context: ServiceContext,
                next: (Request, ServiceContext) async throws -> Response) async throws -> Response {
        let response: Response
        do {
            response = try await next(request, context)
        } catch let e as APIError {
            metrics.request(status: e.status.code)
            return try e.response(from: request, context: context)
        } catch let e as FleetError {
            metrics.request(status: e.kind.status)
            if e.kind == .failed { context.logger.error("fleet error", metadata: ["error": .string(e.message)]) }
            return try APIError(e).response(from: request, context: context)
        } catch let e as AttestationServiceError {
            metrics.request(status: e.kind.status)
            if e.kind == .internal { context.logger.error("internal error", metadata: ["error": .string(e.message)]) }
            return try APIError(e).response(from: request, context: context)
        } catch let e as HTTPError {
            metrics.request(status: e.status.code)
            return try APIError(e.status, e.body ?? e.status.reasonPhrase).response(from: request, context: context)
        } catch let e as StorageError {
            metrics.request(status: 503)
            context.logger.error("storage error", metadata: ["error": .string(e.description)])
            return try APIError(.serviceUnavailable, "the database is unavailable: \(e.reason)").response(from: request, context: context)
        } catch {
            metrics.request(status: 500)
            context.logger.error("unexpected error", metadata: ["error": .string("\(error)")])
            return try APIError(.internalServerError, "internal error: \(error)").response(from: request, context: context)
        }
        metrics.request(status: response.status.code)
        return response
    }
}

/// Prometheus counters and the attestation latency histogram (text exposition format 0.0.4).
public final class Metrics: Sendable {
    struct State {
        var responses: [Int: Int] = [:]
        var attestations: [Bool: Int] = [:]
        var buckets = [Int](repeating: 0, count: Metrics.bounds.count)
        var sum = 0.0
        var count = 0
    }
    static let bounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
    let state = Mutex(State())
    public init() {}

    func request(status: Int) { state.withLock { $0.responses[status, default: 0] += 1 } }
    func attestation(passed: Bool, seconds: Double) {
        state.withLock { s in
            s.attestations[passed, default: 0] += 1
            for (i, b) in Self.bounds.enumerated() where seconds <= b { s.buckets[i] += 1 }
            s.sum += seconds; s.count += 1
        }
    }

    public func render() -> String {
        let s = state.withLock { $0 }
        var out = "# HELP tlaunch_http_responses_total HTTP responses by status code.\n# TYPE tlaunch_http_responses_total counter\n"
        for (code, n) in s.responses.sorted(by: { $0.key < $1.key }) { out += "tlaunch_http_responses_total{code=\"\(code)\"} \(n)\n" }
        out += "# HELP tlaunch_attestations_total Attestations by outcome.\n# TYPE tlaunch_attestations_total counter\n"
        out += "tlaunch_attestations_total{outcome=\"pass\"} \(s.attestations[true] ?? 0)\n"
        out += "tlaunch_attestations_total{outcome=\"fail\"} \(s.attestations[false] ?? 0)\n"
        out += "# HELP tlaunch_attestation_duration_seconds Time to verify evidence and answer.\n# TYPE "
             + "tlaunch_attestation_duration_seconds histogram\n"
        for (i, b) in Self.bounds.enumerated() { out += "tlaunch_attestation_duration_seconds_bucket{le=\"\(b)\"} \(s.buckets[i])\n" }
        out += "tlaunch_attestation_duration_seconds_bucket{le=\"+Inf\"} \(s.count)\n"
        out += "tlaunch_attestation_duration_seconds_sum \(s.sum)\ntlaunch_attestation_duration_seconds_count \(s.count)\n"
        return out
    }
}

/// A service running in this process (tests, `tlaunch up`): its URL, and a way to stop it.
public final class RunningServer: Sendable {
    public let url: String
    public let port: Int
    let group: ServiceGroup
    let task: Task<Void, any Error>

    init(url: String, port: Int, group: ServiceGroup, task: Task<Void,
         any Error>) { self.url = url; self.port = port; self.group = group; self.task = task }

    /// Starts on `host` and a free port (or `port`); returns once it listens. The server and
    /// `services` (the fleet's monitor) run as one service group: `stop()`, or one of `signals`,
    /// shuts them down gracefully together (the server first: no new requests, those under way
    /// answered; then the others, in reverse order).
    public static func start(service: AttestationService, host: String = "127.0.0.1", port: Int = 0, logger: Logger? = nil,
                             fleet: Fleet? = nil,
        tls: ServerTLS? = nil, alongside services: [any Service] = [], signals: [UnixSignal] = []
    ) async throws -> RunningServer {
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = try APIServer.application(service: service, host: host, port: port, logger: logger, fleet: fleet,
                                            tls: tls) { continuation.yield($0) }
        var log = Logger(label: "tlaunch.serve.group"); log.logLevel = .error
        let group = ServiceGroup(configuration: .init(services: services + [app], gracefulShutdownSignals: signals, logger: log))
        // A server that cannot listen (the port is taken, the address is not this host's) ends
        // its group with the error: the caller hears it at once instead of waiting forever.
        let failure = Mutex<(any Error)?>(nil)
        let task = Task {
            do { try await group.run() } catch {
                failure.withLock { $0 = error }
                continuation.finish()
                throw error
            }
            continuation.finish()
        }
        var it = ports.makeAsyncIterator()
        guard let actual = await it.next() else {
            let why = failure.withLock { $0 }.map { "\($0)" } ?? "it stopped before listening"
            throw AttestationServiceError(.internal, "cannot listen on \(host):\(port): \(why)")
        }
        continuation.finish()
        let shown = host.contains(":") ? "[\(host)]" : host
        return RunningServer(url: "\(tls == nil ? "http" : "https")://\(shown):\(actual)", port: actual, group: group, task: task)
    }

    public func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }

    /// Until the group has shut down (`stop()`, or one of its signals); its error, if a service
    /// failed.
    public func wait() async throws { try await task.value }
}

/// The fleet as a service of the platform's group: its monitor (attestations due, silent VMs,
/// webhooks, hosts) runs until the group shuts down; then operations under way in the background
/// (a boot after a 202) are ended, the real VMs this process runs are powered off and webhook deliveries under way are written down (the
/// rest wait in the
/// database for the next start) — before the database closes, as `StorageService` comes
/// earlier in the group.
public struct FleetMonitorService: Service {
    let fleet: Fleet
    public init(_ fleet: Fleet) { self.fleet = fleet }
    public func run() async throws {
        let fleet = self.fleet
        await cancelWhenGracefulShutdown { await fleet.monitor() }
        await fleet.endBackgroundWork()
        await fleet.powerOffRealVMs()
        await fleet.drainDeliveries()
    }
}
