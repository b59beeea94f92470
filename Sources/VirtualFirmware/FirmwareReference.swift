import MeasuredBoot
import TPM2

/// What this firmware measures of itself — published so that verifiers can check PCRs 0–3,
/// 5 and 6 of a TrustedLaunch VM against values computed from the version, not learned from a
/// reference machine.
public enum FirmwareReference {
    /// The boot entry the firmware uses when the store has none: the removable-media path.
    static let defaultBootOption = LoadOption(description: "TrustedLaunch boot disk",
                                              filePathList: [DevicePath(nodes: [DevicePath.filePathNode("\\EFI\\BOOT\\BOOTX64.EFI")])])

    /// EV_S_CRTM_VERSION data: the version as a NUL-terminated UTF-16LE string (as OVMF does).
    static var crtmVersion: [UInt8] {
        var b: [UInt8] = []
        for u in VirtualFirmware.version.utf16 { b.append(UInt8(u & 0xFF)); b.append(UInt8(u >> 8)) }
        return b + [0, 0]
    }

    /// The firmware "volume" measured into PCR 0: a canonical manifest of this firmware (its
    /// vendor, version and the boot behaviour it implements).
    public static var manifest: [UInt8] {
        Array("""
        vendor=\(VirtualFirmware.vendor)
        firmware=TrustedLaunch virtual UEFI firmware
        version=\(VirtualFirmware.version)
        measured-boot=TCG PC Client PFP 1.05 (OVMF order)
        secure-boot=UEFI 2.10 32.5 image verification
        """.utf8)
    }

    /// EV_EFI_PLATFORM_FIRMWARE_BLOB2: description length, description, base, length.
    static var blobEvent: [UInt8] {
        let description = Array("TLAUNCHFW".utf8)
        var b: [UInt8] = [UInt8(description.count)] + description
        b.le64(0xFFC0_0000)
        b.le64(UInt64(manifest.count))
        return b
    }

    /// The PCRs this firmware alone determines, for a VM whose store has no boot entries (the
    /// firmware's default entry) and an ESP without GPT: 0, 1, 2, 3, 5 (after ExitBootServices), 6.
    public static func values(banks: [TPMAlgID] = [.sha1, .sha256]) throws -> [(pcr: UInt32, bank: TPMAlgID, value: [UInt8])] {
        var b = try EventLogBuilder(banks: banks)
        b.measure(pcr: 0, type: .sCRTMVersion, data: crtmVersion)
        b.measure(pcr: 0, type: .efiPlatformFirmwareBlob2, data: blobEvent, measured: manifest)
        b.measureVariable(pcr: 1, type: .efiVariableBoot, guid: .globalVariable, name: "BootOrder", data: [0, 0])
        b.measureVariable(pcr: 1, type: .efiVariableBoot, guid: .globalVariable, name: "Boot0000", data: defaultBootOption.encoded)
        b.separators(0...6)
        b.measure(pcr: 5, type: .efiAction, data: Array("Exit Boot Services Invocation".utf8))
        b.measure(pcr: 5, type: .efiAction, data: Array("Exit Boot Services Returned with Success".utf8))
        let pcrs = b.log.replay()
        var out: [(UInt32, TPMAlgID, [UInt8])] = []
        for p: UInt32 in [0, 1, 2, 3, 5, 6] { for bank in banks { if let v = pcrs[bank, p] { out.append((p, bank, v)) } } }
        return out
    }
}
