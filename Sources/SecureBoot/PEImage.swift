import Crypto
import TPM2

/// A PE/COFF image (PE32 or PE32+, as EFI applications and drivers are), with what Authenticode
/// needs: the header fields it skips, the sections it hashes, and the certificate table.
public struct PEImage: Sendable {
    public struct Section: Sendable, Hashable {
        public var name: String
        public var virtualAddress: UInt32
        public var virtualSize: UInt32
        public var pointerToRawData: Int
        public var sizeOfRawData: Int
    }

    public let bytes: [UInt8]
    public let isPE32Plus: Bool
    public let machine: UInt16
    public let subsystem: UInt16
    /// Offset of the optional header's CheckSum field.
    public let checksumOffset: Int
    /// Offset of the certificate-table data directory entry (nil when the image has fewer than
    /// five data directories).
    public let certificateDirectoryOffset: Int?
    /// The certificate table's file range (empty when unsigned).
    public let certificateTable: Range<Int>
    public let sizeOfHeaders: Int
    public let sections: [Section]

    /// The PE specification allows at most 96 sections.
    static let maxSections = 96

    public init(_ bytes: [UInt8]) throws(SecureBootError) {
        self.bytes = bytes
        let r = LE(bytes: bytes, structure: "PE")
        guard bytes.count >= 64, bytes[0] == 0x4D, bytes[1] == 0x5A else {
            throw SecureBootError(.invalidPE, "not a PE image: no \"MZ\" DOS header", offset: 0, field: "IMAGE_DOS_HEADER.e_magic")
        }
        let peOffset = Int(try r.u32(0x3C, "IMAGE_DOS_HEADER.e_lfanew"))
        try r.need(peOffset, 24, "IMAGE_NT_HEADERS")
        guard bytes[peOffset] == 0x50, bytes[peOffset + 1] == 0x45, bytes[peOffset + 2] == 0, bytes[peOffset + 3] == 0 else {
            throw SecureBootError(.invalidPE, "no \"PE\\0\\0\" signature at e_lfanew (\(peOffset))", offset: peOffset,
                                  field: "IMAGE_NT_HEADERS.Signature")
        }
        let coff = peOffset + 4
        machine = try r.u16(coff, "IMAGE_FILE_HEADER.Machine")
        let sectionCount = Int(try r.u16(coff + 2, "IMAGE_FILE_HEADER.NumberOfSections"))
        guard sectionCount <= Self.maxSections else {
            throw SecureBootError(.invalidPE, "\(sectionCount) sections; the PE format allows at most \(Self.maxSections)",
                                  offset: coff + 2,
                                  field: "IMAGE_FILE_HEADER.NumberOfSections")
        }
        let optionalSize = Int(try r.u16(coff + 16, "IMAGE_FILE_HEADER.SizeOfOptionalHeader"))
        let opt = coff + 20
        try r.need(opt, optionalSize, "IMAGE_OPTIONAL_HEADER")
        let magic = try r.u16(opt, "IMAGE_OPTIONAL_HEADER.Magic")
        switch magic {
        case 0x10B: isPE32Plus = false
        case 0x20B: isPE32Plus = true
        default:
            throw SecureBootError(.invalidPE,
                                  String(format: "optional header magic 0x%04X is neither PE32 (0x10B) nor PE32+ (0x20B)", magic),
                                  offset: opt, field: "IMAGE_OPTIONAL_HEADER.Magic")
        }
        let minimum = isPE32Plus ? 112 : 96
        guard optionalSize >= minimum else {
            throw SecureBootError(.invalidPE,
                                  "SizeOfOptionalHeader \(optionalSize) is smaller than the \(minimum) bytes before the data directories",
                                  offset: coff + 16, field: "IMAGE_FILE_HEADER.SizeOfOptionalHeader")
        }
        subsystem = try r.u16(opt + 68, "IMAGE_OPTIONAL_HEADER.Subsystem")
        checksumOffset = opt + 64
        sizeOfHeaders = Int(try r.u32(opt + 60, "IMAGE_OPTIONAL_HEADER.SizeOfHeaders"))
        let rvaCount = Int(try r.u32(opt + (isPE32Plus ? 108 : 92), "IMAGE_OPTIONAL_HEADER.NumberOfRvaAndSizes"))
        let directories = opt + minimum
        guard rvaCount <= (optionalSize - minimum) / 8 else {
            throw SecureBootError(.invalidPE, "NumberOfRvaAndSizes \(rvaCount) does not fit the optional header (\(optionalSize) bytes)",
                                  offset: opt + (isPE32Plus ? 108 : 92), field: "IMAGE_OPTIONAL_HEADER.NumberOfRvaAndSizes")
        }
        let sectionTable = opt + optionalSize
        try r.need(sectionTable, sectionCount * 40, "IMAGE_SECTION_HEADER[\(sectionCount)]")
        guard sizeOfHeaders >= sectionTable + sectionCount * 40, sizeOfHeaders <= bytes.count else {
            throw SecureBootError(.invalidPE, "SizeOfHeaders \(sizeOfHeaders) does not cover the headers "
                                            + "(\(sectionTable + sectionCount * 40) bytes) within the file (\(bytes.count))",
                                  offset: opt + 60, field: "IMAGE_OPTIONAL_HEADER.SizeOfHeaders")
        }
        if rvaCount > 4 {
            let entry = directories + 4 * 8
            certificateDirectoryOffset = entry
            let start = Int(try r.u32(entry, "DataDirectory[SECURITY].VirtualAddress"))
            let size = Int(try r.u32(entry + 4, "DataDirectory[SECURITY].Size"))
            if size == 0 {
                certificateTable = bytes.count..<bytes.count
            } else {
                guard start >= sizeOfHeaders, start <= bytes.count, size <= bytes.count - start else {
                    throw SecureBootError(.invalidPE, "the certificate table (\(start), \(size) bytes) is not inside the file "
                                                    + "(\(bytes.count) bytes) after the headers",
                                          offset: entry, field: "DataDirectory[SECURITY]")
                }
                guard start + size == bytes.count else {
                    // Authenticode hashes everything up to FileSize − table size: the table must end the file.
                    throw SecureBootError(.invalidPE,
                                          "the certificate table (\(start), \(size) bytes) does not end the file (\(bytes.count) bytes)",
                                          offset: entry, field: "DataDirectory[SECURITY]")
                }
                guard start % 8 == 0 else {
                    throw SecureBootError(.invalidPE, "the certificate table starts at \(start), not on an 8-byte boundary", offset: entry,
                                          field: "DataDirectory[SECURITY].VirtualAddress")
                }
                certificateTable = start..<start + size
            }
        } else {
            certificateDirectoryOffset = nil
            certificateTable = bytes.count..<bytes.count
        }
        var sections: [Section] = []
        for i in 0..<sectionCount {
            let h = sectionTable + 40 * i
            let nameBytes = bytes[h..<h + 8].prefix { $0 != 0 }
            let pointer = Int(try r.u32(h + 20, "IMAGE_SECTION_HEADER[\(i)].PointerToRawData"))
            let size = Int(try r.u32(h + 16, "IMAGE_SECTION_HEADER[\(i)].SizeOfRawData"))
            if size > 0 {
                guard pointer <= bytes.count, size <= bytes.count - pointer else {
                    throw SecureBootError(.invalidPE, "section \(i) raw data (\(pointer), \(size) bytes) extends beyond the end of the "
                                                    + "file (\(bytes.count))",
                                          offset: h + 16, field: "IMAGE_SECTION_HEADER[\(i)]")
                }
            }
            sections.append(Section(name: Self.sectionName(Array(nameBytes), bytes: bytes, coff: coff),
                                    virtualAddress: try r.u32(h + 12, "VirtualAddress"),
                                    virtualSize: try r.u32(h + 8, "VirtualSize"), pointerToRawData: pointer, sizeOfRawData: size))
        }
        let ordered = sections.filter { $0.sizeOfRawData > 0 }.sorted { $0.pointerToRawData < $1.pointerToRawData }
        for (a, b) in zip(ordered, ordered.dropFirst()) where a.pointerToRawData + a.sizeOfRawData > b.pointerToRawData {
            throw SecureBootError(.invalidPE, "sections \(a.name) and \(b.name) overlap in the file", offset: b.pointerToRawData,
                                  field: "IMAGE_SECTION_HEADER")
        }
        if let last = ordered.last, !certificateTable.isEmpty, last.pointerToRawData + last.sizeOfRawData > certificateTable.lowerBound {
            throw SecureBootError(.invalidPE, "section \(last.name) overlaps the certificate table", offset: last.pointerToRawData,
                                  field: "IMAGE_SECTION_HEADER")
        }
        if let first = ordered.first, first.pointerToRawData < sizeOfHeaders {
            throw SecureBootError(.invalidPE, "section \(first.name) starts inside the headers", offset: first.pointerToRawData,
                                  field: "IMAGE_SECTION_HEADER")
        }
        self.sections = sections
    }

    /// A section's name; "/N" names (longer than 8 bytes, as GNU toolchains write shim's
    /// `.vendor_cert` and `.sbatlevel`) are read from the COFF string table at offset N. A
    /// reference outside the file keeps the "/N" form.
    static func sectionName(_ raw: [UInt8], bytes: [UInt8], coff: Int) -> String {
        let text = String(decoding: raw, as: UTF8.self)
        guard raw.first == UInt8(ascii: "/"), let n = Int(text.dropFirst()), coff + 16 <= bytes.count else { return text }
        func u32(_ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 | Int(bytes[o + 2]) << 16 | Int(bytes[o + 3]) << 24 }
        let symbols = u32(coff + 8), count = u32(coff + 12)
        let start = symbols + count * 18 + n
        guard n >= 0, symbols > 0, start >= 0, start < bytes.count else { return text }
        let end = bytes[start...].prefix(256).firstIndex(of: 0) ?? min(bytes.count, start + 256)
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }

    public var isSigned: Bool { !certificateTable.isEmpty }

    /// The byte ranges Authenticode hashes, in order (Microsoft's Authenticode PE specification):
    /// the headers without CheckSum and the certificate-table entry, the sections in file
    /// order, then data after the last section up to the certificate table.
    public var authenticodeRanges: [Range<Int>] {
        var out: [Range<Int>] = [0..<checksumOffset]
        if let cd = certificateDirectoryOffset {
            out.append(checksumOffset + 4..<cd)
            out.append(cd + 8..<sizeOfHeaders)
        } else {
            out.append(checksumOffset + 4..<sizeOfHeaders)
        }
        var hashed = sizeOfHeaders
        for s in sections.filter({ $0.sizeOfRawData > 0 }).sorted(by: { $0.pointerToRawData < $1.pointerToRawData }) {
            out.append(s.pointerToRawData..<s.pointerToRawData + s.sizeOfRawData)
            hashed += s.sizeOfRawData
        }
        // Trailing data (debug info, or the alignment padding a signer adds) is hashed, the
        // certificate table is not.
        let end = bytes.count - certificateTable.count
        if end > hashed { out.append(hashed..<end) }
        return out
    }

    /// The Authenticode digest (what a signature's SpcIndirectDataContent and db/dbx hashes hold).
    public func authenticodeDigest(_ alg: TPMAlgID = .sha256) throws(SecureBootError) -> [UInt8] {
        func run<H: HashFunction>(_: H.Type) -> [UInt8] {
            var h = H()
            bytes.withUnsafeBytes { all in
                for r in authenticodeRanges where !r.isEmpty { h.update(bufferPointer: UnsafeRawBufferPointer(rebasing: all[r])) }
            }
            return Array(h.finalize())
        }
        switch alg {
        case .sha1: return run(Insecure.SHA1.self)
        case .sha256: return run(SHA256.self)
        case .sha384: return run(SHA384.self)
        case .sha512: return run(SHA512.self)
        default: throw SecureBootError(.unsupported, "Authenticode digests are SHA-1, SHA-256, SHA-384 or SHA-512, not \(alg)",
                                       field: "algorithm")
        }
    }

    /// The WIN_CERTIFICATE entries of the certificate table (8-byte aligned).
    public func certificates() throws(SecureBootError) -> [WinCertificate] {
        var out: [WinCertificate] = []
        let r = LE(bytes: bytes, structure: "WIN_CERTIFICATE")
        var o = certificateTable.lowerBound
        while o < certificateTable.upperBound {
            guard certificateTable.upperBound - o >= 8 else {
                throw SecureBootError(.invalidSignature, "\(certificateTable.upperBound - o) bytes left in the certificate table, less "
                                                       + "than a WIN_CERTIFICATE header",
                                      offset: o, field: "WIN_CERTIFICATE")
            }
            let length = Int(try r.u32(o, "dwLength"))
            let revision = try r.u16(o + 4, "wRevision")
            let type = try r.u16(o + 6, "wCertificateType")
            guard length >= 8, length <= certificateTable.upperBound - o else {
                throw SecureBootError(.invalidSignature, "dwLength \(length) does not fit the certificate table", offset: o,
                                      field: "WIN_CERTIFICATE.dwLength")
            }
            out.append(WinCertificate(offset: o, revision: revision, type: type, data: Array(bytes[o + 8..<o + length])))
            o += (length + 7) & ~7
        }
        return out
    }
}

/// One entry of a PE certificate table.
public struct WinCertificate: Sendable, Hashable {
    public var offset: Int
    public var revision: UInt16
    /// 0x0002: WIN_CERT_TYPE_PKCS_SIGNED_DATA (Authenticode).
    public var type: UInt16
    public var data: [UInt8]
    public var isPKCS7: Bool { type == 0x0002 }
}
