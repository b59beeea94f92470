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
    /// Arguments the kernel command line must contain (e.g. "lockdown=integrity").
    public var requiredKernelArguments: [String]
    /// When non-empty: the only boot applications allowed, by Authenticode SHA-256 (hex).
    public var allowedBootDigests: [String]
    /// Hashes (SHA-256 hex) the measured dbx must contain: a revocation level, e.g. the entries of
    /// a Microsoft dbx update. A boot whose dbx lacks any of them is behind on revocations.
    public var dbxMustContain: [String]
    /// IMA: file path → allowed SHA-256 digests (hex); files under an exclude prefix are not checked.
    public var imaAllowlist: [String: [String]]
    public var imaExcludes: [String]

    public init(id: String = "default", version: Int = 1, requireSecureBoot: Bool = true, requireVerifiedBootApplications: Bool = true,
                forbidAnomalies: Bool = true, requiredAuthorities: [String] = [], expectedPCRs: [String: String] = [:],
                forbiddenKernelArguments: [String] = [], requiredKernelArguments: [String] = [], allowedBootDigests: [String] = [],
                dbxMustContain: [String] = [], imaAllowlist: [String: [String]] = [:], imaExcludes: [String] = []) {
        self.id = id; self.version = version; self.requireSecureBoot = requireSecureBoot
        self.requireVerifiedBootApplications = requireVerifiedBootApplications; self.forbidAnomalies = forbidAnomalies
        self.requiredAuthorities = requiredAuthorities; self.expectedPCRs = expectedPCRs; self.forbiddenKernelArguments = forbiddenKernelArguments
        self.requiredKernelArguments = requiredKernelArguments; self.allowedBootDigests = allowedBootDigests
        self.dbxMustContain = dbxMustContain; self.imaAllowlist = imaAllowlist; self.imaExcludes = imaExcludes
    }

    enum CodingKeys: String, CodingKey {
        case id, version, requireSecureBoot, requireVerifiedBootApplications, forbidAnomalies, requiredAuthorities, expectedPCRs
        case forbiddenKernelArguments, requiredKernelArguments, allowedBootDigests, dbxMustContain, imaAllowlist, imaExcludes
    }

    /// A policy document: every member optional (the default's value when absent), unknown
    /// members refused so a misspelt rule is not silently ignored.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let known = Set(CodingKeys.allStringValues)
        if let all = try? decoder.container(keyedBy: AnyKey.self) {
            for k in all.allKeys where !known.contains(k.stringValue) {
                throw DecodingError.dataCorruptedError(forKey: CodingKeys.id, in: c, debugDescription: "unknown policy rule \"\(k.stringValue)\" (known: \(known.sorted().joined(separator: ", ")))")
            }
        }
        let d = AttestationPolicy()
        id = try c.decodeIfPresent(String.self, forKey: .id) ?? d.id
        version = try c.decodeIfPresent(Int.self, forKey: .version) ?? d.version
        requireSecureBoot = try c.decodeIfPresent(Bool.self, forKey: .requireSecureBoot) ?? d.requireSecureBoot
        requireVerifiedBootApplications = try c.decodeIfPresent(Bool.self, forKey: .requireVerifiedBootApplications) ?? d.requireVerifiedBootApplications
        forbidAnomalies = try c.decodeIfPresent(Bool.self, forKey: .forbidAnomalies) ?? d.forbidAnomalies
        requiredAuthorities = try c.decodeIfPresent([String].self, forKey: .requiredAuthorities) ?? []
        expectedPCRs = try c.decodeIfPresent([String: String].self, forKey: .expectedPCRs) ?? [:]
        forbiddenKernelArguments = try c.decodeIfPresent([String].self, forKey: .forbiddenKernelArguments) ?? []
        requiredKernelArguments = try c.decodeIfPresent([String].self, forKey: .requiredKernelArguments) ?? []
        allowedBootDigests = (try c.decodeIfPresent([String].self, forKey: .allowedBootDigests) ?? []).map { $0.lowercased() }
        dbxMustContain = (try c.decodeIfPresent([String].self, forKey: .dbxMustContain) ?? []).map { $0.lowercased() }
        imaAllowlist = try c.decodeIfPresent([String: [String]].self, forKey: .imaAllowlist) ?? [:]
        imaExcludes = try c.decodeIfPresent([String].self, forKey: .imaExcludes) ?? []
        for (k, v) in expectedPCRs {
            guard let p = Int(k), (0..<24).contains(p), v.count == 64, v.allSatisfy(\.isHexDigit) else {
                throw DecodingError.dataCorruptedError(forKey: CodingKeys.expectedPCRs, in: c, debugDescription: "expectedPCRs[\"\(k)\"] must map a PCR 0–23 to a sha256 value (64 hex digits)")
            }
        }
        for h in allowedBootDigests + dbxMustContain where h.count != 64 || !h.allSatisfy(\.isHexDigit) {
            throw DecodingError.dataCorruptedError(forKey: CodingKeys.allowedBootDigests, in: c, debugDescription: "\(h) is not a SHA-256 digest (64 hex digits)")
        }
    }

    public static let `default` = AttestationPolicy()

    func evaluate(_ facts: BootFacts, quoted: PCRValues, ima: IMALog? = nil) -> [CheckResult] {
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
        for arg in requiredKernelArguments {
            let cmdline = facts.kernelCommandLine ?? ""
            let has = cmdline.split(separator: " ").contains { $0 == arg }
            out.append(CheckResult(name: "kernel-command-line", passed: has,
                                   reason: has ? "the kernel command line has \"\(arg)\"" : "the kernel command line lacks \"\(arg)\" (it is \"\(cmdline)\")"))
        }
        if !allowedBootDigests.isEmpty {
            let apps = facts.bootChain.filter { $0.pcr == 4 }
            let foreign = apps.filter { !allowedBootDigests.contains(($0.digests["sha256"] ?? "").lowercased()) }
            out.append(CheckResult(name: "boot-chain", passed: !apps.isEmpty && foreign.isEmpty,
                                   reason: foreign.isEmpty ? "every boot application (\(apps.count)) is on the allowed list"
                                       : foreign.map { "\($0.filePath ?? $0.devicePath ?? "image") (Authenticode sha256 \($0.digests["sha256"] ?? "?")) is not an allowed boot application" }.joined(separator: "; ")))
        }
        if !dbxMustContain.isEmpty {
            let present = Set(facts.dbxSHA256)
            let missing = dbxMustContain.filter { !present.contains($0) }
            out.append(CheckResult(name: "dbx", passed: missing.isEmpty,
                                   reason: missing.isEmpty ? "the measured dbx has all \(dbxMustContain.count) required revocations"
                                       : "the measured dbx lacks \(missing.count) of \(dbxMustContain.count) required revocations (first: \(missing[0])): apply the dbx update"))
        }
        if let ima, !imaAllowlist.isEmpty {
            var bad: [String] = []
            for e in ima.entries where !e.isViolation && !imaExcludes.contains(where: { e.fileName.hasPrefix($0) }) {
                let digest = hexString(e.fileDigest)
                if let allowed = imaAllowlist[e.fileName] {
                    if !allowed.map({ $0.lowercased() }).contains(digest) { bad.append("\(e.fileName) has digest \(digest), not an allowed one") }
                } else {
                    bad.append("\(e.fileName) is not on the IMA allowlist")
                }
            }
            out.append(CheckResult(name: "ima", passed: bad.isEmpty,
                                   reason: bad.isEmpty ? "every measured file (\(ima.entries.count)) is allowed" : bad.prefix(5).joined(separator: "; ") + (bad.count > 5 ? " (and \(bad.count - 5) more)" : "")))
        }
        // A boot application whose digest the measured dbx revokes ran anyway.
        let revoked = Set(facts.dbxSHA256)
        if !revoked.isEmpty {
            let hit = facts.bootChain.filter { revoked.contains(($0.digests["sha256"] ?? "").lowercased()) }
            if !hit.isEmpty || requireVerifiedBootApplications {
                out.append(CheckResult(name: "revoked", passed: hit.isEmpty,
                                       reason: hit.isEmpty ? "no boot application is revoked by the measured dbx (\(revoked.count) hashes)"
                                           : hit.map { "\($0.filePath ?? "image") is revoked by dbx (Authenticode sha256 \($0.digests["sha256"] ?? ""))" }.joined(separator: "; ")))
            }
        }
        return out
    }
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension AttestationPolicy.CodingKeys: CaseIterable {
    static var allStringValues: [String] { allCases.map(\.stringValue) }
}

extension BootFacts {
    /// SHA-256 entries of the dbx measured into PCR 7 (hex, lower case).
    var dbxSHA256: [String] { keyDatabases.first { $0.name == "dbx" }?.sha256Hashes ?? [] }
}
