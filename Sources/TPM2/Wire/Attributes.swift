// TPMA_* attribute bit fields (Part 2, clause 8). Unknown and reserved bits are kept.

/// TPMA_ALGORITHM (Part 2, 8.2).
public struct TPMAAlgorithm: OptionSet, TPMWireValue {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let asymmetric = Self(rawValue: 1 << 0)
    public static let symmetric = Self(rawValue: 1 << 1)
    public static let hash = Self(rawValue: 1 << 2)
    public static let object = Self(rawValue: 1 << 3)
    public static let signing = Self(rawValue: 1 << 8)
    public static let encrypting = Self(rawValue: 1 << 9)
    public static let method = Self(rawValue: 1 << 10)
}

/// TPMA_OBJECT (Part 2, 8.3).
public struct TPMAObject: OptionSet, TPMWireValue {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let fixedTPM = Self(rawValue: 1 << 1)
    public static let stClear = Self(rawValue: 1 << 2)
    public static let fixedParent = Self(rawValue: 1 << 4)
    public static let sensitiveDataOrigin = Self(rawValue: 1 << 5)
    public static let userWithAuth = Self(rawValue: 1 << 6)
    public static let adminWithPolicy = Self(rawValue: 1 << 7)
    public static let firmwareLimited = Self(rawValue: 1 << 8)
    public static let svnLimited = Self(rawValue: 1 << 9)
    public static let noDA = Self(rawValue: 1 << 10)
    public static let encryptedDuplication = Self(rawValue: 1 << 11)
    public static let restricted = Self(rawValue: 1 << 16)
    public static let decrypt = Self(rawValue: 1 << 17)
    public static let signEncrypt = Self(rawValue: 1 << 18)
    public static let x509Sign = Self(rawValue: 1 << 19)

    static let named: [(Self, String)] = [
        (.fixedTPM, "fixedtpm"), (.stClear, "stclear"), (.fixedParent, "fixedparent"),
        (.sensitiveDataOrigin, "sensitivedataorigin"), (.userWithAuth, "userwithauth"),
        (.adminWithPolicy, "adminwithpolicy"), (.firmwareLimited, "firmwarelimited"), (.svnLimited, "svnlimited"),
        (.noDA, "noda"), (.encryptedDuplication, "encryptedduplication"), (.restricted, "restricted"),
        (.decrypt, "decrypt"), (.signEncrypt, "sign"), (.x509Sign, "x509sign"),
    ]
    /// tpm2-tools' spelling, e.g. `fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign`.
    public var toolsDescription: String { Self.named.filter { contains($0.0) }.map(\.1).joined(separator: "|") }
}

/// TPMA_SESSION (Part 2, 8.4).
public struct TPMASession: OptionSet, TPMWireValue {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let continueSession = Self(rawValue: 1 << 0)
    public static let auditExclusive = Self(rawValue: 1 << 1)
    public static let auditReset = Self(rawValue: 1 << 2)
    public static let decrypt = Self(rawValue: 1 << 5)
    public static let encrypt = Self(rawValue: 1 << 6)
    public static let audit = Self(rawValue: 1 << 7)
}

/// TPMA_LOCALITY (Part 2, 8.5).
public struct TPMALocality: OptionSet, TPMWireValue {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let zero = Self(rawValue: 1 << 0)
    public static let one = Self(rawValue: 1 << 1)
    public static let two = Self(rawValue: 1 << 2)
    public static let three = Self(rawValue: 1 << 3)
    public static let four = Self(rawValue: 1 << 4)
}

/// TPMA_PERMANENT (Part 2, 8.6).
public struct TPMAPermanent: OptionSet, TPMWireValue {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let ownerAuthSet = Self(rawValue: 1 << 0)
    public static let endorsementAuthSet = Self(rawValue: 1 << 1)
    public static let lockoutAuthSet = Self(rawValue: 1 << 2)
    public static let disableClear = Self(rawValue: 1 << 8)
    public static let inLockout = Self(rawValue: 1 << 9)
    public static let tpmGeneratedEPS = Self(rawValue: 1 << 10)
}

/// TPMA_STARTUP_CLEAR (Part 2, 8.7).
public struct TPMAStartupClear: OptionSet, TPMWireValue {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let phEnable = Self(rawValue: 1 << 0)
    public static let shEnable = Self(rawValue: 1 << 1)
    public static let ehEnable = Self(rawValue: 1 << 2)
    public static let phEnableNV = Self(rawValue: 1 << 3)
    public static let orderly = Self(rawValue: 1 << 31)
}

/// TPMA_CC (Part 2, 8.9): a command's index and handle/response properties.
public struct TPMACC: OptionSet, TPMWireValue {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let nv = Self(rawValue: 1 << 22)
    public static let extensive = Self(rawValue: 1 << 23)
    public static let flushed = Self(rawValue: 1 << 24)
    public static let rHandle = Self(rawValue: 1 << 28)
    public static let vendor = Self(rawValue: 1 << 29)
    public var commandIndex: UInt16 { UInt16(truncatingIfNeeded: rawValue) }
    public var cHandles: Int { Int((rawValue >> 25) & 0x7) }
    /// The TPM_CC this attribute describes.
    public var commandCode: TPMCC { TPMCC(rawValue: UInt32(commandIndex) | (rawValue & (1 << 29))) }
}

/// TPMA_MODES (Part 2, 8.10).
public struct TPMAModes: OptionSet, TPMWireValue {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let fips140_2 = Self(rawValue: 1 << 0)
    public static let fips140_3Indicator = Self(rawValue: 1 << 1)
}

/// TPMA_ACT (Part 2, 8.12).
public struct TPMAACT: OptionSet, TPMWireValue {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let signaled = Self(rawValue: 1 << 0)
    public static let preserveSignaled = Self(rawValue: 1 << 1)
}

/// TPMA_NV (Part 2, 13.4), with the index type TPM_NT in bits 4–7.
public struct TPMANV: OptionSet, TPMWireValue {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let ppWrite = Self(rawValue: 1 << 0)
    public static let ownerWrite = Self(rawValue: 1 << 1)
    public static let authWrite = Self(rawValue: 1 << 2)
    public static let policyWrite = Self(rawValue: 1 << 3)
    public static let policyDelete = Self(rawValue: 1 << 10)
    public static let writeLocked = Self(rawValue: 1 << 11)
    public static let writeAll = Self(rawValue: 1 << 12)
    public static let writeDefine = Self(rawValue: 1 << 13)
    public static let writeSTClear = Self(rawValue: 1 << 14)
    public static let globalLock = Self(rawValue: 1 << 15)
    public static let ppRead = Self(rawValue: 1 << 16)
    public static let ownerRead = Self(rawValue: 1 << 17)
    public static let authRead = Self(rawValue: 1 << 18)
    public static let policyRead = Self(rawValue: 1 << 19)
    public static let noDA = Self(rawValue: 1 << 25)
    public static let orderly = Self(rawValue: 1 << 26)
    public static let clearSTClear = Self(rawValue: 1 << 27)
    public static let readLocked = Self(rawValue: 1 << 28)
    public static let written = Self(rawValue: 1 << 29)
    public static let platformCreate = Self(rawValue: 1 << 30)
    public static let readSTClear = Self(rawValue: 1 << 31)

    /// TPM_NT (Part 2, 13.4): the kind of NV index.
    public struct IndexType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue & 0xF }
        public static let ordinary = Self(rawValue: 0x0)
        public static let counter = Self(rawValue: 0x1)
        public static let bits = Self(rawValue: 0x2)
        public static let extend = Self(rawValue: 0x4)
        public static let pinFail = Self(rawValue: 0x8)
        public static let pinPass = Self(rawValue: 0x9)
        public var description: String {
            switch rawValue {
            case 0: "ordinary"
            case 1: "counter"
            case 2: "bits"
            case 4: "extend"
            case 8: "pinfail"
            case 9: "pinpass"
            default: "0x\(String(rawValue, radix: 16))"
            }
        }
    }

    public var indexType: IndexType {
        get { IndexType(rawValue: UInt8(truncatingIfNeeded: (rawValue >> 4) & 0xF)) }
        set { rawValue = (rawValue & ~0xF0) | UInt32(newValue.rawValue) << 4 }
    }

    public init(_ options: TPMANV, type: IndexType) {
        self = options
        self.indexType = type
    }
}
