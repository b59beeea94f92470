/// What a check judges. The AR4SI trustworthiness vector of a token, the alert a failure raises
/// and the history all read the category from here, so they cannot disagree.
public enum CheckCategory: String, Sendable, Codable, CaseIterable {
    /// The evidence itself: freshness, the AK and its certificate, the quote, its coverage, the
    /// TPM counters, the replay of the logs. A failure here means nothing else can be believed.
    case evidence
    /// What ran: boot applications, their authorities, allowed and revoked digests.
    case executables
    /// How it was configured: Secure Boot, the kernel command line, dbx, expected PCR values,
    /// anomalies of the measured configuration.
    case configuration
    /// Files measured by IMA.
    case fileSystem = "file-system"
    /// The comparison with the VM's baseline.
    case baseline
}

/// A check's result: passed, failed, or unknown — a fact the check needs was not in the evidence
/// (or could not be verified). Unknown is never a pass.
public enum CheckOutcome: String, Sendable, Codable, CaseIterable {
    case pass, fail, unknown
}

/// A check's name: an open set (policies grow), each name with one category.
public struct CheckName: RawRepresentable, Sendable, Codable, Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
    public func encode(to encoder: any Encoder) throws { var c = encoder.singleValueContainer(); try c.encode(rawValue) }
    public var description: String { rawValue }

    // Evidence.
    public static let evidence: Self = "evidence"
    public static let nonce: Self = "nonce"
    public static let akCertificate: Self = "ak-certificate"
    public static let quote: Self = "quote"
    public static let coverage: Self = "coverage"
    public static let counters: Self = "counters"
    public static let replay: Self = "replay"
    public static let imaReplay: Self = "ima-replay"
    // Executables.
    public static let bootApplications: Self = "boot-applications"
    public static let authority: Self = "authority"
    public static let bootChain: Self = "boot-chain"
    public static let revoked: Self = "revoked"
    // Configuration.
    public static let secureBoot: Self = "secure-boot"
    public static let anomalies: Self = "anomalies"
    public static let kernelCommandLine: Self = "kernel-command-line"
    public static let dbx: Self = "dbx"
    /// `pcr-N`: an expected PCR value.
    public static func pcr(_ n: String) -> Self { Self(rawValue: "pcr-\(n)") }
    // File system.
    public static let ima: Self = "ima"
    // Baseline.
    public static let baseline: Self = "baseline"

    static let categories: [Self: CheckCategory] = [
        .evidence: .evidence, .nonce: .evidence, .akCertificate: .evidence, .quote: .evidence, .coverage: .evidence,
        .counters: .evidence, .replay: .evidence, .imaReplay: .evidence,
        .bootApplications: .executables, .authority: .executables, .bootChain: .executables, .revoked: .executables,
        .secureBoot: .configuration, .anomalies: .configuration, .kernelCommandLine: .configuration, .dbx: .configuration,
        .ima: .fileSystem, .baseline: .baseline,
    ]

    /// The category of this name (expected PCR values are configuration; a name this build does
    /// not know counts as evidence, the category whose failure trusts nothing else).
    public var category: CheckCategory {
        if let c = Self.categories[self] { return c }
        return rawValue.hasPrefix("pcr-") ? .configuration : .evidence
    }
}

/// One check of an attestation: what it judged, its category, its outcome, and a reason a person
/// can act on.
public struct Check: Sendable, Codable, Hashable {
    public var name: CheckName
    public var category: CheckCategory
    public var outcome: CheckOutcome
    public var reason: String

    public var passed: Bool { outcome == .pass }

    public init(_ name: CheckName, outcome: CheckOutcome, _ reason: String) {
        self.name = name; self.category = name.category; self.outcome = outcome; self.reason = reason
    }
    public init(_ name: CheckName, passed: Bool, _ reason: String) { self.init(name, outcome: passed ? .pass : .fail, reason) }
    /// A check whose fact is missing: `unknown`, never a pass.
    public static func unknown(_ name: CheckName, _ reason: String) -> Check { Check(name, outcome: .unknown, reason) }

    enum CodingKeys: String, CodingKey { case name, category, outcome, passed, reason }

    /// Reads checks as stored before they had a category and an outcome (name, passed, reason).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(CheckName.self, forKey: .name)
        reason = try c.decode(String.self, forKey: .reason)
        category = try c.decodeIfPresent(CheckCategory.self, forKey: .category) ?? name.category
        if let o = try c.decodeIfPresent(CheckOutcome.self, forKey: .outcome) { outcome = o } else {
            outcome = try c.decode(Bool.self, forKey: .passed) ? .pass : .fail
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(category, forKey: .category)
        try c.encode(outcome, forKey: .outcome)
        try c.encode(passed, forKey: .passed)
        try c.encode(reason, forKey: .reason)
    }
}

extension Check: JSONSelfWriting {
    /// The keys `encode(to:)` writes, by hand: an attestation encodes about twenty checks three times.
    public func writeJSON(to out: inout [UInt8], sortedKeys: Bool) {
        func category(_ out: inout [UInt8]) {
            JSONText.append("\"category\":", to: &out); JSONText.appendString(self.category.rawValue, to: &out)
        }
        func name(_ out: inout [UInt8]) { JSONText.append("\"name\":", to: &out); JSONText.appendString(self.name.rawValue, to: &out) }
        JSONText.append("{", to: &out)
        if sortedKeys { category(&out); JSONText.append(",", to: &out); name(&out) } else {
            name(&out); JSONText.append(",", to: &out); category(&out)
        }
        JSONText.append(",\"outcome\":", to: &out); JSONText.appendString(outcome.rawValue, to: &out)
        JSONText.append(passed ? ",\"passed\":true,\"reason\":" : ",\"passed\":false,\"reason\":", to: &out)
        JSONText.appendString(reason, to: &out)
        JSONText.append("}", to: &out)
    }
}

extension Array where Element == Check {
    /// True when there is at least one check and every one passed.
    public var allPassed: Bool { !isEmpty && allSatisfy(\.passed) }
    /// The first check that did not pass.
    public var firstFailure: Check? { first { !$0.passed } }
    /// Whether every check of `category` passed (true when there is none).
    public func passed(_ category: CheckCategory) -> Bool { allSatisfy { $0.category != category || $0.passed } }
}
