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
import Storage
import Synchronization
import TLaunchTestSupport
import Testing
import TPM2
import VirtualFirmware

@Suite("Fleet: deployment rules, lifecycle, the ARM JSON shape")
struct DeploymentTests {
    @Test func everyDeploymentRuleRefusesWithWhatToDo() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            // Each refused deployment: status, the field, words of the message that say what to do.
            let refused: [([String: Any], Int, String, String)] = [
                (["name": "gen1", "image": "legacy-bios"], 400, "image", "--security-type Standard"),
                (["name": "gen1b", "image": "legacy-bios", "securityType": "TrustedLaunch"], 400, "image", "Generation 2 (UEFI)"),
                (["name": "std-sb", "securityType": "Standard", "secureBoot": true], 400, "secureBoot", "only for TrustedLaunch"),
                (["name": "std-vtpm", "securityType": "Standard", "vTpm": true], 400, "vTpm", "only for TrustedLaunch"),
                (["name": "std-mon", "securityType": "Standard", "integrityMonitoring": true], 400, "integrityMonitoring",
                 "--security-type TrustedLaunch"),
                (["name": "novtpm-mon", "vTpm": false, "integrityMonitoring": true], 400, "integrityMonitoring", "keep --vtpm true"),
                (["name": "noimage", "image": "windows-11"], 404, "image", "tlaunch image list"),
                (["name": "badtype", "securityType": "Confidential"], 400, "securityType", "TrustedLaunch, Standard"),
                (["name": "qemu", "hypervisor": "qemu"], 400, "hypervisor", "--hypervisor simulated"),
                (["name": "../etc"], 400, "name", "name"),
                (["name": "x", "secureBoot": "yes"], 400, "secureBoot", "wrong type"),
            ]
            for (body, status, field, words) in refused {
                let (s, answer) = try await p.request("POST", "/v1/vms", body)
                #expect(s == status, "\(body): \(s) \(TestPlatform.message(answer))")
                let err = (answer as? [String: Any])?["error"] as? [String: Any]
                #expect(err?["field"] as? String == field, "\(body): field \(String(describing: err?["field"]))")
                #expect(TestPlatform.message(answer).contains(words), "\(body): \(TestPlatform.message(answer))")
            }
            // Nothing was half-created: no VM, no folder.
            #expect(try await p.fleet.store.vmCount() == 0)
            let vms = p.dir.appendingPathComponent("vms")
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: vms.path)) ?? []).isEmpty)

            // The defaults: Trusted Launch, Secure Boot and vTPM on, monitoring off with a recommendation.
            var (s, answer) = try await p.request("POST", "/v1/vms", ["name": "web"])
            #expect(s == 201)
            let vm = try #require(answer as? [String: Any])
            let profile = try #require(vm["securityProfile"] as? [String: Any])
            #expect(profile["securityType"] as? String == "TrustedLaunch")
            let uefi = try #require(profile["uefiSettings"] as? [String: Any])
            #expect(uefi["secureBootEnabled"] as? Bool == true && uefi["vTpmEnabled"] as? Bool == true)
            let monitoring = try #require(vm["integrityMonitoring"] as? [String: Any])
            #expect(monitoring["enabled"] as? Bool == false && monitoring["bootIntegrity"] as? String == "NotMonitored")
            #expect(monitoring.keys.contains("lastAttestation") && monitoring["lastAttestation"] is NSNull)
            #expect(
                vm["powerState"] as? String == "Running" && vm["name"] as? String == "web" && vm["image"] as? String == "sample-linux"
                    && vm["hypervisor"] as? String == "simulated")
            #expect((vm["alerts"] as? [Any])?.isEmpty == true)
            // The ARM resource shape beside those fields: what a tool written for Azure reads.
            #expect(vm["id"] as? String == "/providers/TrustedLaunch.Compute/virtualMachines/web")
            #expect(vm["type"] as? String == "TrustedLaunch.Compute/virtualMachines" && vm["location"] as? String == "local")
            let properties = try #require(vm["properties"] as? [String: Any])
            #expect(
                properties["provisioningState"] as? String == "Succeeded"
                    && properties["timeCreated"] as? String == vm["created"] as? String)
            #expect(NSDictionary(dictionary: try #require(properties["securityProfile"] as? [String: Any])).isEqual(to: profile))
            #expect(
                ((properties["storageProfile"] as? [String: Any])?["imageReference"] as? [String: Any])?["id"] as? String == "sample-linux")
            let statuses = try #require((properties["instanceView"] as? [String: Any])?["statuses"] as? [[String: Any]])
            #expect(statuses.map { $0["code"] as? String } == ["PowerState/running"])
            let overview = try await p.fleet.overview("web")
            #expect(overview.recommendations.contains { $0.contains("--integrity-monitoring true") })

            // Duplicate name: 409 and the first VM is untouched.
            (s, answer) = try await p.request("POST", "/v1/vms", ["name": "web", "securityType": "Standard"])
            #expect(s == 409 && TestPlatform.message(answer).contains("exists"))
            #expect(try await p.fleet.require("web").securityType == .trustedLaunch)

            // A Standard VM: no vTPM, no Secure Boot; from a Gen 1 image it boots BIOS, unmeasured.
            (s, answer) = try await p.request("POST", "/v1/vms", ["name": "old", "image": "legacy-bios", "securityType": "Standard"])
            #expect(s == 201)
            let old = try await p.fleet.require("old")
            #expect(!old.secureBoot && !old.vTPM && old.lastBoot?.measured == false && old.lastBoot?.firmware.contains("BIOS") == true)
            #expect(!FileManager.default.fileExists(atPath: p.dir.appendingPathComponent("vms/old/vtpm.state").path))

            // Updates: each rule.
            let updates: [(String, [String: Any], Int, String)] = [
                ("old", ["securityType": "TrustedLaunch"], 400, "cannot be changed after deployment"),
                ("web", ["securityType": "Standard"], 400, "delete the VM and deploy it again"),
                ("old", ["secureBoot": true], 400, "redeploy it as TrustedLaunch"),
                ("old", ["vTpm": true], 400, "redeploy it as TrustedLaunch"),
                ("old", ["integrityMonitoring": true], 400, "redeploy it as TrustedLaunch"),
                ("web", ["secureBoot": false], 409, "tlaunch vm stop web"),
                ("web", ["image": "debian-12"], 400, "cannot be changed"),
                ("web", ["version": 1], 409, "read it again"),
                ("nosuch", ["integrityMonitoring": true], 404, "tlaunch vm list"),
                ("web", ["attestationInterval": 0], 400, "1 to 86400"),
            ]
            for (name, body, status, words) in updates {
                let (s, answer) = try await p.request("PATCH", "/v1/vms/\(name)", body)
                #expect(s == status && TestPlatform.message(answer).contains(words),
                        "\(name) \(body): \(s) \(TestPlatform.message(answer))")
            }
            // Secure Boot can be changed while stopped; monitoring at any time (and then attests).
            _ = try await p.fleet.stop("web")
            (s, answer) = try await p.request("PATCH", "/v1/vms/web", ["secureBoot": false])
            #expect(s == 200)
            #expect(try await p.fleet.require("web").secureBoot == false)
            let stopped = (answer as? [String: Any])?["properties"] as? [String: Any]
            #expect(
                ((stopped?["instanceView"] as? [String: Any])?["statuses"] as? [[String: Any]])?.first?["code"] as? String
                    == "PowerState/deallocated")
            #expect(
                ((stopped?["securityProfile"] as? [String: Any])?["uefiSettings"] as? [String: Any])?["secureBootEnabled"] as? Bool == false
            )
            (s, _) = try await p.request("PATCH", "/v1/vms/web", ["vTpm": false, "integrityMonitoring": true])
            #expect(s == 400)
            _ = try await p.fleet.update("web", UpdateRequest(secureBoot: true))
            _ = try await p.fleet.start("web")
            (s, answer) = try await p.request("PATCH", "/v1/vms/web", ["integrityMonitoring": true])
            #expect(s == 200)
            let on = try await p.fleet.require("web")
            #expect(on.integrityMonitoring && on.bootIntegrity == .healthy && on.lastAttestation != nil)
            (s, answer) = try await p.request("PATCH", "/v1/vms/web", ["vTpm": false])
            #expect(s == 409 || s == 400)
        }
    }

    @Test func importedImagesDeployAndBadImportsAreRefused() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            // An ESP folder: the sample chain written out as files (as a user's image would be).
            let keys = try PlatformKeys.loadOrCreate(directory: p.folder.secureBootKeys)
            let (esp, _) = try SampleImages.sampleLinux(keys: keys, commandLine: "console=ttyS0 root=/dev/vda1 ro quiet")
            let folder = p.dir.appendingPathComponent("my-esp")
            for (path, bytes) in esp.files {
                let f = folder.appendingPathComponent(String(path.dropFirst()))
                try FileManager.default.createDirectory(at: f.deletingLastPathComponent(), withIntermediateDirectories: true)
                try Data(bytes).write(to: f)
            }
            var (s, body) = try await p.request("POST", "/v1/images", ["name": "my-linux", "path": folder.path])
            #expect(s == 201 && (body as? [String: Any])?["generation"] as? Int == 2, "\(TestPlatform.message(body))")
            let details = try await p.fleet.imageDetails("my-linux")
            #expect(
                details.bootable && details.bootChain.map(\.kind) == ["shim", "grub", "linux"]
                    && details.kernelCommandLine == "console=ttyS0 root=/dev/vda1 ro quiet")
            #expect(details.signers.contains { $0.contains("TrustedLaunch platform db") } && !details.dbAuthorities.isEmpty)
            let vm = try await p.fleet.deploy(DeployRequest(name: "mine", image: "my-linux", integrityMonitoring: true))
            #expect(vm.bootIntegrity == .healthy && vm.lastBoot?.kernelCommandLine == "console=ttyS0 root=/dev/vda1 ro quiet")
            // A BIOS boot sector as a Gen 1 image: Standard only.
            var sector = [UInt8](repeating: 0, count: 512); sector[510] = 0x55; sector[511] = 0xAA
            let mbr = p.dir.appendingPathComponent("boot.img")
            try Data(sector).write(to: mbr)
            (s, _) = try await p.request("POST", "/v1/images", ["name": "my-bios", "path": mbr.path, "generation": 1])
            #expect(s == 201)
            (s, body) = try await p.request("POST", "/v1/vms", ["name": "bios-tl", "image": "my-bios"])
            #expect(s == 400 && TestPlatform.message(body).contains("--security-type Standard"))
            // Refused imports: the name taken (built in or imported), not an ESP, not a boot sector, bad keys.
            let empty = p.dir.appendingPathComponent("empty")
            try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
            let refused: [([String: Any], Int, String)] = [
                (["name": "sample-linux", "path": folder.path], 409, "exists"),
                (["name": "my-linux", "path": folder.path], 409, "exists"),
                (["name": "x1", "path": empty.path], 400, "BOOTX64.EFI"),
                (["name": "x2", "path": "/nonexistent"], 400, "EFI System Partition"),
                (["name": "x3", "path": folder.path, "generation": 1], 400, "boot sector"),
                (["name": "x4", "path": folder.path, "keys": "someone"], 400, "platform or microsoft"),
                (["name": "x5", "path": folder.path, "generation": 3], 400, "1 (BIOS) or 2 (UEFI)"),
                (["name": "../x", "path": folder.path], 400, "name"),
            ]
            for (b, status, words) in refused {
                let (s, body) = try await p.request("POST", "/v1/images", b)
                #expect(s == status && TestPlatform.message(body).contains(words), "\(b): \(s) \(TestPlatform.message(body))")
            }
            let names = try await p.fleet.imageList().map(\.name)
            #expect(names.filter { $0.hasPrefix("x") }.isEmpty && names.contains("my-linux") && names.contains("my-bios"))
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: p.dir.appendingPathComponent("images").path).filter {
                $0.hasPrefix(".import")
            }
            #expect(leftovers.isEmpty)
        }
    }

    @Test func concurrentUpdatesOfOneVMOneWinsTheOtherIsToldToReread() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            _ = try await p.fleet.deploy(DeployRequest(name: "busy", start: false))
            let version = try await p.fleet.require("busy").version
            let statuses = try await withThrowingTaskGroup(of: Int.self) { g in
                for i in 0..<6 {
                    g.addTask { try await p.request("PATCH", "/v1/vms/busy", ["attestationInterval": 60 + i, "version": version]).0 }
                }
                return try await g.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 200 }.count == 1, "\(statuses)")
            #expect(statuses.filter { $0 == 409 }.count == 5, "\(statuses)")
            let after = try await p.fleet.require("busy")
            #expect(after.version == version + 1 && (60..<66).contains(after.attestationInterval))
            // Concurrent deploys of one name: one VM.
            let deploys = try await withThrowingTaskGroup(of: Int.self) { g in
                for _ in 0..<4 { g.addTask { try await p.request("POST", "/v1/vms", ["name": "twin", "start": false]).0 } }
                return try await g.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(deploys.sorted() == [201, 409, 409, 409], "\(deploys)")
        }
    }

    @Test func lifecycleEveryStartIsANewMeasuredBootAndDeleteDestroysTheVTPM() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            let name = uniqueName()
            var vm = try await p.fleet.deploy(DeployRequest(name: name, integrityMonitoring: true))
            #expect(
                vm.powerState == .running && vm.bootCount == 1 && vm.lastBoot?.measured == true && vm.lastBoot?.secureBootEnforced == true)
            #expect(vm.bootIntegrity == .healthy)
            let state = p.dir.appendingPathComponent("vms/\(name)/vtpm.state")
            #expect(FileManager.default.fileExists(atPath: state.path))
            var (s, body) = try await p.request("POST", "/v1/vms/\(name)/start")
            #expect(s == 409 && TestPlatform.message(body).contains("restart"))
            (s, _) = try await p.request("POST", "/v1/vms/\(name)/stop")
            #expect(s == 200)
            (s, body) = try await p.request("POST", "/v1/vms/\(name)/restart")
            #expect(s == 409 && TestPlatform.message(body).contains("start"))
            (s, _) = try await p.request("POST", "/v1/vms/\(name)/start")
            #expect(s == 200)
            vm = try await p.fleet.restart(name)
            #expect(vm.bootCount == 3)
            // The last operation's steps, as the CLI and the dashboard follow them.
            (s, body) = try await p.request("GET", "/v1/vms/\(name)/activity")
            let activity = try #require(body as? [String: Any])
            let steps = (activity["steps"] as? [[String: Any]] ?? []).compactMap { $0["message"] as? String }
            #expect(s == 200 && activity["operation"] as? String == "restart" && activity["busy"] as? Bool == false, "\(activity)")
            #expect(
                steps.first?.hasPrefix("booting \(name)") == true
                    && steps.last?.hasPrefix("Running — boot 3 reached /vmlinuz; boot integrity Healthy") == true, "\(steps)")
            #expect(try await p.request("GET", "/v1/vms/nobody/activity").0 == 404)
            // Asked to answer at once (Prefer: respond-async): 202, and the operation runs on;
            // what can be refused at once still is (409 below), and the activity ends with the outcome.
            let async = ["Prefer": "respond-async"]
            (s, body) = try await p.request("POST", "/v1/vms/\(name)/restart", headers: async)
            #expect(s == 202 && (body as? [String: Any])?["name"] as? String == name)
            let done = try await RealVMTests.waitFor("the restart in the background", seconds: 120) { () async throws -> VMActivity? in
                let a = try await p.fleet.activity(name)
                return a.busy ? nil : a
            }
            #expect(done.error == nil && done.operation == "restart" && done.steps.first?.message == "accepted", "\(done)")
            #expect(try await p.fleet.require(name).bootCount == 4)
            (s, body) = try await p.request("POST", "/v1/vms/\(name)/start", headers: async)
            #expect(s == 409 && TestPlatform.message(body).contains("already running"))
            (s, body) = try await p.request("POST", "/v1/vms", ["name": uniqueName(), "image": "nonexistent"], headers: async)
            #expect(s == 404, "a deploy that cannot be is refused at once")
            let later = uniqueName()
            (s, body) = try await p.request("POST", "/v1/vms", ["name": later, "integrityMonitoring": true], headers: async)
            #expect(s == 202 && (body as? [String: Any])?["name"] as? String == later)
            let deployed = try await RealVMTests.waitFor("the deploy in the background", seconds: 120) { () async throws -> VMActivity? in
                let a = try await p.fleet.activity(later)
                return a.busy ? nil : a
            }
            #expect(deployed.error == nil && deployed.operation == "deploy", "\(deployed)")
            let booted = try await p.fleet.require(later)
            #expect(booted.powerState == .running && booted.bootIntegrity == .healthy)
            #expect(p.fleet.backgroundOperations == 0, "a finished operation is no longer held")
            // A shutdown ends what runs in the background: cancelled and awaited, nothing left busy.
            (s, _) = try await p.request("POST", "/v1/vms/\(later)/restart", headers: async)
            #expect(s == 202)
            await p.fleet.endBackgroundWork()
            #expect(p.fleet.backgroundOperations == 0)
            #expect(try await p.fleet.activity(later).busy == false, "an operation outlived the shutdown that ended it")
            // Each boot was attested, and the service saw reboots of one TPM.
            let history = try await p.service.history(vm: name, limit: 10)
            #expect(history.count == 4 && history.allSatisfy(\.passed))
            #expect(history.first?.rebooted == true)
            let events = try await p.fleet.store.events(vm: name).map(\.kind)
            #expect(events.filter { $0 == .boot }.count == 4 && events.contains(.stopped) && events.contains(.deployed))
            // The guest's own view.
            let guest = try #require(await p.fleet.guestStatus(name))
            #expect(guest.secureBootState == "On" && guest.tpm.present && guest.tpm.specVersion?.hasPrefix("2.0") == true)
            #expect(guest.measuredBootLog.present && guest.measuredBootLog.matchesTPM == true && guest.lastAttestation?.passed == true)
            // Delete: gone, vTPM state destroyed, enrolment forgotten.
            (s, _) = try await p.request("DELETE", "/v1/vms/\(name)")
            #expect(s == 204)
            #expect(!FileManager.default.fileExists(atPath: state.path))
            #expect(try await p.service.store.agent(vm: name) == nil)
            (s, body) = try await p.request("GET", "/v1/vms/\(name)")
            #expect(s == 404)
            (s, _) = try await p.request("DELETE", "/v1/vms/\(name)")
            #expect(s == 404)
            // A new VM of the same name is a new vTPM (a new EK), enrolled afresh.
            let again = try await p.fleet.deploy(DeployRequest(name: name, integrityMonitoring: true))
            #expect(again.bootIntegrity == .healthy && again.bootCount == 1)
        }
    }

    @Test func listAndShowJSONFollowTheARMShape() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            _ = try await p.fleet.deploy(DeployRequest(name: "a", integrityMonitoring: true))
            _ = try await p.fleet.deploy(DeployRequest(name: "b", image: "legacy-bios", securityType: "Standard"))
            let (s, body) = try await p.request("GET", "/v1/vms")
            #expect(s == 200)
            let list = try #require(body as? [[String: Any]])
            #expect(list.map { $0["name"] as? String } == ["a", "b"])
            for vm in list {
                for key in ["name", "image", "hypervisor", "powerState", "securityProfile", "integrityMonitoring",
                            "alerts"] { #expect(vm[key] != nil, "missing \(key)") }
                let sp = try #require(vm["securityProfile"] as? [String: Any])
                #expect(["TrustedLaunch", "Standard"].contains(sp["securityType"] as? String ?? ""))
                let u = try #require(sp["uefiSettings"] as? [String: Any])
                #expect(u["secureBootEnabled"] is Bool && u["vTpmEnabled"] is Bool)
                let im = try #require(vm["integrityMonitoring"] as? [String: Any])
                #expect(["Healthy", "Unhealthy", "Pending", "NotMonitored"].contains(im["bootIntegrity"] as? String ?? ""))
            }
            let a = list[0]["integrityMonitoring"] as? [String: Any]
            let last = try #require(a?["lastAttestation"] as? String)
            // RFC 3339 in UTC.
            let f = ISO8601DateFormatter(); f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            #expect(f.date(from: last) != nil)
            // Pages: ?limit= with a Link to the next page, ?after= the last name.
            func page(_ query: String) async throws -> (Int, [String], String?) {
                var r = URLRequest(url: URL(string: p.server.url + "/v1/vms" + query)!)
                r.timeoutInterval = 600   // an in-process server on a loaded machine answers late, not never
                r.setValue("Bearer \(p.admin)", forHTTPHeaderField: "Authorization")
                let (data, response) = try await URLSession.shared.data(for: r)
                let h = response as! HTTPURLResponse
                let names =
                    ((try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]])?.compactMap { $0["name"] as? String } ?? []
                return (h.statusCode, names, h.value(forHTTPHeaderField: "Link"))
            }
            var (ps, names, link) = try await page("?limit=1")
            #expect(ps == 200 && names == ["a"] && link == "</v1/vms?limit=1&after=a>; rel=\"next\"")
            (ps, names, link) = try await page("?limit=1&after=a")
            #expect(ps == 200 && names == ["b"] && link == nil)
            (ps, _, _) = try await page("?limit=0")
            #expect(ps == 400)
            // A reader may read, not deploy; no token: 401.
            let reader = try await AttestationService.createAPIToken(store: p.service.store, role: .reader, vm: nil)
            #expect(try await p.request("GET", "/v1/vms", token: reader).0 == 200)
            #expect(try await p.request("POST", "/v1/vms", ["name": "c"], token: reader).0 == 403)
            let (anon, _) = try await ServiceClient.pinned(baseURL: p.server.url, token: nil, tls: p.tls).send("GET", "/v1/vms", step: "t")
            #expect(anon == 401)
            // The overview's checklist says why for each item.
            let o = try await p.fleet.overview("b")
            #expect(o.checklist.map(\.requirement) == ["TPM 2.0", "Secure Boot", "Measured boot", "Boot integrity monitored",
                                                       "DMA protection", "System Guard (DRTM)"])
            #expect(o.checklist.first?.state == .notMet && o.checklist.first?.why.contains("Standard") == true)
            let oa = try await p.fleet.overview("a")
            #expect(oa.checklist.prefix(4).allSatisfy { $0.state == .met })
        }
    }
}

@Suite("Integrity monitoring: alerts with evidence, their lifecycle, silent VMs, webhooks")
struct MonitoringTests {
    @Test func replacedBootLoaderRaisesAnAlertWithEvidenceAndApprovalResolvesIt() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            _ = try await p.fleet.deploy(DeployRequest(name: "app", integrityMonitoring: true))
            let before = try await p.fleet.require("app").lastBoot?.stages.first { $0.kind == "grub" }?.sha256
            let alert = try #require(try await SampleFleet.replaceBootLoader(p.fleet, vm: "app", say: { _ in }))
            let after = try await p.fleet.require("app")
            #expect(after.bootIntegrity == .unhealthy && after.powerState == .running)
            #expect(alert.severity == .high && alert.kind == "boot-integrity" && alert.status == .active)
            let e = try #require(alert.evidence.first { $0.component == .bootLoader })
            #expect(e.name.lowercased().contains("grubx64.efi") && e.pcr == 4 && e.change == "changed")
            #expect(e.from == before && e.to == after.lastBoot?.stages.first { $0.kind == "grub" }?.sha256 && e.from != e.to)
            #expect(e.toSigner?.contains("TrustedLaunch vendor") == true && e.toSigner?.contains("SbatLevel") == false)
            #expect(alert.recommendations.contains { $0.contains("tlaunch vm baseline approve app") })
            #expect(
                alert.recommendations.contains { $0.contains("keep its disk for investigation") && $0.lowercased().contains("grubx64.efi") }
            )
            #expect(!alert.mitigations.isEmpty && alert.description.contains("PCR 4"))
            // The same boot again: the same alert, seen twice, not a second one.
            _ = try await p.fleet.restart("app")
            let active = try await p.fleet.store.alerts(vm: "app", status: .active)
            #expect(active.count == 1 && active.first?.id == alert.id && active.first?.occurrences == 2)
            // Over HTTP, with the evidence.
            let (s, body) = try await p.request("GET", "/v1/alerts/\(alert.id)")
            #expect(s == 200 && ((body as? [String: Any])?["evidence"] as? [Any])?.isEmpty == false)
            // Approval resolves it; the VM attests healthy again.
            let (approved, _) = try await p.request("POST", "/v1/vms/app/baseline/approve")
            #expect(approved == 200)
            let resolved = try #require(try await p.fleet.store.alert(alert.id))
            #expect(resolved.status == .resolved && resolved.resolution?.contains("approved") == true)
            #expect(try await p.fleet.require("app").bootIntegrity == .healthy)
            _ = try await p.fleet.restart("app")
            #expect(try await p.fleet.store.alerts(vm: "app", status: .active).isEmpty)
        }
    }

    @Test func kernelAndCommandLineChangesAreNamedAndAHealthyBootResolves() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            _ = try await p.fleet.deploy(DeployRequest(name: "k", integrityMonitoring: true))
            let keys = try PlatformKeys.loadOrCreate(directory: p.folder.secureBootKeys)
            // An OS update: a new signed kernel.
            _ = try await p.fleet.putFile("k", path: "/vmlinuz", bytes: try SampleImages.signedKernel(keys: keys, build: 0x92))
            _ = try await p.fleet.restart("k")
            let kernel = try #require(try await p.fleet.store.alerts(vm: "k", status: .active).first)
            #expect(
                kernel.severity == .medium && kernel.evidence.allSatisfy { $0.component == .kernel }
                    && kernel.evidence.contains { $0.pcr == 4 && $0.name == "/vmlinuz" })
            #expect(kernel.recommendations.first?.contains("OS update") == true)
            // Someone also edits the command line (grub.cfg): the change is shown from → to.
            let cfg = "set timeout=0\nlinux /vmlinuz console=ttyS0 root=/dev/vda2 ro init=/bin/sh\ninitrd /initrd.img\nboot\n"
            _ = try await p.fleet.putFile("k", path: "/EFI/tlaunch/grub.cfg", bytes: Array(cfg.utf8))
            _ = try await p.fleet.restart("k")
            let active = try await p.fleet.store.alerts(vm: "k", status: .active)
            let cmd = try #require(active.flatMap(\.evidence).first { $0.component == .kernelCommandLine })
            #expect(
                cmd.from?.hasSuffix("console=ttyS0 root=/dev/vda2 ro") == true
                    && cmd.to?.hasSuffix("console=ttyS0 root=/dev/vda2 ro init=/bin/sh") == true && cmd.pcr == 8, "\(cmd)")
            // Restoring the original files: the next boot is healthy and resolves the alerts.
            let (esp, _) = try SampleImages.sampleLinux(keys: keys)
            _ = try await p.fleet.putFile("k", path: "/vmlinuz", bytes: try #require(esp.file("/vmlinuz")))
            _ = try await p.fleet.putFile("k", path: "/EFI/tlaunch/grub.cfg", bytes: try #require(esp.file("/EFI/tlaunch/grub.cfg")))
            let healthy = try await p.fleet.restart("k")
            #expect(healthy.bootIntegrity == .healthy)
            let all = try await p.fleet.store.alerts(vm: "k")
            #expect(all.count == 2 && all.allSatisfy { $0.status == .resolved && $0.resolution?.contains("attested healthy") == true })
        }
    }

    @Test func aPredictedBaselineIsMetByTheFirstBootAndABootLoaderChangeBreaksIt() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            _ = try await p.fleet.deploy(DeployRequest(name: "pred", integrityMonitoring: true, start: false))
            let (s, body) = try await p.request("POST", "/v1/vms/pred/baseline/predict")
            #expect(s == 200 && (body as? [String: Any])?["source"] as? String == "predicted")
            let vm = try await p.fleet.start("pred")
            #expect(vm.bootIntegrity == .healthy)
            #expect(
                try await p.service.history(vm: "pred", limit: 1).first?.checks.contains {
                    $0.name == "baseline" && $0.reason.contains("predicted")
                } == true)
            _ = try await SampleFleet.replaceBootLoader(p.fleet, vm: "pred", say: { _ in })
            let alert = try #require(try await p.fleet.store.alerts(vm: "pred", status: .active).first)
            // The prediction's own events name what changed in PCR 4: the boot loader, its file,
            // its signer — not only "PCR 4 changed".
            #expect(
                alert.evidence.contains {
                    $0.component == .bootLoader && $0.pcr == 4 && $0.name.lowercased().contains("grubx64.efi") && $0.toSigner != nil
                },
                    "\(alert.evidence.map(\.detail))")
            #expect(!alert.evidence.contains { $0.component == .pcrValue && $0.pcr == 4 }, "\(alert.evidence.map(\.detail))")
            #expect(alert.recommendations.contains { $0.contains("predicted PCR values") })
            // A Standard VM has nothing to predict.
            _ = try await p.fleet.deploy(DeployRequest(name: "plain", image: "legacy-bios", securityType: "Standard", start: false))
            #expect(try await p.request("POST", "/v1/vms/plain/baseline/predict").0 == 400)
        }
    }

    @Test func baselineModesAreChosenAtDeploymentAndTrustOnFirstUseIsShown() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            // Default: trust on first use, and the overview says so.
            _ = try await p.fleet.deploy(DeployRequest(name: "tofu", integrityMonitoring: true))
            let tofu = try await p.fleet.overview("tofu")
            #expect(tofu.vm.integrityMonitoring.bootIntegrity == .healthy)
            #expect(tofu.baseline?.source == .learned && tofu.baseline?.description.contains("learned on first use at") == true,
                    "\(String(describing: tofu.baseline))")
            // approve: the first boot waits for a person — Pending, a Low alert that says what to do.
            _ = try await p.fleet.deploy(DeployRequest(name: "careful", integrityMonitoring: true, baseline: "approve"))
            var vm = try await p.fleet.require("careful")
            #expect(vm.bootIntegrity == .pending)
            let alert = try #require(try await p.fleet.store.alerts(vm: "careful", status: .active).first)
            #expect(
                alert.severity == .low && alert.title.contains("waits for approval")
                    && alert.recommendations.contains { $0.contains("tlaunch vm baseline approve careful") })
            #expect(try await p.fleet.overview("careful").baseline?.description.contains("waits for a person") == true)
            _ = try await p.fleet.approveBaseline("careful")
            vm = try await p.fleet.require("careful")
            #expect(vm.bootIntegrity == .healthy)
            #expect(try await p.fleet.store.alerts(vm: "careful", status: .active).isEmpty)
            #expect(try await p.fleet.overview("careful").baseline?.source == .approved)
            // predicted: set from the disk before the first boot, which meets it.
            _ = try await p.fleet.deploy(DeployRequest(name: "foreseen", integrityMonitoring: true, baseline: "predicted"))
            #expect(try await p.fleet.require("foreseen").bootIntegrity == .healthy)
            #expect(try await p.fleet.overview("foreseen").baseline?.source == .predicted)
            // The rule: a mode needs the vTPM; an unknown mode is refused by name.
            var (s, body) = try await p.request("POST", "/v1/vms", ["name": "nomode", "baseline": "sometimes"])
            #expect(
                s == 400 && (body as? [String: Any]).map { (($0["error"] as? [String: Any])?["field"] as? String) == "baseline" } == true)
            (s, _) = try await p.request("POST", "/v1/vms", ["name": "novtpm", "vTpm": false, "baseline": "approve"])
            #expect(s == 400)
            // An admin lets a VM enrol another TPM: an alert says so.
            (s, _) = try await p.request("POST", "/v1/vms/tofu/enrolment/rebind")
            #expect(s == 200)
            #expect(
                try await p.fleet.store.alerts(vm: "tofu", status: .active).contains {
                    $0.kind == "identity" && $0.title.contains("vTPM identity")
                })
            // DELETE …/enrolment is for VMs the service alone knows; a fleet VM is deleted as a whole.
            (s, _) = try await p.request("DELETE", "/v1/vms/tofu/enrolment")
            #expect(s == 409)
        }
    }

    @Test func anUnsignedBootLoaderIsRefusedAndRaisesABootFailure() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            _ = try await p.fleet.deploy(DeployRequest(name: "sb", integrityMonitoring: true))
            let keys = try PlatformKeys.loadOrCreate(directory: p.folder.secureBootKeys)
            var grub = try SampleImages.signedGrub(keys: keys, version: "2.12")
            grub[grub.count / 3] ^= 0x55   // tampered after signing
            _ = try await p.fleet.putFile("sb", path: "/EFI/BOOT/grubx64.efi", bytes: grub)
            let vm = try await p.fleet.restart("sb")
            #expect(vm.powerState == .failed && vm.lastBoot?.succeeded == false)
            let alert = try #require(try await p.fleet.store.alerts(vm: "sb", status: .active).first)
            #expect(alert.kind == "boot-failure" && alert.severity == .high && alert.evidence.first?.component == .bootFailure)
            #expect(alert.recommendations.contains { $0.contains("tlaunch vm disk put sb") })
            // Restore and restart: the boot succeeds and the alert resolves.
            let (esp, _) = try SampleImages.sampleLinux(keys: keys)
            _ = try await p.fleet.putFile("sb", path: "/EFI/BOOT/grubx64.efi", bytes: try #require(esp.file("/EFI/BOOT/grubx64.efi")))
            let ok = try await p.fleet.restart("sb")
            #expect(ok.powerState == .running && ok.bootIntegrity == .healthy)
            #expect(try await p.fleet.store.alert(alert.id)?.status == .resolved)
            // Bad disk writes are refused and change nothing.
            for (path, words) in [("EFI/x", "absolute"), ("/EFI/../etc/passwd", ".."), ("/", "absolute")] {
                let (s, body) = try await p.client.send("PUT", "/v1/vms/sb/disk?path=\(path)", json: Data([1]),
                                                        contentType: "application/octet-stream", step: "t")
                #expect(s == 400 && String(decoding: body, as: UTF8.self).contains(words), "\(path)")
            }
            let (s, _) = try await p.client.send("PUT", "/v1/vms/nosuch/disk?path=/x", json: Data([1]),
                                                 contentType: "application/octet-stream", step: "t")
            #expect(s == 404)
        }
    }

    /// A monitored VM's timeline keeps its boots, failures and changes: an attestation that
    /// finds a healthy VM healthy again is in its attestation history only (every 5 minutes for
    /// every VM of a fleet, such events would bury the rest and grow without end).
    @Test func theTimelineRecordsChangesNotEveryHealthyAttestation() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            _ = try await p.fleet.deploy(DeployRequest(name: "steady", integrityMonitoring: true, attestationInterval: 1))
            // Each pass's clock a little over an interval after the last attestation (however long
            // that one took on a loaded machine), so each pass attests once.
            for _ in 1...3 {
                let last = try #require(try await p.fleet.require("steady").lastAttestation)
                await p.fleet.monitorOnce(now: last + 1100)
            }
            #expect(try await p.service.history(vm: "steady").count == 4)
            var events = try await p.fleet.store.events(vm: "steady").map(\.kind)
            #expect(events.filter { $0 == .attested }.count == 1, "\(events)")
            // A new boot is a change: its first attestation is on the timeline.
            _ = try await p.fleet.restart("steady")
            events = try await p.fleet.store.events(vm: "steady").map(\.kind)
            #expect(events.filter { $0 == .attested }.count == 2 && events.filter { $0 == .boot }.count == 2, "\(events)")
            #expect(try await p.fleet.require("steady").bootIntegrity == .healthy)
        }
    }

    /// The monitor reads only the VMs it has something to do for: a VM that attested a moment
    /// ago is not read again until its interval has passed (a fleet of 100,000 running VMs was
    /// decoded whole every second); a row from before the column existed counts as due.
    @Test func theMonitorReadsOnlyTheVMsThatAreDue() async throws {
        let p = try await TestPlatform.start()
        try await withTeardown({ await p.stop() }) {
            _ = try await p.fleet.deploy(DeployRequest(name: "calm", integrityMonitoring: true, attestationInterval: 300))
            _ = try await p.fleet.deploy(DeployRequest(name: "unwatched", integrityMonitoring: false))
            let last = try #require(try await p.fleet.require("calm").lastAttestation)
            #expect(try await p.fleet.store.monitoredRunning(dueBy: last + 299_000).isEmpty)
            #expect(try await p.fleet.store.monitoredRunning(dueBy: last + 300_000).map(\.name) == ["calm"])
            // The monitor's pass at that time attests it, and it is not due again until later.
            await p.fleet.monitorOnce(now: last + 300_000)
            let again = try #require(try await p.fleet.require("calm").lastAttestation)
            let history = try await p.service.history(vm: "calm")
            #expect(again > last && history.count == 2)
            #expect(try await p.fleet.store.monitoredRunning(dueBy: again + 299_000).isEmpty)
            let sql = try #require(p.service.store as? SQLStore)
            _ = try await sql.backend.query("UPDATE fleet_vms SET attest_due = NULL", [])
            #expect(try await p.fleet.store.monitoredRunning(dueBy: 0).map(\.name) == ["calm"])
        }
    }

    /// A silent VM is told once per silence: later passes neither count repeats nor send webhooks
    /// (they did, once a second), and an alert a person dismissed is not raised again until the
    /// VM has reported and fallen silent anew.
    @Test func aSilentVMIsToldOncePerSilence() async throws {
        let events = Mutex<[String]>([])
        let router = Router()
        router.post("/hook") { request, _ -> Response in
            var r = request
            let body = try await r.collectBody(upTo: 1 << 20)
            if let payload = try? JSONDecoder().decode(WebhookPayload.self,
                                                       from: Data(buffer: body)) { events.withLock { $0.append(payload.event) } }
            return Response(status: .noContent)
        }
        let (port, task) = try await serveOnLoopback(router)
        defer { task.cancel() }
        let p = try await TestPlatform.start(webhooks: [URL(string: "http://127.0.0.1:\(port)/hook")!], silentIntervals: 2)
        try await withTeardown({ await p.stop() }) {
            _ = try await p.fleet.deploy(DeployRequest(name: "mute", integrityMonitoring: true, attestationInterval: 1))
            _ = try await p.fleet.update("mute", UpdateRequest(guestAgent: "stopped"))
            let last = try #require(try await p.fleet.require("mute").lastAttestation)
            for k in Int64(0)..<5 { await p.fleet.monitorOnce(now: last + 2100 + 1000 * k) }
            var alerts = try await p.fleet.store.alerts(vm: "mute")
            #expect(alerts.count == 1 && alerts.first?.occurrences == 1, "\(alerts.map { ($0.kind, $0.occurrences) })")
            let id = try #require(alerts.first?.id)
            // A person dismisses it while the VM is still silent: it stays dismissed.
            #expect(try await p.request("POST", "/v1/alerts/\(id)/dismiss", ["reason": "maintenance window"]).0 == 200)
            for k in Int64(5)..<8 { await p.fleet.monitorOnce(now: last + 2100 + 1000 * k) }
            alerts = try await p.fleet.store.alerts(vm: "mute")
            #expect(alerts.count == 1 && alerts.first?.status == .dismissed, "\(alerts.map { ($0.kind, $0.status) })")
            // The webhook heard it raised and dismissed — no repeats.
            for _ in 0..<400 where await p.fleet.pendingDeliveries() > 0 { try await Task.sleep(for: .milliseconds(50)) }
            let heard = events.withLock { $0 }
            #expect(heard.filter { $0 == "alert.repeated" }.isEmpty && heard.contains("alert.raised") && heard.contains("alert.dismissed"),
                    "\(heard)")
        }
    }

    @Test func aSilentVMRaisesItsAlertAndReportingAgainResolvesIt() async throws {
        let p = try await TestPlatform.start(silentIntervals: 2)
        try await withTeardown({ await p.stop() }) {
            _ = try await p.fleet.deploy(DeployRequest(name: "quiet", integrityMonitoring: true, attestationInterval: 1))
            // The agent attests when due (the monitor's clock is given, not slept through).
            await p.fleet.monitorOnce(now: Time.millis() + 1100)
            #expect(try await p.service.history(vm: "quiet").count == 2)
            // The guest's agent stops; after two intervals the VM is "not reporting".
            _ = try await p.fleet.update("quiet", UpdateRequest(guestAgent: "stopped"))
            let later = Time.millis() + 3300
            await p.fleet.monitorOnce(now: later)
            let alert = try #require(try await p.fleet.store.alerts(vm: "quiet", status: .active).first)
            #expect(alert.kind == "not-reporting" && alert.title == "VM stopped reporting" && alert.evidence.first?.component == .agent)
            #expect(alert.recommendations.contains { $0.contains("tlaunch agent status") })
            // Another pass does not add a second alert.
            await p.fleet.monitorOnce(now: later + 1000)
            #expect(try await p.fleet.store.alerts(vm: "quiet", status: .active).count == 1)
            // The agent runs again: it attests at once and the alert resolves.
            _ = try await p.fleet.update("quiet", UpdateRequest(guestAgent: "running"))
            let resolved = try #require(try await p.fleet.store.alert(alert.id))
            #expect(resolved.status == .resolved && resolved.resolution?.contains("reported again") == true)
            // Dismissing: an active alert only.
            let (s, body) = try await p.request("POST", "/v1/alerts/\(alert.id)/dismiss", ["reason": "test"])
            #expect(s == 409 && TestPlatform.message(body).contains("already resolved"))
            #expect(try await p.request("POST", "/v1/alerts/alert-nosuch/dismiss").0 == 404)
        }
    }

    @Test func webhooksAreDeliveredWithRetry() async throws {
        // A receiver that fails twice, then accepts.
        let received = Mutex<[(attempt: String, body: Data, signature: String)]>([])
        let router = Router()
        router.post("/hook") { request, _ -> Response in
            var r = request
            let body = try await r.collectBody(upTo: 1 << 20)
            func header(_ name: String) -> String { request.headers.first { $0.name.rawName.lowercased() == name }?.value ?? "" }
            let n = received.withLock { $0.append((header("x-tlaunch-delivery-attempt"), Data(buffer: body),
                                                   header("x-tlaunch-signature"))); return $0.count }
            return Response(status: n <= 2 ? .internalServerError : .noContent)
        }
        let (port, task) = try await serveOnLoopback(router)
        defer { task.cancel() }
        let p = try await TestPlatform.start(webhooks: [URL(string: "http://127.0.0.1:\(port)/hook")!], webhookBackoff: .milliseconds(50))
        try await withTeardown({ await p.stop() }) {
            _ = try await p.fleet.deploy(DeployRequest(name: "hooked", integrityMonitoring: true))
            let alert = try #require(try await SampleFleet.replaceBootLoader(p.fleet, vm: "hooked", say: { _ in }))
            for _ in 0..<2400 where await p.fleet.pendingDeliveries() > 0 { try await Task.sleep(for: .milliseconds(50)) }
            #expect(await p.fleet.pendingDeliveries() == 0)
            #expect(p.fleet.webhooks.delivered.load(ordering: .relaxed) == 1)
            #expect(p.fleet.webhooks.failedAttempts.load(ordering: .relaxed) == 2)
            let got = received.withLock { $0 }
            #expect(got.map(\.attempt) == ["1", "2", "3"])
            let payload = try JSONDecoder().decode(WebhookPayload.self, from: try #require(got.last?.body))
            #expect(
                payload.event == "alert.raised" && payload.alert.id == alert.id
                    && payload.alert.evidence.contains { $0.component == .bootLoader })
            // Every delivery is signed for this receiver: the body as sent verifies; a changed
            // body, another receiver's secret or a replay 10 minutes later does not.
            let url = URL(string: "http://127.0.0.1:\(port)/hook")!
            let secret = p.fleet.webhooks.secret(for: url)
            let last = try #require(got.last)
            #expect(got.allSatisfy { WebhookNotifier.verify(body: $0.body, header: $0.signature, secret: secret) },
                    "\(got.map(\.signature))")
            var forged = last.body
            forged[forged.count / 2] ^= 0x01
            #expect(!WebhookNotifier.verify(body: forged, header: last.signature, secret: secret))
            #expect(!WebhookNotifier.verify(body: last.body, header: last.signature,
                                            secret: p.fleet.webhooks.secret(for: URL(string: "http://127.0.0.1:\(port)/other")!)))
            #expect(!WebhookNotifier.verify(body: last.body, header: last.signature, secret: secret,
                                            now: Int(Date().timeIntervalSince1970) + 600))
        }
    }

    @Test func webhookDeliveriesWaitInTheDatabaseAcrossARestart() async throws {
        // A receiver that takes the request and does not answer while `holding`: the platform
        // stops with that delivery under way (claimed, the POST waiting for its timeout). Then it
        // answers (one receiver on one port throughout: nothing can take the port in between).
        let holding = Mutex(true)
        let received = Mutex<[Data]>([])
        let probe = Router()
        probe.post("/hook") { request, _ -> Response in
            var r = request
            let body = try await r.collectBody(upTo: 1 << 20)
            if holding.withLock({ $0 }) {
                // Held past its sender's timeout; answered (and not counted) once it is let go.
                while holding.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(50)) }
                return Response(status: .serviceUnavailable)
            }
            received.withLock { $0.append(Data(buffer: body)) }
            return Response(status: .ok)
        }
        let (port, task) = try await serveOnLoopback(probe)
        defer { task.cancel() }
        let url = URL(string: "http://127.0.0.1:\(port)/hook")!
        let first = try await TestPlatform.start(webhooks: [url], webhookBackoff: .seconds(1))
        _ = try await first.fleet.deploy(DeployRequest(name: "later", integrityMonitoring: true))
        let alert = try #require(try await SampleFleet.replaceBootLoader(first.fleet, vm: "later", say: { _ in }))
        func claimed() async -> Bool {
            ((try? await first.fleet.store.dueDeliveries(now: .max))?.first?.nextAttempt ?? 0) > Time.millis() + 30_000
        }
        for _ in 0..<2400 where !(await claimed()) { try await Task.sleep(for: .milliseconds(20)) }
        #expect(await claimed(), "the delivery was not under way")
        await first.stop(keepData: true)
        #expect(first.fleet.deliveryPasses == 0, "a delivery pass outlived the platform's shutdown")
        holding.withLock { $0 = false }
        // The attempt under way failed (and, on a loaded machine, perhaps the retry a second later).
        #expect(first.fleet.webhooks.failedAttempts.load(ordering: .relaxed) >= 1)

        // The receiver answers now; the platform starts again on the same data folder and delivers.
        let second = try await TestPlatform.start(webhooks: [url], webhookBackoff: .milliseconds(50), dir: first.dir)
        try await withTeardown({ await second.stop() }) {
            // The stopping platform wrote the failed attempt down instead of leaving its 60 s claim.
            let waiting = try await second.fleet.store.dueDeliveries(now: .max)
            #expect(waiting.allSatisfy { $0.nextAttempt < Time.millis() + 5_000 },
                    "a claim outlived the platform that made it: \(waiting.map(\.nextAttempt))")
            // The stopped platform left no claim behind: the delivery is due again within the
            // backoff it wrote (≤ 2 s after two failures), not after a 60 s lease. Monitor passes
            // pick it up, as the platform's monitor loop does.
            let clock = ContinuousClock(), start = clock.now
            while await second.fleet.pendingDeliveries() > 0, clock.now - start < .seconds(120) {
                await second.fleet.monitorOnce()
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(clock.now - start < .seconds(30), "the delivery waited out a lease the first platform left")
            #expect(await second.fleet.pendingDeliveries() == 0)
            let got = received.withLock { $0 }
            #expect(got.count == 1)
            let payload = try JSONDecoder().decode(WebhookPayload.self, from: try #require(got.first))
            #expect(payload.alert.id == alert.id && payload.event == "alert.raised")
        }
    }
}
