import TPM2

/// Builds event logs as firmware writes them: each measurement is hashed into every bank, the
/// crypto-agile header names the banks. The virtual firmware writes its logs with this.
public struct EventLogBuilder: Sendable {
    public let format: EventLog.Format
    public let banks: [AlgorithmSize]
    public private(set) var log: EventLog

    /// A crypto-agile log over `banks` (each must be a hash we can compute), or a SHA-1 log.
    public init(format: EventLog.Format = .cryptoAgile, banks: [TPMAlgID] = [.sha1, .sha256],
                startupLocality: UInt8? = nil) throws(EventLogError) {
        self.format = format
        if format == .sha1 {
            self.banks = [AlgorithmSize(.sha1, 20)]
            log = EventLog(format: .sha1, specID: nil, events: [])
            return
        }
        var sizes: [AlgorithmSize] = []
        for b in banks {
            guard EventLogHash.isSupported(b), let n = EventLogHash.digestSize(b) else {
                throw EventLogError(.unsupportedAlgorithm, "cannot build a \(b) bank", field: "banks")
            }
            sizes.append(AlgorithmSize(b, n))
        }
        guard !sizes.isEmpty else { throw EventLogError(.invalidInput, "a crypto-agile log needs at least one bank", field: "banks") }
        self.banks = sizes
        let spec = SpecIDEvent(algorithms: sizes)
        var header: [UInt8] = []
        spec.encode(into: &header)
        let first = Event(index: 0, offset: 0, pcrIndex: 0, type: .noAction,
                          digests: [TaggedDigest(.sha1, [UInt8](repeating: 0, count: 20))],
                          data: header, isLegacyFormat: true)
        log = EventLog(format: .cryptoAgile, specID: spec, events: [first])
        if let l = startupLocality {
            appendNoAction(pcr: 0, data: Array("StartupLocality".utf8) + [0, l])
        }
    }

    /// Measures `measured` (the event data itself when nil) into `pcr` and logs `data`.
    public mutating func measure(pcr: UInt32, type: EventType, data: [UInt8], measured: [UInt8]? = nil) {
        let m = measured ?? data
        let digests = banks.map { TaggedDigest($0.algorithm, EventLogHash.hash($0.algorithm, m) ?? []) }
        append(pcr: pcr, type: type, digests: digests, data: data)
    }

    /// Logs an event whose digests were computed elsewhere (an Authenticode digest per bank).
    public mutating func append(pcr: UInt32, type: EventType, digests: [TaggedDigest], data: [UInt8]) {
        log.events.append(Event(index: log.events.count, offset: 0, pcrIndex: pcr, type: type, digests: digests, data: data,
                                isLegacyFormat: format == .sha1))
    }

    /// An EV_NO_ACTION event: zero digests, nothing extended.
    public mutating func appendNoAction(pcr: UInt32, data: [UInt8]) {
        append(pcr: pcr, type: .noAction, digests: banks.map { TaggedDigest($0.algorithm, [UInt8](repeating: 0, count: $0.digestSize)) },
               data: data)
    }

    /// EV_SEPARATOR in PCRs 0–7 (value 0, or 1 for an error separator).
    public mutating func separators(_ pcrs: ClosedRange<UInt32> = 0...7, error: Bool = false) {
        for p in pcrs { measure(pcr: p, type: .separator, data: error ? [1, 0, 0, 0] : [0, 0, 0, 0]) }
    }

    /// A UEFI variable measurement (EV_EFI_VARIABLE_DRIVER_CONFIG / _BOOT / _AUTHORITY).
    public mutating func measureVariable(pcr: UInt32, type: EventType, guid: EFIGUID, name: String, data: [UInt8]) {
        measure(pcr: pcr, type: type, data: UEFIVariableData(vendorGUID: guid, name: name, data: data).encoded)
    }

    /// The log's bytes, with offsets fixed.
    public func encoded() throws(EventLogError) -> [UInt8] { try log.encoded() }
}
