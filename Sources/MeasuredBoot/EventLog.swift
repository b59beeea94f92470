import TPM2

/// One digest of an event: the bank's algorithm and the bytes as logged.
public struct TaggedDigest: Hashable, Sendable {
    public var algorithm: TPMAlgID
    public var digest: ArraySlice<UInt8>
    public init(_ algorithm: TPMAlgID, _ digest: ArraySlice<UInt8>) {
        self.algorithm = algorithm
        self.digest = digest
    }
    public init(_ algorithm: TPMAlgID, _ digest: [UInt8]) { self.init(algorithm, digest[...]) }
}

/// The algorithm/size pair of a Spec ID event (TCG_EfiSpecIdEventAlgorithmSize).
public struct AlgorithmSize: Hashable, Sendable {
    public var algorithm: TPMAlgID
    public var digestSize: Int
    public init(_ algorithm: TPMAlgID, _ digestSize: Int) {
        self.algorithm = algorithm
        self.digestSize = digestSize
    }
}

/// The "Spec ID Event03" header of a crypto-agile log (TCG_EfiSpecIDEvent, PFP 10.4.5.1).
public struct SpecIDEvent: Hashable, Sendable {
    public static let signature03: [UInt8] = Array("Spec ID Event03".utf8) + [0]
    public var signature: [UInt8]
    public var platformClass: UInt32
    public var specVersionMinor: UInt8
    public var specVersionMajor: UInt8
    public var specErrata: UInt8
    public var uintnSize: UInt8
    public var algorithms: [AlgorithmSize]
    public var vendorInfo: [UInt8]

    /// Caps on hostile headers: more algorithms or bigger digests than any TPM has.
    static let maxAlgorithms = 64
    static let maxDigestSize = 512

    public init(algorithms: [AlgorithmSize], platformClass: UInt32 = 0, specVersionMinor: UInt8 = 0,
                specVersionMajor: UInt8 = 2, specErrata: UInt8 = 0, uintnSize: UInt8 = 2, vendorInfo: [UInt8] = []) {
        self.signature = Self.signature03
        self.platformClass = platformClass
        self.specVersionMinor = specVersionMinor
        self.specVersionMajor = specVersionMajor
        self.specErrata = specErrata
        self.uintnSize = uintnSize
        self.algorithms = algorithms
        self.vendorInfo = vendorInfo
    }

    init(reading r: inout LEReader) throws(EventLogError) {
        signature = try r.bytes(16, "signature")
        guard signature == Self.signature03 else {
            throw r.error(.invalidValue, "Spec ID signature is not \"Spec ID Event03\"", field: "TCG_EfiSpecIDEvent.signature")
        }
        platformClass = try r.u32("platformClass")
        specVersionMinor = try r.u8("specVersionMinor")
        specVersionMajor = try r.u8("specVersionMajor")
        specErrata = try r.u8("specErrata")
        uintnSize = try r.u8("uintnSize")
        let count = try r.u32("numberOfAlgorithms")
        guard count >= 1, count <= Self.maxAlgorithms else {
            throw r.error(.sizeExceedsLimit, "numberOfAlgorithms is \(count); a log has 1 to \(Self.maxAlgorithms)",
                          field: "TCG_EfiSpecIDEvent.numberOfAlgorithms")
        }
        guard Int(count) * 4 <= r.remaining else {
            throw r.error(.truncated, "numberOfAlgorithms is \(count) but only \(r.remaining) bytes remain",
                          field: "TCG_EfiSpecIDEvent.numberOfAlgorithms")
        }
        var algs: [AlgorithmSize] = []
        for i in 0..<Int(count) {
            let alg = TPMAlgID(rawValue: try r.u16("algorithmId"))
            let size = Int(try r.u16("digestSize"))
            guard size >= 1, size <= Self.maxDigestSize else {
                throw r.error(.sizeExceedsLimit, "digest size \(size) for \(alg) is not in 1…\(Self.maxDigestSize)",
                              field: "TCG_EfiSpecIDEvent.digestSizes[\(i)].digestSize")
            }
            if let known = EventLogHash.digestSize(alg), known != size {
                throw r.error(.invalidValue, "\(alg) digests are \(known) bytes, the header says \(size)",
                              field: "TCG_EfiSpecIDEvent.digestSizes[\(i)].digestSize")
            }
            guard !algs.contains(where: { $0.algorithm == alg }) else {
                throw r.error(.invalidValue, "\(alg) is listed twice", field: "TCG_EfiSpecIDEvent.digestSizes[\(i)]")
            }
            algs.append(AlgorithmSize(alg, size))
        }
        algorithms = algs
        let vendorSize = Int(try r.u8("vendorInfoSize"))
        vendorInfo = try r.bytes(vendorSize, "vendorInfo")
        try r.requireEnd("the Spec ID event")
    }

    func encode(into out: inout [UInt8]) {
        out += signature
        out.le32(platformClass)
        out += [specVersionMinor, specVersionMajor, specErrata, uintnSize]
        out.le32(UInt32(algorithms.count))
        for a in algorithms {
            out.le16(a.algorithm.rawValue)
            out.le16(UInt16(truncatingIfNeeded: a.digestSize))
        }
        out.append(UInt8(truncatingIfNeeded: vendorInfo.count))
        out += vendorInfo
    }
}

/// One event as logged. Nothing in it is trusted until a replay against TPM PCR values has
/// matched (see `EventLog.replay`, which yields `VerifiedEvent`s).
public struct Event: Sendable {
    /// 0-based position in the log (tpm2_eventlog's EventNum).
    public var index: Int
    /// Byte offset of the event in the log.
    public var offset: Int
    public var pcrIndex: UInt32
    public var type: EventType
    public var digests: [TaggedDigest]
    public var data: ArraySlice<UInt8>
    /// True for TCG_PCR_EVENT (one SHA-1 digest): every event of a SHA-1 log and the first
    /// event (the Spec ID event) of a crypto-agile log.
    public var isLegacyFormat: Bool

    public init(index: Int = 0, offset: Int = 0, pcrIndex: UInt32, type: EventType, digests: [TaggedDigest],
                data: [UInt8], isLegacyFormat: Bool = false) {
        self.init(index: index, offset: offset, pcrIndex: pcrIndex, type: type, digests: digests, slice: data[...],
                  isLegacyFormat: isLegacyFormat)
    }

    init(index: Int, offset: Int, pcrIndex: UInt32, type: EventType, digests: [TaggedDigest],
         slice: ArraySlice<UInt8>, isLegacyFormat: Bool) {
        self.index = index
        self.offset = offset
        self.pcrIndex = pcrIndex
        self.type = type
        self.digests = digests
        self.data = slice
        self.isLegacyFormat = isLegacyFormat
    }

    /// The digest in one bank.
    public func digest(_ alg: TPMAlgID) -> ArraySlice<UInt8>? {
        for d in digests where d.algorithm == alg { return d.digest }
        return nil
    }

    /// The event data decoded by its type (`EventData`).
    public var decoded: EventData { EventData.decode(type: type, pcrIndex: pcrIndex, data: data) }
}

/// A TCG PC Client event log: the SHA-1 format (TCG_PCR_EVENT only) or the crypto-agile format
/// (a Spec ID Event03 header, then TCG_PCR_EVENT2 events with a digest per bank).
public struct EventLog: Sendable {
    public enum Format: String, Sendable, Codable {
        case sha1
        case cryptoAgile = "crypto-agile"
    }

    public var format: Format
    /// The header of a crypto-agile log (also `events[0].data`).
    public var specID: SpecIDEvent?
    public var events: [Event]
    /// Padding after the last event (all 0x00 or all 0xFF, as logs copied from ACPI tables or
    /// fixed-size buffers end), kept so that encoding gives back the same bytes.
    public var padding: [UInt8]

    /// The banks of the log: the header's algorithms, or SHA-1 for a SHA-1 log.
    public var banks: [AlgorithmSize] {
        specID?.algorithms ?? [AlgorithmSize(.sha1, 20)]
    }

    /// Limits that keep hostile logs from costing more than their size.
    static let maxEventDataSize = 16 << 20

    public init(format: Format, specID: SpecIDEvent?, events: [Event], padding: [UInt8] = []) {
        self.format = format
        self.specID = specID
        self.events = events
        self.padding = padding
    }

    /// Parses a log. Errors carry the byte offset and the event index.
    public init(parsing bytes: [UInt8]) throws(EventLogError) {
        var r = LEReader(bytes)
        var events: [Event] = []
        events.reserveCapacity(min(bytes.count / 40, 1 << 20))
        // The first event is always a TCG_PCR_EVENT.
        guard !bytes.isEmpty else { throw EventLogError(.truncated, "the log is empty", offset: 0, eventIndex: 0) }
        let first = try Self.legacyEvent(&r, index: 0)
        var specID: SpecIDEvent?
        // (A CC event log, e.g. Intel TDX's CCEL, puts its header in "PCR" 1: the MR index mapping.)
        if first.type == .noAction, first.data.count >= 16,
           Array(first.data.prefix(16)) == SpecIDEvent.signature03 {
            var hr = LEReader(bytes, range: first.data.startIndex..<first.data.endIndex)
            do {
                specID = try SpecIDEvent(reading: &hr)
            } catch {
                var e = error
                e.eventIndex = 0
                throw e
            }
        }
        events.append(first)
        var padding: [UInt8] = []
        if let specID {
            let sizes = specID.algorithms
            while !r.isAtEnd {
                if Self.isPadding(bytes, from: r.offset) { padding = Array(bytes[r.offset...]); break }
                events.append(try Self.agileEvent(&r, index: events.count, banks: sizes))
            }
        } else {
            while !r.isAtEnd {
                if Self.isPadding(bytes, from: r.offset) { padding = Array(bytes[r.offset...]); break }
                events.append(try Self.legacyEvent(&r, index: events.count))
            }
        }
        self.init(format: specID == nil ? .sha1 : .cryptoAgile, specID: specID, events: events, padding: padding)
    }

    /// True when everything from `offset` is 0x00 or everything is 0xFF.
    static func isPadding(_ bytes: [UInt8], from offset: Int) -> Bool {
        let b = bytes[offset]
        // At least a PCR index and an event type's worth, so that a log cut inside an event
        // header (PCR 0 or a trailer's 0xFFFFFFFF) is reported as truncated, not as padding.
        guard b == 0 || b == 0xFF, bytes.count - offset >= 8 else { return false }
        // An all-zero TCG_PCR_EVENT2 header (PCR 0, EV_PREBOOT_CERT, no digests) is not an event.
        var i = offset
        while i < bytes.count { if bytes[i] != b { return false }; i += 1 }
        return true
    }

    static func legacyEvent(_ r: inout LEReader, index: Int) throws(EventLogError) -> Event {
        let start = r.offset
        do throws(EventLogError) {
            let pcr = try r.u32("pcrIndex")
            let type = EventType(rawValue: try r.u32("eventType"))
            try r.need(20, "SHA-1 digest")
            let digest = r.bytes[r.offset..<r.offset + 20]
            try r.skip(20, "SHA-1 digest")
            r.field = "TCG_PCR_EVENT.eventSize"
            let size = try r.length(UInt64(try r.u32("eventSize")), cap: maxEventDataSize, "eventSize")
            let data = r.bytes[r.offset..<r.offset + size]
            try r.skip(size, "event data")
            r.field = ""
            return Event(index: index, offset: start, pcrIndex: pcr, type: type, digests: [TaggedDigest(.sha1, digest)],
                         slice: data, isLegacyFormat: true)
        } catch {
            var e = error
            e.eventIndex = index
            if e.field == nil { e.field = "TCG_PCR_EVENT" }
            throw e
        }
    }

    static func agileEvent(_ r: inout LEReader, index: Int, banks: [AlgorithmSize]) throws(EventLogError) -> Event {
        let start = r.offset
        do throws(EventLogError) {
            let pcr = try r.u32("pcrIndex")
            let type = EventType(rawValue: try r.u32("eventType"))
            let count = try r.u32("digests.count")
            guard count <= UInt32(banks.count) else {
                throw r.error(.sizeExceedsLimit, "\(count) digests, but the log has \(banks.count) banks",
                              field: "TCG_PCR_EVENT2.digests.count")
            }
            var digests: [TaggedDigest] = []
            digests.reserveCapacity(Int(count))
            for i in 0..<Int(count) {
                let alg = TPMAlgID(rawValue: try r.u16("hashAlg"))
                guard let bank = banks.first(where: { $0.algorithm == alg }) else {
                    throw EventLogError(.invalidValue, "digest algorithm \(alg) is not one of the log's banks "
                                                     + "(\(banks.map { "\($0.algorithm)" }.joined(separator: ", "))), so its size is "
                                                     + "unknown",
                                        offset: r.position - 2, field: "TCG_PCR_EVENT2.digests[\(i)].hashAlg")
                }
                try r.need(bank.digestSize, "\(alg) digest")
                digests.append(TaggedDigest(alg, r.bytes[r.offset..<r.offset + bank.digestSize]))
                try r.skip(bank.digestSize, "digest")
            }
            r.field = "TCG_PCR_EVENT2.eventSize"
            let size = try r.length(UInt64(try r.u32("eventSize")), cap: maxEventDataSize, "eventSize")
            let data = r.bytes[r.offset..<r.offset + size]
            try r.skip(size, "event data")
            r.field = ""
            return Event(index: index, offset: start, pcrIndex: pcr, type: type, digests: digests, slice: data, isLegacyFormat: false)
        } catch {
            var e = error
            e.eventIndex = index
            if e.field == nil { e.field = "TCG_PCR_EVENT2" }
            throw e
        }
    }

    // MARK: encoding

    /// The log's bytes: events in the format each was logged in, then the padding.
    public func encoded() throws(EventLogError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(
            events.reduce(0) { $0 + 16 + $1.data.count + $1.digests.reduce(0) { $0 + 2 + $1.digest.count } } + padding.count)
        for e in events {
            out.le32(e.pcrIndex)
            out.le32(e.type.rawValue)
            if e.isLegacyFormat {
                guard e.digests.count == 1, e.digests[0].algorithm == .sha1, e.digests[0].digest.count == 20 else {
                    throw EventLogError(.invalidValue, "a TCG_PCR_EVENT has exactly one 20-byte SHA-1 digest", eventIndex: e.index,
                                        field: "digests")
                }
                out += e.digests[0].digest
            } else {
                out.le32(UInt32(e.digests.count))
                for d in e.digests {
                    if let bank = banks.first(where: { $0.algorithm == d.algorithm }) {
                        guard bank.digestSize == d.digest.count else {
                            throw EventLogError(.invalidValue, "a \(d.algorithm) digest is \(bank.digestSize) bytes, not \(d.digest.count)",
                                                eventIndex: e.index, field: "digests")
                        }
                    } else {
                        throw EventLogError(.invalidValue, "\(d.algorithm) is not a bank of this log", eventIndex: e.index,
                                            field: "digests")
                    }
                    out.le16(d.algorithm.rawValue)
                    out += d.digest
                }
            }
            out.le32(UInt32(e.data.count))
            out += e.data
        }
        out += padding
        return out
    }
}

extension Array where Element == UInt8 {
    @inline(__always) mutating func le16(_ v: UInt16) { append(UInt8(v & 0xFF)); append(UInt8(v >> 8)) }
    @inline(__always) mutating func le32(_ v: UInt32) {
        append(UInt8(v & 0xFF)); append(UInt8(v >> 8 & 0xFF)); append(UInt8(v >> 16 & 0xFF)); append(UInt8(v >> 24))
    }
    @inline(__always) mutating func le64(_ v: UInt64) { le32(UInt32(v & 0xFFFF_FFFF)); le32(UInt32(v >> 32)) }
}
