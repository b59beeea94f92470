/// An event's data decoded by its event type (PFP 10.4). Decoding never throws: data that does
/// not decode as its type says is `.malformed` with the error (offset relative to the data).
public enum EventData: Sendable {
    case specID(SpecIDEvent)
    /// EV_NO_ACTION "StartupLocality": the locality TPM2_Startup came from (3, or 4 with H-CRTM).
    case startupLocality(UInt8)
    /// EV_NO_ACTION "SP800-155 Event" / "SP800-155 Event2": a reference-manifest pointer.
    case sp800155(ReferenceManifestInfo)
    /// EV_NO_ACTION with PCR index 0xFFFFFFFF: a Windows Boot Configuration Log (SIPA) trailer.
    case windowsTrailer([SIPAEntry])
    /// Another EV_NO_ACTION: its signature (the first 16 bytes up to a NUL) and the rest.
    case noAction(signature: String, payload: [UInt8])
    case variable(UEFIVariableData)
    /// EV_EFI_VARIABLE_AUTHORITY: see `UEFIVariableData.authorityValue`.
    case authority(UEFIVariableData)
    case imageLoad(ImageLoadEvent)
    case gpt(GPTData)
    case firmwareBlob(base: UInt64, length: UInt64)
    case firmwareBlob2(description: String, base: UInt64, length: UInt64)
    case handoffTables([HandoffTable])
    case handoffTables2(description: String, tables: [HandoffTable])
    /// EV_SEPARATOR: 0 for a normal separator, 1 or 0xFFFFFFFF for an error.
    case separator(value: UInt32, isError: Bool)
    /// EV_EFI_ACTION, EV_ACTION, EV_S_CRTM_VERSION, EV_POST_CODE, EV_COMPACT_HASH and other text.
    case text(String)
    /// EV_IPL: grub's `grub_cmd:`/`kernel_cmdline:` strings and file paths, systemd-stub's UKI
    /// section names and command lines.
    case ipl(IPLEvent)
    case eventTag(id: UInt32, data: [UInt8])
    case spdm(type: EventType, data: [UInt8])
    /// Event data with no structure to decode (an unknown type, or opaque bytes).
    case bytes([UInt8])
    case malformed(EventLogError)

    public struct HandoffTable: Hashable, Sendable {
        public var guid: EFIGUID
        public var pointer: UInt64
    }

    public struct SIPAEntry: Hashable, Sendable {
        public var type: UInt32
        public var data: [UInt8]
    }

    public struct ReferenceManifestInfo: Hashable, Sendable {
        public var signature: String
        public var platformManufacturerID: UInt32?
        public var referenceManifestGUID: EFIGUID?
        public var payload: [UInt8]
    }

    static func decode(type: EventType, pcrIndex: UInt32, data: ArraySlice<UInt8>) -> EventData {
        let base = data.startIndex
        do throws(EventLogError) {
            switch type {
            case .noAction: return try noAction(pcrIndex: pcrIndex, data: data)
            case .efiVariableDriverConfig, .efiVariableBoot, .efiVariableBoot2:
                return .variable(try UEFIVariableData(data, base: 0))
            case .efiVariableAuthority:
                return .authority(try UEFIVariableData(data, base: 0))
            case .efiBootServicesApplication, .efiBootServicesDriver, .efiRuntimeServicesDriver:
                return .imageLoad(try ImageLoadEvent(data, base: 0))
            case .efiGPTEvent, .efiGPTEvent2:
                return .gpt(try GPTData(data, base: 0))
            case .efiPlatformFirmwareBlob:
                var r = LEReader(Array(data), field: "UEFI_PLATFORM_FIRMWARE_BLOB")
                let b = try r.u64("BlobBase"), l = try r.u64("BlobLength")
                try r.requireEnd("UEFI_PLATFORM_FIRMWARE_BLOB")
                return .firmwareBlob(base: b, length: l)
            case .efiPlatformFirmwareBlob2:
                var r = LEReader(Array(data), field: "UEFI_PLATFORM_FIRMWARE_BLOB2")
                let n = Int(try r.u8("BlobDescriptionSize"))
                let d = try r.bytes(n, "BlobDescription")
                let b = try r.u64("BlobBase"), l = try r.u64("BlobLength")
                try r.requireEnd("UEFI_PLATFORM_FIRMWARE_BLOB2")
                return .firmwareBlob2(description: asciiz(d[...]), base: b, length: l)
            case .efiHandoffTables:
                var r = LEReader(Array(data), field: "UEFI_HANDOFF_TABLE_POINTERS")
                let t = try tables(&r)
                try r.requireEnd("UEFI_HANDOFF_TABLE_POINTERS")
                return .handoffTables(t)
            case .efiHandoffTables2:
                var r = LEReader(Array(data), field: "UEFI_HANDOFF_TABLE_POINTERS2")
                let n = Int(try r.u8("TableDescriptionSize"))
                let d = try r.bytes(n, "TableDescription")
                let t = try tables(&r)
                try r.requireEnd("UEFI_HANDOFF_TABLE_POINTERS2")
                return .handoffTables2(description: asciiz(d[...]), tables: t)
            case .separator:
                if data.count == 4 {
                    let v = UInt32(data[base]) | UInt32(data[base + 1]) << 8 | UInt32(data[base + 2]) << 16 | UInt32(data[base + 3]) << 24
                    return .separator(value: v, isError: v == 1 || v == 0xFFFF_FFFF)
                }
                return .bytes(Array(data))
            case .efiAction, .action, .compactHash, .omitBootDeviceEvents:
                return .text(text(data))
            case .sCRTMVersion:
                if let s = utf16Text(data) { return .text(s) }
                return .bytes(Array(data))
            case .postCode, .postCode2, .sCRTMContents:
                if data.count == 16 {
                    var r = LEReader(Array(data))
                    return .firmwareBlob(base: try r.u64(), length: try r.u64())
                }
                if isPrintable(data) { return .text(text(data)) }
                return .bytes(Array(data))
            case .ipl:
                return .ipl(IPLEvent(data: data, pcrIndex: pcrIndex))
            case .eventTag:
                var r = LEReader(Array(data), field: "TCG_PCClientTaggedEvent")
                let id = try r.u32("taggedEventID")
                let n = try r.length(UInt64(try r.u32("taggedEventDataSize")), cap: EventLog.maxEventDataSize, "taggedEventDataSize")
                let d = try r.bytes(n, "taggedEventData")
                try r.requireEnd("TCG_PCClientTaggedEvent")
                return .eventTag(id: id, data: d)
            case .efiSPDMFirmwareBlob, .efiSPDMFirmwareConfig, .efiSPDMDevicePolicy, .efiSPDMDeviceAuthority:
                return .spdm(type: type, data: Array(data))
            default:
                return .bytes(Array(data))
            }
        } catch {
            _ = base
            return .malformed(error)
        }
    }

    static func tables(_ r: inout LEReader) throws(EventLogError) -> [HandoffTable] {
        let count = try r.u64("NumberOfTables")
        guard count <= UInt64(r.remaining / 24) else {
            throw r.error(.sizeExceedsLimit, "NumberOfTables \(count) does not fit the \(r.remaining) bytes left")
        }
        var out: [HandoffTable] = []
        for _ in 0..<Int(count) { out.append(HandoffTable(guid: try r.guid("VendorGuid"), pointer: try r.u64("VendorTable"))) }
        return out
    }

    static func noAction(pcrIndex: UInt32, data: ArraySlice<UInt8>) throws(EventLogError) -> EventData {
        if pcrIndex == 0xFFFF_FFFF {
            // Windows SIPA entries: UINT32 type, UINT32 size, data.
            var r = LEReader(Array(data), field: "SIPA event")
            var entries: [SIPAEntry] = []
            while !r.isAtEnd {
                let t = try r.u32("SIPA type")
                let n = try r.length(UInt64(try r.u32("SIPA size")), cap: EventLog.maxEventDataSize, "SIPA size")
                entries.append(SIPAEntry(type: t, data: try r.bytes(n, "SIPA data")))
            }
            return .windowsTrailer(entries)
        }
        let sigBytes = data.prefix(16)
        let signature = asciiz(sigBytes)
        if sigBytes.elementsEqual(SpecIDEvent.signature03) {
            var r = LEReader(Array(data))
            return .specID(try SpecIDEvent(reading: &r))
        }
        let rest = Array(data.dropFirst(16))
        switch signature {
        case "StartupLocality":
            guard rest.count == 1 else {
                throw EventLogError(.invalidValue, "StartupLocality carries \(rest.count) bytes, not 1", offset: 16,
                                    field: "TCG_EfiStartupLocalityEvent.StartupLocality")
            }
            return .startupLocality(rest[0])
        case "SP800-155 Event", "SP800-155 Event2", "SP800-155 Event3":
            var r = LEReader(rest)
            let mfr = try? r.u32()
            let guid = try? r.guid()
            return .sp800155(ReferenceManifestInfo(signature: signature, platformManufacturerID: mfr, referenceManifestGUID: guid,
                                                   payload: rest))
        default:
            return .noAction(signature: signature, payload: rest)
        }
    }

    static func asciiz(_ d: ArraySlice<UInt8>) -> String { String(decoding: d.prefix { $0 != 0 }, as: UTF8.self) }

    static func isPrintable(_ d: ArraySlice<UInt8>) -> Bool {
        var seenNul = false
        for b in d {
            if b == 0 { seenNul = true; continue }
            if seenNul || b < 0x09 || (b > 0x0D && b < 0x20) || b == 0x7F { return false }
        }
        return true
    }

    /// UTF-16LE text when every other byte is zero (as UCS-2 firmware strings are).
    static func utf16Text(_ d: ArraySlice<UInt8>) -> String? {
        guard d.count >= 2, d.count % 2 == 0 else { return nil }
        var i = d.startIndex + 1
        while i < d.endIndex { if d[i] != 0 { return nil }; i += 2 }
        return ucs2String(d)
    }

    static func text(_ d: ArraySlice<UInt8>) -> String {
        if let u = utf16Text(d), d.count >= 4 { return u }
        return String(decoding: d.prefix { $0 != 0 }, as: UTF8.self)
    }
}

/// An EV_IPL event: what the boot loader measured.
public struct IPLEvent: Hashable, Sendable {
    public enum Kind: String, Sendable, Codable {
        /// grub: `grub_cmd: …` (PCR 8).
        case grubCommand = "grub-command"
        /// grub: `kernel_cmdline: …` (PCR 8).
        case kernelCommandLine = "kernel-command-line"
        /// grub: a file it read (PCR 9), e.g. `(hd0,gpt2)/vmlinuz`.
        case file
        /// systemd-stub: a UKI section name (PCR 11) or the command line / other strings (PCR 12).
        case stub
        /// shim and others: free text.
        case text
    }
    public var kind: Kind
    /// The text without its prefix (`grub_cmd: `, `kernel_cmdline: `).
    public var text: String
    public var isUTF16: Bool

    init(data: ArraySlice<UInt8>, pcrIndex: UInt32) {
        if let u = EventData.utf16Text(data), data.count >= 4 {
            text = u
            isUTF16 = true
        } else {
            text = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
            isUTF16 = false
        }
        // grub 2.04+ writes `grub_cmd: ` and `kernel_cmdline: `; Red Hat's older patches
        // `grub_cmd ` and `grub_kernel_cmdline ` (PCR 8).
        let decoded = text
        let command = ["grub_cmd: ", "grub_cmd "].first { decoded.hasPrefix($0) && (pcrIndex == 8 || $0 == "grub_cmd: ") }
        let cmdline = ["kernel_cmdline: ",
                       "grub_kernel_cmdline "].first { decoded.hasPrefix($0) && (pcrIndex == 8 || $0 == "kernel_cmdline: ") }
        if let p = command {
            kind = .grubCommand
            text.removeFirst(p.count)
        } else if let p = cmdline {
            kind = .kernelCommandLine
            text.removeFirst(p.count)
        } else if pcrIndex == 9 && (text.hasPrefix("(") || text.hasPrefix("/")) {
            kind = .file
        } else if pcrIndex == 11 || pcrIndex == 12 || pcrIndex == 13 {
            kind = .stub
        } else {
            kind = .text
        }
    }
}
