import MeasuredBoot

/// An OVMF variable store (`OVMF_VARS*.fd`): a firmware volume (EFI_FIRMWARE_VOLUME_HEADER)
/// holding a VARIABLE_STORE_HEADER and authenticated variables, as EDK2 writes them.
public struct VariableStore: Sendable {
    public struct Variable: Sendable, Hashable {
        public var offset: Int
        public var state: UInt8
        public var attributes: UInt32
        public var monotonicCount: UInt64
        public var timestamp: [UInt8]
        public var pubKeyIndex: UInt32
        public var vendorGUID: EFIGUID
        public var name: String
        public var data: [UInt8]
        /// Header, name and data: where the next record starts (4-byte aligned).
        public var recordLength: Int

        /// EDK2: added, or added and in deleted transition.
        public var isLive: Bool { state == 0x3F || state == 0x3E }
    }

    public static let nvDataFVGUID = EFIGUID("fff12b8d-7696-4c8b-a985-2747075b4f50")!
    public static let authenticatedVariableGUID = EFIGUID("aaf32c78-947b-439a-a180-2e144ec37792")!
    public static let variableGUID = EFIGUID("ddcf3616-3275-4164-98b6-fe85707ffe7d")!

    public private(set) var bytes: [UInt8]
    public let isAuthenticated: Bool
    /// Where the variables begin and the store ends.
    public let variablesStart: Int
    public let storeEnd: Int
    public private(set) var variables: [Variable]

    public init(_ bytes: [UInt8]) throws(SecureBootError) {
        self.bytes = bytes
        let r = LE(bytes: bytes, structure: "EFI_FIRMWARE_VOLUME_HEADER")
        try r.need(0, 56, "header")
        guard EFIGUID(bytes: bytes[16..<32]) == Self.nvDataFVGUID else {
            throw SecureBootError(
                .invalidVariableStore, "not an NV variable firmware volume (FileSystemGuid is \(EFIGUID(bytes: bytes[16..<32])))",
                offset: 16, field: "EFI_FIRMWARE_VOLUME_HEADER.FileSystemGuid")
        }
        guard Array(bytes[40..<44]) == Array("_FVH".utf8) else {
            throw SecureBootError(.invalidVariableStore, "no _FVH signature", offset: 40, field: "EFI_FIRMWARE_VOLUME_HEADER.Signature")
        }
        let headerLength = Int(try r.u16(48, "HeaderLength"))
        let vs = LE(bytes: bytes, structure: "VARIABLE_STORE_HEADER")
        try vs.need(headerLength, 28, "header")
        let sig = EFIGUID(bytes: bytes[headerLength..<headerLength + 16])
        guard sig == Self.authenticatedVariableGUID || sig == Self.variableGUID else {
            throw SecureBootError(.invalidVariableStore, "unknown variable store signature \(sig)", offset: headerLength,
                                  field: "VARIABLE_STORE_HEADER.Signature")
        }
        isAuthenticated = sig == Self.authenticatedVariableGUID
        let size = Int(try vs.u32(headerLength + 16, "Size"))
        guard size >= 28, size <= bytes.count - headerLength else {
            throw SecureBootError(.invalidVariableStore, "store size \(size) does not fit the file", offset: headerLength + 16,
                                  field: "VARIABLE_STORE_HEADER.Size")
        }
        guard bytes[headerLength + 20] == 0x5A, bytes[headerLength + 21] == 0xFE else {
            throw SecureBootError(.invalidVariableStore, "the store is not formatted and healthy (Format 0x5A, State 0xFE)",
                                  offset: headerLength + 20, field: "VARIABLE_STORE_HEADER.Format")
        }
        variablesStart = (headerLength + 28 + 3) & ~3
        storeEnd = headerLength + size
        variables = []
        var o = variablesStart
        let v = LE(bytes: bytes, structure: "VARIABLE_HEADER")
        let headerSize = isAuthenticated ? 60 : 32
        while o + headerSize <= storeEnd, try v.u16(o, "StartId") == 0x55AA {
            let state = bytes[o + 2]
            let attributes = try v.u32(o + 4, "Attributes")
            var count: UInt64 = 0
            var time: [UInt8] = []
            var pk: UInt32 = 0
            var p = o + 8
            if isAuthenticated {
                count = UInt64(try v.u32(p, "MonotonicCount")) | UInt64(try v.u32(p + 4, "MonotonicCount")) << 32
                time = Array(bytes[p + 8..<p + 24])
                pk = try v.u32(p + 24, "PubKeyIndex")
                p += 28
            }
            let nameSize = Int(try v.u32(p, "NameSize"))
            let dataSize = Int(try v.u32(p + 4, "DataSize"))
            let guid = EFIGUID(bytes: bytes[p + 8..<p + 24])
            let nameStart = o + headerSize
            guard nameSize <= storeEnd - nameStart, dataSize <= storeEnd - nameStart - nameSize else {
                throw SecureBootError(.invalidVariableStore, "variable sizes (name \(nameSize), data \(dataSize)) run past the store",
                                      offset: p, field: "VARIABLE_HEADER.NameSize")
            }
            let name = utf16z(bytes[nameStart..<nameStart + nameSize])
            let data = Array(bytes[nameStart + nameSize..<nameStart + nameSize + dataSize])
            variables.append(Variable(offset: o, state: state, attributes: attributes, monotonicCount: count, timestamp: time,
                                      pubKeyIndex: pk,
                                      vendorGUID: guid, name: name, data: data, recordLength: headerSize + nameSize + dataSize))
            o = (nameStart + nameSize + dataSize + 3) & ~3
        }
    }

    public static let secureBootEnableGUID = EFIGUID("f0a30bc7-af08-4556-99c4-001009c93a44")!
    public static let customModeGUID = EFIGUID("c076ec0c-7028-4399-a072-71ee5c448b9f")!
    /// NV | BS | RT | TIME_BASED_AUTHENTICATED_WRITE_ACCESS: how PK, KEK, db and dbx are stored.
    public static let authenticatedAttributes: UInt32 = 0x27

    /// Sets a variable as EDK2 does: the live record (if any) is marked deleted and a new record
    /// is appended after the last one. An empty `data` only deletes.
    public mutating func set(_ name: String, _ guid: EFIGUID, attributes: UInt32, data: [UInt8]) throws(SecureBootError) {
        for i in variables.indices where variables[i].isLive && variables[i].name == name && variables[i].vendorGUID == guid {
            variables[i].state &= 0xFD  // VAR_DELETED
            bytes[variables[i].offset + 2] = variables[i].state
        }
        guard !data.isEmpty else { return }
        var end = variablesStart
        if let last = variables.last { end = (last.offset + last.recordLength + 3) & ~3 }
        var record: [UInt8] = [0xAA, 0x55, 0x3F, 0x00]
        record += le32(attributes)
        if isAuthenticated {
            record += [UInt8](repeating: 0, count: 8)    // MonotonicCount
            record += [UInt8](repeating: 0, count: 16)   // TimeStamp
            record += le32(0)                            // PubKeyIndex
        }
        var nameBytes: [UInt8] = []
        for u in name.utf16 { nameBytes += [UInt8(u & 0xFF), UInt8(u >> 8)] }
        nameBytes += [0, 0]
        record += le32(UInt32(nameBytes.count)) + le32(UInt32(data.count)) + guid.bytes + nameBytes + data
        guard end + record.count <= storeEnd else {
            throw SecureBootError(.invalidVariableStore, "the store has \(storeEnd - end) bytes free, \(name) needs \(record.count)",
                                  offset: end, field: name)
        }
        bytes.replaceSubrange(end..<end + record.count, with: record)
        variables.append(Variable(offset: end, state: 0x3F, attributes: attributes, monotonicCount: 0,
                                  timestamp: isAuthenticated ? [UInt8](repeating: 0, count: 16) : [],
                                  pubKeyIndex: 0, vendorGUID: guid, name: name, data: data, recordLength: record.count))
    }

    /// Enrolls Secure Boot keys (PK, KEK, db, dbx as signature lists) and turns Secure Boot on
    /// (OVMF's SecureBootEnable = 1, CustomMode = 0).
    public mutating func enroll(pk: SignatureDatabase, kek: SignatureDatabase, db: SignatureDatabase,
                                dbx: SignatureDatabase) throws(SecureBootError) {
        guard isAuthenticated else {
            throw SecureBootError(.invalidVariableStore,
                                  "Secure Boot keys need an authenticated variable store (OVMF built with Secure Boot)")
        }
        try set("SecureBootEnable", Self.secureBootEnableGUID, attributes: 0x03, data: [1])
        try set("CustomMode", Self.customModeGUID, attributes: 0x03, data: [0])
        try set("db", .imageSecurityDatabase, attributes: Self.authenticatedAttributes, data: db.encoded)
        try set("dbx", .imageSecurityDatabase, attributes: Self.authenticatedAttributes, data: dbx.encoded)
        try set("KEK", .globalVariable, attributes: Self.authenticatedAttributes, data: kek.encoded)
        try set("PK", .globalVariable, attributes: Self.authenticatedAttributes, data: pk.encoded)
    }

    func le32(_ v: UInt32) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)] }

    /// The live value of a variable.
    public func variable(_ name: String, _ guid: EFIGUID) -> Variable? {
        variables.last { $0.isLive && $0.name == name && $0.vendorGUID == guid }
    }

    public var db: SignatureDatabase {
        (try? variable("db", .imageSecurityDatabase).map { try SignatureDatabase(esl: $0.data) }) ?? nil ?? SignatureDatabase()
    }
    public var dbx: SignatureDatabase {
        (try? variable("dbx", .imageSecurityDatabase).map { try SignatureDatabase(esl: $0.data) }) ?? nil ?? SignatureDatabase()
    }
    public var kek: SignatureDatabase {
        (try? variable("KEK", .globalVariable).map { try SignatureDatabase(esl: $0.data) }) ?? nil ?? SignatureDatabase()
    }
    public var pk: SignatureDatabase {
        (try? variable("PK", .globalVariable).map { try SignatureDatabase(esl: $0.data) }) ?? nil ?? SignatureDatabase()
    }
    /// Secure Boot is enforced when a PK is enrolled (the firmware leaves setup mode) — the
    /// SecureBoot variable itself is volatile and computed at boot.
    public var secureBootWillBeEnabled: Bool { variable("PK", .globalVariable).map { !$0.data.isEmpty } ?? false }
}

func utf16z(_ b: ArraySlice<UInt8>) -> String {
    var units: [UInt16] = []
    var i = b.startIndex
    while i + 1 < b.endIndex {
        let u = UInt16(b[i]) | UInt16(b[i + 1]) << 8
        if u == 0 { break }
        units.append(u)
        i += 2
    }
    return String(decoding: units, as: UTF16.self)
}

