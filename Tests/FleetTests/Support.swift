import AttestationAPI
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Attestation
import Fleet
import GuestAgent
import Hummingbird
import Server
import ServiceTLS
import Storage
import TLaunchTestSupport
import Testing
import VirtualTPM

/// A whole platform in this process, as `tlaunch up` builds it: SQLite in a fresh data folder,
/// the attestation service, the fleet on the simulated hypervisor, the API and dashboard on a
/// free port, monitoring attached.
struct TestPlatform {
    let dir: URL
    let folder: DataFolder
    let service: AttestationService
    let fleet: Fleet
    let server: RunningServer
    let admin: String
    /// Over HTTPS: what clients trust (the platform CA) and present (with mutual TLS).
    var tls: ClientTLS? = nil

    /// `tls`: serve HTTPS with a certificate from the data folder's platform CA (as `tlaunch up`
    /// does), requiring client certificates from it when `mutual`.
    static func start(webhooks: [URL] = [], webhookBackoff: Duration = .milliseconds(100), silentIntervals: Int = 3,
                      dir existing: URL? = nil,
                      qemu: QEMUInstallation? = nil, libvirt: (LibvirtConnection, LibvirtTPMBackend)? = nil,
                      tls: Bool = false, mutual: Bool = false) async throws -> TestPlatform {
        let dir = existing ?? FileManager.default.temporaryDirectory.appendingPathComponent("tl-fleet-\(UUID().uuidString.prefix(8))")
        let folder = DataFolder(root: dir)
        try folder.create()
        let store = try await StorageLocation.open(folder.database.path)
        let authority = try VTPMCertificateAuthority.loadOrCreate(directory: folder.vtpmCA)
        let service = AttestationService(store: store,
                                         anchors: TrustAnchors(roots: [authority.root], intermediates: [authority.intermediate]),
                                         akCA: try AKCertificateAuthority.loadOrCreate(directory: folder.attestationCA),
                                         issuer: "https://attest.tlaunch.test")
        let fleet = Fleet(store: try await FleetStore(backend: store.backend), service: service, dataFolder: folder,
                          hostKey: [UInt8](repeating: 9, count: 32),
            authority: authority, webhooks: WebhookNotifier(urls: webhooks, attempts: 5, firstBackoff: webhookBackoff),
            silentIntervals: silentIntervals,
                          qemu: qemu, bootTimeout: .seconds(600), libvirt: libvirt)
        var serverTLS: ServerTLS?
        var clientTLS: ClientTLS?
        if tls {
            let ca = try PlatformTLS.loadOrCreate(directory: folder.tls)
            let id = try ca.serverIdentity(names: PlatformTLS.defaultNames(listeningOn: "127.0.0.1"))
            serverTLS = ServerTLS(chainPEM: id.chainPEM, keyPEM: id.keyPEM, clientRootsPEM: mutual ? ca.caPEM : nil)
            clientTLS = ClientTLS(trustRootsPEM: ca.caPEM)
            if mutual {
                let me = try ca.issueClient(name: "test client")
                clientTLS?.certificatePEM = me.certificatePEM; clientTLS?.keyPEM = me.keyPEM
            }
        }
        let server = try await RunningServer.start(service: service, fleet: fleet, tls: serverTLS)
        fleet.attach(serviceURL: server.url, tls: clientTLS)
        let admin = try await AttestationService.createAPIToken(store: store, role: .admin, vm: nil)
        return TestPlatform(dir: dir, folder: folder, service: service, fleet: fleet, server: server, admin: admin, tls: clientTLS)
    }

    func stop(keepData: Bool = false) async {
        await fleet.powerOffRealVMs()
        await server.stop()
        if !keepData { for _ in 0..<40 where await fleet.pendingDeliveries() > 0 { try? await Task.sleep(for: .milliseconds(50)) } }
        await fleet.drainDeliveries()
        await (service.store as? SQLStore)?.backend.close()
        if !keepData { try? FileManager.default.removeItem(at: dir) }
    }

    /// Clients wait up to 10 minutes: the full suite runs QEMU next to these tests on two cores.
    var client: ServiceClient { var c = ServiceClient.pinned(baseURL: server.url, token: admin, tls: tls); c.patient = true; return c }

    /// A request with the admin token (or `token`); the status and the JSON body.
    func request(_ method: String, _ path: String, _ body: [String: Any]? = nil, token: String? = nil,
                 headers: [String: String] = [:]) async throws -> (Int, Any?) {
        let data = try body.map { try JSONSerialization.data(withJSONObject: $0) }
        var c = ServiceClient.pinned(baseURL: server.url, token: token ?? admin, tls: tls)
        c.patient = true
        let (status, answer) = try await c.send(method, path, json: data, headers: headers, step: "test")
        return (status, try? JSONSerialization.jsonObject(with: answer))
    }

    /// The CSRF token the dashboard puts in its forms for the session in `cookie` (read from a
    /// page, as a browser has it).
    func csrf(cookie: String) async throws -> String {
        let (_, _, page) = try await NoRedirects.fetch("GET", server.url + "/deploy", headers: ["Cookie": cookie])
        let html = String(decoding: page, as: UTF8.self)
        guard let r = html.range(of: "name=\"csrf\" value=\""), let end = html[r.upperBound...].firstIndex(of: "\"") else {
            Issue.record("no CSRF token in the dashboard's page"); return ""
        }
        return String(html[r.upperBound..<end])
    }

    /// The error message of a JSON error body.
    static func message(_ body: Any?) -> String { ((body as? [String: Any])?["error"] as? [String: Any])?["message"] as? String ?? "" }
}

func uniqueName(_ prefix: String = "vm") -> String { "\(prefix)-\(UUID().uuidString.prefix(6).lowercased())" }

/// The tlaunch executable this package built.
var tlaunchPath: String { Built.tlaunch }

/// Serves `router` on a free loopback port until the returned task is cancelled; returns once it
/// listens. An app that cannot start is an error here, not a test waiting forever for its port.
func serveOnLoopback(_ router: Router<BasicRequestContext>) async throws -> (port: Int, task: Task<Void, any Error>) {
    let (ports, listening) = AsyncStream<Int>.makeStream()
    let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                          onServerRunning: { listening.yield($0.localAddress?.port ?? 0) })
    let task = Task {
        defer { listening.finish() }
        try await app.runService()
    }
    var it = ports.makeAsyncIterator()
    guard let port = await it.next(), port > 0 else {
        let why: String
        do { try await task.value; why = "it stopped without an error" } catch { why = "\(error)" }
        throw FleetError(.failed, "the test's HTTP server did not start: \(why)")
    }
    return (port, task)
}
