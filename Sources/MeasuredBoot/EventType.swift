/// TCG PC Client Platform Firmware Profile event types (PFP 10.4.1). An open set: values the
/// profile does not name are kept and shown as hex.
public struct EventType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let prebootCert = Self(rawValue: 0x0000_0000)
    public static let postCode = Self(rawValue: 0x0000_0001)
    public static let unused = Self(rawValue: 0x0000_0002)
    public static let noAction = Self(rawValue: 0x0000_0003)
    public static let separator = Self(rawValue: 0x0000_0004)
    public static let action = Self(rawValue: 0x0000_0005)
    public static let eventTag = Self(rawValue: 0x0000_0006)
    public static let sCRTMContents = Self(rawValue: 0x0000_0007)
    public static let sCRTMVersion = Self(rawValue: 0x0000_0008)
    public static let cpuMicrocode = Self(rawValue: 0x0000_0009)
    public static let platformConfigFlags = Self(rawValue: 0x0000_000A)
    public static let tableOfDevices = Self(rawValue: 0x0000_000B)
    public static let compactHash = Self(rawValue: 0x0000_000C)
    public static let ipl = Self(rawValue: 0x0000_000D)
    public static let iplPartitionData = Self(rawValue: 0x0000_000E)
    public static let nonhostCode = Self(rawValue: 0x0000_000F)
    public static let nonhostConfig = Self(rawValue: 0x0000_0010)
    public static let nonhostInfo = Self(rawValue: 0x0000_0011)
    public static let omitBootDeviceEvents = Self(rawValue: 0x0000_0012)
    public static let postCode2 = Self(rawValue: 0x0000_0013)
    public static let efiEventBase = Self(rawValue: 0x8000_0000)
    public static let efiVariableDriverConfig = Self(rawValue: 0x8000_0001)
    public static let efiVariableBoot = Self(rawValue: 0x8000_0002)
    public static let efiBootServicesApplication = Self(rawValue: 0x8000_0003)
    public static let efiBootServicesDriver = Self(rawValue: 0x8000_0004)
    public static let efiRuntimeServicesDriver = Self(rawValue: 0x8000_0005)
    public static let efiGPTEvent = Self(rawValue: 0x8000_0006)
    public static let efiAction = Self(rawValue: 0x8000_0007)
    public static let efiPlatformFirmwareBlob = Self(rawValue: 0x8000_0008)
    public static let efiHandoffTables = Self(rawValue: 0x8000_0009)
    public static let efiPlatformFirmwareBlob2 = Self(rawValue: 0x8000_000A)
    public static let efiHandoffTables2 = Self(rawValue: 0x8000_000B)
    public static let efiVariableBoot2 = Self(rawValue: 0x8000_000C)
    public static let efiGPTEvent2 = Self(rawValue: 0x8000_000D)
    public static let efiHCRTMEvent = Self(rawValue: 0x8000_0010)
    public static let efiVariableAuthority = Self(rawValue: 0x8000_00E0)
    public static let efiSPDMFirmwareBlob = Self(rawValue: 0x8000_00E1)
    public static let efiSPDMFirmwareConfig = Self(rawValue: 0x8000_00E2)
    public static let efiSPDMDevicePolicy = Self(rawValue: 0x8000_00E3)
    public static let efiSPDMDeviceAuthority = Self(rawValue: 0x8000_00E4)

    /// The names tpm2_eventlog prints (the PFP's names).
    public static let names: [UInt32: String] = [
        0x0000_0000: "EV_PREBOOT_CERT", 0x0000_0001: "EV_POST_CODE", 0x0000_0002: "EV_UNUSED",
        0x0000_0003: "EV_NO_ACTION", 0x0000_0004: "EV_SEPARATOR", 0x0000_0005: "EV_ACTION",
        0x0000_0006: "EV_EVENT_TAG", 0x0000_0007: "EV_S_CRTM_CONTENTS", 0x0000_0008: "EV_S_CRTM_VERSION",
        0x0000_0009: "EV_CPU_MICROCODE", 0x0000_000A: "EV_PLATFORM_CONFIG_FLAGS",
        0x0000_000B: "EV_TABLE_OF_DEVICES", 0x0000_000C: "EV_COMPACT_HASH", 0x0000_000D: "EV_IPL",
        0x0000_000E: "EV_IPL_PARTITION_DATA", 0x0000_000F: "EV_NONHOST_CODE", 0x0000_0010: "EV_NONHOST_CONFIG",
        0x0000_0011: "EV_NONHOST_INFO", 0x0000_0012: "EV_OMIT_BOOT_DEVICE_EVENTS", 0x0000_0013: "EV_POST_CODE2",
        0x8000_0000: "EV_EFI_EVENT_BASE", 0x8000_0001: "EV_EFI_VARIABLE_DRIVER_CONFIG",
        0x8000_0002: "EV_EFI_VARIABLE_BOOT", 0x8000_0003: "EV_EFI_BOOT_SERVICES_APPLICATION",
        0x8000_0004: "EV_EFI_BOOT_SERVICES_DRIVER", 0x8000_0005: "EV_EFI_RUNTIME_SERVICES_DRIVER",
        0x8000_0006: "EV_EFI_GPT_EVENT", 0x8000_0007: "EV_EFI_ACTION", 0x8000_0008: "EV_EFI_PLATFORM_FIRMWARE_BLOB",
        0x8000_0009: "EV_EFI_HANDOFF_TABLES", 0x8000_000A: "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
        0x8000_000B: "EV_EFI_HANDOFF_TABLES2", 0x8000_000C: "EV_EFI_VARIABLE_BOOT2",
        0x8000_000D: "EV_EFI_GPT_EVENT2", 0x8000_0010: "EV_EFI_HCRTM_EVENT",
        0x8000_00E0: "EV_EFI_VARIABLE_AUTHORITY", 0x8000_00E1: "EV_EFI_SPDM_FIRMWARE_BLOB",
        0x8000_00E2: "EV_EFI_SPDM_FIRMWARE_CONFIG", 0x8000_00E3: "EV_EFI_SPDM_DEVICE_POLICY",
        0x8000_00E4: "EV_EFI_SPDM_DEVICE_AUTHORITY",
    ]

    public var name: String? { Self.names[rawValue] }
    public var isKnown: Bool { Self.names[rawValue] != nil }

    public var description: String {
        if let n = name { return n }
        let hex = String(rawValue, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// The event type for a name as tpm2_eventlog prints it, or `0x…` hex.
    public init?(name: String) {
        if let hit = Self.names.first(where: { $0.value == name }) {
            self.init(rawValue: hit.key)
        } else if name.hasPrefix("0x"), let v = UInt32(name.dropFirst(2), radix: 16) {
            self.init(rawValue: v)
        } else {
            return nil
        }
    }
}
