import Attestation
import AttestationAPI
import Crypto
import Fleet
import Foundation
import Hummingbird

/// The dashboard: server-rendered HTML on the API's port, readable without JavaScript — the
/// fleet with its security columns, each VM's overview and attestation timeline, the alerts with
/// their evidence and recommendations, the images, and a deploy form with Trusted Launch chosen.
/// Signing in stores an API token in an HttpOnly, SameSite=Strict cookie.
enum Dashboard {
    static let cookie = "tlaunch_session"

    /// The session cookie: HttpOnly, SameSite=Strict, for the session's 12 hours.
    /// Over HTTPS it is also `Secure`: the browser never sends it over plain HTTP.
    static func sessionCookie(_ session: String, secure: Bool) -> String { "\(cookie)=\(session); HttpOnly; SameSite=Strict; Path=/; "
                                                                         + "Max-Age=43200" + (secure ? "; Secure" : "") }

    /// The platform's storage problem while a page renders (set by `StorageBannerMiddleware`).
    @TaskLocal static var storageProblem: String?

    /// The CSRF token of the page being rendered (set by `CSRFMiddleware` for a browser session).
    @TaskLocal static var csrf: String?
    /// The role of the session the page is rendered for (admin or reader); nil: not signed in.
    @TaskLocal static var signedInRole: String?

    /// A session's CSRF token: a hash of the session token (secret, HttpOnly), so any instance
    /// derives it and nothing else can; it reveals nothing of the session.
    static func csrfToken(for session: String) -> String {
        let digest = SHA256.hash(data: Data("tlaunch-csrf-v1:\(session)".utf8))
        return Data(digest).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// The largest form the dashboard reads.
    static let formLimit = 64 << 10

    /// Reads a form body (at most `formLimit` bytes, else 413) into `request`, which keeps it for
    /// whoever reads it next, and parses it.
    static func readForm(_ request: inout Request) async throws -> [String: String] {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > formLimit {
            throw APIError(.contentTooLarge, "the form is \(length) bytes; the limit is \(formLimit)")
        }
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: formLimit) } catch {
            throw APIError(.contentTooLarge, "the form exceeds \(formLimit) bytes")
        }
        return form(String(buffer: buffer))
    }

    /// Adds the CSRF token to every POST form of `html`.
    static func withCSRF(_ html: String, _ token: String?) -> String {
        guard let token else { return html }
        let field = "<input type=\"hidden\" name=\"csrf\" value=\"\(HTML.escape(token))\">"
        var out = ""
        var rest = Substring(html)
        while let start = rest.range(of: "<form ") {
            guard let end = rest[start.upperBound...].firstIndex(of: ">") else { break }
            let tag = rest[start.lowerBound...end]
            out += rest[..<rest.index(after: end)] + (tag.contains("method=\"post\"") ? field : "")
            rest = rest[rest.index(after: end)...]
        }
        return out + rest
    }

    static func sessionToken(_ request: Request) -> String? {
        request.headers[.cookie].flatMap { FormBody.cookie($0, name: cookie) }
    }

    static func form(_ body: String) -> [String: String] { FormBody.parse(body) }

    /// The VM's recent attestations as a strip, oldest to newest: a tile per attestation (passed,
    /// failed, or waiting for a baseline), a mark where the VM rebooted, the first failed check or
    /// the baseline change in each tile's title. Plain HTML and CSS (the pages carry no script).
    static func bootStrip(_ attestations: [AttestationOutcome]) -> HTML {
        guard !attestations.isEmpty else { return "" }
        let tiles = attestations.sorted { $0.time < $1.time }.map { a -> HTML in
            let state = a.passed ? "pass" : (a.baseline == .pending ? "pending" : "fail")
            let failed = a.checks.first { !$0.passed }
            let why = a.passed ? (a.baseline == .learned ? "passed; baseline learned" : "passed")
                : failed.map { "\($0.name.rawValue): \($0.reason)" } ?? "did not pass"
            let change = a.changes.first.map { " — \($0.kind) \($0.name) \($0.change.rawValue)" } ?? ""
            let boot: HTML = a.rebooted == true ? "<span class=\"boot\">reboot</span>" : ""
            let time = a.time.count >= 19 ? String(a.time.dropFirst(11).prefix(8)) : a.time
            let mark: HTML = a.passed ? "✓" : (state == "pending" ? "…" : "✗")
            let check: HTML = a.passed ? "" : "<small>\(text: failed?.name.rawValue ?? "")</small>"
            return boot + "<span class=\"tile \(text: state)\" "
                        + "title=\"\(text: "\(a.time): \(why)\(change)")\">\(mark)<small>\(text: time)</small>\(check)</span>"
        }
        return "<h2>Boots and attestations</h2><div id=\"bootstrip\" class=\"strip\" aria-label=\"attestations, oldest to newest\">"
            + tiles.joined()
            + "</div><p class=\"muted\">Oldest to newest; green passed, red failed (hover for the check that failed), amber waits for a "
            + "baseline.</p>"
    }

    /// A recommendation as HTML: escaped, with each `command` in backticks as code to copy.
    static func withCommands(_ text: String) -> HTML {
        let parts = text.split(separator: "`", omittingEmptySubsequences: false)
        guard parts.count >= 3, parts.count % 2 == 1 else { return "\(text: text)" }   // unpaired: as written
        return parts.enumerated().map { i, p -> HTML in
            i % 2 == 1 ? "<code class=\"command\">\(text: String(p))</code>" : "\(text: String(p))"
        }.joined()
    }

    /// How often a live page (the fleet, a VM, alerts) fetches itself again, in seconds.
    static let liveInterval = 5

    /// `refresh`: the page is current again after that many seconds (a VM being started, say) —
    /// a live page fetches itself that often; without JavaScript the browser reloads it.
    /// `live`: the page keeps its state current without reloading (`/static/live.js`: the same
    /// page fetched again every `liveInterval` seconds and its main part swapped in, unless a
    /// form on it is being filled in). Without JavaScript it is the same page, current when loaded.
    static func page(_ title: String, _ body: HTML, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:], refresh: Int? = nil,
                     live: Bool = false) -> Response {
        // A live page refreshes through its script; <meta refresh> only where scripts do not run.
        let reload: HTML? = refresh.map { (seconds: Int) -> HTML in
            let meta: HTML = "<meta http-equiv=\"refresh\" content=\"\(seconds)\">"
            return live ? "<noscript>\(meta)</noscript>" : meta
        }
        let script: HTML = live ? "<script src=\"/static/live.js\" defer></script>" : ""
        let who: HTML = signedInRole.map { (role: String) -> HTML in
            """
            <span id="who" style="margin-left:auto">Signed in with \(text: role == "admin" ? "an admin" : "a \(role)") token</span>\
            <form method="post" action="/logout"><button type="submit">Sign out</button></form>
            """
        } ?? "<a href=\"/login\" style=\"margin-left:auto\">Sign in</a>"
        let storage: HTML? = storageProblem.map { (problem: String) -> HTML in
            """
            <div class="error" id="storage"><b>The platform cannot keep its state:</b> \(text: problem). Changes fail until it can; \
            what is shown may be behind.</div>
            """
        }
        let html: HTML = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, \
        initial-scale=1">\(reload)\(script)
        <title>\(text: title) · TrustedLaunch</title>
        <style>
        body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1b1f24;background:#f6f8fa}
        header{background:#0f3a5f;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:center}
        header a{color:#fff;text-decoration:none;font-weight:600} header .brand{font-size:1.15em;margin-right:16px}
        main{padding:20px 24px;max-width:1300px}
        table{border-collapse:collapse;background:#fff;width:100%;margin:8px 0 20px}
        th,td{border:1px solid #d0d7de;padding:6px 10px;text-align:left;vertical-align:top;font-size:.93em}
        th{background:#eef2f6}
        .ok{color:#116329;font-weight:600} .bad{color:#b3261e;font-weight:600} .warn{color:#9a6700;font-weight:600} .muted{color:#57606a}
        .sev-High{background:#ffebe9} .sev-Medium{background:#fff8c5}
        code{background:#eef2f6;padding:1px 4px;border-radius:3px;word-break:break-all} code.command{user-select:all}
        form.inline{display:inline} button{margin:2px 4px 2px 0;padding:4px 10px}
        .card{background:#fff;border:1px solid #d0d7de;padding:12px 16px;margin:0 0 16px}
        .error{background:#ffebe9;border:1px solid #b3261e;padding:10px;margin:10px 0}
        .strip{display:flex;flex-wrap:wrap;gap:4px;align-items:center;margin:8px 0 4px}
        .tile{display:inline-flex;flex-direction:column;align-items:center;min-width:64px;padding:4px \
        6px;border-radius:4px;color:#fff;font-weight:700}
        .tile small{font-weight:400;font-size:.72em} .tile.pass{background:#1a7f37} .tile.fail{background:#b3261e} \
        .tile.pending{background:#9a6700}
        .boot{font-size:.75em;color:#57606a;border-left:3px solid #57606a;padding:10px 2px 10px 4px;margin-left:6px}
        #live{font-size:.8em;margin-left:16px;color:#c9d7e3}
        </style></head><body\(live ? " data-live=\"\(refresh ?? liveInterval)\"" : "")>
        <header><span class="brand">TrustedLaunch</span><a href="/">Fleet</a><a href="/alerts">Alerts</a><a href="/images">Images</a><a \
        href="/deploy">Deploy a \
        VM</a>\(who)</header>
        <main>\(storage)\(body)</main></body></html>
        """
        var h = headers
        h[.contentType] = "text/html; charset=utf-8"
        h[.cacheControl] = "no-store"
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(string: withCSRF(html.description, csrf))))
    }

    static func redirect(_ to: String, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.location] = to
        return Response(status: .seeOther, headers: h)
    }

    static func integrity(_ v: VMView) -> HTML {
        let b = v.integrityMonitoring.bootIntegrity
        let cls = b == .healthy ? "ok" : (b == .unhealthy ? "bad" : (b == .pending ? "warn" : "muted"))
        return "<span class=\"\(text: cls)\">\(text: b.display)</span>"
    }

    static func onOff(_ b: Bool) -> HTML { b ? "<span class=\"ok\">Enabled</span>" : "<span class=\"muted\">Disabled</span>" }
    static func securityType(_ s: String) -> HTML { s == "TrustedLaunch" ? "Trusted launch" : "Standard" }

    static func fleetTable(_ vms: [VMView]) -> HTML {
        var rows: HTML = ""
        for v in vms {
            let alerts: HTML =
                v.alerts.isEmpty
                ? "<span class=\"muted\">none</span>"
                : v.alerts.map { (a) -> HTML in "<a class=\"bad\" href=\"/alerts/\(text: a.id)\">\(text: a.severity): \(text: a.title)</a>"
                }.joined(separator: "<br>")
            rows += """
            <tr id="vm-\(text: v.name)"><td><a \
            href="/vms/\(text: v.name)">\(text: v.name)</a></td><td>\(text: v.powerState.rawValue)</td>\
            <td>\(securityType(v.securityProfile.securityType))</td>
            <td>\(onOff(v.securityProfile.uefiSettings.secureBootEnabled))</td><td>\(onOff(v.securityProfile.uefiSettings.vTpmEnabled))</td>
            <td>\(onOff(v.integrityMonitoring.enabled))</td><td>\(integrity(v))</td>\
            <td>\(text: v.integrityMonitoring.lastAttestation ?? "-")</td>
            <td>\(text: v.image)</td><td>\(alerts)</td><td>\(text: v.host ?? "-")</td></tr>
            """
        }
        return """
        <table id="fleet"><thead><tr><th>Name</th><th>Power state</th><th>Security type</th><th>Secure Boot</th><th>vTPM</th><th>Integrity \
        monitoring</th>
        <th>Boot integrity</th><th>Last attestation</th><th>Image</th><th>Active \
        alerts</th><th>Host</th></tr></thead><tbody>\(rows)</tbody></table>
        """
    }

    /// Only what applies to the VM now: Start when it is off, Restart and Stop while it runs,
    /// nothing while its host does not answer; Delete always (Stop and Delete ask first).
    static func lifecycleButtons(_ v: VMView) -> HTML {
        var b: HTML = ""
        switch v.powerState {
        case .running:
            b = "<button name=\"action\" value=\"restart\">Restart</button><button name=\"action\" value=\"stop\">Stop…</button>"
        case .unknown:
            b = "<span class=\"warn\">Its host does not answer: nothing can be done to it until it does.</span> "
        default:
            b = "<button name=\"action\" value=\"start\">Start</button>"
        }
        return b + "<button name=\"action\" value=\"delete\">Delete…</button>"
    }

    /// The page that asks before a Stop or Delete (no script needed): the same form again, confirmed.
    static func confirmation(_ vm: String, action: String) -> Response {
        let what: HTML = action == "delete"
            ? "Delete \(text: vm)? Its disk and its vTPM — keys, sealed secrets, EK — are destroyed for good."
            : "Stop \(text: vm)? Its guest is powered off; its vTPM state is kept for the next start."
        return page("Confirm", """
            <h1>\(action == "delete" ? "Delete" : "Stop") \(text: vm)</h1><div class="card"><p>\(what)</p>
            <form class="inline" method="post" action="/vms/\(text: vm)/action"><input type="hidden" name="action" \
            value="\(text: action)"><input type="hidden" name="confirm" value="yes">
            <button type="submit" id="confirm">\(action == "delete" ? "Delete" : "Stop") \(text: vm)</button></form> <a \
            href="/vms/\(text: vm)">Cancel</a></div>
            """)
    }

    /// The libvirt hosts: state (since when), capacity, VMs.
    static func hostTable(_ hosts: [HostView]) -> HTML {
        guard !hosts.isEmpty else { return "" }
        let rows = hosts.map { v -> HTML in
            """
                <tr id=\"host-\(text: v.host.name)\"><td>\(text: v.host.name)</td><td \
                class=\"\(v.host.state == .reachable ? "ok" : "bad")\">\(text: v.host.state.rawValue)</td>\
                <td>\(text: Time.rfc3339(v.host.since))</td><td><code>\(text: v.host.uri)</code></td><td>\(text: v.host.tpm)</td>\
                <td>\(v.host.cpus)</td><td>\(v.host.memoryMiB) \
                MiB</td><td>\(v.vms.count) (\(v.free) free)</td><td>\(text: v.host.detail)</td></tr>
                """
        }.joined()
        return """
            <h2>Hosts</h2><table \
            id=\"hosts\"><thead><tr><th>Host</th><th>State</th><th>Since</th><th>URI</th><th>vTPM</th><th>CPUs</th><th>Memory</th>\
            <th>VMs</th><th>Detail</th></tr></thead><tbody>\(rows)</tbody></table>
            """
    }

    /// Where a sign-in may go on to: one of the dashboard's own pages, by a path made of the
    /// characters its names use — nothing that a browser could read as another host ("//h",
    /// "/\\h", "/%09/h", "/\t/h"), no query, no scheme.
    static func safeNext(_ next: String?) -> String {
        guard let next, next.utf8.count <= 200 else { return "/" }
        // The fleet with a filter (a shared link): "/?" and a query of plain characters only.
        if next.hasPrefix("/?"), next.dropFirst(2).allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "=&%._~-+".contains($0)) }) {
            return next
        }
        let parts = next.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let name = { (s: String) in
            !s.isEmpty && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") } && s != "."
                && s != ".."
        }
        guard parts.count >= 2, parts[0].isEmpty else { return "/" }
        switch (parts.count, parts[1]) {
        case (2, ""), (2, "alerts"), (2, "images"), (2, "deploy"): return next
        case (3, "vms"), (3, "alerts"), (3, "images"): return name(parts[2]) ? next : "/"
        default: return "/"
        }
    }

    /// The script of live pages (see `page(live:)`): plain DOM, no library. The page is fetched
    /// again as the browser shows it (same URL, filters and all, the session's cookie); its
    /// `<main>` is swapped in — server-rendered and escaped like the first load, parsed inert by
    /// DOMParser — unless a form field there has focus or differs from what the server sent (a
    /// search being typed, a choice made). Signed out or failing, it says so in the header and
    /// the page stays as it was.
    static let liveScript = """
    "use strict";
    (function () {
      var seconds = parseInt(document.body.getAttribute("data-live"), 10);
      var main = document.querySelector("main");
      if (!(seconds > 0) || !main) return;
      var status = document.createElement("span");
      status.id = "live";
      var header = document.querySelector("header");
      if (header) header.appendChild(status);
      function say(text) { status.textContent = text; }
      function editing() {
        var a = document.activeElement;
        if (a && main.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName)) return true;
        var fields = main.querySelectorAll("input, select, textarea");
        for (var i = 0; i < fields.length; i++) {
          var f = fields[i];
          if (f.type === "hidden") continue;
          if (f.tagName === "SELECT") {
            // As sent: the option marked selected, else the first one.
            var sent = 0;
            for (var j = 0; j < f.options.length; j++) if (f.options[j].defaultSelected) sent = j;
            if (f.options.length && f.selectedIndex !== sent) return true;
          } else if (f.type === "checkbox" || f.type === "radio") {
            if (f.checked !== f.defaultChecked) return true;
          } else if (f.value !== f.defaultValue) return true;
        }
        return false;
      }
      var timer;
      function later() { clearTimeout(timer); timer = setTimeout(refresh, seconds * 1000); }
      function refresh() {
        if (document.hidden || editing()) { later(); return; }
        fetch(location.href, { credentials: "same-origin", cache: "no-store", redirect: "manual", headers: { "Accept": "text/html" } })
          .then(function (r) {
            if (r.type === "opaqueredirect") throw new Error("signed out: sign in again");
            if (r.status !== 200) throw new Error("the platform answered " + r.status);
            return r.text();
          })
          .then(function (html) {
            var doc = new DOMParser().parseFromString(html, "text/html");
            var fresh = doc.querySelector("main");
            if (!fresh) throw new Error("the answer was not a page");
            if (!editing()) {
              main.innerHTML = fresh.innerHTML;
              document.title = doc.title;
            }
            say("Live · updated " + new Date().toLocaleTimeString());
            later();
          })
          .catch(function (e) {
            say("Not updating (" + e.message + ")");
            if (e.message.indexOf("signed out") !== 0) later();
          });
      }
      say("Live · every " + seconds + " s");
      later();
    })();
    """

    static func addRoutes(_ router: Router<ServiceContext>, fleet: Fleet, secure: Bool = false) {
        router.get("/static/live.js") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/javascript; charset=utf-8", .cacheControl: "no-cache"],
                     body: .init(byteBuffer: ByteBuffer(string: liveScript)))
        }
        /// Dashboard pages need a signed-in admin or reader; others are sent to sign in.
        @Sendable func signedIn(_ context: ServiceContext, admin: Bool = false) -> Response? {
            guard let c = context.caller else { return redirect("/login") }
            if c.role == .agent || c.role == .signin || (admin && c.role != .admin) {
                return page("Not allowed", "<div class=\"error\">A \(text: c.role.rawValue) token cannot "
                                         + "\(admin ? "change the fleet" : "read the dashboard"). <a href=\"/login\">Sign in</a> with an "
                                         + "admin token.</div>", status: .forbidden)
            }
            return nil
        }
        @Sendable func formBody(_ request: Request) async throws -> [String: String] {
            var r = request
            return try await readForm(&r)
        }

        router.get("/login") { request, _ -> Response in
            let next = safeNext(request.uri.queryParameters.get("next").map({ String($0) }))
            func tokenLike(_ s: String) -> Bool { s.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" } }
            // A one-time code (what `tlaunch up` prints): exchanged once for a session.
            if let code = request.uri.queryParameters.get("code").map({ String($0) }) {
                guard tokenLike(code), let session = try await fleet.service.exchangeSignInCode(code) else {
                    return page("Sign in", "<div class=\"error\">That sign-in link has expired or was used already: print a new one "
                                         + "(tlaunch up prints one at start), or sign in with a token.</div><p><a href=\"/login\">Sign "
                                         + "in</a></p>", status: .unauthorized)
                }
                return redirect(next, headers: [.setCookie: sessionCookie(session, secure: secure)])
            }
            if let token = request.uri.queryParameters.get("token").map({ String($0) }) {
                // A session only for a token that is one (an unchecked one would fix the session).
                guard tokenLike(token), let session = try await fleet.service.startSession(for: token) else {
                    return page("Sign in", "<div class=\"error\">That sign-in link's token is not valid.</div><p><a href=\"/login\">Sign "
                                         + "in</a></p>", status: .unauthorized)
                }
                return redirect(next, headers: [.setCookie: sessionCookie(session, secure: secure)])
            }
            return page("Sign in", """
            <h1>Sign in</h1><form method="post" action="/login"><p><label>API token (admin or reader; <code>tlaunch token create --role \
            reader</code>, or the admin token in the data folder)<br>
            <input name="token" type="password" size="70" required></label></p><button type="submit">Sign in</button></form>
            """)
        }
        router.post("/login") { request, _ -> Response in
            let f = try await formBody(request)
            guard let token = f["token"], !token.isEmpty, token.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }),
                  let session = try await fleet.service.startSession(for: token) else {
                return page("Sign in", "<div class=\"error\">That token is not valid (an admin or reader token).</div><p><a "
                                     + "href=\"/login\">Try again</a></p>", status: .unauthorized)
            }
            return redirect("/", headers: [.setCookie: sessionCookie(session, secure: secure)])
        }
        router.post("/logout") { request, _ -> Response in
            // The session's token is revoked: the cookie is worth nothing even if it was copied.
            if let token = sessionToken(request) { try await fleet.service.endSession(token) }
            return redirect("/login",
                            headers: [.setCookie: "\(cookie)=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0" + (secure ? "; Secure" : "")])
        }

        router.get("/") { request, context -> Response in
            if let r = signedIn(context) { return r }
            let pageSize = 200
            let query = request.uri.queryParameters
            let after = query.get("after").map { String($0) }
            func value(_ name: String) -> String? { query.get(name).map { String($0) } }
            let filter = FleetFilter(text: value("q"), power: value("power"), integrity: value("integrity"), security: value("security"))
            // Filtered before paging: a page holds the next VMs that match, not the matches among the next VMs.
            let slice: [VMView], matches: Int?
            if filter.isEmpty {
                slice = try await fleet.list(after: after, limit: pageSize + 1); matches = nil
            } else {
                let all = try await fleet.list().filter(filter.matches).sorted { $0.name < $1.name }
                slice = Array(all.drop { after != nil && $0.name <= after! }.prefix(pageSize + 1)); matches = all.count
            }
            let shown = Array(slice.prefix(pageSize)), more = slice.count > pageSize
            let active = try await fleet.alerts(status: .active, limit: 10000)
            let total = try await fleet.vmCount()
            let count: HTML = matches.map { "<span id=\"matches\">\($0) of \(total) VMs match</span>" } ?? "\(total) VMs"
            let summary: HTML = "<p>\(count) · <a href=\"/alerts\" class=\"\(active.isEmpty ? "ok" : "bad")\">\(active.count) active "
                              + "alert\(active.count == 1 ? "" : "s")</a>"
                + (after == nil ? "" : " · <a href=\"/\(text: filter.query(after: nil))\">first page</a>") + "</p>"
            let next: HTML = more ? "<p><a id=\"next\" href=\"/\(text: filter.query(after: shown.last?.name))\">Next \(pageSize) "
                                  + "VMs</a></p>" : ""
            let hosts = hostTable((try? await fleet.hostViews()) ?? [])
            return page("Fleet", "<h1>Fleet</h1>\(filter.form)\(summary)\(fleetTable(shown))\(next)\(hosts)<p><a href=\"/deploy\">Deploy "
                               + "a VM</a> · API: <code>/v1/vms</code> · <a href=\"/openapi.json\">OpenAPI</a></p>",
                        live: true)
        }

        router.get("/vms/{vm}") { _, context -> Response in
            if let r = signedIn(context) { return r }
            let name = try context.parameters.require("vm")
            let o: VMOverview
            do { o = try await fleet.overview(name) } catch let e as FleetError {
                return page("Not found", "<div class=\"error\">\(text: e.message)</div>", status: .init(code: e.kind.status))
            }
            let v = o.vm
            var body: HTML = "<h1>\(text: v.name)</h1>"
            // What the platform is doing to it now (the page refreshes itself until it is done), or did last.
            let activity = try? await fleet.activity(name)
            if let a = activity, !a.steps.isEmpty {
                let steps = "<ol id=\"activity\">" + a.steps.map { "<li><span class=\"muted\">\(text: $0.time)</span> "
                                                                 + "\(text: $0.message)</li>" }.joined() + "</ol>"
                body += a.busy
                    ? "<div class=\"card\"><h2>In progress: \(text: a.operation ?? "operation")</h2>\(steps)</div>"
                    : "<details><summary>Last \(text: a.operation ?? "operation"): "
                    + "\(text: a.steps.last?.message ?? "")</summary>\(steps)</details>"
            }
            let monitoring = v.integrityMonitoring.enabled
            let lastAttestation: HTML = v.integrityMonitoring.lastAttestation.map { (time: String) -> HTML in
                " — last attestation \(text: time)"
            } ?? ""
            let monitoringButton: HTML = !v.securityProfile.uefiSettings.vTpmEnabled ? "" : """
                <button name="action" value="\(monitoring ? "monitoring-off" : "monitoring-on")">Turn integrity monitoring \
                \(monitoring ? "off" : "on")</button>
                """
            let approveButton: HTML = v.integrityMonitoring.bootIntegrity != .unhealthy ? ""
                : "<button name=\"action\" value=\"approve\">Approve this boot as the baseline</button>"
            body += """
            <div class="card"><table id="overview"><tbody>
            <tr><th>Security type</th><td>\(securityType(v.securityProfile.securityType))</td></tr>
            <tr><th>Secure Boot</th><td>\(onOff(v.securityProfile.uefiSettings.secureBootEnabled))</td></tr>
            <tr><th>vTPM</th><td>\(onOff(v.securityProfile.uefiSettings.vTpmEnabled))</td></tr>
            <tr><th>Integrity monitoring</th><td>\(onOff(v.integrityMonitoring.enabled))</td></tr>
            <tr><th>Boot \
            integrity</th><td>\(integrity(v))\(lastAttestation)</td>\
            </tr>\(o.baseline.map { "<tr><th>Baseline</th><td id=\"baseline\">\(text: $0.description)</td></tr>" } ?? "")
            <tr><th>Power state</th><td>\(text: v.powerState.rawValue) (boot \(v.bootCount))</td></tr>
            <tr><th>Image</th><td>\(text: v.image) · hypervisor \
            \(text: v.hypervisor)</td></tr>\(v.host.map { "<tr><th>Host</th><td id=\"host\">\(text: $0)</td></tr>" } ?? "")
            </tbody></table>
            <form class="inline" method="post" action="/vms/\(text: v.name)/action">\(lifecycleButtons(v))
            \(monitoringButton)
            \(approveButton)</form></div>
            """
            if !v.alerts.isEmpty {
                body += "<h2>Active alerts</h2><ul>" + v.alerts.map { """
                    <li class=\"sev-\(text: $0.severity)\"><a href=\"/alerts/\(text: $0.id)\">\(text: $0.severity): \(text: $0.title)</a> \
                    (\(text: $0.created))</li>
                    """ }.joined() + "</ul>"
            }
            if !o.recommendations.isEmpty {
                body +=
                    "<h2>Recommendations</h2><ul id=\"recommendations\">"
                    + o.recommendations.map { "<li>\(withCommands($0))</li>" }.joined() + "</ul>"
            }
            body += "<h2>Security readiness (Secured-core checklist)</h2><table "
                  + "id=\"checklist\"><thead><tr><th>Requirement</th><th>State</th><th>Why</th></tr></thead><tbody>"
            for c in o.checklist {
                let cls = c.state == .met ? "ok" : (c.state == .notMet ? "bad" : "muted")
                body += "<tr><td>\(text: c.requirement)</td><td "
                      + "class=\"\(text: cls)\">\(text: c.state.rawValue)</td><td>\(text: c.why)</td></tr>"
            }
            body += "</tbody></table>"
            if let b = v.lastBoot {
                let outcome: HTML = b.succeeded ? "<span class=\"ok\">reached \(text: b.kernel ?? "the OS")</span>"
                    : "<span class=\"bad\">failed: \(text: b.failure ?? "?")</span>"
                let commandLine: HTML = b.kernelCommandLine.map { (line: String) -> HTML in
                    " · command line <code>\(text: line)</code>"
                } ?? ""
                body += """
                    <h2>Last boot (\(b.number), \
                    \(text: b.time))</h2>\
                    <p>\(outcome) \
                    · \(text: b.firmware) · Secure Boot \(b.secureBootEnforced ? "enforced" : "not enforced") · \
                    \(b.measured ? "\(b.events) events measured" : "not measured")\(commandLine)</p>
                    """
                if !b.stages.isEmpty {
                    body += "<table><thead><tr><th>Stage</th><th>Path</th><th>Authenticode SHA-256</th><th>Verified "
                          + "by</th></tr></thead><tbody>"
                        + b.stages.map {
                            """
                                <tr><td>\(text: $0.kind)</td><td>\(text: $0.path)</td><td><code>\(text: $0.sha256)</code></td>\
                                <td>\(text: [$0.verifiedBy, $0.authority].compactMap { $0 }.joined(separator: ": "))</td></tr>
                                """
                        }.joined()
                        + "</tbody></table>"
                }
            }
            body += bootStrip(o.attestations)
            body += "<h2>Attestation timeline</h2><table id=\"timeline\"><thead><tr><th>Time</th><th>Event</th><th>What "
                  + "happened</th></tr></thead><tbody>"
                + o.timeline.map { "<tr><td>\(text: $0.time)</td><td>\(text: $0.kind.rawValue)</td><td>\(text: $0.message)</td></tr>" }
                .joined() + "</tbody></table>"
            if !o.attestations.isEmpty {
                body += "<h2>Attestations</h2><table "
                      + "id=\"attestations\"><thead><tr><th>Time</th><th>Result</th><th>Baseline</th><th>Failed "
                      + "checks</th></tr></thead><tbody>"
                    + o.attestations.map { a in """
                        <tr><td>\(text: a.time)</td><td class=\"\(a.passed ? "ok" : "bad")\">\(a.passed ? "passed" : "failed") \
                        (\(text: a.status))</td><td>\(text: a.baseline?.rawValue ?? "-")</td>\
                        <td>\(text: a.checks.filter { !$0.passed }.map { "\($0.name): \($0.reason)" }.joined(separator: "; "))</td></tr>
                        """ }.joined()
                    + "</tbody></table>"
            }
            if v.hypervisor == FleetRules.qemu, let console = try? await fleet.console(v.name) {
                // The guest's own words: printable text only, escaped, the last lines.
                let tail = ConsoleText.printable(String(console.suffix(12_000))).split(separator: "\n", omittingEmptySubsequences: false)
                    .suffix(60).joined(separator: "\n")
                body += "<h2>Console (boot \(v.bootCount))</h2><p class=\"muted\">tlaunch vm console \(text: v.name) --follow</p><pre "
                      + "id=\"console\">\(text: tail)</pre>"
            }
            return page(v.name, body, refresh: activity?.busy == true ? 3 : nil, live: true)
        }

        router.post("/vms/{vm}/action") { request, context -> Response in
            if let r = signedIn(context, admin: true) { return r }
            let name = try context.parameters.require("vm")
            let f = try await formBody(request)
            let action = f["action"] ?? ""
            if ["stop", "delete"].contains(action), f["confirm"] != "yes" { return confirmation(name, action: action) }
            do {
                switch action {
                case "start": _ = try await fleet.start(name)
                case "stop": _ = try await fleet.stop(name)
                case "delete":
                    try await fleet.delete(name)
                    return redirect("/")
                case "restart": _ = try await fleet.restart(name)
                case "approve": _ = try await fleet.approveBaseline(name)
                case "monitoring-on": _ = try await fleet.update(name, UpdateRequest(integrityMonitoring: true))
                case "monitoring-off": _ = try await fleet.update(name, UpdateRequest(integrityMonitoring: false))
                default: return page("Bad request", "<div class=\"error\">Unknown action.</div>", status: .badRequest)
                }
            } catch let e as FleetError {
                return page("Refused", "<div class=\"error\">\(text: e.message)</div><p><a href=\"/vms/\(text: name)\">Back to "
                                     + "\(text: name)</a></p>", status: .init(code: e.kind.status))
            } catch let e as AttestationServiceError {
                return page("Refused", "<div class=\"error\">\(text: e.message)</div><p><a href=\"/vms/\(text: name)\">Back to "
                                     + "\(text: name)</a></p>", status: .init(code: e.kind.status))
            }
            return redirect("/vms/\(name)")
        }

        router.get("/alerts") { request, context -> Response in
            if let r = signedIn(context) { return r }
            let all = try await fleet.alerts(limit: 500)
            var rows: HTML = ""
            for a in all {
                rows += """
                    <tr class=\"sev-\(text: a.status == .active ? a.severity.rawValue : "")\"><td><a \
                    href=\"/alerts/\(text: a.id)\">\(text: a.title)</a></td><td><a \
                    href=\"/vms/\(text: a.vm)\">\(text: a.vm)</a></td><td>\(text: a.severity.rawValue)</td>\
                    <td>\(text: a.status.rawValue)</td><td>\(text: a.created)</td><td>\(a.occurrences)</td>\
                    <td>\(text: a.resolution ?? "")</td></tr>
                    """
            }
            return page("Alerts", """
                <h1>Alerts</h1><table \
                id=\"alerts\"><thead><tr><th>Title</th><th>VM</th><th>Severity</th><th>Status</th><th>Raised</th><th>Seen</th>\
                <th>Resolution</th></tr></thead><tbody>\(rows)</tbody></table>
                """,
                        live: true)
        }

        router.get("/alerts/{id}") { _, context -> Response in
            if let r = signedIn(context) { return r }
            let id = try context.parameters.require("id")
            guard id.count <= 64, let a = try await fleet.alert(id) else {
                return page("Not found", "<div class=\"error\">No alert \(text: id).</div>", status: .notFound)
            }
            var body: HTML = "<h1 class=\"sev-\(text: a.severity.rawValue)\">\(text: a.title)</h1>"
            body += "<p><b>\(text: a.severity.rawValue)</b> severity · <b>\(text: a.status.rawValue)</b> · VM <a "
                  + "href=\"/vms/\(text: a.vm)\">\(text: a.vm)</a> · raised \(text: a.created) · seen \(a.occurrences)× · last "
                  + "\(text: a.updated)\(a.attestationID.map { " · attestation <code>\(text: $0)</code>" } ?? "")</p>"
            if let r = a.resolution { body += "<p class=\"muted\">\(text: r)</p>" }
            body += "<div class=\"card\"><p id=\"description\">\(text: a.description)</p></div>"
            body += """
                <h2>Evidence</h2><table \
                id=\"evidence\"><thead><tr><th>Component</th><th>What</th><th>PCR</th><th>From</th><th>To</th><th>Detail</th></tr></thead>\
                <tbody>
                """
            for e in a.evidence {
                body += """
                    <tr><td>\(text: e.component.rawValue)</td><td>\(text: e.name)</td><td>\(text: e.pcr.map(String.init) ?? "-")</td><td>\
                    <code>\(text: e.from ?? "-")</code>\(e.fromSigner.map { "<br>signed by \(text: $0)" } ?? "")</td><td>\
                    <code>\(text: e.to ?? "-")</code>\(e.toSigner.map { "<br>signed by \(text: $0)" } ?? "")</td><td>\(text: e.detail)</td>\
                    </tr>
                    """
            }
            body +=
                "</tbody></table><h2>Recommendations</h2><ul id=\"recommendations\">"
                + a.recommendations.map { "<li>\(withCommands($0))</li>" }.joined() + "</ul>"
            body += "<h2>Mitigations</h2><ul id=\"mitigations\">" + a.mitigations.map { "<li>\(withCommands($0))</li>" }.joined() + "</ul>"
            if a.status == .active {
                body += "<form method=\"post\" action=\"/alerts/\(text: a.id)/dismiss\"><label>Reason <input name=\"reason\" "
                      + "size=\"50\"></label> <button type=\"submit\">Dismiss</button></form>"
            }
            return page(a.title, body, live: true)
        }

        router.post("/alerts/{id}/dismiss") { request, context -> Response in
            if let r = signedIn(context, admin: true) { return r }
            let id = try context.parameters.require("id")
            let f = try await formBody(request)
            do {
                _ = try await fleet.dismiss(
                    alert: id, by: "dashboard", reason: f["reason"].flatMap { $0.isEmpty ? nil : String($0.prefix(500)) })
            } catch let e as FleetError {
                return page("Refused", "<div class=\"error\">\(text: e.message)</div>", status: .init(code: e.kind.status))
            }
            return redirect("/alerts/\(id)")
        }

        router.get("/images") { _, context -> Response in
            if let r = signedIn(context) { return r }
            var rows: HTML = ""
            for i in try await fleet.imageList() {
                rows += """
                    <tr><td>\(text: i.name)</td><td>Gen \(i.generation) \
                    (\(i.generation == 2 ? "UEFI: Trusted launch or Standard" : "BIOS: Standard only"))</td><td>\(text: i.description)</td>\
                    <td>\(text: i.source)</td></tr>
                    """
            }
            return page("Images", """
                <h1>Images</h1><table \
                id=\"images\"><thead><tr><th>Name</th><th>Generation</th><th>Description</th><th>Source</th></tr></thead>\
                <tbody>\(rows)</tbody></table>
                """)
        }

        router.get("/deploy") { _, context -> Response in
            if let r = signedIn(context, admin: true) { return r }
            return page("Deploy a VM", try await deployForm(fleet, error: nil))
        }
        router.post("/deploy") { request, context -> Response in
            if let r = signedIn(context, admin: true) { return r }
            let f = try await formBody(request)
            let tl = (f["securityType"] ?? "TrustedLaunch") == "TrustedLaunch"
            let req = DeployRequest(name: f["name"] ?? "", image: f["image"], securityType: f["securityType"],
                                    secureBoot: tl ? f["secureBoot"] == "on" : nil, vTpm: tl ? f["vTpm"] == "on" : nil,
                                    integrityMonitoring: tl ? f["integrityMonitoring"] == "on" : nil, hypervisor: "simulated")
            do {
                let vm = try await fleet.deploy(req)
                return redirect("/vms/\(vm.name)")
            } catch let e as FleetError {
                return page("Deploy a VM", try await deployForm(fleet, error: e.message), status: .init(code: e.kind.status))
            }
        }
    }

    static func deployForm(_ fleet: Fleet, error: String?) async throws -> HTML {
        let images = try await fleet.imageList().map { (i) -> HTML in
            "<option value=\"\(text: i.name)\"\(i.name == "sample-linux" ? " selected" : "")>\(text: i.name) (Gen \(i.generation))</option>"
        }.joined()
        return """
        <h1>Deploy a VM</h1>\(error.map { "<div class=\"error\" id=\"error\">\(text: $0)</div>" } as HTML?)
        <form method="post" action="/deploy" class="card">
        <p><label>Name <input name="name" required pattern="[a-zA-Z0-9][a-zA-Z0-9._-]*" maxlength="64"></label></p>
        <p><label>Image <select name="image">\(images)</select></label></p>
        <fieldset><legend>Security type</legend>
        <label><input type="radio" name="securityType" value="TrustedLaunch" checked> Trusted launch (Secure Boot, vTPM, measured \
        boot)</label><br>
        <label><input type="radio" name="securityType" value="Standard"> Standard (no Secure Boot, no vTPM; cannot be changed to Trusted \
        launch later)</label></fieldset>
        <p><label><input type="checkbox" name="secureBoot" checked> Secure Boot</label> <label><input type="checkbox" name="vTpm" checked> \
        vTPM</label>
        <label><input type="checkbox" name="integrityMonitoring"> Integrity monitoring</label>
        <br><span class="muted">Recommended: turn on integrity monitoring to be alerted when a boot changes (it can be switched on later \
        too).</span></p>
        <button type="submit">Deploy</button></form>
        """
    }
}

/// The fleet table's filter, from the page's query (a GET form: it works without JavaScript and a
/// filtered view is a link to share): text in the name or image, and a power state, boot integrity
/// or security type. Values outside the known ones filter nothing and are not echoed.
struct FleetFilter {
    var text: String?
    var power: PowerState?
    var integrity: BootIntegrity?
    var security: String?

    init(text: String?, power: String?, integrity: String?, security: String?) {
        let t = text?.trimmingCharacters(in: .whitespaces)
        self.text = (t?.isEmpty ?? true) ? nil : String(t!.prefix(100))
        self.power = power.flatMap(PowerState.init(rawValue:))
        self.integrity = integrity.flatMap(BootIntegrity.init(rawValue:))
        self.security = ["TrustedLaunch", "Standard"].contains(security ?? "") ? security : nil
    }

    var isEmpty: Bool { text == nil && power == nil && integrity == nil && security == nil }

    func matches(_ v: VMView) -> Bool {
        if let text, !(v.name.localizedCaseInsensitiveContains(text) || v.image.localizedCaseInsensitiveContains(text)) { return false }
        if let power, v.powerState != power { return false }
        if let integrity, v.integrityMonitoring.bootIntegrity != integrity { return false }
        if let security, v.securityProfile.securityType != security { return false }
        return true
    }

    /// This filter as a query (with the page's start), for the next and first-page links.
    func query(after: String?) -> String {
        var items: [(String, String)] = []
        if let text { items.append(("q", text)) }
        if let power { items.append(("power", power.rawValue)) }
        if let integrity { items.append(("integrity", integrity.rawValue)) }
        if let security { items.append(("security", security)) }
        if let after { items.append(("after", after)) }
        guard !items.isEmpty else { return "" }
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return "?" + items.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }.joined(separator: "&")
    }

    var form: HTML {
        func select(_ name: String, _ label: String, _ options: [(String, String)], _ chosen: String?) -> HTML {
            "<label>\(text: label) <select name=\"\(text: name)\"><option value=\"\">any</option>"
                + options.map { (o) -> HTML in "<option value=\"\(text: o.0)\"\(o.0 == chosen ? " selected" : "")>\(text: o.1)</option>" }
                .joined()
                + "</select></label> "
        }
        return "<form id=\"filter\" method=\"get\" action=\"/\"><label>Search <input type=\"search\" name=\"q\" "
             + "value=\"\(text: text ?? "")\" placeholder=\"name or image\"></label> "
            + select("power", "Power state", PowerState.allCases.map { ($0.rawValue, $0.rawValue) }, power?.rawValue)
            + select("integrity", "Boot integrity", BootIntegrity.allCases.map { ($0.rawValue, $0.display) }, integrity?.rawValue)
            + select("security", "Security type", [("TrustedLaunch", "Trusted launch"), ("Standard", "Standard")], security)
            + "<button type=\"submit\">Filter</button>" + (isEmpty ? "" : " <a href=\"/\">Clear</a>") + "</form>"
    }
}
