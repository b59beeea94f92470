import Attestation
import AttestationAPI
import Fleet
import Foundation
import GuestAgent
import Hummingbird
import TPM2
import VirtualTPM

extension APIError {
    init(_ e: FleetError) { self.init(HTTPResponse.Status(code: e.kind.status), e.message, field: e.field) }
}

extension APIServer {
    /// The fleet's API: VMs (deploy, read, update, lifecycle, disk), images, alerts.
    /// `Prefer: respond-async` (RFC 7240): the client follows the operation instead of waiting.
    static func respondAsync(_ request: Request) -> Bool {
        request.headers[values: .init("Prefer")!].contains {
            $0.lowercased().split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == "respond-async" }
        }
    }

    /// 202 Accepted: the VM as it is now; Location is where its operation's progress is (ARM's
    /// long-running operations work the same way).
    static func accepted(_ view: VMView, vm: String, booting: Bool) throws -> Response {
        var r = try json(encodable: view, status: booting ? .accepted : .created)
        if booting {
            r.headers[.location] = "/v1/vms/\(vm.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? vm)/activity"
            r.headers[.init("Preference-Applied")!] = "respond-async"
        }
        return r
    }

    static func addFleetRoutes(_ v1: RouterGroup<ServiceContext>, fleet: Fleet) {
        v1.get("vms") { request, context -> Response in
            try authorize(context, [.admin, .reader])
            // Pages of ?limit= VMs (default 1000, at most 5000) by name, ?after= the last name of
            // the previous page; a `Link: <…>; rel="next"` header names the next page.
            let q = request.uri.queryParameters
            var limit = 1000
            if let l = q.get("limit") {
                guard let n = Int(l), (1...5000).contains(n) else { throw APIError(.badRequest, "limit must be 1 to 5000", field: "limit") }
                limit = n
            }
            let after = q.get("after").map { String($0) }
            let page = try await fleet.list(after: after, limit: limit + 1)
            var response = try json(encodable: Array(page.prefix(limit)))
            if page.count > limit, let last = page.prefix(limit).last?.name {
                response.headers[.init("Link")!] = "</v1/vms?limit=\(limit)&after=\(last)>; rel=\"next\""
            }
            return response
        }
        v1.post("vms") { request, context -> Response in
            try authorize(context, [.admin])
            let body = try await require(DeployRequest.self, request, limit: maxSmallBody)
            if respondAsync(request) {
                // 202: the VM exists; its first boot runs on, followed at Location.
                let vm = try await fleet.deployInBackground(body)
                return try accepted(try await fleet.view(vm), vm: vm.name, booting: body.start ?? true)
            }
            let vm = try await fleet.deploy(body)
            return try json(encodable: try await fleet.view(vm), status: .created)
        }
        v1.get("vms/{vm}") { _, context -> Response in
            let n = try vm(context)
            try authorize(context, [.admin, .reader, .agent], vm: n)
            return try json(encodable: try await fleet.view(try await fleet.require(n)))
        }
        v1.get("vms/{vm}/overview") { _, context -> Response in
            let n = try vm(context)
            try authorize(context, [.admin, .reader])
            return try json(encodable: try await fleet.overview(n))
        }
        v1.patch("vms/{vm}") { request, context -> Response in
            let n = try vm(context)
            try authorize(context, [.admin])
            var body = try await require(UpdateRequest.self, request, limit: maxSmallBody)
            if body.version == nil, let tag = request.headers[.ifMatch] {
                guard let v = Int64(tag.trimmingCharacters(in: CharacterSet(charactersIn: "\" W/"))) else {
                    throw APIError(.badRequest, "If-Match must be the VM's version (a number)", field: "If-Match")
                }
                body.version = v
            }
            return try json(encodable: try await fleet.view(try await fleet.update(n, body)))
        }
        v1.delete("vms/{vm}") { _, context -> Response in
            let n = try vm(context)
            try authorize(context, [.admin])
            try await fleet.delete(n)
            return Response(status: .noContent)
        }
        for action in ["start", "stop", "restart"] {
            v1.post("vms/{vm}/\(action)") { request, context -> Response in
                let n = try vm(context)
                try authorize(context, [.admin])
                if action != "stop", respondAsync(request) {
                    let vm = try await fleet.lifecycleInBackground(n, action)
                    return try accepted(try await fleet.view(vm), vm: n, booting: true)
                }
                let vm: VMRecord
                switch action {
                case "start": vm = try await fleet.start(n)
                case "stop": vm = try await fleet.stop(n)
                default: vm = try await fleet.restart(n)
                }
                return try json(encodable: try await fleet.view(vm))
            }
        }
        v1.post("vms/{vm}/attest") { _, context -> Response in
            let n = try vm(context)
            try authorize(context, [.admin])
            _ = try await fleet.require(n)
            switch await fleet.attestNow(n) {
            case .success(let o): return try json(encodable: o)
            case .failure(let e as FleetError): throw APIError(e)
            case .failure(let e): throw APIError(.badGateway, "the guest agent could not attest: \(e)")
            }
        }
        v1.post("vms/{vm}/baseline/predict") { _, context -> Response in
            let n = try vm(context)
            try authorize(context, [.admin])
            return try json(encodable: try await fleet.predictBaseline(n))
        }
        v1.put("vms/{vm}/disk") { request, context -> Response in
            let n = try vm(context)
            try authorize(context, [.admin])
            guard let path = request.uri.queryParameters.get("path"), !path.isEmpty else {
                throw APIError(.badRequest, "give the file's path on the disk: ?path=/EFI/BOOT/grubx64.efi", field: "path")
            }
            let limit = 64 << 20
            if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
                throw APIError(.contentTooLarge, "the file is \(length) bytes; the limit is \(limit)")
            }
            var r = request
            let buffer: ByteBuffer
            do { buffer = try await r.collectBody(upTo: limit) } catch {
                throw APIError(.contentTooLarge, "the file exceeds \(limit) bytes")
            }
            let vm = try await fleet.putFile(n, path: path, bytes: Array(buffer: buffer))
            return try json(encodable: try await fleet.view(vm))
        }
        v1.get("vms/{vm}/console") { request, context -> Response in
            let n = try vm(context)
            try authorize(context, [.admin, .reader])
            let previous = request.uri.queryParameters.get("previous") == "true"
            let text = try await fleet.console(n, previous: previous)
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        v1.get("vms/{vm}/activity") { _, context -> Response in
            let n = try vm(context)
            try authorize(context, [.admin, .reader])
            return try json(encodable: try await fleet.activity(n))
        }
        v1.get("vms/{vm}/guest") { _, context -> Response in
            let n = try vm(context)
            try authorize(context, [.admin, .reader])
            let vm = try await fleet.require(n)
            guard let status = await fleet.guestStatus(n) else {
                if vm.powerState == .running && vm.isRealVM {
                    throw APIError(.conflict, "\(n)'s agent has not reported its view of this boot yet (it does after each attestation): "
                                            + "try again in a moment")
                }
                throw APIError(.conflict, "\(n) is \(vm.powerState.rawValue.lowercased()): the guest's view exists only while it runs")
            }
            return try json(encodable: status)
        }

        v1.get("images") { _, context -> Response in
            try authorize(context, [.admin, .reader])
            return try json(encodable: try await fleet.imageList())
        }
        v1.get("images/{image}") { _, context -> Response in
            try authorize(context, [.admin, .reader])
            let n = try context.parameters.require("image")
            return try json(encodable: try await fleet.imageDetails(n))
        }
        v1.post("images") { request, context -> Response in
            try authorize(context, [.admin])
            struct Import: Decodable {
                var name: String; var path: String; var generation: Int?; var keys: String?; var description: String?
            }
            let body = try await require(Import.self, request, limit: maxSmallBody)
            return try json(encodable: try await fleet.importImage(name: body.name, from: body.path, generation: body.generation ?? 2,
                                                                   keys: body.keys ?? "platform", description: body.description),
                                                                   status: .created)
        }

        v1.get("hosts") { _, context -> Response in
            try authorize(context, [.admin, .reader])
            return try json(encodable: try await fleet.hostViews())
        }
        v1.post("hosts") { request, context -> Response in
            try authorize(context, [.admin])
            let body = try await require(AddHostRequest.self, request, limit: maxSmallBody)
            return try json(encodable: try await fleet.addHost(body), status: .created)
        }
        v1.delete("hosts/{host}") { _, context -> Response in
            try authorize(context, [.admin])
            try await fleet.removeHost(try context.parameters.require("host"))
            return Response(status: .noContent)
        }

        v1.get("alerts") { request, context -> Response in
            try authorize(context, [.admin, .reader])
            let q = request.uri.queryParameters
            var status: AlertStatus?
            if let s = q.get("status") {
                guard let st = AlertStatus.allCases.first(where: { $0.rawValue.lowercased() == s.lowercased() }) else {
                    throw APIError(.badRequest, "status must be active, resolved or dismissed", field: "status")
                }
                status = st
            }
            let vm = q.get("vm")
            if let vm { do { try VMName.check(vm) } catch let e as AttestationServiceError { throw APIError(e) } }
            return try json(encodable: try await fleet.alerts(vm: vm, status: status, limit: q.get("limit").flatMap(Int.init) ?? 500))
        }
        v1.get("alerts/{id}") { _, context -> Response in
            try authorize(context, [.admin, .reader])
            let id = try context.parameters.require("id")
            guard id.count <= 64, let a = try await fleet.alert(id) else {
                throw APIError(.notFound, "no alert \(id) (tlaunch alert list)")
            }
            return try json(encodable: a)
        }
        v1.post("alerts/{id}/dismiss") { request, context -> Response in
            try authorize(context, [.admin])
            struct Dismiss: Decodable { var reason: String? }
            let body = try await body(Dismiss.self, request, limit: maxSmallBody, optional: true)
            return try json(encodable: try await fleet.dismiss(alert: try context.parameters.require("id"), by: "admin",
                                                               reason: body?.reason))
        }
    }
}

