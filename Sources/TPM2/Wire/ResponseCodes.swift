/// TPM_RC response code (Part 2, 6.6) and its structured decoding.
///
/// Layout: format-one codes (bit 7 set) carry an error number in bits 0–5 and name the
/// parameter (bit 6 set, number in bits 8–11), session (bit 11 set) or handle (bits 8–10)
/// that failed. Format-zero codes with bit 8 set are TPM 2.0 errors, or warnings when bit 11
/// is also set; bit 10 marks vendor codes. Bits 16–23 carry the TSS layer (0 = the TPM).
public struct TPMRC: TPMNamedConstant, Error {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let success = Self(rawValue: 0)
    static let ver1: UInt32 = 0x100
    static let fmt1: UInt32 = 0x080
    static let warn: UInt32 = 0x900

    // Format-zero errors (TPM_RC_VER1 + n).
    public static let initialize = Self(rawValue: ver1 + 0x000)
    public static let failure = Self(rawValue: ver1 + 0x001)
    public static let sequence = Self(rawValue: ver1 + 0x003)
    public static let private_ = Self(rawValue: ver1 + 0x00B)
    public static let hmac = Self(rawValue: ver1 + 0x019)
    public static let disabled = Self(rawValue: ver1 + 0x020)
    public static let exclusive = Self(rawValue: ver1 + 0x021)
    public static let authType = Self(rawValue: ver1 + 0x024)
    public static let authMissing = Self(rawValue: ver1 + 0x025)
    public static let policy = Self(rawValue: ver1 + 0x026)
    public static let pcr = Self(rawValue: ver1 + 0x027)
    public static let pcrChanged = Self(rawValue: ver1 + 0x028)
    public static let upgrade = Self(rawValue: ver1 + 0x02D)
    public static let tooManyContexts = Self(rawValue: ver1 + 0x02E)
    public static let authUnavailable = Self(rawValue: ver1 + 0x02F)
    public static let reboot = Self(rawValue: ver1 + 0x030)
    public static let unbalanced = Self(rawValue: ver1 + 0x031)
    public static let commandSize = Self(rawValue: ver1 + 0x042)
    public static let commandCode = Self(rawValue: ver1 + 0x043)
    public static let authSize = Self(rawValue: ver1 + 0x044)
    public static let authContext = Self(rawValue: ver1 + 0x045)
    public static let nvRange = Self(rawValue: ver1 + 0x046)
    public static let nvSize = Self(rawValue: ver1 + 0x047)
    public static let nvLocked = Self(rawValue: ver1 + 0x048)
    public static let nvAuthorization = Self(rawValue: ver1 + 0x049)
    public static let nvUninitialized = Self(rawValue: ver1 + 0x04A)
    public static let nvSpace = Self(rawValue: ver1 + 0x04B)
    public static let nvDefined = Self(rawValue: ver1 + 0x04C)
    public static let badContext = Self(rawValue: ver1 + 0x050)
    public static let cpHash = Self(rawValue: ver1 + 0x051)
    public static let parent = Self(rawValue: ver1 + 0x052)
    public static let needsTest = Self(rawValue: ver1 + 0x053)
    public static let noResult = Self(rawValue: ver1 + 0x054)
    public static let sensitive = Self(rawValue: ver1 + 0x055)

    // Format-one errors (TPM_RC_FMT1 + n); combine with `.parameter(n)`/`.handle(n)`/`.session(n)`.
    public static let asymmetric = Self(rawValue: fmt1 + 0x001)
    public static let attributes = Self(rawValue: fmt1 + 0x002)
    public static let hash = Self(rawValue: fmt1 + 0x003)
    public static let value = Self(rawValue: fmt1 + 0x004)
    public static let hierarchy = Self(rawValue: fmt1 + 0x005)
    public static let keySize = Self(rawValue: fmt1 + 0x007)
    public static let mgf = Self(rawValue: fmt1 + 0x008)
    public static let mode = Self(rawValue: fmt1 + 0x009)
    public static let type = Self(rawValue: fmt1 + 0x00A)
    public static let handle = Self(rawValue: fmt1 + 0x00B)
    public static let kdf = Self(rawValue: fmt1 + 0x00C)
    public static let range = Self(rawValue: fmt1 + 0x00D)
    public static let authFail = Self(rawValue: fmt1 + 0x00E)
    public static let nonce = Self(rawValue: fmt1 + 0x00F)
    public static let pp = Self(rawValue: fmt1 + 0x010)
    public static let scheme = Self(rawValue: fmt1 + 0x012)
    public static let size = Self(rawValue: fmt1 + 0x015)
    public static let symmetric = Self(rawValue: fmt1 + 0x016)
    public static let tag = Self(rawValue: fmt1 + 0x017)
    public static let selector = Self(rawValue: fmt1 + 0x018)
    public static let insufficient = Self(rawValue: fmt1 + 0x01A)
    public static let signature = Self(rawValue: fmt1 + 0x01B)
    public static let key = Self(rawValue: fmt1 + 0x01C)
    public static let policyFail = Self(rawValue: fmt1 + 0x01D)
    public static let integrity = Self(rawValue: fmt1 + 0x01F)
    public static let ticket = Self(rawValue: fmt1 + 0x020)
    public static let reservedBits = Self(rawValue: fmt1 + 0x021)
    public static let badAuth = Self(rawValue: fmt1 + 0x022)
    public static let expired = Self(rawValue: fmt1 + 0x023)
    public static let policyCC = Self(rawValue: fmt1 + 0x024)
    public static let binding = Self(rawValue: fmt1 + 0x025)
    public static let curve = Self(rawValue: fmt1 + 0x026)
    public static let eccPoint = Self(rawValue: fmt1 + 0x027)
    public static let fwLimited = Self(rawValue: fmt1 + 0x028)
    public static let svnLimited = Self(rawValue: fmt1 + 0x029)

    // Warnings (TPM_RC_WARN + n).
    public static let contextGap = Self(rawValue: warn + 0x001)
    public static let objectMemory = Self(rawValue: warn + 0x002)
    public static let sessionMemory = Self(rawValue: warn + 0x003)
    public static let memory = Self(rawValue: warn + 0x004)
    public static let sessionHandles = Self(rawValue: warn + 0x005)
    public static let objectHandles = Self(rawValue: warn + 0x006)
    public static let locality = Self(rawValue: warn + 0x007)
    public static let yielded = Self(rawValue: warn + 0x008)
    public static let canceled = Self(rawValue: warn + 0x009)
    public static let testing = Self(rawValue: warn + 0x00A)
    public static let nvRate = Self(rawValue: warn + 0x020)
    public static let lockout = Self(rawValue: warn + 0x021)
    public static let retry = Self(rawValue: warn + 0x022)
    public static let nvUnavailable = Self(rawValue: warn + 0x023)
    public static let notUsed = Self(rawValue: warn + 0x07F)

    /// (name suffix, meaning) per base code. The meanings paraphrase Part 2, Table 16.
    static let table: [UInt32: (String, String)] = [
        ver1 + 0x000: ("INITIALIZE", "TPM not initialized by TPM2_Startup or already initialized"),
        ver1 + 0x001: ("FAILURE", "commands not being accepted because of a TPM failure"),
        ver1 + 0x003: ("SEQUENCE", "improper use of a sequence handle"),
        ver1 + 0x00B: ("PRIVATE", "not currently used"),
        ver1 + 0x019: ("HMAC", "not currently used"),
        ver1 + 0x020: ("DISABLED", "the command is disabled"),
        ver1 + 0x021: ("EXCLUSIVE", "command failed because audit sequence required exclusivity"),
        ver1 + 0x024: ("AUTH_TYPE", "authorization handle is not correct for command"),
        ver1 + 0x025: ("AUTH_MISSING", "command requires an authorization session for handle and it is not present"),
        ver1 + 0x026: ("POLICY", "policy failure in math operation or an invalid authPolicy value"),
        ver1 + 0x027: ("PCR", "PCR check fail"),
        ver1 + 0x028: ("PCR_CHANGED", "PCR have changed since checked"),
        ver1 + 0x02D: ("UPGRADE", "the TPM is in field upgrade mode"),
        ver1 + 0x02E: ("TOO_MANY_CONTEXTS", "context ID counter is at maximum"),
        ver1 + 0x02F: ("AUTH_UNAVAILABLE", "authValue or authPolicy is not available for selected entity"),
        ver1 + 0x030: ("REBOOT", "a _TPM_Init and Startup(CLEAR) is required before the TPM can resume operation"),
        ver1 + 0x031: ("UNBALANCED", "the protection algorithms (hash and symmetric) are not reasonably balanced"),
        ver1 + 0x042: ("COMMAND_SIZE", "command commandSize value is inconsistent with contents of the command buffer"),
        ver1 + 0x043: ("COMMAND_CODE", "command code not supported"),
        ver1 + 0x044: ("AUTHSIZE", "the value of authorizationSize is out of range or the number of octets in the authorization area is "
                                 + "greater than required"),
        ver1 + 0x045: ("AUTH_CONTEXT", "use of an authorization session with a context command or another command that cannot have an "
                                     + "authorization session"),
        ver1 + 0x046: ("NV_RANGE", "NV offset+size is out of range"),
        ver1 + 0x047: ("NV_SIZE", "requested allocation size is larger than allowed"),
        ver1 + 0x048: ("NV_LOCKED", "NV access locked"),
        ver1 + 0x049: ("NV_AUTHORIZATION", "NV access authorization fails in command actions"),
        ver1 + 0x04A: ("NV_UNINITIALIZED",
                       "an NV Index is used before being initialized or the state saved by TPM2_Shutdown(STATE) could not be restored"),
        ver1 + 0x04B: ("NV_SPACE", "insufficient space for NV allocation"),
        ver1 + 0x04C: ("NV_DEFINED", "NV Index or persistent object already defined"),
        ver1 + 0x050: ("BAD_CONTEXT", "context in TPM2_ContextLoad() is not valid"),
        ver1 + 0x051: ("CPHASH", "cpHash value already set or not correct for use"),
        ver1 + 0x052: ("PARENT", "handle for parent is not a valid parent"),
        ver1 + 0x053: ("NEEDS_TEST", "some function needs testing"),
        ver1 + 0x054: ("NO_RESULT", "returned when an internal function cannot process a request due to an unspecified problem"),
        ver1 + 0x055: ("SENSITIVE", "the sensitive area did not unmarshal correctly after decryption"),
        fmt1 + 0x001: ("ASYMMETRIC", "asymmetric algorithm not supported or not correct"),
        fmt1 + 0x002: ("ATTRIBUTES", "inconsistent attributes"),
        fmt1 + 0x003: ("HASH", "hash algorithm not supported or not appropriate"),
        fmt1 + 0x004: ("VALUE", "value is out of range or is not correct for the context"),
        fmt1 + 0x005: ("HIERARCHY", "hierarchy is not enabled or is not correct for the use"),
        fmt1 + 0x007: ("KEY_SIZE", "key size is not supported"),
        fmt1 + 0x008: ("MGF", "mask generation function not supported"),
        fmt1 + 0x009: ("MODE", "mode of operation not supported"),
        fmt1 + 0x00A: ("TYPE", "the type of the value is not appropriate for the use"),
        fmt1 + 0x00B: ("HANDLE", "the handle is not correct for the use"),
        fmt1 + 0x00C: ("KDF", "unsupported key derivation function or function not appropriate for use"),
        fmt1 + 0x00D: ("RANGE", "value was out of allowed range"),
        fmt1 + 0x00E: ("AUTH_FAIL", "the authorization HMAC check failed and DA counter incremented"),
        fmt1 + 0x00F: ("NONCE", "invalid nonce size or nonce value mismatch"),
        fmt1 + 0x010: ("PP", "authorization requires assertion of PP"),
        fmt1 + 0x012: ("SCHEME", "unsupported or incompatible scheme"),
        fmt1 + 0x015: ("SIZE", "structure is the wrong size"),
        fmt1 + 0x016: ("SYMMETRIC", "unsupported symmetric algorithm or key size, or not appropriate for instance"),
        fmt1 + 0x017: ("TAG", "incorrect structure tag"),
        fmt1 + 0x018: ("SELECTOR", "union selector is incorrect"),
        fmt1 + 0x01A: ("INSUFFICIENT", "the TPM was unable to unmarshal a value because there were not enough octets in the input buffer"),
        fmt1 + 0x01B: ("SIGNATURE", "the signature is not valid"),
        fmt1 + 0x01C: ("KEY", "key fields are not compatible with the selected use"),
        fmt1 + 0x01D: ("POLICY_FAIL", "a policy check failed"),
        fmt1 + 0x01F: ("INTEGRITY", "integrity check failed"),
        fmt1 + 0x020: ("TICKET", "invalid ticket"),
        fmt1 + 0x021: ("RESERVED_BITS", "reserved bits not set to zero as required"),
        fmt1 + 0x022: ("BAD_AUTH", "authorization failure without DA implications"),
        fmt1 + 0x023: ("EXPIRED", "the policy has expired"),
        fmt1 + 0x024: ("POLICY_CC", "the commandCode in the policy is not the commandCode of the command or the command code in a policy "
                                  + "command references a command that is not implemented"),
        fmt1 + 0x025: ("BINDING", "public and sensitive portions of an object are not cryptographically bound"),
        fmt1 + 0x026: ("CURVE", "curve not supported"),
        fmt1 + 0x027: ("ECC_POINT", "point is not on the required curve"),
        fmt1 + 0x028: ("FW_LIMITED", "the hierarchy is firmware-limited but the firmware secret is unavailable"),
        fmt1 + 0x029: ("SVN_LIMITED", "the hierarchy is SVN-limited but the firmware SVN secret is unavailable"),
        warn + 0x001: ("CONTEXT_GAP", "gap for context ID is too large"),
        warn + 0x002: ("OBJECT_MEMORY", "out of memory for object contexts"),
        warn + 0x003: ("SESSION_MEMORY", "out of memory for session contexts"),
        warn + 0x004: ("MEMORY", "out of shared object/session memory or need space for internal operations"),
        warn + 0x005: ("SESSION_HANDLES", "out of session handles; a session must be flushed before a new session may be created"),
        warn + 0x006: ("OBJECT_HANDLES", "out of object handles; the handle space for objects is depleted and a reboot is required"),
        warn + 0x007: ("LOCALITY", "bad locality"),
        warn + 0x008: ("YIELDED",
                       "the TPM has suspended operation on the command; forward progress was made and the command may be retried"),
        warn + 0x009: ("CANCELED", "the command was canceled"),
        warn + 0x00A: ("TESTING", "TPM is performing self-tests"),
        warn + 0x020: ("NV_RATE", "the TPM is rate-limiting accesses to prevent wearout of NV"),
        warn + 0x021: ("LOCKOUT", "authorizations for objects subject to DA protection are not allowed at this time because the TPM is in "
                                + "DA lockout mode"),
        warn + 0x022: ("RETRY", "the TPM was not able to start the command"),
        warn + 0x023: ("NV_UNAVAILABLE", "the command may require writing of NV and NV is not current accessible"),
        warn + 0x07F: ("NOT_USED", "this value is reserved and shall not be returned by the TPM"),
    ]

    public static var names: [UInt32: String] {
        table.mapValues { "TPM_RC_" + $0.0 }
    }

    // MARK: Structure

    /// The TSS layer in bits 16–23 (0 = the TPM itself).
    public var layer: UInt8 { UInt8(truncatingIfNeeded: rawValue >> 16) }
    var code16: UInt32 { rawValue & 0xFFFF }
    public var isSuccess: Bool { rawValue == 0 }
    public var isFormatOne: Bool { code16 & Self.fmt1 != 0 }
    public var isWarning: Bool { !isFormatOne && code16 & 0x900 == 0x900 }
    public var isVendor: Bool { !isFormatOne && code16 & 0x400 != 0 }
    /// A TPM 1.2 code (format zero without the VER1 bit).
    public var isTPM12: Bool { !isFormatOne && code16 & Self.ver1 == 0 && code16 != 0 }

    /// What a format-one code points at.
    public enum Subject: Hashable, Sendable {
        case parameter(Int)
        case handle(Int)
        case session(Int)
    }

    /// The failing parameter, handle or session (format-one codes only; numbers are 1-based).
    public var subject: Subject? {
        guard isFormatOne else { return nil }
        let n = Int((code16 >> 8) & 0xF)
        if code16 & 0x040 != 0 { return .parameter(n) }
        if n == 0 { return nil }
        if n & 0x8 != 0 { return .session(n & 0x7) }
        return .handle(n)
    }

    /// The code without its parameter/handle/session number and layer: the value to compare
    /// with the named constants (`rc.base == .authFail`).
    public var base: TPMRC {
        if isFormatOne { return TPMRC(rawValue: Self.fmt1 | (code16 & 0x3F)) }
        return TPMRC(rawValue: code16)
    }

    /// Builds a format-one code that names its subject.
    public func with(_ subject: Subject) -> TPMRC {
        let b = base.rawValue
        switch subject {
        case .parameter(let n): return TPMRC(rawValue: b | 0x040 | UInt32(n & 0xF) << 8)
        case .handle(let n): return TPMRC(rawValue: b | UInt32(n & 0x7) << 8)
        case .session(let n): return TPMRC(rawValue: b | UInt32(0x8 | (n & 0x7)) << 8)
        }
    }

    /// The specification's name of the base code (e.g. `TPM_RC_AUTH_FAIL`).
    public var baseName: String? { Self.table[base.rawValue].map { "TPM_RC_" + $0.0 } }
    /// What the code means, in words.
    public var meaning: String? { Self.table[base.rawValue]?.1 }

    /// The decoding as tpm2-tools' `tpm2_rc_decode` lays it out:
    /// `tpm:parameter(1):structure is the wrong size`, `tpm:error(2.0): …`, `tpm:warn(2.0): …`.
    public var decoded: String {
        let layerNames: [UInt8: String] = [0: "tpm", 6: "fapi", 7: "esapi", 8: "sys", 9: "mu", 10: "tcti", 11: "rmt", 12: "rm"]
        let layerName = layerNames[layer] ?? "\(layer)"
        switch layer {
        case 0, 11:
            // The TPM's own codes (11: the resource manager passing on a TPM code).
            return "\(layerName):" + tpmLayerText
        case 6, 7, 8, 9, 10:
            let base = Int(code16)
            return "\(layerName):" + (base < Self.tssBaseNames.count ? Self.tssBaseNames[base] : "error \(hex32(code16))")
        default:
            return "\(layerName):\(hex32(code16))"
        }
    }

    /// The TSS base response codes (TSS2_BASE_RC_*), in order from 0.
    static let tssBaseNames = [
        "success", "general failure", "not implemented", "bad context", "ABI mismatch", "bad reference",
        "insufficient buffer", "bad sequence", "no connection", "try again", "I/O error", "bad value",
        "not permitted", "invalid sessions", "no decrypt parameter", "no encrypt parameter", "bad size",
        "malformed response", "insufficient context", "insufficient response", "incompatible TCTI",
        "not supported", "bad TCTI structure", "memory", "bad ESYS_TR",
    ]

    /// Layout of tpm2_rc_decode: `parameter(N):text`, `handle(N):text`, `session(N):text`,
    /// `error(2.0): text`, `warn(2.0): text`, `error(1.2): …`. Parameter numbers use the
    /// specification's four bits (1–15); tpm2-tools reads only three.
    var tpmLayerText: String {
        if code16 == 0 { return "success" }
        if isFormatOne {
            let text = meaning ?? "unknown error num: \(hex32(code16 & 0x3F))"
            switch subject {
            case .parameter(let n)?: return "parameter(\(n)):\(text)"
            case .handle(let n)?: return "handle(\(n)):\(text)"
            case .session(let n)?: return "session(\(n)):\(text)"
            case nil: return "handle(unk):\(text)"
            }
        }
        if isTPM12 { return "error(1.2): TPM 1.2 code \(hex32(code16))" }
        if isVendor { return "error(2.0): vendor-specific error \(hex32(code16 & 0x7F))" }
        let kind = isWarning ? "warn" : "error"
        return "\(kind)(2.0): \(meaning ?? "unknown error num: \(hex32(code16 & 0x7F))")"
    }

    public var description: String {
        "\(hex32(rawValue)) (\(baseName ?? "unknown")\(subject.map { " \($0)" } ?? "")): \(decoded)"
    }
}
