import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Fleet
import Server
import Attestation
import TLaunchTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif


/// Raw HTTP as an attacker's page or a curious browser would send it: redirects are not followed,
/// so the Location and Set-Cookie of the answer itself can be read.
final class NoRedirects: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest,
                    completionHandler: @escaping (URLRequest?) -> Void) {
        completionHandler(nil)
    }

    static func fetch(
        _ method: String, _ url: String, body: Data? = nil, headers: [String: String] = [:]
    ) async throws -> (Int, [String: String], Data) {
        var r = URLRequest(url: URL(string: url)!)
        // The server runs in this process: under load it answers late, not never (as every
        // client of an in-process server in this suite waits).
        r.timeoutInterval = 600
        r.httpMethod = method
        r.httpBody = body
        for (k, v) in headers { r.setValue(v, forHTTPHeaderField: k) }
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = 600
        let session = URLSession(configuration: config, delegate: NoRedirects(), delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        let (data, response) = try await session.data(for: r)
        let http = try #require(response as? HTTPURLResponse)
        var fields: [String: String] = [:]
        for (k, v) in http.allHeaderFields { if let k = k as? String, let v = v as? String { fields[k.lowercased()] = v } }
        return (http.statusCode, fields, data)
    }
}

@Suite("Hardening: the dashboard's sign-in, headers and limits; guest text in the terminal")
struct HardeningTests {
    /// A guest's grub.cfg puts terminal escape sequences (an OSC, clear the screen, colours, a C1
    /// CSI, the bell; no ';', which grub reads as the end of a command) on its kernel command line; the admin reads the VM and the alert in
    /// a terminal.
    @Test func guestTextReachesTheTerminalOnlyAsPrintableText() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            let env = ["TLAUNCH_SERVER": p.server.url, "TLAUNCH_TOKEN": p.admin]
            _ = try await p.fleet.deploy(DeployRequest(name: "esc", integrityMonitoring: true))
            let config = """
                set timeout=0\nlinux /vmlinuz console=ttyS0 root=/dev/vda2 ro \
                \u{1B}]2owned\u{07}\u{1B}[2J\u{1B}[31mevil=1\u{9B}0m\u{07}\ninitrd /initrd.img\nboot\n
                """
            _ = try await p.fleet.putFile("esc", path: "/EFI/tlaunch/grub.cfg", bytes: Array(config.utf8))
            let vm = try await p.fleet.restart("esc")
            #expect(vm.lastBoot?.kernelCommandLine?.contains("\u{1B}") == true,
                    "the guest's text did carry the sequences: \(String(describing: vm.lastBoot?.kernelCommandLine))")
            let alert = try #require(try await p.fleet.store.alerts(vm: "esc", status: .active).first)
            for args in [["vm", "show", "esc"], ["alert", "show", alert.id], ["alert", "list"], ["vm", "list"]] {
                let (status, out, err) = try await Interop.run(tlaunchPath, args, environment: env)
                #expect(status == 0, "\(args): \(err)")
                #expect(!out.unicodeScalars.contains { ($0.value < 0x20 && $0 != "\n" && $0 != "\t") || (0x7F...0x9F).contains($0.value) },
                        "\(args) printed control characters: \(out.debugDescription.suffix(400))")
                if args == ["vm", "show", "esc"] { #expect(out.contains("evil=1"), "the text itself is still shown: \(out)") }
            }
        }
    }

    @Test func signInLinksNeitherFixSessionsNorRedirectElsewhere() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            let base = p.server.url
            // An unchecked token gets no cookie: a link with someone else's chosen "token" cannot
            // plant a session (and a stale one is refused, not silently kept).
            var (s, h, _) = try await NoRedirects.fetch("GET", "\(base)/login?token=tlt_attackerchosen")
            #expect(s == 401 && h["set-cookie"] == nil, "\(s) \(h)")
            // A real token: a cookie, and only a page of the dashboard to go on to.
            for (next, to) in [("/vms/web-01", "/vms/web-01"), ("/alerts", "/alerts"), ("/", "/"),
                ("//evil.example/", "/"), ("/%09/evil.example", "/"), ("/\t/evil.example", "/"), ("/\u{0B}/evil.example", "/"),
                ("/\\evil.example", "/"), ("https://evil.example/", "/"),
                               ("/vms/../../evil", "/"), ("/vms/x?y=1", "/"), ("/%2F%2Fevil.example", "/"), ("/vms/web-01/../x", "/"),
                               // The fleet with a filter: a query of plain characters, nothing that leaves the page.
                               ("/?integrity=Unhealthy&q=web", "/?integrity=Unhealthy&q=web"), ("/?q=%3Cb%3E", "/?q=%3Cb%3E"),
                               ("/?q=//evil.example", "/"), ("/?q=a\\evil", "/"), ("/?q=x\r\nSet-Cookie:a=b", "/"), ("/?/../evil", "/")] {
                let q = next.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? next
                (s, h, _) = try await NoRedirects.fetch("GET", "\(base)/login?token=\(p.admin)&next=\(q)")
                #expect(s == 303 || s == 302, "\(next): \(s)")
                #expect(h["location"] == to, "next=\(next) went to \(h["location"] ?? "-")")
                #expect(h["set-cookie"]?.contains("HttpOnly") == true)
            }
        }
    }

    @Test func everyAnswerCarriesTheSecurityHeaders() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            for (method, path) in [("GET", "/login"), ("GET", "/"), ("GET", "/v1/vms"), ("GET", "/v1/vms/nobody"),
                                   ("GET", "/nothing-here")] {
                let (s, h, _) = try await NoRedirects.fetch(method, p.server.url + path,
                                                            headers: path.hasPrefix("/v1") ? ["Authorization": "Bearer \(p.admin)"] : [:])
                #expect(h["x-frame-options"] == "DENY" && h["referrer-policy"] == "no-referrer" && h["x-content-type-options"] == "nosniff",
                        "\(path) \(s): \(h)")
                #expect(
                    h["content-security-policy"]?.contains("frame-ancestors 'none'") == true
                        && h["content-security-policy"]?.contains("default-src 'none'") == true, "\(path)")
            }
        }
    }

    /// A listening socket on a free loopback port, held by this test.
    static func takenPort() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self,
                                capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, 4) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        #expect(ok)
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    @Test(.timeLimit(.minutes(3)))
    func aTakenPortFailsAtOnceAndADataFolderServesOnePlatform() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-lock-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: dir) }
        // The port is taken: `up` says so and exits (it used to wait forever).
        let taken = try Self.takenPort()
        defer { close(taken.fd) }
        var (status, out, err) = try await Interop.run(
            tlaunchPath, ["up", "--data", dir.path, "--listen", "127.0.0.1:\(taken.port)", "--no-sample-fleet", "--hypervisor", "simulated"]
        )
        #expect(status != 0 && err.contains("Address already in use") && !out.contains("Ready"), "\(status) \(out) \(err)")

        // One platform on the folder; a second is refused and names the first.
        let log = dir.appendingPathComponent("first.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let first = Process()
        first.executableURL = URL(fileURLWithPath: tlaunchPath)
        first.arguments = ["up", "--data", dir.path, "--listen", "127.0.0.1:0", "--no-sample-fleet", "--hypervisor", "simulated"]
        first.standardOutput = try FileHandle(forWritingTo: log)
        first.standardError = FileHandle.nullDevice
        try first.run()
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
        let ready = try await RealVMTests.waitFor("the first platform", seconds: 120) { () async throws -> Bool? in
            (try? String(contentsOf: log, encoding: .utf8))?.contains("==> Ready") == true ? true : nil
        }
        #expect(ready)
        (status, out, err) = try await Interop.run(
            tlaunchPath, ["up", "--data", dir.path, "--listen", "127.0.0.1:0", "--no-sample-fleet", "--hypervisor", "simulated"])
        #expect(status != 0 && err.contains("in use by another platform process (pid \(first.processIdentifier))"),
                "\(status) \(out) \(err)")
        // When the first ends (however it ends), the folder is free again.
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        let again = try PlatformLock(DataFolder(root: dir))
        _ = again
    }

    /// SIGINT (Ctrl-C) and SIGTERM (a service manager) stop `tlaunch up` gracefully: its service
    /// group shuts the server, the fleet and the database down in turn, the platform says so,
    /// exits 0 and frees its data folder for the next start. One platform and folder per signal.
    /// When the platform does not exit in time, the failure carries what the kernel says about
    /// the signal (pending, blocked, caught, per thread) and what the platform printed, so the
    /// cause is in the report, not a guess. The time limit is above the two waits (a start under
    /// a loaded CI, then the exit), so a slow machine fails on the wait that names what it waited for.
    @Test(.timeLimit(.minutes(5)), arguments: [SIGTERM, SIGINT])
    func aSignalStopsThePlatformGracefullyAndFreesItsFolder(_ sig: Int32) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-signal-\(sig)-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: dir) }
        let log = dir.appendingPathComponent("up.log")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        // Started with both signals at their defaults and none blocked, whatever this runner
        // inherited (a process started in the background by a non-interactive shell inherits
        // SIGINT ignored).
        let up = Process()
        up.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        up.arguments = ["-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                            + "signal.signal(signal.SIGTERM, signal.SIG_DFL); signal.pthread_sigmask(signal.SIG_SETMASK, []); "
                            + "os.execv(sys.argv[1], sys.argv[1:])",
                        tlaunchPath, "up", "--data", dir.appendingPathComponent("data").path, "--listen", "127.0.0.1:0",
                        "--no-sample-fleet", "--hypervisor", "simulated"]
        up.standardOutput = try FileHandle(forWritingTo: log)
        up.standardError = FileHandle.nullDevice
        try up.run()
        defer { if up.isRunning { kill(up.processIdentifier, SIGKILL) } }
        _ = try await RealVMTests.waitFor("the platform", seconds: 120) { () async throws -> Bool? in
            (try? String(contentsOf: log, encoding: .utf8))?.contains("==> Ready") == true ? true : nil
        }
        kill(up.processIdentifier, sig)
        do {
            _ = try await RealVMTests.waitFor("the platform to exit on signal \(sig)",
                                              seconds: 60) { () async throws -> Bool? in up.isRunning ? nil : true }
        } catch {
            let said = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            let state = Self.signalState(of: up.processIdentifier)
            Issue.record("signal \(sig): still running after 60 s. \(state) — it printed: \(said.suffix(400))")
            return
        }
        #expect(up.terminationReason == .exit && up.terminationStatus == 0,
                "signal \(sig): \(up.terminationReason) \(up.terminationStatus)")
        let said = try String(contentsOf: log, encoding: .utf8)
        #expect(said.contains("==> Stopping"), "signal \(sig): \(said.suffix(300))")
        do { _ = try PlatformLock(DataFolder(root: dir.appendingPathComponent("data"))) }   // free again (released at once)
    }

    /// The signal lines of /proc/PID/status for the process and each of its threads.
    static func signalState(of pid: Int32) -> String {
        func lines(_ path: String) -> String {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return "(gone)" }
            return text.split(separator: "\n").filter { ["Name", "State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"]
                .contains($0.split(separator: ":").first.map(String.init) ?? "") }
                .map { $0.replacingOccurrences(of: "\t", with: " ") }.joined(separator: ", ")
        }
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return "process: \(lines("/proc/\(pid)/status")); threads: "
            + tasks.sorted().map { "[\($0): \(lines("/proc/\(pid)/task/\($0)/status"))]" }.joined(separator: " ")
    }

    @Test func unknownFieldsAreRefusedByNameAndTheARMShapeDeploys() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            // A misspelt field used to deploy with monitoring silently off.
            var (s, body) = try await p.request("POST", "/v1/vms", ["name": "typo", "integritymonitoring": true, "start": false])
            #expect(s == 400 && TestPlatform.message(body).contains("unknown field integritymonitoring"),
                    "\(s) \(TestPlatform.message(body))")
            #expect(try await p.fleet.store.vm("typo") == nil)
            (s, body) = try await p.request("POST", "/v1/vms",
                                            ["name": "typo", "securityProfile": ["securityTyp": "Standard"], "start": false])
            #expect(s == 400 && TestPlatform.message(body).contains("securityProfile.securityTyp"), "\(TestPlatform.message(body))")
            (s, body) = try await p.request(
                "POST", "/v1/vms",
                ["name": "typo", "securityType": "Standard", "securityProfile": ["securityType": "TrustedLaunch"], "start": false])
            #expect(s == 400 && TestPlatform.message(body).contains("disagree"), "\(TestPlatform.message(body))")
            #expect(try await p.fleet.store.vm("typo") == nil)
            // The ARM shape that `vm show --json` prints deploys as it says.
            (s, body) = try await p.request("POST", "/v1/vms", ["name": "arm1", "integrityMonitoring": true, "start": false,
                    "securityProfile": ["securityType": "TrustedLaunch", "uefiSettings": ["secureBootEnabled": false, "vTpmEnabled": true]]
                ])
            #expect(s == 201, "\(TestPlatform.message(body))")
            let arm = try #require(try await p.fleet.store.vm("arm1"))
            #expect(arm.securityType == .trustedLaunch && !arm.secureBoot && arm.vTPM && arm.integrityMonitoring)
            (s, _) = try await p.request(
                "POST", "/v1/vms", ["name": "arm2", "image": "legacy-bios", "start": false, "securityProfile": ["securityType": "Standard"]]
            )
            let arm2 = try await p.fleet.store.vm("arm2")
            #expect(s == 201 && arm2?.securityType == .standard)
            (s, body) = try await p.request("PATCH", "/v1/vms/arm1", ["integritymonitoring": false])
            #expect(s == 400 && TestPlatform.message(body).contains("integritymonitoring"))
            let unchanged = try await p.fleet.store.vm("arm1")
            #expect(unchanged?.integrityMonitoring == true)
        }
    }

    /// A page on another port of the same host posts the dashboard's form with the admin's cookie
    /// (SameSite=Strict lets it: same site), as a browser would send it.
    @Test func crossOriginFormsAreRefusedAndTheCookieIsNoAPICredential() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            _ = try await p.fleet.deploy(DeployRequest(name: "target"))
            let port = URL(string: p.server.url)!.port!
            let form = Data("action=stop&confirm=yes&csrf=\(try await p.csrf(cookie: "tlaunch_session=\(p.admin)"))".utf8)
            func post(_ headers: [String: String]) async throws -> Int {
                try await NoRedirects.fetch("POST", "\(p.server.url)/vms/target/action", body: form,
                                            headers: ["Cookie": "tlaunch_session=\(p.admin)",
                                                      "Content-Type": "application/x-www-form-urlencoded"].merging(headers) { $1 }).0
            }
            for attack in [["Origin": "http://127.0.0.1:\(port + 1)", "Sec-Fetch-Site": "same-site"],
                           ["Origin": "http://127.0.0.1:\(port + 1)"],
                           ["Sec-Fetch-Site": "cross-site"], ["Origin": "null"], ["Origin": "http://localhost:\(port)"]] {
                #expect(try await post(attack) == 403, "\(attack)")
                #expect(try await p.fleet.require("target").powerState == .running, "\(attack) stopped the VM")
            }
            // The dashboard's own form still works.
            #expect(try await post(["Origin": "http://127.0.0.1:\(port)", "Sec-Fetch-Site": "same-origin"]) == 303)
            #expect(try await p.fleet.require("target").powerState == .stopped)
            // The cookie is the dashboard's session, not an API credential.
            let (s, _, _) = try await NoRedirects.fetch("GET", "\(p.server.url)/v1/vms", headers: ["Cookie": "tlaunch_session=\(p.admin)"])
            #expect(s == 401)
        }
    }

    @Test func tokensExpireAndAreRevokedEverywhere() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            let store = p.service.store
            // Expiry: accepted until its time, refused after.
            let now = Date()
            let short = try await AttestationService.createAPIToken(store: store, role: .reader, vm: nil, lifetime: .seconds(60), now: now)
            #expect(try await p.service.authenticate(short, now: now.addingTimeInterval(59)) != nil)
            #expect(try await p.service.authenticate(short, now: now.addingTimeInterval(61)) == nil)
            let brief = try await AttestationService.createAPIToken(store: store, role: .reader, vm: nil, lifetime: .milliseconds(1))
            try await Task.sleep(for: .milliseconds(20))
            #expect(try await p.request("GET", "/v1/vms", token: brief).0 == 401, "an expired token over HTTP")
            // Revocation: a working token, revoked by its id, is refused at once — API and dashboard.
            let reader = try await AttestationService.createAPIToken(store: store, role: .reader, vm: nil)
            #expect(try await p.request("GET", "/v1/vms", token: reader).0 == 200)
            let id = String(AttestationService.hashToken(reader).prefix(12))
            var (status, out, err) = try await Interop.run(tlaunchPath, ["token", "revoke", String(id.prefix(3)), "--data", p.dir.path])
            #expect(status != 0 && err.contains("no token has the id"), "a too-short id matches nothing: \(err)")
            (status, out, err) = try await Interop.run(tlaunchPath, ["token", "revoke", id, "--data", p.dir.path])
            #expect(status == 0 && out.contains("Revoked \(id)"), "\(out) \(err)")
            #expect(try await p.request("GET", "/v1/vms", token: reader).0 == 401)
            let (s, _, _) = try await NoRedirects.fetch("GET", "\(p.server.url)/", headers: ["Cookie": "tlaunch_session=\(reader)"])
            #expect(s == 303 || s == 302, "the dashboard sends a revoked session to sign in")
            // The list says which is which, and never shows a token.
            (status, out, err) = try await Interop.run(tlaunchPath, ["token", "list", "--data", p.dir.path])
            #expect(status == 0 && out.contains(id) && out.contains("revoked") && out.contains("expired") && out.contains("valid"),
                    "\(out) \(err)")
            #expect(!out.contains(reader) && !out.contains("tlt_"))
        }
    }

    /// What `tlaunch up` prints is a one-time code: it signs in once, its session ends with sign-out,
    /// and neither the code nor a session is an API credential of its own.
    @Test func signInCodesWorkOnceAndSessionsEndWithSignOut() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            let code = try await AttestationService.createSignInCode(store: p.service.store)
            #expect(try await p.request("GET", "/v1/vms", token: code).0 == 403, "a sign-in code is no API credential")
            var (s, h, _) = try await NoRedirects.fetch("GET", "\(p.server.url)/login?code=\(code)&next=/alerts")
            #expect((s == 303 || s == 302) && h["location"] == "/alerts", "\(s) \(h)")
            let cookie = try #require(h["set-cookie"]?.split(separator: ";").first.map(String.init))
            #expect(!cookie.contains(code) && !cookie.contains(p.admin), "the cookie holds a session of its own")
            (s, h, _) = try await NoRedirects.fetch("GET", "\(p.server.url)/login?code=\(code)")
            #expect(s == 401 && h["set-cookie"] == nil, "a code signs in once")
            let expired = try await AttestationService.createSignInCode(store: p.service.store, lifetime: .milliseconds(1))
            try await Task.sleep(for: .milliseconds(20))
            #expect(try await NoRedirects.fetch("GET", "\(p.server.url)/login?code=\(expired)").0 == 401)
            // The session reads the dashboard; signing out revokes it (a copied cookie is worth nothing).
            #expect(try await NoRedirects.fetch("GET", "\(p.server.url)/", headers: ["Cookie": cookie]).0 == 200)
            (s, h, _) = try await NoRedirects.fetch("POST", "\(p.server.url)/logout",
                                                    body: Data("csrf=\(try await p.csrf(cookie: cookie))".utf8),
                                                    headers: ["Cookie": cookie, "Origin": p.server.url,
                                                              "Content-Type": "application/x-www-form-urlencoded"])
            #expect((s == 303 || s == 302) && h["set-cookie"]?.contains("Max-Age=0") == true)
            (s, h, _) = try await NoRedirects.fetch("GET", "\(p.server.url)/", headers: ["Cookie": cookie])
            #expect((s == 303 || s == 302) && h["location"] == "/login", "a signed-out session is sent to sign in")
            // Signing in with a token makes a session too: signing out does not revoke the token.
            (s, h, _) = try await NoRedirects.fetch("GET", "\(p.server.url)/login?token=\(p.admin)")
            let second = try #require(h["set-cookie"]?.split(separator: ";").first.map(String.init))
            #expect(!second.contains(p.admin))
            _ = try await NoRedirects.fetch("POST", "\(p.server.url)/logout", body: Data("csrf=\(try await p.csrf(cookie: second))".utf8),
                                            headers: ["Cookie": second, "Origin": p.server.url,
                                                      "Content-Type": "application/x-www-form-urlencoded"])
            #expect(try await p.request("GET", "/v1/vms").0 == 200, "the admin token outlives the session it opened")
        }
    }

    @Test func anOversizedFormIs413AndChangesNothing() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            let form = "name=big&image=sample-linux&pad=" + String(repeating: "A", count: 70 << 10)
            let (s, _, body) = try await NoRedirects.fetch("POST", p.server.url + "/deploy", body: Data(form.utf8),
                                                          headers: ["Cookie": "tlaunch_session=\(p.admin)",
                                                                    "Content-Type": "application/x-www-form-urlencoded"])
            #expect(s == 413, "\(s): \(String(decoding: body.prefix(300), as: UTF8.self))")
            #expect(try await p.fleet.store.vm("big") == nil)
        }
    }

    /// A full data folder: the operation it interrupts fails (503, nothing claimed), /readyz says
    /// why, the VM's view says what was interrupted; when space returns, the interruption
    /// becomes an alert and the VM is attested again. (A real full disk: a 48 MiB tmpfs.)
    @Test(.timeLimit(.minutes(5)))
    func aFullDataFolderIsReportedAndRecordedWhenSpaceReturns() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-full-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let (mounted, _, err) = try await Interop.run("/bin/mount", ["-t", "tmpfs", "-o", "size=48m", "tmpfs", dir.path])
        guard mounted == 0 else {
            if Interop.required { Issue.record("cannot mount a tmpfs (needs root): \(err)") }
            return
        }
        defer { _ = try? Process.run(URL(fileURLWithPath: "/bin/umount"), arguments: ["-l", dir.path]).waitUntilExit() }
        let p = try await TestPlatform.start(dir: dir.appendingPathComponent("data"))
        try await withTeardown({ await p.stop() }) {
            #expect(try await p.request("POST", "/v1/vms", ["name": "full-1", "integrityMonitoring": true]).0 == 201)
            #expect(try await p.request("GET", "/readyz").0 == 200)
            // Fill the disk.
            let filler = dir.appendingPathComponent("filler")
            let (_, _, _) = try await Interop.run("/bin/dd", ["if=/dev/zero", "of=\(filler.path)", "bs=1M", "count=100"])
            var (s, body) = try await p.request("POST", "/v1/vms/full-1/restart")
            #expect(s == 503, "\(s) \(TestPlatform.message(body))")
            (s, body) = try await p.request("GET", "/readyz")
            #expect(s == 503 && ((body as? [String: Any])?["reason"] as? String)?.contains("is full") == true,
                    "\(s) \(String(describing: body))")
            (s, body) = try await p.request("GET", "/v1/vms/full-1")
            let interrupted = (body as? [String: Any])?["storageInterruption"] as? String
            #expect(interrupted?.contains("restart interrupted") == true, "\(String(describing: body))")
            let (_, _, page) = try await NoRedirects.fetch("GET", "\(p.server.url)/", headers: ["Cookie": "tlaunch_session=\(p.admin)"])
            #expect(String(decoding: page, as: UTF8.self).contains("id=\"storage\""), "the dashboard says so")
            // Space returns: the monitor records what happened and attests the VM again.
            try FileManager.default.removeItem(at: filler)
            let before = try await p.fleet.require("full-1").lastAttestation ?? 0
            await p.fleet.monitorOnce()
            #expect(try await p.request("GET", "/readyz").0 == 200)
            let alerts = try await p.fleet.store.alerts(vm: "full-1", status: .active)
            let alert = try #require(alerts.first { $0.kind == "storage-failure" })
            #expect(alert.title == "Storage failure interrupted restart" && alert.evidence.first?.detail.contains("full") == true)
            (s, body) = try await p.request("GET", "/v1/vms/full-1")
            #expect((body as? [String: Any])?["storageInterruption"] == nil)
            let after = try await p.fleet.require("full-1")
            #expect((after.lastAttestation ?? 0) > before && after.bootIntegrity == .healthy, "attested again when storage came back")
        }
    }

    /// A same-origin post with the session cookie still needs the session's CSRF token: a form
    /// without it, or with another session's, changes nothing. API-style callers (a bearer
    /// token, which a browser never attaches by itself) need none.
    @Test func dashboardFormsNeedTheSessionsCSRFToken() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            _ = try await p.fleet.deploy(DeployRequest(name: "csrf-1"))
            let cookie = "tlaunch_session=\(p.admin)"
            let token = try await p.csrf(cookie: cookie)
            #expect(token.count >= 40 && !token.contains(p.admin))
            let other = try await AttestationService.createAPIToken(store: p.service.store, role: .admin, vm: nil)
            let othersToken = try await p.csrf(cookie: "tlaunch_session=\(other)")
            #expect(othersToken != token, "a token per session")
            func post(_ form: String, _ headers: [String: String] = [:]) async throws -> Int {
                try await NoRedirects.fetch("POST", "\(p.server.url)/vms/csrf-1/action", body: Data(form.utf8),
                                            headers: ["Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded",
                                                      "Origin": p.server.url,
                                                      "Sec-Fetch-Site": "same-origin"].merging(headers) { $1 }).0
            }
            for form in ["action=stop&confirm=yes", "action=stop&confirm=yes&csrf=", "action=stop&confirm=yes&csrf=\(othersToken)",
                         "action=stop&confirm=yes&csrf=\(token.dropLast())x"] {
                #expect(try await post(form) == 403, "\(form)")
                #expect(try await p.fleet.require("csrf-1").powerState == .running, "\(form) stopped the VM")
            }
            #expect(try await post("action=stop&confirm=yes", ["X-CSRF-Token": token]) == 303, "the header works too")
            #expect(try await p.fleet.require("csrf-1").powerState == .stopped)
            #expect(try await post("action=start&csrf=\(token)") == 303)
            // Every post form of a page carries the token; a bearer caller (not a browser) needs none.
            let (_, _, page) = try await NoRedirects.fetch("GET", "\(p.server.url)/vms/csrf-1", headers: ["Cookie": cookie])
            let html = String(decoding: page, as: UTF8.self)
            let forms = html.components(separatedBy: "<form ").count - 1
            #expect(forms >= 2 && html.components(separatedBy: "name=\"csrf\" value=\"\(token)\"").count - 1 == forms, "\(forms) forms")
            let bearer = try await NoRedirects.fetch("POST", "\(p.server.url)/vms/csrf-1/action",
                                                     body: Data("action=stop&confirm=yes".utf8),
                                                     headers: ["Authorization": "Bearer \(p.admin)",
                                                               "Content-Type": "application/x-www-form-urlencoded"]).0
            #expect(bearer == 303)
        }
    }

    @Test func theVMPageOffersOnlyWhatAppliesAndAsksBeforeStopAndDelete() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            _ = try await p.fleet.deploy(DeployRequest(name: "ask-1"))
            let cookie = "tlaunch_session=\(p.admin)"
            let token = try await p.csrf(cookie: cookie)
            func page() async throws -> String {
                String(decoding: try await NoRedirects.fetch("GET", "\(p.server.url)/vms/ask-1", headers: ["Cookie": cookie]).2,
                       as: UTF8.self)
            }
            func post(_ form: String) async throws -> (Int, String) {
                let (s, _, body) = try await NoRedirects.fetch("POST", "\(p.server.url)/vms/ask-1/action",
                                                               body: Data((form + "&csrf=\(token)").utf8),
                                                               headers: ["Cookie": cookie,
                                                                         "Content-Type": "application/x-www-form-urlencoded",
                                                                         "Origin": p.server.url, "Sec-Fetch-Site": "same-origin"])
                return (s, String(decoding: body, as: UTF8.self))
            }
            // Running: Restart and Stop, no Start.
            var html = try await page()
            #expect(html.contains("value=\"stop\"") && html.contains("value=\"restart\"") && !html.contains("value=\"start\""))
            // Stop asks first (a page with the confirmed form); the VM runs on until confirmed.
            var (status, body) = try await post("action=stop")
            #expect(
                status == 200 && body.contains("Stop ask-1?") && body.contains("name=\"confirm\" value=\"yes\"")
                    && body.contains("name=\"csrf\""))
            #expect(try await p.fleet.require("ask-1").powerState == .running)
            (status, _) = try await post("action=stop&confirm=yes")
            let stopped = try await p.fleet.require("ask-1").powerState
            #expect(status == 303 && stopped == .stopped)
            // Stopped: Start, no Stop or Restart.
            html = try await page()
            #expect(html.contains("value=\"start\"") && !html.contains("value=\"stop\"") && !html.contains("value=\"restart\""))
            // Delete asks first, then deletes and goes back to the fleet.
            (status, body) = try await post("action=delete")
            #expect(status == 200 && body.contains("destroyed for good"))
            #expect(try await p.fleet.store.vm("ask-1") != nil)
            (status, _) = try await post("action=delete&confirm=yes")
            let gone = try await p.fleet.store.vm("ask-1") == nil
            #expect(status == 303 && gone)
        }
    }
}
