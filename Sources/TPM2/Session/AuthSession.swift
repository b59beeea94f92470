/// A handle to an HMAC, policy or trial session started by ``TPMClient/startAuthSession(type:authHash:symmetric:salt:bind:attributes:)``.
public struct TPMSession: Sendable, Hashable {
    public let handle: TPMHandle
    public let type: TPMSE
    public let authHash: TPMAlgID
}

/// How one handle of a command is authorized (Part 1, 19).
public enum TPMAuth: Sendable {
    /// The password session TPM_RS_PW with this password (empty for an empty authValue).
    case password([UInt8])
    /// An HMAC or policy session; `authValue` is the authorized entity's authValue.
    case session(TPMSession, authValue: [UInt8] = [])

    public static let emptyPassword = TPMAuth.password([])
}

/// cpHash (Part 1, 18.7): H(commandCode ‖ Name(handle1) ‖ … ‖ parameters).
public func tpmCommandParameterHash(_ alg: TPMAlgID, code: TPMCC, names: [[UInt8]], parameters: [UInt8]) throws(TPMError) -> [UInt8] {
    try TPMCrypto.hash(alg, parts: [be32(code.rawValue)] + names + [parameters])
}

/// rpHash (Part 1, 18.8): H(responseCode ‖ commandCode ‖ parameters); responseCode is 0 for success.
public func tpmResponseParameterHash(_ alg: TPMAlgID, code: TPMCC, parameters: [UInt8]) throws(TPMError) -> [UInt8] {
    try TPMCrypto.hash(alg, be32(0), be32(code.rawValue), parameters)
}

/// The caller's side of one session: its key and nonces, and the computations that use
/// them (Part 1, 19.6). A pure value: the client feeds it each command and response.
public struct TPMSessionState: Sendable {
    public var session: TPMSession
    public var symmetric: TPMTSymDef
    public var sessionKey: [UInt8]
    public var nonceCaller: [UInt8]
    public var nonceTPM: [UInt8]
    /// Name of the bound entity, nil for an unbound session.
    public var bindName: [UInt8]?
    public var attributes: TPMASession
    /// A policy session ran PolicyAuthValue: HMACs include the entity's authValue.
    public var isAuthValueNeeded = false
    /// A policy session ran PolicyPassword: the authValue goes in clear in the hmac field.
    public var isPasswordNeeded = false

    public init(session: TPMSession, symmetric: TPMTSymDef, sessionKey: [UInt8], nonceCaller: [UInt8], nonceTPM: [UInt8],
                bindName: [UInt8]?, attributes: TPMASession) {
        self.session = session; self.symmetric = symmetric; self.sessionKey = sessionKey
        self.nonceCaller = nonceCaller; self.nonceTPM = nonceTPM; self.bindName = bindName; self.attributes = attributes
    }

    /// sessionKey = KDFa(authHash, bindAuth ‖ salt, "ATH", nonceTPM, nonceCaller, digest bits); empty when both are empty.
    public static func sessionKey(authHash: TPMAlgID, bindAuth: [UInt8], salt: [UInt8], nonceTPM: [UInt8],
                                  nonceCaller: [UInt8]) throws(TPMError) -> [UInt8] {
        let key = bindAuth + salt
        if key.isEmpty { return [] }
        return try TPMCrypto.kdfa(authHash, key: key, label: "ATH", contextU: nonceTPM, contextV: nonceCaller,
                                  bits: try TPMCrypto.digestSize(authHash) * 8)
    }

    /// The HMAC and encryption key for a command (Part 1, 19.6.8): sessionKey, followed by the
    /// authorized entity's authValue unless the session is bound to that very entity (HMAC
    /// sessions) or the policy did not ask for it (policy sessions). `entity` is nil when this
    /// session authorizes no handle (it only encrypts or audits).
    public func sessionValue(entity: (name: [UInt8], authValue: [UInt8])?) -> [UInt8] {
        guard let entity else { return sessionKey }
        switch session.type {
        case .hmac:
            if let bindName, bindName == entity.name { return sessionKey }
            return sessionKey + trimmedAuth(entity.authValue)
        default:
            return isAuthValueNeeded ? sessionKey + trimmedAuth(entity.authValue) : sessionKey
        }
    }

    /// The key for parameter encryption (Part 1, 21.2): sessionKey followed by the authValue of
    /// the entity this session authorizes, if any — always, even for the bind entity or a
    /// policy session without PolicyAuthValue (as the reference implementation does).
    public func encryptionKey(entity: (name: [UInt8], authValue: [UInt8])?) -> [UInt8] {
        guard let entity else { return sessionKey }
        return sessionKey + trimmedAuth(entity.authValue)
    }

    /// Trailing zero octets are removed from an authValue before it is used in an HMAC key (Part 1, 19.6.5).
    func trimmedAuth(_ a: [UInt8]) -> [UInt8] {
        var a = a
        while a.last == 0 { a.removeLast() }
        return a
    }

    /// The command HMAC (Part 1, 19.6.5):
    /// HMAC(sessionValue, cpHash ‖ nonceCaller ‖ nonceTPM ‖ nonceDecrypt ‖ nonceEncrypt ‖ sessionAttributes).
    public func commandHMAC(key: [UInt8], cpHash: [UInt8], nonceDecrypt: [UInt8], nonceEncrypt: [UInt8],
                            attributes: TPMASession) throws(TPMError) -> [UInt8] {
        try TPMCrypto.hmac(session.authHash, key: key, cpHash, nonceCaller, nonceTPM, nonceDecrypt, nonceEncrypt, [attributes.rawValue])
    }

    /// The response HMAC (Part 1, 19.6.6): HMAC(sessionValue, rpHash ‖ nonceTPM ‖ nonceCaller ‖ sessionAttributes).
    public func responseHMAC(key: [UInt8], rpHash: [UInt8], attributes: TPMASession) throws(TPMError) -> [UInt8] {
        try TPMCrypto.hmac(session.authHash, key: key, rpHash, nonceTPM, nonceCaller, [attributes.rawValue])
    }

    /// Encrypts (`encrypt` true) or decrypts the data of the first parameter (Part 1, 21):
    /// AES-CFB with key ‖ IV = KDFa(authHash, sessionValue, "CFB", nonceNewer, nonceOlder, keyBits + 128),
    /// or XOR with the mask KDFa(hash, sessionValue, "XOR", nonceNewer, nonceOlder, 8 × length).
    public func crypt(_ data: [UInt8], key: [UInt8], nonceNewer: [UInt8], nonceOlder: [UInt8], encrypt: Bool) throws(TPMError) -> [UInt8] {
        switch symmetric.algorithm {
        case .aes:
            guard symmetric.mode == .cfb else { throw TPMError(.unsupported, reason: "parameter encryption needs CFB mode, the session "
                                                                                   + "has \(symmetric.mode)") }
            let keyBytes = Int(symmetric.keyBits) / 8
            let kiv = try TPMCrypto.kdfa(session.authHash, key: key, label: "CFB", contextU: nonceNewer, contextV: nonceOlder,
                                         bits: Int(symmetric.keyBits) + 128)
            return try TPMCrypto.aesCFB(encrypt: encrypt, key: Array(kiv[0..<keyBytes]), iv: Array(kiv[keyBytes...]), data)
        case .xor:
            if data.isEmpty { return [] }
            let mask = try TPMCrypto.kdfa(TPMAlgID(rawValue: symmetric.keyBits), key: key, label: "XOR", contextU: nonceNewer,
                                          contextV: nonceOlder, bits: data.count * 8)
            return zip(data, mask).map { $0 ^ $1 }
        default:
            throw TPMError(.session, reason: "session \(session.handle) has no symmetric algorithm for parameter encryption")
        }
    }
}
