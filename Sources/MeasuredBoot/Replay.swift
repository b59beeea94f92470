import Foundation
import TPM2

/// PCR values per bank (a quote's values, a `PCRS.json` file, or a replay's result).
public struct PCRValues: Sendable, Hashable {
    public var banks: [TPMAlgID: [UInt32: [UInt8]]]

    public init(_ banks: [TPMAlgID: [UInt32: [UInt8]]] = [:]) { self.banks = banks }

    public subscript(bank: TPMAlgID, pcr: UInt32) -> [UInt8]? {
        get { banks[bank]?[pcr] }
        set { banks[bank, default: [:]][pcr] = newValue }
    }

    /// Bank names as tpm2-tools writes them.
    public static let bankNames: [String: TPMAlgID] = [
        "sha1": .sha1, "sha256": .sha256, "sha384": .sha384, "sha512": .sha512, "sm3_256": .sm3_256, "sm3": .sm3_256,
    ]

    public static func bankName(_ alg: TPMAlgID) -> String {
        switch alg {
        case .sha1: return "sha1"
        case .sha256: return "sha256"
        case .sha384: return "sha384"
        case .sha512: return "sha512"
        case .sm3_256: return "sm3_256"
        default: return "\(alg)"
        }
    }

    /// Reads `{"sha256": {"0": "hex", …}, "sha1": {…}}`, or the same under a `"pcrs"` key.
    public init(json: Data) throws(EventLogError) {
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: json) } catch {
            throw EventLogError(.invalidInput, "PCR file is not JSON: \(error.localizedDescription)")
        }
        guard var top = object as? [String: Any] else {
            throw EventLogError(.invalidInput, "PCR file must be a JSON object of banks, like {\"sha256\": {\"0\": \"hex\"}}")
        }
        if let inner = top["pcrs"] as? [String: Any] { top = inner }
        var banks: [TPMAlgID: [UInt32: [UInt8]]] = [:]
        for (name, value) in top {
            guard let alg = Self.bankNames[name.lowercased()] else {
                throw EventLogError(.invalidInput, "unknown bank \"\(name)\" (use sha1, sha256, sha384, sha512 or sm3_256)", field: name)
            }
            guard let pcrs = value as? [String: Any] else {
                throw EventLogError(.invalidInput, "bank \(name) must map PCR numbers to hex strings", field: name)
            }
            for (k, v) in pcrs {
                guard let pcr = UInt32(k.trimmingCharacters(in: .whitespaces)), pcr < 24 else {
                    throw EventLogError(.invalidInput, "\"\(k)\" is not a PCR number 0…23", field: "\(name).\(k)")
                }
                guard let hex = v as? String, let bytes = bytesFromHex(hex) else {
                    throw EventLogError(.invalidInput, "PCR \(k) of \(name) is not a hex string", field: "\(name).\(k)")
                }
                if let size = EventLogHash.digestSize(alg), size != bytes.count {
                    throw EventLogError(.invalidInput, "PCR \(k) of \(name) is \(bytes.count) bytes; \(name) PCRs are \(size)",
                                        field: "\(name).\(k)")
                }
                banks[alg, default: [:]][pcr] = bytes
            }
        }
        self.banks = banks
    }

    /// PCR values read from a TPM (`TPMClient.pcrRead`, e.g. those sent along with a quote).
    public init(_ read: [TPMPCRBank]) {
        var banks: [TPMAlgID: [UInt32: [UInt8]]] = [:]
        for b in read { for (pcr, v) in b.values where pcr >= 0 && pcr < 24 { banks[b.hashAlg, default: [:]][UInt32(pcr)] = v } }
        self.banks = banks
    }

    /// The output of `tpm2_pcrread` (YAML: a bank name per line, then `N : 0xHEX` lines).
    public init(pcrread text: String) throws(EventLogError) {
        var banks: [TPMAlgID: [UInt32: [UInt8]]] = [:]
        var bank: TPMAlgID?
        var lineNo = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            let parts = line.split(separator: ":", maxSplits: 1,
                                   omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2, parts[1].isEmpty {
                guard let alg = Self.bankNames[parts[0].lowercased()] else {
                    throw EventLogError(.invalidInput, "line \(lineNo): unknown bank \"\(parts[0])\"", field: parts[0])
                }
                bank = alg
                continue
            }
            guard parts.count == 2, let pcr = UInt32(parts[0]), pcr < 24, let value = bytesFromHex(parts[1]) else {
                throw EventLogError(.invalidInput, "line \(lineNo): expected \"N : 0xHEX\" or a bank name, got \"\(line)\"")
            }
            guard let b = bank else { throw EventLogError(.invalidInput, "line \(lineNo): a PCR value before any bank name") }
            if let size = EventLogHash.digestSize(b), size != value.count {
                throw EventLogError(.invalidInput,
                                    "line \(lineNo): PCR \(pcr) is \(value.count) bytes; \(Self.bankName(b)) PCRs are \(size)")
            }
            banks[b, default: [:]][pcr] = value
        }
        guard !banks.isEmpty else { throw EventLogError(.invalidInput, "no PCR values found") }
        self.banks = banks
    }

    /// A PCR file in either form: JSON (`{"sha256": {"0": "hex"}}`) or `tpm2_pcrread` output.
    public init(file contents: [UInt8]) throws(EventLogError) {
        let text = String(decoding: contents, as: UTF8.self)
        if text.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix("{") {
            try self.init(json: Data(contents))
        } else {
            try self.init(pcrread: text)
        }
    }

    /// `{"sha256": {"0": "hex"}}` with sorted keys.
    public var jsonObject: [String: [String: String]] {
        var out: [String: [String: String]] = [:]
        for (alg, pcrs) in banks {
            out[Self.bankName(alg)] = Dictionary(uniqueKeysWithValues: pcrs.map { (String($0.key), hexString($0.value)) })
        }
        return out
    }
}

/// One PCR of one bank, compared.
public struct PCRComparison: Sendable, Hashable {
    public enum Status: Sendable, Hashable {
        case match
        /// The replay differs. `lastEvent` is the last event extended into this PCR (the log ends
        /// there, so a missing or altered event is at or before it); `matchedAfterEvent` is set
        /// when the PCR equals the replay stopped after that event — the events after it were
        /// logged but are not in the TPM.
        case mismatch(lastEvent: Int?, matchedAfterEvent: Int?)
        /// The log has no digests in this bank, or we cannot compute its hash.
        case bankNotReplayable
    }
    public var bank: TPMAlgID
    public var pcr: UInt32
    public var expected: [UInt8]
    public var replayed: [UInt8]?
    public var status: Status
}

/// The outcome of replaying a log against PCR values.
public struct ReplayReport: Sendable {
    /// The replayed value of every PCR the log extends, per replayable bank.
    public var replayed: PCRValues
    /// One entry per given PCR, sorted by bank then PCR.
    public var comparisons: [PCRComparison]
    /// The events the replay vouches for (those of matching PCRs).
    public var verified: VerifiedEventLog

    /// True when there were values to compare and every one matched.
    public var allMatch: Bool { !comparisons.isEmpty && comparisons.allSatisfy { $0.status == .match } }
}

/// How far an event's data is vouched for by its digest.
public enum DataVouching: Sendable, Hashable {
    /// The digest is defined over the data (or, by the measuring component's documented
    /// convention, over a part of it) and equals its hash in every verified bank: what the data
    /// says is what was measured.
    case vouched
    /// The digest is defined over the data but is not its hash: the data says something that was
    /// not measured (an edited log, or a firmware bug).
    case contradicted
    /// The digest is of something else (an image, a file, a firmware volume, a variable the
    /// text only names): the data is the measuring component's description — a claim.
    case claim
}

/// An event whose digests a replay has matched against TPM PCR values. Only `EventLog.replay`
/// makes these (or `VerifiedEventLog.unchecked`, spelled so that a bypass shows).
public struct VerifiedEvent: Sendable {
    public let event: Event
    /// Whether the event's data is itself vouched for, judged only in the verified banks.
    public let dataVouching: DataVouching
    /// The event's digests in the banks the replay verified (digests in other banks are claims).
    public let digests: [TaggedDigest]

    /// True when the data is vouched for (`dataVouching == .vouched`).
    public var dataMatchesDigest: Bool { dataVouching == .vouched }

    /// The verified digest of `alg`, hex (nil when that bank was not verified).
    public func digest(_ alg: TPMAlgID) -> [UInt8]? { digests.first { $0.algorithm == alg }.map { Array($0.digest) } }
}

/// The part of a log a replay vouched for.
public struct VerifiedEventLog: Sendable {
    public let log: EventLog
    /// The PCRs (of the log's reference bank) whose events are included.
    public let verifiedPCRs: Set<UInt32>
    /// The banks the replay compared with the TPM (all of them matched for `verifiedPCRs`): only
    /// their digests vouch for anything.
    public let verifiedBanks: Set<TPMAlgID>
    public let events: [VerifiedEvent]
    /// False when the log was trusted without comparison (`unchecked`).
    public let comparedWithTPM: Bool

    fileprivate init(log: EventLog, pcrs: Set<UInt32>, banks: Set<TPMAlgID>, compared: Bool) {
        self.log = log
        self.verifiedPCRs = pcrs
        self.verifiedBanks = banks
        self.comparedWithTPM = compared
        self.events = log.events.compactMap { e in
            guard e.type != .noAction, pcrs.contains(e.pcrIndex) else { return nil }
            return VerifiedEvent(event: e, dataVouching: e.dataVouching(in: banks),
                                 digests: e.digests.filter { banks.contains($0.algorithm) })
        }
    }

    /// Trusts every event of a log without comparing it with a TPM (for showing what a log
    /// claims; never for a decision).
    public static func unchecked(_ log: EventLog) -> VerifiedEventLog {
        VerifiedEventLog(log: log, pcrs: Set(log.events.map(\.pcrIndex).filter { $0 < 24 }), banks: Set(log.banks.map(\.algorithm)),
                         compared: false)
    }

    /// The bank facts are taken from: SHA-256 when verified, else the strongest verified one.
    public var referenceBank: TPMAlgID? {
        for alg in [TPMAlgID.sha256, .sha384, .sha512, .sm3_256, .sha1] where verifiedBanks.contains(alg) { return alg }
        return verifiedBanks.first
    }
}

extension EventLog {
    /// PCRs the OS extends after boot, with logs of their own (IMA's PCR 10; systemd's 11–13, 15;
    /// the debug and application PCRs 16–23).
    public static let osPCRs: Set<UInt32> = Set([10, 11, 12, 13, 15]).union(16...23)

    /// The PCR values this boot log is compared with (by the verifier, and by the agent's own
    /// status). The log describes the PCRs the firmware and boot loaders extend. A PCR the running
    /// OS extends with a log of its own (`osPCRs`) that this log has no event for and that is not
    /// at its reset value was extended by someone this log does not speak for: it is left out,
    /// and is no fact of this log (PCR 10 is the IMA log's to prove). At its reset value it is
    /// compared, and verified: nothing was extended.
    public func comparable(_ values: PCRValues) -> PCRValues {
        let described = Set(events.map(\.pcrIndex))
        var out = values
        for (alg, pcrs) in values.banks {
            for (p, value) in pcrs
            where Self.osPCRs.contains(p) && !described.contains(p) && value != initialValue(pcr: p, size: value.count) {
                out.banks[alg]?[p] = nil
            }
        }
        return out
    }

    /// The value a PCR has after TPM2_Startup for this log: PCR 0 carries the startup locality
    /// (StartupLocality event, or 4 after an H-CRTM event), PCRs 17–22 are all ones.
    public func initialValue(pcr: UInt32, size: Int) -> [UInt8] {
        if pcr >= 17 && pcr <= 22 { return [UInt8](repeating: 0xFF, count: size) }
        var v = [UInt8](repeating: 0, count: size)
        if pcr == 0 { v[size - 1] = startupLocality }
        return v
    }

    /// The locality of TPM2_Startup the log records (0 when it records none).
    public var startupLocality: UInt8 {
        for e in events where e.type == .noAction && e.pcrIndex == 0 {
            if case .startupLocality(let l) = e.decoded { return l }
        }
        if events.contains(where: { $0.type == .efiHCRTMEvent && $0.pcrIndex == 0 }) { return 4 }
        return 0
    }

    /// Replays every bank the log has and we can compute. Events with a PCR index above 23
    /// (Windows trailers) and EV_NO_ACTION events are not extended.
    public func replay() -> PCRValues {
        var out = PCRValues()
        for (slot, bank) in banks.enumerated() where EventLogHash.isSupported(bank.algorithm) {
            var values = [[UInt8]?](repeating: nil, count: 24)
            let alg = bank.algorithm
            for e in events where e.pcrIndex < 24 && e.type != .noAction {
                // Digests are usually in the header's bank order; fall back to a search.
                let d: ArraySlice<UInt8>
                if slot < e.digests.count, e.digests[slot].algorithm == alg {
                    d = e.digests[slot].digest
                } else if let found = e.digest(alg) {
                    d = found
                } else {
                    continue
                }
                let pcr = Int(e.pcrIndex)
                let old = values[pcr] ?? initialValue(pcr: e.pcrIndex, size: bank.digestSize)
                values[pcr] = EventLogHash.extend(alg, old, d)
            }
            var dict: [UInt32: [UInt8]] = [:]
            for (i, v) in values.enumerated() { if let v { dict[UInt32(i)] = v } }
            if !dict.isEmpty { out.banks[alg] = dict }
        }
        return out
    }

    /// Replays the log and compares it with `expected`; the events of matching PCRs become
    /// verified. A PCR is verified when it matches in every given bank.
    public func replay(against expected: PCRValues) -> ReplayReport {
        let replayed = replay()
        var comparisons: [PCRComparison] = []
        var matched: [UInt32: Bool] = [:]
        for (alg, pcrs) in expected.banks.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            let bankKnown = banks.contains { $0.algorithm == alg } && EventLogHash.isSupported(alg)
            for (pcr, want) in pcrs.sorted(by: { $0.key < $1.key }) {
                guard bankKnown else {
                    comparisons.append(PCRComparison(bank: alg, pcr: pcr, expected: want, replayed: nil, status: .bankNotReplayable))
                    continue
                }
                let size = EventLogHash.digestSize(alg) ?? want.count
                let got = replayed[alg, pcr] ?? initialValue(pcr: pcr, size: size)
                if got == want {
                    comparisons.append(PCRComparison(bank: alg, pcr: pcr, expected: want, replayed: got, status: .match))
                    matched[pcr] = matched[pcr] ?? true
                } else {
                    let (last, prefix) = explainMismatch(alg: alg, pcr: pcr, expected: want, size: size)
                    comparisons.append(PCRComparison(bank: alg, pcr: pcr, expected: want, replayed: got,
                                                     status: .mismatch(lastEvent: last, matchedAfterEvent: prefix)))
                    matched[pcr] = false
                }
            }
        }
        let pcrs = Set(matched.filter(\.value).keys)
        // A bank vouches only when every PCR given for it could be compared (it is in the log).
        let banks = Set(expected.banks.keys.filter { alg in comparisons.allSatisfy { $0.bank != alg || $0.status != .bankNotReplayable } })
        return ReplayReport(replayed: replayed, comparisons: comparisons,
                            verified: VerifiedEventLog(log: self, pcrs: pcrs, banks: banks, compared: true))
    }

    private func explainMismatch(alg: TPMAlgID, pcr: UInt32, expected: [UInt8], size: Int) -> (Int?, Int?) {
        var v = initialValue(pcr: pcr, size: size)
        var last: Int?
        var prefix: Int?
        for e in events where e.type != .noAction && e.pcrIndex == pcr {
            guard let d = e.digest(alg), let nv = EventLogHash.extend(alg, v, d) else { continue }
            v = nv
            last = e.index
            if v == expected { prefix = e.index }
        }
        return (last, prefix)
    }
}

extension Event {
    /// Event types whose digest is the hash of the event data (PFP 10.4.1); for these the data
    /// is vouched for by the digest.
    static let dataHashedTypes: Set<EventType> = [
        .separator, .efiAction, .action, .efiVariableDriverConfig, .efiVariableBoot, .efiVariableBoot2,
        .efiVariableAuthority, .efiGPTEvent, .efiGPTEvent2, .sCRTMVersion,
    ]

    /// grub's string measurements into PCR 8 (grub 2.04+ `grub_cmd: `/`kernel_cmdline: `, Red Hat's
    /// older patches `grub_cmd `/`grub_kernel_cmdline `): the event data is the prefix and the
    /// string (with its NUL), the digest is of the string alone — without its NUL upstream, with
    /// it in Red Hat's patches (both seen in the shared real logs).
    static let grubStringPrefixes: [[UInt8]] = ["grub_cmd: ", "kernel_cmdline: ", "grub_kernel_cmdline ",
                                                "grub_cmd "].map { Array($0.utf8) }

    /// The byte strings the digest may be the hash of, by the measuring component's convention,
    /// and whether that convention is certain (`strict`: any other digest contradicts the data).
    /// Nil: the digest is of something else, the data is a claim.
    func measuredData() -> (candidates: [ArraySlice<UInt8>], strict: Bool)? {
        if Self.dataHashedTypes.contains(type) {
            var c = [data]
            // EV_EFI_VARIABLE_BOOT: older firmware hashes only VariableData (PFP errata).
            if type == .efiVariableBoot, case .variable(let v) = decoded { c.append(v.data[...]) }
            return (c, true)
        }
        guard type == .ipl else { return nil }
        switch pcrIndex {
        case 8:
            for p in Self.grubStringPrefixes where data.starts(with: p) {
                var text = data.dropFirst(p.count)
                let withNUL = text
                while text.last == 0 { text = text.dropLast() }
                return ([text, withNUL], true)
            }
            return nil
        case 12:
            // systemd-stub measures the command line it passes (UTF-16, with its NUL) as the data
            // itself; its other PCR 12 events (credentials, sysexts) are digests of files.
            return ([data], false)
        default:
            return nil
        }
    }

    /// Whether the event's data is vouched for by its digests in `banks` (the banks a replay
    /// verified; digests in other banks prove nothing).
    public func dataVouching(in banks: Set<TPMAlgID>) -> DataVouching {
        guard let (candidates, strict) = measuredData() else { return .claim }
        var checked = false
        for d in digests where banks.contains(d.algorithm) && EventLogHash.isSupported(d.algorithm) {
            checked = true
            let matches = candidates.contains { EventLogHash.hash(d.algorithm, $0)?[...] == d.digest }
            if !matches { return strict ? .contradicted : .claim }
        }
        return checked ? .vouched : .claim
    }

    /// Whether the digest equals the hash of the data in every computable bank of the log: nil
    /// when the type does not define its digest that way (or no bank is computable).
    public func dataMatchesDigest(banks: [AlgorithmSize]) -> Bool? {
        switch dataVouching(in: Set(banks.map(\.algorithm))) {
        case .vouched: true
        case .contradicted: false
        case .claim: nil
        }
    }
}
