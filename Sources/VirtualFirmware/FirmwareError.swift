/// Why a launch or a prediction failed: which stage, what was wrong, and what to do.
public struct FirmwareError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable, Codable {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// Firmware (or shim) refused an image: Secure Boot's decision is attached.
        public static let securityViolation = Self(rawValue: "security-violation")
        /// A file the boot needs is not on the ESP.
        public static let notFound = Self(rawValue: "not-found")
        /// A file on the ESP cannot be used (a corrupt PE image, an unreadable FAT image…).
        public static let invalidImage = Self(rawValue: "invalid-image")
        /// grub.cfg (or grub's embedded config) cannot be parsed or uses what is not modelled.
        public static let grubScript = Self(rawValue: "grub-script")
        /// The VM's settings make no sense (Standard with Secure Boot, no boot entry…).
        public static let invalidSettings = Self(rawValue: "invalid-settings")
        /// The variable store cannot be read.
        public static let invalidVariableStore = Self(rawValue: "invalid-variable-store")
        /// The vTPM refused a measurement.
        public static let tpm = Self(rawValue: "tpm")
        /// The boot chain does what the simulation does not model.
        public static let unsupported = Self(rawValue: "unsupported")
    }

    public var code: Code
    public var stage: String
    public var reason: String
    public var path: String?

    public init(_ code: Code, stage: String, _ reason: String, path: String? = nil) {
        self.code = code; self.stage = stage; self.reason = reason; self.path = path
    }

    public var description: String {
        "launch failed [\(code.rawValue)] in \(stage)\(path.map { " (\($0))" } ?? ""): \(reason)"
    }
}
