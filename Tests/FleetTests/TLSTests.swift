import AttestationAPI
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Attestation
import Fleet
import GuestAgent
import Server
import ServiceTLS
import TLaunchTestSupport
import Testing
import X509

/// The platform's transport as an attacker on the network meets it: HTTPS from a CA the
/// platform keeps, clients that trust only that CA, the name checked, mutual TLS that turns
/// away clients without a certificate from it, and a session cookie that never crosses plain HTTP.
@Suite struct TLSTests {
    static func tempDir(_ prefix: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))")
    }

    /// The step's error message, or "" when the request went through.
    static func refusal(_ client: ServiceClient, _ path: String = "/readyz") async -> String {
        do { _ = try await client.send("GET", path, step: "probe"); return "" } catch { return "\(error)" }
    }

    @Test func agentsAndClientsAttestOverHTTPSPinnedToThePlatformCA() async throws {
        let p = try await TestPlatform.start(tls: true)
        try await withTeardown({ await p.stop() }) {
            #expect(p.server.url.hasPrefix("https://127.0.0.1:"))
            // A VM's agent reaches the service over the pinned HTTPS client and passes.
            let (s, body) = try await p.request("POST", "/v1/vms", ["name": "tls-1", "integrityMonitoring": true])
            #expect(s == 201, "\(s) \(TestPlatform.message(body))")
            let vm = try await p.fleet.require("tls-1")
            #expect(vm.bootIntegrity == .healthy && vm.lastAttestation != nil, "\(vm.bootIntegrity)")

            // Another CA (an attacker's look-alike), the system's roots, and plain HTTP all fail.
            let other = try PlatformTLS.loadOrCreate(directory: Self.tempDir("tl-otherca"))
            defer { try? FileManager.default.removeItem(at: other.directory) }
            let lookalike = ServiceClient.pinned(baseURL: p.server.url, token: p.admin, tls: ClientTLS(trustRootsPEM: other.caPEM))
            let refused = await Self.refusal(lookalike, "/v1/vms")
            #expect(refused.contains("CERTIFICATE_VERIFY_FAILED"), "\(refused)")
            let system = ServiceClient.pinned(baseURL: p.server.url, token: p.admin, tls: ClientTLS())
            #expect(await Self.refusal(system).contains("CERTIFICATE_VERIFY_FAILED"))
            let plain = ServiceClient.pinned(baseURL: p.server.url.replacingOccurrences(of: "https:", with: "http:"), token: p.admin,
                                             tls: nil)
            let answer = try? await plain.send("GET", "/v1/vms", step: "plain")
            #expect(answer == nil || answer?.status != 200, "the TLS port answers no plain-HTTP request")

            // Over HTTPS the dashboard's session cookie is Secure and responses carry HSTS.
            let code = try await AttestationService.createSignInCode(store: p.service.store)
            let login = try await HTTPSClient.send("GET", URL(string: "\(p.server.url)/login?code=\(code)")!, tls: try #require(p.tls),
                                                   timeout: .seconds(600))
            #expect(login.status == 303 || login.status == 302)
            let cookie = try #require(login.header("Set-Cookie"))
            #expect(cookie.contains("; Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "\(cookie)")
            #expect(login.header("Strict-Transport-Security")?.hasPrefix("max-age=") == true)
            // A same-host page over plain http is another origin: it cannot post to the dashboard.
            let session = String(cookie.split(separator: ";")[0])
            let host = String(p.server.url.dropFirst("https://".count))
            let cross = try await HTTPSClient.send("POST", URL(string: "\(p.server.url)/logout")!,
                                                   headers: [("Cookie", session), ("Origin", "http://\(host)")],
                                                   tls: try #require(p.tls), timeout: .seconds(600))
            #expect(cross.status == 403)
        }
    }

    @Test func aCertificateForAnotherNameIsRefusedEvenFromThePinnedCA() async throws {
        let p = try await TestPlatform.start(tls: true)
        try await withTeardown({ await p.stop() }) {
            // A second listener on the same service whose certificate is for another host only:
            // what an attacker who obtained any certificate from the CA could present.
            let ca = try PlatformTLS.loadOrCreate(directory: p.folder.tls)
            let (cert, key) = try ca.issue(names: ["attest.example.test"], commonName: "attest.example.test", usage: .serverAuth, days: 30)
            let wrong = try await RunningServer.start(
                service: p.service,
                tls: ServerTLS(chainPEM: try cert.serializeAsPEM().pemString + "\n" + ca.caPEM, keyPEM: key.pemRepresentation))
            await withTeardown({ await wrong.stop() }) {
                let client = ServiceClient.pinned(baseURL: wrong.url, token: p.admin, tls: p.tls)
                let refused = await Self.refusal(client)
                #expect(
                    !refused.isEmpty
                        && (refused.contains("not for this name") || refused.contains("CERTIFICATE_VERIFY_FAILED")
                            || refused.contains("unableToValidateCertificate")),
                    "\(refused)")
                // The same client reaches the real listener (its certificate names 127.0.0.1).
                #expect(await Self.refusal(ServiceClient.pinned(baseURL: p.server.url, token: p.admin, tls: p.tls)).isEmpty)
            }
        }
    }

    @Test func mutualTLSTurnsAwayClientsWithoutTheCAsCertificate() async throws {
        let p = try await TestPlatform.start(tls: true, mutual: true)
        try await withTeardown({ await p.stop() }) {
            // The platform's own clients (the agents' path, the admin) hold certificates and pass.
            let (s, body) = try await p.request("POST", "/v1/vms", ["name": "mtls-1", "integrityMonitoring": true])
            #expect(s == 201, "\(s) \(TestPlatform.message(body))")
            #expect(try await p.fleet.require("mtls-1").bootIntegrity == .healthy)
            let ca = try #require(p.tls?.trustRootsPEM)
            // No client certificate: the handshake fails, whatever token is offered.
            let anonymous = ServiceClient.pinned(baseURL: p.server.url, token: p.admin, tls: ClientTLS(trustRootsPEM: ca))
            #expect(!(await Self.refusal(anonymous, "/v1/vms")).isEmpty)
            // A client certificate from another CA: refused too.
            let other = try PlatformTLS.loadOrCreate(directory: Self.tempDir("tl-otherca"))
            defer { try? FileManager.default.removeItem(at: other.directory) }
            let forged = try other.issueClient(name: "test client")
            let stranger = ServiceClient.pinned(
                baseURL: p.server.url, token: p.admin,
                tls: ClientTLS(trustRootsPEM: ca, certificatePEM: forged.certificatePEM, keyPEM: forged.keyPEM))
            #expect(!(await Self.refusal(stranger, "/v1/vms")).isEmpty)
            // One the platform CA issued (tlaunch tls client): through.
            let issued = try PlatformTLS.loadOrCreate(directory: p.folder.tls).issueClient(name: "ops")
            let ops = ServiceClient.pinned(baseURL: p.server.url, token: p.admin,
                                           tls: ClientTLS(trustRootsPEM: ca, certificatePEM: issued.certificatePEM, keyPEM: issued.keyPEM))
            #expect(await Self.refusal(ops, "/v1/vms").isEmpty)
        }
    }

    @Test func theServerCertificateIsKeptUntilANameIsMissingAndTheCAOnceMade() throws {
        let dir = Self.tempDir("tl-tls")
        defer { try? FileManager.default.removeItem(at: dir) }
        let ca = try PlatformTLS.loadOrCreate(directory: dir)
        #expect(try PlatformTLS.loadOrCreate(directory: dir).caCertificate == ca.caCertificate, "the CA is made once")
        let key = try #require(
            FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent("ca.key").path)[.posixPermissions] as? Int)
        #expect(key == 0o600)
        let first = try ca.serverIdentity(names: ["127.0.0.1", "localhost"])
        #expect(try ca.serverIdentity(names: ["localhost"]).chainPEM == first.chainPEM, "a certificate that covers the names is kept")
        let second = try ca.serverIdentity(names: ["127.0.0.1", "10.1.2.3", "attest.example.test"])
        #expect(second.chainPEM != first.chainPEM)
        let cert = try Certificate(pemEncoded: String(contentsOf: ca.serverCertificateFile, encoding: .utf8))
        #expect(PlatformTLS.names(in: cert) == ["127.0.0.1", "10.1.2.3", "attest.example.test"])
        #expect(cert.issuer == ca.caCertificate.subject && ca.caCertificate.publicKey.isValidSignature(cert.signature, for: cert))
        // A damaged CA is an error that says what to do, never a silently new CA.
        try Data("junk".utf8).write(to: dir.appendingPathComponent("ca.pem"))
        #expect(throws: TLSSetupError.self) { _ = try PlatformTLS.loadOrCreate(directory: dir) }
    }

    /// `tlaunch serve --insecure-http` on a non-loopback address says loudly what it gives up;
    /// `--tls-cert` without `--tls-key` is refused.
    @Test func plainHTTPIsAnExplicitChoiceAndSaysSo() async throws {
        let dir = Self.tempDir("tl-plain")
        defer { try? FileManager.default.removeItem(at: dir) }
        var (status, _, err) = try await Interop.run(
            tlaunchPath,
            [
                "up", "--data", dir.path, "--listen", "127.0.0.1:0", "--tls-cert", "/nonexistent.pem", "--no-sample-fleet", "--hypervisor",
                "simulated"
            ])
        #expect(status != 0 && err.contains("--tls-cert and --tls-key go together"), "\(err)")
        (status, _, err) = try await Interop.run(
            tlaunchPath, ["up", "--data", dir.path, "--listen", "127.0.0.1:0", "--insecure-http", "--mtls", "--no-sample-fleet"])
        #expect(status != 0 && err.contains("--insecure-http cannot go with"), "\(err)")
        let warn = try await Interop.run(tlaunchPath, ["serve", "--data", dir.path, "--listen", "256.1.1.1:1", "--insecure-http"])
        #expect(warn.2.contains("WARNING: plain HTTP on 256.1.1.1"), "\(warn.2)")
    }

    /// A plain TCP listener on 127.0.0.1 and a free port, for a hand-written server thread.
    static func rawListener() throws -> (fd: Int32, port: Int) {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(listener >= 0)
        var addr = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: 0, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")),
                               sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        try #require(withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self,
                                                                                capacity: 1) { bind(listener, $0, len) } } == 0)
        try #require(listen(listener, 4) == 0)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
        return (listener, Int(UInt16(bigEndian: addr.sin_port)))
    }

    /// A server may answer and close before it has read the whole request (a refusal from the
    /// head alone, say of a body too large). The client reports that answer — not "I/O on closed
    /// channel" from its own unfinished write, which hid the server's reason. The body is larger
    /// than loopback's socket buffers, so the client is still writing when the answer and the
    /// server's FIN arrive.
    @Test func anAnswerSentBeforeTheRequestEndedIsTheOneReported() async throws {
        let (listener, port) = try Self.rawListener()
        defer { close(listener) }
        let served = AsyncStream<Void>.makeStream()
        Thread.detachNewThread {
            defer { served.continuation.finish() }
            let c = accept(listener, nil, nil)
            guard c >= 0 else { return }
            defer { close(c) }
            // Read up to the end of the head, answer, close this side, then drain what the
            // client still sends (so the close is a FIN, not a reset that would discard the answer).
            var head: [UInt8] = [], byte: UInt8 = 0
            while !head.suffix(4).elementsEqual([13, 10, 13, 10]), read(c, &byte, 1) == 1 { head.append(byte) }
            let answer = Array("HTTP/1.1 413 Payload Too Large\r\nContent-Length: 13\r\nConnection: close\r\n\r\nbody too big\n".utf8)
            _ = answer.withUnsafeBytes { write(c, $0.baseAddress, $0.count) }
            shutdown(c, Int32(SHUT_WR))
            var sink = [UInt8](repeating: 0, count: 65536)
            while read(c, &sink, sink.count) > 0 {}
        }
        let response = try await HTTPSClient.send("POST", URL(string: "http://127.0.0.1:\(port)/upload")!,
                                                  body: [UInt8](repeating: 0x41, count: 64 << 20), tls: ClientTLS(), timeout: .seconds(120))
        #expect(response.status == 413)
        #expect(String(decoding: response.body, as: UTF8.self) == "body too big\n")
        for await _ in served.stream {}
    }
    /// An agent's session: its requests share one connection (keep-alive); when the server closes
    /// that connection between requests, the next request goes on a new one and is answered.
    @Test func aSessionKeepsOneConnectionAndReopensWhenTheServerClosesIt() async throws {
        let (listener, port) = try Self.rawListener()
        defer { close(listener) }
        let served = AsyncStream<Void>.makeStream()
        // Answers "CONNECTION-REQUEST" and closes each connection after its second answer.
        Thread.detachNewThread {
            defer { served.continuation.finish() }
            for connection in 1...2 {
                let c = accept(listener, nil, nil)
                guard c >= 0 else { return }
                defer { close(c) }
                for request in 1...2 {
                    var head: [UInt8] = [], byte: UInt8 = 0
                    while !head.suffix(4).elementsEqual([13, 10, 13, 10]), read(c, &byte, 1) == 1 { head.append(byte) }
                    guard head.count >= 4 else { break }
                    let body = "\(connection)-\(request)"
                    let answer = Array("HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
                    _ = answer.withUnsafeBytes { write(c, $0.baseAddress, $0.count) }
                }
            }
        }
        let client = ServiceClient.pinned(baseURL: "http://127.0.0.1:\(port)", token: "t", tls: nil)
        let answers = try await client.session { c in
            var all: [String] = []
            for _ in 0..<3 { all.append(String(decoding: try await c.send("GET", "/v1/x", step: "test").body, as: UTF8.self)) }
            return all
        }
        #expect(answers == ["1-1", "1-2", "2-1"])
        for await _ in served.stream {}
    }
}
