import AttestationAPI
import Foundation
import Attestation
import Fleet
import GuestAgent
import ServiceTLS
import TLaunchTestSupport
import Testing

/// kill -9 of the whole platform in the middle of a burst of deploys (each one a record, a folder,
/// an agent credential, a vTPM manufactured, a first boot, an enrolment and an attestation), at a
/// different moment each round; then a restart. Every VM that exists must be one its record, its
/// vTPM and its disk agree on: asked to run, so Running; attesting, and healthy. Every deploy that
/// was acknowledged must exist.
@Suite struct CrashInjectionTests {
    struct Up {
        let process: Process
        let url: String
        let client: ServiceClient
    }

    static func start(_ dir: URL) async throws -> Up {
        let log = dir.appendingPathComponent("up-\(UUID().uuidString.prefix(6)).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tlaunchPath)
        p.arguments = ["up", "--data", dir.path, "--listen", "127.0.0.1:0", "--no-sample-fleet", "--hypervisor", "simulated", "--log-level",
                       "error"]
        p.standardOutput = try FileHandle(forWritingTo: log)
        p.standardError = p.standardOutput
        try p.run()
        _ = try await RealVMTests.waitFor("the platform to be ready", seconds: 300) { () async throws -> Bool? in
            if !p.isRunning { throw CrashError("tlaunch up exited: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")") }
            return (try? String(contentsOf: log, encoding: .utf8))?.contains("==> Ready") == true ? true : nil
        }
        let folder = DataFolder(root: dir)
        let url = try String(contentsOf: folder.serverURL, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let token = try String(contentsOf: folder.adminToken, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        var client = ServiceClient.pinned(baseURL: url, token: token,
                                          tls: ClientTLS(trustRootsPEM: try String(contentsOf: folder.tls.appendingPathComponent("ca.pem"),
                                                                                   encoding: .utf8)))
        client.patient = true
        return Up(process: p, url: url, client: client)
    }

    struct CrashError: Error, CustomStringConvertible { let description: String; init(_ d: String) { description = d } }

    @Test(.timeLimit(.minutes(12)))
    func killNineDuringDeploysLeavesNoHalfState() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tl-crash-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var acknowledged = Set<String>()
        var generator = SystemRandomNumberGenerator()
        // Warm-up: the sample image is built once (the first deploy's slow part), and one VM is
        // running when the kills begin.
        do {
            let up = try await Self.start(dir)
            let body = try JSONSerialization.data(withJSONObject: ["name": "warm", "integrityMonitoring": true])
            #expect(try await up.client.send("POST", "/v1/vms", json: body, step: "deploy").status == 201)
            acknowledged.insert("warm")
            kill(up.process.processIdentifier, SIGKILL)
            up.process.waitUntilExit()
        }
        let rounds = 6
        for round in 0..<rounds {
            let up = try await Self.start(dir)
            // A burst of deploys, each asked to start with integrity monitoring.
            let names = (0..<4).map { "c\(round)-\($0)" }
            let burst = Task {
                await withTaskGroup(of: String?.self) { group in
                    for name in names {
                        group.addTask {
                            let body = try? JSONSerialization.data(withJSONObject: ["name": name, "integrityMonitoring": true])
                            let answer = try? await up.client.send("POST", "/v1/vms", json: body, step: "deploy")
                            return answer?.status == 201 ? name : nil
                        }
                    }
                    var done: [String] = []
                    for await n in group { if let n { done.append(n) } }
                    return done
                }
            }
            // A different moment each round: early (records), middle (vTPMs, boots), late.
            let delay = [30, 120, 250, 450, 800, 1400][round % 6] + Int.random(in: 0..<100, using: &generator)
            try await Task.sleep(for: .milliseconds(delay))
            kill(up.process.processIdentifier, SIGKILL)
            up.process.waitUntilExit()
            acknowledged.formUnion(await burst.value)
        }

        // The platform after the last crash: resume boots what was meant to run.
        let up = try await Self.start(dir)
        defer { kill(up.process.processIdentifier, SIGKILL); up.process.waitUntilExit() }
        let (s, data) = try await up.client.send("GET", "/v1/vms", step: "list")
        #expect(s == 200)
        let vms = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        let names = Set(vms.compactMap { $0["name"] as? String })
        #expect(acknowledged.isSubset(of: names), "acknowledged deploys lost: \(acknowledged.subtracting(names).sorted())")
        #expect(!names.isEmpty, "no deploy got as far as a record in \(rounds) rounds")
        print("crash-injection: \(names.count) VMs after \(rounds) kills, \(acknowledged.count) acknowledged: \(names.sorted())")
        for name in names.sorted() {
            // Each attests now, through its own agent credential and vTPM.
            let (a, answer) = try await up.client.send("POST", "/v1/vms/\(name)/attest", step: "attest")
            let outcome = try? JSONSerialization.jsonObject(with: answer) as? [String: Any]
            #expect(a == 200 && outcome?["passed"] as? Bool == true, "\(name): \(a) \(String(decoding: answer.prefix(400), as: UTF8.self))")
            let (_, v) = try await up.client.send("GET", "/v1/vms/\(name)", step: "show")
            let view = try JSONSerialization.jsonObject(with: v) as? [String: Any]
            #expect(view?["powerState"] as? String == "Running", "\(name) was asked to run: \(String(describing: view?["powerState"]))")
            #expect((view?["integrityMonitoring"] as? [String: Any])?["bootIntegrity"] as? String == "Healthy",
                    "\(name): \(String(describing: view?["integrityMonitoring"]))")
        }
    }
}
