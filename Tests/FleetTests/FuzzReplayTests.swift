import FleetCore
import TLaunchTestSupport
import Testing

@Suite("Fleet fuzz corpus replay")
struct FleetFuzzReplayTests {
    @Test func requestsFormsAndCookiesCorpus() throws {
        #expect(try FuzzCorpus.replay("fleet-request", FleetFuzzing.request) >= 6, "the corpus is committed")
    }

    @Test func theRulesHoldForHandPickedRequests() {
        // Each is a request the rules must refuse or shape; the fuzz entry checks the invariants.
        for body in [#"{"name":"a","securityType":"standard","secureBoot":true}"#, #"{"name":"a","vTpm":false,"integrityMonitoring":true}"#,
                     #"{"name":"a","securityType":"TRUSTEDLAUNCH"}"#, #"{"securityType":"Standard"}"#, #"{"secureBoot":false,"vTpm":false}"#] {
            #expect(FleetFuzzing.request(Array(body.utf8)).isEmpty, "\(body)")
        }
        #expect(FormBody.parse("a=1&a=2&b=%41+c&=x&d") == ["a": "1", "b": "A c", "d": ""])
        #expect(FormBody.cookie("x=1; tlaunch_session=tlt_q; y", name: "tlaunch_session") == "tlt_q")
    }
}
