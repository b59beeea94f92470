import Foundation
@testable import Server
import Testing

/// The dashboard's parts on their own — the fragments it renders from, where a sign-in may go on
/// to, the CSRF field in its forms, the fleet filter — without a platform, a database or a browser
/// (the pages themselves are rendered by Chromium in FleetTests).
@Suite struct DashboardPartsTests {
    /// Text interpolated into a fragment is escaped; fragments are kept; a literal is markup
    /// wherever it stands (a ternary, an optional's map) — never taken for text and escaped.
    @Test func fragmentsEscapeTextAndKeepMarkup() {
        let hostile = "<script>alert('x')</script> & \"quoted\""
        let cell: HTML = "<td title=\"\(text: hostile)\">\(text: hostile)</td>"
        let escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot;"
        #expect(cell.description == "<td title=\"\(escaped)\">\(escaped)</td>")
        let flag = !hostile.isEmpty, none: String? = hostile.isEmpty ? "x" : nil, some: String? = "a<b"
        let row: HTML = "<tr>\(cell)\(flag ? "<td class=\"ok\">yes</td>" : "")"
            + "\(none.map { "<td>\(text: $0)</td>" })\(some.map { "<td>\(text: $0)</td>" }) \(42)</tr>"
        #expect(row.description == "<tr>\(cell.description)<td class=\"ok\">yes</td><td>a&lt;b</td> 42</tr>")
        #expect([row, row].joined(separator: "<br>").description == row.description + "<br>" + row.description)
        #expect(HTML.escape("ü & ✓ <>") == "ü &amp; ✓ &lt;&gt;")
    }

    /// A sign-in goes on only to one of the dashboard's own pages: nothing a browser could read as
    /// another host, scheme or path outside the dashboard.
    @Test func aSignInGoesOnOnlyToTheDashboardsOwnPages() {
        for ok in ["/", "/alerts", "/images", "/deploy", "/vms/web-01", "/alerts/alert-1a2b", "/images/debian-12",
                   "/?q=web&power=Running", "/?integrity=Unhealthy&after=vm-9"] {
            #expect(Dashboard.safeNext(ok) == ok, "\(ok) was refused")
        }
        for bad in [nil, "", "//evil.example", "/\\evil.example", "/%09/evil.example", "/\t/evil.example", "https://evil.example/",
                    "evil.example", "/vms/../alerts", "/vms/a/b", "/vms/", "/vms/.", "/unknown", "/?q=<script>", "/?next=//evil",
                    "/" + String(repeating: "a", count: 300)] {
            #expect(Dashboard.safeNext(bad) == "/", "\(bad ?? "nil") was let through")
        }
    }

    /// Every POST form carries the session's CSRF field (escaped); GET forms (the filter) do not.
    @Test func postFormsCarryTheCSRFTokenAndGetFormsDoNot() {
        let page = "<form method=\"post\" action=\"/a\"><button>x</button></form>"
            + "<form id=\"filter\" method=\"get\" action=\"/\"></form><form method=\"post\" action=\"/b\">"
        let out = Dashboard.withCSRF(page, "t\"ok")
        let field = "<input type=\"hidden\" name=\"csrf\" value=\"t&quot;ok\">"
        #expect(out.components(separatedBy: field).count == 3, "\(out)")
        #expect(out.contains("<form id=\"filter\" method=\"get\" action=\"/\"></form>"))
        #expect(Dashboard.withCSRF(page, nil) == page)
        // The token derives from the session (any instance computes it) and reveals nothing of it.
        let a = Dashboard.csrfToken(for: "tlt_session-a"), b = Dashboard.csrfToken(for: "tlt_session-b")
        #expect(a != b && a == Dashboard.csrfToken(for: "tlt_session-a") && !a.contains("session"))
    }

    /// The filter keeps only values it knows (an unknown one filters nothing and is not echoed)
    /// and gives them back as a query for the next-page link.
    @Test func theFleetFilterKeepsKnownValuesAndQuotesItsQuery() {
        let f = FleetFilter(text: "  web <01> ", power: "Running", integrity: "Bogus", security: "TrustedLaunch")
        #expect(f.text == "web <01>" && f.power == .running && f.integrity == nil && f.security == "TrustedLaunch" && !f.isEmpty)
        #expect(f.query(after: "web-01") == "?q=web%20%3C01%3E&power=Running&security=TrustedLaunch&after=web-01")
        #expect(FleetFilter(text: " ", power: nil, integrity: nil, security: "Other").isEmpty)
        #expect(!f.form.description.contains("<01>") && f.form.description.contains("value=\"web &lt;01&gt;\""))
    }
}
