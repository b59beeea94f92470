/// TPM_CC command codes (Part 2, 6.5.2). Bit 29 (`TPM_CC_V`) marks vendor commands.
public struct TPMCC: TPMNamedConstant {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let nvUndefineSpaceSpecial = Self(rawValue: 0x0000_011F)
    public static let evictControl = Self(rawValue: 0x0000_0120)
    public static let hierarchyControl = Self(rawValue: 0x0000_0121)
    public static let nvUndefineSpace = Self(rawValue: 0x0000_0122)
    public static let changeEPS = Self(rawValue: 0x0000_0124)
    public static let changePPS = Self(rawValue: 0x0000_0125)
    public static let clear = Self(rawValue: 0x0000_0126)
    public static let clearControl = Self(rawValue: 0x0000_0127)
    public static let clockSet = Self(rawValue: 0x0000_0128)
    public static let hierarchyChangeAuth = Self(rawValue: 0x0000_0129)
    public static let nvDefineSpace = Self(rawValue: 0x0000_012A)
    public static let pcrAllocate = Self(rawValue: 0x0000_012B)
    public static let pcrSetAuthPolicy = Self(rawValue: 0x0000_012C)
    public static let ppCommands = Self(rawValue: 0x0000_012D)
    public static let setPrimaryPolicy = Self(rawValue: 0x0000_012E)
    public static let fieldUpgradeStart = Self(rawValue: 0x0000_012F)
    public static let clockRateAdjust = Self(rawValue: 0x0000_0130)
    public static let createPrimary = Self(rawValue: 0x0000_0131)
    public static let nvGlobalWriteLock = Self(rawValue: 0x0000_0132)
    public static let getCommandAuditDigest = Self(rawValue: 0x0000_0133)
    public static let nvIncrement = Self(rawValue: 0x0000_0134)
    public static let nvSetBits = Self(rawValue: 0x0000_0135)
    public static let nvExtend = Self(rawValue: 0x0000_0136)
    public static let nvWrite = Self(rawValue: 0x0000_0137)
    public static let nvWriteLock = Self(rawValue: 0x0000_0138)
    public static let dictionaryAttackLockReset = Self(rawValue: 0x0000_0139)
    public static let dictionaryAttackParameters = Self(rawValue: 0x0000_013A)
    public static let nvChangeAuth = Self(rawValue: 0x0000_013B)
    public static let pcrEvent = Self(rawValue: 0x0000_013C)
    public static let pcrReset = Self(rawValue: 0x0000_013D)
    public static let sequenceComplete = Self(rawValue: 0x0000_013E)
    public static let setAlgorithmSet = Self(rawValue: 0x0000_013F)
    public static let setCommandCodeAuditStatus = Self(rawValue: 0x0000_0140)
    public static let fieldUpgradeData = Self(rawValue: 0x0000_0141)
    public static let incrementalSelfTest = Self(rawValue: 0x0000_0142)
    public static let selfTest = Self(rawValue: 0x0000_0143)
    public static let startup = Self(rawValue: 0x0000_0144)
    public static let shutdown = Self(rawValue: 0x0000_0145)
    public static let stirRandom = Self(rawValue: 0x0000_0146)
    public static let activateCredential = Self(rawValue: 0x0000_0147)
    public static let certify = Self(rawValue: 0x0000_0148)
    public static let policyNV = Self(rawValue: 0x0000_0149)
    public static let certifyCreation = Self(rawValue: 0x0000_014A)
    public static let duplicate = Self(rawValue: 0x0000_014B)
    public static let getTime = Self(rawValue: 0x0000_014C)
    public static let getSessionAuditDigest = Self(rawValue: 0x0000_014D)
    public static let nvRead = Self(rawValue: 0x0000_014E)
    public static let nvReadLock = Self(rawValue: 0x0000_014F)
    public static let objectChangeAuth = Self(rawValue: 0x0000_0150)
    public static let policySecret = Self(rawValue: 0x0000_0151)
    public static let rewrap = Self(rawValue: 0x0000_0152)
    public static let create = Self(rawValue: 0x0000_0153)
    public static let ecdhZGen = Self(rawValue: 0x0000_0154)
    public static let hmac = Self(rawValue: 0x0000_0155)
    public static let import_ = Self(rawValue: 0x0000_0156)
    public static let load = Self(rawValue: 0x0000_0157)
    public static let quote = Self(rawValue: 0x0000_0158)
    public static let rsaDecrypt = Self(rawValue: 0x0000_0159)
    public static let hmacStart = Self(rawValue: 0x0000_015B)
    public static let sequenceUpdate = Self(rawValue: 0x0000_015C)
    public static let sign = Self(rawValue: 0x0000_015D)
    public static let unseal = Self(rawValue: 0x0000_015E)
    public static let policySigned = Self(rawValue: 0x0000_0160)
    public static let contextLoad = Self(rawValue: 0x0000_0161)
    public static let contextSave = Self(rawValue: 0x0000_0162)
    public static let ecdhKeyGen = Self(rawValue: 0x0000_0163)
    public static let encryptDecrypt = Self(rawValue: 0x0000_0164)
    public static let flushContext = Self(rawValue: 0x0000_0165)
    public static let loadExternal = Self(rawValue: 0x0000_0167)
    public static let makeCredential = Self(rawValue: 0x0000_0168)
    public static let nvReadPublic = Self(rawValue: 0x0000_0169)
    public static let policyAuthorize = Self(rawValue: 0x0000_016A)
    public static let policyAuthValue = Self(rawValue: 0x0000_016B)
    public static let policyCommandCode = Self(rawValue: 0x0000_016C)
    public static let policyCounterTimer = Self(rawValue: 0x0000_016D)
    public static let policyCpHash = Self(rawValue: 0x0000_016E)
    public static let policyLocality = Self(rawValue: 0x0000_016F)
    public static let policyNameHash = Self(rawValue: 0x0000_0170)
    public static let policyOR = Self(rawValue: 0x0000_0171)
    public static let policyTicket = Self(rawValue: 0x0000_0172)
    public static let readPublic = Self(rawValue: 0x0000_0173)
    public static let rsaEncrypt = Self(rawValue: 0x0000_0174)
    public static let startAuthSession = Self(rawValue: 0x0000_0176)
    public static let verifySignature = Self(rawValue: 0x0000_0177)
    public static let eccParameters = Self(rawValue: 0x0000_0178)
    public static let firmwareRead = Self(rawValue: 0x0000_0179)
    public static let getCapability = Self(rawValue: 0x0000_017A)
    public static let getRandom = Self(rawValue: 0x0000_017B)
    public static let getTestResult = Self(rawValue: 0x0000_017C)
    public static let hash = Self(rawValue: 0x0000_017D)
    public static let pcrRead = Self(rawValue: 0x0000_017E)
    public static let policyPCR = Self(rawValue: 0x0000_017F)
    public static let policyRestart = Self(rawValue: 0x0000_0180)
    public static let readClock = Self(rawValue: 0x0000_0181)
    public static let pcrExtend = Self(rawValue: 0x0000_0182)
    public static let pcrSetAuthValue = Self(rawValue: 0x0000_0183)
    public static let nvCertify = Self(rawValue: 0x0000_0184)
    public static let eventSequenceComplete = Self(rawValue: 0x0000_0185)
    public static let hashSequenceStart = Self(rawValue: 0x0000_0186)
    public static let policyPhysicalPresence = Self(rawValue: 0x0000_0187)
    public static let policyDuplicationSelect = Self(rawValue: 0x0000_0188)
    public static let policyGetDigest = Self(rawValue: 0x0000_0189)
    public static let testParms = Self(rawValue: 0x0000_018A)
    public static let commit = Self(rawValue: 0x0000_018B)
    public static let policyPassword = Self(rawValue: 0x0000_018C)
    public static let zGen2Phase = Self(rawValue: 0x0000_018D)
    public static let ecEphemeral = Self(rawValue: 0x0000_018E)
    public static let policyNvWritten = Self(rawValue: 0x0000_018F)
    public static let policyTemplate = Self(rawValue: 0x0000_0190)
    public static let createLoaded = Self(rawValue: 0x0000_0191)
    public static let policyAuthorizeNV = Self(rawValue: 0x0000_0192)
    public static let encryptDecrypt2 = Self(rawValue: 0x0000_0193)
    public static let acGetCapability = Self(rawValue: 0x0000_0194)
    public static let acSend = Self(rawValue: 0x0000_0195)
    public static let policyACSendSelect = Self(rawValue: 0x0000_0196)
    public static let certifyX509 = Self(rawValue: 0x0000_0197)
    public static let actSetTimeout = Self(rawValue: 0x0000_0198)
    public static let eccEncrypt = Self(rawValue: 0x0000_0199)
    public static let eccDecrypt = Self(rawValue: 0x0000_019A)
    public static let policyCapability = Self(rawValue: 0x0000_019B)
    public static let policyParameters = Self(rawValue: 0x0000_019C)
    public static let nvDefineSpace2 = Self(rawValue: 0x0000_019D)
    public static let nvReadPublic2 = Self(rawValue: 0x0000_019E)
    public static let setCapability = Self(rawValue: 0x0000_019F)

    public static let names: [UInt32: String] = [
        0x011F: "TPM_CC_NV_UndefineSpaceSpecial", 0x0120: "TPM_CC_EvictControl", 0x0121: "TPM_CC_HierarchyControl",
        0x0122: "TPM_CC_NV_UndefineSpace", 0x0124: "TPM_CC_ChangeEPS", 0x0125: "TPM_CC_ChangePPS",
        0x0126: "TPM_CC_Clear", 0x0127: "TPM_CC_ClearControl", 0x0128: "TPM_CC_ClockSet",
        0x0129: "TPM_CC_HierarchyChangeAuth", 0x012A: "TPM_CC_NV_DefineSpace", 0x012B: "TPM_CC_PCR_Allocate",
        0x012C: "TPM_CC_PCR_SetAuthPolicy", 0x012D: "TPM_CC_PP_Commands", 0x012E: "TPM_CC_SetPrimaryPolicy",
        0x012F: "TPM_CC_FieldUpgradeStart", 0x0130: "TPM_CC_ClockRateAdjust", 0x0131: "TPM_CC_CreatePrimary",
        0x0132: "TPM_CC_NV_GlobalWriteLock", 0x0133: "TPM_CC_GetCommandAuditDigest", 0x0134: "TPM_CC_NV_Increment",
        0x0135: "TPM_CC_NV_SetBits", 0x0136: "TPM_CC_NV_Extend", 0x0137: "TPM_CC_NV_Write",
        0x0138: "TPM_CC_NV_WriteLock", 0x0139: "TPM_CC_DictionaryAttackLockReset", 0x013A: "TPM_CC_DictionaryAttackParameters",
        0x013B: "TPM_CC_NV_ChangeAuth", 0x013C: "TPM_CC_PCR_Event", 0x013D: "TPM_CC_PCR_Reset",
        0x013E: "TPM_CC_SequenceComplete", 0x013F: "TPM_CC_SetAlgorithmSet", 0x0140: "TPM_CC_SetCommandCodeAuditStatus",
        0x0141: "TPM_CC_FieldUpgradeData", 0x0142: "TPM_CC_IncrementalSelfTest", 0x0143: "TPM_CC_SelfTest",
        0x0144: "TPM_CC_Startup", 0x0145: "TPM_CC_Shutdown", 0x0146: "TPM_CC_StirRandom",
        0x0147: "TPM_CC_ActivateCredential", 0x0148: "TPM_CC_Certify", 0x0149: "TPM_CC_PolicyNV",
        0x014A: "TPM_CC_CertifyCreation", 0x014B: "TPM_CC_Duplicate", 0x014C: "TPM_CC_GetTime",
        0x014D: "TPM_CC_GetSessionAuditDigest", 0x014E: "TPM_CC_NV_Read", 0x014F: "TPM_CC_NV_ReadLock",
        0x0150: "TPM_CC_ObjectChangeAuth", 0x0151: "TPM_CC_PolicySecret", 0x0152: "TPM_CC_Rewrap",
        0x0153: "TPM_CC_Create", 0x0154: "TPM_CC_ECDH_ZGen", 0x0155: "TPM_CC_HMAC",
        0x0156: "TPM_CC_Import", 0x0157: "TPM_CC_Load", 0x0158: "TPM_CC_Quote",
        0x0159: "TPM_CC_RSA_Decrypt", 0x015B: "TPM_CC_HMAC_Start", 0x015C: "TPM_CC_SequenceUpdate",
        0x015D: "TPM_CC_Sign", 0x015E: "TPM_CC_Unseal", 0x0160: "TPM_CC_PolicySigned",
        0x0161: "TPM_CC_ContextLoad", 0x0162: "TPM_CC_ContextSave", 0x0163: "TPM_CC_ECDH_KeyGen",
        0x0164: "TPM_CC_EncryptDecrypt", 0x0165: "TPM_CC_FlushContext", 0x0167: "TPM_CC_LoadExternal",
        0x0168: "TPM_CC_MakeCredential", 0x0169: "TPM_CC_NV_ReadPublic", 0x016A: "TPM_CC_PolicyAuthorize",
        0x016B: "TPM_CC_PolicyAuthValue", 0x016C: "TPM_CC_PolicyCommandCode", 0x016D: "TPM_CC_PolicyCounterTimer",
        0x016E: "TPM_CC_PolicyCpHash", 0x016F: "TPM_CC_PolicyLocality", 0x0170: "TPM_CC_PolicyNameHash",
        0x0171: "TPM_CC_PolicyOR", 0x0172: "TPM_CC_PolicyTicket", 0x0173: "TPM_CC_ReadPublic",
        0x0174: "TPM_CC_RSA_Encrypt", 0x0176: "TPM_CC_StartAuthSession", 0x0177: "TPM_CC_VerifySignature",
        0x0178: "TPM_CC_ECC_Parameters", 0x0179: "TPM_CC_FirmwareRead", 0x017A: "TPM_CC_GetCapability",
        0x017B: "TPM_CC_GetRandom", 0x017C: "TPM_CC_GetTestResult", 0x017D: "TPM_CC_Hash",
        0x017E: "TPM_CC_PCR_Read", 0x017F: "TPM_CC_PolicyPCR", 0x0180: "TPM_CC_PolicyRestart",
        0x0181: "TPM_CC_ReadClock", 0x0182: "TPM_CC_PCR_Extend", 0x0183: "TPM_CC_PCR_SetAuthValue",
        0x0184: "TPM_CC_NV_Certify", 0x0185: "TPM_CC_EventSequenceComplete", 0x0186: "TPM_CC_HashSequenceStart",
        0x0187: "TPM_CC_PolicyPhysicalPresence", 0x0188: "TPM_CC_PolicyDuplicationSelect", 0x0189: "TPM_CC_PolicyGetDigest",
        0x018A: "TPM_CC_TestParms", 0x018B: "TPM_CC_Commit", 0x018C: "TPM_CC_PolicyPassword",
        0x018D: "TPM_CC_ZGen_2Phase", 0x018E: "TPM_CC_EC_Ephemeral", 0x018F: "TPM_CC_PolicyNvWritten",
        0x0190: "TPM_CC_PolicyTemplate", 0x0191: "TPM_CC_CreateLoaded", 0x0192: "TPM_CC_PolicyAuthorizeNV",
        0x0193: "TPM_CC_EncryptDecrypt2", 0x0194: "TPM_CC_AC_GetCapability", 0x0195: "TPM_CC_AC_Send",
        0x0196: "TPM_CC_Policy_AC_SendSelect", 0x0197: "TPM_CC_CertifyX509", 0x0198: "TPM_CC_ACT_SetTimeout",
        0x0199: "TPM_CC_ECC_Encrypt", 0x019A: "TPM_CC_ECC_Decrypt", 0x019B: "TPM_CC_PolicyCapability",
        0x019C: "TPM_CC_PolicyParameters", 0x019D: "TPM_CC_NV_DefineSpace2", 0x019E: "TPM_CC_NV_ReadPublic2",
        0x019F: "TPM_CC_SetCapability",
    ]

    /// Whether this is a vendor-specific command (TPMA_CC.V).
    public var isVendor: Bool { rawValue & (1 << 29) != 0 }
}
