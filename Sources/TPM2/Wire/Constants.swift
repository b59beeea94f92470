// Wire constants of TPM 2.0 Library Part 2 ("Structures"), clause 6. Each is an open
// RawRepresentable struct: values the library does not name are still representable.

/// A wire constant with spec names for the values it knows.
public protocol TPMNamedConstant: TPMWireValue, CustomStringConvertible {
    static var names: [RawValue: String] { get }
}

extension TPMNamedConstant {
    /// The specification's name (e.g. `TPM_ALG_SHA256`), or nil for an unnamed value.
    public var specName: String? { Self.names[rawValue] }
    public var description: String {
        if let n = Self.names[rawValue] { return n }
        let hex = String(rawValue, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: max(0, RawValue.bitWidth / 4 - hex.count)) + hex
    }
}

/// TPM_ALG_ID (Part 2, 6.3; values from the TCG Algorithm Registry).
public struct TPMAlgID: TPMNamedConstant {
    public var rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let error = Self(rawValue: 0x0000)
    public static let rsa = Self(rawValue: 0x0001)
    public static let tdes = Self(rawValue: 0x0003)
    public static let sha1 = Self(rawValue: 0x0004)
    public static let hmac = Self(rawValue: 0x0005)
    public static let aes = Self(rawValue: 0x0006)
    public static let mgf1 = Self(rawValue: 0x0007)
    public static let keyedHash = Self(rawValue: 0x0008)
    public static let xor = Self(rawValue: 0x000A)
    public static let sha256 = Self(rawValue: 0x000B)
    public static let sha384 = Self(rawValue: 0x000C)
    public static let sha512 = Self(rawValue: 0x000D)
    public static let sha256_192 = Self(rawValue: 0x000E)
    public static let null = Self(rawValue: 0x0010)
    public static let sm3_256 = Self(rawValue: 0x0012)
    public static let sm4 = Self(rawValue: 0x0013)
    public static let rsassa = Self(rawValue: 0x0014)
    public static let rsaes = Self(rawValue: 0x0015)
    public static let rsapss = Self(rawValue: 0x0016)
    public static let oaep = Self(rawValue: 0x0017)
    public static let ecdsa = Self(rawValue: 0x0018)
    public static let ecdh = Self(rawValue: 0x0019)
    public static let ecdaa = Self(rawValue: 0x001A)
    public static let sm2 = Self(rawValue: 0x001B)
    public static let ecschnorr = Self(rawValue: 0x001C)
    public static let ecmqv = Self(rawValue: 0x001D)
    public static let kdf1_sp800_56a = Self(rawValue: 0x0020)
    public static let kdf2 = Self(rawValue: 0x0021)
    public static let kdf1_sp800_108 = Self(rawValue: 0x0022)
    public static let ecc = Self(rawValue: 0x0023)
    public static let symCipher = Self(rawValue: 0x0025)
    public static let camellia = Self(rawValue: 0x0026)
    public static let sha3_256 = Self(rawValue: 0x0027)
    public static let sha3_384 = Self(rawValue: 0x0028)
    public static let sha3_512 = Self(rawValue: 0x0029)
    public static let shake128 = Self(rawValue: 0x002A)
    public static let shake256 = Self(rawValue: 0x002B)
    public static let shake256_192 = Self(rawValue: 0x002C)
    public static let shake256_256 = Self(rawValue: 0x002D)
    public static let shake256_512 = Self(rawValue: 0x002E)
    public static let cmac = Self(rawValue: 0x003F)
    public static let ctr = Self(rawValue: 0x0040)
    public static let ofb = Self(rawValue: 0x0041)
    public static let cbc = Self(rawValue: 0x0042)
    public static let cfb = Self(rawValue: 0x0043)
    public static let ecb = Self(rawValue: 0x0044)
    public static let ccm = Self(rawValue: 0x0050)
    public static let gcm = Self(rawValue: 0x0051)
    public static let kw = Self(rawValue: 0x0052)
    public static let kwp = Self(rawValue: 0x0053)
    public static let eax = Self(rawValue: 0x0054)
    public static let eddsa = Self(rawValue: 0x0060)
    public static let eddsa_ph = Self(rawValue: 0x0061)

    public static let names: [UInt16: String] = [
        0x0000: "TPM_ALG_ERROR", 0x0001: "TPM_ALG_RSA", 0x0003: "TPM_ALG_TDES", 0x0004: "TPM_ALG_SHA1",
        0x0005: "TPM_ALG_HMAC", 0x0006: "TPM_ALG_AES", 0x0007: "TPM_ALG_MGF1", 0x0008: "TPM_ALG_KEYEDHASH",
        0x000A: "TPM_ALG_XOR", 0x000B: "TPM_ALG_SHA256", 0x000C: "TPM_ALG_SHA384", 0x000D: "TPM_ALG_SHA512",
        0x000E: "TPM_ALG_SHA256_192", 0x0010: "TPM_ALG_NULL", 0x0012: "TPM_ALG_SM3_256", 0x0013: "TPM_ALG_SM4",
        0x0014: "TPM_ALG_RSASSA", 0x0015: "TPM_ALG_RSAES", 0x0016: "TPM_ALG_RSAPSS", 0x0017: "TPM_ALG_OAEP",
        0x0018: "TPM_ALG_ECDSA", 0x0019: "TPM_ALG_ECDH", 0x001A: "TPM_ALG_ECDAA", 0x001B: "TPM_ALG_SM2",
        0x001C: "TPM_ALG_ECSCHNORR", 0x001D: "TPM_ALG_ECMQV", 0x0020: "TPM_ALG_KDF1_SP800_56A",
        0x0021: "TPM_ALG_KDF2", 0x0022: "TPM_ALG_KDF1_SP800_108", 0x0023: "TPM_ALG_ECC",
        0x0025: "TPM_ALG_SYMCIPHER", 0x0026: "TPM_ALG_CAMELLIA", 0x0027: "TPM_ALG_SHA3_256",
        0x0028: "TPM_ALG_SHA3_384", 0x0029: "TPM_ALG_SHA3_512", 0x002A: "TPM_ALG_SHAKE128",
        0x002B: "TPM_ALG_SHAKE256", 0x002C: "TPM_ALG_SHAKE256_192", 0x002D: "TPM_ALG_SHAKE256_256",
        0x002E: "TPM_ALG_SHAKE256_512", 0x003F: "TPM_ALG_CMAC", 0x0040: "TPM_ALG_CTR", 0x0041: "TPM_ALG_OFB",
        0x0042: "TPM_ALG_CBC", 0x0043: "TPM_ALG_CFB", 0x0044: "TPM_ALG_ECB", 0x0050: "TPM_ALG_CCM",
        0x0051: "TPM_ALG_GCM", 0x0052: "TPM_ALG_KW", 0x0053: "TPM_ALG_KWP", 0x0054: "TPM_ALG_EAX",
        0x0060: "TPM_ALG_EDDSA", 0x0061: "TPM_ALG_EDDSA_PH",
    ]

    /// Digest size in bytes of a hash algorithm (Part 2, TPMU_HA), nil if this is not a known hash.
    @inlinable
    public var digestSize: Int? {
        switch rawValue {
        case 0x0004: 20
        case 0x000B, 0x0012, 0x0027, 0x002D: 32
        case 0x000C, 0x0028: 48
        case 0x000D, 0x0029, 0x002E: 64
        case 0x000E, 0x002C: 24
        default: nil
        }
    }

    /// The short name tpm2-tools uses (`sha256`, `rsa`, `ecc` …).
    public var shortName: String {
        guard let n = specName else { return description }
        return n.dropFirst("TPM_ALG_".count).lowercased()
    }

    /// Parses a tpm2-tools style algorithm name (`sha256`) or a number (`0xb`).
    public init?(shortName: String) {
        let s = shortName.lowercased()
        if let hit = Self.names.first(where: { $0.value.dropFirst("TPM_ALG_".count).lowercased() == s }) {
            self.init(rawValue: hit.key)
        } else if s.hasPrefix("0x"), let v = UInt16(s.dropFirst(2), radix: 16) {
            self.init(rawValue: v)
        } else {
            return nil
        }
    }
}

/// TPM_ECC_CURVE (Part 2, 6.4).
public struct TPMECCCurve: TPMNamedConstant {
    public var rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let none = Self(rawValue: 0x0000)
    public static let nistP192 = Self(rawValue: 0x0001)
    public static let nistP224 = Self(rawValue: 0x0002)
    public static let nistP256 = Self(rawValue: 0x0003)
    public static let nistP384 = Self(rawValue: 0x0004)
    public static let nistP521 = Self(rawValue: 0x0005)
    public static let bnP256 = Self(rawValue: 0x0010)
    public static let bnP638 = Self(rawValue: 0x0011)
    public static let sm2P256 = Self(rawValue: 0x0020)
    public static let bpP256R1 = Self(rawValue: 0x0030)
    public static let bpP384R1 = Self(rawValue: 0x0031)
    public static let bpP512R1 = Self(rawValue: 0x0032)
    public static let curve25519 = Self(rawValue: 0x0040)
    public static let curve448 = Self(rawValue: 0x0041)
    public static let names: [UInt16: String] = [
        0x0000: "TPM_ECC_NONE", 0x0001: "TPM_ECC_NIST_P192", 0x0002: "TPM_ECC_NIST_P224",
        0x0003: "TPM_ECC_NIST_P256", 0x0004: "TPM_ECC_NIST_P384", 0x0005: "TPM_ECC_NIST_P521",
        0x0010: "TPM_ECC_BN_P256", 0x0011: "TPM_ECC_BN_P638", 0x0020: "TPM_ECC_SM2_P256",
        0x0030: "TPM_ECC_BP_P256_R1", 0x0031: "TPM_ECC_BP_P384_R1", 0x0032: "TPM_ECC_BP_P512_R1",
        0x0040: "TPM_ECC_CURVE_25519", 0x0041: "TPM_ECC_CURVE_448",
    ]
    /// Size in bytes of a coordinate on this curve.
    public var coordinateSize: Int? {
        switch rawValue {
        case 0x0001: 24
        case 0x0002: 28
        case 0x0003, 0x0010, 0x0020, 0x0030, 0x0040: 32
        case 0x0004, 0x0031: 48
        case 0x0005: 66
        case 0x0032: 64
        default: nil
        }
    }
}

/// TPM_ST structure tags (Part 2, 6.9).
public struct TPMST: TPMNamedConstant {
    public var rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let rspCommand = Self(rawValue: 0x00C4)
    public static let null = Self(rawValue: 0x8000)
    public static let noSessions = Self(rawValue: 0x8001)
    public static let sessions = Self(rawValue: 0x8002)
    public static let attestNV = Self(rawValue: 0x8014)
    public static let attestCommandAudit = Self(rawValue: 0x8015)
    public static let attestSessionAudit = Self(rawValue: 0x8016)
    public static let attestCertify = Self(rawValue: 0x8017)
    public static let attestQuote = Self(rawValue: 0x8018)
    public static let attestTime = Self(rawValue: 0x8019)
    public static let attestCreation = Self(rawValue: 0x801A)
    public static let attestNVDigest = Self(rawValue: 0x801C)
    public static let creation = Self(rawValue: 0x8021)
    public static let verified = Self(rawValue: 0x8022)
    public static let authSecret = Self(rawValue: 0x8023)
    public static let hashcheck = Self(rawValue: 0x8024)
    public static let authSigned = Self(rawValue: 0x8025)
    public static let fuManifest = Self(rawValue: 0x8029)
    public static let names: [UInt16: String] = [
        0x00C4: "TPM_ST_RSP_COMMAND", 0x8000: "TPM_ST_NULL", 0x8001: "TPM_ST_NO_SESSIONS",
        0x8002: "TPM_ST_SESSIONS", 0x8014: "TPM_ST_ATTEST_NV", 0x8015: "TPM_ST_ATTEST_COMMAND_AUDIT",
        0x8016: "TPM_ST_ATTEST_SESSION_AUDIT", 0x8017: "TPM_ST_ATTEST_CERTIFY", 0x8018: "TPM_ST_ATTEST_QUOTE",
        0x8019: "TPM_ST_ATTEST_TIME", 0x801A: "TPM_ST_ATTEST_CREATION", 0x801C: "TPM_ST_ATTEST_NV_DIGEST",
        0x8021: "TPM_ST_CREATION", 0x8022: "TPM_ST_VERIFIED", 0x8023: "TPM_ST_AUTH_SECRET",
        0x8024: "TPM_ST_HASHCHECK", 0x8025: "TPM_ST_AUTH_SIGNED", 0x8029: "TPM_ST_FU_MANIFEST",
    ]
}

/// TPM_SU startup/shutdown type (Part 2, 6.10).
public struct TPMSU: TPMNamedConstant {
    public var rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let clear = Self(rawValue: 0x0000)
    public static let state = Self(rawValue: 0x0001)
    public static let names: [UInt16: String] = [0x0000: "TPM_SU_CLEAR", 0x0001: "TPM_SU_STATE"]
}

/// TPM_SE session type (Part 2, 6.11).
public struct TPMSE: TPMNamedConstant {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let hmac = Self(rawValue: 0x00)
    public static let policy = Self(rawValue: 0x01)
    public static let trial = Self(rawValue: 0x03)
    public static let names: [UInt8: String] = [0x00: "TPM_SE_HMAC", 0x01: "TPM_SE_POLICY", 0x03: "TPM_SE_TRIAL"]
}

/// TPM_CAP (Part 2, 6.12).
public struct TPMCap: TPMNamedConstant {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let algs = Self(rawValue: 0x0000_0000)
    public static let handles = Self(rawValue: 0x0000_0001)
    public static let commands = Self(rawValue: 0x0000_0002)
    public static let ppCommands = Self(rawValue: 0x0000_0003)
    public static let auditCommands = Self(rawValue: 0x0000_0004)
    public static let pcrs = Self(rawValue: 0x0000_0005)
    public static let tpmProperties = Self(rawValue: 0x0000_0006)
    public static let pcrProperties = Self(rawValue: 0x0000_0007)
    public static let eccCurves = Self(rawValue: 0x0000_0008)
    public static let authPolicies = Self(rawValue: 0x0000_0009)
    public static let act = Self(rawValue: 0x0000_000A)
    public static let pubKeys = Self(rawValue: 0x0000_000B)
    public static let spdmSessionInfo = Self(rawValue: 0x0000_000C)
    public static let vendorProperty = Self(rawValue: 0x0000_0100)
    public static let names: [UInt32: String] = [
        0x00: "TPM_CAP_ALGS", 0x01: "TPM_CAP_HANDLES", 0x02: "TPM_CAP_COMMANDS", 0x03: "TPM_CAP_PP_COMMANDS",
        0x04: "TPM_CAP_AUDIT_COMMANDS", 0x05: "TPM_CAP_PCRS", 0x06: "TPM_CAP_TPM_PROPERTIES",
        0x07: "TPM_CAP_PCR_PROPERTIES", 0x08: "TPM_CAP_ECC_CURVES", 0x09: "TPM_CAP_AUTH_POLICIES",
        0x0A: "TPM_CAP_ACT", 0x0B: "TPM_CAP_PUB_KEYS", 0x0C: "TPM_CAP_SPDM_SESSION_INFO",
        0x100: "TPM_CAP_VENDOR_PROPERTY",
    ]
}

/// TPM_PT fixed and variable properties (Part 2, 6.13).
public struct TPMPT: TPMNamedConstant {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let fixed: UInt32 = 0x100
    public static let variable: UInt32 = 0x200
    public static let familyIndicator = Self(rawValue: fixed + 0)
    public static let level = Self(rawValue: fixed + 1)
    public static let revision = Self(rawValue: fixed + 2)
    public static let dayOfYear = Self(rawValue: fixed + 3)
    public static let year = Self(rawValue: fixed + 4)
    public static let manufacturer = Self(rawValue: fixed + 5)
    public static let vendorString1 = Self(rawValue: fixed + 6)
    public static let vendorString2 = Self(rawValue: fixed + 7)
    public static let vendorString3 = Self(rawValue: fixed + 8)
    public static let vendorString4 = Self(rawValue: fixed + 9)
    public static let vendorTPMType = Self(rawValue: fixed + 10)
    public static let firmwareVersion1 = Self(rawValue: fixed + 11)
    public static let firmwareVersion2 = Self(rawValue: fixed + 12)
    public static let inputBuffer = Self(rawValue: fixed + 13)
    public static let hrTransientMin = Self(rawValue: fixed + 14)
    public static let hrPersistentMin = Self(rawValue: fixed + 15)
    public static let hrLoadedMin = Self(rawValue: fixed + 16)
    public static let activeSessionsMax = Self(rawValue: fixed + 17)
    public static let pcrCount = Self(rawValue: fixed + 18)
    public static let pcrSelectMin = Self(rawValue: fixed + 19)
    public static let contextGapMax = Self(rawValue: fixed + 20)
    public static let nvCountersMax = Self(rawValue: fixed + 22)
    public static let nvIndexMax = Self(rawValue: fixed + 23)
    public static let memory = Self(rawValue: fixed + 24)
    public static let clockUpdate = Self(rawValue: fixed + 25)
    public static let contextHash = Self(rawValue: fixed + 26)
    public static let contextSym = Self(rawValue: fixed + 27)
    public static let contextSymSize = Self(rawValue: fixed + 28)
    public static let orderlyCount = Self(rawValue: fixed + 29)
    public static let maxCommandSize = Self(rawValue: fixed + 30)
    public static let maxResponseSize = Self(rawValue: fixed + 31)
    public static let maxDigest = Self(rawValue: fixed + 32)
    public static let maxObjectContext = Self(rawValue: fixed + 33)
    public static let maxSessionContext = Self(rawValue: fixed + 34)
    public static let psFamilyIndicator = Self(rawValue: fixed + 35)
    public static let psLevel = Self(rawValue: fixed + 36)
    public static let psRevision = Self(rawValue: fixed + 37)
    public static let psDayOfYear = Self(rawValue: fixed + 38)
    public static let psYear = Self(rawValue: fixed + 39)
    public static let splitMax = Self(rawValue: fixed + 40)
    public static let totalCommands = Self(rawValue: fixed + 41)
    public static let libraryCommands = Self(rawValue: fixed + 42)
    public static let vendorCommands = Self(rawValue: fixed + 43)
    public static let nvBufferMax = Self(rawValue: fixed + 44)
    public static let modes = Self(rawValue: fixed + 45)
    public static let maxCapBuffer = Self(rawValue: fixed + 46)
    public static let firmwareSVN = Self(rawValue: fixed + 47)
    public static let firmwareMaxSVN = Self(rawValue: fixed + 48)
    public static let permanent = Self(rawValue: variable + 0)
    public static let startupClear = Self(rawValue: variable + 1)
    public static let hrNVIndex = Self(rawValue: variable + 2)
    public static let hrLoaded = Self(rawValue: variable + 3)
    public static let hrLoadedAvail = Self(rawValue: variable + 4)
    public static let hrActive = Self(rawValue: variable + 5)
    public static let hrActiveAvail = Self(rawValue: variable + 6)
    public static let hrTransientAvail = Self(rawValue: variable + 7)
    public static let hrPersistent = Self(rawValue: variable + 8)
    public static let hrPersistentAvail = Self(rawValue: variable + 9)
    public static let nvCounters = Self(rawValue: variable + 10)
    public static let nvCountersAvail = Self(rawValue: variable + 11)
    public static let algorithmSet = Self(rawValue: variable + 12)
    public static let loadedCurves = Self(rawValue: variable + 13)
    public static let lockoutCounter = Self(rawValue: variable + 14)
    public static let maxAuthFail = Self(rawValue: variable + 15)
    public static let lockoutInterval = Self(rawValue: variable + 16)
    public static let lockoutRecovery = Self(rawValue: variable + 17)
    public static let nvWriteRecovery = Self(rawValue: variable + 18)
    public static let auditCounter0 = Self(rawValue: variable + 19)
    public static let auditCounter1 = Self(rawValue: variable + 20)

    public static let names: [UInt32: String] = {
        let fixedNames = [
            "FAMILY_INDICATOR", "LEVEL", "REVISION", "DAY_OF_YEAR", "YEAR", "MANUFACTURER", "VENDOR_STRING_1",
            "VENDOR_STRING_2", "VENDOR_STRING_3", "VENDOR_STRING_4", "VENDOR_TPM_TYPE", "FIRMWARE_VERSION_1",
            "FIRMWARE_VERSION_2", "INPUT_BUFFER", "HR_TRANSIENT_MIN", "HR_PERSISTENT_MIN", "HR_LOADED_MIN",
            "ACTIVE_SESSIONS_MAX", "PCR_COUNT", "PCR_SELECT_MIN", "CONTEXT_GAP_MAX", "", "NV_COUNTERS_MAX",
            "NV_INDEX_MAX", "MEMORY", "CLOCK_UPDATE", "CONTEXT_HASH", "CONTEXT_SYM", "CONTEXT_SYM_SIZE",
            "ORDERLY_COUNT", "MAX_COMMAND_SIZE", "MAX_RESPONSE_SIZE", "MAX_DIGEST", "MAX_OBJECT_CONTEXT",
            "MAX_SESSION_CONTEXT", "PS_FAMILY_INDICATOR", "PS_LEVEL", "PS_REVISION", "PS_DAY_OF_YEAR",
            "PS_YEAR", "SPLIT_MAX", "TOTAL_COMMANDS", "LIBRARY_COMMANDS", "VENDOR_COMMANDS", "NV_BUFFER_MAX",
            "MODES", "MAX_CAP_BUFFER", "FIRMWARE_SVN", "FIRMWARE_MAX_SVN",
        ]
        let varNames = [
            "PERMANENT", "STARTUP_CLEAR", "HR_NV_INDEX", "HR_LOADED", "HR_LOADED_AVAIL", "HR_ACTIVE",
            "HR_ACTIVE_AVAIL", "HR_TRANSIENT_AVAIL", "HR_PERSISTENT", "HR_PERSISTENT_AVAIL", "NV_COUNTERS",
            "NV_COUNTERS_AVAIL", "ALGORITHM_SET", "LOADED_CURVES", "LOCKOUT_COUNTER", "MAX_AUTH_FAIL",
            "LOCKOUT_INTERVAL", "LOCKOUT_RECOVERY", "NV_WRITE_RECOVERY", "AUDIT_COUNTER_0", "AUDIT_COUNTER_1",
        ]
        var d: [UInt32: String] = [:]
        for (i, n) in fixedNames.enumerated() where !n.isEmpty { d[fixed + UInt32(i)] = "TPM_PT_" + n }
        for (i, n) in varNames.enumerated() { d[variable + UInt32(i)] = "TPM_PT_" + n }
        return d
    }()
}

/// TPM_PT_PCR properties of PCRs (Part 2, 6.14).
public struct TPMPTPCR: TPMNamedConstant {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let save = Self(rawValue: 0x00)
    public static let extendL0 = Self(rawValue: 0x01)
    public static let resetL0 = Self(rawValue: 0x02)
    public static let extendL1 = Self(rawValue: 0x03)
    public static let resetL1 = Self(rawValue: 0x04)
    public static let extendL2 = Self(rawValue: 0x05)
    public static let resetL2 = Self(rawValue: 0x06)
    public static let extendL3 = Self(rawValue: 0x07)
    public static let resetL3 = Self(rawValue: 0x08)
    public static let extendL4 = Self(rawValue: 0x09)
    public static let resetL4 = Self(rawValue: 0x0A)
    public static let noIncrement = Self(rawValue: 0x11)
    public static let drtmReset = Self(rawValue: 0x12)
    public static let policy = Self(rawValue: 0x13)
    public static let auth = Self(rawValue: 0x14)
    public static let names: [UInt32: String] = [
        0x00: "TPM_PT_PCR_SAVE", 0x01: "TPM_PT_PCR_EXTEND_L0", 0x02: "TPM_PT_PCR_RESET_L0",
        0x03: "TPM_PT_PCR_EXTEND_L1", 0x04: "TPM_PT_PCR_RESET_L1", 0x05: "TPM_PT_PCR_EXTEND_L2",
        0x06: "TPM_PT_PCR_RESET_L2", 0x07: "TPM_PT_PCR_EXTEND_L3", 0x08: "TPM_PT_PCR_RESET_L3",
        0x09: "TPM_PT_PCR_EXTEND_L4", 0x0A: "TPM_PT_PCR_RESET_L4", 0x11: "TPM_PT_PCR_NO_INCREMENT",
        0x12: "TPM_PT_PCR_DRTM_RESET", 0x13: "TPM_PT_PCR_POLICY", 0x14: "TPM_PT_PCR_AUTH",
    ]
}

/// TPM_HANDLE (Part 2, 7): the top byte is the handle type (TPM_HT).
public struct TPMHandle: TPMNamedConstant {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    @inlinable public init(_ rawValue: UInt32) { self.rawValue = rawValue }

    /// TPM_HT (Part 2, 7.2).
    public struct HandleType: RawRepresentable, Hashable, Sendable {
        public var rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let pcr = Self(rawValue: 0x00)
        public static let nvIndex = Self(rawValue: 0x01)
        public static let hmacSession = Self(rawValue: 0x02)
        public static let policySession = Self(rawValue: 0x03)
        public static let permanent = Self(rawValue: 0x40)
        public static let transient = Self(rawValue: 0x80)
        public static let persistent = Self(rawValue: 0x81)
        public static let attachedComponent = Self(rawValue: 0x90)
    }
    public var type: HandleType { HandleType(rawValue: UInt8(truncatingIfNeeded: rawValue >> 24)) }

    /// PCR n as a handle (TPM_HT_PCR).
    public static func pcr(_ n: Int) -> Self { Self(rawValue: UInt32(n)) }

    // TPM_RH permanent handles (Part 2, 7.4).
    public static let owner = Self(rawValue: 0x4000_0001)
    public static let revoke = Self(rawValue: 0x4000_0002)
    public static let transport = Self(rawValue: 0x4000_0003)
    public static let operator_ = Self(rawValue: 0x4000_0004)
    public static let admin = Self(rawValue: 0x4000_0005)
    public static let ek = Self(rawValue: 0x4000_0006)
    public static let null = Self(rawValue: 0x4000_0007)
    public static let unassigned = Self(rawValue: 0x4000_0008)
    /// TPM_RS_PW: the password authorization session.
    public static let password = Self(rawValue: 0x4000_0009)
    public static let lockout = Self(rawValue: 0x4000_000A)
    public static let endorsement = Self(rawValue: 0x4000_000B)
    public static let platform = Self(rawValue: 0x4000_000C)
    public static let platformNV = Self(rawValue: 0x4000_000D)

    public static let names: [UInt32: String] = [
        0x4000_0000: "TPM_RH_SRK", 0x4000_0001: "TPM_RH_OWNER", 0x4000_0002: "TPM_RH_REVOKE",
        0x4000_0003: "TPM_RH_TRANSPORT", 0x4000_0004: "TPM_RH_OPERATOR", 0x4000_0005: "TPM_RH_ADMIN",
        0x4000_0006: "TPM_RH_EK", 0x4000_0007: "TPM_RH_NULL", 0x4000_0008: "TPM_RH_UNASSIGNED",
        0x4000_0009: "TPM_RS_PW", 0x4000_000A: "TPM_RH_LOCKOUT", 0x4000_000B: "TPM_RH_ENDORSEMENT",
        0x4000_000C: "TPM_RH_PLATFORM", 0x4000_000D: "TPM_RH_PLATFORM_NV",
    ]

    /// The handle's Name when it is its own Name (PCR, permanent, session handles — Part 1, 16).
    /// Objects and NV indices have a digest Name instead; see ``TPMName``.
    public var handleName: [UInt8] { withUnsafeBytes(of: rawValue.bigEndian) { Array($0) } }
}
