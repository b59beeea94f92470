import AttestationAPI
import FleetCore
import Foundation
import FuzzTargets
import GuestAgent
import TLaunchTestSupport
import Testing

@Suite("Fleet fuzz corpus replay")
struct FleetFuzzReplayTests {
    /// The fuzz package reaches every check through the FuzzTargets product: each corpus folder,
    /// each target Fuzz/run.sh takes and each executable Fuzz/Package.swift declares has its check
    /// there, so no corpus is left without a target when a module's product goes.
    @Test func everyCorpusAndFuzzTargetHasItsCheck() throws {
        let root = Built.packageRoot.appendingPathComponent("Fuzz")
        let corpora = Set(try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("corpus").path))
        let script = try String(contentsOf: root.appendingPathComponent("run.sh"), encoding: .utf8)
        let scripted = script.split(separator: "\n").compactMap { line -> (String, String)? in
            let parts = line.trimmingCharacters(in: .whitespaces).components(separatedBy: ") product=")
            return parts.count == 2 ? (parts[0], parts[1].replacingOccurrences(of: " ;;", with: "")) : nil
        }
        let manifest = try String(contentsOf: root.appendingPathComponent("Package.swift"), encoding: .utf8)
        #expect(Set(FuzzTargets.byName.keys) == corpora, "corpus folders: \(corpora.sorted())")
        #expect(Set(scripted.map(\.0)) == Set(FuzzTargets.byName.keys), "run.sh targets: \(scripted.map(\.0))")
        for (_, product) in scripted {
            #expect(manifest.contains("name: \"\(product)\""), "Fuzz/Package.swift declares \(product)")
            let source = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("Sources/\(product)").path)
            let text = try source.map { try String(contentsOf: root.appendingPathComponent("Sources/\(product)/\($0)"), encoding: .utf8) }
            #expect(text.contains { $0.contains("FuzzTargets.") }, "\(product) runs a FuzzTargets check")
        }
        let products = manifest.components(separatedBy: "package: \"TrustedLaunch\")").dropLast().map { $0.suffix(40) }
        #expect(products.allSatisfy { $0.contains("\"FuzzTargets\"") }, "the fuzz package depends on FuzzTargets only")
    }

    @Test func requestsFormsAndCookiesCorpus() throws {
        #expect(try FuzzCorpus.replay("fleet-request", FleetFuzzing.request) >= 6, "the corpus is committed")
    }

    @Test func theRulesHoldForHandPickedRequests() {
        // Each is a request the rules must refuse or shape; the fuzz entry checks the invariants.
        for body in [#"{"name":"a","securityType":"standard","secureBoot":true}"#, #"{"name":"a","vTpm":false,"integrityMonitoring":true}"#,
            #"{"name":"a","securityType":"TRUSTEDLAUNCH"}"#, #"{"securityType":"Standard"}"#, #"{"secureBoot":false,"vTpm":false}"#
        ] {
            #expect(FleetFuzzing.request(Array(body.utf8)).isEmpty, "\(body)")
        }
        #expect(FormBody.parse("a=1&a=2&b=%41+c&=x&d") == ["a": "1", "b": "A c", "d": ""])
        #expect(FormBody.cookie("x=1; tlaunch_session=tlt_q; y", name: "tlaunch_session") == "tlt_q")
    }

    @Test func relayFramesCorpus() throws {
        #expect(try FuzzCorpus.replay("relay-frames", RelayFuzzing.frames) >= 7, "the corpus is committed")
    }

    /// What a guest writes to its relay port, as the host reads it: frames found after garbage,
    /// whatever the reads' sizes; oversized lengths skipped; only its own VM's attestation API passes.
    @Test func relayFramesAndRules() throws {
        func frame(_ r: RelayFrame.Request) throws -> [UInt8] { try RelayFrame.encode(r) }
        let a = RelayFrame.Request(id: 1, method: "POST", path: "/v1/vms/vm-1/attestations", contentType: "application/json",
                                   body: Data("{}".utf8))
        let b = RelayFrame.Request(id: 2, method: "GET", path: "/relay/identity", contentType: nil, body: nil)
        let stream = [0xFF, 0x00] + Array("TLR".utf8) + Array("TLR1".utf8) + [0xFF, 0xFF, 0xFF, 0xFF] + (try frame(a)) + (try frame(b))
        for step in [1, 2, 3, 7, stream.count] {
            var reader = RelayFrame.Reader()
            var got: [RelayFrame.Request] = []
            var at = 0
            while at < stream.count {
                got += reader.feed(stream[at..<min(stream.count, at + step)]).compactMap {
                    try? JSONDecoder().decode(RelayFrame.Request.self, from: Data($0))
                }
                at += step
            }
            #expect(got == [a, b], "reads of \(step) bytes")
        }
        #expect(RelayRules.allowed(a, vm: "vm-1"))
        for (m, p) in [("GET", "/v1/vms/vm-2/enrolment"), ("DELETE", "/v1/vms/vm-1/enrolment"), ("POST", "/v1/vms/vm-1/baseline/approve"),
            ("GET", "/v1/vms/vm-1/../vm-2/attestations"), ("GET", "/v1/vms/vm-1/%2e%2e/x"), ("GET", "/v1/tokens"), ("GET", "/v1/vms/vm-1")
        ] {
            #expect(!RelayRules.allowed(RelayFrame.Request(id: 9, method: m, path: p, contentType: nil, body: nil), vm: "vm-1"),
                    "\(m) \(p)")
        }
    }
}
