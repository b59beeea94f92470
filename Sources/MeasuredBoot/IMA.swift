import Foundation
import TPM2

/// One entry of a Linux IMA runtime measurement list.
public struct IMAEntry: Sendable, Hashable {
    public var index: Int
    /// Byte offset in the binary list, or line number (1-based) in the ASCII list.
    public var position: Int
    public var pcr: UInt32
    /// The template hash as logged (SHA-1 in `binary_runtime_measurements`; zero for a violation).
    public var templateHash: [UInt8]
    public var templateName: String
    /// The template data as the kernel hashes it: for `ima`, the 20-byte digest and the name; for
    /// the others, each field as a little-endian UINT32 length and its bytes.
    public var templateData: [UInt8]
    public var fileDigestAlgorithm: String
    public var fileDigest: [UInt8]
    public var fileName: String
    /// ima-sig / ima-modsig: the signature (may be empty); ima-buf: the buffer.
    public var signature: [UInt8]?
    public var buffer: [UInt8]?

    /// A violation (ToMToU, open-writers): the kernel logs a zero template hash and extends all ones.
    public var isViolation: Bool { templateHash.allSatisfy { $0 == 0 } }

    /// The bytes the kernel hashes for the template hash (`ima` pads the name to 256 bytes).
    var hashedTemplate: [UInt8] {
        if templateName == "ima" {
            var name = Array(fileName.utf8.prefix(255))
            name += [UInt8](repeating: 0, count: 256 - name.count)
            return fileDigest + name
        }
        return templateData
    }

    /// The template hash for a bank (nil for a violation, which extends all ones).
    public func templateHash(_ alg: TPMAlgID) -> [UInt8]? {
        isViolation ? nil : EventLogHash.hash(alg, hashedTemplate)
    }

    /// Whether the logged template hash is the SHA-1 of the template (false: altered entry).
    public var isConsistent: Bool {
        isViolation
            || (templateHash.count == 20
                ? templateHash(.sha1) == templateHash
                : templateHash(EventLogHash.algorithm(forSize: templateHash.count) ?? .sha1) == templateHash)
    }
}

/// A Linux IMA runtime measurement list (`/sys/kernel/security/ima/ascii_runtime_measurements`
/// or `binary_runtime_measurements`), templates ima, ima-ng, ima-sig, ima-buf, ima-modsig.
public struct IMALog: Sendable {
    public var entries: [IMAEntry]
    /// Bytes at the end that do not form a whole entry (a list read while the kernel appends, or
    /// a stray newline), with why; they are not replayed.
    public var incompleteTail: EventLogError?

    static let maxNameLength = 4096
    static let maxTemplateData = 1 << 20

    public init(entries: [IMAEntry], incompleteTail: EventLogError? = nil) {
        self.entries = entries
        self.incompleteTail = incompleteTail
    }

    /// Parses either format (binary when the first UINT32 is a small PCR number).
    public init(parsing bytes: [UInt8], templateHashSize: Int = 20) throws(EventLogError) {
        if bytes.count >= 4, bytes[1] == 0, bytes[2] == 0, bytes[3] == 0, bytes[0] < 24 {
            self = try Self(binary: bytes, templateHashSize: templateHashSize)
        } else {
            self = try Self(ascii: String(decoding: bytes, as: UTF8.self))
        }
    }

    // MARK: binary

    public init(binary bytes: [UInt8], templateHashSize: Int = 20, startIndex: Int = 0) throws(EventLogError) {
        var r = LEReader(bytes, field: "IMA entry")
        var entries: [IMAEntry] = []
        var tail: EventLogError?
        while !r.isAtEnd {
            let start = r.offset
            do throws(EventLogError) {
                entries.append(try Self.binaryEntry(&r, index: startIndex + entries.count, hashSize: templateHashSize))
            } catch {
                var e = error
                e.eventIndex = startIndex + entries.count
                // Only the last entry may be incomplete; an error with whole entries after it is corruption.
                if e.code == .truncated {
                    tail = e
                    _ = start
                    break
                }
                throw e
            }
        }
        self.init(entries: entries, incompleteTail: tail)
    }

    static func binaryEntry(_ r: inout LEReader, index: Int, hashSize: Int) throws(EventLogError) -> IMAEntry {
        let start = r.offset
        let pcr = try r.u32("pcr")
        let hash = try r.bytes(hashSize, "template hash")
        let nameLen = try r.length(UInt64(try r.u32("template name length")), cap: 255, "template name length")
        let name = String(decoding: try r.bytes(nameLen, "template name"), as: UTF8.self)
        var entry = IMAEntry(index: index, position: start, pcr: pcr, templateHash: hash, templateName: name, templateData: [],
                             fileDigestAlgorithm: "sha1", fileDigest: [], fileName: "")
        if name == "ima" {
            entry.fileDigest = try r.bytes(20, "ima digest")
            let n = try r.length(UInt64(try r.u32("ima name length")), cap: maxNameLength, "ima name length")
            entry.fileName = String(decoding: try r.bytes(n, "ima name"), as: UTF8.self)
            entry.templateData = entry.fileDigest + entry.fileName.utf8
            return entry
        }
        let total = try r.length(UInt64(try r.u32("template data length")), cap: maxTemplateData, "template data length")
        let dataStart = r.offset
        let data = try r.bytes(total, "template data")
        entry.templateData = data
        var fr = LEReader(data, base: dataStart, field: "\(name) template data")
        var fields: [[UInt8]] = []
        while !fr.isAtEnd {
            let n = try fr.length(UInt64(try fr.u32("field length")), cap: maxTemplateData, "field length")
            fields.append(try fr.bytes(n, "field"))
        }
        try fill(&entry, fields: fields, base: dataStart)
        return entry
    }

    /// Decodes the fields of ima-ng, ima-sig, ima-buf, ima-modsig (d-ng, n-ng, sig / buf / …).
    static func fill(_ e: inout IMAEntry, fields: [[UInt8]], base: Int) throws(EventLogError) {
        guard fields.count >= 2 else {
            throw EventLogError(.invalidValue, "template \(e.templateName) has \(fields.count) fields; d-ng and n-ng are required",
                                offset: base)
        }
        // d-ng: "<alg>:\0<digest>", or a bare 20-byte SHA-1 digest (the d field).
        let d = fields[0]
        if let colon = d.firstIndex(of: UInt8(ascii: ":")), colon + 1 < d.count, d[colon + 1] == 0 {
            e.fileDigestAlgorithm = String(decoding: d[..<colon], as: UTF8.self)
            e.fileDigest = Array(d[(colon + 2)...])
        } else {
            e.fileDigestAlgorithm = "sha1"
            e.fileDigest = d
        }
        e.fileName = String(decoding: fields[1].prefix { $0 != 0 }, as: UTF8.self)
        switch e.templateName {
        case "ima-buf": e.buffer = fields.count > 2 ? fields[2] : []
        case "ima-sig", "ima-modsig": e.signature = fields.count > 2 ? fields[2] : []
        default: break
        }
    }

    // MARK: ASCII

    public init(ascii text: String, startIndex: Int = 0) throws(EventLogError) {
        var entries: [IMAEntry] = []
        var lineNo = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            let line = raw.trimmingCharacters(in: CharacterSet(charactersIn: "\r"))
            if line.isEmpty { continue }
            entries.append(try Self.asciiEntry(line, line: lineNo, index: startIndex + entries.count))
        }
        self.init(entries: entries)
    }

    static func asciiEntry(_ line: String, line lineNo: Int, index: Int) throws(EventLogError) -> IMAEntry {
        func fail(_ reason: String, _ field: String) -> EventLogError {
            EventLogError(.invalidValue, "line \(lineNo): \(reason)", offset: nil, eventIndex: index, field: field)
        }
        let tokens = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard tokens.count >= 5 else { throw fail("an entry has at least 5 fields (PCR, template hash, template, digest, name)", "line") }
        guard let pcr = UInt32(tokens[0]) else { throw fail("PCR \"\(tokens[0])\" is not a number", "pcr") }
        guard let th = bytesFromHex(tokens[1]), [20, 32, 48, 64].contains(th.count) else {
            throw fail("template hash is not a SHA digest in hex", "template-hash")
        }
        let name = tokens[2]
        var e = IMAEntry(index: index, position: lineNo, pcr: pcr, templateHash: th, templateName: name, templateData: [],
                         fileDigestAlgorithm: "sha1", fileDigest: [], fileName: "")
        let digestToken = tokens[3]
        if name == "ima" {
            guard let d = bytesFromHex(digestToken), d.count == 20 else { throw fail("ima digest is not 20 bytes of hex", "digest") }
            e.fileDigest = d
            e.fileName = tokens[4...].joined(separator: " ")
            e.templateData = d + e.fileName.utf8
            return e
        }
        let parts = digestToken.split(separator: ":", maxSplits: 1).map(String.init)
        let alg = parts.count == 2 ? parts[0] : "sha1"
        guard let digest = bytesFromHex(parts.last ?? "") else { throw fail("file digest is not hex", "digest") }
        e.fileDigestAlgorithm = alg
        e.fileDigest = digest
        let dng: [UInt8] = parts.count == 2 ? Array("\(alg):".utf8) + [0] + digest : digest
        // The name may contain spaces; ima-sig/ima-buf/ima-modsig end with hex fields. Try the
        // interpretations and keep the one whose template hash is the logged one.
        let rest = Array(tokens[4...])
        let trailing: Int
        switch name {
        case "ima-sig", "ima-buf": trailing = 1
        case "ima-modsig": trailing = 3
        default: trailing = 0
        }
        var candidates: [Int] = []
        for t in stride(from: min(trailing, rest.count - 1), through: 0, by: -1) { candidates.append(t) }
        var best: IMAEntry?
        for t in candidates {
            var c = e
            c.fileName = rest.dropLast(t).joined(separator: " ")
            var fields: [[UInt8]] = [dng, Array(c.fileName.utf8) + [0]]
            var ok = true
            for tok in rest.suffix(t) {
                if let b = bytesFromHex(tok) {
                    fields.append(b)
                } else if tok.contains(":"), let b = bytesFromHex(String(tok.split(separator: ":", maxSplits: 1).last ?? "")) {
                    let a = tok.split(separator: ":", maxSplits: 1)[0]
                    fields.append(Array("\(a):".utf8) + [0] + b)
                } else { ok = false }
            }
            guard ok else { continue }
            // ima-sig without a signature still has an (empty) sig field.
            if name == "ima-sig" && t == 0 { fields.append([]) }
            if name == "ima-buf" && t == 0 { fields.append([]) }
            var data: [UInt8] = []
            for f in fields { data.le32(UInt32(f.count)); data += f }
            c.templateData = data
            if name == "ima-buf" { c.buffer = fields.count > 2 ? fields[2] : [] }
            if name == "ima-sig" || name == "ima-modsig" { c.signature = fields.count > 2 ? fields[2] : [] }
            if best == nil { best = c }
            if c.isConsistent { return c }
        }
        guard let b = best else { throw fail("trailing fields of \(name) are not hex", "fields") }
        return b
    }
}

extension EventLogHash {
    static func algorithm(forSize n: Int) -> TPMAlgID? {
        switch n {
        case 20: return .sha1
        case 32: return .sha256
        case 48: return .sha384
        case 64: return .sha512
        default: return nil
        }
    }
}

/// The running PCR 10 values of an IMA replay, kept between batches: an agent sends only the
/// entries after the last ones the verifier saw, and the verifier continues from here.
public struct IMAReplayState: Sendable, Hashable {
    /// Entries applied so far (the next entry's index).
    public private(set) var entryCount: Int = 0
    /// PCR 10 per bank, template hashes computed per bank (kernels since 5.x).
    public private(set) var pcr: [TPMAlgID: [UInt8]]
    /// PCR 10 of the SHA-256 bank as older kernels extend it: the SHA-1 template hash padded
    /// with zeros to 32 bytes.
    public private(set) var sha256PaddedSHA1: [UInt8]
    /// Entries whose logged template hash is not the hash of their template (altered entries).
    public private(set) var inconsistentEntries: [Int] = []
    /// Violation entries (zero template hash; all ones extended).
    public private(set) var violations: [Int] = []
    public let banks: [TPMAlgID]
    public let pcrIndex: UInt32

    public init(banks: [TPMAlgID] = [.sha1, .sha256], pcrIndex: UInt32 = 10) {
        self.banks = banks
        self.pcrIndex = pcrIndex
        pcr = Dictionary(uniqueKeysWithValues: banks.map { ($0, [UInt8](repeating: 0, count: EventLogHash.digestSize($0) ?? 32)) })
        sha256PaddedSHA1 = [UInt8](repeating: 0, count: 32)
    }

    /// Applies entries; they must continue where the state stopped (`entries.first?.index ==
    /// entryCount`), so a batch that skips or repeats entries is refused.
    public mutating func apply(_ entries: [IMAEntry]) throws(EventLogError) {
        if let first = entries.first, first.index != entryCount {
            throw EventLogError(.invalidInput, "entries start at index \(first.index) but the replay has applied \(entryCount); send the "
                                             + "entries from \(entryCount)",
                                eventIndex: first.index)
        }
        for e in entries {
            defer { entryCount += 1 }
            guard e.pcr == pcrIndex else { continue }
            if e.isViolation { violations.append(e.index) } else if !e.isConsistent { inconsistentEntries.append(e.index) }
            for alg in banks {
                let size = EventLogHash.digestSize(alg) ?? 32
                let h = e.templateHash(alg) ?? [UInt8](repeating: 0xFF, count: size)
                pcr[alg] = EventLogHash.extend(alg, pcr[alg] ?? [], h[...])
            }
            let sha1 = e.isViolation ? [UInt8](repeating: 0xFF,
                                               count: 20) : (e.templateHash.count == 20 ? e.templateHash : (e.templateHash(.sha1) ?? []))
            let padded = sha1 + [UInt8](repeating: 0, count: 12)
            sha256PaddedSHA1 = EventLogHash.extend(.sha256, sha256PaddedSHA1, padded[...]) ?? sha256PaddedSHA1
        }
    }

    /// Whether the replay equals a PCR 10 value of a bank (for SHA-256, either kernel behaviour).
    public func matches(_ alg: TPMAlgID, _ value: [UInt8]) -> Bool {
        pcr[alg] == value || (alg == .sha256 && sha256PaddedSHA1 == value)
    }
}
