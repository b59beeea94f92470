import MeasuredBoot
import TPM2

/// A declarative policy over the boot facts a replayed event log vouches for. The default needs
/// no writing: Secure Boot on, every boot application verified by a db authority, no anomalies.
public struct AttestationPolicy: Sendable, Codable, Hashable {
    public var id: String
    public var version: Int
    public var requireSecureBoot: Bool
    public var requireVerifiedBootApplications: Bool
    public var forbidAnomalies: Bool
    /// Certificate subjects (substrings) of which at least one must have authorised a boot application.
    public var requiredAuthorities: [String]
    /// Expected PCR values (sha256), e.g. from `tlaunch predict` or the firmware's reference values.
    public var expectedPCRs: [String: String]
    /// Substrings the kernel command line must not contain.
    public var forbiddenKernelArguments: [String]

    public init(id: String = "default", version: Int = 1, requireSecureBoot: Bool = true, requireVerifiedBootApplications: Bool = true,
                forbidAnomalies: Bool = true, requiredAuthorities: [String] = [], expectedPCRs: [String: String] = [:],
                forbiddenKernelArguments: [String] = []) {
        self.id = id; self.version = version; self.requireSecureBoot = requireSecureBoot
        self.requireVerifiedBootApplications = requireVerifiedBootApplications; self.forbidAnomalies = forbidAnomalies
        self.requiredAuthorities = requiredAuthorities; self.expectedPCRs = expectedPCRs; self.forbiddenKernelArguments = forbiddenKernelArguments
    }

    public static let `default` = AttestationPolicy()

    func evaluate(_ facts: BootFacts, quoted: PCRValues) -> [CheckResult] {
        var out: [CheckResult] = []
        if requireSecureBoot {
            let on = facts.secureBoot.enabled == true
            out.append(CheckResult(name: "secure-boot", passed: on,
                                   reason: on ? "Secure Boot was enabled (SecureBoot = 1 measured into PCR 7)"
                                       : "Secure Boot was \(facts.secureBoot.enabled == false ? "off" : "not measured") in this boot: enable it in the VM's firmware settings"))
        }
        if requireVerifiedBootApplications {
            // Firmware and shim measure each authority once, when it first verifies an image; the
            // images it verifies later have none of their own. So: Secure Boot was on, boot
            // applications were loaded, and every authority used comes from db or shim's MokList.
            let apps = facts.bootChain.filter { $0.pcr == 4 }
            let used = facts.authorities.filter { !["SbatLevel", "MokListTrusted"].contains($0.variable) }
            let foreign = used.filter { !["db", "MokList", "MokListRT", "Shim"].contains($0.variable) }
            let passed = facts.secureBoot.enabled == true && !apps.isEmpty && !used.isEmpty && foreign.isEmpty
            let reason: String
            if apps.isEmpty { reason = "no boot application was measured" }
            else if facts.secureBoot.enabled != true || used.isEmpty { reason = "the \(apps.count) boot applications were not verified by any Secure Boot authority" }
            else if !foreign.isEmpty { reason = "boot applications were authorised by \(foreign.map(\.variable).joined(separator: ", ")), not db or MokList" }
            else { reason = "every boot application (\(apps.count)) was verified; authorities: \(used.map { "\($0.variable): \($0.certificate?.subject ?? $0.other ?? "?")" }.joined(separator: "; "))" }
            out.append(CheckResult(name: "boot-applications", passed: passed, reason: reason))
        }
        if forbidAnomalies {
            out.append(CheckResult(name: "anomalies", passed: facts.anomalies.isEmpty,
                                   reason: facts.anomalies.isEmpty ? "no anomalies in the log" : facts.anomalies.map(\.message).joined(separator: "; ")))
        }
        for wanted in requiredAuthorities {
            let found = facts.authorities.contains { ($0.certificate?.subject ?? $0.other ?? "").contains(wanted) }
            out.append(CheckResult(name: "authority", passed: found,
                                   reason: found ? "\(wanted) authorised a boot application" : "no boot application was authorised by \(wanted)"))
        }
        for (pcr, hex) in expectedPCRs.sorted(by: { (Int($0.key) ?? 0) < (Int($1.key) ?? 0) }) {
            let actual = UInt32(pcr).flatMap { quoted[.sha256, $0] }.map { hexString($0) }
            out.append(CheckResult(name: "pcr-\(pcr)", passed: actual == hex.lowercased(),
                                   reason: actual == hex.lowercased() ? "sha256 PCR \(pcr) is the expected value"
                                       : "sha256 PCR \(pcr) is \(actual ?? "not quoted"), expected \(hex.lowercased())"))
        }
        for arg in forbiddenKernelArguments {
            let cmdline = facts.kernelCommandLine ?? ""
            out.append(CheckResult(name: "kernel-command-line", passed: !cmdline.contains(arg),
                                   reason: cmdline.contains(arg) ? "the kernel command line contains \"\(arg)\"" : "the kernel command line does not contain \"\(arg)\""))
        }
        return out
    }
}
