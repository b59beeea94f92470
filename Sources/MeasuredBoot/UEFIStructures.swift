import Crypto
import X509

/// UEFI_VARIABLE_DATA (PFP 10.4.6): a variable's GUID, name and data as measured.
public struct UEFIVariableData: Hashable, Sendable {
    public var vendorGUID: EFIGUID
    public var name: String
    public var data: [UInt8]
    /// The name's UTF-16 code units as logged (kept for exact re-encoding).
    public var nameUnits: Int
    /// Bytes after VariableData. Old shim versions size their EV_EFI_VARIABLE_AUTHORITY event
    /// with structure padding (rhboot/shim#184); these bytes are not part of the variable.
    public var trailingBytes: Int = 0

    public init(vendorGUID: EFIGUID, name: String, data: [UInt8]) {
        self.vendorGUID = vendorGUID
        self.name = name
        self.data = data
        self.nameUnits = name.utf16.count
    }

    init(_ bytes: ArraySlice<UInt8>, base: Int) throws(EventLogError) {
        var r = LEReader(Array(bytes), base: base, field: "UEFI_VARIABLE_DATA")
        vendorGUID = try r.guid("VariableName")
        let nameLen = try r.u64("UnicodeNameLength")
        let dataLen = try r.u64("VariableDataLength")
        guard nameLen <= UInt64(r.remaining / 2) else {
            throw EventLogError(.sizeExceedsLimit, "UnicodeNameLength \(nameLen) characters but only \(r.remaining) bytes remain",
                                offset: base + 16, field: "UEFI_VARIABLE_DATA.UnicodeNameLength")
        }
        let nameBytes = try r.bytes(Int(nameLen) * 2, "UnicodeName")
        nameUnits = Int(nameLen)
        name = ucs2String(nameBytes[...])
        let n = try r.length(dataLen, cap: EventLog.maxEventDataSize, "VariableDataLength")
        data = try r.bytes(n, "VariableData")
        trailingBytes = r.remaining
        if trailingBytes > 8 { try r.requireEnd("UEFI_VARIABLE_DATA") }
    }

    public var encoded: [UInt8] {
        var out = vendorGUID.bytes
        out.le64(UInt64(nameUnits))
        out.le64(UInt64(data.count))
        out += ucs2Bytes(name, terminated: false)
        out += data
        return out
    }

    /// The variable's contents decoded by its name and GUID.
    public var value: VariableValue { VariableValue.decode(name: name, guid: vendorGUID, data: data) }

    /// The contents of an EV_EFI_VARIABLE_AUTHORITY event: one EFI_SIGNATURE_DATA (the db or
    /// MokList entry that verified an image), shim's vendor certificate ("Shim"), SbatLevel, or
    /// MokListTrusted.
    public var authorityValue: VariableValue {
        if data.count > 16, data[16] == 0x30, CertificateInfo(der: Array(data[16...])).subject != nil {
            return .signatureData(SignatureEntry(owner: EFIGUID(bytes: data[0..<16]), type: .certX509, data: Array(data[16...])))
        }
        if name == "db" || name == "MokList", [36, 48, 64, 80].contains(data.count) {
            // A hash entry: owner GUID and the image hash.
            return .signatureData(
                SignatureEntry(
                    owner: EFIGUID(bytes: data[0..<16]),
                    type: data.count == 48 ? .certSHA256 : data.count == 36 ? .certSHA1 : data.count == 64 ? .certSHA384 : .certSHA512,
                    data: Array(data[16...])))
        }
        return value
    }
}

/// What a measured UEFI variable holds.
public enum VariableValue: Sendable {
    /// SecureBoot, SetupMode, AuditMode, DeployedMode, MokListTrusted, MokSBState…: one byte.
    case boolean(Bool)
    /// PK, KEK, db, dbx, dbt, dbr, MokList, MokListX: EFI signature lists.
    case signatureLists([SignatureList])
    /// One EFI_SIGNATURE_DATA (an EV_EFI_VARIABLE_AUTHORITY entry naming the db certificate or
    /// hash that verified an image).
    case signatureData(SignatureEntry)
    /// A bare X.509 certificate (shim's vendor certificate, variable "Shim").
    case certificate(CertificateInfo)
    /// Boot####, Driver####, SysPrep####: EFI_LOAD_OPTION.
    case loadOption(LoadOption)
    /// BootOrder, DriverOrder.
    case bootOrder([UInt16])
    /// SbatLevel and other text.
    case text(String)
    case empty
    case bytes([UInt8])
    /// The data does not decode as its name says.
    case malformed(EventLogError)

    static let signatureListNames: Set<String> = ["PK", "KEK", "db", "dbx", "dbt", "dbr", "MokList", "MokListX", "PKDefault", "KEKDefault",
                                                  "dbDefault", "dbxDefault"]

    static func decode(name: String, guid: EFIGUID, data: [UInt8]) -> VariableValue {
        if data.isEmpty { return .empty }
        do throws(EventLogError) {
            if signatureListNames.contains(name) {
                return .signatureLists(try SignatureList.parseAll(data[...]))
            }
            switch name {
            case "SecureBoot", "SetupMode", "AuditMode", "DeployedMode", "MokListTrusted", "MokSBState", "MokSBStateRT", "MokIgnoreDB":
                if data.count == 1 { return .boolean(data[0] != 0) }
                return .bytes(data)
            case "BootOrder", "DriverOrder", "SysPrepOrder":
                guard data.count % 2 == 0 else {
                    throw EventLogError(.invalidValue, "\(name) has an odd length \(data.count)", offset: 0, field: name)
                }
                return .bootOrder(stride(from: 0, to: data.count, by: 2).map { UInt16(data[$0]) | UInt16(data[$0 + 1]) << 8 })
            case "SbatLevel", "SbatLevelRT":
                return .text(String(decoding: data.prefix { $0 != 0 }, as: UTF8.self))
            case "Shim":
                return .certificate(CertificateInfo(der: data))
            default:
                if LoadOption.isLoadOptionName(name) { return .loadOption(try LoadOption(data[...])) }
                // EV_EFI_VARIABLE_AUTHORITY under db/MokList names: one EFI_SIGNATURE_DATA.
                if data.count > 16, data[16] == 0x30 {
                    return .signatureData(SignatureEntry(owner: EFIGUID(bytes: data[0..<16]), type: .certX509, data: Array(data[16...])))
                }
                if data.count > 0, data[0] == 0x30, CertificateInfo(der: data).subject != nil {
                    return .certificate(CertificateInfo(der: data))
                }
                return .bytes(data)
            }
        } catch {
            return .malformed(error)
        }
    }
}

/// An X.509 certificate found in a log, with the facts a policy uses.
public struct CertificateInfo: Hashable, Sendable {
    public var der: [UInt8]
    public var subject: String?
    public var issuer: String?
    public var serialNumber: String?
    public var sha256Fingerprint: String

    public init(der: [UInt8]) {
        self.der = der
        sha256Fingerprint = hexString(Array(SHA256.hash(data: der)))
        if let c = try? Certificate(derEncoded: der) {
            subject = c.subject.description
            issuer = c.issuer.description
            serialNumber = c.serialNumber.description
        }
    }
}

/// One EFI_SIGNATURE_DATA with its list's type.
public struct SignatureEntry: Hashable, Sendable {
    public var owner: EFIGUID
    public var type: EFIGUID
    public var data: [UInt8]

    public init(owner: EFIGUID, type: EFIGUID, data: [UInt8]) {
        self.owner = owner
        self.type = type
        self.data = data
    }

    /// The certificate, for X.509 entries.
    public var certificate: CertificateInfo? { type == .certX509 ? CertificateInfo(der: data) : nil }
    /// The hash, for hash entries (EFI_CERT_SHA256_GUID and friends).
    public var hash: [UInt8]? {
        [EFIGUID.certSHA256, .certSHA1, .certSHA384, .certSHA512].contains(type) ? data : nil
    }
}

/// EFI_SIGNATURE_LIST (UEFI 32.4.1).
public struct SignatureList: Hashable, Sendable {
    public var type: EFIGUID
    public var header: [UInt8]
    public var signatureSize: Int
    public var entries: [SignatureEntry]

    public init(type: EFIGUID, header: [UInt8] = [], signatureSize: Int, entries: [SignatureEntry]) {
        self.type = type
        self.header = header
        self.signatureSize = signatureSize
        self.entries = entries
    }

    public var typeName: String {
        switch type {
        case .certX509: return "EFI_CERT_X509_GUID"
        case .certSHA256: return "EFI_CERT_SHA256_GUID"
        case .certSHA1: return "EFI_CERT_SHA1_GUID"
        case .certSHA384: return "EFI_CERT_SHA384_GUID"
        case .certSHA512: return "EFI_CERT_SHA512_GUID"
        case .certRSA2048: return "EFI_CERT_RSA2048_GUID"
        case .certX509SHA256: return "EFI_CERT_X509_SHA256_GUID"
        case .certX509SHA384: return "EFI_CERT_X509_SHA384_GUID"
        case .certX509SHA512: return "EFI_CERT_X509_SHA512_GUID"
        default: return type.description
        }
    }

    /// Decodes consecutive signature lists filling `bytes`.
    public static func parseAll(_ bytes: ArraySlice<UInt8>, base: Int = 0) throws(EventLogError) -> [SignatureList] {
        var r = LEReader(Array(bytes), base: base, field: "EFI_SIGNATURE_LIST")
        var lists: [SignatureList] = []
        while !r.isAtEnd {
            let listStart = r.offset
            let type = try r.guid("SignatureType")
            let listSize = Int(try r.u32("SignatureListSize"))
            let headerSize = Int(try r.u32("SignatureHeaderSize"))
            let sigSize = Int(try r.u32("SignatureSize"))
            guard listSize >= 28, listSize - 28 <= r.remaining else {
                throw EventLogError(.sizeExceedsLimit,
                                    "SignatureListSize \(listSize) does not fit the \(r.remaining + 28) bytes of the list",
                                    offset: base + listStart + 16, field: "EFI_SIGNATURE_LIST[\(lists.count)].SignatureListSize")
            }
            guard headerSize <= listSize - 28 else {
                throw EventLogError(.sizeExceedsLimit, "SignatureHeaderSize \(headerSize) exceeds the list",
                                    offset: base + listStart + 20, field: "EFI_SIGNATURE_LIST[\(lists.count)].SignatureHeaderSize")
            }
            let body = listSize - 28 - headerSize
            guard sigSize >= 16, body % sigSize == 0 else {
                throw EventLogError(.invalidValue,
                                    "SignatureSize \(sigSize) does not divide the \(body) bytes of signatures (and must be at least 16)",
                                    offset: base + listStart + 24, field: "EFI_SIGNATURE_LIST[\(lists.count)].SignatureSize")
            }
            let header = try r.bytes(headerSize, "SignatureHeader")
            var entries: [SignatureEntry] = []
            entries.reserveCapacity(body / sigSize)
            for _ in 0..<(body / sigSize) {
                let owner = try r.guid("SignatureOwner")
                entries.append(SignatureEntry(owner: owner, type: type, data: try r.bytes(sigSize - 16, "SignatureData")))
            }
            lists.append(SignatureList(type: type, header: header, signatureSize: sigSize, entries: entries))
        }
        return lists
    }

    public var encoded: [UInt8] {
        var out = type.bytes
        out.le32(UInt32(28 + header.count + entries.count * signatureSize))
        out.le32(UInt32(header.count))
        out.le32(UInt32(signatureSize))
        out += header
        for e in entries { out += e.owner.bytes + e.data }
        return out
    }
}

/// EFI_LOAD_OPTION (UEFI 3.1.3): a Boot#### variable.
public struct LoadOption: Hashable, Sendable {
    public var attributes: UInt32
    public var description: String
    public var filePathList: [DevicePath]
    public var optionalData: [UInt8]

    public var isActive: Bool { attributes & 1 != 0 }

    static func isLoadOptionName(_ name: String) -> Bool {
        for prefix in ["Boot", "Driver", "SysPrep", "PlatformRecovery"] where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            if rest.count == 4, rest.allSatisfy(\.isHexDigit) { return true }
        }
        return false
    }

    init(_ bytes: ArraySlice<UInt8>, base: Int = 0) throws(EventLogError) {
        var r = LEReader(Array(bytes), base: base, field: "EFI_LOAD_OPTION")
        attributes = try r.u32("Attributes")
        let fpLen = Int(try r.u16("FilePathListLength"))
        var units: [UInt16] = []
        while true {
            let u = try r.u16("Description")
            if u == 0 { break }
            units.append(u)
        }
        description = String(decoding: units, as: UTF16.self)
        let fp = try r.bytes(fpLen, "FilePathList")
        // FilePathList holds one or more device paths, each ending in End Entire.
        var paths: [DevicePath] = []
        var start = 0
        var i = 0
        while i + 4 <= fp.count {
            let len = Int(fp[i + 2]) | Int(fp[i + 3]) << 8
            guard len >= 4 else {
                throw EventLogError(.invalidValue, "device path node length \(len) is less than 4",
                                    offset: base + 6 + units.count * 2 + 2 + i,
                                    field: "EFI_LOAD_OPTION.FilePathList")
            }
            let end = fp[i] == 0x7F && fp[i + 1] == 0xFF
            i += len
            if end {
                paths.append(try DevicePath(bytes: fp[start..<min(i, fp.count)], base: base + 6 + units.count * 2 + 2 + start))
                start = i
            }
        }
        if start < fp.count { paths.append(try DevicePath(bytes: fp[start...], base: base + 6 + units.count * 2 + 2 + start)) }
        filePathList = paths
        optionalData = Array(bytes.dropFirst(r.offset))
    }
}

/// UEFI_IMAGE_LOAD_EVENT (PFP 10.4.3): where an image was loaded and its device path.
public struct ImageLoadEvent: Hashable, Sendable {
    public var locationInMemory: UInt64
    public var lengthInMemory: UInt64
    public var linkTimeAddress: UInt64
    public var devicePath: DevicePath?
    /// Why the device path could not be decoded, when it could not.
    public var devicePathError: EventLogError?
    /// Bytes after the device path. shim and grub size the event as `sizeof` a structure whose
    /// one-element DevicePath array adds 8 bytes, so their events carry 8 extra bytes.
    public var trailingBytes: Int = 0

    init(_ bytes: ArraySlice<UInt8>, base: Int) throws(EventLogError) {
        var r = LEReader(Array(bytes), base: base, field: "UEFI_IMAGE_LOAD_EVENT")
        locationInMemory = try r.u64("ImageLocationInMemory")
        lengthInMemory = try r.u64("ImageLengthInMemory")
        linkTimeAddress = try r.u64("ImageLinkTimeAddress")
        let n = try r.length(try r.u64("LengthOfDevicePath"), cap: EventLog.maxEventDataSize, "LengthOfDevicePath")
        let dp = try r.bytes(n, "DevicePath")
        trailingBytes = r.remaining
        do {
            devicePath = try DevicePath(bytes: dp[...], base: base + 32)
        } catch {
            devicePath = nil
            devicePathError = error
        }
    }
}

/// UEFI_GPT_DATA (PFP 10.4.4): the GPT header and the partitions in use.
public struct GPTData: Hashable, Sendable {
    public struct Partition: Hashable, Sendable {
        public var typeGUID: EFIGUID
        public var uniqueGUID: EFIGUID
        public var startingLBA: UInt64
        public var endingLBA: UInt64
        public var attributes: UInt64
        public var name: String
    }
    public var diskGUID: EFIGUID
    public var headerRevision: UInt32
    public var partitions: [Partition]

    init(_ bytes: ArraySlice<UInt8>, base: Int) throws(EventLogError) {
        var r = LEReader(Array(bytes), base: base, field: "UEFI_GPT_DATA")
        let sig = try r.bytes(8, "Signature")
        guard sig == Array("EFI PART".utf8) else { throw r.error(.invalidValue, "GPT header signature is not \"EFI PART\"") }
        headerRevision = try r.u32("Revision")
        let headerSize = Int(try r.u32("HeaderSize"))
        guard headerSize >= 92, headerSize - 12 <= r.remaining + 0 else {
            throw r.error(.sizeExceedsLimit, "GPT HeaderSize \(headerSize) is invalid")
        }
        try r.skip(4 + 4 + 8 + 8 + 8 + 8, "GPT header fields")
        diskGUID = try r.guid("DiskGUID")
        try r.skip(8, "PartitionEntryLBA")
        _ = try r.u32("NumberOfPartitionEntries")
        let entrySize = Int(try r.u32("SizeOfPartitionEntry"))
        try r.skip(4, "PartitionEntryArrayCRC32")
        // The measured header is 92 bytes (UEFI_PARTITION_TABLE_HEADER), whatever HeaderSize says.
        let count = try r.u64("NumberOfPartitions")
        guard entrySize >= 128, count <= UInt64(r.remaining / entrySize) else {
            throw r.error(.sizeExceedsLimit, "\(count) partitions of \(entrySize) bytes do not fit the \(r.remaining) bytes left")
        }
        var parts: [Partition] = []
        for _ in 0..<Int(count) {
            let t = try r.guid("PartitionTypeGUID")
            let u = try r.guid("UniquePartitionGUID")
            let s = try r.u64("StartingLBA")
            let e = try r.u64("EndingLBA")
            let a = try r.u64("Attributes")
            let name = try r.bytes(entrySize - 56, "PartitionName")
            parts.append(Partition(typeGUID: t, uniqueGUID: u, startingLBA: s, endingLBA: e, attributes: a,
                                   name: ucs2String(name.prefix(72))))
        }
        partitions = parts
        try r.requireEnd("UEFI_GPT_DATA")
    }
}

extension LoadOption {
    /// Parses an EFI_LOAD_OPTION (the value of a Boot#### variable).
    public init(parsing bytes: [UInt8]) throws(EventLogError) { try self.init(bytes[...]) }

    public init(attributes: UInt32 = 1, description: String, filePathList: [DevicePath], optionalData: [UInt8] = []) {
        self.attributes = attributes; self.description = description; self.filePathList = filePathList; self.optionalData = optionalData
    }

    /// The EFI_LOAD_OPTION bytes (UEFI 2.10, 3.1.3).
    public var encoded: [UInt8] {
        let paths = filePathList.flatMap(\.encoded)
        var out: [UInt8] = []
        out.le32(attributes)
        out.le16(UInt16(truncatingIfNeeded: paths.count))
        for u in description.utf16 { out.le16(u) }
        out.le16(0)
        return out + paths + optionalData
    }
}

extension DevicePath {
    /// A media file path node (type 4, sub-type 4): a path on the partition, "\EFI\BOOT\BOOTX64.EFI".
    public static func filePathNode(_ path: String) -> Node {
        var d: [UInt8] = []
        for u in String(path.map { $0 == "/" ? "\\" : $0 }).utf16 { d.le16(u) }
        d.le16(0)
        return Node(type: 4, subType: 4, data: d)
    }

}
