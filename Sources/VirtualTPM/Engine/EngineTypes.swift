import TPM2

/// A loaded object (transient, or a persistent one being used).
struct LoadedObject {
    var publicArea: TPMTPublic
    /// nil for a public-only object (LoadExternal without a sensitive area).
    var sensitive: TPMTSensitive?
    var name: [UInt8]
    var qualifiedName: [UInt8]
    /// The hierarchy the object belongs to (TPM_RH_OWNER/ENDORSEMENT/PLATFORM/NULL).
    var hierarchy: TPMHandle
    var isPrimary: Bool
    var rsa: RSAKeyPair?
    var ecc: ECCPrivateKey?

    var attributes: TPMAObject { publicArea.objectAttributes }
    var authValue: [UInt8] { sensitive?.authValue.bytes ?? [] }
    var seedValue: [UInt8] { sensitive?.seedValue.bytes ?? [] }
    var isStorageParent: Bool {
        attributes.contains([.restricted, .decrypt]) && !attributes.contains(.signEncrypt) && sensitive != nil
    }
}

/// The TPM's side of one session (Part 1, 19): key, nonces and, for policy sessions, the
/// policy being built.
struct ServerSession {
    var handle: TPMHandle
    var type: TPMSE
    var authHash: TPMAlgID
    var symmetric: TPMTSymDef
    var sessionKey: [UInt8]
    var nonceTPM: [UInt8]
    /// The Name of the bind entity, or nil.
    var bindName: [UInt8]?
    // Policy state (Part 1, 19.7).
    var policyDigest: [UInt8]
    var commandCode: TPMCC?
    var isAuthValueNeeded = false
    var isPasswordNeeded = false
    /// pcrUpdateCounter when PolicyPCR ran (a later PCR change fails the policy).
    var pcrCounter: UInt32?
    /// A cpHash the policy is bound to (PolicySecret's cpHashA).
    var cpHash: [UInt8]?
    /// Loaded (usable) or saved by ContextSave.
    var isLoaded = true
    /// The sequence number of the one saved context that may bring it back.
    var savedSequence: UInt64 = 0

    mutating func resetPolicy() {
        policyDigest = [UInt8](repeating: 0, count: policyDigest.count)
        commandCode = nil
        isAuthValueNeeded = false
        isPasswordNeeded = false
        pcrCounter = nil
        cpHash = nil
    }
}

/// Per-command facts the command bodies need.
struct CommandContext {
    var code: TPMCC
    var locality: UInt8
    /// The authorization of each authorized handle (for the bodies that look at it, e.g.
    /// which session authorized a PolicySecret).
    var handleNames: [[UInt8]]
}

/// Implementation limits (answered by GetCapability and enforced).
enum Limits {
    static let transientSlots = 3
    static let loadedSessions = 3
    static let activeSessions = 64
    static let persistentObjects = 7
    static let nvIndices = 2048
    static let maxCommandSize = 4096
    static let maxResponseSize = 4096
    static let nvBufferMax = 1024
    static let maxNVIndexSize = 2048
    static let pcrCount = 24
}

/// The TPM_RC a decoding failure becomes (Part 2, 6.6.3): with the number of the parameter
/// that failed.
func responseCode(for error: TPMWireError) -> TPMRC {
    switch error.code {
    case .truncated: .insufficient
    case .sizeExceedsLimit, .countExceedsLimit, .trailingBytes, .sizeMismatch, .emptyStructure: .size
    case .unknownSelector: .selector
    default: .value
    }
}

extension TPMRC {
    /// TPM_RC_BAD_TAG (Part 2, 6.6.2): a format-zero code outside the VER1 range.
    static let badTag = TPMRC(rawValue: 0x01E)
}
