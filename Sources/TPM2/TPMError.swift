/// The error type of the TPM2 module above the wire layer: a stable code, the command it
/// concerns, the TPM's response code or the wire error when there is one, and a reason.
public struct TPMError: Error, Sendable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }
        /// The TPM answered with a non-success response code (see ``TPMError/responseCode``).
        public static let tpm = Code(rawValue: "tpm-response")
        /// The TPM's answer could not be parsed (see ``TPMError/wire``).
        public static let malformedResponse = Code(rawValue: "malformed-response")
        /// A command could not be encoded from the given values.
        public static let invalidCommand = Code(rawValue: "invalid-command")
        /// Connecting to or talking with the TPM failed.
        public static let transport = Code(rawValue: "transport")
        /// The TPM did not answer within the time allowed.
        public static let timeout = Code(rawValue: "timeout")
        /// A TCTI configuration string could not be understood.
        public static let configuration = Code(rawValue: "configuration")
        /// An algorithm, curve or scheme this library does not implement.
        public static let unsupported = Code(rawValue: "unsupported")
        /// A response HMAC did not verify: the answer was not from the TPM holding the session.
        public static let integrity = Code(rawValue: "integrity")
        /// A session was used in a way its state does not allow.
        public static let session = Code(rawValue: "session")
        /// A caller-supplied value is out of range.
        public static let invalidArgument = Code(rawValue: "invalid-argument")
        /// A signature, digest or credential did not verify.
        public static let verification = Code(rawValue: "verification")
    }

    public var code: Code
    public var command: TPMCC?
    public var responseCode: TPMRC?
    public var wire: TPMWireError?
    public var reason: String

    public init(_ code: Code, command: TPMCC? = nil, responseCode: TPMRC? = nil, wire: TPMWireError? = nil, reason: String) {
        self.code = code; self.command = command; self.responseCode = responseCode; self.wire = wire; self.reason = reason
    }

    public var description: String {
        var s = "TPM error [\(code)]"
        if let command { s += " in \(command)" }
        s += ": \(reason)"
        if let responseCode { s += " — \(responseCode)" }
        if let wire { s += " — \(wire)" }
        return s
    }
}
