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
import TLaunchTestSupport
import Testing
import TPM2
import VirtualFirmware

/// Where test artefacts (the dashboard screenshots) are kept: .build/test-artifacts.
var artifacts: URL {
    let out = Built.packageRoot.appendingPathComponent(".build/test-artifacts")
    try? FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
    return out
}

@Suite("The dashboard in headless Chromium")
struct DashboardTests {
    static func chromium() -> String? {
        // Debian's package is chromium; required (and installed by scripts/deps.sh) under CI.
        Interop.tool("chromium")
    }

    /// The page's DOM after Chromium loaded and rendered it (signed in through /login).
    static func dom(_ browser: String, _ p: TestPlatform, _ path: String, screenshot: String? = nil) async throws -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "/-._~")
        let url = "\(p.server.url)/login?token=\(p.admin)&next=\(path.addingPercentEncoding(withAllowedCharacters: allowed) ?? path)"
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("chromium-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: profile) }
        let common = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                      "--user-data-dir=\(profile)", "--hide-scrollbars"]
        if let screenshot {
            let (status, _, err) = try await Interop.run(
                browser, common + ["--window-size=1400,1200", "--screenshot=\(artifacts.appendingPathComponent(screenshot).path)", url])
            #expect(status == 0, "\(err.suffix(500))")
        }
        let (status, out, err) = try await Interop.run(browser, common + ["--dump-dom", url])
        #expect(status == 0, "\(err.suffix(500))")
        let shownAsText = Self.markupShownAsText(out)
        #expect(shownAsText == nil, "\(path): markup escaped twice, shown as text: \(shownAsText ?? "")")
        return out
    }

    @Test func markupShownAsTextIsFound() {
        #expect(Self.markupShownAsText("<td>&lt;script&gt; &amp; x</td>") == nil, "escaped text is not markup")
        #expect(Self.markupShownAsText("<td>&lt;td&gt;x</td>") == "&lt;td&gt;" && Self.markupShownAsText("a &amp;lt; b") == "&amp;lt;")
    }

    /// Markup the page shows as text — a tag or an entity escaped a second time — if any.
    static func markupShownAsText(_ dom: String) -> String? {
        let tags = """
            tr|td|th|a|span|li|ul|ol|div|code|table|tbody|thead|h1|h2|p|br|form|button|input|option|select|small|b|pre|details|\
            summary|label|main
            """
        guard let r = dom.range(of: "&lt;/?(\(tags))( |&gt;)|&amp;(lt|gt|quot|amp|#39);", options: .regularExpression) else { return nil }
        return String(dom[r])
    }


    /// The attack the issue found: a page on another port of the same host (same site, so the
    /// SameSite=Strict cookie goes along) posts the dashboard's stop form in a real browser whose
    /// admin is signed in. The post reaches the platform and is refused; the VM keeps running.
    @Test(.timeLimit(.minutes(5)))
    func aPageOnAnotherPortCannotStopAVMThroughTheBrowser() async throws {
        guard let browser = Self.chromium() else { return }
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            _ = try await p.fleet.deploy(DeployRequest(name: "target"))
            // The attacker's site, on another port of the same host: one page follows a link to
            // the dashboard (the control: the victim's cookie goes along from this site), one
            // submits the dashboard's stop form.
            let pages = [
                "/link.html": "<html><body><p id=\"attacker\">link</p><script>location.href = \"\(p.server.url)/\";</script></body></html>",
                "/attack.html": """
                <html><body><p id="attacker">attacker page</p>
                <form id="f" method="post" action="\(p.server.url)/vms/target/action"><input name="action" value="stop"><input \
                name="confirm" value="yes"><input name="csrf" value="guessed"></form>
                <script>document.getElementById("f").submit();</script>
                </body></html>
                """,
            ]
            let router = Router()
            for (path, html) in pages {
                router.get(RouterPath(path)) { _, _ in
                    Response(status: .ok, headers: [.contentType: "text/html"], body: .init(byteBuffer: ByteBuffer(string: html)))
                }
            }
            let (port, running) = try await serveOnLoopback(router)
            defer { running.cancel() }
            // One browser profile: the admin signs in, then visits the attacker's pages.
            let profile = FileManager.default.temporaryDirectory.appendingPathComponent("chromium-\(UUID().uuidString.prefix(8))").path
            defer { try? FileManager.default.removeItem(atPath: profile) }
            func visit(_ url: String) async throws -> String {
                let (status, out, err) = try await Interop.run(
                    browser,
                    [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                                                                         "--user-data-dir=\(profile)", "--dump-dom", url])
                #expect(status == 0, "\(err.suffix(500))")
                return out
            }
            #expect(try await visit("\(p.server.url)/login?token=\(p.admin)&next=/").contains("id=\"fleet\""), "signed in")
            #expect(try await visit("http://127.0.0.1:\(port)/link.html").contains("id=\"fleet\""),
                    "the session cookie goes along from the other port")
            let answer = try await visit("http://127.0.0.1:\(port)/attack.html")
            // The form was submitted to the platform (the page is its answer) and refused.
            #expect(!answer.contains("id=\"attacker\"") && answer.contains("cannot change the platform"), "\(answer.prefix(600))")
            #expect(try await p.fleet.require("target").powerState == .running, "the attacker's page stopped the VM")
        }
    }

    /// A page open in a browser (scripts/chromium-cdp.py: Chromium driven over its DevTools pipe),
    /// one JSON command per line.
    final class OpenPage: @unchecked Sendable {
        let process = Process()
        let input = Pipe(), output = Pipe()
        var pending = Data()

        init(_ browser: String, url: String) throws {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = [Built.packageRoot.appendingPathComponent("scripts/chromium-cdp.py").path, browser, url]
            process.standardInput = input
            process.standardOutput = output
            try process.run()
        }

        /// Sends one command and reads its answer (off the cooperative pool: the read blocks).
        func send(_ command: [String: Any]) async throws -> [String: Any] {
            let line = try JSONSerialization.data(withJSONObject: command) + Data("\n".utf8)
            let answer = try await Interop.offPool { [self] () throws -> Data in
                input.fileHandleForWriting.write(line)
                while !pending.contains(UInt8(ascii: "\n")) {
                    let chunk = output.fileHandleForReading.availableData
                    guard !chunk.isEmpty else { throw AgentError("chromium-cdp", "the driver ended") }
                    pending += chunk
                }
                let end = pending.firstIndex(of: UInt8(ascii: "\n"))!
                defer { pending = Data(pending[(end + 1)...]) }
                return Data(pending[..<end])
            }
            return try JSONSerialization.jsonObject(with: answer) as? [String: Any] ?? [:]
        }

        func value(of expression: String) async throws -> Any? { try await send(["eval": expression])["value"] }
        func wait(for expression: String,
                  seconds: Int = 30) async throws -> [String: Any] { try await send(["wait": expression, "timeout": seconds]) }

        func close() {
            try? input.fileHandleForWriting.close()
            process.waitUntilExit()
        }
    }

    /// The fleet page open in a browser keeps itself current: a VM stopped through the API shows
    /// as Stopped without a reload (the page's own JavaScript state survives), while a search
    /// being typed is left alone — the page is not swapped under it until the field is back as
    /// the server sent it.
    @Test(.timeLimit(.minutes(5)))
    func anOpenFleetPageFollowsTheFleetWithoutAReload() async throws {
        guard let browser = Self.chromium() else { return }
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            _ = try await p.fleet.deploy(DeployRequest(name: "live"))
            let page = try OpenPage(browser, url: "\(p.server.url)/login?token=\(p.admin)&next=/")
            defer { page.close() }
            let power = "document.querySelector('#vm-live td:nth-child(2)').textContent"
            let loaded = try await page.wait(for: "document.getElementById('live') && \(power)")
            #expect(loaded["value"] as? String == "Running", "\(loaded)")
            #expect((try await page.value(of: "document.getElementById('live').textContent") as? String)?.hasPrefix("Live") == true)
            _ = try await page.value(of: "window.stillTheSamePage = true")

            _ = try await p.fleet.stop("live")
            let stopped = try await page.wait(for: "window.stillTheSamePage === true && \(power) !== 'Running' && \(power)")
            let state =
                try await page.value(of: "document.getElementById('live').textContent + ' (' + document.visibilityState + ')'") as? String
            #expect(stopped["value"] as? String == "Stopped", "the open page did not follow the stop: \(stopped); \(state ?? "?")")
            #expect((try await page.value(of: "document.getElementById('live').textContent") as? String)?.contains("updated") == true)

            // A search being typed (not submitted): the page is not swapped under it.
            _ = try await page.value(of: "document.querySelector('input[name=q]').value = 'liv'")
            _ = try await p.fleet.deploy(DeployRequest(name: "second"))
            let interval = try #require(Int(try await page.value(of: "document.body.dataset.live") as? String ?? ""))
            try await Task.sleep(for: .seconds(interval * 2 + 1))
            #expect(
                try await page.value(of: "document.getElementById('vm-second') === null && document.querySelector('input[name=q]').value")
                    as? String == "liv",
                    "the page was swapped while a search was being typed")
            // The field back as the server sent it: the next refresh brings the new VM.
            _ = try await page.value(of: "document.querySelector('input[name=q]').value = ''")
            let second = try await page.wait(for: "window.stillTheSamePage === true && document.getElementById('vm-second') !== null")
            #expect(second["value"] as? Bool == true, "\(second)")
        }
    }

    @Test func fleetOverviewAlertAndDeployPagesRender() async throws {
        guard let browser = Self.chromium() else { return }
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            let alert = try #require(try await SampleFleet.deploy(p.fleet, say: { _ in }))

            let fleet = try await Self.dom(browser, p, "/", screenshot: "dashboard-fleet.png")
            #expect(fleet.contains("<table id=\"fleet\">"))
            for vm in [SampleFleet.healthy, SampleFleet.tampered,
                       SampleFleet.standard] { #expect(fleet.contains("id=\"vm-\(vm)\""), "\(vm) not listed") }
            #expect(
                fleet.contains("Trusted launch") && fleet.contains("Standard") && fleet.contains("Unhealthy") && fleet.contains("Healthy"))
            #expect(fleet.contains("3 VMs") && fleet.contains("1 active alert") && !fleet.contains("id=\"next\""))
            #expect(fleet.contains("Signed in with an admin token") && fleet.contains("Sign out"))
            // The filter form (a GET form, no script): search, power state, boot integrity, security type.
            #expect(fleet.contains("id=\"filter\"") && fleet.contains("name=\"q\""))
            let unhealthy = try await Self.dom(browser, p, "/?integrity=Unhealthy", screenshot: "dashboard-filtered.png")
            #expect(unhealthy.contains("id=\"vm-\(SampleFleet.tampered)\"") && unhealthy.contains("1 of 3 VMs match"))
            #expect(!unhealthy.contains("id=\"vm-\(SampleFleet.healthy)\"") && !unhealthy.contains("id=\"vm-\(SampleFleet.standard)\""))
            #expect(unhealthy.contains("<option value=\"Unhealthy\" selected"), "the chosen value stays chosen")
            let standard = try await Self.dom(browser, p, "/?security=Standard&q=\(SampleFleet.standard.uppercased())")
            #expect(standard.contains("id=\"vm-\(SampleFleet.standard)\"") && standard.contains("1 of 3 VMs match"), "search ignores case")
            let none = try await Self.dom(browser, p, "/?q=%3Cscript%3Enothing&power=Bogus")
            // The search text comes back as the input's value (an attribute, no element of its own);
            // an unknown power state filters nothing.
            #expect(
                none.contains("0 of 3 VMs match") && none.contains("name=\"q\" value=\"&lt;script&gt;nothing\"")
                    && !none.contains("<script>nothing"))

            let vm = try await Self.dom(browser, p, "/vms/\(SampleFleet.tampered)", screenshot: "dashboard-vm.png")
            #expect(vm.contains("id=\"checklist\"") && vm.contains("System Guard (DRTM)") && vm.contains("id=\"timeline\""))
            #expect(vm.contains(alert.id) && vm.contains("Approve this boot as the baseline"))
            // Its boots and attestations as a strip: the good boot passed, the changed one failed
            // (the tile's title names the failed check and the change).
            #expect(vm.contains("id=\"bootstrip\"") && vm.contains("class=\"tile pass\"") && vm.contains("class=\"tile fail\""), "\(vm)")
            #expect(vm.contains("baseline: ") && vm.contains("grubx64.efi changed"), "the failed tile says what changed")
            // Commands in recommendations are code to copy (selected whole with one click).
            #expect(vm.contains("<code class=\"command\">tlaunch alert list --vm \(SampleFleet.tampered)</code>"), "\(vm)")

            let page = try await Self.dom(browser, p, "/alerts/\(alert.id)", screenshot: "dashboard-alert.png")
            let e = try #require(alert.evidence.first)
            let from = try #require(e.from), to = try #require(e.to)
            #expect(page.contains("id=\"evidence\"") && page.contains(to) && page.contains(from))
            #expect(
                page.contains("grubx64.efi")
                    && page.contains("<code class=\"command\">tlaunch vm baseline approve \(SampleFleet.tampered)</code>"))
            #expect(page.contains("<code class=\"command\">tlaunch vm stop \(SampleFleet.tampered)</code>") && !page.contains("`"),
                    "no backtick left as text")
            #expect(FileManager.default.fileExists(atPath: artifacts.appendingPathComponent("dashboard-alert.png").path))

            let deploy = try await Self.dom(browser, p, "/deploy")
            #expect(deploy.contains("value=\"TrustedLaunch\" checked") && deploy.contains("name=\"secureBoot\" checked"))

            // Not signed in: sent to the sign-in page; a bad token is refused.
            let (s, _) = try await ServiceClient.pinned(baseURL: p.server.url, token: nil, tls: p.tls).send("GET", "/", step: "t")
            #expect(s == 200 || s == 303)
            let (status, out, _) = try await Interop.run(browser,
                                                         ["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", "\(p.server.url)/"])
            #expect(
                status == 0 && out.contains("Sign in") && !out.contains("id=\"fleet\"") && !out.contains("Sign out")
                    && !out.contains("id=\"who\""))
        }
    }

    @Test func theDeployFormDeploysAndReportsRefusals() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            let csrf = try await p.csrf(cookie: "tlaunch_session=\(p.admin)")
            func post(_ path: String, _ form: String) async throws -> (Int, String, String?) {
                var r = URLRequest(url: URL(string: p.server.url + path)!)
                r.httpMethod = "POST"
                r.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
                r.setValue("tlaunch_session=\(p.admin)", forHTTPHeaderField: "Cookie")
                r.httpBody = Data((form + "&csrf=" + csrf).utf8)
                r.timeoutInterval = 600
                let session = URLSession(configuration: .ephemeral, delegate: NoRedirect(), delegateQueue: nil)
                let (data, response) = try await session.data(for: r)
                let h = response as! HTTPURLResponse
                return (h.statusCode, String(decoding: data, as: UTF8.self), h.value(forHTTPHeaderField: "Location"))
            }
            var (s, body, location) = try await post(
                "/deploy", "name=form-vm&image=sample-linux&securityType=TrustedLaunch&secureBoot=on&vTpm=on&integrityMonitoring=on")
            // Redirected to the new VM's page (FoundationNetworking may follow the 303 itself).
            #expect((s == 303 && location == "/vms/form-vm") || (s == 200 && body.contains("<h1>form-vm</h1>")), "\(s) \(location ?? "-")")
            let vm = try await p.fleet.require("form-vm")
            #expect(vm.securityType == .trustedLaunch && vm.secureBoot && vm.vTPM && vm.integrityMonitoring && vm.bootIntegrity == .healthy)
            (s, body, _) = try await post("/deploy", "name=form-old&image=legacy-bios&securityType=TrustedLaunch&secureBoot=on&vTpm=on")
            #expect(s == 400 && body.contains("id=\"error\"") && body.contains("--security-type Standard"))
            (s, body, _) = try await post("/deploy", "name=form-vm&image=sample-linux&securityType=Standard")
            #expect(s == 409 && body.contains("exists"))
            #expect(try await p.fleet.store.vmCount() == 1)
            // A reader cannot deploy from the form.
            let reader = try await AttestationService.createAPIToken(store: p.service.store, role: .reader, vm: nil)
            var r = URLRequest(url: URL(string: p.server.url + "/deploy")!)
            r.httpMethod = "POST"
            r.setValue("tlaunch_session=\(reader)", forHTTPHeaderField: "Cookie")
            r.httpBody = Data("name=x".utf8)
            r.timeoutInterval = 600
            let (_, response) = try await URLSession.shared.data(for: r)
            #expect((response as? HTTPURLResponse)?.statusCode == 403)
            // Each page says who is signed in.
            var g = URLRequest(url: URL(string: p.server.url + "/")!)
            g.setValue("tlaunch_session=\(reader)", forHTTPHeaderField: "Cookie")
            g.timeoutInterval = 600
            let (fleetPage, _) = try await URLSession.shared.data(for: g)
            #expect(String(decoding: fleetPage, as: UTF8.self).contains("Signed in with a reader token"))
        }
    }
}

final class NoRedirect: NSObject, URLSessionTaskDelegate, Sendable {
    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest) async -> URLRequest? { nil }
}

@Suite("The command line: tlaunch vm/image/alert against the server, and tlaunch demo")
struct CommandLineTests {
    @Test func vmCommandsPrintTheOverviewAndRefuseBadInputWithAClearMessage() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            let env = ["TLAUNCH_SERVER": p.server.url, "TLAUNCH_TOKEN": p.admin]
            func run(_ args: [String]) async throws -> (Int32, String,
                                                        String) { try await Interop.run(tlaunchPath, args, environment: env) }

            var (status, out, err) = try await run(["vm", "create", "cli-vm", "--integrity-monitoring", "true"])
            #expect(status == 0, "\(err)")
            for line in ["Security type         Trusted launch", "Secure Boot           Enabled", "vTPM                  Enabled",
                         "Integrity monitoring  Enabled",
                "Boot integrity        Healthy (last attestation", "TPM 2.0                   Met",
                "DMA protection            Not applicable"
            ] {
                #expect(out.contains(line), "missing: \(line)\n\(out)\n\(err)")
            }
            (status, out, err) = try await run(["vm", "list", "--json"])
            #expect(status == 0)
            let list = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]])
            #expect(list.count == 1 && (list[0]["securityProfile"] as? [String: Any])?["securityType"] as? String == "TrustedLaunch")
            (status, out, err) = try await run(["vm", "list"])
            #expect(status == 0 && out.contains("NAME") && out.contains("cli-vm") && out.contains("Healthy"))
            // az's output formats: -o json is --json; -o tsv is one tab-separated line per VM, no header.
            (status, out, err) = try await run(["vm", "list", "-o", "json"])
            #expect(status == 0 && (try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]])?.count == 1)
            (status, out, err) = try await run(["vm", "list", "-o", "tsv"])
            let fields = out.trimmingCharacters(in: .newlines).split(separator: "\t", omittingEmptySubsequences: false)
            #expect(status == 0 && !out.contains("NAME") && fields.first == "cli-vm" && fields.count == 9 && fields.contains("Healthy"),
                    "\(out)")
            (status, out, err) = try await run(["image", "list", "--output", "tsv"])
            #expect(
                status == 0 && out.split(separator: "\n").allSatisfy { $0.split(separator: "\t").count == 4 }
                    && out.contains("sample-linux\t"), "\(out)")
            (status, _, err) = try await run(["vm", "show", "cli-vm", "-o", "tsv"])
            #expect(status != 0 && err.contains("tsv is for lists"), "\(err)")
            (status, _, err) = try await run(["vm", "list", "--json", "-o", "table"])
            #expect(status != 0 && err.contains("disagree"), "\(err)")

            // Refusals: non-zero exit, the server's message on stderr, nothing created.
            let bad: [([String], String)] = [
                (["vm", "create", "x", "--image", "legacy-bios"], "--security-type Standard"),
                (["vm", "create", "x", "--security-type", "Standard", "--secure-boot", "true"], "only for TrustedLaunch"),
                (["vm", "create", "x", "--secure-boot", "maybe"], "takes true or false"),
                (["vm", "create", "cli-vm"], "exists"),
                (["vm", "show", "nosuch"], "no VM named nosuch"),
                (["vm", "update", "cli-vm", "--security-type", "Standard"], "cannot be changed after deployment"),
                (["vm", "update", "cli-vm"], "nothing to change"),
                (["vm", "start", "cli-vm"], "already running"),
                (["alert", "show", "alert-nosuch"], "no alert"),
                (["image", "show", "nosuch"], "no image named nosuch"),
                (["vm", "disk", "put", "cli-vm", "/EFI/x", "/nonexistent/file"], "cannot read"),
            ]
            for (args, words) in bad {
                let (s, o, e) = try await run(args)
                #expect(s != 0 && (e + o).contains(words), "\(args): \(s) \(e)")
            }
            #expect(try await p.fleet.store.vmCount() == 1)
            let (s401, _, e401) = try await Interop.run(tlaunchPath, ["vm", "list"],
                                                        environment: ["TLAUNCH_SERVER": p.server.url, "TLAUNCH_TOKEN": "tlt_wrong"])
            #expect(s401 != 0 && e401.contains("not valid"))

            // A boot loader replaced through the CLI, the alert shown, approved.
            let file = p.dir.appendingPathComponent("grub-2.06.efi")
            try Data(try SampleFleetGrub.make(p.folder.secureBootKeys)).write(to: file)
            (status, out, err) = try await run(["vm", "disk", "put", "cli-vm", "/EFI/BOOT/grubx64.efi", file.path])
            #expect(status == 0, "\(err)")
            (status, out, err) = try await run(["vm", "restart", "cli-vm"])
            #expect(status == 0 && out.contains("boot integrity Unhealthy") && out.contains("alert "), "\(out)\(err)")
            let id = try #require(try await p.fleet.store.alerts(vm: "cli-vm", status: .active).first?.id)
            (status, out, err) = try await run(["alert", "show", id])
            #expect(
                status == 0 && out.contains("[boot-loader]") && out.contains("grubx64.efi")
                    && out.contains("tlaunch vm baseline approve cli-vm"))
            (status, out, err) = try await run(["vm", "baseline", "approve", "cli-vm"])
            #expect(status == 0 && out.contains("Boot integrity: Healthy; active alerts: 0"), "\(out)\(err)")
            (status, out, _) = try await run(["vm", "baseline", "show", "cli-vm"])
            #expect(status == 0 && out.contains("approved"))
            (status, out, _) = try await run(["vm", "guest", "cli-vm"])
            #expect(status == 0 && out.contains("Secure Boot State:     On") && out.contains("replays to the TPM's PCRs"))
            (status, out, _) = try await run(["image", "show", "sample-linux"])
            #expect(status == 0 && out.contains("Generation 2") && out.contains("verified by db") && out.contains("Signers:"))
            (status, out, _) = try await run(["vm", "delete", "cli-vm"])
            #expect(status == 0 && out.contains("destroyed"))

            // az's spelling of the settings is accepted beside ours.
            (status, out, err) = try await run(["vm", "create", "az-vm", "--enable-secure-boot", "false", "--enable-vtpm", "true",
                                                "--enable-integrity-monitoring", "true"])
            #expect(status == 0 && out.contains("Secure Boot           Disabled") && out.contains("Integrity monitoring  Enabled"),
                    "\(out)\(err)")
            // On a terminal, delete asks first (its vTPM's keys go for good): "n" keeps the VM, "y" deletes it.
            func onTerminal(_ answer: String) async throws -> (Int32, String) {
                let (s, o, e) = try await Interop.run(
                    "/bin/sh", ["-c", "printf '\(answer)\\n' | script -qec '\(tlaunchPath) vm delete az-vm' /dev/null"], environment: env)
                return (s, o + e)
            }
            let kept = try await onTerminal("n")
            #expect(kept.1.contains("[y/N]") && kept.1.contains("Not deleted"), "\(kept)")
            #expect(try await p.fleet.store.vm("az-vm") != nil)
            let gone = try await onTerminal("y")
            #expect(gone.1.contains("destroyed"), "\(gone)")
            #expect(try await p.fleet.store.vm("az-vm") == nil)
        }
    }

    @Test func agentStatusInAGuestShowsSecureBootTheTPMAndTheMeasuredBootLog() async throws {
        guard let sw = try await Interop.swtpm() else { return }
        defer { sw.stop(); sw.removeState() }
        // A guest: swtpm as its TPM, the virtual firmware's sample-linux boot extended into it.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-guest-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let keys = try PlatformKeys.loadOrCreate(directory: dir.appendingPathComponent("keys"))
        let (esp, vars) = try SampleImages.sampleLinux(keys: keys)
        let report = try VirtualFirmware(settings: FirmwareSettings(variables: vars)).predict(esp: esp)
        let client = try TPMClient(tcti: sw.tcti)
        for e in report.log.events where e.type != .noAction {
            try await client.pcrExtend(Int(e.pcrIndex), digests: e.digests.map { TPMTHA(hashAlg: $0.algorithm, digest: Array($0.digest)) })
        }
        await client.close()
        let log = dir.appendingPathComponent("binary_bios_measurements")
        try Data(try report.log.encoded()).write(to: log)
        let args = ["agent", "status", "--tcti", sw.tcti, "--eventlog", log.path, "--vm", "guest-1", "--server", "http://127.0.0.1:1",
                    "--token", "x"]
        var (status, out, err) = try await Interop.run(tlaunchPath, args)
        #expect(status == 0, "\(err)")
        for line in ["Secure Boot State:     On", "TPM 2.0:               present — 2.0", "PCR banks:             sha1, sha256",
            "Measured boot log:     present, \(report.log.events.count) events, replays to the TPM's PCRs", "Last attestation:      none ("
        ] {
            #expect(out.contains(line), "missing: \(line)\n\(out)")
        }
        // A log that is not this TPM's boot: present, but it does not replay.
        let other = try VirtualFirmware(settings: FirmwareSettings(secureBoot: false, variables: vars)).predict(esp: esp)
        try Data(try other.log.encoded()).write(to: log)
        (status, out, err) = try await Interop.run(tlaunchPath, args)
        #expect(status == 0 && out.contains("DOES NOT replay to the TPM's PCRs"), "\(out)\(err)")
        // No TPM: reported, exit 1.
        (status, out, _) = try await Interop.run(
            tlaunchPath,
            [
                "agent", "status", "--tcti", "swtpm:host=127.0.0.1,port=1", "--eventlog", log.path, "--vm", "g", "--server",
                "http://127.0.0.1:1", "--token", "x"
            ])
        #expect(status != 0 && out.contains("TPM 2.0:               not present"))
    }

    @Test func upDeploysTheSampleFleetOnceAndResumesItAfterARestart() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-up-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: dir) }
        let port = try SwtpmProcess.freePortPair()
        /// Starts `tlaunch up`, waits for "Ready", runs `body` (given the platform's output so far),
        /// stops it with SIGINT; the output.
        func up(_ body: (_ log: String) async throws -> Void) async throws -> (Int32, String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: tlaunchPath)
            p.arguments = ["up", "--data", dir.path, "--listen", "127.0.0.1:\(port)", "--log-level", "error", "--hypervisor", "simulated"]
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("up-\(UUID().uuidString.prefix(8)).log")
            _ = FileManager.default.createFile(atPath: out.path, contents: nil)
            p.standardOutput = try FileHandle(forWritingTo: out)
            p.standardError = p.standardOutput
            try p.run()
            defer { try? FileManager.default.removeItem(at: out) }
            var text = ""
            for _ in 0..<1200 where !text.contains("==> Ready") && p.isRunning {
                try await Task.sleep(for: .milliseconds(250))
                text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
            }
            #expect(text.contains("==> Ready"), "\(text)")
            try await body(text)
            kill(p.processIdentifier, SIGINT)
            for _ in 0..<1200 where p.isRunning { try await Task.sleep(for: .milliseconds(100)) }   // up to 2 minutes under load
            if p.isRunning { p.terminate() }
            p.waitUntilExit()
            return (p.terminationStatus, (try? String(contentsOf: out, encoding: .utf8)) ?? "")
        }
        // No server URL, CA or token given: the CLI finds all three in the data folder (server.url,
        // tls/ca.pem, admin.token) and speaks HTTPS pinned to the platform's CA.
        let env = ["TLAUNCH_SERVER": "", "TLAUNCH_CA": "", "TLAUNCH_DATA": dir.path, "TLAUNCH_TOKEN": ""]
        var (status, out) = try await up { log in
            let (s, list, err) = try await Interop.run(tlaunchPath, ["vm", "list", "--json", "--data", dir.path], environment: env)
            #expect(s == 0, "\(err)")
            let vms = try #require(try JSONSerialization.jsonObject(with: Data(list.utf8)) as? [[String: Any]])
            let integrity = Dictionary(
                uniqueKeysWithValues: vms.map {
                    ($0["name"] as! String, ($0["integrityMonitoring"] as! [String: Any])["bootIntegrity"] as! String)
                })
            #expect(integrity == [SampleFleet.healthy: "Healthy", SampleFleet.tampered: "Unhealthy", SampleFleet.standard: "NotMonitored"],
                    "tlaunch up said: \(log.suffix(3000))")
            let (s2, alerts, err2) = try await Interop.run(tlaunchPath, ["alert", "list", "--data", dir.path], environment: env)
            #expect(s2 == 0 && alerts.contains("Boot loader changed") && alerts.contains(SampleFleet.tampered), "\(alerts)\(err2)")
        }
        #expect(status == 0, "\(out)")
        #expect(
            out.contains("First start: deploying the sample fleet") && out.contains("building image sample-linux")
                && out.contains("Dashboard: https://127.0.0.1:\(port)/login?code=") && !out.contains("login?token="))
        // The second start deploys nothing new and boots the running VMs again (new boots, attested).
        (status, out) = try await up { _ in
            let (s, list, _) = try await Interop.run(tlaunchPath, ["vm", "show", SampleFleet.healthy, "--json", "--data", dir.path],
                                                     environment: env)
            let vm = try #require(try JSONSerialization.jsonObject(with: Data(list.utf8)) as? [String: Any])
            #expect(
                s == 0 && vm["bootCount"] as? Int == 2
                    && (vm["integrityMonitoring"] as? [String: Any])?["bootIntegrity"] as? String == "Healthy")
        }
        #expect(status == 0 && out.contains("Resuming the fleet") && !out.contains("First start"), "\(out)")
    }

    @Test func demoPrintsTheOverviewsAndTheAlert() async throws {
        let (status, out, err) = try await Interop.run(tlaunchPath, ["demo"])
        #expect(status == 0, "\(err.suffix(800))")
        for line in ["Generation 1 (BIOS) only, and Trusted Launch needs a Generation 2 (UEFI) image",
                     "cannot be changed after deployment",
                     "Boot integrity        Healthy",
                     "[High] Boot loader changed",
                     "[boot-loader] boot loader \\EFI\\BOOT\\grubx64.efi (PCR 4) changed from sha256:",
                     "tlaunch vm baseline approve app-02",
                     "Boot integrity        Unhealthy",
                     "alert is resolved",
                     "Secure Boot State:     On",
                     "\"securityType\" : \"TrustedLaunch\"",
                     "==> Done"] {
            #expect(out.contains(line), "missing: \(line)")
        }
        // Where real VMs run, the demo ends with one: its own agent's lines and status.
        if Interop.required || out.contains("tlaunch vm create real-01") {
            for line in ["tlaunch vm create real-01 --image debian-12 --hypervisor qemu", "Secure Boot enforced; boot integrity Healthy",
                         "tlaunch-agent: Attestation PASSED for real-01", "what the agent inside the real guest reported of itself"] {
                #expect(out.contains(line), "missing: \(line) — \(out.suffix(1500))")
            }
            #expect(out.components(separatedBy: "Secure Boot State:     On").count == 3,
                    "the simulated guest's status and the real guest's")
        }
        #expect(!out.contains("a bug"))
    }
}
