import AttestationAPI
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
    /// Banks the quote must cover (names: sha256, sha384, …). Facts come only from banks the quote
    /// covers and the log replays to; the default requires SHA-256.
    public var requiredBanks: [String]
    /// PCRs every required bank of the quote must cover: the ones the rules read (firmware 0–7,
    /// grub's commands and files 8–9, shim's MOK state 14). IMA rules add 10, expected PCR values
    /// add theirs (`coverage`).
    public var requiredPCRs: [Int]

    public static let defaultRequiredPCRs = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14]

    public init(id: String = "default", version: Int = 1, requireSecureBoot: Bool = true, requireVerifiedBootApplications: Bool = true,
                forbidAnomalies: Bool = true, requiredAuthorities: [String] = [], expectedPCRs: [String: String] = [:],
                forbiddenKernelArguments: [String] = [], requiredKernelArguments: [String] = [], allowedBootDigests: [String] = [],
                dbxMustContain: [String] = [], imaAllowlist: [String: [String]] = [:], imaExcludes: [String] = [],
                requiredBanks: [String] = ["sha256"], requiredPCRs: [Int] = AttestationPolicy.defaultRequiredPCRs) {
        self.id = id; self.version = version; self.requireSecureBoot = requireSecureBoot
        self.requireVerifiedBootApplications = requireVerifiedBootApplications; self.forbidAnomalies = forbidAnomalies
        self.requiredAuthorities = requiredAuthorities; self.expectedPCRs = expectedPCRs;
        self.forbiddenKernelArguments = forbiddenKernelArguments
        self.requiredKernelArguments = requiredKernelArguments; self.allowedBootDigests = allowedBootDigests
        self.dbxMustContain = dbxMustContain; self.imaAllowlist = imaAllowlist; self.imaExcludes = imaExcludes
        self.requiredBanks = requiredBanks; self.requiredPCRs = requiredPCRs
    }

    enum CodingKeys: String, CodingKey {
        case id, version, requireSecureBoot, requireVerifiedBootApplications, forbidAnomalies, requiredAuthorities, expectedPCRs
        case forbiddenKernelArguments, requiredKernelArguments, allowedBootDigests, dbxMustContain, imaAllowlist, imaExcludes
        case requiredBanks, requiredPCRs
    }

    /// A policy document: every member optional (the default's value when absent), unknown
    /// members refused so a misspelt rule is not silently ignored.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let known = Set(CodingKeys.allStringValues)
        if let all = try? decoder.container(keyedBy: AnyKey.self) {
            for k in all.allKeys where !known.contains(k.stringValue) {
                throw DecodingError.dataCorruptedError(
                    forKey: CodingKeys.id, in: c,
                    debugDescription: "unknown policy rule \"\(k.stringValue)\" (known: \(known.sorted().joined(separator: ", ")))")
            }
        }
        let d = AttestationPolicy()
        id = try c.decodeIfPresent(String.self, forKey: .id) ?? d.id
        version = try c.decodeIfPresent(Int.self, forKey: .version) ?? d.version
        requireSecureBoot = try c.decodeIfPresent(Bool.self, forKey: .requireSecureBoot) ?? d.requireSecureBoot
        requireVerifiedBootApplications =
            try c.decodeIfPresent(Bool.self, forKey: .requireVerifiedBootApplications) ?? d.requireVerifiedBootApplications
        forbidAnomalies = try c.decodeIfPresent(Bool.self, forKey: .forbidAnomalies) ?? d.forbidAnomalies
        requiredAuthorities = try c.decodeIfPresent([String].self, forKey: .requiredAuthorities) ?? []
        expectedPCRs = try c.decodeIfPresent([String: String].self, forKey: .expectedPCRs) ?? [:]
        forbiddenKernelArguments = try c.decodeIfPresent([String].self, forKey: .forbiddenKernelArguments) ?? []
        requiredKernelArguments = try c.decodeIfPresent([String].self, forKey: .requiredKernelArguments) ?? []
        allowedBootDigests = (try c.decodeIfPresent([String].self, forKey: .allowedBootDigests) ?? []).map { $0.lowercased() }
        dbxMustContain = (try c.decodeIfPresent([String].self, forKey: .dbxMustContain) ?? []).map { $0.lowercased() }
        imaAllowlist = try c.decodeIfPresent([String: [String]].self, forKey: .imaAllowlist) ?? [:]
        imaExcludes = try c.decodeIfPresent([String].self, forKey: .imaExcludes) ?? []
        requiredBanks = (try c.decodeIfPresent([String].self, forKey: .requiredBanks) ?? d.requiredBanks).map { $0.lowercased() }
        requiredPCRs = try c.decodeIfPresent([Int].self, forKey: .requiredPCRs) ?? d.requiredPCRs
        guard !requiredBanks.isEmpty else {
            throw DecodingError.dataCorruptedError(
                forKey: CodingKeys.requiredBanks, in: c,
                debugDescription: "requiredBanks must name at least one bank (e.g. [\"sha256\"]): facts come only from quoted banks")
        }
        for b in requiredBanks where PCRValues.bankNames[b] == nil {
            throw DecodingError.dataCorruptedError(
                forKey: CodingKeys.requiredBanks, in: c,
                debugDescription: "requiredBanks: unknown bank \"\(b)\" (sha1, sha256, sha384, sha512, sm3_256)")
        }
        for p in requiredPCRs where !(0..<24).contains(p) {
            throw DecodingError.dataCorruptedError(forKey: CodingKeys.requiredPCRs, in: c,
                                                   debugDescription: "requiredPCRs: \(p) is not a PCR 0–23")
        }
        for (k, v) in expectedPCRs {
            guard let p = Int(k), (0..<24).contains(p), v.count == 64, v.allSatisfy(\.isHexDigit) else {
                throw DecodingError.dataCorruptedError(
                    forKey: CodingKeys.expectedPCRs, in: c,
                    debugDescription: "expectedPCRs[\"\(k)\"] must map a PCR 0–23 to a sha256 value (64 hex digits)")
            }
        }
        for h in allowedBootDigests + dbxMustContain where h.count != 64 || !h.allSatisfy(\.isHexDigit) {
            throw DecodingError.dataCorruptedError(forKey: CodingKeys.allowedBootDigests, in: c,
                                                   debugDescription: "\(h) is not a SHA-256 digest (64 hex digits)")
        }
    }

    public static let `default` = AttestationPolicy()

    /// What the quote must cover: the required banks, each with the required PCRs plus those
    /// the rules read (10 for IMA rules, the expected PCRs).
    public var coverage: (banks: [TPMAlgID], pcrs: [Int]) {
        var pcrs = Set(requiredPCRs)
        if !imaAllowlist.isEmpty { pcrs.insert(10) }
        for k in expectedPCRs.keys { if let p = Int(k) { pcrs.insert(p) } }
        return (requiredBanks.compactMap { PCRValues.bankNames[$0] }, pcrs.sorted())
    }

    /// The coverage check: every required bank quoted with every PCR the policy reads.
    func checkCoverage(_ selection: TPMLPCRSelection) -> Check {
        let (banks, pcrs) = coverage
        var missing: [String] = []
        for bank in banks {
            let quoted = Set(selection.pcrSelections.filter { $0.hash == bank }.flatMap(\.pcrs))
            let lacking = pcrs.filter { !quoted.contains($0) }
            if quoted.isEmpty { missing.append("the \(PCRValues.bankName(bank)) bank") }
            else if !lacking.isEmpty {
                missing.append("\(PCRValues.bankName(bank)) PCR \(lacking.map(String.init).joined(separator: ", "))")
            }
        }
        guard missing.isEmpty else {
            return Check(.coverage, passed: false, "the quote does not cover \(missing.joined(separator: "; ")), which the policy reads: "
                                                 + "evidence that leaves out what a rule needs cannot pass (quote what the nonce grant "
                                                 + "asks for)")
        }
        return Check(.coverage, passed: true, "the quote covers \(banks.map(PCRValues.bankName).joined(separator: ", ")) PCRs "
                                            + "\(pcrs.map(String.init).joined(separator: ", "))")
    }

    func evaluate(_ facts: BootFacts, quoted: PCRValues, ima: IMALog? = nil) -> [Check] {
        var out: [Check] = []
        if requireSecureBoot {
            switch facts.secureBoot.enabled {
            case true?: out.append(Check(.secureBoot, passed: true,
                                         "Secure Boot was enabled (SecureBoot = 1 measured into PCR 7 before its separator)"))
            case false?: out.append(Check(.secureBoot, passed: false,
                                          "Secure Boot was off in this boot: enable it in the VM's firmware settings"))
            case nil: out.append(.unknown(.secureBoot, "the firmware's Secure Boot state is not established by this boot's PCR 7 (not "
                                                     + "measured, or not before a separator): Secure Boot cannot be shown to be on"))
            }
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
            else if facts.secureBoot.enabled != true || used.isEmpty { reason = "the \(apps.count) boot applications were not verified by "
                                                                              + "any Secure Boot authority" }
            else if !foreign.isEmpty { reason = "boot applications were authorised by \(foreign.map(\.variable).joined(separator: ", ")), "
                                              + "not db or MokList" }
            else { reason = "every boot application (\(apps.count)) was verified; authorities: "
                          + "\(used.map { "\($0.variable): \($0.certificate?.subject ?? $0.other ?? "?")" }.joined(separator: "; "))" }
            out.append(Check(.bootApplications, outcome: passed ? .pass : (apps.isEmpty ? .unknown : .fail), reason))
        }
        if forbidAnomalies {
            out.append(Check(.anomalies, passed: facts.anomalies.isEmpty,
                             facts.anomalies.isEmpty ? "no anomalies in the log" : facts.anomalies.map(\.message).joined(separator: "; ")))
        }
        for wanted in requiredAuthorities {
            let found = facts.authorities.contains { ($0.certificate?.subject ?? $0.other ?? "").contains(wanted) }
            out.append(Check(.authority, passed: found,
                             found ? "\(wanted) authorised a boot application" : "no boot application was authorised by \(wanted)"))
        }
        for (pcr, hex) in expectedPCRs.sorted(by: { (Int($0.key) ?? 0) < (Int($1.key) ?? 0) }) {
            guard let actual = UInt32(pcr).flatMap({ quoted[.sha256, $0] }).map({ hexString($0) }) else {
                out.append(.unknown(.pcr(pcr), "sha256 PCR \(pcr) was not quoted, expected \(hex.lowercased())"))
                continue
            }
            out.append(Check(.pcr(pcr), passed: actual == hex.lowercased(),
                    actual == hex.lowercased()
                        ? "sha256 PCR \(pcr) is the expected value" : "sha256 PCR \(pcr) is \(actual), expected \(hex.lowercased())"))
        }
        // Kernel arguments are judged on every command line the boot loader produced (a boot
        // loader may build several; the last one runs), and never on a command line that is unknown.
        let cmdlines = facts.kernelCommandLine == nil ? [] : facts.kernelCommandLines
        let unknownCmdline = "the kernel command line is unknown (not measured, or its events could not be verified and bound to the boot "
                           + "loader's linux command: see the anomalies)"
        for arg in forbiddenKernelArguments {
            if cmdlines.isEmpty { out.append(.unknown(.kernelCommandLine,
                                                      "\(unknownCmdline): the rule forbidding \"\(arg)\" cannot pass")); continue }
            let hit = cmdlines.first { $0.contains(arg) }
            out.append(Check(.kernelCommandLine, passed: hit == nil,
                             hit.map { "the kernel command line \"\($0)\" contains \"\(arg)\"" } ?? "the kernel command line does not "
                                                                                                  + "contain \"\(arg)\""))
        }
        for arg in requiredKernelArguments {
            if cmdlines.isEmpty { out.append(.unknown(.kernelCommandLine,
                                                      "\(unknownCmdline): the rule requiring \"\(arg)\" cannot pass")); continue }
            let lacking = cmdlines.first { !$0.split(separator: " ").contains { $0 == arg } }
            out.append(Check(.kernelCommandLine, passed: lacking == nil,
                    lacking.map { "the kernel command line lacks \"\(arg)\" (it is \"\($0)\")" } ?? "the kernel command line has \"\(arg)\""
                ))
        }
        if !allowedBootDigests.isEmpty {
            let apps = facts.bootChain.filter { $0.pcr == 4 }
            let unknown = apps.filter { $0.digests["sha256"] == nil }
            let foreign = apps.filter { $0.digests["sha256"].map { !allowedBootDigests.contains($0.lowercased()) } ?? false }
            if apps.isEmpty || !unknown.isEmpty {
                out.append(.unknown(.bootChain, apps.isEmpty ? "no boot application was measured" : "the SHA-256 digests of the boot "
                                                                                                  + "applications were not verified (the "
                                                                                                  + "quote does not cover the sha256 "
                                                                                                  + "bank): the allowed list cannot be "
                                                                                                  + "checked"))
            } else {
                out.append(Check(.bootChain, passed: foreign.isEmpty,
                                 foreign.isEmpty ? "every boot application (\(apps.count)) is on the allowed list"
                    : foreign.map { "\($0.filePath ?? $0.devicePath ?? "image") (Authenticode sha256 \($0.digests["sha256"] ?? "?")) is "
                                  + "not an allowed boot application" }.joined(separator: "; ")))
            }
        }
        let dbx = facts.keyDatabases.first { $0.name == "dbx" }
        if !dbxMustContain.isEmpty {
            if dbx == nil {
                out.append(.unknown(.dbx, "dbx was not measured before PCR 7's separator: the revocation level cannot be shown"))
            } else {
                let present = Set(facts.dbxSHA256)
                let missing = dbxMustContain.filter { !present.contains($0) }
                out.append(Check(.dbx, passed: missing.isEmpty,
                                 missing.isEmpty ? "the measured dbx has all \(dbxMustContain.count) required revocations"
                    : "the measured dbx lacks \(missing.count) of \(dbxMustContain.count) required revocations (first: \(missing[0])): "
                    + "apply the dbx update"))
            }
        }
        if !imaAllowlist.isEmpty {
            if let ima {
                var bad: [String] = []
                for e in ima.entries where !e.isViolation && !imaExcludes.contains(where: { e.fileName.hasPrefix($0) }) {
                    let digest = hexString(e.fileDigest)
                    if let allowed = imaAllowlist[e.fileName] {
                        if !allowed.map({ $0.lowercased() }).contains(digest) { bad.append("\(e.fileName) has digest \(digest), not an "
                                                                                         + "allowed one") }
                    } else {
                        bad.append("\(e.fileName) is not on the IMA allowlist")
                    }
                }
                out.append(Check(.ima, passed: bad.isEmpty, bad.isEmpty ? "every measured file (\(ima.entries.count)) is allowed"
                    : bad.prefix(5).joined(separator: "; ") + (bad.count > 5 ? " (and \(bad.count - 5) more)" : "")))
            } else {
                out.append(.unknown(.ima, "no IMA log was sent: the IMA allowlist cannot pass on files nobody reported (run IMA in the "
                                        + "guest and send ascii_runtime_measurements)"))
            }
        }
        // A boot application whose digest the measured dbx revokes ran anyway.
        let revoked = Set(facts.dbxSHA256)
        if requireVerifiedBootApplications && dbx == nil && facts.secureBoot.enabled == true {
            out.append(.unknown(.revoked, "dbx was not measured: whether a boot application is revoked cannot be shown"))
        } else if !revoked.isEmpty, facts.bootChain.contains(where: { $0.digests["sha256"] == nil }) {
            out.append(.unknown(.revoked,
                                "the SHA-256 digests of the boot applications were not verified: whether dbx revokes one cannot be shown"))
        } else if !revoked.isEmpty {
            let hit = facts.bootChain.filter { revoked.contains(($0.digests["sha256"] ?? "").lowercased()) }
            if !hit.isEmpty || requireVerifiedBootApplications {
                out.append(Check(.revoked, passed: hit.isEmpty,
                                 hit.isEmpty ? "no boot application is revoked by the measured dbx (\(revoked.count) hashes)"
                            : hit.map { "\($0.filePath ?? "image") is revoked by dbx (Authenticode sha256 \($0.digests["sha256"] ?? ""))" }
                                .joined(separator: "; ")))
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
