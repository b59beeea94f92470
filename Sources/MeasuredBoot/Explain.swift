import TPM2

/// The facts a policy (and a person) needs about a boot, derived only from replay-verified
/// events (`VerifiedEventLog`). Data that only a digest vouches for (image device paths, grub's
/// file names) is marked as such.
public struct BootFacts: Sendable, Codable, Hashable {
    /// False when the log was explained without comparing it with TPM PCRs (`unchecked`).
    public var comparedWithTPM: Bool
    public var verifiedPCRs: [UInt32]
    /// The banks whose digests the replay compared with the TPM (bank names); digests and
    /// data checks come only from these.
    public var verifiedBanks: [String] = []
    public var secureBoot: SecureBootState
    /// PK, KEK, db, dbx (and dbt/dbr) as measured into PCR 7.
    public var keyDatabases: [KeyDatabase]
    /// EV_EFI_VARIABLE_AUTHORITY events: which db/MokList/shim entry verified a boot component.
    public var authorities: [Authority]
    /// Every EFI application started, in order, with its Authenticode digest per bank.
    public var bootChain: [BootApplication]
    public var bootOrder: [UInt16]?
    public var bootOptions: [BootOption]
    public var shim: ShimState?
    public var grub: GrubState?
    /// The command line of the kernel that was started: the last of `kernelCommandLines`, nil
    /// when none was measured or when what was measured does not establish it (an anomaly says why).
    public var kernelCommandLine: String?
    /// Every kernel command line the boot loader produced, in order (grub's `kernel_cmdline`
    /// bound to the `linux` command before it; systemd-stub's command line), each vouched for by
    /// its digest. Empty with `kernelCommandLine == nil` when the command line is unknown.
    public var kernelCommandLines: [String] = []
    /// systemd-stub (UKI) measurements: PCR 11 sections, PCR 12 parameters, PCR 13 extensions.
    public var uki: [UKIMeasurement]
    public var separators: [Separator]
    public var anomalies: [Anomaly]

    public struct SecureBootState: Sendable, Codable, Hashable {
        /// The SecureBoot variable's value as measured (nil: not measured).
        public var enabled: Bool?
        public var setupMode: Bool?
        public var auditMode: Bool?
        public var deployedMode: Bool?
        public var eventIndex: Int?
    }

    public struct Certificate: Sendable, Codable, Hashable {
        public var subject: String?
        public var issuer: String?
        public var sha256Fingerprint: String
        public var owner: String?
    }

    public struct KeyDatabase: Sendable, Codable, Hashable {
        public var name: String
        public var eventIndex: Int
        public var certificates: [Certificate]
        /// Hash entries by signature type (EFI_CERT_SHA256_GUID: n…).
        public var hashCounts: [String: Int]
        /// The EFI_CERT_SHA256_GUID entries, hex (what dbx revokes by image digest).
        public var sha256Hashes: [String] = []
        public var isEmpty: Bool
        public var sha256OfData: String
    }

    public struct Authority: Sendable, Codable, Hashable {
        public var eventIndex: Int
        public var pcr: UInt32
        /// The variable the entry comes from (db, MokList, Shim, SbatLevel, MokListTrusted…).
        public var variable: String
        public var certificate: Certificate?
        /// A hash entry or other data, hex.
        public var other: String?
    }

    public struct BootApplication: Sendable, Codable, Hashable {
        public var eventIndex: Int
        public var pcr: UInt32
        public var type: String
        /// Authenticode digest per bank name.
        public var digests: [String: String]
        /// Claimed by the firmware; only the digest is vouched for by the replay.
        public var devicePath: String?
        public var filePath: String?
        /// Authorities measured between the previous application and this one (UEFI measures
        /// each authority once, so later images verified by the same entry show none).
        public var authorityEvents: [Int]
    }

    public struct BootOption: Sendable, Codable, Hashable {
        public var number: String
        public var description: String
        public var devicePath: String
        public var active: Bool
        public var eventIndex: Int
    }

    public struct ShimState: Sendable, Codable, Hashable {
        public var mokList: KeyDatabase?
        public var mokListX: KeyDatabase?
        public var mokListTrusted: Bool?
        public var sbatLevel: String?
        public var vendorCertificate: Certificate?
    }

    public struct GrubState: Sendable, Codable, Hashable {
        public var commands: [String]
        /// Files grub read (PCR 9); the names are claims, the digests are of the contents.
        public var files: [String]
    }

    public struct UKIMeasurement: Sendable, Codable, Hashable {
        public var eventIndex: Int
        public var pcr: UInt32
        public var text: String
        /// True when the digest is of this text; false when the text names what was measured
        /// (a section, a credential): then it is a claim.
        public var vouched: Bool = false
    }

    public struct Separator: Sendable, Codable, Hashable {
        public var eventIndex: Int
        public var pcr: UInt32
        public var isError: Bool
    }

    public struct Anomaly: Sendable, Codable, Hashable {
        public struct Kind: RawRepresentable, Sendable, Codable, Hashable {
            public var rawValue: String
            public init(rawValue: String) { self.rawValue = rawValue }
            public static let eventAfterSeparator = Self(rawValue: "event-after-separator")
            public static let missingSeparator = Self(rawValue: "missing-separator")
            public static let repeatedSeparator = Self(rawValue: "repeated-separator")
            public static let errorSeparator = Self(rawValue: "error-separator")
            public static let digestNotOfData = Self(rawValue: "digest-not-of-data")
            public static let unknownEventType = Self(rawValue: "unknown-event-type")
            public static let malformedEventData = Self(rawValue: "malformed-event-data")
            /// Secure Boot configuration (SecureBoot, PK, KEK, db, dbx, dbt, dbr, AuditMode,
            /// DeployedMode) measured into PCR 7 after its separator: the firmware measures it
            /// before; this was added later (by the OS), and is not the configuration that booted.
            public static let configurationAfterSeparator = Self(rawValue: "secure-boot-configuration-after-separator")
            /// A second measurement of one configuration variable before the separator.
            public static let repeatedConfiguration = Self(rawValue: "repeated-secure-boot-configuration")
            /// SecureBoot, PK, KEK, db, dbx not in the firmware's order (PFP 3.3.4.8).
            public static let configurationOutOfOrder = Self(rawValue: "secure-boot-configuration-out-of-order")
            /// Some of SecureBoot, PK, KEK, db, dbx measured, not all (the PFP requires all, empty or not).
            public static let incompleteConfiguration = Self(rawValue: "incomplete-secure-boot-configuration")
            /// A configuration variable's name under another vendor GUID than the UEFI one.
            public static let foreignConfigurationVariable = Self(rawValue: "foreign-secure-boot-configuration-variable")
            /// A kernel command line that is not bound to the boot loader command that produced
            /// it, or a `linux` command without its command line: the command line is unknown.
            public static let unboundKernelCommandLine = Self(rawValue: "unbound-kernel-command-line")
            /// An event type that does not belong in its PCR (an event's type is not covered by
            /// its digest: a boot application relabelled as a string would leave the boot chain).
            public static let unexpectedEventType = Self(rawValue: "unexpected-event-type")
            /// A boot loader string in PCR 8 that no known convention vouches for: what it
            /// measured is unknown.
            public static let unverifiedMeasurement = Self(rawValue: "unverified-measurement")
        }
        public var kind: Kind
        public var eventIndex: Int?
        public var pcr: UInt32?
        public var message: String
    }
}

extension BootFacts {
    /// The facts without what no digest vouches for (device and file paths of images, grub's
    /// file names, systemd-stub texts that name what was measured) and without event positions:
    /// two logs that a TPM's PCRs verify to equal `withoutClaims()` describe the same boot.
    public func withoutClaims() -> BootFacts {
        var f = self
        f.secureBoot.eventIndex = nil
        f.keyDatabases = keyDatabases.map { var d = $0; d.eventIndex = 0; return d }
        f.authorities = authorities.map { var a = $0; a.eventIndex = 0; return a }
        // The order of events across PCRs is not measured (only each PCR's own order is), so
        // neither is which authority a firmware measured "before" an image in another PCR.
        f.bootChain = bootChain.map {
            var b = $0; b.eventIndex = 0; b.devicePath = nil; b.filePath = nil; b.type = ""; b.authorityEvents = []; return b
        }
        f.bootChain = f.bootChain.enumerated().sorted { ($0.element.pcr, $0.offset) < ($1.element.pcr, $1.offset) }.map(\.element)
        f.bootOptions = bootOptions.map { var o = $0; o.eventIndex = 0; return o }
        f.grub = grub.map { GrubState(commands: $0.commands, files: []) }
        f.uki = uki.filter(\.vouched).map { var u = $0; u.eventIndex = 0; return u }
        f.separators = separators.map {
            var s = $0; s.eventIndex = 0; return s
        }.sorted { ($0.pcr, $0.isError ? 1 : 0) < ($1.pcr, $1.isError ? 1 : 0) }
        f.anomalies = anomalies.map { var a = $0; a.eventIndex = nil; return a }
        if var shim = f.shim {
            shim.mokList?.eventIndex = 0
            shim.mokListX?.eventIndex = 0
            f.shim = shim
        }
        return f
    }
}

extension VerifiedEventLog {
    /// Derives the boot facts from the verified events. Text feeds a fact only when its digest
    /// vouches for it in a verified bank; Secure Boot state comes only from the configuration the
    /// firmware measured into PCR 7 before its separator.
    public func explain() -> BootFacts {
        var facts = BootFacts(comparedWithTPM: comparedWithTPM, verifiedPCRs: verifiedPCRs.sorted(),
                              secureBoot: .init(), keyDatabases: [], authorities: [], bootChain: [], bootOrder: nil,
                              bootOptions: [], shim: nil, grub: nil, kernelCommandLine: nil, uki: [], separators: [], anomalies: [])
        facts.verifiedBanks = verifiedBanks.sorted { $0.rawValue < $1.rawValue }.map(PCRValues.bankName)
        var shim = BootFacts.ShimState()
        var sawShim = false
        var grubCommands: [String] = []
        var grubFiles: [String] = []
        var pendingAuthorities: [Int] = []
        var separatorSeen: [UInt32: Int] = [:]
        var config = SecureBootConfiguration()
        var cmdline = CommandLineBinding()

        for v in events {
            let e = v.event
            let decoded = e.decoded
            if case .malformed(let err) = decoded {
                facts.anomalies.append(.init(kind: .malformedEventData, eventIndex: e.index, pcr: e.pcrIndex,
                                             message: "\(e.type) data does not decode: "
                                                    + "\(err.reason)\(err.offset.map { " (data offset \($0))" } ?? "")"))
            }
            if !e.type.isKnown {
                facts.anomalies.append(.init(kind: .unknownEventType, eventIndex: e.index, pcr: e.pcrIndex,
                                             message: "unknown event type \(e.type)"))
            }
            if v.dataVouching == .contradicted {
                var known = ""
                if case .authority(let v) = decoded, v.trailingBytes > 0 {
                    known = " (an old shim's authority event with trailing bytes, rhboot/shim#184)"
                }
                facts.anomalies.append(.init(kind: .digestNotOfData, eventIndex: e.index, pcr: e.pcrIndex,
                                             message: "the digest of this \(e.type) event is not the hash of its data: what it says is "
                                                    + "not what was measured\(known)"))
            }
            let configVariable = config.isConfiguration(e)
            if let sepAt = separatorSeen[e.pcrIndex], e.type != .separator, configVariable == nil,
                !Self.allowedAfterSeparator(pcr: e.pcrIndex, type: e.type)
            {
                facts.anomalies.append(.init(kind: .eventAfterSeparator, eventIndex: e.index, pcr: e.pcrIndex,
                                             message: "\(e.type) in PCR \(e.pcrIndex) after its separator (event \(sepAt))"))
            }
            if let expected = Self.expectedTypes[e.pcrIndex], !expected.contains(e.type), e.type.isKnown {
                facts.anomalies.append(.init(kind: .unexpectedEventType, eventIndex: e.index, pcr: e.pcrIndex,
                    message: "\(e.type) in PCR \(e.pcrIndex), where only \(expected.map(\.description).sorted().joined(separator: ", ")) "
                           + "belong: an event's type is not covered by its digest, so this may be a relabelled measurement"))
            }
            if e.pcrIndex == 8, e.type == .ipl, v.dataVouching == .claim {
                facts.anomalies.append(.init(kind: .unverifiedMeasurement, eventIndex: e.index, pcr: 8,
                    message: "an EV_IPL in PCR 8 that follows no known boot loader convention (grub's `grub_cmd:`/`kernel_cmdline:` "
                           + "strings): what it measured is unknown"))
            }
            if e.pcrIndex == 8 { cmdline.see(v, facts: &facts) }
            switch decoded {
            case .separator(_, let isError):
                if let first = separatorSeen[e.pcrIndex] {
                    facts.anomalies.append(.init(kind: .repeatedSeparator, eventIndex: e.index, pcr: e.pcrIndex,
                                                 message: "a second separator in PCR \(e.pcrIndex) (the first is event \(first))"))
                } else {
                    separatorSeen[e.pcrIndex] = e.index
                    if e.pcrIndex == 7 { config.commit(into: &facts) }
                }
                facts.separators.append(.init(eventIndex: e.index, pcr: e.pcrIndex, isError: isError))
                if isError {
                    facts.anomalies.append(.init(kind: .errorSeparator, eventIndex: e.index, pcr: e.pcrIndex,
                                                 message: "error separator in PCR \(e.pcrIndex): the firmware reported a measurement "
                                                        + "failure"))
                }
            case .variable(let variable) where v.dataMatchesDigest && configVariable != nil:
                config.see(variable, event: e, afterSeparator: separatorSeen[7], facts: &facts)
            case .variable(let variable) where v.dataMatchesDigest, .authority(let variable) where v.dataMatchesDigest:
                explainVariable(variable, event: e, facts: &facts, shim: &shim, sawShim: &sawShim, pending: &pendingAuthorities)
            case .imageLoad(let image) where e.type == .efiBootServicesApplication || e.pcrIndex == 4:
                var digests: [String: String] = [:]
                for d in v.digests { digests[PCRValues.bankName(d.algorithm)] = hexString(d.digest) }
                facts.bootChain.append(.init(eventIndex: e.index, pcr: e.pcrIndex, type: e.type.description, digests: digests,
                                             devicePath: image.devicePath?.description, filePath: image.devicePath?.filePath,
                                             authorityEvents: pendingAuthorities))
                pendingAuthorities = []
            case .ipl(let ipl):
                // shim measures its MOK state into PCR 14 (the text names it, the digest is of the data).
                if e.pcrIndex == 14 { sawShim = true }
                switch ipl.kind {
                case .grubCommand where v.dataMatchesDigest && e.pcrIndex == 8:
                    grubCommands.append(ipl.text)
                case .kernelCommandLine where v.dataMatchesDigest && e.pcrIndex == 8:
                    grubCommands.append("kernel_cmdline: " + ipl.text)
                case .file:
                    grubFiles.append(ipl.text)
                case .stub:
                    facts.uki.append(.init(eventIndex: e.index, pcr: e.pcrIndex, text: ipl.text, vouched: v.dataMatchesDigest))
                    if e.pcrIndex == 12, v.dataMatchesDigest { cmdline.stub(ipl.text) }
                default:
                    break
                }
            case .eventTag(let id, let data) where e.pcrIndex == 9 || e.pcrIndex == 11 || e.pcrIndex == 12:
                facts.uki.append(.init(eventIndex: e.index, pcr: e.pcrIndex,
                                       text: "tag 0x\(String(id, radix: 16)): \(EventData.text(data[...]))"))
            default:
                break
            }
        }
        // Missing separators: PCRs 0–7 with measurements but no separator (only when the
        // log's firmware PCRs were verified; a partial verification proves nothing here).
        for pcr in UInt32(0)...7
        where verifiedPCRs.contains(pcr) && separatorSeen[pcr] == nil && events.contains(where: { $0.event.pcrIndex == pcr }) {
            facts.anomalies.append(.init(kind: .missingSeparator, eventIndex: nil, pcr: pcr,
                                         message: "PCR \(pcr) has measurements but no separator: the log may be cut short or the firmware "
                                                + "did not finish"))
        }
        if verifiedPCRs.contains(7) { config.finish(facts: &facts) }
        if verifiedPCRs.contains(8) || verifiedPCRs.contains(12) { cmdline.finish(facts: &facts) }
        if !grubCommands.isEmpty || !grubFiles.isEmpty { facts.grub = .init(commands: grubCommands, files: grubFiles) }
        if sawShim { facts.shim = shim }
        return facts
    }

    private func explainVariable(_ variable: UEFIVariableData, event e: Event, facts: inout BootFacts, shim: inout BootFacts.ShimState,
                                 sawShim: inout Bool, pending: inout [Int]) {
        let value = e.type == .efiVariableAuthority ? variable.authorityValue : variable.value
        if e.type == .efiVariableAuthority {
            var a = BootFacts.Authority(eventIndex: e.index, pcr: e.pcrIndex, variable: variable.name)
            switch value {
            case .signatureData(let s):
                if let c = s.certificate { a.certificate = .init(c, owner: s.owner) } else { a.other = hexString(s.data) }
            case .certificate(let c):
                a.certificate = .init(c, owner: nil)
                if variable.name == "Shim" { shim.vendorCertificate = a.certificate; sawShim = true }
            case .text(let t):
                a.other = t
                if variable.name.hasPrefix("SbatLevel") { shim.sbatLevel = t; sawShim = true }
            case .boolean(let b):
                a.other = b ? "01" : "00"
            default:
                a.other = hexString(variable.data)
            }
            facts.authorities.append(a)
            pending.append(e.index)
            return
        }
        switch (variable.name, value) {
        case ("SetupMode", .boolean(let b)) where e.pcrIndex == 7: facts.secureBoot.setupMode = b
        case ("BootOrder", .bootOrder(let order)): facts.bootOrder = order
        case (_, .loadOption(let option)):
            facts.bootOptions.append(.init(number: String(variable.name.suffix(4)), description: option.description,
                                           devicePath: option.filePathList.map(\.description).joined(separator: ","),
                                           active: option.isActive, eventIndex: e.index))
        case ("MokList", _), ("MokListX", _):
            let db = BootFacts.KeyDatabase(variable.name, value, variable.data, e.index)
            if variable.name == "MokList" { shim.mokList = db } else { shim.mokListX = db }
            sawShim = true
        case ("MokListTrusted", .boolean(let b)):
            shim.mokListTrusted = b
            sawShim = true
        case ("SbatLevel", .text(let t)):
            shim.sbatLevel = t
            sawShim = true
        default:
            break
        }
    }

    /// The event types that belong in the PCRs whose events become facts (seen in every real log
    /// of the shared corpus): anything else there is an anomaly, since a type is only a label.
    static let expectedTypes: [UInt32: Set<EventType>] = [
        // PFP 3.3.4: host platform configuration, option ROM code and configuration, GPT and boot
        // variables, state transitions.
        1: [.separator, .efiVariableBoot, .efiVariableBoot2, .efiVariableDriverConfig, .efiHandoffTables, .efiHandoffTables2,
            .platformConfigFlags,
            .tableOfDevices, .cpuMicrocode, .nonhostConfig, .nonhostInfo, .efiAction, .action, .efiSPDMFirmwareConfig],
        2: [.separator, .efiBootServicesDriver, .efiRuntimeServicesDriver, .efiBootServicesApplication, .efiPlatformFirmwareBlob,
            .efiPlatformFirmwareBlob2,
            .nonhostCode, .nonhostInfo, .efiAction, .action, .efiSPDMFirmwareBlob, .efiGPTEvent, .efiGPTEvent2],
        3: [.separator, .efiVariableDriverConfig, .efiHandoffTables, .efiHandoffTables2, .nonhostConfig, .nonhostInfo, .efiAction, .action,
            .efiSPDMFirmwareConfig],
        5: [.separator, .efiGPTEvent, .efiGPTEvent2, .efiVariableBoot, .efiVariableBoot2, .efiAction, .action, .efiHandoffTables,
            .efiHandoffTables2, .omitBootDeviceEvents],
        6: [.separator, .compactHash, .efiAction, .action],
        4: [.separator, .efiBootServicesApplication, .efiBootServicesDriver, .efiRuntimeServicesDriver, .efiAction, .action],
        7: [.separator, .efiVariableDriverConfig, .efiVariableAuthority, .efiAction, .efiSPDMDeviceAuthority, .efiSPDMDevicePolicy],
        8: [.ipl, .separator, .efiAction],
        9: [.ipl, .eventTag, .separator],
        14: [.ipl, .eventTag, .separator],
    ]

    /// What the PFP allows after a PCR's separator: boot applications (PCR 4), GPT and
    /// ExitBootServices actions (PCR 5), authorities (PCR 7), and EV_EFI_ACTION generally.
    static func allowedAfterSeparator(pcr: UInt32, type: EventType) -> Bool {
        if type == .efiAction || type == .noAction { return true }
        switch pcr {
        // Boot variables and configuration tables are measured at ReadyToBoot, after separators.
        case 1: return [.efiVariableBoot, .efiVariableBoot2, .efiVariableDriverConfig, .efiHandoffTables, .efiHandoffTables2,
                        .platformConfigFlags].contains(type)
        // Option ROMs and drivers loaded while booting (e.g. from the boot disk).
        case 2: return [.efiBootServicesDriver, .efiRuntimeServicesDriver, .efiBootServicesApplication, .efiGPTEvent, .efiGPTEvent2,
                        .efiPlatformFirmwareBlob, .efiPlatformFirmwareBlob2, .efiSPDMFirmwareBlob].contains(type)
        case 4: return [.efiBootServicesApplication, .efiBootServicesDriver, .efiRuntimeServicesDriver, .compactHash, .ipl,
                        .eventTag].contains(type)
        case 5: return [.efiGPTEvent, .efiGPTEvent2, .efiVariableBoot, .efiVariableBoot2, .efiHandoffTables, .efiHandoffTables2,
                        .compactHash].contains(type)
        case 7: return [.efiVariableAuthority, .efiSPDMDeviceAuthority, .efiSPDMDevicePolicy].contains(type)
        case 0, 3, 6: return false
        default: return true
        }
    }
}

extension BootFacts.Certificate {
    init(_ c: CertificateInfo, owner: EFIGUID?) {
        self.init(subject: c.subject, issuer: c.issuer, sha256Fingerprint: c.sha256Fingerprint, owner: owner?.description)
    }
}

extension BootFacts.KeyDatabase {
    init(_ name: String, _ value: VariableValue, _ data: [UInt8], _ index: Int) {
        var certs: [BootFacts.Certificate] = []
        var counts: [String: Int] = [:]
        var sha256: [String] = []
        if case .signatureLists(let lists) = value {
            for l in lists {
                for s in l.entries {
                    if let c = s.certificate { certs.append(.init(c, owner: s.owner)) } else { counts[l.typeName, default: 0] += 1 }
                    if l.type == .certSHA256, s.data.count == 32 { sha256.append(hexString(s.data)) }
                }
            }
        }
        self.init(name: name, eventIndex: index, certificates: certs, hashCounts: counts, sha256Hashes: sha256, isEmpty: data.isEmpty,
                  sha256OfData: hexString(EventLogHash.hash(.sha256, data) ?? []))
    }
}

/// The Secure Boot configuration the firmware measures into PCR 7 before its separator (PFP
/// 3.3.4.8: SecureBoot, PK, KEK, db, dbx in this order, each once, empty or not; then dbt, dbr and
/// the mode variables where the firmware has them). It becomes facts only at PCR 7's separator:
/// what comes after the separator was not measured by the firmware, and a PCR 7 without a
/// separator establishes no state.
struct SecureBootConfiguration {
    static let order = ["SecureBoot", "PK", "KEK", "db", "dbx"]
    static let optional: Set<String> = ["dbt", "dbr", "AuditMode", "DeployedMode"]
    static let databases: Set<String> = ["db", "dbx", "dbt", "dbr"]

    var seen: [String: Int] = [:]
    var rank = -1
    var pending = BootFacts.SecureBootState()
    var databases: [BootFacts.KeyDatabase] = []
    var committed = false

    /// The configuration variable this event measures (EV_EFI_VARIABLE_DRIVER_CONFIG in PCR 7
    /// naming one), or nil.
    func isConfiguration(_ e: Event) -> String? {
        guard e.pcrIndex == 7, e.type == .efiVariableDriverConfig, case .variable(let v) = e.decoded else { return nil }
        return Self.order.contains(v.name) || Self.optional.contains(v.name) ? v.name : nil
    }

    mutating func see(_ v: UEFIVariableData, event e: Event, afterSeparator separator: Int?, facts: inout BootFacts) {
        if let separator {
            facts.anomalies.append(.init(kind: .configurationAfterSeparator, eventIndex: e.index, pcr: 7,
                message: "\(v.name) was measured into PCR 7 after its separator (event \(separator)): the firmware measures the Secure "
                       + "Boot configuration before it, so this was added later and is not the configuration that booted"))
            return
        }
        let guid: EFIGUID = Self.databases.contains(v.name) ? .imageSecurityDatabase : .globalVariable
        guard v.vendorGUID == guid else {
            facts.anomalies.append(.init(kind: .foreignConfigurationVariable, eventIndex: e.index, pcr: 7,
                message: "\(v.name) was measured under vendor \(v.vendorGUID), not \(guid): it is not the UEFI variable of that name"))
            return
        }
        if let first = seen[v.name] {
            facts.anomalies.append(.init(kind: .repeatedConfiguration, eventIndex: e.index, pcr: 7,
                message: "\(v.name) was measured twice into PCR 7 (first at event \(first)): the firmware measures it once"))
            return
        }
        seen[v.name] = e.index
        if let r = Self.order.firstIndex(of: v.name) {
            if r < rank {
                facts.anomalies.append(.init(kind: .configurationOutOfOrder, eventIndex: e.index, pcr: 7,
                    message: "\(v.name) was measured after \(Self.order[rank]): the firmware measures SecureBoot, PK, KEK, db, dbx in "
                           + "this order"))
            }
            rank = max(rank, r)
        }
        let value = v.value
        switch (v.name, value) {
        case ("SecureBoot", .boolean(let b)): pending.enabled = b; pending.eventIndex = e.index
        case ("SecureBoot", .empty): pending.enabled = false; pending.eventIndex = e.index
        case ("SecureBoot", _): pending.eventIndex = e.index
        case ("AuditMode", .boolean(let b)): pending.auditMode = b
        case ("DeployedMode", .boolean(let b)): pending.deployedMode = b
        case (let name, _) where Self.databases.contains(name) || name == "PK" || name == "KEK":
            databases.append(BootFacts.KeyDatabase(name, value, v.data, e.index))
        default: break
        }
    }

    /// At PCR 7's separator: the configuration that booted.
    mutating func commit(into facts: inout BootFacts) {
        guard !committed else { return }
        committed = true
        let setup = facts.secureBoot.setupMode
        facts.secureBoot = pending
        facts.secureBoot.setupMode = setup
        facts.keyDatabases = databases
    }

    func finish(facts: inout BootFacts) {
        let missing = Self.order.filter { seen[$0] == nil }
        if !missing.isEmpty && missing.count < Self.order.count {
            facts.anomalies.append(.init(kind: .incompleteConfiguration, eventIndex: nil, pcr: 7,
                message: "PCR 7 lacks \(missing.joined(separator: ", ")) before its separator: the firmware measures SecureBoot, PK, KEK, "
                       + "db and dbx, empty or not"))
        }
    }
}

/// Binds kernel command lines to what produced them. grub's digest covers the string only, not
/// its `grub_cmd`/`kernel_cmdline` label, so a label alone proves nothing: a command line counts
/// only when it follows (next in PCR 8) the `linux` command whose arguments it repeats, and every
/// `linux` command must be followed by its command line. Anything else makes the command line
/// unknown, with an anomaly.
struct CommandLineBinding {
    static let linuxCommands: Set<String> = ["linux", "linuxefi", "linux16", "linux32"]
    var pendingLinux: (index: Int, args: [Substring])?
    var lines: [String] = []
    var unknown = false

    static func words(_ s: String) -> [Substring] {
        s.filter { $0 != "\"" }.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
    }

    mutating func see(_ v: VerifiedEvent, facts: inout BootFacts) {
        let e = v.event
        let ipl: IPLEvent? = if case .ipl(let i) = e.decoded { i } else { nil }
        let vouched = v.dataMatchesDigest
        if v.dataVouching == .contradicted { unknown = true }
        if let linux = pendingLinux {
            pendingLinux = nil
            if let ipl, vouched, ipl.kind == .kernelCommandLine, Self.words(ipl.text) == linux.args {
                lines.append(ipl.text)
                return
            }
            unbound(facts: &facts, at: linux.index,
                    "grub's linux command (event \(linux.index)) is not followed by the kernel command line it produced")
        }
        guard let ipl, vouched else { return }
        switch ipl.kind {
        case .grubCommand:
            let w = Self.words(ipl.text)
            if let first = w.first, Self.linuxCommands.contains(String(first)) { pendingLinux = (e.index, Array(w.dropFirst())) }
        case .kernelCommandLine:
            unbound(facts: &facts, at: e.index,
                    "the kernel command line (event \(e.index)) does not follow the grub linux command that produced it")
        default:
            break
        }
    }

    mutating func stub(_ text: String) { lines.append(text) }

    mutating func unbound(facts: inout BootFacts, at index: Int, _ message: String) {
        unknown = true
        facts.anomalies.append(.init(kind: .unboundKernelCommandLine, eventIndex: index, pcr: 8,
                                     message: message + ": the kernel command line is unknown"))
    }

    mutating func finish(facts: inout BootFacts) {
        if let linux = pendingLinux {
            pendingLinux = nil
            unbound(facts: &facts, at: linux.index,
                    "grub's linux command (event \(linux.index)) is not followed by the kernel command line it produced")
        }
        if unknown {
            facts.kernelCommandLines = []
            facts.kernelCommandLine = nil
        } else {
            facts.kernelCommandLines = lines
            facts.kernelCommandLine = lines.last
        }
    }
}
