import ArgumentParser
import Attestation
import AttestationAPI
import Fleet
import VirtualFirmware
import Foundation
import GuestAgent

/// An error the command line prints as it is (the server's message says what to do).
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Talks to the platform's API for the `vm`, `image` and `alert` commands.
struct API {
    let client: ServiceClient

    init(_ options: ClientOptions) throws {
        var c = try options.client
        c.patient = true
        client = c
    }

    func send(_ method: String, _ path: String, body: Data? = nil, contentType: String = "application/json") async throws -> Data {
        let (status, data): (Int, Data)
        do { (status, data) = try await client.send(method, path, json: body, contentType: contentType,
                                                    step: "\(method) \(path)") } catch let e as AgentError {
            throw Self.unreachable(e)
        }
        guard (200..<300).contains(status) else { throw Self.failure(status, data) }
        return data
    }

    /// The platform's readiness: when it cannot write its storage (a full or read-only data
    /// folder, the database down), what was printed may be stale — say why on stderr and exit 3.
    func requireReady() async throws {
        guard let (status, data) = try? await client.send("GET", "/readyz", step: "readyz"), status == 503 else { return }
        let reason = (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["reason"] as? String ?? "unknown"
        FileHandle.standardError.write(Data("WARNING: the platform cannot keep its state: \(ConsoleText.printable(reason))\n".utf8))
        throw ExitCode(3)
    }

    /// A request that got no answer: a TLS refusal already says what to check; otherwise the
    /// platform may not be running.
    static func unreachable(_ e: AgentError) -> CLIError {
        e.message.contains("TLS") ? CLIError(e.message) : CLIError("\(e.message) — is the platform running? (tlaunch up, or --server / "
                                                                 + "TLAUNCH_SERVER)")
    }

    /// The server's refusal as the command line says it.
    static func failure(_ status: Int, _ data: Data) -> CLIError {
        let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        let err = obj?["error"] as? [String: Any]
        let message = err?["message"] as? String ?? String(decoding: data.prefix(400), as: UTF8.self)
        if status == 401 { return CLIError("\(message) (give --token, set TLAUNCH_TOKEN, or use --data for the folder with admin.token)") }
        return CLIError(message)
    }

    func get<T: Decodable>(_ path: String, as: T.Type) async throws -> T { try decode(T.self, try await send("GET", path)) }

    /// A deploy, start or restart of `vm`, asked to run on after the answer (`Prefer:
    /// respond-async`): the platform answers 202 at once and the command follows the VM's activity
    /// with short requests, printing each step on stderr, then reads the VM. (Holding one request
    /// open for the whole boot would cost nothing on the server, but URLSession on Linux spins a
    /// CPU while it waits — on a 2-core host that CPU is the one a TCG guest boots on.)
    func operation(_ vm: String, _ method: String, _ path: String, body: Data? = nil) async throws -> Data {
        let (status, data): (Int, Data)
        do {
            (status, data) = try await client.send(method, path, json: body, headers: ["Prefer": "respond-async"],
                                                   step: "\(method) \(path)")
        } catch let e as AgentError {
            throw Self.unreachable(e)
        }
        guard status == 202 else {
            guard (200..<300).contains(status) else { throw Self.failure(status, data) }
            return data
        }
        let activity = "/v1/vms/\(API.escape(vm))/activity"
        var printed = 0
        while true {
            let a = try await get(activity, as: VMActivity.self)
            for step in a.steps.dropFirst(printed) {
                FileHandle.standardError.write(Data("  … \(ConsoleText.printable(step.message))\n".utf8))
            }
            printed = a.steps.count
            if !a.busy {
                if let error = a.error { throw CLIError(error) }
                break
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        return try await send("GET", "/v1/vms/\(API.escape(vm))")
    }

    func call<T: Decodable>(_ method: String, _ path: String, _ body: some Encodable, as: T.Type) async throws -> T {
        try decode(T.self, try await send(method, path, body: try JSONEncoder().encode(body)))
    }

    func decode<T: Decodable>(_ t: T.Type, _ data: Data) throws -> T {
        do { return try JSONDecoder().decode(T.self, from: data) } catch { throw CLIError("the server's answer does not decode as "
                                                                                        + "\(T.self): \(error)") }
    }

    static func escape(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?#"))) ?? s
    }
}

/// Pretty, sorted JSON as the CLI prints it.
func prettyJSON(_ v: some Encodable) throws -> String {
    let e = JSONEncoder(); e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    return String(decoding: try e.encode(v), as: UTF8.self)
}

func printJSON(_ v: some Encodable) throws { print(try prettyJSON(v)) }

/// `true`/`false` (also on/off, yes/no) for the settings flags.
func parseBool(_ s: String?, _ flag: String) throws -> Bool? {
    guard let s else { return nil }
    switch s.lowercased() {
    case "true", "on", "yes", "1", "enabled": return true
    case "false", "off", "no", "0", "disabled": return false
    default: throw ValidationError("\(flag) takes true or false (got \"\(s)\")")
    }
}

/// What the command line prints of the platform's records. Much of it comes from guests (a
/// kernel command line from grub.cfg, a boot loader's path, console excerpts in alerts): every
/// rendering passes through `ConsoleText.printable`, so no escape sequence or control character
/// a guest wrote reaches the admin's terminal.
enum Render {
    static func table(_ rows: [[String]]) -> String {
        let rows = rows.map {
            $0.map { ConsoleText.printable($0).replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\t", with: " ") }
        }
        guard let first = rows.first else { return "" }
        var widths = first.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        return rows.map { r in
            r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(
                separator: "  ")
        }
            .joined(separator: "\n")
    }

    /// Tab-separated rows for scripts: cells made printable, their tabs and newlines as spaces.
    static func tsv(_ rows: [[String]]) -> String {
        rows.map {
            $0.map { ConsoleText.printable($0).replacingOccurrences(of: "\t", with: " ").replacingOccurrences(of: "\n", with: " ") }.joined(
                separator: "\t")
        }
            .joined(separator: "\n")
    }

    static func enabled(_ b: Bool) -> String { b ? "Enabled" : "Disabled" }
    static func securityType(_ s: String) -> String { s == "TrustedLaunch" ? "Trusted launch" : "Standard" }

    static func fleet(_ vms: [VMView]) -> String {
        var out = table(fleetRows(vms))
        for v in vms { if let s = v.storageInterruption { out += "\n(!) \(ConsoleText.printable(v.name)): \(ConsoleText.printable(s)) — "
                                                               + "its record may be behind its vTPM and disk" } }
        return out
    }

    /// The fleet's columns, the header first.
    static func fleetRows(_ vms: [VMView]) -> [[String]] {
        // The HOST column when any VM is on a libvirt host.
        let hosts = vms.contains { $0.host != nil }
        var rows = [["NAME", "POWER", "SECURITY TYPE", "SECURE BOOT", "VTPM", "INTEGRITY MONITORING", "BOOT INTEGRITY", "LAST ATTESTATION",
                     "ALERTS"]]
        if hosts { rows[0].insert("HOST", at: 2) }
        for v in vms {
            var row = [v.name, v.powerState.rawValue + (v.storageInterruption == nil ? "" : " (!)"),
                       securityType(v.securityProfile.securityType), enabled(v.securityProfile.uefiSettings.secureBootEnabled),
                       enabled(v.securityProfile.uefiSettings.vTpmEnabled), enabled(v.integrityMonitoring.enabled),
                       v.integrityMonitoring.bootIntegrity.display, v.integrityMonitoring.lastAttestation ?? "-",
                       v.alerts.isEmpty ? "-" : "\(v.alerts.count) active"]
            if hosts { row.insert(v.host ?? "-", at: 2) }
            rows.append(row)
        }
        return rows
    }

    static func overview(_ o: VMOverview) -> String {
        let v = o.vm
        var out = "\(v.name) — \(v.powerState), image \(v.image), hypervisor \(v.hypervisor)\(v.host.map { " on host \($0)" } ?? ""), "
                + "version \(v.version)\n"
        if let s = v.storageInterruption { out += "  STORAGE FAILURE: \(s) — the record may be behind the VM's vTPM and disk\n" }
        let bi = v.integrityMonitoring.bootIntegrity.display
        out += table([
            ["  Security type", securityType(v.securityProfile.securityType)],
            ["  Secure Boot", enabled(v.securityProfile.uefiSettings.secureBootEnabled)],
            ["  vTPM", enabled(v.securityProfile.uefiSettings.vTpmEnabled)],
            ["  Integrity monitoring", enabled(v.integrityMonitoring.enabled)],
            ["  Boot integrity", bi + (v.integrityMonitoring.lastAttestation.map { " (last attestation \($0))" } ?? "")],
        ] + (o.baseline.map { [["  Baseline", $0.description]] } ?? [])) + "\n"
        if let b = v.lastBoot {
            out +=
                "  Last boot: \(b.number) at \(b.time): "
                + (b.succeeded ? "reached \(b.kernel ?? "the OS")" : "FAILED: \(b.failure ?? "?")")
                + " (\(b.firmware); Secure Boot \(b.secureBootEnforced ? "enforced" : "not enforced"); "
                + "\(b.measured ? "\(b.events) events measured" : "not measured"))\n"
            for s in b.stages { out += """
                    \(s.kind.padding(toLength: 6, withPad: " ", startingAt: 0)) \
                \(s.path)\(s.verifiedBy.map { "  verified by \($0)" } ?? "")\(s.authority.map { ": \($0)" } ?? "")\n
                """ }
            if let c = b.kernelCommandLine { out += "    command line: \(c)\n" }
        }
        if v.alerts.isEmpty { out += "  Active alerts: none\n" } else {
            out += "  Active alerts:\n" + v.alerts.map { "    \($0.id)  \($0.severity)  \($0.title)\n" }.joined()
        }
        out += "  Security readiness (Secured-core checklist):\n"
        let w = o.checklist.map(\.requirement.count).max() ?? 0
        for c in o.checklist { out += "    \(c.requirement.padding(toLength: w, withPad: " ", startingAt: 0))  "
                                    + "\(c.state.rawValue.padding(toLength: 14, withPad: " ", startingAt: 0))  \(c.why)\n" }
        if !o.recommendations.isEmpty { out += "  Recommendations:\n" + o.recommendations.map { "    - \($0)\n" }.joined() }
        return ConsoleText.printable(out)
    }

    static func alert(_ a: Alert) -> String {
        var out = "\(a.id)  [\(a.severity.rawValue)] \(a.title)\n"
        out += "  VM \(a.vm) · \(a.status.rawValue) · raised \(a.created) · seen \(a.occurrences)× · last "
             + "\(a.updated)\(a.attestationID.map { " · attestation \($0)" } ?? "")\n"
        if let r = a.resolution { out += "  Resolution: \(r)\n" }
        out += "  \(a.description)\n  Evidence:\n"
        for e in a.evidence { out += "    - [\(e.component)] \(e.detail)\n" }
        out += "  Recommendations:\n" + a.recommendations.map { "    - \($0)\n" }.joined()
        out += "  Mitigations:\n" + a.mitigations.map { "    - \($0)\n" }.joined()
        return ConsoleText.printable(out)
    }
}

struct VMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vm", abstract: "Deploy and run VMs (Trusted Launch by default) and see their security.",
        subcommands: [Create.self, List.self, Show.self, Start.self, Stop.self, Restart.self, Delete.self, Update.self, Disk.self,
                      Baseline.self, Attest.self, Guest.self, Console.self,
                                   RebindTPM.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create", abstract: "Deploy a VM. Trusted Launch (Secure Boot + "
                                                                                       + "vTPM) unless --security-type Standard.")
        @Argument var name: String
        @Option(help: "The image (tlaunch image list). Default: sample-linux.") var image: String?
        @Option(help: "TrustedLaunch (default) or Standard. Chosen now: it cannot be changed later.") var securityType: String?
        @Option(name: [.long, .customLong("enable-secure-boot")],
                help: "true (default for TrustedLaunch) or false (also as az's --enable-secure-boot).") var secureBoot: String?
        @Option(name: [.customLong("vtpm"), .customLong("enable-vtpm")],
                help: "true (default for TrustedLaunch) or false (also --enable-vtpm).") var vtpm: String?
        @Option(
            name: [.long, .customLong("enable-integrity-monitoring")],
            help: "true or false (default); can be switched later (also --enable-integrity-monitoring).") var integrityMonitoring: String?
        @Option(help: """
            simulated (the built-in hypervisor), qemu (a real VM: QEMU + OVMF, its own agent inside) or libvirt (the same as a libvirt \
            domain; the platform needs --libvirt-uri or --hypervisor libvirt).
            """) var hypervisor: String?
        @Option(help: "Seconds between periodic attestations (default 300).") var attestationInterval: Int?
        @Option(help: """
            How the first baseline is set: learn (trust on first use: the first boot with complete evidence that passes the policy; \
            default), approve (a person approves the first boot), predicted (from the disk, before it boots).
            """)
        var baseline: String?
        @Option(help: "The libvirt host to place it on (tlaunch host list; default: the answering host with the most room).") var host:
            String?
        @Flag(help: "Do not start it.") var noStart = false
        @OptionGroup var output: ObjectOutput
        var json: Bool { output.isJSON }
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let req = DeployRequest(name: name, image: image, securityType: securityType,
                                    secureBoot: try parseBool(secureBoot, "--secure-boot"),
                vTpm: try parseBool(vtpm, "--vtpm"), integrityMonitoring: try parseBool(integrityMonitoring, "--integrity-monitoring"),
                                    hypervisor: hypervisor, start: !noStart, attestationInterval: attestationInterval, baseline: baseline,
                                    host: host)
            let api = try API(client)
            let vm = try api.decode(VMView.self, try await api.operation(name, "POST", "/v1/vms", body: try JSONEncoder().encode(req)))
            if json { try printJSON(vm); return }
            print("Deployed \(vm.name): \(Render.securityType(vm.securityProfile.securityType)), \(vm.powerState)")
            let o = try await api.get("/v1/vms/\(API.escape(vm.name))/overview", as: VMOverview.self)
            print(Render.overview(o), terminator: "")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "The fleet with its security columns.")
        @OptionGroup var output: ListOutput
        var json: Bool { output.isJSON }
        @OptionGroup var client: ClientOptions
        func run() async throws {
            // Every page (the server answers 1000 VMs at a time).
            let api = try API(client)
            var vms: [VMView] = []
            var after: String?
            repeat {
                let page = try await api.get("/v1/vms?limit=1000" + (after.map { "&after=\(API.escape($0))" } ?? ""), as: [VMView].self)
                vms += page
                after = page.count == 1000 ? page.last?.name : nil
            } while after != nil
            if json {
                try printJSON(vms)
            } else if output.chosen == .tsv {
                if !vms.isEmpty { print(output.text(Render.fleetRows(vms))) }
            } else {
                print(vms.isEmpty ? "No VMs (tlaunch vm create NAME)" : Render.fleet(vms))
            }
            try await api.requireReady()
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "The VM's overview: security settings, boot "
                                                                                     + "integrity, alerts, readiness checklist.")
        @Argument var name: String
        @OptionGroup var output: ObjectOutput
        var json: Bool { output.isJSON }
        @Flag(help: "With --json: the whole overview.") var overview = false
        @OptionGroup var client: ClientOptions
        func run() async throws {
            let api = try API(client)
            if json && !overview {
                try printJSON(try await api.get("/v1/vms/\(API.escape(name))", as: VMView.self))
            } else {
                let o = try await api.get("/v1/vms/\(API.escape(name))/overview", as: VMOverview.self)
                if json { try printJSON(o) } else { print(Render.overview(o), terminator: "") }
            }
            try await api.requireReady()
        }
    }

    struct Lifecycle: ParsableArguments {
        @Argument var name: String
        @OptionGroup var output: ObjectOutput
        var json: Bool { output.isJSON }
        @OptionGroup var client: ClientOptions
        func run(_ action: String) async throws {
            let api = try API(client)
            let path = "/v1/vms/\(API.escape(name))/\(action)"
            let body = action == "stop" ? try await api.send("POST", path) : try await api.operation(name, "POST", path)
            let vm = try decodeVM(body, api)
            if json { try printJSON(vm); return }
            print(
                "\(vm.name): \(vm.powerState)"
                    + (vm.lastBoot.map { b in
                        " — boot \(b.number) " + (b.succeeded ? "reached \(b.kernel ?? "the OS")" : "FAILED: \(b.failure ?? "?")")
                    } ?? "")
                  + (vm.integrityMonitoring.enabled ? "; boot integrity \(vm.integrityMonitoring.bootIntegrity.display)" : ""))
            for a in vm.alerts { print("  alert \(a.id) [\(a.severity)] \(a.title) — tlaunch alert show \(a.id)") }
        }
        func decodeVM(_ d: Data, _ api: API) throws -> VMView { try api.decode(VMView.self, d) }
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "start", abstract: "Start: a new measured boot (and, with integrity "
                                                                                      + "monitoring, an attestation).")
        @OptionGroup var l: Lifecycle
        func run() async throws { try await l.run("start") }
    }
    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop the VM (its vTPM state is kept).")
        @OptionGroup var l: Lifecycle
        func run() async throws { try await l.run("stop") }
    }
    struct Restart: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "restart", abstract: "Restart: power-cycle the vTPM and boot again.")
        @OptionGroup var l: Lifecycle
        func run() async throws { try await l.run("restart") }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "delete",
                                                        abstract: "Delete the VM: its disk and its vTPM state are destroyed.")
        @Argument var name: String
        @Flag(name: [.customShort("y"), .long],
              help: "Do not ask (a terminal is asked to confirm; scripts and pipes are not).") var yes = false
        @OptionGroup var client: ClientOptions
        func run() async throws {
            // On a terminal, the vTPM's keys and secrets being destroyed for good is confirmed first.
            if !yes, isatty(STDIN_FILENO) == 1 {
                FileHandle.standardError.write(
                    Data("Delete \(name)? Its disk and its vTPM (keys, sealed secrets, EK) are destroyed for good. [y/N] ".utf8))
                guard let answer = readLine(), ["y", "yes"].contains(answer.trimmingCharacters(in: .whitespaces).lowercased()) else {
                    print("Not deleted")
                    throw ExitCode(1)
                }
            }
            _ = try await API(client).send("DELETE", "/v1/vms/\(API.escape(name))")
            print("Deleted \(name) (its vTPM state is destroyed)")
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "update", abstract: "Change a VM's settings (integrity monitoring at "
                                                                                       + "any time; Secure Boot and vTPM while stopped).")
        @Argument var name: String
        @Option(help: "Refused: the security type is chosen at deployment.") var securityType: String?
        @Option(name: [.long, .customLong("enable-secure-boot")],
                help: "true or false (TrustedLaunch VMs, while stopped; also --enable-secure-boot).") var secureBoot: String?
        @Option(name: [.customLong("vtpm"), .customLong("enable-vtpm")],
                help: "true or false (TrustedLaunch VMs, while stopped; also --enable-vtpm).") var vtpm: String?
        @Option(name: [.long, .customLong("enable-integrity-monitoring")],
                help: "true or false (needs the vTPM; also --enable-integrity-monitoring).") var integrityMonitoring: String?
        @Option(help: "running or stopped: the simulated guest's attestation agent.") var guestAgent: String?
        @Option(help: "Seconds between periodic attestations.") var attestationInterval: Int?
        @Option(help: "Only if the VM is still at this version (from vm show --json).") var ifVersion: Int64?
        @OptionGroup var output: ObjectOutput
        var json: Bool { output.isJSON }
        @OptionGroup var client: ClientOptions
        func run() async throws {
            let req = UpdateRequest(securityType: securityType, secureBoot: try parseBool(secureBoot, "--secure-boot"),
                                    vTpm: try parseBool(vtpm, "--vtpm"),
                integrityMonitoring: try parseBool(integrityMonitoring, "--integrity-monitoring"), guestAgent: guestAgent,
                                    attestationInterval: attestationInterval, version: ifVersion)
            guard req != UpdateRequest(version: ifVersion) else { throw ValidationError("nothing to change: give --secure-boot, --vtpm, "
                                                                                      + "--integrity-monitoring, --guest-agent or "
                                                                                      + "--attestation-interval") }
            let vm = try await API(client).call("PATCH", "/v1/vms/\(API.escape(name))", req, as: VMView.self)
            if json { try printJSON(vm); return }
            print("\(vm.name) updated: Secure Boot \(Render.enabled(vm.securityProfile.uefiSettings.secureBootEnabled)), vTPM "
                + "\(Render.enabled(vm.securityProfile.uefiSettings.vTpmEnabled)), integrity monitoring "
                + "\(Render.enabled(vm.integrityMonitoring.enabled)) (boot integrity \(vm.integrityMonitoring.bootIntegrity.display))")
        }
    }

    struct Disk: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "disk", abstract: "Change what is on a VM's boot disk.",
                                                        subcommands: [Put.self])
        struct Put: AsyncParsableCommand {
            static let configuration = CommandConfiguration(commandName: "put", abstract: "Write FILE to PATH on the VM's EFI System "
                                                                                        + "Partition (takes effect at the next boot).")
            @Argument var name: String
            @Argument(help: "The path on the disk, e.g. /EFI/BOOT/grubx64.efi.") var path: String
            @Argument(help: "The local file to write.") var file: String
            @OptionGroup var client: ClientOptions
            func run() async throws {
                guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
                var allowed = CharacterSet.urlQueryAllowed
                allowed.remove(charactersIn: "&=+#")
                let q = path.addingPercentEncoding(withAllowedCharacters: allowed) ?? path
                _ = try await API(client).send("PUT", "/v1/vms/\(API.escape(name))/disk?path=\(q)", body: data,
                                               contentType: "application/octet-stream")
                print("Wrote \(data.count) bytes to \(path) on \(name); it takes effect at the next boot (tlaunch vm restart \(name))")
            }
        }
    }

    struct RebindTPM: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rebind-tpm",
            abstract: "Let the VM's next enrolment bind another TPM (its vTPM was replaced on purpose); raises an alert, resets the "
                    + "baseline.")
        @Argument var name: String
        @OptionGroup var client: ClientOptions
        func run() async throws {
            _ = try await API(client).send("POST", "/v1/vms/\(API.escape(name))/enrolment/rebind")
            print("\(name) may now enrol another TPM; its baseline is reset when that TPM enrols (an alert says so: tlaunch alert list "
                + "--vm \(name))")
        }
    }

    struct Baseline: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "baseline", abstract: "The VM's boot baseline (what integrity "
                                                                                         + "monitoring compares each boot with).",
                                                        subcommands: [Show.self, Approve.self, Predict.self, Reset.self])
        struct Show: AsyncParsableCommand {
            static let configuration = CommandConfiguration(commandName: "show", abstract: "The baseline's components.")
            @Argument var name: String
            @OptionGroup var output: ObjectOutput
            var json: Bool { output.isJSON }
            @OptionGroup var client: ClientOptions
            func run() async throws {
                let b = try await API(client).get("/v1/vms/\(API.escape(name))/baseline", as: BaselineRecord.self)
                if json { try printJSON(b); return }
                print("Baseline of \(b.vm): \(b.source), \(b.components.count) "
                    + "components\(b.attestationID.map { ", from attestation \($0)" } ?? "")")
                for c in b.components {
                    let v = c.value.count == 64 ? String(c.value.prefix(16)) + "…" : c.value
                    print("  PCR \(String(c.pcr).padding(toLength: 2, withPad: " ", startingAt: 0))  "
                        + "\(c.kind.rawValue.padding(toLength: 26, withPad: " ", startingAt: 0))  \(c.name)  "
                        + "\(v)\(c.signer.map { "  (\($0))" } ?? "")")
                }
            }
        }
        struct Approve: AsyncParsableCommand {
            static let configuration = CommandConfiguration(commandName: "approve", abstract: "Approve the VM's last boot as its baseline "
                                                                                            + "(after an update you made).")
            @Argument var name: String
            @Option(help: "Approve this attestation instead of the latest.") var attestation: String?
            @OptionGroup var client: ClientOptions
            func run() async throws {
                struct Body: Encodable { var attestationId: String? }
                let api = try API(client)
                let b = try await api.call("POST", "/v1/vms/\(API.escape(name))/baseline/approve", Body(attestationId: attestation),
                                           as: BaselineRecord.self)
                print("Approved attestation \(b.attestationID ?? "?") as the baseline of \(name) (\(b.components.count) components)")
                let vm = try await api.get("/v1/vms/\(API.escape(name))", as: VMView.self)
                print("Boot integrity: \(vm.integrityMonitoring.bootIntegrity.display); active alerts: \(vm.alerts.count)")
            }
        }
        struct Predict: AsyncParsableCommand {
            static let configuration = CommandConfiguration(commandName: "predict", abstract: "Set the baseline from the PCRs the virtual "
                                                                                            + "firmware predicts for the VM's disk.")
            @Argument var name: String
            @OptionGroup var client: ClientOptions
            func run() async throws {
                let api = try API(client)
                let data = try await api.send("POST", "/v1/vms/\(API.escape(name))/baseline/predict")
                let b = try api.decode(BaselineRecord.self, data)
                print("Baseline of \(name) set from predicted PCRs: " + b.components.map { "\($0.pcr)" }.joined(separator: ", "))
            }
        }
        struct Reset: AsyncParsableCommand {
            static let configuration = CommandConfiguration(commandName: "reset",
                                                            abstract: "Forget the baseline: the next healthy boot is learned.")
            @Argument var name: String
            @OptionGroup var client: ClientOptions
            func run() async throws {
                _ = try await API(client).send("DELETE", "/v1/vms/\(API.escape(name))/baseline")
                print("Baseline of \(name) reset: the next healthy boot becomes the baseline")
            }
        }
    }

    struct Attest: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "attest",
                                                        abstract: "Run the VM's guest attestation agent now and print each check.")
        @Argument var name: String
        @OptionGroup var output: ObjectOutput
        var json: Bool { output.isJSON }
        @OptionGroup var client: ClientOptions
        func run() async throws {
            let api = try API(client)
            let data = try await api.send("POST", "/v1/vms/\(API.escape(name))/attest")
            let o = try api.decode(AttestationOutcome.self, data)
            if json { try printJSON(o) } else {
                print("\(o.vm): \(o.passed ? "PASSED" : "FAILED") (\(o.status)) attestation \(o.id)")
                for c in o.checks { print("  \(c.passed ? "ok  " : "FAIL") \(c.name): \(c.reason)") }
            }
            if !o.passed { throw ExitCode(1) }
        }
    }

    struct Console: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "console", abstract: "A real VM's serial console (firmware, boot "
                                                                                        + "loader, kernel, the guest's agent).")
        @Argument var name: String
        @Flag(help: "The previous boot's console.") var previous = false
        @Flag(help: "Keep printing what the VM writes (Ctrl-C to stop).") var follow = false
        @OptionGroup var client: ClientOptions
        func run() async throws {
            let api = try API(client)
            let path = "/v1/vms/\(API.escape(name))/console\(previous ? "?previous=true" : "")"
            var shown = 0
            while true {
                let text = String(decoding: try await api.send("GET", path), as: UTF8.self)
                if text.count < shown { shown = 0 }   // a new boot began a new console
                let new = String(text.dropFirst(shown))
                // The console is the guest's: control characters (escape sequences) are not passed to this terminal.
                FileHandle.standardOutput.write(Data(ConsoleText.printable(new).utf8))
                shown = text.count
                guard follow else { return }
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    struct Guest: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "guest",
                                                        abstract: "What `tlaunch agent status` shows inside the (simulated) guest.")
        @Argument var name: String
        @OptionGroup var output: ObjectOutput
        var json: Bool { output.isJSON }
        @OptionGroup var client: ClientOptions
        func run() async throws {
            let s = try await API(client).get("/v1/vms/\(API.escape(name))/guest", as: GuestStatus.self)
            if json { try printJSON(s) } else { print(AgentCommand.Status.render(s), terminator: "") }
        }
    }
}

struct ImageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "image", abstract: "Images VMs are deployed from.",
                                                    subcommands: [List.self, Show.self, Import.self, SampleKernel.self])

    /// A file to put on a VM's disk for the README's stories: an OS update (another kernel build
    /// signed by the key sample-linux's shim trusts) or a tampered file (one nobody signed).
    struct SampleKernel: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sample-kernel",
            abstract: "Write another build of sample-linux's kernel: signed with the platform's vendor key (an OS update), or --unsigned "
                    + "(what shim refuses).")
        @Option(help: "The build, 1–255 (sample-linux's own kernel is build 144; each build is a different file).") var build: Int = 2
        @Flag(help: "Leave it unsigned: under Secure Boot, shim refuses to start it.") var unsigned = false
        @Option(name: [.customShort("o"), .long], help: "The file to write.") var output: String
        @Option(help: "The platform data folder (its Secure Boot keys). Default: $TLAUNCH_DATA, else ~/.tlaunch.") var data: String?
        func run() throws {
            guard (1...255).contains(build), build != 0x90 else { throw ValidationError("--build must be 1–255 and not 144 "
                                                                                      + "(sample-linux's own kernel)") }
            let keysDirectory = DataFolder.resolve(data).secureBootKeys
            let keys = try PlatformKeys.loadOrCreate(directory: keysDirectory)
            let bytes =
                unsigned
                ? try SampleImages.unsignedKernel(keys: keys, build: UInt8(build))
                : try SampleImages.signedKernel(keys: keys, build: UInt8(build))
            guard FileManager.default.createFile(atPath: output,
                                                 contents: Data(bytes)) else { throw ValidationError("cannot write \(output)") }
            print("\(output): sample-linux kernel build \(build), "
                + "\(unsigned ? "unsigned" : "signed with the platform's vendor key (\(keysDirectory.path))"), \(bytes.count) bytes")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "The images, with their generation.")
        @OptionGroup var output: ListOutput
        var json: Bool { output.isJSON }
        @OptionGroup var client: ClientOptions
        func run() async throws {
            let images = try await API(client).get("/v1/images", as: [ImageInfo].self)
            if json { try printJSON(images); return }
            print(output.text([["NAME", "GENERATION", "SECURITY TYPES", "DESCRIPTION"]] + images.map {
                [$0.name, "Gen \($0.generation) (\($0.generation == 2 ? "UEFI" : "BIOS"))",
                 $0.generation == 2 ? "TrustedLaunch, Standard" : "Standard", $0.description]
            }))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "An image: generation, the boot chain the firmware "
                                                                                     + "runs, who signed each stage.")
        @Argument var name: String
        @OptionGroup var output: ObjectOutput
        var json: Bool { output.isJSON }
        @OptionGroup var client: ClientOptions
        func run() async throws {
            let d = try await API(client).get("/v1/images/\(API.escape(name))", as: ImageDetails.self)
            if json { try printJSON(d); return }
            print("\(d.image.name): Generation \(d.image.generation) "
                + "(\(d.image.generation == 2 ? "UEFI; can be deployed as TrustedLaunch" : "BIOS; Standard only"))")
            print("  \(d.image.description)\n  source: \(d.image.source); \(d.files) file(s), \(d.bytes) bytes")
            if !d.bootChain.isEmpty {
                print("  Boot chain (Secure Boot on):")
                for s in d.bootChain { print("    \(s.kind.padding(toLength: 6, withPad: " ", startingAt: 0)) \(s.path)  sha256 "
                                           + "\(s.sha256.prefix(16))…  "
                                           + "\(s.verifiedBy.map { "verified by \($0)" } ?? "")\(s.authority.map { ": \($0)" } ?? "")") }
            }
            if let c = d.kernelCommandLine { print("  Kernel command line: \(c)") }
            if !d.signers.isEmpty { print("  Signers: " + d.signers.joined(separator: "; ")) }
            if !d.dbAuthorities.isEmpty { print("  db authorities: " + d.dbAuthorities.joined(separator: "; ")) }
            if !d.bootable { print("  NOT BOOTABLE with Secure Boot: \(d.bootFailure ?? "?")") }
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "import", abstract: "Import an EFI System Partition folder (Gen 2) "
                                                                                       + "or a BIOS boot sector (Gen 1).")
        @Argument var name: String
        @Option(help: "The ESP folder (Gen 2) or boot sector file (Gen 1), on the platform's machine.") var from: String
        @Option(help: "1 or 2 (default).") var generation: Int = 2
        @Option(help: "Secure Boot keys for Gen 2: platform (default) or microsoft.") var keys: String = "platform"
        @Option var description: String?
        @OptionGroup var client: ClientOptions
        func run() async throws {
            struct Body: Encodable { var name: String; var path: String; var generation: Int; var keys: String; var description: String? }
            let path = URL(fileURLWithPath: from).standardizedFileURL.path
            let i = try await API(client).call(
                "POST", "/v1/images", Body(name: name, path: path, generation: generation, keys: keys, description: description),
                as: ImageInfo.self)
            print("Imported \(i.name): Generation \(i.generation) — \(i.description)")
        }
    }
}

struct AlertCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "alert", abstract: "Integrity monitoring's alerts.",
                                                    subcommands: [List.self, Show.self, Dismiss.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Alerts, newest first.")
        @Option(help: "Only this VM's.") var vm: String?
        @Option(help: "active, resolved or dismissed.") var status: String?
        @OptionGroup var output: ListOutput
        var json: Bool { output.isJSON }
        @OptionGroup var client: ClientOptions
        func run() async throws {
            var q: [String] = []
            if let vm { q.append("vm=\(API.escape(vm))") }
            if let status { q.append("status=\(API.escape(status))") }
            let alerts = try await API(client).get("/v1/alerts" + (q.isEmpty ? "" : "?" + q.joined(separator: "&")), as: [Alert].self)
            if json { try printJSON(alerts); return }
            if alerts.isEmpty { if output.chosen != .tsv { print("No alerts") }; return }
            print(
                output.text(
                    [["ID", "VM", "SEVERITY", "STATUS", "RAISED", "TITLE"]]
                        + alerts.map { [$0.id, $0.vm, $0.severity.rawValue, $0.status.rawValue, $0.created, $0.title] }))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show",
                                                        abstract: "An alert: the evidence, recommendations and mitigations.")
        @Argument var id: String
        @OptionGroup var output: ObjectOutput
        var json: Bool { output.isJSON }
        @OptionGroup var client: ClientOptions
        func run() async throws {
            let a = try await API(client).get("/v1/alerts/\(API.escape(id))", as: Alert.self)
            if json { try printJSON(a) } else { print(Render.alert(a), terminator: "") }
        }
    }

    struct Dismiss: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "dismiss", abstract: "Dismiss an active alert.")
        @Argument var id: String
        @Option var reason: String?
        @OptionGroup var client: ClientOptions
        func run() async throws {
            struct Body: Encodable { var reason: String? }
            let a = try await API(client).call("POST", "/v1/alerts/\(API.escape(id))/dismiss", Body(reason: reason), as: Alert.self)
            print("\(a.id): \(a.status.rawValue) — \(a.resolution ?? "")")
        }
    }
}

struct HostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "host", abstract: "The libvirt hosts VMs are placed on (--hypervisor libvirt).",
        subcommands: [Add.self, List.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add",
                                                        abstract: "Add a libvirt host (it must answer: virsh -c URI nodeinfo).")
        @Argument(help: "A name for the host.") var name: String
        @Argument(help: "Its libvirt URI: qemu:///system, qemu+ssh://root@HOST/system, qemu+tls://HOST/system, …") var uri: String
        @Option(help: """
            external (the platform's vTPM; QEMU on this machine only) or emulator (the host's swtpm: tlaunch vtpm install-swtpm there). \
            Default: external on this machine, emulator elsewhere.
            """) var tpm: String?
        @Option(help: "At most this many VMs (default: as many as its memory takes, 1 GiB each, 1 GiB kept for the host).") var maxVms: Int?
        @Flag(help: """
            Copy each VM's disk and variable store to the host's storage pool, read its console from there, and reach its agent over TCP \
            — as for a host on another machine (always so for those).
            """) var shipFiles = false
        @OptionGroup var output: ObjectOutput
        var json: Bool { output.isJSON }
        @OptionGroup var client: ClientOptions
        func run() async throws {
            let h = try await API(client).call(
                "POST", "/v1/hosts", AddHostRequest(name: name, uri: uri, tpm: tpm, maxVMs: maxVms, shipFiles: shipFiles ? true : nil),
                as: HostView.self)
            if json { try printJSON(h); return }
            print("Added \(h.host.name) (\(h.host.uri)): \(h.host.cpus) CPUs, \(h.host.memoryMiB) MiB, room for \(h.host.capacity) VMs; "
                + "vTPM \(h.host.tpm)\(h.host.shipFiles ? "; VM files copied to its storage pool" : "") — \(h.host.detail)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "The hosts: state, capacity, VMs.")
        @OptionGroup var output: ListOutput
        var json: Bool { output.isJSON }
        @OptionGroup var client: ClientOptions
        func run() async throws {
            let hosts = try await API(client).get("/v1/hosts", as: [HostView].self)
            if json { try printJSON(hosts); return }
            if hosts.isEmpty { if output.chosen != .tsv { print("No libvirt hosts (tlaunch host add NAME URI)") }; return }
            print(output.text([["NAME", "STATE", "SINCE", "URI", "VTPM", "CPUS", "MEMORY", "VMS", "FREE", "DETAIL"]] + hosts.map { v in
                let h = v.host
                return [h.name, h.state.rawValue, Time.rfc3339(h.since), h.uri, h.tpm, String(h.cpus), "\(h.memoryMiB) MiB",
                        "\(v.vms.count)\(v.vms.isEmpty ? "" : " (" + v.vms.joined(separator: ", ") + ")")",
                        String(v.free), h.detail]
            }))
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "remove", abstract: "Remove a host without VMs.")
        @Argument var name: String
        @OptionGroup var client: ClientOptions
        func run() async throws {
            _ = try await API(client).send("DELETE", "/v1/hosts/\(API.escape(name))")
            print("Removed \(name)")
        }
    }
}


/// `-o json|table|tsv`, as az has it (`--json` stays, as `-o json`): for lists, tsv is one
/// tab-separated line per row without a header, for scripts.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case json, table, tsv
}

struct ListOutput: ParsableArguments {
    @Option(name: [.customShort("o"), .customLong("output")],
            help: "json, table (default) or tsv (tab-separated rows, no header).") var format: OutputFormat?
    @Flag(help: "The same as -o json.") var json = false
    var chosen: OutputFormat { json ? .json : format ?? .table }
    var isJSON: Bool { chosen == .json }
    func validate() throws {
        if json, let format, format != .json { throw ValidationError("--json and -o \(format.rawValue) disagree: give one") }
    }

    /// The rows (the first is the header) as the chosen text format.
    func text(_ rows: [[String]]) -> String {
        chosen == .tsv ? Render.tsv(Array(rows.dropFirst())) : Render.table(rows)
    }
}

struct ObjectOutput: ParsableArguments {
    @Option(name: [.customShort("o"), .customLong("output")], help: "json or table (default).") var format: OutputFormat?
    @Flag(help: "The same as -o json.") var json = false
    var isJSON: Bool { json || format == .json }
    func validate() throws {
        if format == .tsv { throw ValidationError("-o tsv is for lists (vm list, image list, alert list, host list); use -o json here") }
        if json, let format, format != .json { throw ValidationError("--json and -o \(format.rawValue) disagree: give one") }
    }
}
