/// The error type of the VirtualTPM module (outside the TPM's own response codes, which go
/// back to the caller in responses): state files, keys, sockets, options.
public struct VTPMError: Error, Sendable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }
        /// The state file is missing pieces, fails authentication or does not parse.
        public static let corruptState = Code(rawValue: "corrupt-state")
        /// The host key cannot be read or has the wrong size.
        public static let key = Code(rawValue: "key")
        /// A file or socket operation failed.
        public static let io = Code(rawValue: "io")
        /// A command-line option is wrong.
        public static let option = Code(rawValue: "option")
        /// Certificate or key provisioning failed.
        public static let provisioning = Code(rawValue: "provisioning")
    }
    public var code: Code
    public var reason: String
    public init(_ code: Code, _ reason: String) { self.code = code; self.reason = reason }
    public var description: String { "vTPM error [\(code)]: \(reason)" }
}
