import AttestationAPI
import Foundation

/// `POST /v1/vms`: what to deploy. Unset fields take the defaults (Trusted Launch, Secure Boot
/// and vTPM on, integrity monitoring off).
public struct DeployRequest: Sendable, Codable, Hashable {
    public var name: String
    public var image: String?
    public var securityType: String?
    public var secureBoot: Bool?
    public var vTpm: Bool?
    public var integrityMonitoring: Bool?
    public var hypervisor: String?
    /// Start it once deployed (default true).
    public var start: Bool?
    public var attestationInterval: Int?
    /// How the VM's first baseline is set: learn (trust on first use, the default), approve (a
    /// person approves the first boot), predicted (from the disk, before the first boot).
    public var baseline: String?
    /// The libvirt host to place it on (default: the answering host with the most room).
    public var host: String?
    public init(name: String, image: String? = nil, securityType: String? = nil, secureBoot: Bool? = nil, vTpm: Bool? = nil,
        integrityMonitoring: Bool? = nil, hypervisor: String? = nil, start: Bool? = nil, attestationInterval: Int? = nil,
        baseline: String? = nil,
                host: String? = nil) {
        self.host = host
        self.name = name; self.image = image; self.securityType = securityType; self.secureBoot = secureBoot; self.vTpm = vTpm
        self.integrityMonitoring = integrityMonitoring; self.hypervisor = hypervisor; self.start = start;
        self.attestationInterval = attestationInterval
        self.baseline = baseline
    }
}

/// A request body whose fields are all known: a field the platform does not know is refused by
/// name (a misspelt `integritymonitoring` must not deploy with monitoring off).
public protocol StrictBody: Decodable {
    /// The fields of `object` (a decoded JSON object) that this body does not have, as paths.
    static func unknownFields(_ object: [String: Any]) -> [String]
}

extension StrictBody {
    static func unknown(_ object: [String: Any], known: Set<String>, prefix: String = "") -> [String] {
        object.keys.filter { !known.contains($0) }.sorted().map { prefix + $0 }
    }
}

extension DeployRequest: StrictBody {
    static let fields: Set<String> = ["name", "image", "securityType", "secureBoot", "vTpm", "integrityMonitoring", "hypervisor", "start",
                                      "attestationInterval", "baseline", "securityProfile", "host"]

    public static func unknownFields(_ object: [String: Any]) -> [String] {
        var out = unknown(object, known: fields)
        if let profile = object["securityProfile"] as? [String: Any] {
            out += unknown(profile, known: ["securityType", "uefiSettings"], prefix: "securityProfile.")
            if let uefi = profile["uefiSettings"] as? [String: Any] {
                out += unknown(uefi, known: ["secureBootEnabled", "vTpmEnabled"], prefix: "securityProfile.uefiSettings.")
            }
        }
        return out
    }

    enum CodingKeys: String, CodingKey {
        case name, image, securityType, secureBoot, vTpm, integrityMonitoring, hypervisor, start, attestationInterval, baseline,
            securityProfile, host
    }
    enum ProfileKeys: String, CodingKey { case securityType, uefiSettings }
    enum UEFIKeys: String, CodingKey { case secureBootEnabled, vTpmEnabled }

    /// The platform's flat fields, or the ARM shape (`securityProfile.securityType`,
    /// `securityProfile.uefiSettings.secureBootEnabled|vTpmEnabled`) as `vm show --json` prints
    /// it — not both with different values.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        image = try c.decodeIfPresent(String.self, forKey: .image)
        securityType = try c.decodeIfPresent(String.self, forKey: .securityType)
        secureBoot = try c.decodeIfPresent(Bool.self, forKey: .secureBoot)
        vTpm = try c.decodeIfPresent(Bool.self, forKey: .vTpm)
        integrityMonitoring = try c.decodeIfPresent(Bool.self, forKey: .integrityMonitoring)
        hypervisor = try c.decodeIfPresent(String.self, forKey: .hypervisor)
        start = try c.decodeIfPresent(Bool.self, forKey: .start)
        attestationInterval = try c.decodeIfPresent(Int.self, forKey: .attestationInterval)
        baseline = try c.decodeIfPresent(String.self, forKey: .baseline)
        host = try c.decodeIfPresent(String.self, forKey: .host)
        guard c.contains(.securityProfile) else { return }
        let p = try c.nestedContainer(keyedBy: ProfileKeys.self, forKey: .securityProfile)
        func merge<T: Equatable>(_ flat: T?, _ arm: T?, _ path: String) throws -> T? {
            if let flat, let arm, flat != arm {
                throw DecodingError.dataCorruptedError(forKey: .securityProfile, in: c,
                                                       debugDescription: "\(path) and its flat field disagree: give it once")
            }
            return flat ?? arm
        }
        securityType = try merge(securityType, try p.decodeIfPresent(String.self, forKey: .securityType), "securityProfile.securityType")
        if p.contains(.uefiSettings) {
            let u = try p.nestedContainer(keyedBy: UEFIKeys.self, forKey: .uefiSettings)
            secureBoot = try merge(secureBoot, try u.decodeIfPresent(Bool.self, forKey: .secureBootEnabled),
                                   "securityProfile.uefiSettings.secureBootEnabled")
            vTpm = try merge(vTpm, try u.decodeIfPresent(Bool.self, forKey: .vTpmEnabled), "securityProfile.uefiSettings.vTpmEnabled")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encodeIfPresent(image, forKey: .image)
        try c.encodeIfPresent(securityType, forKey: .securityType)
        try c.encodeIfPresent(secureBoot, forKey: .secureBoot)
        try c.encodeIfPresent(vTpm, forKey: .vTpm)
        try c.encodeIfPresent(integrityMonitoring, forKey: .integrityMonitoring)
        try c.encodeIfPresent(hypervisor, forKey: .hypervisor)
        try c.encodeIfPresent(start, forKey: .start)
        try c.encodeIfPresent(attestationInterval, forKey: .attestationInterval)
        try c.encodeIfPresent(baseline, forKey: .baseline)
        try c.encodeIfPresent(host, forKey: .host)
    }
}

extension UpdateRequest: StrictBody {
    public static func unknownFields(_ object: [String: Any]) -> [String] {
        unknown(object, known: ["securityType", "secureBoot", "vTpm", "integrityMonitoring", "guestAgent", "attestationInterval", "image",
                                "hypervisor", "version"])
    }
}

/// `PATCH /v1/vms/NAME`: the settings to change; `version` (optional) must be the version read.
public struct UpdateRequest: Sendable, Codable, Hashable {
    public var securityType: String?
    public var secureBoot: Bool?
    public var vTpm: Bool?
    public var integrityMonitoring: Bool?
    public var guestAgent: String?
    public var attestationInterval: Int?
    public var image: String?
    public var hypervisor: String?
    public var version: Int64?
    public init(securityType: String? = nil, secureBoot: Bool? = nil, vTpm: Bool? = nil, integrityMonitoring: Bool? = nil,
                guestAgent: String? = nil,
                attestationInterval: Int? = nil, image: String? = nil, hypervisor: String? = nil, version: Int64? = nil) {
        self.securityType = securityType; self.secureBoot = secureBoot; self.vTpm = vTpm; self.integrityMonitoring = integrityMonitoring
        self.guestAgent = guestAgent; self.attestationInterval = attestationInterval; self.image = image; self.hypervisor = hypervisor;
        self.version = version
    }
}

/// What an update will do: the record after it, and what changed (for the timeline).
public struct UpdatePlan: Sendable, Hashable {
    public var record: VMRecord
    public var changes: [String]
    public var monitoringOn: Bool
    public var monitoringOff: Bool
}

/// The deployment and update rules, as pure functions of the request and the VM: each refusal
/// is a `FleetError` naming the field and what to do instead.
public enum FleetRules {
    public static let hypervisor = "simulated"

    public static func checkName(_ name: String, what: String = "VM") throws {
        do { try VMName.check(name) } catch {
            throw FleetError(.invalid, "\(what) name \"\(name)\": \(error.message)", field: "name")
        }
    }

    /// How the request asks the VM's first baseline to be set (nil: the service's default, learn).
    public static func baselineMode(_ r: DeployRequest) throws -> BaselineMode? {
        guard let b = r.baseline else { return nil }
        guard let mode = BaselineMode(rawValue: b) else {
            throw FleetError(.invalid, "baseline must be learn (trust on first use), approve (a person approves the first boot) "
                             + "or predicted (from the disk)", field: "baseline")
        }
        return mode
    }

    public static func securityType(_ s: String?) throws -> SecurityType? {
        guard let s else { return nil }
        switch s.lowercased() {
        case "trustedlaunch", "trusted-launch", "trusted_launch": return .trustedLaunch
        case "standard": return .standard
        default: throw FleetError(.invalid, "security type \"\(s.prefix(64))\" is not one of TrustedLaunch, Standard",
                                  field: "securityType")
        }
    }

    /// The hypervisors: the built-in simulated one, and real QEMU + OVMF VMs (QEMU as the
    /// platform's child, or as libvirt domains).
    public static let hypervisors = [hypervisor, qemu, libvirt]
    /// Real VMs: QEMU + OVMF, with the guest's own agent.
    public static let qemu = "qemu"
    /// Real VMs as libvirt domains (the platform's libvirt connection).
    public static let libvirt = "libvirt"

    public static func checkHypervisor(_ h: String?, available: Set<String> = [hypervisor]) throws -> String {
        let h = h ?? hypervisor
        guard hypervisors.contains(h) else {
            throw FleetError(.invalid, "hypervisor \"\(h.prefix(64))\" is not one of \(hypervisors.joined(separator: ", "))",
                             field: "hypervisor")
        }
        guard available.contains(h) else {
            if h == libvirt {
                throw FleetError(.invalid, """
                    hypervisor libvirt is not available here: start the platform with --hypervisor libvirt (a libvirtd that virsh \
                    reaches, --libvirt-uri), or use --hypervisor qemu or simulated
                    """, field: "hypervisor")
            }
            throw FleetError(.invalid, "hypervisor \(h) is not available here: real VMs need QEMU and Debian's OVMF (apt-get install "
                                     + "qemu-system-x86 ovmf) and the guest kit (busybox-static, linux-image-amd64, tlaunch-agent built "
                                     + "beside tlaunch); use --hypervisor simulated", field: "hypervisor")
        }
        return h
    }

    public static func checkInterval(_ i: Int?) throws -> Int {
        let i = i ?? 300
        guard (1...86400).contains(i) else {
            throw FleetError(.invalid, "the attestation interval is \(i) s; give 1 to 86400 seconds", field: "attestationInterval")
        }
        return i
    }

    /// The record a deployment creates from `image`, or the rule it breaks.
    public static func deploy(_ r: DeployRequest, image: ImageInfo, hypervisors available: Set<String> = [hypervisor],
                              now: Int64 = Time.millis()) throws -> VMRecord {
        try checkName(r.name)
        let hypervisor = try checkHypervisor(r.hypervisor, available: available)
        let type = try securityType(r.securityType) ?? .trustedLaunch
        if type == .trustedLaunch, image.generation != 2 {
            throw FleetError(.invalid, "image \(image.name) is Generation \(image.generation) (BIOS) only, and Trusted Launch needs a "
                                     + "Generation 2 (UEFI) image: deploy it with --security-type Standard, or choose a Generation 2 "
                                     + "image such as sample-linux", field: "image")
        }
        if type == .standard {
            if r.secureBoot == true { throw FleetError(.invalid, "Secure Boot exists only for TrustedLaunch VMs: drop --secure-boot, or "
                                                               + "deploy with --security-type TrustedLaunch", field: "secureBoot") }
            if r.vTpm == true { throw FleetError(.invalid, "a vTPM exists only for TrustedLaunch VMs: drop --vtpm, or deploy with "
                                                         + "--security-type TrustedLaunch", field: "vTpm") }
            if r.integrityMonitoring == true {
                throw FleetError(
                    .invalid,
                    "integrity monitoring needs a vTPM, which Standard VMs do not have: deploy with --security-type TrustedLaunch",
                    field: "integrityMonitoring")
            }
        }
        let vtpm = type == .trustedLaunch && (r.vTpm ?? true)
        if r.integrityMonitoring == true, !vtpm {
            throw FleetError(.invalid, "integrity monitoring attests with the VM's vTPM: keep --vtpm true, or leave integrity monitoring "
                                     + "off", field: "integrityMonitoring")
        }
        if try baselineMode(r) != nil, !vtpm {
            throw FleetError(.invalid, "a baseline is what the vTPM's measurements are compared with: without a vTPM there is none to set",
                             field: "baseline")
        }
        let monitoring = r.integrityMonitoring ?? false
        return VMRecord(name: r.name, image: image.name, hypervisor: hypervisor, securityType: type,
                        secureBoot: type == .trustedLaunch && (r.secureBoot ?? true),
                        vTPM: vtpm, integrityMonitoring: monitoring, powerState: .stopped,
                        bootIntegrity: monitoring ? .pending : .notMonitored, lastAttestation: nil, lastAttestationID: nil,
                        created: now, updated: now, version: 1, bootCount: 0, lastBoot: nil, guestAgent: .running,
                        attestationInterval: try checkInterval(r.attestationInterval))
    }

    /// What `u` does to `vm`, or the rule it breaks.
    public static func update(_ u: UpdateRequest, vm: VMRecord) throws -> UpdatePlan {
        let name = vm.name
        if let v = u.version, v != vm.version {
            throw FleetError(.conflict, "\(name) changed since you read it (you sent version \(v), it is now \(vm.version)): read it "
                                      + "again and retry", field: "version")
        }
        if let t = try securityType(u.securityType), t != vm.securityType {
            throw FleetError(.invalid, "the security type of \(name) is \(vm.securityType.rawValue) and cannot be changed after "
                                     + "deployment (Trusted Launch must be chosen at deployment): delete the VM and deploy it again with "
                                     + "--security-type \(t.rawValue)", field: "securityType")
        }
        if let i = u.image, i != vm.image {
            throw FleetError(.invalid, "the image of \(name) cannot be changed: put new files on its disk (tlaunch vm disk put), or "
                                     + "deploy a new VM from \(i.prefix(64))", field: "image")
        }
        if let h = u.hypervisor, h != vm.hypervisor {
            throw FleetError(.invalid, "the hypervisor of \(name) cannot be changed", field: "hypervisor")
        }
        if vm.securityType == .standard {
            if u.secureBoot != nil { throw FleetError(.invalid, "\(name) is a Standard VM: Secure Boot exists only for TrustedLaunch VMs "
                                                              + "(redeploy it as TrustedLaunch)", field: "secureBoot") }
            if u.vTpm != nil { throw FleetError(.invalid, "\(name) is a Standard VM: a vTPM exists only for TrustedLaunch VMs (redeploy "
                                                        + "it as TrustedLaunch)", field: "vTpm") }
            if u.integrityMonitoring == true {
                throw FleetError(
                    .invalid,
                    "\(name) is a Standard VM without a vTPM, so integrity monitoring cannot attest it: redeploy it as TrustedLaunch",
                    field: "integrityMonitoring")
            }
        }
        let firmwareChange = (u.secureBoot.map { $0 != vm.secureBoot } ?? false) || (u.vTpm.map { $0 != vm.vTPM } ?? false)
        if firmwareChange, vm.powerState == .running {
            throw FleetError(.conflict, "Secure Boot and vTPM settings change the firmware, so \(name) must be stopped first: tlaunch vm "
                                      + "stop \(name)", field: u.secureBoot != nil ? "secureBoot" : "vTpm")
        }
        let vtpm = u.vTpm ?? vm.vTPM
        let monitoring = u.integrityMonitoring ?? vm.integrityMonitoring
        if monitoring, !vtpm {
            throw u.vTpm == false
                ? FleetError(.invalid, "integrity monitoring is on and needs the vTPM: switch it off first (--integrity-monitoring false)",
                             field: "vTpm")
                : FleetError(
                    .invalid, "integrity monitoring needs the vTPM: turn the vTPM on (while stopped) first", field: "integrityMonitoring")
        }
        var agent: GuestAgentState?
        if let g = u.guestAgent {
            guard let a = GuestAgentState(rawValue: g) else {
                throw FleetError(.invalid, "guest agent must be running or stopped", field: "guestAgent")
            }
            agent = a
        }
        let interval = try u.attestationInterval.map { try checkInterval($0) }
        let on = monitoring && !vm.integrityMonitoring, off = !monitoring && vm.integrityMonitoring
        var v = vm
        if let s = u.secureBoot { v.secureBoot = s }
        v.vTPM = vtpm
        v.integrityMonitoring = monitoring
        if let agent { v.guestAgent = agent }
        if let interval { v.attestationInterval = interval }
        if on { v.bootIntegrity = .pending }
        if off { v.bootIntegrity = .notMonitored }
        var changes: [String] = []
        if let s = u.secureBoot, s != vm.secureBoot { changes.append("Secure Boot \(s ? "on" : "off") (from the next boot)") }
        if vtpm != vm.vTPM { changes.append("vTPM \(vtpm ? "on" : "off") (from the next boot)") }
        if on { changes.append("integrity monitoring on (guest attestation agent enabled)") }
        if off { changes.append("integrity monitoring off") }
        if let agent, agent != vm.guestAgent { changes.append("guest attestation agent \(agent.rawValue)") }
        if let interval, interval != vm.attestationInterval { changes.append("attestation every \(interval) s") }
        return UpdatePlan(record: v, changes: changes, monitoringOn: on, monitoringOff: off)
    }
}

/// `application/x-www-form-urlencoded` bodies and `Cookie` headers, as the dashboard receives them.
public enum FormBody {
    /// `a=b&c=d`: `+` is a space, `%XX` a byte; a malformed escape leaves the value empty; the
    /// first occurrence of a key wins.
    public static func parse(_ body: String) -> [String: String] {
        var out: [String: String] = [:]
        for pair in body.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                .map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            guard let k = kv.first, !k.isEmpty, out[k] == nil else { continue }
            out[k] = kv.count > 1 ? kv[1] : ""
        }
        return out
    }

    /// The value of cookie `name` in a `Cookie:` header.
    public static func cookie(_ header: String, name: String) -> String? {
        for part in header.split(separator: ";") {
            let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if kv.count == 2, kv[0] == name { return String(kv[1]) }
        }
        return nil
    }
}

/// The fuzz entry for the fleet's untrusted inputs (`Fuzz/run.sh fleet-request`; the test suite
/// replays its corpus): bytes as a deploy request, an update request, a form body and a cookie
/// header. Returns invariant violations.
public enum FleetFuzzing {
    public static func request(_ bytes: [UInt8]) -> [String] {
        var problems: [String] = []
        let data = Data(bytes)
        let images = [ImageInfo(name: "uefi", generation: 2, source: "", description: "", builtIn: true),
                      ImageInfo(name: "bios", generation: 1, source: "", description: "", builtIn: true)]
        if let r = try? JSONDecoder().decode(DeployRequest.self, from: data) {
            for image in images {
                do {
                    let vm = try FleetRules.deploy(r, image: image, now: 0)
                    // What a deployment creates always obeys the rules.
                    if vm.securityType == .standard && (vm.secureBoot || vm.vTPM || vm.integrityMonitoring) {
                        problems.append("a Standard VM with TrustedLaunch features")
                    }
                    if vm.securityType == .trustedLaunch && image.generation != 2 {
                        problems.append("Trusted Launch on a Generation 1 image")
                    }
                    if vm.integrityMonitoring && !vm.vTPM { problems.append("monitoring without a vTPM") }
                    let probe = try? FleetRules.update(
                        UpdateRequest(securityType: vm.securityType == .standard ? "TrustedLaunch" : "Standard"), vm: vm)
                    if probe != nil { problems.append("the security type changed after deployment") }
                } catch let e as FleetError {
                    if e.message.isEmpty || e.field == nil { problems.append("a refusal without a message or field") }
                } catch {
                    problems.append("an untyped error: \(error)")
                }
            }
        }
        if let u = try? JSONDecoder().decode(UpdateRequest.self, from: data) {
            let base = VMRecord(name: "vm", image: "uefi", hypervisor: FleetRules.hypervisor, securityType: .trustedLaunch,
                                secureBoot: true, vTPM: true,
                integrityMonitoring: true, powerState: .running, bootIntegrity: .healthy, lastAttestation: nil, lastAttestationID: nil,
                                created: 0, updated: 0, version: 3, bootCount: 1, lastBoot: nil, guestAgent: .running,
                                attestationInterval: 300)
            for start in [
                base,
                {
                    var s = base; s.securityType = .standard; s.secureBoot = false; s.vTPM = false; s.integrityMonitoring = false;
                    s.powerState = .stopped; return s
                }()
            ] {
                if let plan = try? FleetRules.update(u, vm: start) {
                    if plan.record.securityType != start.securityType { problems.append("the security type changed") }
                    if plan.record.integrityMonitoring && !plan.record.vTPM { problems.append("monitoring without a vTPM after an update") }
                    if start.powerState == .running && (plan.record.secureBoot != start.secureBoot || plan.record.vTPM != start.vTPM) {
                        problems.append("firmware settings changed while running")
                    }
                }
            }
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let form = FormBody.parse(text)
        if form.keys.contains("") { problems.append("an empty form key") }
        _ = FormBody.cookie(text, name: "tlaunch_session")
        return problems
    }
}
