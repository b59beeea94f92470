// Object structures: symmetric definitions, schemes, public parameters and unique values,
// TPMT_PUBLIC, the sensitive area, creation data, NV public area (Part 2, clauses 11–13, 15).

/// TPMT_SYM_DEF and TPMT_SYM_DEF_OBJECT (Part 2, 11.1.6/11.1.7): a symmetric algorithm, its
/// key size (TPMU_SYM_KEY_BITS) and mode (TPMU_SYM_MODE), both selected by `algorithm`.
/// TPM_ALG_NULL has neither; TPM_ALG_XOR has a hash in place of the key size and no mode.
public struct TPMTSymDef: TPMStructure, Hashable {
    public static var tpmName: String { "TPMT_SYM_DEF" }
    public var algorithm: TPMAlgID
    /// Key bits, or the hash algorithm's id for XOR.
    public var keyBits: UInt16
    public var mode: TPMAlgID
    @inlinable public init() { algorithm = .null; keyBits = 0; mode = .null }
    public init(algorithm: TPMAlgID, keyBits: UInt16, mode: TPMAlgID) {
        self.algorithm = algorithm; self.keyBits = keyBits; self.mode = mode
    }
    public static let null = TPMTSymDef()
    public static let aes128CFB = TPMTSymDef(algorithm: .aes, keyBits: 128, mode: .cfb)
    public static let aes256CFB = TPMTSymDef(algorithm: .aes, keyBits: 256, mode: .cfb)
    public static func xor(_ hash: TPMAlgID) -> TPMTSymDef { TPMTSymDef(algorithm: .xor, keyBits: hash.rawValue, mode: .null) }

    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&algorithm, "algorithm")
        switch algorithm {
        case .null:
            return
        case .xor:
            try c.u16(&keyBits, "keyBits")
        case .aes, .sm4, .camellia, .tdes:
            try c.u16(&keyBits, "keyBits")
            try c.value(&mode, "mode")
        default:
            throw c.unknownSelector(algorithm, union: "TPMU_SYM_KEY_BITS")
        }
    }
}
public typealias TPMTSymDefObject = TPMTSymDef

/// The asymmetric, signature and KDF scheme structures (Part 2, 11.2): TPMT_SIG_SCHEME,
/// TPMT_RSA_SCHEME, TPMT_RSA_DECRYPT, TPMT_ECC_SCHEME, TPMT_ASYM_SCHEME and TPMT_KDF_SCHEME
/// share one layout — the scheme, then its details (TPMU_ASYM_SCHEME / TPMU_SIG_SCHEME /
/// TPMU_KDF_SCHEME) selected by it: a hash for most schemes, a hash and a count for ECDAA,
/// nothing for TPM_ALG_NULL and RSAES.
public struct TPMTScheme: TPMStructure, Hashable {
    public static var tpmName: String { "TPMT_SCHEME" }
    public var scheme: TPMAlgID
    public var hashAlg: TPMAlgID
    /// ECDAA's commit count.
    public var count: UInt16
    @inlinable public init() { scheme = .null; hashAlg = .null; count = 0 }
    public init(scheme: TPMAlgID, hashAlg: TPMAlgID = .null, count: UInt16 = 0) {
        self.scheme = scheme; self.hashAlg = hashAlg; self.count = count
    }
    public static let null = TPMTScheme()
    public static func rsassa(_ hash: TPMAlgID) -> TPMTScheme { TPMTScheme(scheme: .rsassa, hashAlg: hash) }
    public static func rsapss(_ hash: TPMAlgID) -> TPMTScheme { TPMTScheme(scheme: .rsapss, hashAlg: hash) }
    public static func ecdsa(_ hash: TPMAlgID) -> TPMTScheme { TPMTScheme(scheme: .ecdsa, hashAlg: hash) }
    public static func hmac(_ hash: TPMAlgID) -> TPMTScheme { TPMTScheme(scheme: .hmac, hashAlg: hash) }

    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&scheme, "scheme")
        switch scheme {
        case .null, .rsaes:
            return
        case .ecdaa:
            try c.value(&hashAlg, "hashAlg")
            try c.u16(&count, "count")
        case .rsassa, .rsapss, .ecdsa, .sm2, .ecschnorr, .oaep, .ecdh, .ecmqv, .hmac,
             .mgf1, .kdf1_sp800_56a, .kdf2, .kdf1_sp800_108:
            try c.value(&hashAlg, "hashAlg")
        default:
            throw c.unknownSelector(scheme, union: "TPMU_ASYM_SCHEME")
        }
    }
}
public typealias TPMTSigScheme = TPMTScheme
public typealias TPMTRSAScheme = TPMTScheme
public typealias TPMTRSADecrypt = TPMTScheme
public typealias TPMTECCScheme = TPMTScheme
public typealias TPMTAsymScheme = TPMTScheme
public typealias TPMTKDFScheme = TPMTScheme

/// TPMT_KEYEDHASH_SCHEME (Part 2, 11.1.23): HMAC (a hash) or XOR (a hash and a KDF).
public struct TPMTKeyedHashScheme: TPMStructure, Hashable {
    public static var tpmName: String { "TPMT_KEYEDHASH_SCHEME" }
    public var scheme: TPMAlgID
    public var hashAlg: TPMAlgID
    public var kdf: TPMAlgID
    @inlinable public init() { scheme = .null; hashAlg = .null; kdf = .null }
    public init(scheme: TPMAlgID, hashAlg: TPMAlgID = .null, kdf: TPMAlgID = .null) {
        self.scheme = scheme; self.hashAlg = hashAlg; self.kdf = kdf
    }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&scheme, "scheme")
        switch scheme {
        case .null: return
        case .hmac: try c.value(&hashAlg, "hashAlg")
        case .xor:
            try c.value(&hashAlg, "hashAlg")
            try c.value(&kdf, "kdf")
        default: throw c.unknownSelector(scheme, union: "TPMU_SCHEME_KEYEDHASH")
        }
    }
}

/// TPMS_KEYEDHASH_PARMS (Part 2, 12.2.3.3).
public struct TPMSKeyedHashParms: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_KEYEDHASH_PARMS" }
    public var scheme: TPMTKeyedHashScheme
    @inlinable public init() { scheme = TPMTKeyedHashScheme() }
    public init(scheme: TPMTKeyedHashScheme) { self.scheme = scheme }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&scheme, "scheme") }
}

/// TPMS_SYMCIPHER_PARMS (Part 2, 12.2.3.2).
public struct TPMSSymCipherParms: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_SYMCIPHER_PARMS" }
    public var sym: TPMTSymDefObject
    @inlinable public init() { sym = TPMTSymDef() }
    public init(sym: TPMTSymDefObject) { self.sym = sym }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) { try c.nested(&sym, "sym") }
}

/// TPMS_RSA_PARMS (Part 2, 12.2.3.5).
public struct TPMSRSAParms: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_RSA_PARMS" }
    public var symmetric: TPMTSymDefObject
    public var scheme: TPMTRSAScheme
    public var keyBits: UInt16
    /// 0 means the default exponent 65537.
    public var exponent: UInt32
    @inlinable public init() { symmetric = TPMTSymDef(); scheme = TPMTScheme(); keyBits = 0; exponent = 0 }
    public init(symmetric: TPMTSymDefObject = .null, scheme: TPMTRSAScheme = .null, keyBits: UInt16, exponent: UInt32 = 0) {
        self.symmetric = symmetric; self.scheme = scheme; self.keyBits = keyBits; self.exponent = exponent
    }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&symmetric, "symmetric")
        try c.nested(&scheme, "scheme")
        try c.u16(&keyBits, "keyBits")
        try c.u32(&exponent, "exponent")
    }
}

/// TPMS_ECC_PARMS (Part 2, 12.2.3.6).
public struct TPMSECCParms: TPMStructure, Hashable {
    public static var tpmName: String { "TPMS_ECC_PARMS" }
    public var symmetric: TPMTSymDefObject
    public var scheme: TPMTECCScheme
    public var curveID: TPMECCCurve
    public var kdf: TPMTKDFScheme
    @inlinable public init() { symmetric = TPMTSymDef(); scheme = TPMTScheme(); curveID = .none; kdf = TPMTScheme() }
    public init(symmetric: TPMTSymDefObject = .null, scheme: TPMTECCScheme = .null, curveID: TPMECCCurve, kdf: TPMTKDFScheme = .null) {
        self.symmetric = symmetric; self.scheme = scheme; self.curveID = curveID; self.kdf = kdf
    }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&symmetric, "symmetric")
        try c.nested(&scheme, "scheme")
        try c.value(&curveID, "curveID")
        try c.nested(&kdf, "kdf")
    }
}

/// TPMS_ECC_POINT (Part 2, 11.2.5.2).
public struct TPMSECCPoint: TPMStructure, Hashable, TPM2BContent {
    public static var tpmName: String { "TPMS_ECC_POINT" }
    public static var sizedTPMName: String { "TPM2B_ECC_POINT" }
    public static var sizedFieldName: StaticString { "point" }
    public static var sizedMaxSize: Int { TPM2BStructLimit.eccPoint }
    public var x: TPM2BECCParameter
    public var y: TPM2BECCParameter
    @inlinable public init() { x = TPM2BECCParameter(); y = TPM2BECCParameter() }
    public init(x: [UInt8], y: [UInt8]) { self.x = TPM2BECCParameter(x); self.y = TPM2BECCParameter(y) }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&x, "x")
        try c.nested(&y, "y")
    }
}
public typealias TPM2BECCPoint = TPM2BSized<TPMSECCPoint>

/// TPMU_PUBLIC_PARMS (Part 2, 12.2.3.7), selected by TPMT_PUBLIC.type.
public enum TPMUPublicParms: TPMUnion, Hashable {
    case keyedHash(TPMSKeyedHashParms)
    case symCipher(TPMSSymCipherParms)
    case rsa(TPMSRSAParms)
    case ecc(TPMSECCParms)
    public static var tpmName: String { "TPMU_PUBLIC_PARMS" }
    @inlinable public init() { self = .keyedHash(TPMSKeyedHashParms()) }
    @inlinable public var selector: TPMAlgID {
        switch self {
        case .keyedHash: .keyedHash
        case .symCipher: .symCipher
        case .rsa: .rsa
        case .ecc: .ecc
        }
    }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C, selector: TPMAlgID) throws(TPMWireError) {
        switch selector {
        case .keyedHash: try c.member(&self, "keyedHashDetail", Self.keyedHash) { if case .keyedHash(let v) = $0 { v } else { nil } }
        case .symCipher: try c.member(&self, "symDetail", Self.symCipher) { if case .symCipher(let v) = $0 { v } else { nil } }
        case .rsa: try c.member(&self, "rsaDetail", Self.rsa) { if case .rsa(let v) = $0 { v } else { nil } }
        case .ecc: try c.member(&self, "eccDetail", Self.ecc) { if case .ecc(let v) = $0 { v } else { nil } }
        default: throw c.unknownSelector(selector, union: Self.tpmName)
        }
    }
}

/// TPMU_PUBLIC_ID (Part 2, 12.2.3.2): the unique field, selected by TPMT_PUBLIC.type.
public enum TPMUPublicID: TPMUnion, Hashable {
    case keyedHash(TPM2BDigest)
    case sym(TPM2BDigest)
    case rsa(TPM2BPublicKeyRSA)
    case ecc(TPMSECCPoint)
    public static var tpmName: String { "TPMU_PUBLIC_ID" }
    @inlinable public init() { self = .keyedHash(TPM2BDigest()) }
    @inlinable public var selector: TPMAlgID {
        switch self {
        case .keyedHash: .keyedHash
        case .sym: .symCipher
        case .rsa: .rsa
        case .ecc: .ecc
        }
    }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C, selector: TPMAlgID) throws(TPMWireError) {
        switch selector {
        case .keyedHash: try c.member(&self, "keyedHash", Self.keyedHash) { if case .keyedHash(let v) = $0 { v } else { nil } }
        case .symCipher: try c.member(&self, "sym", Self.sym) { if case .sym(let v) = $0 { v } else { nil } }
        case .rsa: try c.member(&self, "rsa", Self.rsa) { if case .rsa(let v) = $0 { v } else { nil } }
        case .ecc: try c.member(&self, "ecc", Self.ecc) { if case .ecc(let v) = $0 { v } else { nil } }
        default: throw c.unknownSelector(selector, union: Self.tpmName)
        }
    }
}

/// TPMT_PUBLIC (Part 2, 12.2.4). `type` is not stored: it is the selector of `parameters`,
/// and `unique` must be of the same type (an encoder refuses a mismatch).
public struct TPMTPublic: TPMStructure, Hashable, TPM2BContent {
    public static var tpmName: String { "TPMT_PUBLIC" }
    public static var sizedTPMName: String { "TPM2B_PUBLIC" }
    public static var sizedFieldName: StaticString { "publicArea" }
    public static var sizedMaxSize: Int { TPM2BStructLimit.publicArea }
    public var nameAlg: TPMAlgID
    public var objectAttributes: TPMAObject
    public var authPolicy: TPM2BDigest
    public var parameters: TPMUPublicParms
    public var unique: TPMUPublicID
    /// TPMI_ALG_PUBLIC: the object type.
    @inlinable public var type: TPMAlgID { parameters.selector }

    @inlinable public init() {
        nameAlg = .null; objectAttributes = []; authPolicy = TPM2BDigest()
        parameters = TPMUPublicParms(); unique = TPMUPublicID()
    }
    public init(nameAlg: TPMAlgID, objectAttributes: TPMAObject, authPolicy: TPM2BDigest = TPM2BDigest(),
                parameters: TPMUPublicParms, unique: TPMUPublicID) {
        self.nameAlg = nameAlg; self.objectAttributes = objectAttributes; self.authPolicy = authPolicy
        self.parameters = parameters; self.unique = unique
    }

    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        var type = parameters.selector
        try c.value(&type, "type")
        try c.value(&nameAlg, "nameAlg")
        try c.value(&objectAttributes, "objectAttributes")
        try c.nested(&authPolicy, "authPolicy")
        try c.union(&parameters, selector: type, "parameters")
        try c.union(&unique, selector: type, "unique")
    }
}
public typealias TPM2BPublic = TPM2BSized<TPMTPublic>

/// TPMU_SENSITIVE_COMPOSITE (Part 2, 12.3.2.3), selected by TPMT_SENSITIVE.sensitiveType.
public enum TPMUSensitiveComposite: TPMUnion, Hashable {
    case rsa(TPM2BPrivateKeyRSA)
    case ecc(TPM2BECCParameter)
    case bits(TPM2BSensitiveData)
    case sym(TPM2BSymKey)
    public static var tpmName: String { "TPMU_SENSITIVE_COMPOSITE" }
    @inlinable public init() { self = .bits(TPM2BSensitiveData()) }
    @inlinable public var selector: TPMAlgID {
        switch self {
        case .rsa: .rsa
        case .ecc: .ecc
        case .bits: .keyedHash
        case .sym: .symCipher
        }
    }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C, selector: TPMAlgID) throws(TPMWireError) {
        switch selector {
        case .rsa: try c.member(&self, "rsa", Self.rsa) { if case .rsa(let v) = $0 { v } else { nil } }
        case .ecc: try c.member(&self, "ecc", Self.ecc) { if case .ecc(let v) = $0 { v } else { nil } }
        case .keyedHash: try c.member(&self, "bits", Self.bits) { if case .bits(let v) = $0 { v } else { nil } }
        case .symCipher: try c.member(&self, "sym", Self.sym) { if case .sym(let v) = $0 { v } else { nil } }
        default: throw c.unknownSelector(selector, union: Self.tpmName)
        }
    }
}

/// TPMT_SENSITIVE (Part 2, 12.3.2.4): the secret half of an object.
public struct TPMTSensitive: TPMStructure, Hashable, TPM2BContent {
    public static var tpmName: String { "TPMT_SENSITIVE" }
    public static var sizedTPMName: String { "TPM2B_SENSITIVE" }
    public static var sizedFieldName: StaticString { "sensitiveArea" }
    public static var sizedMaxSize: Int { TPM2BStructLimit.sensitive }
    public var authValue: TPM2BAuth
    public var seedValue: TPM2BDigest
    public var sensitive: TPMUSensitiveComposite
    @inlinable public var sensitiveType: TPMAlgID { sensitive.selector }
    @inlinable public init() { authValue = TPM2BAuth(); seedValue = TPM2BDigest(); sensitive = TPMUSensitiveComposite() }
    public init(authValue: TPM2BAuth = TPM2BAuth(), seedValue: TPM2BDigest = TPM2BDigest(), sensitive: TPMUSensitiveComposite) {
        self.authValue = authValue; self.seedValue = seedValue; self.sensitive = sensitive
    }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        var type = sensitive.selector
        try c.value(&type, "sensitiveType")
        try c.nested(&authValue, "authValue")
        try c.nested(&seedValue, "seedValue")
        try c.union(&sensitive, selector: type, "sensitive")
    }
}
public typealias TPM2BSensitive = TPM2BSized<TPMTSensitive>

/// TPMS_SENSITIVE_CREATE (Part 2, 11.1.15): the auth value and data given to Create/CreatePrimary.
public struct TPMSSensitiveCreate: TPMStructure, Hashable, TPM2BContent {
    public static var tpmName: String { "TPMS_SENSITIVE_CREATE" }
    public static var sizedTPMName: String { "TPM2B_SENSITIVE_CREATE" }
    public static var sizedFieldName: StaticString { "sensitive" }
    public static var sizedMaxSize: Int { TPM2BStructLimit.sensitiveCreate }
    public var userAuth: TPM2BAuth
    public var data: TPM2BSensitiveData
    @inlinable public init() { userAuth = TPM2BAuth(); data = TPM2BSensitiveData() }
    public init(userAuth: [UInt8] = [], data: [UInt8] = []) { self.userAuth = TPM2BAuth(userAuth); self.data = TPM2BSensitiveData(data) }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&userAuth, "userAuth")
        try c.nested(&data, "data")
    }
}
public typealias TPM2BSensitiveCreate = TPM2BSized<TPMSSensitiveCreate>

/// TPMS_CREATION_DATA (Part 2, 15.1): what the TPM recorded when it created an object.
public struct TPMSCreationData: TPMStructure, Hashable, TPM2BContent {
    public static var tpmName: String { "TPMS_CREATION_DATA" }
    public static var sizedTPMName: String { "TPM2B_CREATION_DATA" }
    public static var sizedFieldName: StaticString { "creationData" }
    public static var sizedMaxSize: Int { TPM2BStructLimit.creationData }
    public var pcrSelect: TPMLPCRSelection
    public var pcrDigest: TPM2BDigest
    public var locality: TPMALocality
    public var parentNameAlg: TPMAlgID
    public var parentName: TPM2BName
    public var parentQualifiedName: TPM2BName
    public var outsideInfo: TPM2BData
    @inlinable public init() {
        pcrSelect = TPMLPCRSelection(); pcrDigest = TPM2BDigest(); locality = []; parentNameAlg = .null
        parentName = TPM2BName(); parentQualifiedName = TPM2BName(); outsideInfo = TPM2BData()
    }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.nested(&pcrSelect, "pcrSelect")
        try c.nested(&pcrDigest, "pcrDigest")
        try c.value(&locality, "locality")
        try c.value(&parentNameAlg, "parentNameAlg")
        try c.nested(&parentName, "parentName")
        try c.nested(&parentQualifiedName, "parentQualifiedName")
        try c.nested(&outsideInfo, "outsideInfo")
    }
}
public typealias TPM2BCreationData = TPM2BSized<TPMSCreationData>

/// TPMS_NV_PUBLIC (Part 2, 13.5).
public struct TPMSNVPublic: TPMStructure, Hashable, TPM2BContent {
    public static var tpmName: String { "TPMS_NV_PUBLIC" }
    public static var sizedTPMName: String { "TPM2B_NV_PUBLIC" }
    public static var sizedFieldName: StaticString { "nvPublic" }
    public static var sizedMaxSize: Int { TPM2BStructLimit.nvPublic }
    public var nvIndex: TPMHandle
    public var nameAlg: TPMAlgID
    public var attributes: TPMANV
    public var authPolicy: TPM2BDigest
    public var dataSize: UInt16
    @inlinable public init() { nvIndex = TPMHandle(0); nameAlg = .null; attributes = []; authPolicy = TPM2BDigest(); dataSize = 0 }
    public init(nvIndex: TPMHandle, nameAlg: TPMAlgID = .sha256, attributes: TPMANV, authPolicy: TPM2BDigest = TPM2BDigest(),
                dataSize: UInt16) {
        self.nvIndex = nvIndex; self.nameAlg = nameAlg; self.attributes = attributes; self.authPolicy = authPolicy; self.dataSize = dataSize
    }
    @inlinable
    public mutating func wire<C: TPMCoder>(_ c: inout C) throws(TPMWireError) {
        try c.value(&nvIndex, "nvIndex")
        try c.value(&nameAlg, "nameAlg")
        try c.value(&attributes, "attributes")
        try c.nested(&authPolicy, "authPolicy")
        try c.u16(&dataSize, "dataSize")
    }
}
public typealias TPM2BNVPublic = TPM2BSized<TPMSNVPublic>
