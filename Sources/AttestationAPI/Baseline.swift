import Foundation

/// Where a VM's baseline came from.
public enum BaselineSource: String, Sendable, Codable, CaseIterable {
    /// Its first healthy boot with complete evidence (trust on first use).
    case learned
    /// A boot a person approved.
    case approved
    /// Values predicted from its disk.
    case predicted
}

/// How an attestation's boot stands against the VM's baseline.
public enum BaselineStatus: String, Sendable, Codable, CaseIterable {
    /// This boot became the baseline (trust on first use).
    case learned
    case matches
    case changed
    /// There is none yet: it waits for a person's approval, a prediction, or a boot whose
    /// evidence is complete.
    case pending
}

/// What a baseline component is. Stored in baselines and sent in outcomes and alerts as its text;
/// the kinds named here are the ones this build produces — a kind an older or newer version stored
/// reads back as it was (a stored baseline never becomes unreadable for a word this build lacks).
public struct ComponentKind: RawRepresentable, Sendable, Codable, Hashable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// What the firmware measured into PCRs 0–3.
    public static let firmware = Self(rawValue: "firmware")
    /// A Secure Boot variable (PK, KEK, db, dbx, SecureBoot) measured into PCR 7.
    public static let secureBootConfiguration = Self(rawValue: "secure-boot-configuration")
    /// The db entry that authorised an image (PCR 7).
    public static let secureBootAuthority = Self(rawValue: "secure-boot-authority")
    /// A shim MOK variable or text measured into PCR 14.
    public static let mok = Self(rawValue: "mok")
    /// Another UEFI variable (boot order and entries, PCRs 1 and 5).
    public static let bootConfiguration = Self(rawValue: "boot-configuration")
    /// The first boot application (PCR 4): shim, or the boot loader itself.
    public static let bootLoader = Self(rawValue: "boot-loader")
    /// A later boot application (PCR 4): grub, a UKI, the kernel as an EFI image.
    public static let bootApplication = Self(rawValue: "boot-application")
    /// A UEFI driver or option ROM image outside PCR 4.
    public static let driver = Self(rawValue: "driver")
    /// The kernel command line (PCR 8).
    public static let kernelCommandLine = Self(rawValue: "kernel-command-line")
    /// A command grub ran (PCR 8).
    public static let bootLoaderCommand = Self(rawValue: "boot-loader-command")
    /// The kernel file grub loaded (PCR 9).
    public static let kernel = Self(rawValue: "kernel")
    /// The initial RAM disk grub loaded (PCR 9).
    public static let initrd = Self(rawValue: "initrd")
    /// Another file grub read, its configuration among them (PCR 9).
    public static let bootLoaderFile = Self(rawValue: "boot-loader-file")
    /// A predicted PCR value (a predicted baseline holds these beside the events that explain changes).
    public static let pcr = Self(rawValue: "pcr")
    /// Anything else measured into the PCRs a baseline covers.
    public static let other = Self(rawValue: "other")
}

/// One measured boot component as a baseline keeps it: where it was measured, what it is, and
/// the value that identifies it (a digest, a variable's data hash, a command line).
public struct BaselineComponent: Sendable, Codable, Hashable {
    /// Stable key for comparison: "PCR 4 boot application 2", "PCR 7 variable db", …
    public var key: String
    public var pcr: UInt32
    public var kind: ComponentKind
    /// What a person calls it: a file path, a variable name, the command line.
    public var name: String
    public var value: String
    /// The signer that authorised it, when one was measured for it.
    public var signer: String?

    public init(key: String, pcr: UInt32, kind: ComponentKind, name: String, value: String, signer: String? = nil) {
        self.key = key; self.pcr = pcr; self.kind = kind; self.name = name; self.value = value; self.signer = signer
    }
}

/// A difference between a boot and its baseline, event by event.
public struct BaselineChange: Sendable, Codable, Hashable {
    public enum Change: String, Sendable, Codable { case changed, added, removed }
    public var change: Change
    public var key: String
    public var pcr: UInt32
    public var kind: ComponentKind
    public var name: String
    public var from: String?
    public var to: String?
    public var fromSigner: String?
    public var toSigner: String?

    public init(change: Change, key: String, pcr: UInt32, kind: ComponentKind, name: String, from: String?, to: String?,
                fromSigner: String? = nil, toSigner: String? = nil) {
        self.change = change; self.key = key; self.pcr = pcr; self.kind = kind; self.name = name
        self.from = from; self.to = to; self.fromSigner = fromSigner; self.toSigner = toSigner
    }

    /// "boot-application \EFI\debian\grubx64.efi (PCR 4) changed: Authenticode sha256 1a2b… signed by X → 3c4d… unsigned".
    public var summary: String {
        func v(_ s: String?, _ signer: String?) -> String {
            guard let s else { return "absent" }
            let short = s.count > 24 && s.allSatisfy(\.isHexDigit) ? String(s.prefix(16)) + "…" : "\"\(s)\""
            return signer.map { "\(short) (signed by \($0))" } ?? short
        }
        switch change {
        case .changed: return "\(kind) \(name) (PCR \(pcr)) changed from \(v(from, fromSigner)) to \(v(to, toSigner))"
        case .added: return "\(kind) \(name) (PCR \(pcr)) is new: \(v(to, toSigner))"
        case .removed: return "\(kind) \(name) (PCR \(pcr)) is gone (was \(v(from, fromSigner)))"
        }
    }
}

